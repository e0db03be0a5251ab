//! The tables to validate and how to cut them into chunks.
//!
//! A table with a primary key (or a replica identity index) is cut at every
//! `chunk_rows`-th key of the source, in the key's own order, so each chunk is an
//! index range scan on both sides. A table without one is compared whole, with an
//! order-independent fingerprint.

use pgferry_core::names::STATE_SCHEMA;
use pgferry_core::sql::{Ident, QualifiedName, ServerSql, Sql};
use pgferry_pg::facts::USER_RELATION;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// A key column and its type as the server names it (for casts of bound text).
#[derive(Clone, Debug)]
pub(crate) struct KeyColumn {
    pub(crate) name: Ident,
    pub(crate) type_name: ServerSql,
}

#[derive(Clone, Debug)]
pub(crate) struct ValidatedTable {
    pub(crate) name: QualifiedName,
    /// Empty for a table without a usable key.
    pub(crate) key: Vec<KeyColumn>,
    /// The expression that hashes one row `t` exactly ([`row_hash`]).
    pub(crate) row_hash: Sql,
}

/// The hash of one row `t`, the same on both sides exactly when the rows
/// render the same text. Rendering every row as text (`t::text`) is what costs
/// most in a validation, so columns whose type's own hash is exact are hashed
/// as they are, through `hash_record_extended` (PostgreSQL 14 and later): that is
/// integers, booleans, bytea, dates and times, uuid, and strings under a
/// deterministic collation (whose hash is over their bytes). Those functions are
/// stable across major versions (hash partitioning relies on it). Any other
/// column is rendered as text first: numeric (1.0 and 1.00 are equal and hash
/// alike, but differ), floats (-0 and 0), intervals, jsonb, arrays, enums (whose
/// hash is their OID, which differs between clusters), domains, composites.
/// Before 14, the whole row is rendered as text.
pub(crate) fn row_hash(columns: &[(Ident, bool)], record_hash: bool) -> Sql {
    if !record_hash || columns.is_empty() {
        return Sql::new("hashtextextended(t::text, 0)");
    }
    let mut sql = Sql::new("hash_record_extended(ROW(");
    for (i, (name, exact)) in columns.iter().enumerate() {
        sql = sql.push(if i == 0 { "t." } else { ", t." }).ident(name);
        if !exact {
            sql = sql.push("::text");
        }
    }
    sql.push("), 0)")
}

/// Leaf tables of user schemas with their key columns: the replica identity
/// index, else the primary key (so the key is the one change capture reports
/// touched rows by).
pub(crate) async fn list(src: &Client) -> Result<Vec<ValidatedTable>> {
    of_kind(src, "r").await
}

/// Materialized views of user schemas: they have no key (no primary key or
/// replica identity), so each is compared whole.
pub(crate) async fn materialized_views(src: &Client) -> Result<Vec<ValidatedTable>> {
    of_kind(src, "m").await
}

/// The relations of one `pg_class.relkind`, with their keys.
async fn of_kind(src: &Client, relkind: &str) -> Result<Vec<ValidatedTable>> {
    let rows = src
        .query(
            &format!(
            "SELECT n.nspname::text, c.relname::text,
                    coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                              FROM pg_index x, unnest(x.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
                              WHERE x.indrelid = c.oid AND (x.indisprimary OR x.indisreplident) AND a.attrelid = c.oid AND a.attnum = k.attnum
                              GROUP BY x.indexrelid, x.indisprimary, x.indisreplident ORDER BY x.indisreplident DESC, x.indisprimary DESC LIMIT 1), '{{}}'),
                    coalesce((SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
                              FROM pg_index x, unnest(x.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
                              WHERE x.indrelid = c.oid AND (x.indisprimary OR x.indisreplident) AND a.attrelid = c.oid AND a.attnum = k.attnum
                              GROUP BY x.indexrelid, x.indisprimary, x.indisreplident ORDER BY x.indisreplident DESC, x.indisprimary DESC LIMIT 1), '{{}}'),
                    ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
                    ARRAY(SELECT (a.atttypid IN (16, 17, 20, 21, 23, 25, 1043, 1082, 1083, 1114, 1184, 2950) OR (a.atttypid = 1042 AND a.atttypmod > 0))
                                 AND coalesce((SELECT co.collisdeterministic FROM pg_collation co WHERE co.oid = a.attcollation), true)
                          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
                    current_setting('server_version_num')::int >= 140000
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind::text = $2 AND {USER_RELATION}
             ORDER BY pg_relation_size(c.oid) DESC, 1, 2"
            ),
            &[&STATE_SCHEMA, &relkind],
        )
        .await
        .map_err(|e| Error::server("listing the source's tables", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let names: Vec<String> = r.get(2);
            let types: Vec<String> = r.get(3);
            let columns: Vec<String> = r.get(4);
            let exact: Vec<bool> = r.get(5);
            let columns: Vec<(Ident, bool)> = columns.into_iter().map(Ident::from_catalog).zip(exact).collect();
            ValidatedTable {
                row_hash: row_hash(&columns, r.get(6)),
                name: QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)),
                key: names
                    .into_iter()
                    .zip(types)
                    .map(|(n, t)| KeyColumn { name: Ident::from_catalog(n), type_name: ServerSql::from_catalog(t) })
                    .collect(),
            }
        })
        .collect())
}

