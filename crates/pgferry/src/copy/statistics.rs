//! The copied tables' planner statistics: carried from the source where the
//! target is PostgreSQL 18 or later, gathered by `ANALYZE` otherwise.
//!
//! `ANALYZE` of every table after its rows and indexes are in reads a sample of
//! each table again and is a large part of the copy's tail. PostgreSQL 18 can
//! write statistics directly
//! ([`pg_restore_relation_stats`, `pg_restore_attribute_stats`](https://www.postgresql.org/docs/18/functions-admin.html#FUNCTIONS-ADMIN-STATSMOD)),
//! so where the target is 18 each plain table's statistics are read from the
//! source (`pg_class`, every row of `pg_stats` for the table and for its
//! expression indexes, read by column name since `pg_stats` grows columns by
//! version) and written to the target, one call per relation and one per table
//! for all its columns. That is sound because the copy reproduces the source's
//! rows: the statistics that describe the source's data describe the target's,
//! and the planner on the target makes the estimates it makes on the source.
//! They are as old as the source's last `ANALYZE`; the copied rows count as
//! changes since it on the target, so autovacuum analyzes each table there
//! soon after the copy, off its critical path, and brings them up to date.
//!
//! The relation's numbers keep the planner's ratios rather than the source's
//! raw values: the planner reads `reltuples / relpages` as a density and
//! multiplies it by the table's current size, and `relallvisible` as a share of
//! it. A copy holds no dead rows and is often smaller than the source, so
//! `relpages` is the target's own size, `reltuples` the source's, and
//! `relallvisible` / `relallfrozen` the source's shares of the target's pages:
//! the row estimate equals the source's. Index sizes are not carried: the index
//! builds have just counted them.
//!
//! `pg_dump --statistics-only` (18) writes the same calls, but as one more dump
//! and restore of the whole database, after every table is in rather than as
//! each table's indexes finish, with the source's raw `relpages`, and with
//! nothing to say which table it could not restore (a refusal is a warning in
//! the restore's output). The functions called here give each table its own
//! decision and its own fallback: a table is analyzed instead when
//! - the source never analyzed it (`reltuples` -1; before 14, 0 while the copy
//!   has rows, the next case), or some column it would
//!   analyze has no statistics there (never analyzed since it was added, or not
//!   readable by the copy's role): carried statistics would be missing what
//!   `ANALYZE` gives;
//! - the source's statistics say it is empty and the copy has rows, or the
//!   other way round: they are stale beyond the planner's scaling;
//! - a column's type keeps statistics `pg_stats` does not show (range types
//!   before 17, an extension's type with its own `typanalyze`, as PostGIS's):
//!   the target's planner would lack what the source's has;
//! - it has extended statistics (`CREATE STATISTICS`): PostgreSQL 18 cannot
//!   restore those, and `ANALYZE` of their columns reads the same sample as of
//!   the whole table, so the whole table is analyzed, after post-data, whose
//!   restore creates the statistics objects (on every target version: an
//!   `ANALYZE` before it would leave them empty);
//! - a function refuses part of what it is given (it returns false and logs a
//!   warning on the target): `ANALYZE` overwrites whatever was written.
//!
//! Partitioned tables are always analyzed: autovacuum never analyzes them, so
//! their statistics on the source are only as new as someone's last manual
//! `ANALYZE`, and would stay so on the target. On 18 that is `ANALYZE ONLY`:
//! their partitions already have statistics, carried or analyzed. Materialized
//! views are refreshed on the target and analyzed after. Targets before 18
//! analyze every table, as before. The copy's summary says how many tables were
//! carried and how many analyzed, and why.
//!
//! Writing statistics takes the same lock as `ANALYZE` (SHARE UPDATE
//! EXCLUSIVE), so both run where `ANALYZE` ran before: after the table's own
//! index builds (see [`super::indexes`]). A partition's indexes, which
//! `pg_restore` builds later with its parent's, leave them as they are on 18
//! (the copy's statistics test checks it).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use pgferry_core::sql::{Ident, QualifiedName, Sql};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// Why a table was analyzed rather than given the source's statistics.
const TARGET_BEFORE_18: &str = "the target is older than PostgreSQL 18";
const PARTITIONED: &str = "partitioned: autovacuum never analyzes it, so the source's may be long stale";
pub(crate) const MATERIALIZED_VIEW: &str = "materialized view, refreshed on the target";
const NEVER_ANALYZED: &str = "never analyzed on the source";
const COLUMNS_WITHOUT_STATISTICS: &str = "some columns have no statistics on the source";
const STALE_EMPTY: &str = "the source's statistics describe it empty, the copy has rows";
const STALE_ROWS: &str = "the source's statistics count rows, the copy is empty";
const EXTENDED: &str = "it has extended statistics (CREATE STATISTICS), which PostgreSQL cannot restore";
const HIDDEN_STATISTICS: &str =
    "a column's type keeps statistics the source's pg_stats does not show (ranges before 17, an extension's types)";
