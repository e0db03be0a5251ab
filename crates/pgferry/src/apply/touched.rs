//! The rows change capture touched, kept on the target so that validation can
//! re-check exactly those (`pgferry validate --changed-only`, and the cutover's
//! exact check after the drain) instead of every row.
//!
//! `pgferry.touched_keys` gets one row per table and batch, written in that
//! batch's transaction (so it can never miss an applied change): the batch's
//! position and the keys (replica-identity key columns as text) of the rows it
//! touched, as a JSON array. A table whose changes carry no usable key (REPLICA
//! IDENTITY FULL, inserts into a keyless table) or that was truncated is marked
//! whole. One row per batch rather than one per key keeps the cost off the apply
//! path: appending a row is cheap, upserting thousands of keys per batch was
//! not. Validation reads the union, and once it found everything equal deletes
//! the rows up to the applied position its snapshot saw; anything touched later
//! keeps its row.
//!
//! A batch ends only at a source transaction's end, so one large transaction
//! makes one large batch: past [`MAX_KEYS`] keys held for a batch, the table
//! whose key would pass it is marked whole instead, which bounds the memory a
//! batch's keys take (and the row written) at the price of checking that table
//! whole.

use std::collections::{BTreeMap, BTreeSet};

use pgferry_core::names::MigrationName;
use pgferry_core::sql::QualifiedName;
use pgferry_pgoutput::{Column, Lsn};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::relation::Mapped;

/// The most keys one batch holds, across its tables (about 10 MB of short keys).
pub(crate) const MAX_KEYS: usize = 100_000;

/// What one table needs re-checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TouchedRows {
    Whole,
    Keys(Vec<Vec<String>>),
}

/// What one batch touched.
#[derive(Default)]
pub(crate) struct Touched {
    tables: BTreeMap<QualifiedName, TableTouch>,
    /// Keys held across the tables, at most [`MAX_KEYS`].
    keys: usize,
}

#[derive(Default)]
struct TableTouch {
    whole: bool,
    keys: BTreeSet<Vec<String>>,
    /// Why its rows may differ though change capture carried no change of
    /// them (a replayed DDL command rewrote them): the cutover refuses until
    /// they are proven equal or copied again.
    reason: Option<String>,
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
                if touch.whole || touch.keys.contains(&key) {
                    return;
                }
                if self.keys == MAX_KEYS {
                    return self.whole(&table.table);
                }
                touch.keys.insert(key);
                self.keys += 1;
            }
            None => self.whole(&table.table),
        }
    }

    pub(crate) fn whole(&mut self, table: &QualifiedName) {
        let touch = self.tables.entry(table.clone()).or_default();
        touch.whole = true;
        self.keys -= touch.keys.len();
        touch.keys.clear();
    }

    /// A table whose rows a replayed DDL command rewrote: checked whole, and
    /// to be proven before the cutover.
    pub(crate) fn rewritten(&mut self, table: &QualifiedName, reason: &str) {
        self.whole(table);
        if let Some(touch) = self.tables.get_mut(table) {
            touch.reason.get_or_insert_with(|| reason.to_string());
        }
    }
}