/// Chunk boundaries, as text, in key order: for a single integer key, steps of
/// `chunk_rows` between its minimum and maximum (two index look-ups), unless the
/// keys are so sparse that this would make far more chunks than rows warrant; for
/// any other key, every `chunk_rows`-th key of the source.
pub(crate) async fn boundaries(src: &Client, table: &ValidatedTable, chunk_rows: i64) -> Result<Vec<Vec<String>>> {
    if table.key.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(steps) = integer_steps(src, table, chunk_rows).await? {
        return Ok(steps);
    }
    let names: Vec<&Ident> = table.key.iter().map(|k| &k.name).collect();
    let mut texts = Sql::new("");
    for (i, k) in table.key.iter().enumerate() {
        texts = texts.push(if i == 0 { "" } else { ", " }).ident(&k.name).push("::text");
    }
    let sql = Sql::new("SELECT ")
        .append(texts)
        .push(" FROM (SELECT ")
        .ident_list(names.iter().copied())
        .push(", row_number() OVER (ORDER BY ")
        .ident_list(names.iter().copied())
        .push(") AS pgferry_rn FROM ONLY ")
        .name(&table.name)
        .push(") s WHERE pgferry_rn % $1 = 1 AND pgferry_rn > 1 ORDER BY pgferry_rn");
    let rows = src
        .query(sql.as_str(), &[&chunk_rows])
        .await
        .map_err(|e| Error::server(&format!("cutting {} into chunks", table.name), e))?;
    Ok(rows.iter().map(|r| (0..table.key.len()).map(|i| r.get::<_, String>(i)).collect()).collect())
}

/// Integer types whose values step by arithmetic.
const INTEGER_TYPES: &[&str] = &["smallint", "integer", "bigint"];

