//! Change capture's journal on the target.
//!
//! `pgferry.apply_progress` holds, per migration, the end LSN of the last source
//! transaction applied, and `pgferry.apply_table_stats` the per-table counters.
//! `pgferry.follow_sample` holds the lag and throughput every few seconds
//! ([`super::samples`]), for `pgferry report`.
//! The first two are written in the same target transaction as the changes they account
//! for, so the applied position can never disagree with the data: after a crash
//! the next run starts exactly after the last committed batch, and nothing is
//! applied twice or skipped. The source's slot is told about a position only
//! after that commit (see [`super`]), which is the rule PostgreSQL's own apply
//! worker follows with its replication origin
//! ([Replication Progress Tracking](https://www.postgresql.org/docs/current/replication-origins.html)).

use std::collections::{BTreeMap, HashMap};

use pgferry_core::names::MigrationName;
use pgferry_core::phase::MigrationPhase;
use pgferry_core::sql::QualifiedName;
use pgferry_pgoutput::Lsn;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// Changes applied to one table in a batch.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Counts {
    pub inserts: i64,
    pub updates: i64,
    pub deletes: i64,
    pub truncates: i64,
}

/// Where change capture starts, and what the copy left to skip.
pub(crate) struct StartState {
    /// The last applied transaction's end, or the slot's consistent point.
    pub(crate) start: Lsn,
    /// Tables copied again under a later snapshot than the slot's, with that
    /// snapshot's position.
    pub(crate) skip_before: HashMap<QualifiedName, Lsn>,
    /// Lanes of a parallel apply that committed past `start` ([`super::lanes`]).
    pub(crate) ahead: Option<super::lanes::Ahead>,
}

/// Creates the tables when missing and reads where to start. The copy must be
/// complete: before that, the target does not hold the slot's snapshot yet.
pub(crate) async fn start_state(target: &Client, name: &MigrationName) -> Result<StartState> {
    let no_copy = || {
        Error::new(ErrorKind::Refused, format!("migration {name} has not been copied to this target"))
            .with_hint("run pgferry copy with the same --source, --target and --name first")
    };
    let exists: bool = target
        .query_one("SELECT to_regclass('pgferry.migration') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::server("reading the journal", e))?
        .get(0);
    if !exists {
        return Err(no_copy());
    }
    let row = target
        .query_opt("SELECT phase, slot_lsn::text FROM pgferry.migration WHERE name = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the journal", e))?
        .ok_or_else(no_copy)?;
    let phase: String = row.get(0);
    if MigrationPhase::parse(&phase) != Some(MigrationPhase::Copied) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("the copy of migration {name} is not finished (phase {phase})"),
        )
        .with_hint("rerun pgferry copy: it resumes, and change capture can start once it reports the copy complete"));
    }
    let slot_lsn = parse_lsn(row.get::<_, Option<String>>(1).unwrap_or_default().as_str())?;
    crate::state::ensure(target, pgferry_core::state::Side::Target).await?;
    let applied = target
        .query_opt("SELECT applied_lsn::text FROM pgferry.apply_progress WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the applied position", e))?
        .map(|r| parse_lsn(&r.get::<_, String>(0)))
        .transpose()?;
    let rows = target
        .query(
            "SELECT table_schema, table_name, max(snapshot_lsn)::text FROM pgferry.copied_chunk
             WHERE migration = $1 AND snapshot_lsn > $2::text::pg_lsn GROUP BY 1, 2",
            &[&name.as_str(), &slot_lsn.to_string()],
        )
        .await
        .map_err(|e| Error::server("reading the copy's journal", e))?;
    let mut skip_before = HashMap::new();
    for r in rows {
        let table = QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1));
        skip_before.insert(table, parse_lsn(&r.get::<_, String>(2))?);
    }
    if !skip_before.is_empty() {
        add_partition_roots(target, &mut skip_before).await?;
    }
    let start = applied.unwrap_or(slot_lsn).max(slot_lsn);
    let ahead = super::lanes::ahead(target, name, start).await?;
    Ok(StartState { start, skip_before, ahead })
}

