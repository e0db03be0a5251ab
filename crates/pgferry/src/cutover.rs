//! `pgferry cutover`: fence the source, drain the change stream to the fenced
//! position, set the sequences, compare exactly the rows change capture touched
//! ([`validate_changed`]), run the operator's switch command, and report the
//! downtime, journaling each step on the target (`pgferry.cutover`).
//!
//! The decisions are `pgferry_core::cutover`'s: go/no-go before anything changes,
//! and after a failure, a signal or a kill, roll back (before the switch: the
//! fence is lifted exactly as it was set, replication goes on), finish (after it),
//! or stop and ask the operator (killed while the switch command ran). The
//! rollback needs only the source, over a connection of its own: the fence's
//! journal lives there, so a target lost inside the cutover does not keep the
//! source fenced. SIGINT/SIGTERM ([`CutoverOptions::shutdown`]) roll back before the
//! switch, are held while the switch command runs (pgferry waits for its end, at
//! most `switch_timeout`), and let the cutover finish after it. The cutover drains
//! the stream itself: a running `pgferry start` is asked to hand the runner lock
//! over ([`crate::handover`]) and ends its change capture first; a `pgferry
//! follow` must be stopped by the operator (the go/no-go says so when the slot is
//! still in use). A cutover that took over and then fails says that change
//! capture is no longer running.
//!
//! The downtime holds only what must happen with writes stopped: the drain is
//! started before the fence and applies only the tail inside it
//! ([`crate::apply::FencedDrain`]), and the steps inside run on the cutover's own
//! two sessions (a new session costs the server as much as a small step, and
//! sixteen databases cut over side by side pay it sixteen times on the same cores).

use std::time::{Duration, Instant};

use pgferry_core::cutover::{
    go_no_go, recovery, CutoverStep, Decision, KeylessTables, Observed, Policy, Recovery, Resumed, StoppedCutover,
    SwitchWord,
};
use pgferry_core::fence::FenceChange;
use pgferry_core::handover::Asker;
use pgferry_core::lifecycle::Command;
use pgferry_core::names::MigrationName;
use pgferry_core::pairing::Need;
use pgferry_core::preflight::DatabaseIdentity;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::apply::{follow, BatchLimits, FencedDrain, FollowEvent, FollowOptions, Until};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events, Phase};
use crate::handover::TookOver;
use crate::materialized_views::{refresh_materialized_views, PlannedView, ViewRefresh};
use crate::outside_fence::{self, OutsideFence};
use crate::switch_barrier::SwitchBarrier;
use crate::validate::{validate_changed, Recording, Sessions, Unapplied, ValidateOptions};
use crate::{failpoint, fence, shell};

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct CutoverOptions {
    pub migration: MigrationName,
    /// Roles that keep their connections during the fence.
    pub administrators: Vec<String>,
    /// Run by `sh -c` to send the application to the target (DNS, pooler, config).
    pub switch_command: Option<String>,
    /// The longest the switch command may run; past it its process group is
    /// stopped and the cutover rolls back.
    pub switch_timeout: Duration,
    /// The operator's own fence for writers outside the database, if any.
    pub outside_fence: Option<OutsideFence>,
    pub policy: Policy,
    /// The operator's answer after a cutover was stopped while its switch command ran.
    pub switch_word: SwitchWord,
    /// Becomes true on SIGINT/SIGTERM: before the switch the cutover rolls back.
    pub shutdown: Option<watch::Receiver<bool>>,
    /// When the materialized views are refreshed.
    pub views: ViewRefresh,
    /// The longest the cutover (or rehearsal) waits for a running `pgferry start`
    /// to hand the runner lock over ([`crate::handover`]).
    pub handover_timeout: Duration,
    /// With other databases' cutovers (`--all-databases`): one switch for all of
    /// them ([`SwitchBarrier`]).
    pub instance_switch: Option<std::sync::Arc<SwitchBarrier>>,
    /// Recovering this database for the rerun of an instance's cutover, with
    /// the word the instance's journals gave (`switch_word`); else a database
    /// stopped at an instance's switch is refused alone, since a word given
    /// database by database could switch some and roll others back.
    pub instance_recovery: bool,
}

impl CutoverOptions {
    /// The default limit for the switch command.
    pub const SWITCH_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default wait for a running `pgferry start` to hand over.
    pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);
}