async fn integer_steps(src: &Client, table: &ValidatedTable, chunk_rows: i64) -> Result<Option<Vec<Vec<String>>>> {
    let [key] = table.key.as_slice() else { return Ok(None) };
    if !INTEGER_TYPES.contains(&key.type_name.as_str()) {
        return Ok(None);
    }
    let sql = Sql::new("SELECT min(")
        .ident(&key.name)
        .push(")::bigint, max(")
        .ident(&key.name)
        .push(")::bigint, (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::text::regclass) FROM ONLY ")
        .name(&table.name);
    let row = src
        .query_one(sql.as_str(), &[&table.name.to_string()])
        .await
        .map_err(|e| Error::server(&format!("reading the key range of {}", table.name), e))?;
    let (min, max, rows): (Option<i64>, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
    let (Some(min), Some(max)) = (min, max) else { return Ok(Some(Vec::new())) };
    Ok(plan_integer_steps(min, max, rows, chunk_rows)
        .map(|steps| steps.into_iter().map(|b| vec![b.to_string()]).collect()))
}

/// Steps of `chunk_rows` keys from `min` to `max`; `None` when the key range is
/// more than four times sparser than the row estimate (row-number cuts then).
fn plan_integer_steps(min: i64, max: i64, rows: i64, chunk_rows: i64) -> Option<Vec<i64>> {
    let span = (max as i128) - (min as i128) + 1;
    let chunks = span / chunk_rows as i128;
    let warranted = (rows.max(1) as i128 / chunk_rows as i128 + 1) * 4;
    if chunks > warranted {
        return None;
    }
    Some((1..=chunks as i64).map(|i| min + i * chunk_rows).filter(|b| *b <= max).collect())
}

/// `WHERE (k1, k2) >= (lo...) AND (k1, k2) < (hi...)`, with bound values as
/// parameters `$1..` cast from text to each key column's type.
pub(crate) fn range_predicate(table: &ValidatedTable, has_low: bool, has_high: bool) -> Sql {
    let mut sql = Sql::new(" WHERE true");
    let mut param = 1;
    for (present, op) in [(has_low, " >= "), (has_high, " < ")] {
        if !present {
            continue;
        }
        sql = sql.push(" AND (").ident_list(table.key.iter().map(|k| &k.name)).push(")").push(op).push("(");
        for (i, k) in table.key.iter().enumerate() {
            sql = sql.push(if i == 0 { "$" } else { ", $" }).int(param).push("::text::").server_sql(&k.type_name);
            param += 1;
        }
        sql = sql.push(")");
    }
    sql
}

/// `WHERE (k1, k2) IN (SELECT k1, k2 FROM unnest($1::text[], $2::text[]))`,
/// each unnested text cast to its key column's type.
pub(crate) fn keys_predicate(table: &ValidatedTable) -> Sql {
    let mut sql = Sql::new(" WHERE (").ident_list(table.key.iter().map(|k| &k.name)).push(") IN (SELECT ");
    for (i, k) in table.key.iter().enumerate() {
        sql = sql
            .push(if i == 0 { "pgferry_k" } else { ", pgferry_k" })
            .int(i as i64 + 1)
            .push("::")
            .server_sql(&k.type_name);
    }
    sql = sql.push(" FROM unnest(");
    for i in 0..table.key.len() {
        sql = sql.push(if i == 0 { "$" } else { ", $" }).int(i as i64 + 1).push("::text[]");
    }
    sql = sql.push(") AS pgferry_keys(");
    for i in 0..table.key.len() {
        sql = sql.push(if i == 0 { "pgferry_k" } else { ", pgferry_k" }).int(i as i64 + 1);
    }
    sql.push("))")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_integer_keys_step_by_arithmetic_and_sparse_ones_do_not() {
        assert_eq!(plan_integer_steps(1, 2000, 2000, 500), Some(vec![501, 1001, 1501]));
        assert_eq!(plan_integer_steps(5, 5, 1, 500), Some(vec![]));
        assert_eq!(plan_integer_steps(1, 1_000_000_000, 2000, 500), None);
        assert_eq!(plan_integer_steps(i64::MIN, i64::MAX, 10, 500), None);
    }

    #[test]
    fn rows_hash_exact_columns_as_they_are_and_render_the_others() {
        let columns = [
            (Ident::from_catalog("id"), true),
            (Ident::from_catalog("Amount"), false),
            (Ident::from_catalog("note"), true),
        ];
        assert_eq!(
            row_hash(&columns, true).as_str(),
            "hash_record_extended(ROW(t.\"id\", t.\"Amount\"::text, t.\"note\"), 0)"
        );
        assert_eq!(row_hash(&columns, false).as_str(), "hashtextextended(t::text, 0)", "before PostgreSQL 14");
        assert_eq!(row_hash(&[], true).as_str(), "hashtextextended(t::text, 0)", "a table without columns");
    }

    #[test]
    fn predicates_compare_key_rows_with_typed_parameters() {
        let table = ValidatedTable {
            name: QualifiedName::from_catalog("s", "t"),
            key: vec![
                KeyColumn { name: Ident::from_catalog("a"), type_name: ServerSql::from_catalog("integer") },
                KeyColumn { name: Ident::from_catalog("B"), type_name: ServerSql::from_catalog("text") },
            ],
            row_hash: row_hash(&[], true),
        };
        assert_eq!(
            range_predicate(&table, true, true).as_str(),
            " WHERE true AND (\"a\", \"B\") >= ($1::text::integer, $2::text::text) AND (\"a\", \"B\") < ($3::text::integer, $4::text::text)"
        );
        assert_eq!(range_predicate(&table, false, false).as_str(), " WHERE true");
        assert!(range_predicate(&table, false, true).as_str().contains("< ($1::text::integer"));
        assert_eq!(
            keys_predicate(&table).as_str(),
            " WHERE (\"a\", \"B\") IN (SELECT pgferry_k1::integer, pgferry_k2::text FROM unnest($1::text[], $2::text[]) AS pgferry_keys(pgferry_k1, pgferry_k2))"
        );
    }
}
