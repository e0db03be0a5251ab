//! The statements that apply one change, built with [`Sql`] and prepared once
//! per relation and shape.
//!
//! Every value travels as a text parameter cast to the target column's type,
//! `$n::text::<format_type>`: the source rendered it with its type's output
//! function under pinned settings (see [`super::stream`]) and the target reads it
//! back with the same type's input function, which round-trips every type exactly
//! (numeric precision and NaN, infinite timestamps, intervals, arrays, ranges,
//! composites, enums, domains). The type name comes from the target's catalog.
//!
//! Shapes: an INSERT names the columns the stream sends (generated columns are
//! never sent) with OVERRIDING SYSTEM VALUE, so GENERATED ALWAYS identity values
//! are kept. An UPDATE sets only the columns whose new value was sent: an
//! unchanged TOASTed value arrives as "unchanged" and keeps the target's value;
//! identity columns that are GENERATED ALWAYS cannot be assigned, so they are
//! checked in the WHERE clause instead (a source that changed one stops apply
//! rather than diverge). Rows are found by the replica identity's columns, or,
//! under REPLICA IDENTITY FULL, by every old value with IS NOT DISTINCT FROM
//! (NULL-safe), one row only through `ctid = (SELECT ctid ... LIMIT 1)` since
//! duplicates are possible
//! ([REPLICA IDENTITY](https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-REPLICA-IDENTITY)).

use std::collections::HashMap;

use pgferry_core::sql::Sql;
use pgferry_pgoutput::{Column, Oid};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use super::relation::{Mapped, MappedColumn};

/// Which columns a statement mentions; one prepared statement per distinct shape.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Shape {
    Insert,
    /// `set`: the columns assigned; `matching`: how the row is found; `guard`:
    /// GENERATED ALWAYS identity columns checked against their new value.
    Update {
        set: Vec<bool>,
        matching: Matching,
        guard: Vec<bool>,
    },
    Delete {
        matching: Matching,
    },
    /// Net changes ([`super::net`]), each parameter an array holding one column
    /// of many rows: `InsertRows` every column; `UpdateRows` the key columns,
    /// then the columns `set` assigns that are not key columns, then `guard`'s;
    /// `DeleteRows` the key columns.
    InsertRows,
    UpdateRows {
        set: Vec<bool>,
        guard: Vec<bool>,
    },
    DeleteRows,
}

/// How the target row is found.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Matching {
    /// The replica identity's key columns, with `=`.
    Key,
    /// REPLICA IDENTITY FULL: these columns' old values, NULL-safe, one row.
    Full(Vec<bool>),
}

/// The columns whose values a tuple carries (not "unchanged TOAST").
pub(crate) fn present(tuple: &[Column]) -> Vec<bool> {
    tuple.iter().map(|c| !matches!(c, Column::UnchangedToast)).collect()
}

/// The UPDATE shape for a new tuple (pure).
pub(crate) fn update_shape(columns: &[MappedColumn], full: bool, old: Option<&[Column]>, new: &[Column]) -> Shape {
    let sent = present(new);
    let set = columns.iter().zip(&sent).map(|(c, s)| *s && !c.identity_always).collect();
    let guard = columns.iter().zip(&sent).map(|(c, s)| *s && c.identity_always).collect();
    Shape::Update { set, matching: matching(full, old), guard }
}

/// The shape that updates rows carrying the columns `sent` (pure).
pub(crate) fn update_rows_shape(columns: &[MappedColumn], sent: &[bool]) -> Shape {
    let set = columns.iter().zip(sent).map(|(c, s)| *s && !c.identity_always).collect();
    let guard = columns.iter().zip(sent).map(|(c, s)| *s && c.identity_always && !c.is_key).collect();
    Shape::UpdateRows { set, guard }
}

/// How a change finds its row (pure).
pub(crate) fn matching(full: bool, old: Option<&[Column]>) -> Matching {
    match (full, old) {
        (true, Some(old)) => Matching::Full(present(old)),
        _ => Matching::Key,
    }
}

