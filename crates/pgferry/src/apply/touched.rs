//! The rows change capture touched, kept on the target so that validation can
//! re-check exactly those (`pgferry validate --changed-only`, and the cutover's
//! exact check after the drain) instead of every row.
//!
//! `pgferry.touched` holds one row per table and replica-identity key touched
//! since the last validation that found it equal, with the position of the batch
//! that last touched it, written in that batch's transaction (so it can never
//! miss an applied change). A table whose changes carry no usable key (REPLICA
//! IDENTITY FULL, inserts into a keyless table) or that was truncated is marked
//! whole, with the empty key `[]`. Validation deletes what it found equal, up to
//! the applied position its snapshot saw; a key touched again later keeps its row
//! because its position moved on.

use std::collections::{BTreeMap, BTreeSet};

use pgferry_core::names::MigrationName;
use pgferry_core::sql::QualifiedName;
use pgferry_pgoutput::{Column, Lsn};
use tokio_postgres::Client;

use super::relation::Mapped;

pub(crate) const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS pgferry.touched (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    key jsonb NOT NULL,
    lsn pg_lsn NOT NULL,
    PRIMARY KEY (migration, table_schema, table_name, key)
);";

/// What one batch touched.
#[derive(Default)]
pub(crate) struct Touched {
    tables: BTreeMap<QualifiedName, TableTouch>,
}

#[derive(Default)]
struct TableTouch {
    whole: bool,
    keys: BTreeSet<Vec<String>>,
}

impl Touched {
    /// The row `tuple` identifies in `table`: its key columns' text values.
    pub(crate) fn row(&mut self, table: &Mapped, tuple: &[Column]) {
        let key: Option<Vec<String>> = if table.full {
            None
        } else {
            let values: Vec<Option<String>> = table
                .columns
                .iter()
                .zip(tuple)
                .filter(|(c, _)| c.is_key)
                .map(|(_, v)| match v {
                    Column::Text(bytes) => String::from_utf8(bytes.to_vec()).ok(),
                    _ => None,
                })
                .collect();
            (!values.is_empty()).then_some(values).and_then(|v| v.into_iter().collect())
        };
        match key {
            Some(key) => {
                let touch = self.tables.entry(table.table.clone()).or_default();
                if !touch.whole {
                    touch.keys.insert(key);
                }
            }
            None => self.whole(&table.table),
        }
    }

    pub(crate) fn whole(&mut self, table: &QualifiedName) {
        let touch = self.tables.entry(table.clone()).or_default();
        touch.whole = true;
        touch.keys.clear();
    }
}

/// Records a batch's touched rows at `lsn`; runs inside the batch's transaction.
pub(crate) async fn record(target: &Client, name: &MigrationName, lsn: Lsn, touched: &Touched) -> Result<(), tokio_postgres::Error> {
    if touched.tables.is_empty() {
        return Ok(());
    }
    let (mut schemas, mut tables, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for (table, touch) in &touched.tables {
        let rows: Vec<String> = if touch.whole {
            vec!["[]".to_string()]
        } else {
            touch.keys.iter().map(|k| serde_json::to_string(k).expect("strings serialize")).collect()
        };
        for key in rows {
            schemas.push(table.schema.as_str());
            tables.push(table.name.as_str());
            keys.push(key);
        }
    }
    target
        .execute(
            "INSERT INTO pgferry.touched (migration, table_schema, table_name, key, lsn)
             SELECT $1, s, t, k::jsonb, $5::text::pg_lsn FROM unnest($2::text[], $3::text[], $4::text[]) AS u(s, t, k)
             ON CONFLICT (migration, table_schema, table_name, key) DO UPDATE SET lsn = excluded.lsn",
            &[&name.as_str(), &schemas, &tables, &keys, &lsn.to_string()],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::relation::{Folding, MappedColumn};
    use pgferry_core::sql::{Ident, ServerSql};

    fn column(name: &str, is_key: bool) -> MappedColumn {
        MappedColumn {
            name: Ident::from_catalog(name),
            type_sql: ServerSql::from_catalog("text"),
            is_key,
            identity_always: false,
            compare_as_text: false,
        }
    }

    fn text(v: &str) -> Column {
        Column::Text(v.as_bytes().to_vec().into())
    }

    #[test]
    fn keys_are_collected_once_and_keyless_changes_mark_the_whole_table() {
        let keyed = Mapped { table: QualifiedName::from_catalog("s", "k"), columns: vec![column("a", true), column("b", false)], full: false, folding: Folding::InOrder };
        let full = Mapped { table: QualifiedName::from_catalog("s", "f"), columns: vec![column("a", true)], full: true, folding: Folding::InOrder };
        let keyless = Mapped { table: QualifiedName::from_catalog("s", "l"), columns: vec![column("a", false)], full: false, folding: Folding::InOrder };
        let mut touched = Touched::default();
        touched.row(&keyed, &[text("1"), text("x")]);
        touched.row(&keyed, &[text("1"), text("y")]);
        touched.row(&keyed, &[text("2"), Column::Null]);
        touched.row(&full, &[text("1")]);
        touched.row(&keyless, &[text("1")]);
        let k = &touched.tables[&keyed.table];
        assert!(!k.whole);
        assert_eq!(k.keys.iter().cloned().collect::<Vec<_>>(), vec![vec!["1".to_string()], vec!["2".to_string()]]);
        assert!(touched.tables[&full.table].whole);
        assert!(touched.tables[&keyless.table].whole);
        touched.whole(&keyed.table);
        assert!(touched.tables[&keyed.table].whole && touched.tables[&keyed.table].keys.is_empty());
        touched.row(&keyed, &[text("3"), text("z")]);
        assert!(touched.tables[&keyed.table].keys.is_empty(), "a whole table needs no keys");
    }
}
