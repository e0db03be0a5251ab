//! `pgferry report`: what the target's journal recorded of a migration, read
//! back as one value for the CLI to draw (HTML) or print (JSON).
//!
//! It reads only the target: the source may be gone long before the report is
//! wanted. Everything comes from the journal tables the executors write as they
//! go: `pgferry.timeline` (phases, cutover steps, validations, the preflight's
//! findings, [`crate::timeline`]), `pgferry.copied_chunk` (each piece of the copy),
//! `pgferry.follow_sample` (change capture's lag and throughput) and
//! `pgferry.cutover` (the downtime). A table an older release never created
//! reads as empty. `cleanup` drops the journal: report before it.

use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::timeline::Kind;

/// Times are seconds since 1970-01-01 UTC, and as text (UTC, to the second) for reading.
#[derive(Clone, Debug, Serialize)]
pub struct When {
    pub epoch: f64,
    pub utc: String,
}

#[derive(Debug, Serialize)]
pub struct Milestone {
    pub at: When,
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct Validation {
    pub at: When,
    pub verdict: String,
    pub mode: Option<String>,
    pub mismatched_chunks: Option<i64>,
    pub rows_compared: Option<i64>,
}

/// One table's copy (`schema.table`, unquoted): from its first piece's start
/// to its last piece's end.
#[derive(Debug, Serialize)]
pub struct CopiedTable {
    pub table: String,
    pub rows: i64,
    pub bytes: i64,
    pub pieces: i64,
    pub started: When,
    pub finished: When,
    pub seconds: f64,
}

/// One piece's end, for the copy's throughput over time.
#[derive(Debug, Serialize)]
pub struct CopiedPiece {
    pub finished: When,
    pub bytes: i64,
}

#[derive(Debug, Serialize)]
pub struct Sample {
    pub at: When,
    pub lag_bytes: i64,
    pub lag_seconds: f64,
    pub changes_per_second: f64,
    pub slot_retained_bytes: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Cutover {
    /// The last step journaled.
    pub step: String,
    /// From the fence to the switch's success, as the cutover measured it.
    pub downtime_seconds: Option<f64>,
}

/// Everything the journal recorded of one migration.
#[derive(Debug, Serialize)]
pub struct MigrationRecord {
    pub migration: String,
    pub phases: Vec<Milestone>,
    pub cutover_steps: Vec<Milestone>,
    pub cutover: Option<Cutover>,
    pub validations: Vec<Validation>,
    /// The preflight's findings when the copy began (`None`: not recorded,
    /// e.g. a seeded migration).
    pub preflight: Option<serde_json::Value>,
    pub tables: Vec<CopiedTable>,
    pub pieces: Vec<CopiedPiece>,
    pub samples: Vec<Sample>,
}

/// Reads the migration's record from the target's journal.
pub async fn read(target: &ConnSpec, name: &MigrationName) -> Result<MigrationRecord> {
    let dst = pgferry_pg::connect(target).await?;
    if !exists(&dst, "pgferry.migration").await? {
        return Err(nothing_recorded(name));
    }
    let known: bool = query(&dst, "SELECT EXISTS (SELECT FROM pgferry.migration WHERE name = $1)", name)
        .await?
        .first()
        .is_some_and(|r| r.get(0));
    if !known {
        return Err(nothing_recorded(name));
    }
    let mut record = MigrationRecord {
        migration: name.to_string(),
        phases: Vec::new(),
        cutover_steps: Vec::new(),
        cutover: None,
        validations: Vec::new(),
        preflight: None,
        tables: Vec::new(),
        pieces: Vec::new(),
        samples: Vec::new(),
    };
    if exists(&dst, "pgferry.timeline").await? {
        read_timeline(&dst, name, &mut record).await?;
    }
    if exists(&dst, "pgferry.copied_chunk").await? {
        read_copy(&dst, name, &mut record).await?;
    }
    if exists(&dst, "pgferry.follow_sample").await? {
        record.samples = query(
            &dst,
            "SELECT extract(epoch FROM sampled_at)::float8, to_char(sampled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    lag_bytes, lag_seconds, changes_per_second, slot_retained_bytes
             FROM pgferry.follow_sample WHERE migration = $1 ORDER BY sampled_at",
            name,
        )
        .await?
        .iter()
        .map(|r| Sample {
            at: When { epoch: r.get(0), utc: r.get(1) },
            lag_bytes: r.get(2),
            lag_seconds: r.get(3),
            changes_per_second: r.get(4),
            slot_retained_bytes: r.get(5),
        })
        .collect();
    }
    if exists(&dst, "pgferry.cutover").await? {
        record.cutover = query(&dst, "SELECT step, downtime_seconds FROM pgferry.cutover WHERE migration = $1", name)
            .await?
            .first()
            .map(|r| Cutover { step: r.get(0), downtime_seconds: r.get(1) });
    }
    Ok(record)
}

async fn read_timeline(dst: &Client, name: &MigrationName, record: &mut MigrationRecord) -> Result<()> {
    let rows = query(
        dst,
        "SELECT extract(epoch FROM at)::float8, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), kind, name, detail
         FROM pgferry.timeline WHERE migration = $1 ORDER BY at",
        name,
    )
    .await?;
    for r in rows {
        let at = When { epoch: r.get(0), utc: r.get(1) };
        let kind: String = r.get(2);
        let what: String = r.get(3);
        let detail: Option<serde_json::Value> = r.get(4);
        let field = |key: &str| detail.as_ref().and_then(|d| d.get(key)).cloned();
        match Kind::parse(&kind) {
            Some(Kind::Phase) => record.phases.push(Milestone { at, name: what }),
            Some(Kind::CutoverStep) => record.cutover_steps.push(Milestone { at, name: what }),
            Some(Kind::Validation) => record.validations.push(Validation {
                at,
                verdict: what,
                mode: field("mode").and_then(|v| v.as_str().map(str::to_string)),
                mismatched_chunks: field("mismatched_chunks").and_then(|v| v.as_i64()),
                rows_compared: field("rows_compared").and_then(|v| v.as_i64()),
            }),
            Some(Kind::Preflight) => record.preflight = detail,
            None => {}
        }
    }
    Ok(())
}

async fn read_copy(dst: &Client, name: &MigrationName, record: &mut MigrationRecord) -> Result<()> {
    let tables = query(
        dst,
        "SELECT table_schema, table_name, sum(rows)::bigint, sum(bytes)::bigint, count(*),
                extract(epoch FROM min(copied_at))::float8, to_char(min(copied_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                extract(epoch FROM max(finished_at))::float8, to_char(max(finished_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                extract(epoch FROM max(finished_at) - min(copied_at))::float8
         FROM pgferry.copied_chunk WHERE migration = $1
         GROUP BY 1, 2 ORDER BY min(copied_at), 1, 2",
        name,
    )
    .await?;
    record.tables = tables
        .iter()
        .map(|r| CopiedTable {
            table: format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)),
            rows: r.get(2),
            bytes: r.get(3),
            pieces: r.get(4),
            started: When { epoch: r.get(5), utc: r.get(6) },
            finished: When { epoch: r.get(7), utc: r.get(8) },
            seconds: r.get(9),
        })
        .collect();
    let pieces = query(
        dst,
        "SELECT extract(epoch FROM finished_at)::float8, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), bytes
         FROM pgferry.copied_chunk WHERE migration = $1 ORDER BY finished_at",
        name,
    )
    .await?;
    record.pieces = pieces
        .iter()
        .map(|r| CopiedPiece { finished: When { epoch: r.get(0), utc: r.get(1) }, bytes: r.get(2) })
        .collect();
    Ok(())
}

async fn exists(dst: &Client, table: &str) -> Result<bool> {
    Ok(dst
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(|e| Error::server("looking for the journal", e))?
        .get(0))
}

async fn query(dst: &Client, sql: &str, name: &MigrationName) -> Result<Vec<tokio_postgres::Row>> {
    dst.query(sql, &[&name.as_str()]).await.map_err(|e| Error::server("reading the journal", e))
}

fn nothing_recorded(name: &MigrationName) -> Error {
    Error::new(ErrorKind::Refused, format!("the target journals no migration named {name}"))
        .with_hint("give the --target and --name the migration ran with, before pgferry cleanup drops its journal")
}