/// Numbers parameters as they are appended.
#[derive(Default)]
struct Params(i64);

impl Params {
    /// `$n::text::<type>`: a value cast to the column's type.
    fn typed(&mut self, sql: Sql, column: &MappedColumn) -> Sql {
        self.0 += 1;
        sql.push("$").int(self.0).push("::text::").server_sql(&column.type_sql)
    }

    /// `$n`: a value left as text.
    fn text(&mut self, sql: Sql) -> Sql {
        self.0 += 1;
        sql.push("$").int(self.0)
    }
}

/// Builds a shape's SQL text. Parameters: assigned or inserted values in column
/// order, then the matching values, then the guarded values. Returns the text and
/// the number of parameters.
pub(crate) fn build(table: &Mapped, shape: &Shape) -> (Sql, usize) {
    let mut params = Params::default();
    let sql = match shape {
        Shape::Insert => {
            let mut sql = Sql::new("INSERT INTO ")
                .name(&table.table)
                .push(" (")
                .ident_list(table.columns.iter().map(|c| &c.name))
                .push(") OVERRIDING SYSTEM VALUE VALUES (");
            for (i, column) in table.columns.iter().enumerate() {
                sql = params.typed(sql.push(if i == 0 { "" } else { ", " }), column);
            }
            sql.push(")")
        }
        Shape::Update { set, matching, guard } => {
            let mut sql = Sql::new("UPDATE ").push(table.only()).name(&table.table).push(" SET ");
            for (i, column) in selected(&table.columns, set).enumerate() {
                sql = params.typed(sql.push(if i == 0 { "" } else { ", " }).ident(&column.name).push(" = "), column);
            }
            sql = where_clause(sql, table, matching, &mut params);
            for column in selected(&table.columns, guard) {
                sql = params.typed(sql.push(" AND ").ident(&column.name).push(" IS NOT DISTINCT FROM "), column);
            }
            sql
        }
        Shape::Delete { matching } => {
            let sql = Sql::new("DELETE FROM ").push(table.only()).name(&table.table);
            where_clause(sql, table, matching, &mut params)
        }
        Shape::InsertRows | Shape::UpdateRows { .. } | Shape::DeleteRows => return build_rows(table, shape),
    };
    (sql, params.0 as usize)
}

/// Which column each array parameter of a set statement holds, in parameter
/// order; a column is in at most one array.
pub(crate) fn row_arrays(table: &Mapped, shape: &Shape) -> Vec<usize> {
    let columns = &table.columns;
    let keys = (0..columns.len()).filter(|i| columns[*i].is_key);
    match shape {
        Shape::InsertRows => (0..columns.len()).collect(),
        Shape::DeleteRows => keys.collect(),
        Shape::UpdateRows { set, guard } => keys
            .chain((0..columns.len()).filter(|i| set[*i] && !columns[*i].is_key))
            .chain((0..columns.len()).filter(|i| guard[*i]))
            .collect(),
        Shape::Insert | Shape::Update { .. } | Shape::Delete { .. } => Vec::new(),
    }
}

