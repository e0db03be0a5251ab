//! `pgferry status`: where a migration stands, from any terminal, read from the
//! journal on the target and the slot on the source. Read-only.
//!
//! The slot's retained WAL and the headroom before `max_slot_wal_keep_size`
//! invalidates it (`pg_replication_slots.safe_wal_size`, see
//! [the view](https://www.postgresql.org/docs/current/view-pg-replication-slots.html))
//! are shown with a warning when the slot is at risk, since a lost slot means
//! copying everything again.
//!
//! It answers within seconds whatever the state of the servers: both are
//! reached at once, each within its connect timeout, and each side's reads
//! must finish within the same limit, so a server that is down, or a
//! connection that went half-open, is reported as that side unreachable with
//! the cause instead of waited on.

use pgferry_core::cutover::{go_no_go, Decision, Policy};
use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// Where a migration stands.
#[derive(Debug, Serialize)]
pub struct Status {
    pub migration: String,
    /// The copy's phase, `None` before `pgferry copy` ran.
    pub phase: Option<String>,
    pub slot_lsn: Option<String>,
    pub applied_lsn: Option<String>,
    pub applied_at: Option<String>,
    /// Change capture's rate over its last status interval.
    pub changes_per_second: Option<f64>,
    pub source_lsn: String,
    pub lag_bytes: Option<i64>,
    pub slot: Option<SlotStatus>,
    pub tables: Vec<TableCounters>,
    pub fenced: bool,
    pub cutover_step: Option<String>,
    /// The last `pgferry validate`, if any.
    pub validation: Option<crate::validate::LastValidation>,
    /// Rows change capture touched since they were last found equal: what
    /// `validate --changed-only` and the cutover will compare.
    pub touched_rows: i64,
    /// Whether `pgferry cutover` would start now, and if not, why.
    pub cutover: Decision,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SlotStatus {
    pub active: bool,
    pub retained_wal_bytes: i64,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL that may still be written before the slot is at risk; `None`
    /// when `max_slot_wal_keep_size` is unlimited.
    pub safe_wal_size: Option<i64>,
}

/// The change counters of one table.
#[derive(Debug, Serialize)]
pub struct TableCounters {
    pub table: String,
    pub inserts: i64,
    pub updates: i64,
    pub deletes: i64,
    pub truncates: i64,
}

/// A slot with less than this share of `max_slot_wal_keep_size` left is at risk.
const SLOT_RISK_SHARE: f64 = 0.2;

/// What the target's journal says.
struct TargetSide {
    phase: Option<String>,
    slot_lsn: Option<String>,
    applied_lsn: Option<String>,
    applied_at: Option<String>,
    changes_per_second: Option<f64>,
    tables: Vec<TableCounters>,
    cutover_step: Option<String>,
    validation: Option<crate::validate::LastValidation>,
    touched_rows: i64,
}

/// What the source says.
struct SourceSide {
    fenced: bool,
    source_lsn: String,
    lag_bytes: Option<i64>,
    slot: Option<SlotStatus>,
    keep_size_bytes: Option<i64>,
    insert_only_tables: Vec<String>,
}

pub async fn status(source: &ConnSpec, target: &ConnSpec, migration: &MigrationName) -> Result<Status> {
    let (src, dst) = match tokio::join!(reach("source", source), reach("target", target)) {
        (Ok(src), Ok(dst)) => (src, dst),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
        (Err(s), Err(t)) => {
            return Err(Error::new(ErrorKind::Connection, format!("{}; and {}", s.message, t.message))
                .with_hint("check that both servers run and that this machine may reach them"))
        }
    };
    let t = answered("target", target, read_target(&dst, migration)).await??;
    let s = answered("source", source, read_source(&src, migration, t.applied_lsn.as_deref())).await??;
    let observed = pgferry_core::cutover::Observed {
        lag_bytes: s.lag_bytes.unwrap_or(0),
        validation_mismatches: t.validation.as_ref().map_or(0, |v| v.mismatched_chunks),
        replicating: t.phase.as_deref() == Some("copied") && t.applied_lsn.is_some(),
        stream_in_use: s.slot.as_ref().is_some_and(|s| s.active),
        insert_only_tables: s.insert_only_tables,
        ..Default::default()
    };
    let mut warnings = Vec::new();
    if let Some(slot) = &s.slot {
        if slot_at_risk(slot, s.keep_size_bytes) {
            warnings.push(format!(
                "the slot {} is at risk (wal_status {}, {} bytes of headroom): keep change capture running, or raise max_slot_wal_keep_size",
                migration.slot(),
                slot.wal_status.as_deref().unwrap_or("?"),
                slot.safe_wal_size.map(|b| b.to_string()).unwrap_or_else(|| "unknown".into())
            ));
        }
    } else if t.phase.is_some() {
        warnings.push(format!("the slot {} does not exist on the source", migration.slot()));
    }
    Ok(Status {
        migration: migration.to_string(),
        phase: t.phase,
        slot_lsn: t.slot_lsn,
        applied_lsn: t.applied_lsn,
        applied_at: t.applied_at,
        changes_per_second: t.changes_per_second,
        source_lsn: s.source_lsn,
        lag_bytes: s.lag_bytes,
        slot: s.slot,
        tables: t.tables,
        fenced: s.fenced,
        cutover_step: t.cutover_step,
        validation: t.validation,
        touched_rows: t.touched_rows,
        cutover: go_no_go(&observed, &Policy::default()),
        warnings,
    })
}

/// Connects to one side (within its connect timeout), naming the side when it
/// cannot.
async fn reach(side: &str, spec: &ConnSpec) -> Result<Client> {
    pgferry_pg::connect(spec).await.map_err(|e| {
        let unreachable = e.failure == pgferry_pg::ConnectFailure::Unreachable;
        let mut error = Error::from(e);
        error.message = if unreachable {
            format!("the {side} is unreachable: {}", error.message)
        } else {
            format!("the {side}: {}", error.message)
        };
        error
    })
}

/// Waits for one side's answers at most its connect timeout (10 s when off):
/// a connection that went half-open after it opened is reported, not waited on.
async fn answered<T>(side: &str, spec: &ConnSpec, reading: impl std::future::Future<Output = T>) -> Result<T> {
    let limit = spec.connect_timeout.unwrap_or(std::time::Duration::from_secs(10));
    tokio::time::timeout(limit, reading).await.map_err(|_| {
        Error::new(
            ErrorKind::Connection,
            format!(
                "the {side} is unreachable: {spec} accepted the connection but did not answer within {} s (a network partition or a half-open connection)",
                limit.as_secs_f64()
            ),
        )
        .with_hint("check the network between this machine and the server, and that the server is not stuck")
    })
}

async fn read_target(dst: &Client, migration: &MigrationName) -> Result<TargetSide> {
    let has = |table: &'static str| table_exists(dst, table);
    let (phase, slot_lsn) = if has("pgferry.migration").await? {
        let row = dst
            .query_opt("SELECT phase, slot_lsn::text FROM pgferry.migration WHERE name = $1", &[&migration.as_str()])
            .await
            .map_err(|e| Error::server("reading the journal", e))?;
        row.map(|r| (Some(r.get(0)), r.get(1))).unwrap_or((None, None))
    } else {
        (None, None)
    };
    let (applied_lsn, applied_at, changes_per_second): (Option<String>, Option<String>, Option<f64>) = if has(
        "pgferry.apply_progress",
    )
    .await?
    {
        // Through to_jsonb: a journal written by an older pgferry lacks the column.
        dst.query_opt(
            "SELECT applied_lsn::text, applied_at::text, to_jsonb(p) ->> 'changes_per_second' FROM pgferry.apply_progress p WHERE migration = $1",
            &[&migration.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the apply progress", e))?
        .map(|r| (r.get(0), r.get(1), r.get::<_, Option<String>>(2).and_then(|v| v.parse().ok())))
        .unwrap_or((None, None, None))
    } else {
        (None, None, None)
    };
    let tables = if has("pgferry.apply_table_stats").await? { counters(dst, migration).await? } else { Vec::new() };
    let cutover_step = if has("pgferry.cutover").await? {
        dst.query_opt("SELECT step FROM pgferry.cutover WHERE migration = $1", &[&migration.as_str()])
            .await
            .map_err(|e| Error::server("reading the cutover journal", e))?
            .map(|r| r.get(0))
    } else {
        None
    };
    let validation = crate::validate::last_validation(dst, migration).await?;
    let touched_rows =
        crate::apply::touched::count(dst, migration).await.map_err(|e| Error::server("reading the touched rows", e))?;
    Ok(TargetSide {
        phase,
        slot_lsn,
        applied_lsn,
        applied_at,
        changes_per_second,
        tables,
        cutover_step,
        validation,
        touched_rows,
    })
}

async fn read_source(src: &Client, migration: &MigrationName, applied_lsn: Option<&str>) -> Result<SourceSide> {
    let fenced = crate::fence::is_recorded(src, migration).await?;
    let source_lsn: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the source's position", e))?;
    let lag_bytes = match applied_lsn {
        Some(lsn) => Some(
            src.query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", &[&lsn])
                .await
                .map(|r| r.get(0))
                .map_err(|e| Error::server("reading the source's position", e))?,
        ),
        None => None,
    };
    Ok(SourceSide {
        fenced,
        source_lsn,
        lag_bytes,
        slot: slot_status(src, &migration.slot()).await?,
        keep_size_bytes: keep_size_bytes(src).await?,
        insert_only_tables: crate::cutover::insert_only_tables(src, migration).await?,
    })
}

fn slot_at_risk(slot: &SlotStatus, keep_size_bytes: Option<i64>) -> bool {
    let low = match (slot.safe_wal_size, keep_size_bytes) {
        (Some(safe), Some(keep)) => (safe as f64) < keep as f64 * SLOT_RISK_SHARE,
        _ => false,
    };
    low || matches!(slot.wal_status.as_deref(), Some("unreserved") | Some("lost"))
}

/// `max_slot_wal_keep_size` in bytes; `None` when unlimited.
async fn keep_size_bytes(src: &Client) -> Result<Option<i64>> {
    let mb: i64 = src
        .query_one("SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading max_slot_wal_keep_size", e))?;
    Ok((mb >= 0).then_some(mb * 1024 * 1024))
}

async fn table_exists(client: &Client, table: &'static str) -> Result<bool> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the target's journal", e))
}

async fn counters(dst: &Client, migration: &MigrationName) -> Result<Vec<TableCounters>> {
    let rows = dst
        .query(
            "SELECT format('%I.%I', table_schema, table_name), inserts, updates, deletes, truncates
             FROM pgferry.apply_table_stats WHERE migration = $1 ORDER BY inserts + updates + deletes DESC, 1",
            &[&migration.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the per-table counters", e))?;
    Ok(rows
        .iter()
        .map(|r| TableCounters {
            table: r.get(0),
            inserts: r.get(1),
            updates: r.get(2),
            deletes: r.get(3),
            truncates: r.get(4),
        })
        .collect())
}

async fn slot_status(src: &Client, slot: &str) -> Result<Option<SlotStatus>> {
    let row = src
        .query_opt(
            "SELECT active, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, wal_status, safe_wal_size
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?;
    Ok(row.map(|r| SlotStatus {
        active: r.get(0),
        retained_wal_bytes: r.get(1),
        wal_status: r.get(2),
        safe_wal_size: r.get(3),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(safe: Option<i64>, status: &str) -> SlotStatus {
        SlotStatus { active: false, retained_wal_bytes: 0, wal_status: Some(status.into()), safe_wal_size: safe }
    }

    #[test]
    fn a_slot_is_at_risk_near_its_limit_or_past_it() {
        let gb = 1 << 30;
        assert!(!slot_at_risk(&slot(Some(gb), "reserved"), Some(2 * gb)));
        assert!(slot_at_risk(&slot(Some(gb / 10), "reserved"), Some(2 * gb)));
        assert!(slot_at_risk(&slot(Some(0), "unreserved"), Some(2 * gb)));
        assert!(!slot_at_risk(&slot(None, "reserved"), None), "unlimited: never at risk of invalidation");
    }
}