/// Records a batch's touched rows at `lsn`; runs inside the batch's transaction.
pub(crate) async fn record(
    target: &Client,
    name: &MigrationName,
    lsn: Lsn,
    touched: &Touched,
) -> Result<(), tokio_postgres::Error> {
    if touched.tables.is_empty() {
        return Ok(());
    }
    let (mut schemas, mut tables, mut wholes, mut keys) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut reasons = Vec::new();
    for (table, touch) in &touched.tables {
        schemas.push(table.schema.as_str());
        tables.push(table.name.as_str());
        wholes.push(touch.whole);
        keys.push(serde_json::to_string(&touch.keys).expect("strings serialize"));
        reasons.push(touch.reason.as_deref());
    }
    target
        .query_typed(
            "INSERT INTO pgferry.touched_keys (migration, lsn, table_schema, table_name, whole, keys, reason)
             SELECT $1, $2::text::pg_lsn, s, t, w, k::jsonb, r
             FROM unnest($3::text[], $4::text[], $5::bool[], $6::text[], $7::text[]) AS u(s, t, w, k, r)",
            &[
                (&name.as_str(), Type::TEXT),
                (&lsn.to_string(), Type::TEXT),
                (&schemas, Type::TEXT_ARRAY),
                (&tables, Type::TEXT_ARRAY),
                (&wholes, Type::BOOL_ARRAY),
                (&keys, Type::TEXT_ARRAY),
                (&reasons, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    Ok(())
}

/// The rows touched and not yet found equal, per table, as `target`'s snapshot
/// sees them.
pub(crate) async fn read(
    target: &Client,
    name: &MigrationName,
) -> Result<BTreeMap<QualifiedName, TouchedRows>, tokio_postgres::Error> {
    let mut merged: BTreeMap<QualifiedName, (bool, BTreeSet<Vec<String>>)> = BTreeMap::new();
    let exists: bool = target.query_one("SELECT to_regclass('pgferry.touched_keys') IS NOT NULL", &[]).await?.get(0);
    if exists {
        let rows = target
            .query(
                "SELECT table_schema, table_name, whole, keys::text FROM pgferry.touched_keys WHERE migration = $1",
                &[&name.as_str()],
            )
            .await?;
        for row in rows {
            let table = QualifiedName::from_catalog(row.get::<_, String>(0), row.get::<_, String>(1));
            let (whole, keys) = merged.entry(table).or_default();
            *whole |= row.get::<_, bool>(2);
            if !*whole {
                // A key list that cannot be read makes the whole table checked.
                match serde_json::from_str::<Vec<Vec<String>>>(row.get(3)) {
                    Ok(batch) => keys.extend(batch),
                    Err(_) => *whole = true,
                }
            }
        }
    }
    Ok(merged
        .into_iter()
        .map(|(table, (whole, keys))| {
            (table, if whole { TouchedRows::Whole } else { TouchedRows::Keys(keys.into_iter().collect()) })
        })
        .collect())
}

/// The distinct rows awaiting a check, for `status` and the cutover's plan; a
/// table marked whole counts as one.
pub(crate) async fn count(target: &Client, name: &MigrationName) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = target.query_one("SELECT to_regclass('pgferry.touched_keys') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    let row = target
        .query_one(
            "SELECT count(*) FROM (
                 SELECT DISTINCT table_schema, table_name, CASE WHEN whole THEN NULL ELSE k END
                 FROM pgferry.touched_keys LEFT JOIN LATERAL jsonb_array_elements(keys) k ON NOT whole
                 WHERE migration = $1) touched",
            &[&name.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

/// The tables a replayed DDL command rewrote that no validation found equal
/// since (nor a repair copied again: its validation clears them), with why.
pub(crate) async fn rewritten(
    target: &Client,
    name: &MigrationName,
) -> Result<Vec<(QualifiedName, String)>, tokio_postgres::Error> {
    let rows = target
        .query(
            "SELECT table_schema, table_name, min(reason) FROM pgferry.touched_keys
             WHERE migration = $1 AND reason IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
            &[&name.as_str()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)), r.get(2)))
        .collect())
}

/// Forgets the rows recorded up to `applied`: validation found them equal.
pub(crate) async fn forget_up_to(
    target: &Client,
    name: &MigrationName,
    applied: &str,
) -> Result<u64, tokio_postgres::Error> {
    target
        .execute(
            "DELETE FROM pgferry.touched_keys WHERE migration = $1 AND lsn <= $2::text::pg_lsn",
            &[&name.as_str(), &applied],
        )
        .await
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
        let keyed = Mapped {
            table: QualifiedName::from_catalog("s", "k"),
            columns: vec![column("a", true), column("b", false)],
            full: false,
            folding: Folding::InOrder,
            partitioned: false,
            replica_logic: false,
        };
        let full = Mapped {
            table: QualifiedName::from_catalog("s", "f"),
            columns: vec![column("a", true)],
            full: true,
            folding: Folding::InOrder,
            partitioned: false,
            replica_logic: false,
        };
        let keyless = Mapped {
            table: QualifiedName::from_catalog("s", "l"),
            columns: vec![column("a", false)],
            full: false,
            folding: Folding::InOrder,
            partitioned: false,
            replica_logic: false,
        };
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
        assert_eq!(touched.keys, 0);
    }

    #[test]
    fn past_the_bound_the_table_that_would_pass_it_is_marked_whole() {
        let keyed = |name: &str| Mapped {
            table: QualifiedName::from_catalog("s", name),
            columns: vec![column("a", true)],
            full: false,
            folding: Folding::InOrder,
            partitioned: false,
            replica_logic: false,
        };
        let (small, big) = (keyed("small"), keyed("big"));
        let mut touched = Touched::default();
        touched.row(&small, &[text("only")]);
        for i in 0..MAX_KEYS - 1 {
            touched.row(&big, &[text(&i.to_string())]);
        }
        assert_eq!(touched.keys, MAX_KEYS);
        touched.row(&big, &[text("0")]);
        assert!(!touched.tables[&big.table].whole, "a key held already costs nothing");
        touched.row(&big, &[text("one too many")]);
        assert!(touched.tables[&big.table].whole && touched.tables[&big.table].keys.is_empty());
        assert_eq!(touched.keys, 1, "its keys are let go");
        touched.row(&small, &[text("more")]);
        assert_eq!(touched.tables[&small.table].keys.len(), 2, "the other tables keep their keys");
    }
}
