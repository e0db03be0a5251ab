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
//!
//! It answers within seconds whatever the state of the servers: both are
//! reached at once, each within its connect timeout, and each side's reads
//! must finish within the same limit, so a server that is down, or a
//! connection that went half-open, is reported as that side unreachable with
//! the cause instead of waited on.

use pgferry_core::cutover::{go_no_go, Decision, Policy};
use pgferry_core::names::MigrationName;
use pgferry_core::slot::{SlotNeed, SlotVerdict};
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
    /// Set once the switch ran and was seen to end: the migration was cut over
    /// (when, the downtime); the commands that move data refuse from then on.
    pub cut_over: Option<String>,
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
    crate::pairing::require(&src, &dst, migration, "status", pgferry_core::pairing::Need::JournalOrNone).await?;
    let t = answered("target", target, read_target(&dst, migration)).await??;
    let slot_name = answered("source", source, crate::slot::resolve(&src, &dst, migration)).await??;
    let s = answered("source", source, read_source(&src, migration, &slot_name, t.applied_lsn.as_deref())).await??;
    let schema = match t.phase {
        Some(_) => answered("source", source, read_schema_changes(&src, &dst, migration)).await??,
        None => SchemaChanges::default(),
    };
    let observed = pgferry_core::cutover::Observed {
        lag_bytes: s.lag_bytes.unwrap_or(0),
        validation_mismatches: t.validation.as_ref().map_or(0, |v| v.mismatched_chunks),
        replicating: t.phase.as_deref() == Some("copied") && t.applied_lsn.is_some(),
        stream_in_use: s.slot.as_ref().is_some_and(|s| s.active),
        insert_only_tables: s.insert_only_tables,
        pending_schema_changes: schema.pending,
        rows_to_prove: schema.rows_to_prove,
        ..Default::default()
    };
    let need = pgferry_core::slot::need(
        t.phase.as_deref().and_then(pgferry_core::phase::MigrationPhase::parse),
        t.cutover_step.as_deref().and_then(pgferry_core::cutover::CutoverStep::parse),
    );
    let slot_verdict = match need {
        SlotNeed::NotNow => SlotVerdict::NotNeeded,
        SlotNeed::Needed => pgferry_core::slot::judge(need, s.slot.as_ref().map(|s| &s.row), s.keep_size_bytes),
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
    } else if s.slot.is_none() && t.phase.is_some() && need == SlotNeed::NotNow {
        warnings.push(format!("the slot {slot_name} does not exist on the source"));
    }
    warnings.extend(schema.unreplicated);
    let cutover_state = answered("source", source, crate::lifecycle::record(&src, Some(&dst), migration)).await??;
    let cut_over = cutover_state.completed().then(|| {
        format!(
            "migration {migration} was cut over{}: the application uses the target and the old source stays fenced; pgferry cleanup retires the migration",
            cutover_state.when()
        )
    });
    if let Some(done) = &cut_over {
        cutover = Decision::NoGo(vec![done.clone()]);
    } else if let Some(first) =
        answered("source", source, crate::cutover::pending_recovery(&src, &dst, migration)).await??
    {
        cutover = Decision::NoGo(vec![first]);
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
        cut_over,
        validation: t.validation,
        touched_rows: t.touched_rows,
        cutover,
        slot_verdict,
        slot_remedy,
        warnings,
    })
}

/// Schema changes change capture did not carry: those it stopped at, and the
/// source's relations it does not replicate.
#[derive(Default)]
struct SchemaChanges {
    pending: Vec<String>,
    unreplicated: Vec<String>,
    rows_to_prove: Vec<String>,
}

async fn read_schema_changes(src: &Client, dst: &Client, migration: &MigrationName) -> Result<SchemaChanges> {
    let pending = crate::ddl::pending_schema_changes(src, dst, migration).await?;
    let capture = crate::ddl::installed(src, migration).await?;
    let unreplicated = crate::ddl::unreplicated(src, dst, migration)
        .await?
        .into_iter()
        .filter(|u| !(capture && u.published))
        .map(|u| format!("{}: {}", u.relation, u.why))
        .collect();
    let rows_to_prove = crate::ddl::rows_to_prove(dst, migration).await?;
    Ok(SchemaChanges { pending, unreplicated, rows_to_prove })
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

async fn read_source(
    src: &Client,
    migration: &MigrationName,
    slot_name: &str,
    applied_lsn: Option<&str>,
) -> Result<SourceSide> {
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
        slot: slot_status(src, slot_name).await?,
        keep_size_bytes: crate::slot::keep_size_bytes(src).await?,
        insert_only_tables: crate::cutover::insert_only_tables(src, migration).await?,
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