/// What the cutover did.
#[derive(Debug, Serialize)]
pub struct CutoverReport {
    pub migration: String,
    /// From the fence to the switch command's success: the writers' downtime.
    pub downtime_seconds: f64,
    pub steps: Vec<(&'static str, f64)>,
    /// The roles (`PUBLIC` included) that lost `CONNECT` on the source database.
    pub connect_revoked_from: Vec<String>,
    /// Sessions on the source database that the fence ended.
    pub terminated_sessions: i64,
    /// Superusers that could still log in to the old source and write ([`fence::unfenced_superusers`]).
    pub unfenced_superusers: Vec<String>,
    pub sequences_set: usize,
    pub changes_drained: u64,
    /// Rows compared by the exact check of the rows change capture touched.
    pub rows_checked: i64,
    /// Partitions change capture could not vouch for (truncated alone, created or
    /// attached since the copy), copied again inside the fence.
    pub partitions_recopied: Vec<String>,
    /// Large objects created, changed or removed on the source since they were
    /// last synced, brought over inside the fence.
    pub large_objects_synced: usize,
    /// Materialized views refreshed on the target inside the fence.
    pub materialized_views_refreshed: usize,
    /// The views were refreshed after the switch (outside the downtime), taking this long.
    pub views_refreshed_after_switch: Option<f64>,
    /// False when this run finished a cutover that an earlier run switched: the
    /// downtime is the one that run journaled, and the other figures are not known.
    pub complete: bool,
    /// The running `pgferry start` that handed the runner lock over: its change
    /// capture has ended (a cutover that rolls back says to run it again).
    pub took_over_from: Option<String>,
}

/// What a cutover started now would do (`--dry-run`): nothing is changed.
#[derive(Debug, Serialize)]
pub struct CutoverPlan {
    pub migration: String,
    pub decision: Decision,
    /// What the fence would change on the source database, each undone after a rollback.
    pub fence: Vec<FenceChange>,
    /// Superusers the fence cannot keep out ([`fence::unfenced_superusers`]).
    pub unfenced_superusers: Vec<String>,
    /// Tables without a replica identity, and what the cutover does about them.
    pub keyless_tables: Vec<String>,
    pub keyless_policy: String,
    /// Rows the exact check after the drain will compare.
    pub changed_rows_to_check: i64,
    pub steps: Vec<&'static str>,
    pub switch_command: Option<String>,
    /// The materialized views to refresh, in order, with their last measured times.
    pub materialized_views: Vec<PlannedView>,
    /// When they are refreshed.
    pub views_refresh: ViewRefresh,
    /// The catalog parity gate's differences (in the decision too) and warnings;
    /// none when the gate would not run now: before change capture runs (the
    /// target is still being built), or while a stopped cutover is to be
    /// recovered first (its fence on the source, `CONNECT` revoked and new
    /// sessions read-only, would be read as differences whose fixes fence the
    /// target).
    pub parity: Option<pgferry_core::parity::Parity>,
    /// What the next run does first about an earlier, stopped cutover (roll it
    /// back or finish it) instead of starting one; also the decision's reason.
    pub recovery: Option<String>,
}

/// The plan of a cutover, from the same observations the cutover makes.
pub async fn plan(source: &ConnSpec, target: &ConnSpec, options: &CutoverOptions) -> Result<CutoverPlan> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let name = &options.migration;
    crate::pairing::require(&src, &dst, name, "cutover --dry-run", Need::Journal).await?;
    // Refused as the cutover itself is once it completed; after a stopped one,
    // the next run first recovers it, and the plan says so instead of "would start".
    crate::lifecycle::check(name, Command::Cutover, &crate::lifecycle::record(&src, Some(&dst), name).await?)?;
    // Another migration's fence on this database (its cutover stopped inside
    // it) refuses the cutover too; the gate would read that fence as differences.
    let pending = match pending_recovery(&src, &dst, name).await? {
        Some(reason) => Some(reason),
        None => fence::refuse_another_fence(&src, name).await.err().map(|e| match e.hint {
            Some(hint) => format!("{}: {hint}", e.message),
            None => e.message,
        }),
    };
    let mut observed = observe(&src, &dst, name).await?;
    // A process holding the runner lock: the cutover asks it to hand over first
    // (a running `start` does), so its stream is no reason to refuse here.
    let take_over = crate::start::RunnerLock::holder(&dst, name).await.is_some();
    observed.stream_in_use &= !take_over;
    let touched =
        crate::apply::touched::count(&dst, name).await.map_err(|e| Error::server("reading the touched rows", e))?;
    let recopy = options.policy.keyless_tables == KeylessTables::Recopy;
    let mut steps = Vec::new();
    if take_over {
        steps.push(
            "take over the runner lock from the process holding it (a running pgferry start hands over after the transaction at hand; a pgferry follow must be stopped first)",
        );
    }
    steps.extend([
        "fence the source database (the changes below, every other session ended, verified)",
        "drain the stream to the fenced position",
    ]);
    if recopy && !observed.insert_only_tables.is_empty() {
        steps.push("copy the keyless tables again");
    }
    let after = options.views == ViewRefresh::AfterSwitch;
    steps.extend([
        "copy again the partitions truncated alone, created or attached since the copy",
        if after {
            "bring over the large objects changed since the last sync"
        } else {
            "bring over the large objects changed since the last sync; refresh the materialized views"
        },
        "set every sequence from the source",
        "compare the changed rows",
        "run the switch command",
    ]);
    if after {
        steps.push("refresh the materialized views (after the switch)");
    }
    steps.push("open the target; report");
    let parity = (pending.is_none() && observed.replicating).then(|| observed.parity.clone());
    Ok(CutoverPlan {
        migration: name.to_string(),
        decision: match &pending {
            Some(reason) => Decision::NoGo(vec![reason.clone()]),
            None => go_no_go(&observed, &options.policy),
        },
        recovery: pending,
        fence: fence::planned(&src, &options.administrators).await?.changes,
        unfenced_superusers: fence::unfenced_superusers(&src, &options.administrators).await?,
        keyless_tables: observed.insert_only_tables.clone(),
        keyless_policy: options.policy.keyless_tables.as_str().to_string(),
        changed_rows_to_check: touched,
        steps,
        switch_command: options.switch_command.clone(),
        materialized_views: crate::materialized_views::planned(&src, &dst, name).await?,
        views_refresh: options.views,
        parity,
    })
}

/// The runner lock (handed over by a running `pgferry start` if need be) and a session on the target.
async fn connect_target(
    target: &ConnSpec,
    options: &CutoverOptions,
) -> Result<(crate::start::RunnerLock, Client, Option<TookOver>)> {
    let (runner, took_over) = crate::handover::take_over(
        target,
        &options.migration,
        Asker::Cutover,
        options.handover_timeout,
        options.shutdown.as_ref(),
    )
    .await?;
    let dst = pgferry_pg::connect(target).await?;
    dst.batch_execute(crate::apply::DURABLE_COMMITS)
        .await
        .map_err(|e| Error::server("making the cutover's commits on the target durable", e))?;
    Ok((runner, dst, took_over))
}

