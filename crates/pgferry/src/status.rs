//! `pgferry status`: where a migration stands, from any terminal, read from the
//! journal on the target and the slot on the source. Read-only.
//!
//! The slot's retained WAL and the headroom before `max_slot_wal_keep_size`
//! invalidates it (`pg_replication_slots.safe_wal_size`, see
//! [the view](https://www.postgresql.org/docs/current/view-pg-replication-slots.html))
//! are shown with a warning when the slot is at risk, since a lost slot means
//! copying everything again.

use pgferry_core::cutover::{go_no_go, Decision, Policy};
use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};

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

pub async fn status(source: &ConnSpec, target: &ConnSpec, migration: &MigrationName) -> Result<Status> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let has = |table: &'static str| table_exists(&dst, table);
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
    let tables = if has("pgferry.apply_table_stats").await? { counters(&dst, migration).await? } else { Vec::new() };
    let fenced = crate::fence::is_recorded(&src, migration).await?;
    let cutover_step = if has("pgferry.cutover").await? {
        dst.query_opt("SELECT step FROM pgferry.cutover WHERE migration = $1", &[&migration.as_str()])
            .await
            .map_err(|e| Error::server("reading the cutover journal", e))?
            .map(|r| r.get(0))
    } else {
        None
    };
    let source_lsn: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the source's position", e))?;
    let lag_bytes = match &applied_lsn {
        Some(lsn) => Some(
            src.query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", &[lsn])
                .await
                .map(|r| r.get(0))
                .map_err(|e| Error::server("reading the source's position", e))?,
        ),
        None => None,
    };
    let slot = slot_status(&src, &migration.slot()).await?;
    let validation = crate::validate::last_validation(&dst, migration).await?;
    let touched_rows = crate::apply::touched::count(&dst, migration)
        .await
        .map_err(|e| Error::server("reading the touched rows", e))?;
    let observed = pgferry_core::cutover::Observed {
        lag_bytes: lag_bytes.unwrap_or(0),
        validation_mismatches: validation.as_ref().map_or(0, |v| v.mismatched_chunks),
        replicating: phase.as_deref() == Some("copied") && applied_lsn.is_some(),
        stream_in_use: slot.as_ref().is_some_and(|s| s.active),
        insert_only_tables: crate::cutover::insert_only_tables(&src, migration).await?,
        pending_schema_changes: if phase.is_some() {
            crate::ddl::pending_schema_changes(&src, &dst, migration).await?
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let mut warnings = Vec::new();
    if let Some(s) = &slot {
        if slot_at_risk(s, keep_size_bytes(&src).await?) {
            warnings.push(format!(
                "the slot {} is at risk (wal_status {}, {} bytes of headroom): keep change capture running, or raise max_slot_wal_keep_size",
                migration.slot(),
                s.wal_status.as_deref().unwrap_or("?"),
                s.safe_wal_size.map(|b| b.to_string()).unwrap_or_else(|| "unknown".into())
            ));
        }
    } else if phase.is_some() {
        warnings.push(format!("the slot {} does not exist on the source", migration.slot()));
    }
    if phase.is_some() {
        let capture = crate::ddl::installed(&src, migration).await?;
        for u in crate::ddl::unreplicated(&src, &dst, migration).await? {
            if !(capture && u.published) {
                warnings.push(format!("{}: {}", u.relation, u.why));
            }
        }
    }
    Ok(Status {
        migration: migration.to_string(),
        phase,
        slot_lsn,
        applied_lsn,
        applied_at,
        changes_per_second,
        source_lsn,
        lag_bytes,
        slot,
        tables,
        fenced,
        cutover_step,
        validation,
        touched_rows,
        cutover: go_no_go(&observed, &Policy::default()),
        warnings,
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