/// The set statements of net changes. The rows come from `unnest` over one
/// text array per column (`pgferry_v.pN`), each value cast to its column's type
/// as single changes are; the target table is `pgferry_t`, so no column name
/// can be mistaken for an array's.
fn build_rows(table: &Mapped, shape: &Shape) -> (Sql, usize) {
    let columns = &table.columns;
    let arrays = row_arrays(table, shape);
    let value = |sql: Sql, i: usize| {
        let n = arrays.iter().position(|a| *a == i).expect("every column used has an array");
        sql.push("pgferry_v.p").int(n as i64 + 1).push("::").server_sql(&columns[i].type_sql)
    };
    let mut rows = Sql::new(" unnest(");
    for n in 0..arrays.len() {
        rows = rows.push(if n == 0 { "$" } else { ", $" }).int(n as i64 + 1).push("::text[]");
    }
    rows = rows.push(") AS pgferry_v (");
    for n in 0..arrays.len() {
        rows = rows.push(if n == 0 { "p" } else { ", p" }).int(n as i64 + 1);
    }
    rows = rows.push(")");
    let mut key_match = Sql::new("");
    for (n, i) in (0..columns.len()).filter(|i| columns[*i].is_key).enumerate() {
        key_match = value(
            key_match
                .push(if n == 0 { " WHERE pgferry_t." } else { " AND pgferry_t." })
                .ident(&columns[i].name)
                .push(" = "),
            i,
        );
    }
    let sql = match shape {
        Shape::InsertRows => {
            let mut sql = Sql::new("INSERT INTO ")
                .name(&table.table)
                .push(" (")
                .ident_list(columns.iter().map(|c| &c.name))
                .push(") OVERRIDING SYSTEM VALUE SELECT ");
            for i in 0..columns.len() {
                sql = value(sql.push(if i == 0 { "" } else { ", " }), i);
            }
            sql.push(" FROM").append(rows)
        }
        Shape::DeleteRows => Sql::new("DELETE FROM ")
            .push(table.only())
            .name(&table.table)
            .push(" AS pgferry_t USING")
            .append(rows)
            .append(key_match),
        Shape::UpdateRows { set, guard } => {
            let mut sql = Sql::new("UPDATE ").push(table.only()).name(&table.table).push(" AS pgferry_t SET ");
            for (n, i) in (0..columns.len()).filter(|i| set[*i]).enumerate() {
                sql = value(sql.push(if n == 0 { "" } else { ", " }).ident(&columns[i].name).push(" = "), i);
            }
            sql = sql.push(" FROM").append(rows).append(key_match);
            for i in (0..columns.len()).filter(|i| guard[*i]) {
                sql = value(sql.push(" AND pgferry_t.").ident(&columns[i].name).push(" IS NOT DISTINCT FROM "), i);
            }
            sql
        }
        _ => unreachable!("build_rows builds set statements"),
    };
    (sql, arrays.len())
}

fn selected<'a>(columns: &'a [MappedColumn], mask: &'a [bool]) -> impl Iterator<Item = &'a MappedColumn> {
    columns.iter().zip(mask).filter(|(_, m)| **m).map(|(c, _)| c)
}

fn where_clause(mut sql: Sql, table: &Mapped, matching: &Matching, params: &mut Params) -> Sql {
    match matching {
        Matching::Key => {
            for (i, column) in table.columns.iter().filter(|c| c.is_key).enumerate() {
                sql = params
                    .typed(sql.push(if i == 0 { " WHERE " } else { " AND " }).ident(&column.name).push(" = "), column);
            }
            sql
        }
        Matching::Full(mask) => {
            // A partitioned table's rows are told apart by partition and ctid.
            sql = if table.partitioned {
                sql.push(" WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ").name(&table.table)
            } else {
                sql.push(" WHERE ctid = (SELECT ctid FROM ONLY ").name(&table.table)
            };
            for (i, column) in selected(&table.columns, mask).enumerate() {
                sql = sql.push(if i == 0 { " WHERE " } else { " AND " }).ident(&column.name);
                sql = if column.compare_as_text {
                    params.text(sql.push("::text IS NOT DISTINCT FROM "))
                } else {
                    params.typed(sql.push(" IS NOT DISTINCT FROM "), column)
                };
            }
            sql.push(" LIMIT 1)")
        }
    }
}

/// The most statements a session keeps prepared: an update's shape depends on
/// which columns it carries, so a wide table may have many; past this the cache
/// starts over (each statement is closed on the server once no change in flight
/// uses it).
const MAX_PREPARED: usize = 1_000;

/// Prepared statements of one target session, by relation and shape, at most
/// [`MAX_PREPARED`].
#[derive(Default)]
pub(crate) struct Statements {
    prepared: HashMap<(Oid, Shape), Statement>,
}