const REFUSED: &str = "the target refused part of the source's statistics (its log has the warning)";
const NOT_ON_SOURCE: &str = "not found on the source";

/// The columns of `pg_stats` carried, read as text and cast in
/// [`RESTORE_ATTRIBUTES`] to the type `pg_restore_attribute_stats` expects
/// (value arrays stay text: the function reads them as the column's type).
/// Range statistics joined `pg_stats` in 17; a column the source lacks is
/// passed as NULL, which the function skips.
const ATTRIBUTE_STATS: [&str; 13] = [
    "null_frac",
    "avg_width",
    "n_distinct",
    "most_common_vals",
    "most_common_freqs",
    "histogram_bounds",
    "correlation",
    "most_common_elems",
    "most_common_elem_freqs",
    "elem_count_histogram",
    "range_length_histogram",
    "range_empty_frac",
    "range_bounds_histogram",
];

/// One call per table for all its columns and its expression indexes'
/// (`attnum` for an index's columns, whose names are generated, `attname` for
/// the table's, whose numbers differ where the source has dropped columns).
/// An index the target does not have yet (a partition's, built later by
/// `pg_restore`) is skipped, as `ANALYZE` would skip it.
const RESTORE_ATTRIBUTES: &str = "SELECT coalesce(bool_and(pg_catalog.pg_restore_attribute_stats(
        'version', $1::int4, 'schemaname', $2::text, 'relname', s.relname,
        'attname', CASE WHEN s.attnum IS NULL THEN s.attname END, 'attnum', s.attnum,
        'inherited', s.inherited,
        'null_frac', s.null_frac::real, 'avg_width', s.avg_width::int4, 'n_distinct', s.n_distinct::real,
        'most_common_vals', s.most_common_vals, 'most_common_freqs', s.most_common_freqs::real[],
        'histogram_bounds', s.histogram_bounds, 'correlation', s.correlation::real,
        'most_common_elems', s.most_common_elems, 'most_common_elem_freqs', s.most_common_elem_freqs::real[],
        'elem_count_histogram', s.elem_count_histogram::real[],
        'range_length_histogram', s.range_length_histogram, 'range_empty_frac', s.range_empty_frac::real,
        'range_bounds_histogram', s.range_bounds_histogram)), true)
    FROM unnest($3::text[], $4::int2[], $5::text[], $6::bool[], $7::text[], $8::text[], $9::text[], $10::text[],
                $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                $18::text[], $19::text[])
      AS s(relname, attnum, attname, inherited, null_frac, avg_width, n_distinct, most_common_vals,
           most_common_freqs, histogram_bounds, correlation, most_common_elems, most_common_elem_freqs,
           elem_count_histogram, range_length_histogram, range_empty_frac, range_bounds_histogram)
    WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $2 AND c.relname = s.relname)";

const RESTORE_RELATION: &str = "SELECT pg_catalog.pg_restore_relation_stats(
        'version', $1::int4, 'schemaname', $2::text, 'relname', $3::text,
        'relpages', $4::int4, 'reltuples', $5::real, 'relallvisible', $6::int4, 'relallfrozen', $7::int4)";