/// Runs (or after a stop, finishes or rolls back) the cutover.
pub async fn cutover(
    source: &ConnSpec,
    target: &ConnSpec,
    options: &CutoverOptions,
    events: &Events,
) -> Result<CutoverReport> {
    let name = &options.migration;
    // Before a running start is asked to hand over.
    if options.instance_switch.is_none() && !options.instance_recovery {
        refuse_alone_at_instance_switch(source, target, name).await?;
    }
    let src = pgferry_pg::connect(source).await?;
    let (runner, dst, took_over) = match connect_target(target, options).await {
        Ok(connected) => connected,
        Err(e) if e.kind == ErrorKind::Connection => return Err(fence::unreachable_target(&src, name, e).await),
        Err(e) => return Err(e),
    };
    let outcome = Box::pin(cutover_locked(source, target, src, dst, options, events)).await;
    drop(runner);
    match (outcome, took_over) {
        (Ok(report), took_over) => Ok(CutoverReport { took_over_from: took_over.map(|t| t.from), ..report }),
        (Err(error), Some(took_over)) => Err(Error {
            message: format!(
                "{}\nchange capture is NOT running: pgferry start ({}) handed migration {name} over to this cutover and ended; run pgferry start (or pgferry follow) again to resume it",
                error.message, took_over.from
            ),
            ..error
        }),
        (Err(error), None) => Err(error),
    }
}

/// A database whose cutover stopped at the one switch of an instance cutover
/// is recovered with the others (`cutover --all-databases` weighs their
/// journals): words given database by database could switch some and roll
/// others back. A journal that cannot be read here is left to the cutover's
/// own checks.
async fn refuse_alone_at_instance_switch(source: &ConnSpec, target: &ConnSpec, name: &MigrationName) -> Result<()> {
    let Ok(stopped) = stopped_cutover(source, target, name).await else { return Ok(()) };
    if stopped.instance.is_none() || stopped.last_step != Some(CutoverStep::Switching) || !stopped.fenced {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Refused,
        format!("migration {name}'s cutover in this database stopped at the one switch of an instance cutover (cutover --all-databases); nothing was done"),
    )
    .with_hint("rerun pgferry cutover --all-databases with the same databases: it weighs the other databases' journals, and asks once for all of them only when they cannot tell"))
}

/// The cutover, once this process holds the runner lock.
async fn cutover_locked(
    source: &ConnSpec,
    target: &ConnSpec,
    src: Client,
    dst: Client,
    options: &CutoverOptions,
    events: &Events,
) -> Result<CutoverReport> {
    let name = &options.migration;
    // Before anything reaches outside (the fence, a rollback that lifts one, the
    // journal): the target must be the one this source is migrated into.
    let pair = crate::pairing::require(&src, &dst, name, "cutover", Need::Journal).await?;
    events.emit(Event::Phase(Phase::Cutover));
    fence::allow_writes(&src).await?;
    let entry = journal_entry(&dst, name).await?;
    let resumed = resumed(&src, name, entry.as_ref(), options.switch_word).await?;
    // A completed cutover is not run again (the lifecycle's guard, as for every command).
    crate::lifecycle::check(name, Command::Cutover, &crate::lifecycle::record(&src, Some(&dst), name).await?)?;
    let decided = recovery(&resumed)
        .map_err(|reason| Error::new(ErrorKind::Usage, reason).with_hint("run pgferry cutover without it"))?;
    match decided {
        Recovery::Start if entry.is_some() => clear_journal(&dst, name).await?,
        Recovery::Start => {}
        Recovery::RollBack => {
            ensure_journal(&dst).await?;
            drop((src, dst));
            roll_back(source, target, name, options.outside_fence.as_ref(), &[]).await?;
            return Err(Error::new(
                ErrorKind::Precondition,
                "an earlier cutover stopped before the switch; it has been rolled back: the source is unfenced, as before",
            )
            .with_hint("start change capture again if it is stopped, then rerun pgferry cutover"));
        }
        Recovery::Finish => {
            ensure_journal(&dst).await?;
            return Box::pin(finish(source, target, &dst, name, entry.as_ref(), events)).await;
        }
        Recovery::AskOperator => return Err(switch_unknown(entry.as_ref(), resumed.fence_recorded)),
        Recovery::WaitForSwitch => {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("the switch command of the stopped cutover is still running (process group {})", entry.and_then(|e| e.switch_pid).unwrap_or(0)),
            )
            .with_hint("wait for it to end (or stop it yourself), see where the application points, then rerun with --switch-ran or --switch-did-not-run"))
        }
        // Refused by the guard above: a completed cutover's journal says so there.
        Recovery::Done => {
            return Err(Error::new(ErrorKind::Refused, format!("migration {name} was already cut over; nothing was done")))
        }
    }
    let mut shutdown = options.shutdown.clone();
    if requested(&shutdown) {
        return Err(interrupted("nothing was changed"));
    }
    // Before the gate reads the source: another migration's fence there would
    // read as differences whose fixes fence the target.
    fence::refuse_another_fence(&src, name).await?;
    let observed = observe(&src, &dst, name).await?;
    if let Decision::NoGo(reasons) = go_no_go(&observed, &options.policy) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("the cutover may not start:\n  - {}", reasons.join("\n  - ")),
        )
        .with_hint("nothing was changed; fix the reasons above and rerun"));
    }
    crate::parity::warn(&observed.parity);
    // The bulk of the large objects before the fence; inside it, only what changed again.
    crate::large_objects::sync_large_objects(&src, &dst).await?;
    let plan = fence::planned(&src, &options.administrators).await?;
    // The source's pgferry state (its fence journal) made current now, not
    // inside the downtime.
    crate::state::ensure(&src, pgferry_core::state::Side::Source).await?;
    let lift_statements = plan.lift_statements();
    ensure_journal(&dst).await?;
    let instance = options.instance_switch.as_deref().map(SwitchBarrier::id);
    record_decided(&dst, name, pair.source(), options.views == ViewRefresh::AfterSwitch, instance).await?;
    events.emit(Event::CutoverStep { step: CutoverStep::Decided.as_str() });
    let mut laps = Vec::new();
    let mut fenced_at = Instant::now();
    let fencing = async {
        failpoint::pause("cutover-before-drain").await;
        let drain = open_drain(source, target, &src, &dst, name).await?;
        fenced_at = Instant::now();
        before_switch(source, target, &src, &dst, options, &plan, drain, &mut laps, events).await
    };
    let outcome = tokio::select! {
        outcome = fencing => outcome,
        () = stop_requested(&mut shutdown) => Err(interrupted("stopped by a signal")),
    };
    let fenced = match outcome {
        Ok(fenced) => fenced,
        Err(error) => {
            drop((src, dst));
            return Err(rolled_back(
                error,
                roll_back(source, target, name, options.outside_fence.as_ref(), &lift_statements).await,
            ));
        }
    };
    // Nothing may have lifted the fence meanwhile (a runner lock keeps abort out;
    // this is the last look before the point of no return).
    let still_fenced = fence::verify_still_raised(source, &src, name, &options.administrators).await;
    if let Err(error) = still_fenced {
        drop((src, dst));
        return Err(rolled_back(
            error,
            roll_back(source, target, name, options.outside_fence.as_ref(), &lift_statements).await,
        ));
    }
    let switch_started = Instant::now();
    if let Err(error) = switch(&src, &dst, name, options, events).await {
        drop((src, dst));
        let error = match error.hint.is_some() {
            // The instance's switch never ran for it: the barrier's own words.
            true => error,
            false => error.with_hint("the switch command is not running any more; if it had already moved the application, move it back: the source takes writes again"),
        };
        return Err(rolled_back(
            error,
            roll_back(source, target, name, options.outside_fence.as_ref(), &lift_statements).await,
        ));
    }
    let downtime_seconds = fenced_at.elapsed().as_secs_f64();
    laps.push(("switch", switch_started.elapsed().as_secs_f64()));
    record_switched(&dst, name, downtime_seconds, events).await.map_err(|e| {
        Error { message: format!("the switch command succeeded, but journaling it failed: {}", e.message), ..e }
            .with_hint("the application now points at the target; when the target answers again, rerun pgferry cutover --switch-ran")
    })?;
    record(&dst, name, CutoverStep::Opened, events).await?;
    failpoint::hit("cutover-after-opened");
    let views_refreshed_after_switch = match options.views {
        ViewRefresh::AfterSwitch => Some(Box::pin(refresh_after_switch(source, target, name)).await?),
        ViewRefresh::BeforeSwitch => None,
    };
    record(&dst, name, CutoverStep::Reported, events).await?;
    Ok(CutoverReport {
        migration: name.to_string(),
        downtime_seconds,
        steps: laps,
        connect_revoked_from: fenced.report.connect_revoked_from,
        terminated_sessions: fenced.report.terminated_sessions,
        unfenced_superusers: fenced.report.unfenced_superusers,
        sequences_set: fenced.sequences_set,
        changes_drained: fenced.changes_drained,
        rows_checked: fenced.rows_checked,
        partitions_recopied: fenced.partitions_recopied,
        large_objects_synced: fenced.large_objects_synced,
        materialized_views_refreshed: fenced
            .materialized_views_refreshed
            .or(views_refreshed_after_switch.map(|(n, _)| n))
            .unwrap_or(0),
        views_refreshed_after_switch: views_refreshed_after_switch.map(|(_, seconds)| seconds),
        complete: true,
        took_over_from: None,
    })
}