/// Partitioned tables are published through their root, so their changes
/// arrive named by it: a root skips what its partitions' later snapshot holds
/// when every partition was copied under it (the copy copies a hierarchy under
/// one snapshot), and nothing otherwise.
async fn add_partition_roots(target: &Client, skip_before: &mut HashMap<QualifiedName, Lsn>) -> Result<()> {
    let rows = target
        .query(
            "SELECT n.nspname::text, c.relname::text, rn.nspname::text, r.relname::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_class r ON r.oid = pg_partition_root(c.oid) JOIN pg_namespace rn ON rn.oid = r.relnamespace
             WHERE c.relispartition AND c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the target's partitions", e))?;
    let mut roots: HashMap<QualifiedName, Option<Lsn>> = HashMap::new();
    for r in rows {
        let leaf = QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1));
        let root = QualifiedName::from_catalog(r.get::<_, String>(2), r.get::<_, String>(3));
        let at = skip_before.get(&leaf).copied();
        let entry = roots.entry(root).or_insert(at);
        *entry = match (*entry, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
    }
    skip_before.extend(roots.into_iter().filter_map(|(root, at)| at.map(|at| (root, at))));
    Ok(())
}

pub(crate) fn parse_lsn(text: &str) -> Result<Lsn> {
    text.parse().map_err(|e| Error::new(ErrorKind::Precondition, format!("the journal holds an invalid position: {e}")))
}

/// Records a batch's end position and counters; runs inside the batch's
/// transaction.
pub(crate) async fn record(
    target: &Client,
    name: &MigrationName,
    end_lsn: Lsn,
    commit_time_micros: Option<i64>,
    stats: &BTreeMap<QualifiedName, Counts>,
    changes_per_second: Option<f64>,
) -> Result<(), tokio_postgres::Error> {
    let (migration, lsn) = (name.as_str(), end_lsn.to_string());
    let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 4] = [
        (&migration, Type::TEXT),
        (&lsn, Type::TEXT),
        (&commit_time_micros, Type::INT8),
        (&changes_per_second, Type::FLOAT8),
    ];
    let position = target.query_typed(
        "INSERT INTO pgferry.apply_progress (migration, applied_lsn, applied_at, source_commit_time, changes_per_second)
             VALUES ($1, $2::text::pg_lsn, now(),
                     timestamptz '2000-01-01 00:00:00+00' + $3::bigint * interval '1 microsecond', $4)
             ON CONFLICT (migration) DO UPDATE SET applied_lsn = excluded.applied_lsn, applied_at = excluded.applied_at,
                 source_commit_time = coalesce(excluded.source_commit_time, pgferry.apply_progress.source_commit_time),
                 changes_per_second = coalesce(excluded.changes_per_second, pgferry.apply_progress.changes_per_second)",
        &params,
    );
    tokio::try_join!(position, record_stats(target, name, stats))?;
    Ok(())
}

/// Adds a batch's per-table counters; runs inside the batch's transaction.
pub(crate) async fn record_stats(
    target: &Client,
    name: &MigrationName,
    stats: &BTreeMap<QualifiedName, Counts>,
) -> Result<(), tokio_postgres::Error> {
    if stats.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Counts) -> i64| stats.values().map(f).collect::<Vec<i64>>();
    let schemas: Vec<&str> = stats.keys().map(|t| t.schema.as_str()).collect();
    let tables: Vec<&str> = stats.keys().map(|t| t.name.as_str()).collect();
    target
        .query_typed(
            "INSERT INTO pgferry.apply_table_stats AS s (migration, table_schema, table_name, inserts, updates, deletes, truncates)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
             ON CONFLICT (migration, table_schema, table_name) DO UPDATE SET
                 inserts = s.inserts + excluded.inserts, updates = s.updates + excluded.updates,
                 deletes = s.deletes + excluded.deletes, truncates = s.truncates + excluded.truncates",
            &[
                (&name.as_str(), Type::TEXT),
                (&schemas, Type::TEXT_ARRAY),
                (&tables, Type::TEXT_ARRAY),
                (&column(|c| c.inserts), Type::INT8_ARRAY),
                (&column(|c| c.updates), Type::INT8_ARRAY),
                (&column(|c| c.deletes), Type::INT8_ARRAY),
                (&column(|c| c.truncates), Type::INT8_ARRAY),
            ],
        )
        .await?;
    Ok(())
}
