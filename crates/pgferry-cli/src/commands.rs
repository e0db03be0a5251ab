//! Runs one command: parse its inputs, call the library, render the result.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::preflight::CheckPlan;
use pgferry_core::slot::SlotVerdict;
use pgferry_core::validation::Verdict;
use pgferry_pg::ConnSpec;

use crate::cli::{
    AbortArgs, CheckArgs, Command, CopyArgs, CutoverArgs, Format, RemoveArgs, RolesArgs, StatusArgs, ValidateArgs,
};
use crate::render;

pub(crate) async fn run(command: Command) -> Result<ExitCode> {
    match command {
        // Large futures live on the heap (clippy::large_futures), not in run's own.
        Command::Demo(args) => Box::pin(crate::demo::run(args)).await,
        Command::Check(args) => check(args).await,
        Command::Start(args) => Box::pin(crate::start::start(args)).await,
        Command::Seed(command) => crate::start::seed(command).await,
        Command::Roles(args) => roles(args).await,
        Command::Copy(args) => copy(args).await,
        Command::Follow(args) => crate::follow::follow(args).await,
        Command::Validate(args) => validate(args).await,
        Command::Status(args) => status(args).await,
        Command::Report(args) => crate::report::report(args).await,
        Command::Cutover(args) => Box::pin(cutover(args)).await,
        Command::Rehearse(args) => Box::pin(rehearse(args)).await,
        Command::Abort(args) => abort(args).await,
        Command::Cleanup(args) => remove(args, pgferry::cleanup::Fence::Keep).await,
        Command::Inventory(args) => crate::target::inventory(args).await,
        Command::Target(command) => crate::target::run(command).await,
        Command::Aws(command) => crate::aws::run(command).await,
    }
}

pub(crate) fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Refused => 1,
        ErrorKind::Usage | ErrorKind::Connection => 2,
        ErrorKind::Precondition | ErrorKind::Server => 3,
        ErrorKind::Interrupted => 130,
        ErrorKind::SlotLost => 5,
    }
}