/// Which tables got the source's statistics and which were analyzed, in this run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatisticsReport {
    pub carried: Vec<String>,
    pub analyzed: Vec<AnalyzedTable>,
    /// Seconds the workers spent reading and writing statistics (summed over
    /// workers; a table tried and then analyzed counts here too).
    pub carry_seconds: f64,
    /// Seconds the workers spent in ANALYZE (summed over workers).
    pub analyze_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AnalyzedTable {
    pub table: String,
    pub why: &'static str,
}

/// How the copy gives its tables statistics, and what it did.
pub(crate) struct Statistics {
    carry: Option<Carry>,
    /// The tables with extended statistics on the source.
    extended: HashSet<QualifiedName>,
    /// Those of them whose data is in, analyzed after post-data.
    deferred: Mutex<Vec<QualifiedName>>,
    report: Mutex<StatisticsReport>,
}

/// A session on the source (shared by every worker: its reads are short) and
/// what the source's catalog holds.
struct Carry {
    source: Client,
    source_version: i32,
    /// The source's `pg_stats` query for one table and its indexes.
    read_attributes: Sql,
    /// The source's `pg_class` query for one table.
    read_relation: Sql,
}

impl Statistics {
    /// Lists the source's tables with extended statistics (analyzed after
    /// post-data on every target) and, where the target is 18 or later, opens
    /// the session statistics are read through.
    pub(crate) async fn new(source: &ConnSpec, src: &Client, dst: &Client) -> Result<Self> {
        let extended = src
            .query(
                "SELECT DISTINCT n.nspname::text, c.relname::text FROM pg_catalog.pg_statistic_ext e
                 JOIN pg_catalog.pg_class c ON c.oid = e.stxrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
                &[],
            )
            .await
            .map_err(|e| Error::server("listing the source's extended statistics", e))?
            .iter()
            .map(|r| QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        let carry = if super::server_version_num(dst, "target").await? >= 180_000 {
            let src = pgferry_pg::connect(source).await?;
            let source_version = super::server_version_num(&src, "source").await?;
            let stats_columns: Vec<String> = src
                .query(
                    "SELECT attname::text FROM pg_catalog.pg_attribute
                     WHERE attrelid = 'pg_catalog.pg_stats'::regclass AND attnum > 0",
                    &[],
                )
                .await
                .map_err(|e| Error::server("reading which statistics the source keeps", e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Some(Carry {
                read_attributes: read_attributes_sql(&stats_columns),
                read_relation: read_relation_sql(
                    source_version >= 180_000,
                    stats_columns.iter().any(|c| c == "range_bounds_histogram"),
                ),
                source: src,
                source_version,
            })
        } else {
            None
        };
        Ok(Statistics {
            carry,
            extended,
            deferred: Mutex::new(Vec::new()),
            report: Mutex::new(StatisticsReport::default()),
        })
    }

    /// Gives a plain table (or partition) whose data and indexes are in
    /// statistics: the source's where they can be carried, else `ANALYZE`; a
    /// table with extended statistics is left for after post-data, which
    /// creates their objects ([`Statistics::deferred`]).
    pub(crate) async fn table(&self, client: &Client, table: &QualifiedName) -> Result<()> {
        if self.extended.contains(table) {
            self.deferred.lock().unwrap_or_else(|e| e.into_inner()).push(table.clone());
            return Ok(());
        }
        self.table_now(client, table).await
    }

    /// [`Statistics::table`] once post-data is restored: a table with extended
    /// statistics is analyzed.
    pub(crate) async fn table_after_post_data(&self, client: &Client, table: &QualifiedName) -> Result<()> {
        if self.extended.contains(table) {
            return self.analyze(client, table, EXTENDED).await;
        }
        self.table_now(client, table).await
    }

    /// The tables [`Statistics::table`] left for after post-data.
    pub(crate) fn deferred(&self) -> Vec<QualifiedName> {
        std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn table_now(&self, client: &Client, table: &QualifiedName) -> Result<()> {
        let Some(carry) = &self.carry else { return self.analyze(client, table, TARGET_BEFORE_18).await };
        let clock = Instant::now();
        let outcome = carry.restore(client, table).await?;
        {
            let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
            report.carry_seconds += clock.elapsed().as_secs_f64();
            if outcome.is_none() {
                report.carried.push(table.to_string());
            }
        }
        match outcome {
            None => Ok(()),
            Some(why) => self.analyze(client, table, why).await,
        }
    }

    /// A partitioned table's `ANALYZE`: on 18 and later `ANALYZE ONLY`, since its
    /// partitions have statistics of their own by now (carried or analyzed);
    /// before 18, where `ONLY` does not exist, the partitions are analyzed again.
    pub(crate) async fn partitioned(&self, client: &Client, table: &QualifiedName) -> Result<()> {
        let only = if self.carry.is_some() { "ANALYZE ONLY " } else { "ANALYZE " };
        self.run_analyze(client, Sql::new(only).name(table), table, PARTITIONED).await
    }

    /// `ANALYZE`, with the reason it was chosen.
    pub(crate) async fn analyze(&self, client: &Client, table: &QualifiedName, why: &'static str) -> Result<()> {
        self.run_analyze(client, Sql::new("ANALYZE ").name(table), table, why).await
    }

    async fn run_analyze(&self, client: &Client, sql: Sql, table: &QualifiedName, why: &'static str) -> Result<()> {
        let clock = Instant::now();
        client.batch_execute(sql.as_str()).await.map_err(|e| Error::server(&format!("analyzing {table}"), e))?;
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        report.analyze_seconds += clock.elapsed().as_secs_f64();
        report.analyzed.push(AnalyzedTable { table: table.to_string(), why });
        Ok(())
    }

    pub(crate) fn report(&self) -> StatisticsReport {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The source's `pg_stats` rows of a table (`$1`.`$2`) and its indexes, every
/// statistic as text, NULL where the source's `pg_stats` lacks the column.
fn read_attributes_sql(stats_columns: &[String]) -> Sql {
    let mut sql =
        Sql::new("SELECT c.relname::text, CASE WHEN c.relkind = 'i' THEN a.attnum END, s.attname::text, s.inherited");
    for column in ATTRIBUTE_STATS {
        sql = if stats_columns.iter().any(|c| c == column) {
            sql.push(", s.").ident(&Ident::from_catalog(column)).push("::text")
        } else {
            sql.push(", NULL::text")
        };
    }
    sql.push(
        " FROM pg_catalog.pg_stats s
          JOIN pg_catalog.pg_namespace n ON n.nspname = s.schemaname
          JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = s.attname
          WHERE n.nspname = $1
            AND (c.relname = $2 OR c.oid IN (SELECT x.indexrelid FROM pg_catalog.pg_index x
                                              JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
                                              WHERE t.relnamespace = n.oid AND t.relname = $2))",
    )
}

/// The source's relation statistics of a table (`$1`.`$2`), whether it has
/// extended statistics, how many of the columns `ANALYZE` would give
/// statistics (not dropped, statistics target not 0, not virtual) have none,
/// and whether a column's type gathers statistics `pg_stats` does not show:
/// those of a type with its own `typanalyze` function (an extension's, such as
/// PostGIS's) and, before 17, of range types.
/// `relallfrozen` and virtual generated columns (never analyzed) are new in 18.
fn read_relation_sql(source_18: bool, shows_ranges: bool) -> Sql {
    Sql::new("SELECT c.reltuples, c.relpages, c.relallvisible, ")
        .push(if source_18 { "c.relallfrozen" } else { "NULL::int4" })
        .push(
            ", EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext e WHERE e.stxrelid = c.oid),
               EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND t.typanalyze::oid <> 0
                         AND t.typanalyze::text NOT IN ('array_typanalyze', 'ts_typanalyze'",
        )
        .push(if shows_ranges { ", 'range_typanalyze', 'multirange_typanalyze'))" } else { "))" })
        .push(
            ",
               (SELECT count(*) FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND coalesce(a.attstattarget, -1) <> 0",
        )
        .push(if source_18 { " AND a.attgenerated <> 'v'" } else { "" })
        .push(
            "
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stats s
                                  WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = a.attname
                                    AND NOT s.inherited))
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'",
        )
}

/// A table's statistics on the source, as far as the decision needs them.
#[derive(Clone, Debug)]
struct SourceRelation {
    reltuples: f32,
    relpages: i32,
    relallvisible: i32,
    relallfrozen: Option<i32>,
    extended: bool,
    /// Some column's statistics are not in `pg_stats` ([`read_relation_sql`]).
    hidden_statistics: bool,
    columns_without_statistics: i64,
}

/// What `pg_restore_relation_stats` is given.
#[derive(Debug, PartialEq)]
struct RelationStats {
    relpages: i32,
    reltuples: f32,
    relallvisible: i32,
    relallfrozen: Option<i32>,
}

/// The relation statistics to write for a table of `target_pages` pages, or
/// why it is to be analyzed instead.
fn relation_stats(source: &SourceRelation, target_pages: i32) -> std::result::Result<RelationStats, &'static str> {
    if source.reltuples < 0.0 {
        return Err(NEVER_ANALYZED);
    }
    if source.extended {
        return Err(EXTENDED);
    }
    if source.hidden_statistics {
        return Err(HIDDEN_STATISTICS);
    }
    if source.reltuples > 0.0 && source.columns_without_statistics > 0 {
        return Err(COLUMNS_WITHOUT_STATISTICS);
    }
    match (source.reltuples > 0.0, target_pages > 0) {
        (false, true) => return Err(STALE_EMPTY),
        (true, false) => return Err(STALE_ROWS),
        _ => {}
    }
    let share = |count: i32| {
        if source.relpages <= 0 {
            return 0;
        }
        let scaled = (f64::from(count) * f64::from(target_pages) / f64::from(source.relpages)).round();
        // Within 0..=target_pages, so the conversion cannot truncate.
        scaled.clamp(0.0, f64::from(target_pages)) as i32
    };
    Ok(RelationStats {
        relpages: target_pages,
        reltuples: source.reltuples,
        relallvisible: share(source.relallvisible),
        relallfrozen: source.relallfrozen.map(share),
    })
}

/// The source's `pg_stats` rows, column by column, as the restore call takes them.
#[derive(Default)]
struct AttributeRows {
    relname: Vec<String>,
    attnum: Vec<Option<i16>>,
    attname: Vec<String>,
    inherited: Vec<bool>,
    values: [Vec<Option<String>>; ATTRIBUTE_STATS.len()],
}

impl Carry {
    /// Writes the source's statistics of `table` on the target; `Some(why)`
    /// when it is to be analyzed instead.
    async fn restore(&self, dst: &Client, table: &QualifiedName) -> Result<Option<&'static str>> {
        let (schema, name) = (table.schema.as_str(), table.name.as_str());
        let read = |e| Error::server(&format!("reading the statistics of {table} on the source"), e);
        let Some(row) = self.source.query_opt(self.read_relation.as_str(), &[&schema, &name]).await.map_err(read)?
        else {
            return Ok(Some(NOT_ON_SOURCE));
        };
        let source = SourceRelation {
            reltuples: row.get(0),
            relpages: row.get(1),
            relallvisible: row.get(2),
            relallfrozen: row.get(3),
            extended: row.get(4),
            hidden_statistics: row.get(5),
            columns_without_statistics: row.get(6),
        };
        let target_pages: i32 = dst
            .query_one(
                "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int4
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &name],
            )
            .await
            .map_err(|e| Error::server(&format!("reading the size of {table} on the target"), e))?
            .get(0);
        let stats = match relation_stats(&source, target_pages) {
            Ok(stats) => stats,
            Err(why) => return Ok(Some(why)),
        };
        let mut rows = AttributeRows::default();
        for row in self.source.query(self.read_attributes.as_str(), &[&schema, &name]).await.map_err(read)? {
            rows.relname.push(row.get(0));
            rows.attnum.push(row.get(1));
            rows.attname.push(row.get(2));
            rows.inherited.push(row.get(3));
            for (i, values) in rows.values.iter_mut().enumerate() {
                values.push(row.get(4 + i));
            }
        }
        // Where a test changes the target under the statistics read, to see a refusal.
        crate::failpoint::pause("copy-before-statistics").await;
        let write = |e| Error::server(&format!("writing the statistics of {table} on the target"), e);
        let relation_written: bool = dst
            .query_one(
                RESTORE_RELATION,
                &[
                    &self.source_version,
                    &schema,
                    &name,
                    &stats.relpages,
                    &stats.reltuples,
                    &stats.relallvisible,
                    &stats.relallfrozen,
                ],
            )
            .await
            .map_err(write)?
            .get(0);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&self.source_version, &schema, &rows.relname, &rows.attnum, &rows.attname, &rows.inherited];
        params.extend(rows.values.iter().map(|v| v as &(dyn ToSql + Sync)));
        let attributes_written: bool = dst.query_one(RESTORE_ATTRIBUTES, &params).await.map_err(write)?.get(0);
        Ok((!(relation_written && attributes_written)).then_some(REFUSED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyzed(reltuples: f32, relpages: i32) -> SourceRelation {
        SourceRelation {
            reltuples,
            relpages,
            relallvisible: relpages / 2,
            relallfrozen: Some(relpages / 4),
            extended: false,
            hidden_statistics: false,
            columns_without_statistics: 0,
        }
    }

    #[test]
    fn the_row_estimate_and_visible_share_are_the_sources_on_the_targets_pages() {
        let stats = relation_stats(&analyzed(10_000.0, 200), 100).unwrap();
        assert_eq!(
            stats,
            RelationStats { relpages: 100, reltuples: 10_000.0, relallvisible: 50, relallfrozen: Some(25) }
        );
        let mut older = analyzed(10_000.0, 200);
        older.relallfrozen = None;
        older.relallvisible = 400;
        let stats = relation_stats(&older, 100).unwrap();
        assert_eq!((stats.relallvisible, stats.relallfrozen), (100, None), "never beyond the table's pages");
    }

    #[test]
    fn an_empty_table_carries_without_column_statistics() {
        let mut empty = analyzed(0.0, 0);
        empty.columns_without_statistics = 3;
        assert_eq!(relation_stats(&empty, 0).unwrap().relallvisible, 0);
    }

    #[test]
    fn incomplete_or_stale_statistics_are_analyzed_instead() {
        assert_eq!(relation_stats(&analyzed(-1.0, 0), 10), Err(NEVER_ANALYZED));
        let mut extended = analyzed(10.0, 1);
        extended.extended = true;
        assert_eq!(relation_stats(&extended, 1), Err(EXTENDED));
        let mut hidden = analyzed(10.0, 1);
        hidden.hidden_statistics = true;
        assert_eq!(relation_stats(&hidden, 1), Err(HIDDEN_STATISTICS));
        let mut partial = analyzed(10.0, 1);
        partial.columns_without_statistics = 1;
        assert_eq!(relation_stats(&partial, 1), Err(COLUMNS_WITHOUT_STATISTICS));
        assert_eq!(relation_stats(&analyzed(0.0, 0), 5), Err(STALE_EMPTY));
        assert_eq!(relation_stats(&analyzed(10.0, 1), 0), Err(STALE_ROWS));
    }

    #[test]
    fn statistics_the_source_lacks_are_read_as_null() {
        let sql = read_attributes_sql(&["null_frac".to_string()]);
        assert!(sql.as_str().contains(", s.\"null_frac\"::text, NULL::text"), "{sql}");
        assert_eq!(sql.as_str().matches("NULL::text").count(), ATTRIBUTE_STATS.len() - 1);
    }

    #[test]
    fn columns_new_in_18_are_read_only_from_18() {
        let older = read_relation_sql(false, false);
        assert!(!older.as_str().contains("relallfrozen") && !older.as_str().contains("attgenerated"), "{older}");
        assert!(!older.as_str().contains("'range_typanalyze'"), "ranges counted as hidden before 17: {older}");
        let newer = read_relation_sql(true, true);
        assert!(newer.as_str().contains("c.relallfrozen") && newer.as_str().contains("attgenerated <> 'v'"));
        assert!(newer.as_str().contains("'range_typanalyze', 'multirange_typanalyze'"));
    }
}