impl Statements {
    /// The statement for a shape, prepared on first use.
    pub(crate) async fn get(
        &mut self,
        target: &Client,
        oid: Oid,
        table: &Mapped,
        shape: &Shape,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.prepared.get(&(oid, shape.clone())) {
            return Ok(statement.clone());
        }
        let (sql, params) = build(table, shape);
        let param_type = match shape {
            Shape::InsertRows | Shape::UpdateRows { .. } | Shape::DeleteRows => Type::TEXT_ARRAY,
            Shape::Insert | Shape::Update { .. } | Shape::Delete { .. } => Type::TEXT,
        };
        let statement = target.prepare_typed(sql.as_str(), &vec![param_type; params]).await?;
        if self.prepared.len() >= MAX_PREPARED {
            self.prepared.clear();
        }
        self.prepared.insert((oid, shape.clone()), statement.clone());
        Ok(statement)
    }

    /// Forgets a relation's statements when its definition is sent again.
    pub(crate) fn forget(&mut self, oid: Oid) {
        self.prepared.retain(|(o, _), _| *o != oid);
    }
}

#[cfg(test)]
mod tests {
    use super::super::relation::Folding;
    use super::*;
    use pgferry_core::sql::{Ident, QualifiedName, ServerSql};

    fn column(name: &str, key: bool) -> MappedColumn {
        MappedColumn {
            name: Ident::from_catalog(name),
            type_sql: ServerSql::from_catalog("integer"),
            is_key: key,
            identity_always: false,
            compare_as_text: false,
        }
    }

    fn table(columns: Vec<MappedColumn>, full: bool) -> Mapped {
        Mapped {
            table: QualifiedName::from_catalog("s", "t\"x"),
            columns,
            full,
            folding: Folding::InOrder,
            partitioned: false,
            replica_logic: false,
        }
    }

    fn text(v: &str) -> Column {
        Column::Text(bytes::Bytes::copy_from_slice(v.as_bytes()))
    }

    #[test]
    fn inserts_keep_identity_values_and_cast_text_to_the_target_type() {
        let t = table(vec![column("id", true), column("v", false)], false);
        assert_eq!(
            build(&t, &Shape::Insert).0.as_str(),
            "INSERT INTO \"s\".\"t\"\"x\" (\"id\", \"v\") OVERRIDING SYSTEM VALUE VALUES ($1::text::integer, $2::text::integer)"
        );
    }

    #[test]
    fn updates_leave_unchanged_toast_alone_and_find_the_row_by_key() {
        let t = table(vec![column("id", true), column("big", false), column("v", false)], false);
        let new = [text("1"), Column::UnchangedToast, Column::Null];
        let shape = update_shape(&t.columns, false, None, &new);
        assert_eq!(
            build(&t, &shape).0.as_str(),
            "UPDATE ONLY \"s\".\"t\"\"x\" SET \"id\" = $1::text::integer, \"v\" = $2::text::integer WHERE \"id\" = $3::text::integer"
        );
        let other = update_shape(&t.columns, false, None, &[text("1"), text("x"), Column::Null]);
        assert_ne!(shape, other, "a different set of columns is a different statement");
    }

    #[test]
    fn identity_always_columns_are_guarded_not_assigned() {
        let mut id = column("id", true);
        id.identity_always = true;
        let t = table(vec![id, column("v", false)], false);
        let shape = update_shape(&t.columns, false, Some(&[text("1"), Column::Null]), &[text("1"), text("2")]);
        assert_eq!(
            build(&t, &shape).0.as_str(),
            "UPDATE ONLY \"s\".\"t\"\"x\" SET \"v\" = $1::text::integer WHERE \"id\" = $2::text::integer AND \"id\" IS NOT DISTINCT FROM $3::text::integer"
        );
    }