async fn check(args: CheckArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let plan = CheckPlan { full_copy: !args.seeded, long_transaction_seconds: args.long_transaction_seconds };
    if args.instance.all_databases {
        let report = pgferry::instance::check(&source, &target, &args.instance.selection(), &plan).await?;
        match args.format {
            Format::Table => print!("{}", render::instance_check(&report)),
            Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
        }
        return Ok(if report.ready { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let report = pgferry::check::check(&source, &target, &plan).await?;
    match args.format {
        Format::Table => print!("{}", render::check_table(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(if report.ready { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub(crate) fn parse_spec(flag: &str, value: &str) -> Result<ConnSpec> {
    ConnSpec::parse(value).map_err(|e| {
        let mut err = pgferry::Error::from(e);
        err.message = format!("{flag}: {}", err.message);
        err
    })
}

async fn copy(args: CopyArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let migration = parse_migration(&args.name)?;
    // A second copy (or start) of the same migration would write the same target
    // from another snapshot beside this one.
    let _runner = pgferry::start::RunnerLock::take(&target, &migration).await?;
    let options = copy_options(migration, &args.tuning);
    let view = std::sync::Arc::new(crate::progress::CopyView::new(false));
    let events = crate::metrics::events(&args.metrics, vec![view.clone()])?;
    let report = pgferry::copy::copy(&source, &target, &options, &events).await;
    view.finish();
    let report = report?;
    match args.format {
        Format::Table => print!("{}", render::copy_summary(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn copy_options(
    migration: pgferry_core::names::MigrationName,
    tuning: &crate::cli::CopyTuning,
) -> pgferry::copy::CopyOptions {
    pgferry::copy::CopyOptions {
        migration,
        jobs: tuning.jobs,
        index_jobs: tuning.index_jobs,
        split_larger_than: tuning.split_larger_than,
        replica_identity_full: tuning.replica_identity_full,
    }
}

/// Reads `--name` as a migration name.
pub(crate) fn parse_migration(name: &str) -> Result<pgferry_core::names::MigrationName> {
    pgferry_core::names::MigrationName::new(name)
        .map_err(|e| pgferry::Error::new(ErrorKind::Usage, format!("--name: {e}")))
}

/// Parses both connection strings, reporting both when both are wrong.
pub(crate) fn parse_pair(source: &str, target: &str) -> Result<(ConnSpec, ConnSpec)> {
    match (parse_spec("--source", source), parse_spec("--target", target)) {
        (Ok(s), Ok(t)) => Ok((s, t)),
        (s, t) => Err(pgferry::Error::combine(s.err().into_iter().chain(t.err()).collect())),
    }
}

async fn validate(args: ValidateArgs) -> Result<ExitCode> {
    if args.instance.all_databases {
        return crate::instance::validate(args).await;
    }
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let migration = parse_migration(&args.name)?;
    let events = crate::metrics::events(&args.metrics, Vec::new())?;
    let report = validate_one(&source, &target, &migration, &args, &events).await?;
    print_validation(&report, args.format);
    Ok(verdict_exit_code(report.verdict))
}

/// One database's validation (and its repair, with `--repair`).
pub(crate) async fn validate_one(
    source: &ConnSpec,
    target: &ConnSpec,
    migration: &pgferry_core::names::MigrationName,
    args: &ValidateArgs,
    events: &pgferry::events::Events,
) -> Result<pgferry::validate::ValidationReport> {
    let options = pgferry::validate::ValidateOptions {
        jobs: args.jobs,
        chunk_rows: args.chunk_rows,
        max_differences: args.max_differences,
        show_values: args.show_values,
    };
    let run = || async {
        if args.changed_only {
            let (src, dst) =
                Box::pin(async { tokio::try_join!(pgferry_pg::connect(source), pgferry_pg::connect(target)) }).await?;
            pgferry::validate::validate_changed(
                pgferry::validate::Sessions { source, target, src: &src, dst: &dst },
                migration,
                &options,
                pgferry::validate::Recording::Record,
                pgferry::validate::Unapplied::Counted,
                events,
            )
            .await
        } else {
            pgferry::validate::validate(source, target, Some(migration), &options, events).await
        }
    };
    if args.repair {
        // Before the first validation, which records its verdict on the target.
        let repair = pgferry_core::lifecycle::Command::Repair;
        pgferry::lifecycle::refuse_unless_allowed(source, Some(target), migration, repair).await?;
    }
    let mut report = run().await?;
    if args.repair {
        for t in report.tables.iter().filter(|t| t.verdict == Verdict::NotProven) {
            tracing::info!(target: crate::logging::EVENTS, "not repaired {}: not proven different ({})", t.table, unproven_text(t));
        }
        // Only proven differences are copied again, never what may be lag.
        let differing: Vec<_> = report.different().filter(|t| t.problem.is_none()).map(|t| t.name.clone()).collect();
        if !differing.is_empty() {
            if args.format == Format::Table {
                print_validation(&report, args.format);
            }
            let repaired = pgferry::copy::repair_tables(source, target, migration, &differing).await?;
            for table in &repaired {
                tracing::info!(
                    target: crate::logging::EVENTS,
                    "repaired {}: {} row(s) copied again from the snapshot at {}",
                    table.table, table.rows, table.snapshot_lsn
                );
            }
            report = run().await?;
        }
    }
    Ok(report)
}

/// Validation verdicts as exit codes: 0 EQUAL, 1 DIFFERENT, 4 NOT PROVEN.
pub(crate) fn verdict_exit_code(verdict: Verdict) -> ExitCode {
    ExitCode::from(verdict_code(verdict))
}

pub(crate) fn verdict_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Equal => 0,
        Verdict::Different => 1,
        Verdict::NotProven => 4,
    }
}

fn unproven_text(table: &pgferry::validate::TableVerdict) -> String {
    table.unproven.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn print_validation(report: &pgferry::validate::ValidationReport, format: Format) {
    match format {
        Format::Table => print!("{}", render::validation(report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(report).expect("report serializes")),
    }
}

async fn remove(args: RemoveArgs, fence: pgferry::cleanup::Fence) -> Result<ExitCode> {
    if args.instance.all_databases {
        let (source, target) = parse_pair(&args.named.pair.source, &args.named.pair.target)?;
        return crate::instance::remove(&source, Some(&target), &args.named.name, &args.instance, fence, args.force)
            .await;
    }
    let (source, target) = parse_pair(&args.named.pair.source, &args.named.pair.target)?;
    let migration = parse_migration(&args.named.name)?;
    let report = pgferry::cleanup::remove(&source, &target, &migration, fence, args.force).await?;
    println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    Ok(ExitCode::SUCCESS)
}

async fn abort(args: AbortArgs) -> Result<ExitCode> {
    let migration = parse_migration(&args.name)?;
    if args.instance.all_databases && args.target.is_some() != args.target_lost {
        let source = parse_spec("--source", &args.source)?;
        let target = args.target.as_deref().map(|t| parse_spec("--target", t)).transpose()?;
        let lift = pgferry::cleanup::Fence::Lift;
        return crate::instance::remove(&source, target.as_ref(), &args.name, &args.instance, lift, args.force).await;
    }
    let report = match (&args.target, args.target_lost) {
        (Some(target), false) => {
            let (source, target) = parse_pair(&args.source, target)?;
            pgferry::cleanup::remove(&source, &target, &migration, pgferry::cleanup::Fence::Lift, args.force).await?
        }
        (None, true) => {
            let source = parse_spec("--source", &args.source)?;
            pgferry::cleanup::remove_without_target(&source, &migration, args.force).await?
        }
        (Some(_), true) => {
            return Err(Error::new(ErrorKind::Usage, "--target-lost was given together with a target (--target or PGFERRY_TARGET)")
                .with_hint("with a target that still answers, run abort with --target alone (it cleans both sides); for a lost target, leave --target and PGFERRY_TARGET out"))
        }
        (None, false) => {
            return Err(Error::new(ErrorKind::Usage, "abort needs the migration's target (--target or PGFERRY_TARGET)")
                .with_hint("give --target; if the target is gone, --target-lost removes what the source holds"))
        }
    };
    if !report.replica_identity_full_unverified.is_empty() {
        tracing::warn!(
            "these tables have REPLICA IDENTITY FULL and no primary key: --replica-identity-full may have set them, but its journal was on the lost target; set back the ones that were not FULL before with ALTER TABLE ... REPLICA IDENTITY DEFAULT: {}",
            report.replica_identity_full_unverified.join(", ")
        );
    }
    println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    Ok(ExitCode::SUCCESS)
}

fn cutover_options(args: &CutoverArgs) -> Result<(ConnSpec, ConnSpec, pgferry::cutover::CutoverOptions)> {
    let (source, target) = parse_pair(&args.named.pair.source, &args.named.pair.target)?;
    let migration = parse_migration(&args.named.name)?;
    let options = pgferry::cutover::CutoverOptions {
        migration,
        administrators: args.admin_roles.clone(),
        switch_command: args.switch_command.clone(),
        switch_timeout: std::time::Duration::from_secs(args.switch_timeout),
        outside_fence: match (&args.fence_command, &args.unfence_command) {
            (Some(raise), Some(lift)) => Some(pgferry::outside_fence::OutsideFence {
                raise: raise.clone(),
                lift: lift.clone(),
                timeout: std::time::Duration::from_secs(args.switch_timeout),
            }),
            _ => None,
        },
        switch_word: match (args.switch_ran, args.switch_did_not_run) {
            (true, _) => pgferry_core::cutover::SwitchWord::Ran,
            (false, true) => pgferry_core::cutover::SwitchWord::DidNotRun,
            (false, false) => pgferry_core::cutover::SwitchWord::Unspoken,
        },
        shutdown: None,
        instance_switch: None,
        instance_recovery: false,
        handover_timeout: std::time::Duration::from_secs(args.handover_timeout),
        views: match args.refresh_materialized_views {
            crate::cli::RefreshViews::BeforeSwitch => pgferry::materialized_views::ViewRefresh::BeforeSwitch,
            crate::cli::RefreshViews::After => pgferry::materialized_views::ViewRefresh::AfterSwitch,
        },
        policy: pgferry_core::cutover::Policy {
            max_lag_bytes: args.max_lag_bytes,
            keyless_tables: match (args.keyless_tables_are_insert_only, args.recopy_keyless_tables) {
                (true, _) => pgferry_core::cutover::KeylessTables::InsertOnly,
                (false, true) => pgferry_core::cutover::KeylessTables::Recopy,
                (false, false) => pgferry_core::cutover::KeylessTables::Refuse,
            },
        },
    };
    Ok((source, target, options))
}

async fn roles(args: RolesArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let report = pgferry::roles::roles(&source, &target, args.dry_run).await?;
    match args.format {
        Format::Table => print!("{}", render::roles(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(ExitCode::SUCCESS)
}

async fn rehearse(args: CutoverArgs) -> Result<ExitCode> {
    if args.metrics.metrics_listen.is_some() {
        return Err(pgferry::Error::new(ErrorKind::Usage, "--metrics-listen: rehearse serves no metrics")
            .with_hint("give --metrics-listen to start, copy, follow, validate or cutover"));
    }
    let (source, target, options) = cutover_options(&args)?;
    if args.instance.all_databases {
        return crate::instance::rehearse(&args, &source, &target, &options).await;
    }
    let rehearsal = pgferry::rehearse::rehearse(&source, &target, &options, &REHEARSAL_VALIDATION).await?;
    match args.format {
        Format::Table => print!("{}", render::rehearsal(&rehearsal)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&rehearsal).expect("rehearsal serializes")),
    }
    Ok(ExitCode::from(rehearsal_code(&rehearsal)))
}

/// How a rehearsal validates.
pub(crate) const REHEARSAL_VALIDATION: pgferry::validate::ValidateOptions =
    pgferry::validate::ValidateOptions { jobs: 2, chunk_rows: 100_000, max_differences: 10, show_values: false };

/// A rehearsal's exit code: 1 when the cutover would not start, else its validation's.
pub(crate) fn rehearsal_code(rehearsal: &pgferry::rehearse::Rehearsal) -> u8 {
    match rehearsal.decision {
        pgferry_core::cutover::Decision::Go => verdict_code(rehearsal.validation.verdict),
        pgferry_core::cutover::Decision::NoGo(_) => 1,
    }
}

async fn cutover(args: CutoverArgs) -> Result<ExitCode> {
    let (source, target, options) = cutover_options(&args)?;
    if args.instance.all_databases {
        return crate::instance::cutover(&args, &source, &target, options).await;
    }
    if args.dry_run {
        let plan = pgferry::cutover::plan(&source, &target, &options).await?;
        match args.format {
            Format::Table => print!("{}", render::cutover_plan(&plan)),
            Format::Json => println!("{}", serde_json::to_string_pretty(&plan).expect("plan serializes")),
        }
        return Ok(if matches!(plan.decision, pgferry_core::cutover::Decision::Go) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let shutdown = crate::signals::stop_on_signals(
        "stopping: before the switch the cutover rolls back; a running switch command is waited for",
        crate::signals::Second::Waits,
    )?;
    let options = pgferry::cutover::CutoverOptions { shutdown: Some(shutdown), ..options };
    let events = crate::metrics::events(&args.metrics, Vec::new())?;
    let report = Box::pin(pgferry::cutover::cutover(&source, &target, &options, &events)).await?;
    match args.format {
        Format::Table => print!("{}", render::cutover(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    if args.instance.all_databases {
        return crate::instance::status(args).await;
    }
    let (source, target) = parse_pair(&args.named.pair.source, &args.named.pair.target)?;
    let migration = parse_migration(&args.named.name)?;
    if args.watch {
        return watch_status(&source, &target, &migration, args.format).await;
    }
    let status = Box::pin(pgferry::status::status(&source, &target, &migration)).await?;
    print_status(&status, args.format);
    // A lost slot has an exit code of its own; one about to be lost is a problem found.
    Ok(match status.slot_verdict {
        SlotVerdict::Lost { .. } => ExitCode::from(exit_code(ErrorKind::SlotLost)),
        SlotVerdict::Unreserved { .. } => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

fn print_status(status: &pgferry::status::Status, format: Format) {
    match format {
        Format::Table => print!("{}", render::status(status)),
        Format::Json => println!("{}", serde_json::to_string_pretty(status).expect("status serializes")),
    }
}

/// How often `status --watch` redraws.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// `status --watch`: the status again every [`WATCH_EVERY`], the screen cleared
/// first on a terminal (JSON: one document per round), until a signal.
async fn watch_status(
    source: &ConnSpec,
    target: &ConnSpec,
    migration: &pgferry_core::names::MigrationName,
    format: Format,
) -> Result<ExitCode> {
    let mut stop = crate::signals::stop_on_signals("stopping", crate::signals::Second::Exits)?;
    let clear = format == Format::Table && std::io::stdout().is_terminal();
    while !*stop.borrow() {
        let round = Box::pin(pgferry::status::status(source, target, migration)).await;
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        match round {
            Ok(status) => print_status(&status, format),
            Err(err) => crate::logging::error(&err),
        }
        let _ = std::io::stdout().flush();
        let _ = tokio::time::timeout(WATCH_EVERY, stop.wait_for(|stopped| *stopped)).await;
    }
    Ok(ExitCode::SUCCESS)
}
