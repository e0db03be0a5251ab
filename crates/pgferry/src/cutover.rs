//! `pgferry cutover`: fence the source, drain the change stream to the fenced
//! position, set the sequences, compare exactly the rows change capture touched
//! ([`validate_changed`]), run the operator's switch command, and report the
//! downtime, journaling each step on the target (`pgferry.cutover`).
//!
//! The decisions are `pgferry_core::cutover`'s: go/no-go before anything changes,
//! and after a failure or a kill, roll back (before the switch: the fence is lifted
//! exactly as it was set, replication goes on) or finish (after it). The cutover
//! drains the stream itself, so `pgferry follow` must be stopped first; the
//! go/no-go says so when the slot is still in use.

use std::time::Instant;

use pgferry_core::cutover::{go_no_go, recovery, CutoverStep, Decision, KeylessTables, Observed, Policy, Recovery};
use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::apply::{follow, BatchLimits, FollowOptions, FollowProgress, Until};
use crate::error::{Error, ErrorKind, Result};
use crate::validate::{validate_changed, ValidateOptions};
use crate::outside_fence::{self, OutsideFence};
use crate::{failpoint, fence};

const JOURNAL_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS pgferry;
CREATE TABLE IF NOT EXISTS pgferry.cutover (
    migration text PRIMARY KEY,
    step text NOT NULL,
    fenced_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);";

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct CutoverOptions {
    pub migration: MigrationName,
    /// Roles that keep their connections during the fence.
    pub administrators: Vec<String>,
    /// Run by `sh -c` to send the application to the target (DNS, pooler, config).
    pub switch_command: Option<String>,
    /// The operator's own fence for writers outside the database, if any.
    pub outside_fence: Option<OutsideFence>,
    pub policy: Policy,
}

/// What the cutover did.
#[derive(Debug, Serialize)]
pub struct CutoverReport {
    pub migration: String,
    /// From the fence to the switch command's success: the writers' downtime.
    pub downtime_seconds: f64,
    pub steps: Vec<(&'static str, f64)>,
    pub fenced_roles: Vec<String>,
    pub sequences_set: usize,
    pub changes_drained: u64,
    /// Rows compared by the exact check of the rows change capture touched.
    pub rows_checked: i64,
}

/// What a cutover started now would do (`--dry-run`): nothing is changed.
#[derive(Debug, Serialize)]
pub struct CutoverPlan {
    pub migration: String,
    pub decision: Decision,
    /// Roles whose connection limit the fence sets to 0, with the limit restored after.
    pub fenced_roles: Vec<pgferry_core::fence::FencedRole>,
    /// Tables without a replica identity, and what the cutover does about them.
    pub keyless_tables: Vec<String>,
    pub keyless_policy: String,
    /// Rows the exact check after the drain will compare.
    pub changed_rows_to_check: i64,
    pub steps: Vec<&'static str>,
    pub switch_command: Option<String>,
}

/// The plan of a cutover, from the same observations the cutover makes.
pub async fn plan(source: &ConnSpec, target: &ConnSpec, options: &CutoverOptions) -> Result<CutoverPlan> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let name = &options.migration;
    let observed = observe(&src, &dst, name).await?;
    let touched = crate::apply::touched::count(&dst, name).await.map_err(|e| Error::server("reading the touched rows", e))?;
    let recopy = options.policy.keyless_tables == KeylessTables::Recopy;
    let mut steps = vec!["fence the source (roles below, database read-only, sessions ended, verified)", "drain the stream to the fenced position"];
    if recopy && !observed.insert_only_tables.is_empty() {
        steps.push("copy the keyless tables again");
    }
    steps.extend(["set every sequence from the source", "compare the changed rows", "run the switch command", "open the target; report"]);
    Ok(CutoverPlan {
        migration: name.to_string(),
        decision: go_no_go(&observed, &options.policy),
        fenced_roles: fence::planned(&src, &options.administrators).await?,
        keyless_tables: observed.insert_only_tables.clone(),
        keyless_policy: options.policy.keyless_tables.as_str().to_string(),
        changed_rows_to_check: touched,
        steps,
        switch_command: options.switch_command.clone(),
    })
}