    #[test]
    fn net_changes_are_set_statements_over_one_array_per_column() {
        let mut id = column("id", true);
        id.identity_always = true;
        let t = table(vec![id, column("big", false), column("v", false)], false);
        assert_eq!(
            build(&t, &Shape::InsertRows).0.as_str(),
            "INSERT INTO \"s\".\"t\"\"x\" (\"id\", \"big\", \"v\") OVERRIDING SYSTEM VALUE SELECT pgferry_v.p1::integer, pgferry_v.p2::integer, pgferry_v.p3::integer FROM unnest($1::text[], $2::text[], $3::text[]) AS pgferry_v (p1, p2, p3)"
        );
        assert_eq!(
            build(&t, &Shape::DeleteRows).0.as_str(),
            "DELETE FROM ONLY \"s\".\"t\"\"x\" AS pgferry_t USING unnest($1::text[]) AS pgferry_v (p1) WHERE pgferry_t.\"id\" = pgferry_v.p1::integer"
        );
        let shape = update_rows_shape(&t.columns, &[true, false, true]);
        let (sql, arrays) = build(&t, &shape);
        assert_eq!(
            sql.as_str(),
            "UPDATE ONLY \"s\".\"t\"\"x\" AS pgferry_t SET \"v\" = pgferry_v.p2::integer FROM unnest($1::text[], $2::text[]) AS pgferry_v (p1, p2) WHERE pgferry_t.\"id\" = pgferry_v.p1::integer",
            "the unchanged TOASTed column is left alone; an identity key is matched, not assigned"
        );
        assert_eq!(arrays, 2);
    }

    #[test]
    fn net_updates_check_identity_columns_they_cannot_assign() {
        let mut seq = column("seq", false);
        seq.identity_always = true;
        let t = table(vec![column("k", true), seq, column("v", false)], false);
        let shape = update_rows_shape(&t.columns, &[true, true, true]);
        assert_eq!(
            build(&t, &shape).0.as_str(),
            "UPDATE ONLY \"s\".\"t\"\"x\" AS pgferry_t SET \"k\" = pgferry_v.p1::integer, \"v\" = pgferry_v.p2::integer FROM unnest($1::text[], $2::text[], $3::text[]) AS pgferry_v (p1, p2, p3) WHERE pgferry_t.\"k\" = pgferry_v.p1::integer AND pgferry_t.\"seq\" IS NOT DISTINCT FROM pgferry_v.p3::integer"
        );
    }

    #[test]
    fn replica_identity_full_matches_old_values_null_safe_and_one_row() {
        let mut doc = column("doc", true);
        doc.compare_as_text = true;
        let t = table(vec![column("a", true), doc, column("b", true)], true);
        let old = [text("1"), text("{}"), Column::Null];
        let shape = Shape::Delete { matching: matching(true, Some(&old)) };
        assert_eq!(
            build(&t, &shape).0.as_str(),
            "DELETE FROM ONLY \"s\".\"t\"\"x\" WHERE ctid = (SELECT ctid FROM ONLY \"s\".\"t\"\"x\" WHERE \"a\" IS NOT DISTINCT FROM $1::text::integer AND \"doc\"::text IS NOT DISTINCT FROM $2 AND \"b\" IS NOT DISTINCT FROM $3::text::integer LIMIT 1)"
        );
    }

    /// A session that meets many shapes keeps at most [`MAX_PREPARED`]
    /// statements, and one handed out before the cache started over still runs.
    #[tokio::test]
    async fn the_prepared_statements_are_bounded() {
        let cluster = pgferry_testkit::Cluster::start(pgferry_testkit::PgVersion::V15);
        cluster.psql("postgres", "CREATE SCHEMA s; CREATE TABLE s.\"t\"\"x\" (id integer PRIMARY KEY, v integer)");
        let client = cluster.connect("postgres").await;
        let t = table(vec![column("id", true), column("v", false)], false);
        let mut statements = Statements::default();
        let first = statements.get(&client, 0, &t, &Shape::Insert).await.unwrap();
        for oid in 1..=MAX_PREPARED as Oid {
            statements.get(&client, oid, &t, &Shape::Insert).await.unwrap();
            assert!(statements.prepared.len() <= MAX_PREPARED, "{} at oid {oid}", statements.prepared.len());
        }
        assert_eq!(statements.prepared.len(), 1, "started over once full");
        client.execute(&first, &[&"1", &"2"]).await.unwrap();
        assert_eq!(cluster.psql("postgres", "SELECT v FROM s.\"t\"\"x\""), "2");
    }
}