/// What a rerun finds of an earlier cutover. The source's own record of a
/// switch counts: a target journal lost or removed (by cleanup) never makes it
/// look unstarted (another target given by mistake is refused by the pairing check).
async fn resumed(
    src: &Client,
    name: &MigrationName,
    entry: Option<&JournalEntry>,
    word: SwitchWord,
) -> Result<Resumed> {
    let switch_on_source = fence::switch_recorded(src, name).await?.then_some(CutoverStep::Switching);
    Ok(Resumed {
        last_step: entry.map(|e| e.step).max(switch_on_source),
        fence_recorded: fence::is_recorded(src, name).await? || outside_fence::recorded(src, name).await?.is_some(),
        switch_running: entry.is_some_and(JournalEntry::switch_runs_here),
        word,
    })
}

/// What the next `pgferry cutover` would do first about an earlier, stopped one
/// (`None`: nothing, it would start from the go/no-go): `status` and
/// `cutover --dry-run` say it instead of "would start now".
pub(crate) async fn pending_recovery(src: &Client, dst: &Client, name: &MigrationName) -> Result<Option<String>> {
    let entry = journal_entry(dst, name).await?;
    let resumed = resumed(src, name, entry.as_ref(), SwitchWord::Unspoken).await?;
    Ok(match recovery(&resumed) {
        Ok(Recovery::Start | Recovery::Done) | Err(_) => None,
        Ok(Recovery::RollBack) => Some(format!(
            "an earlier cutover of migration {name} stopped before the switch and left the source fenced: the next pgferry cutover only rolls it back (the source takes writes again); run it once more to cut over"
        )),
        Ok(Recovery::Finish) => Some(format!(
            "an earlier cutover of migration {name} switched the application and stopped after it: the next pgferry cutover finishes it (the old source stays fenced)"
        )),
        Ok(Recovery::AskOperator | Recovery::WaitForSwitch)
            if resumed.fence_recorded && entry.as_ref().is_some_and(|e| e.instance.is_some()) =>
        {
            Some(format!(
            "a cutover of migration {name} was stopped at the one switch of an instance cutover: rerun pgferry cutover --all-databases with the same databases; it asks where the application points only when the other databases' journals cannot tell"
        ))
        }
        Ok(Recovery::AskOperator) => Some(format!(
            "a cutover of migration {name} was stopped while its switch command ran: the application may point at either side; see where it points, then rerun pgferry cutover with --switch-ran or --switch-did-not-run"
        )),
        Ok(Recovery::WaitForSwitch) => Some(format!(
            "the switch command of a stopped cutover of migration {name} is still running: wait for it to end, see where the application points, then rerun pgferry cutover with --switch-ran or --switch-did-not-run"
        )),
    })
}

/// Where migration `name`'s cutover stopped ([`StoppedCutover`]); it changes
/// nothing but an out-of-date journal's state, brought up to this release.
pub async fn stopped_cutover(source: &ConnSpec, target: &ConnSpec, name: &MigrationName) -> Result<StoppedCutover> {
    let (src, dst) =
        Box::pin(async { tokio::try_join!(pgferry_pg::connect(source), pgferry_pg::connect(target)) }).await?;
    let entry = journal_entry(&dst, name).await?;
    let resumed = resumed(&src, name, entry.as_ref(), SwitchWord::Unspoken).await?;
    Ok(StoppedCutover {
        last_step: resumed.last_step,
        fenced: resumed.fence_recorded,
        instance: entry.and_then(|e| e.instance),
    })
}