/// Runs (or after a kill, finishes or rolls back) the cutover.
pub async fn cutover(source: &ConnSpec, target: &ConnSpec, options: &CutoverOptions) -> Result<CutoverReport> {
    let _runner = crate::start::RunnerLock::take(target, &options.migration).await?;
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    fence::allow_writes(&src).await?;
    dst.batch_execute(JOURNAL_SQL).await.map_err(|e| Error::server("creating the cutover journal", e))?;
    let name = &options.migration;
    match recovery(last_step(&dst, name).await?) {
        Recovery::RollBack => {
            roll_back(&src, &dst, name, options.outside_fence.as_ref()).await?;
            return Err(Error::new(
                ErrorKind::Precondition,
                "an earlier cutover stopped before the switch; it has been rolled back: the source is unfenced, as before",
            )
            .with_hint("start change capture again if it is stopped, then rerun pgferry cutover"));
        }
        Recovery::Finish => return finish(&dst, name).await,
        Recovery::Start => {}
    }
    let observed = observe(&src, &dst, name).await?;
    if let Decision::NoGo(reasons) = go_no_go(&observed, &options.policy) {
        return Err(Error::new(ErrorKind::Precondition, format!("the cutover may not start:\n  - {}", reasons.join("\n  - ")))
            .with_hint("nothing was changed; fix the reasons above and rerun"));
    }
    record(&dst, name, CutoverStep::Decided).await?;
    let mut laps = Vec::new();
    let fenced_at = Instant::now();
    let result = fenced_part(source, target, &src, &dst, options, &mut laps).await;
    let Fenced { fenced_roles, sequences_set, changes_drained, rows_checked } = match result {
        Ok(done) => done,
        Err(error) => {
            roll_back(&src, &dst, name, options.outside_fence.as_ref()).await?;
            return Err(Error { message: format!("the cutover was rolled back, the source is unfenced: {}", error.message), ..error });
        }
    };
    let downtime_seconds = fenced_at.elapsed().as_secs_f64();
    record(&dst, name, CutoverStep::Opened).await?;
    failpoint::hit("cutover-after-opened");
    record(&dst, name, CutoverStep::Reported).await?;
    Ok(CutoverReport {
        migration: name.to_string(),
        downtime_seconds,
        steps: laps,
        fenced_roles,
        sequences_set,
        changes_drained,
        rows_checked,
    })
}

/// What the fenced part did.
struct Fenced {
    fenced_roles: Vec<String>,
    sequences_set: usize,
    changes_drained: u64,
    rows_checked: i64,
}

