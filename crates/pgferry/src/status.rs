//! `pgferry status`: where a migration stands, from any terminal, read from the
//! journal on the target and the slot on the source. Read-only.
//!
//! The slot's retained WAL and the headroom before `max_slot_wal_keep_size`
//! invalidates it (`pg_replication_slots.safe_wal_size`, see
//! [the view](https://www.postgresql.org/docs/current/view-pg-replication-slots.html))
//! are shown, and the slot judged ([`pgferry_core::slot::judge`]): a warning
//! while it nears its limit, and for a slot about to be lost or lost, the
//! verdict and its remedy, which the command's exit code carries, since a lost
//! slot means copying everything again.

use pgferry_core::cutover::{go_no_go, Decision, Policy};
use pgferry_core::names::MigrationName;
use pgferry_core::slot::{SlotNeed, SlotVerdict};
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
    /// The slot's state: lost (exit 5) and about to be lost (exit 1) carry a remedy.
    pub slot_verdict: SlotVerdict,
    /// What to do about the slot's state, when anything.
    pub slot_remedy: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SlotStatus {
    pub active: bool,
    pub retained_wal_bytes: i64,
    /// `wal_status` (`reserved`, `extended`, `unreserved` or `lost`) and
    /// `safe_wal_size` (`None` when `max_slot_wal_keep_size` is unlimited or the slot lost).
    #[serde(flatten)]
    pub row: pgferry_core::slot::SlotRow,
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
    let slot_name = crate::slot::resolve(&src, &dst, migration).await?;
    let slot = slot_status(&src, &slot_name).await?;
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
        ..Default::default()
    };
    let need = pgferry_core::slot::need(
        phase.as_deref().and_then(pgferry_core::phase::MigrationPhase::parse),
        cutover_step.as_deref().and_then(pgferry_core::cutover::CutoverStep::parse),
    );
    let slot_verdict = match need {
        SlotNeed::NotNow => SlotVerdict::NotNeeded,
        SlotNeed::Needed => {
            pgferry_core::slot::judge(need, slot.as_ref().map(|s| &s.row), crate::slot::keep_size_bytes(&src).await?)
        }
    };
    let mut warnings = Vec::new();
    let mut slot_remedy = None;
    let mut cutover = go_no_go(&observed, &Policy::default());
    if let Some((what, remedy)) = slot_verdict.problem(&slot_name) {
        if slot_verdict.is_lost() {
            cutover = Decision::NoGo(vec![format!("{what}: the migration cannot be cut over")]);
        }
        warnings.push(format!("{what}: {remedy}"));
        slot_remedy = Some(remedy.to_string());
    } else if slot.is_none() && phase.is_some() && need == SlotNeed::NotNow {
        warnings.push(format!("the slot {slot_name} does not exist on the source"));
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
        cutover,
        slot_verdict,
        slot_remedy,
        warnings,
    })
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
        row: pgferry_core::slot::SlotRow { wal_status: r.get(2), safe_wal_size: r.get(3) },
    }))
}