/// What the part before the switch did.
struct Fenced {
    report: fence::FenceReport,
    sequences_set: usize,
    changes_drained: u64,
    rows_checked: i64,
    partitions_recopied: Vec<String>,
    large_objects_synced: usize,
    /// `None` when they are left for after the switch.
    materialized_views_refreshed: Option<usize>,
}

/// Fence, drain, sequences, the changed rows' check: everything before the point
/// of no return. Any error here, or a signal, is rolled back by the caller.
#[allow(clippy::too_many_arguments)]
async fn before_switch(
    source: &ConnSpec,
    target: &ConnSpec,
    src: &Client,
    dst: &Client,
    options: &CutoverOptions,
    plan: &fence::RecordedFence,
    (mut draining, drain_end): Drain<'_>,
    laps: &mut Vec<(&'static str, f64)>,
    events: &Events,
) -> Result<Fenced> {
    let name = &options.migration;
    let mut clock = Instant::now();
    let mut lap = |laps: &mut Vec<(&'static str, f64)>, what| {
        laps.push((what, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };
    let fencing = async {
        let report = fence::raise(source, src, name, plan, &options.administrators).await?;
        record(dst, name, CutoverStep::Fenced, events).await?;
        if let Some(outside) = &options.outside_fence {
            match &options.instance_switch {
                Some(barrier) => barrier.outside_fence_once(outside_fence::raise(src, name, outside)).await?,
                None => outside_fence::raise(src, name, outside).await?,
            }
        }
        Ok::<_, Error>(report)
    };
    // The drain applies what the application writes until the fence is up.
    let report = tokio::select! {
        biased;
        fenced = fencing => fenced?,
        ended = &mut draining => return Err(drain_ended_early(ended)),
    };
    failpoint::hit("cutover-after-fenced");
    lap(laps, "fence (verified)");
    // The fenced source's end, flushed at once (decoding reads only flushed
    // WAL, and nothing else may commit on the fenced source to flush it).
    failpoint::pause("cutover-before-mark").await;
    let end = crate::apply::mark(src).await?;
    fence::flush_wal(src, name).await?;
    drain_end.send_replace(Some(end));
    let drained = draining.await?;
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
    // What logical replication does not carry, carried once writes have stopped.
    let uncovered = crate::partitions::uncovered_partitions(src, dst, name).await?.all();
    if !uncovered.is_empty() {
        crate::partitions::recopy_partitions(source, target, name, &uncovered).await?;
        lap(laps, "re-copy partitions truncated or attached since the copy");
    }
    let large_objects = crate::large_objects::sync_large_objects(src, dst).await?;
    let views = match options.views {
        ViewRefresh::BeforeSwitch => {
            let views = refresh_materialized_views(src, dst, name, "cutover").await?;
            lap(laps, "large objects and materialized views");
            Some(views.views.len())
        }
        ViewRefresh::AfterSwitch => {
            lap(laps, "large objects");
            None
        }
    };
    record(dst, name, CutoverStep::Drained, events).await?;
    failpoint::hit("cutover-after-drained");
    let sequences = crate::copy::sync_sequences(src, dst).await?;
    record(dst, name, CutoverStep::SequencesSet, events).await?;
    lap(laps, "sequences");
    // pgferry's own engine changes no constraint or trigger on the target: the
    // step is recorded so that the journal's order is the same for every engine.
    record(dst, name, CutoverStep::ConstraintsRestored, events).await?;
    // With other databases cut over side by side, they are the parallelism:
    // one worker each (two sessions fewer per database inside the downtime).
    let jobs = if options.instance_switch.is_some() { 1 } else { 2 };
    let sessions = Sessions { source, target, src, dst };
    let checked = check_changed_rows(sessions, name, jobs, events).await;
    failpoint::pause("cutover-before-quiet-check").await;
    let slot = crate::slot::resolve(src, dst, name).await?;
    // The check counted no change as pending: this proves there is none. A
    // write after the drain also explains any difference the check found, so
    // it is the error said first.
    fence::verify_no_write_since(src, &slot, name, &drained.applied_lsn, &options.administrators).await?;
    let rows_checked = checked?;
    record(dst, name, CutoverStep::Validated, events).await?;
    lap(laps, "validate changed rows; nothing written since the drain");
    failpoint::hit("cutover-before-switch");
    Ok(Fenced {
        report,
        sequences_set: sequences,
        changes_drained: drained.changes,
        rows_checked,
        partitions_recopied: uncovered.iter().map(ToString::to_string).collect(),
        large_objects_synced: large_objects.differences.missing.len()
            + large_objects.differences.extra.len()
            + large_objects.differences.changed.len(),
        materialized_views_refreshed: views,
    })
}

/// The switch: its start journaled before it runs, its process group recorded,
/// then waited for at most the time limit. Signals are not acted on here: the
/// command's end must be seen, or nobody knows where the application points.
async fn switch(
    src: &Client,
    dst: &Client,
    name: &MigrationName,
    options: &CutoverOptions,
    events: &Events,
) -> Result<()> {
    // With other databases: every one fenced, drained and checked before any
    // journals its switch (a kill while waiting then rolls back by itself).
    if let Some(barrier) = &options.instance_switch {
        barrier.ready().await?;
    }
    fence::record_switch(src, name).await?;
    record(dst, name, CutoverStep::Switching, events).await?;
    failpoint::hit("cutover-after-switching");
    match &options.instance_switch {
        Some(barrier) => barrier.arrive(run_switch_command(dst, name, options)).await,
        None => run_switch_command(dst, name, options).await,
    }
}

/// The operator's switch command, its process group journaled, within its time limit.
async fn run_switch_command(dst: &Client, name: &MigrationName, options: &CutoverOptions) -> Result<()> {
    let Some(command) = &options.switch_command else { return Ok(()) };
    let running = shell::spawn("the switch command", command)?;
    if let Err(e) = dst
        .execute(
            "UPDATE pgferry.cutover SET switch_pid = $2, switch_host = $3 WHERE migration = $1",
            &[&name.as_str(), &running.pid(), &this_host()],
        )
        .await
    {
        tracing::warn!("journaling the switch command's process group failed: {e}");
    }
    failpoint::hit("cutover-during-switch");
    running.wait(options.switch_timeout).await
}

/// The exact check after the drain: every row change capture touched since it
/// was last found equal is compared; a difference rolls the cutover back. It
/// counts no change as pending: its caller proves right after it that nothing
/// was written since the drain ([`fence::verify_no_write_since`]).
async fn check_changed_rows(sessions: Sessions<'_>, name: &MigrationName, jobs: usize, events: &Events) -> Result<i64> {
    let options = ValidateOptions { jobs, chunk_rows: 100_000, max_differences: 10, show_values: false };
    let report =
        validate_changed(sessions, name, &options, Recording::Record, Unapplied::ProvenByCaller, events).await?;
    // The check is the cutover's own step.
    events.emit(Event::Phase(Phase::Cutover));
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
            format!(
                "{} (keys {}): {}{}{}",
                t.table,
                keys.join(", "),
                t.verdict.as_str(),
                if why.is_empty() { "" } else { ", " },
                why.join("; ")
            )
        })
        .collect();
    Err(Error::new(
        ErrorKind::Precondition,
        format!("the changed rows are {}: {}", report.verdict.as_str(), tables.join("; ")),
    )
    .with_hint("run pgferry validate --changed-only --show-values to see them; find the cause (a write on the target, a writer the fence spared?) before cutting over"))
}

/// After the switch: the remaining steps only record that the target is open.
async fn finish(
    source: &ConnSpec,
    target: &ConnSpec,
    dst: &Client,
    name: &MigrationName,
    entry: Option<&JournalEntry>,
    events: &Events,
) -> Result<CutoverReport> {
    record(dst, name, CutoverStep::Opened, events).await?;
    // The stopped run may have ended before its refresh after the switch (or
    // inside it): the refresh is idempotent, so it runs again.
    let refreshed = match entry.is_some_and(|e| e.views_after_switch) {
        true => Some(Box::pin(refresh_after_switch(source, target, name)).await?),
        false => None,
    };
    record(dst, name, CutoverStep::Reported, events).await?;
    Ok(CutoverReport {
        migration: name.to_string(),
        downtime_seconds: entry.and_then(|e| e.downtime_seconds).unwrap_or(f64::NAN),
        steps: Vec::new(),
        connect_revoked_from: Vec::new(),
        terminated_sessions: 0,
        unfenced_superusers: Vec::new(),
        sequences_set: 0,
        changes_drained: 0,
        rows_checked: 0,
        partitions_recopied: Vec::new(),
        large_objects_synced: 0,
        materialized_views_refreshed: refreshed.map_or(0, |(n, _)| n),
        views_refreshed_after_switch: refreshed.map(|(_, seconds)| seconds),
        complete: false,
        took_over_from: None,
    })
}

/// Lifts the outside fence and pgferry's own, over a fresh connection to the
/// source (the cutover's own may be in any state), then clears the cutover's
/// journal on the target when it can: a target that does not answer only means
/// the next cutover rolls back again, harmlessly.
async fn roll_back(
    source: &ConnSpec,
    target: &ConnSpec,
    name: &MigrationName,
    outside: Option<&OutsideFence>,
    statements: &[String],
) -> Result<()> {
    let unfenced = async {
        let src = pgferry_pg::connect(source).await?;
        fence::allow_writes(&src).await?;
        outside_fence::lift(&src, name, outside).await?;
        let lowered = fence::lower(&src, name).await?;
        fence::forget_switch(&src, name).await?;
        Ok::<_, Error>(lowered)
    };
    if let Err(error) = unfenced.await {
        // The failure's own remedy (say, the unfence command this rerun was not given) comes first.
        let mut hint = match &error.hint {
            Some(own) => format!("{own}: until then the source may still be fenced"),
            None => String::from(
                "the source may still be fenced: rerun pgferry cutover once the source answers, and it lifts the fence",
            ),
        };
        if !statements.is_empty() {
            hint.push_str("; or run on the source database, in one transaction:\n  ");
            hint.push_str(&statements.join(";\n  "));
            hint.push_str(&format!(";\n  DELETE FROM pgferry.source_fence WHERE migration = '{name}';"));
        }
        return Err(Error { hint: Some(hint), ..error });
    }
    let cleared = async { clear_journal(&pgferry_pg::connect(target).await?, name).await };
    if let Err(e) = cleared.await {
        tracing::warn!(
            "the source is unfenced, but the cutover's journal on the target could not be cleared: {}",
            e.message
        );
    }
    Ok(())
}

async fn clear_journal(dst: &Client, name: &MigrationName) -> Result<()> {
    dst.execute("DELETE FROM pgferry.cutover WHERE migration = $1", &[&name.as_str()])
        .await
        .map(|_| ())
        .map_err(|e| Error::server("clearing the cutover journal", e))
}

/// The error of a cutover that was rolled back: its first cause, and whether the
/// rollback itself succeeded.
fn rolled_back(error: Error, rollback: Result<()>) -> Error {
    match rollback {
        Ok(()) => Error {
            message: format!("the cutover was rolled back, the source is unfenced: {}", error.message),
            ..error
        },
        Err(failed) => Error {
            kind: ErrorKind::Server,
            message: format!(
                "the cutover failed: {}\nand rolling it back failed too: {}",
                error.message, failed.message
            ),
            hint: failed.hint,
            ..error
        },
    }
}

fn interrupted(what: &str) -> Error {
    Error::new(ErrorKind::Interrupted, format!("the cutover was {what}"))
}

fn requested(shutdown: &Option<watch::Receiver<bool>>) -> bool {
    shutdown.as_ref().is_some_and(|s| *s.borrow())
}

/// The cutover's drain, following from before the fence, and the sender of
/// its end position ([`FencedDrain`]).
type Drain<'a> = (
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::apply::FollowReport>> + 'a>>,
    watch::Sender<Option<pgferry_pgoutput::Lsn>>,
);