/// Fence, drain, sequences, switch: everything before the point of no return and
/// the switch itself. Any error here is rolled back by the caller.
async fn fenced_part(
    source: &ConnSpec,
    target: &ConnSpec,
    src: &Client,
    dst: &Client,
    options: &CutoverOptions,
    laps: &mut Vec<(&'static str, f64)>,
) -> Result<Fenced> {
    let name = &options.migration;
    let mut clock = Instant::now();
    let mut lap = |laps: &mut Vec<(&'static str, f64)>, what| {
        laps.push((what, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };
    let fenced = fence::raise(source, src, dst, name, &options.administrators).await?;
    record(dst, name, CutoverStep::Fenced).await?;
    if let Some(outside) = &options.outside_fence {
        outside_fence::raise(dst, name, outside).await?;
    }
    failpoint::hit("cutover-after-fenced");
    lap(laps, "fence (verified)");
    let follow_options = FollowOptions { migration: name.clone(), until: Until::CaughtUp, batch: BatchLimits::default(), shutdown: None };
    let drained = follow(source, target, &follow_options, &FollowProgress::new(|_| {})).await?;
    lap(laps, "drain");
    if options.policy.keyless_tables == KeylessTables::Recopy {
        let keyless: Vec<_> = crate::copy::list_tables(src)
            .await?
            .into_iter()
            .filter(|(_, p)| *p == crate::copy::Publishable::InsertsOnly)
            .map(|(t, _)| t)
            .collect();
        crate::copy::recopy(source, target, &keyless).await?;
        failpoint::hit("cutover-after-recopy");
        lap(laps, "re-copy keyless tables");
    }
    record(dst, name, CutoverStep::Drained).await?;
    failpoint::hit("cutover-after-drained");
    let sequences = crate::copy::sync_sequences(src, dst).await?;
    record(dst, name, CutoverStep::SequencesSet).await?;
    lap(laps, "sequences");
    // pgferry's own engine changes no constraint or trigger on the target: the
    // step is recorded so that the journal's order is the same for every engine.
    record(dst, name, CutoverStep::ConstraintsRestored).await?;
    let rows_checked = check_changed_rows(source, target, name).await?;
    record(dst, name, CutoverStep::Validated).await?;
    lap(laps, "validate changed rows");
    failpoint::hit("cutover-before-switch");
    if let Some(command) = &options.switch_command {
        run_switch(command).await?;
    }
    record(dst, name, CutoverStep::Switched).await?;
    lap(laps, "switch");
    Ok(Fenced { fenced_roles: fenced.fenced_roles, sequences_set: sequences, changes_drained: drained.changes, rows_checked })
}

/// The exact check after the drain: every row change capture touched since it
/// was last found equal is compared; a difference rolls the cutover back.
async fn check_changed_rows(source: &ConnSpec, target: &ConnSpec, name: &MigrationName) -> Result<i64> {
    let options = ValidateOptions { jobs: 2, chunk_rows: 100_000, max_differences: 10, show_values: false };
    let report = validate_changed(source, target, name, &options, crate::validate::Recording::Record).await?;
    if report.equal {
        return Ok(report.tables.iter().map(|t| t.source_rows).sum());
    }
    let tables: Vec<String> = report
        .tables
        .iter()
        .filter(|t| t.verdict != pgferry_core::validation::Verdict::Equal)
        .map(|t| {
            let keys: Vec<&str> = t.differences.iter().map(|d| d.key.as_str()).collect();
            let why: Vec<String> = t.unproven.iter().map(ToString::to_string).collect();
            format!("{} (keys {}): {}{}{}", t.table, keys.join(", "), t.verdict.as_str(), if why.is_empty() { "" } else { ", " }, why.join("; "))
        })
        .collect();
    Err(Error::new(
        ErrorKind::Precondition,
        format!("the changed rows are {}: {}", report.verdict.as_str(), tables.join("; ")),
    )
    .with_hint("run pgferry validate --changed-only --show-values to see them; find the cause (a write on the target, a writer the fence spared?) before cutting over"))
}

/// After the switch: the remaining steps only record that the target is open.
async fn finish(dst: &Client, name: &MigrationName) -> Result<CutoverReport> {
    record(dst, name, CutoverStep::Opened).await?;
    record(dst, name, CutoverStep::Reported).await?;
    Ok(CutoverReport {
        migration: name.to_string(),
        downtime_seconds: 0.0,
        steps: Vec::new(),
        fenced_roles: Vec::new(),
        sequences_set: 0,
        changes_drained: 0,
        rows_checked: 0,
    })
}

async fn roll_back(src: &Client, dst: &Client, name: &MigrationName, outside: Option<&OutsideFence>) -> Result<()> {
    outside_fence::lift(dst, name, outside).await?;
    fence::lower(src, dst, name).await?;
    dst.execute("DELETE FROM pgferry.cutover WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("clearing the cutover journal", e))?;
    Ok(())
}

async fn run_switch(command: &str) -> Result<()> {
    outside_fence::run_shell("the switch command", command)
        .await
        .map_err(|e| e.with_hint("fix the switch command; the source is unfenced again and replication can go on"))
}

async fn last_step(dst: &Client, name: &MigrationName) -> Result<Option<CutoverStep>> {
    let row = dst
        .query_opt("SELECT step FROM pgferry.cutover WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the cutover journal", e))?;
    Ok(row.and_then(|r| CutoverStep::parse(r.get(0))))
}

async fn record(dst: &Client, name: &MigrationName, step: CutoverStep) -> Result<()> {
    dst.execute(
        "INSERT INTO pgferry.cutover (migration, step, fenced_at) VALUES ($1, $2, CASE WHEN $2 = 'fenced' THEN now() END)
         ON CONFLICT (migration) DO UPDATE SET step = excluded.step, updated_at = now(),
             fenced_at = coalesce(excluded.fenced_at, pgferry.cutover.fenced_at)",
        &[&name.as_str(), &step.as_str()],
    )
    .await
    .map_err(|e| Error::server("writing the cutover journal", e))?;
    Ok(())
}

/// The figures the go/no-go needs.
pub(crate) async fn observe(src: &Client, dst: &Client, name: &MigrationName) -> Result<Observed> {
    let progress = dst
        .query_opt(
            "SELECT p.applied_lsn::text, m.phase FROM pgferry.migration m
             LEFT JOIN pgferry.apply_progress p ON p.migration = m.name WHERE m.name = $1",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the migration's journal (has pgferry copy run?)", e))?;
    let (applied, phase): (Option<String>, Option<String>) = match &progress {
        Some(r) => (r.get(0), Some(r.get(1))),
        None => (None, None),
    };
    let lag_bytes: i64 = match &applied {
        Some(lsn) => src
            .query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", &[lsn])
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::server("reading the source's position", e))?,
        None => 0,
    };
    let slot_active: bool = src
        .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&name.slot()])
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?
        .map(|r| r.get(0))
        .unwrap_or(false);
    let last = crate::validate::last_validation(dst, name).await?;
    Ok(Observed {
        lag_bytes,
        validation_mismatches: last.map_or(0, |v| v.mismatched_chunks),
        pending_schema_changes: Vec::new(),
        replicating: phase.as_deref() == Some("copied") && applied.is_some(),
        stream_in_use: slot_active,
        insert_only_tables: insert_only_tables(src, name).await?,
    })
}

/// The tables of the migration's inserts-and-truncates-only publication.
pub(crate) async fn insert_only_tables(src: &Client, name: &MigrationName) -> Result<Vec<String>> {
    let rows = src
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1",
            &[&name.insert_only_publication().as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the source's publications", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