/// Starts the drain while the application still writes, and returns once its
/// change stream is open (its walsender then holds the slot, which is what the
/// fence spares: a session still opening would be ended as the application's)
/// and it has caught up with where the source was then, or after
/// [`CATCH_UP_WITHIN`]: the slot's first decoding (from its restart point, through
/// the WAL of every database on the server) and any backlog cost nothing of the
/// downtime.
async fn open_drain<'a>(
    source: &'a ConnSpec,
    target: &'a ConnSpec,
    src: &Client,
    dst: &Client,
    name: &MigrationName,
) -> Result<Drain<'a>> {
    let (drain, end) = FencedDrain::read(src).await?;
    let options = FollowOptions {
        migration: name.clone(),
        until: Until::Fenced(drain),
        batch: BatchLimits::default(),
        shutdown: None,
        drain: true,
        lanes: 1,
    };
    let (opened, mut open) = watch::channel(false);
    let observer = move |event: &Event| {
        if matches!(event, Event::Follow(FollowEvent::Started { .. })) {
            opened.send_replace(true);
        }
    };
    let events = Events::to(vec![std::sync::Arc::new(observer)]);
    let mut draining: std::pin::Pin<Box<dyn std::future::Future<Output = _> + 'a>> =
        Box::pin(async move { follow(source, target, &options, &events).await });
    tokio::select! {
        biased;
        ended = &mut draining => return Err(drain_ended_early(ended)),
        _ = open.wait_for(|open| *open) => {}
    }
    let slot = crate::slot::resolve(src, dst, name).await?;
    tokio::select! {
        biased;
        ended = &mut draining => return Err(drain_ended_early(ended)),
        caught_up = caught_up(src, &slot) => caught_up?,
    }
    Ok((draining, end))
}

/// How long the cutover waits for its drain to catch up before the fence; past
/// it, the fence goes up all the same and the drain catches up inside.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(10);

/// Returns once the slot's confirmed position (the drain acknowledges what it
/// applied, and a quiet stream's position at least every second) reaches the
/// source's current one, or after [`CATCH_UP_WITHIN`].
async fn caught_up(src: &Client, slot: &str) -> Result<()> {
    let started = Instant::now();
    let now: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| Error::server("reading the source's position", e))?
        .get(0);
    while started.elapsed() < CATCH_UP_WITHIN {
        let reached: bool = src
            .query_one(
                "SELECT coalesce(bool_and(confirmed_flush_lsn >= $2::text::pg_lsn), true)
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &now],
            )
            .await
            .map_err(|e| Error::server("reading the migration's slot", e))?
            .get(0);
        if reached {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::debug!(slot, "the drain had not caught up within {CATCH_UP_WITHIN:?}: the fence goes up all the same");
    Ok(())
}

/// A drain that returned before it was given its end: its error.
fn drain_ended_early(ended: Result<crate::apply::FollowReport>) -> Error {
    ended.err().unwrap_or_else(|| Error::new(ErrorKind::Server, "the drain ended before the source was fenced"))
}

/// Resolves once a stop is requested; never without a shutdown channel.
async fn stop_requested(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(receiver) => {
            if receiver.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

fn switch_unknown(entry: Option<&JournalEntry>, fenced: bool) -> Error {
    let at = entry
        .and_then(|e| e.switch_host.clone())
        .map(|h| format!(" (its switch command started on {h})"))
        .unwrap_or_default();
    if !fenced {
        return Error::new(
            ErrorKind::Refused,
            format!("an earlier cutover was stopped at its switch{at}, and the source's fence is not recorded any more (a rollback may have lowered it): nothing was done"),
        )
        .with_hint("see where the application points and whether the source takes writes; rerun with --switch-did-not-run to clear the cutover (pgferry cannot finish it over an unrecorded fence)");
    }
    Error::new(
        ErrorKind::Refused,
        format!("an earlier cutover was stopped at its switch{at}: the application may already point at the target, so nothing was rolled back and the source stays fenced"),
    )
    .with_hint("see where the application points, then rerun with --switch-ran (the cutover finishes; the source stays fenced) or --switch-did-not-run (the cutover rolls back; the source takes writes again)")
}

/// The cutover's journal row.
struct JournalEntry {
    step: CutoverStep,
    switch_pid: Option<i32>,
    switch_host: Option<String>,
    downtime_seconds: Option<f64>,
    views_after_switch: bool,
    /// The instance cutover it was part of ([`SwitchBarrier::id`]).
    instance: Option<String>,
}

impl JournalEntry {
    fn switch_runs_here(&self) -> bool {
        self.switch_host.as_deref() == Some(this_host().as_str()) && self.switch_pid.is_some_and(shell::is_alive)
    }
}

/// Creates the cutover journal, or brings an earlier release's up to date. Only
/// once the cutover changes something: a refused one leaves the target as it was.
async fn ensure_journal(dst: &Client) -> Result<()> {
    crate::state::ensure(dst, pgferry_core::state::Side::Target).await
}

/// The journaled cutover, if there is a journal and it holds this migration.
async fn journal_entry(dst: &Client, name: &MigrationName) -> Result<Option<JournalEntry>> {
    let exists: bool = dst
        .query_one("SELECT to_regclass('pgferry.cutover') IS NOT NULL", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the cutover journal", e))?;
    if !exists {
        return Ok(None);
    }
    ensure_journal(dst).await?;
    let row = dst
        .query_opt(
            "SELECT step, switch_pid, switch_host, downtime_seconds, views_after_switch, instance_cutover
             FROM pgferry.cutover WHERE migration = $1",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the cutover journal", e))?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = row.get(0);
    let step = CutoverStep::parse(&stored).ok_or_else(|| {
        Error::new(
            ErrorKind::Precondition,
            format!("the cutover journal holds a step this pgferry does not know: {stored}"),
        )
        .with_hint("finish the cutover with the pgferry version that started it")
    })?;
    Ok(Some(JournalEntry {
        step,
        switch_pid: row.get(1),
        switch_host: row.get(2),
        downtime_seconds: row.get(3),
        views_after_switch: row.get(4),
        instance: row.get(5),
    }))
}

/// Journals the decision: its step, whether the views are left for after the
/// switch (a rerun that finishes this cutover refreshes them then), the
/// instance cutover it is part of, and the source's identity, which outlives
/// the migration's row (`cleanup` keeps this one) for the pairing check
/// ([`crate::pairing`]).
async fn record_decided(
    dst: &Client,
    name: &MigrationName,
    source: &DatabaseIdentity,
    after: bool,
    instance: Option<&str>,
) -> Result<()> {
    dst.execute(
        "WITH history AS (INSERT INTO pgferry.timeline (migration, kind, name) VALUES ($1, 'cutover_step', $2))
         INSERT INTO pgferry.cutover (migration, step, views_after_switch, source_system_identifier, source_database_oid, instance_cutover)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (migration) DO UPDATE SET step = excluded.step, updated_at = now(),
             views_after_switch = excluded.views_after_switch,
             source_system_identifier = excluded.source_system_identifier,
             source_database_oid = excluded.source_database_oid,
             instance_cutover = excluded.instance_cutover",
        &[&name.as_str(), &CutoverStep::Decided.as_str(), &after, &source.system_identifier, &source.database_oid, &instance],
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::server("writing the cutover journal", e))
}

/// The refresh after the switch: the application already reads the target, so
/// a failure cannot roll back; it says so and how to finish. The views count
/// and the seconds it took.
async fn refresh_after_switch(source: &ConnSpec, target: &ConnSpec, name: &MigrationName) -> Result<(usize, f64)> {
    let refreshing = async {
        let (src, dst) =
            Box::pin(async { tokio::try_join!(pgferry_pg::connect(source), pgferry_pg::connect(target)) }).await?;
        refresh_materialized_views(&src, &dst, name, "cutover").await
    };
    let refreshed = Box::pin(refreshing).await.map_err(|e: Error| {
        Error { message: format!("the application was switched to the target, but refreshing its materialized views failed: {}", e.message), ..e }
            .with_hint("the views are stale until refreshed: rerun pgferry cutover (it finishes and refreshes them), or run REFRESH MATERIALIZED VIEW on the target yourself")
    })?;
    Ok((refreshed.views.len(), refreshed.seconds))
}

async fn record_switched(dst: &Client, name: &MigrationName, downtime_seconds: f64, events: &Events) -> Result<()> {
    record(dst, name, CutoverStep::Switched, events).await?;
    dst.execute(
        "UPDATE pgferry.cutover SET downtime_seconds = $2 WHERE migration = $1",
        &[&name.as_str(), &downtime_seconds],
    )
    .await
    .map_err(|e| Error::server("writing the cutover journal", e))?;
    events.emit(Event::Switched { downtime_seconds });
    Ok(())
}

/// This machine's name, to tell whether a journaled process group is ours to look at.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

async fn record(dst: &Client, name: &MigrationName, step: CutoverStep, events: &Events) -> Result<()> {
    // One statement: the history row and the step are written together.
    dst.execute(
        "WITH history AS (INSERT INTO pgferry.timeline (migration, kind, name) VALUES ($1, 'cutover_step', $2))
         INSERT INTO pgferry.cutover (migration, step, fenced_at) VALUES ($1, $2, CASE WHEN $2 = 'fenced' THEN now() END)
         ON CONFLICT (migration) DO UPDATE SET step = excluded.step, updated_at = now(),
             fenced_at = coalesce(excluded.fenced_at, pgferry.cutover.fenced_at)",
        &[&name.as_str(), &step.as_str()],
    )
    .await
    .map_err(|e| Error::server("writing the cutover journal", e))?;
    events.emit(Event::CutoverStep { step: step.as_str() });
    Ok(())
}

/// The figures the go/no-go needs.
pub(crate) async fn observe(src: &Client, dst: &Client, name: &MigrationName) -> Result<Observed> {
    // Before the copy (or before change capture first ran) the journal's tables
    // are missing: not replicating, which the go/no-go refuses with what to run.
    let journaled: bool = dst
        .query_one(
            "SELECT to_regclass('pgferry.migration') IS NOT NULL AND to_regclass('pgferry.apply_progress') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the migration's journal", e))?;
    let progress = match journaled {
        false => None,
        true => dst
            .query_opt(
                "SELECT p.applied_lsn::text, m.phase FROM pgferry.migration m
                 LEFT JOIN pgferry.apply_progress p ON p.migration = m.name WHERE m.name = $1",
                &[&name.as_str()],
            )
            .await
            .map_err(|e| Error::server("reading the migration's journal", e))?,
    };
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
    let slot = crate::slot::resolve(src, dst, name).await?;
    let slot_active: bool = src
        .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?
        .map(|r| r.get(0))
        .unwrap_or(false);
    let last = crate::validate::last_validation(dst, name).await?;
    let replicating = phase.as_deref() == Some("copied") && applied.is_some();
    // Before change capture runs the target is still being built: nothing to compare yet.
    let parity = match replicating {
        true => crate::parity::check(src, dst, name).await?,
        false => pgferry_core::parity::Parity::default(),
    };
    Ok(Observed {
        lag_bytes,
        validation_mismatches: last.map_or(0, |v| v.mismatched_chunks),
        pending_schema_changes: crate::ddl::pending_schema_changes(src, dst, name).await?,
        rows_to_prove: crate::ddl::rows_to_prove(dst, name).await?,
        replicating,
        stream_in_use: slot_active,
        insert_only_tables: insert_only_tables(src, name).await?,
        prepared_transactions: crate::fence::prepared_transactions(src).await?,
        parity,
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
