//! `pgferry start` and `pgferry seed prepare`.
//!
//! `start` runs in the foreground with live progress, or as a service
//! (`--service`: log lines only). SIGTERM or Ctrl-C stops it cleanly: change
//! capture finishes the source transaction at hand and commits; a copy in
//! progress is cancelled and resumes on the next run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use pgferry::apply::{BatchLimits, FollowOptions, Until};
use pgferry::seed::{SeedPosition, ServerLog};
use pgferry::start::{DataStep, StartOptions};
use pgferry::{Error, ErrorKind, Result};

use crate::cli::{CopyTuning, Format, Pair};
use crate::commands::{copy_options, parse_migration, parse_pair, parse_spec};
use crate::render;

#[derive(Args, Debug)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// The migration's name: its slot, publications and journal rows derive from it.
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) tuning: CopyTuning,
    /// The target is a physical copy of the source taken after `pgferry seed prepare`: nothing is copied.
    /// (Its publications were made by `seed prepare`, so --replica-identity-full cannot apply.)
    #[arg(long, conflicts_with = "replica_identity_full")]
    pub(crate) seeded: bool,
    /// The copy's server log from its first start; its last "redo done at" line is where the copy ends.
    #[arg(long, requires = "seeded", conflicts_with = "seed_lsn")]
    pub(crate) seed_log: Option<PathBuf>,
    /// Where the copy ends, as its "redo done at" line prints it (e.g. 0/3000148).
    #[arg(long, requires = "seeded")]
    pub(crate) seed_lsn: Option<String>,
    /// The tables without a replica identity only ever receive inserts: publish them for inserts only.
    #[arg(long)]
    pub(crate) keyless_tables_are_insert_only: bool,
    /// Stop once the target has caught up with the source instead of following until stopped.
    #[arg(long)]
    pub(crate) until_caught_up: bool,
    /// Target sessions change capture applies a batch over, split by key where order across keys
    /// cannot matter (1: one session; a key change, TRUNCATE, DDL or a table with another unique
    /// index is applied on one session in order).
    #[arg(long, default_value = "1", value_parser = crate::cli::parse_count)]
    pub(crate) apply_lanes: usize,
    /// Capture the source's DDL (an event trigger emits each command into the WAL) and replay it on the target.
    #[arg(long)]
    pub(crate) capture_ddl: bool,
    /// Create the source's roles the target lacks, as `pgferry roles` does (attributes,
    /// memberships, settings; never a password: the report names the login roles to set one for),
    /// once the checks passed and before the copy: a refused run creates none.
    /// A seeded target has the source's roles already.
    #[arg(long, conflicts_with = "seeded")]
    pub(crate) roles: bool,
    /// Run as a service: log lines instead of progress bars.
    #[arg(long)]
    pub(crate) service: bool,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    #[command(flatten)]
    pub(crate) instance: crate::cli::InstanceArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Subcommand, Debug)]
pub(crate) enum SeedCommand {
    /// Create the slot (before the copy) and a marker row, then say when the copy may be taken.
    Prepare(SeedPrepareArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SeedPrepareArgs {
    /// The database to move (URL or key=value string).
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: String,
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
    /// Capture the source's DDL from now on (an event trigger, installed before the slot), replayed by change capture.
    #[arg(long)]
    pub(crate) capture_ddl: bool,
    #[command(flatten)]
    pub(crate) instance: crate::cli::InstanceArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

pub(crate) async fn start(args: StartArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let migration = parse_migration(&args.name)?;
    let seed = seed_position(&args)?;
    let shutdown = crate::signals::stop_on_signals(
        "stopping after the current transaction (signal again to exit at once)",
        crate::signals::Second::Exits,
    )?;
    let options = StartOptions {
        copy: copy_options(migration.clone(), &args.tuning),
        seed,
        follow: FollowOptions {
            migration,
            until: if args.until_caught_up { Until::CaughtUp } else { Until::Stopped },
            batch: BatchLimits::default(),
            shutdown: Some(shutdown),
            drain: false,
            lanes: args.apply_lanes,
        },
        keyless_tables_are_insert_only: args.keyless_tables_are_insert_only,
        capture_ddl: args.capture_ddl,
        roles: args.roles,
    };
    if args.instance.all_databases {
        return crate::instance::start(&source, &target, &args, options).await;
    }
    let view = Arc::new(crate::progress::CopyView::new(args.service));
    let events = crate::metrics::events(&args.metrics, vec![view.clone(), Arc::new(crate::follow::LogLines)])?;
    let report = Box::pin(pgferry::start::start(&source, &target, &options, &events)).await;
    view.finish();
    let report = report?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
        Format::Table => print!("{}", start_summary(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a seeded target's copy ends, from `--seed-log` or `--seed-lsn`.
fn seed_position(args: &StartArgs) -> Result<Option<SeedPosition>> {
    Ok(match (args.seeded, &args.seed_log, &args.seed_lsn) {
        (false, ..) => None,
        (true, Some(log), _) => Some(SeedPosition::Log(ServerLog::File(log.clone()))),
        (true, None, Some(lsn)) => {
            Some(SeedPosition::Lsn(lsn.parse().map_err(|e| Error::new(ErrorKind::Usage, format!("--seed-lsn: {e}")))?))
        }
        (true, None, None) => {
            return Err(Error::new(ErrorKind::Usage, "--seeded needs where the copy ends").with_hint(
                "pass --seed-log with the copy's server log, or --seed-lsn with its 'redo done at' position",
            ))
        }
    })
}

/// What `start` did, for the table format.
pub(crate) fn start_summary(report: &pgferry::start::StartReport) -> String {
    let mut out = report.roles.as_ref().map(render::roles).unwrap_or_default();
    out.push_str(&match &report.data {
        Some(DataStep::Copied(copy)) => render::copy_summary(copy),
        Some(DataStep::Seeded(seed)) => render::seed_attached(seed),
        None => "stopped before change capture started; rerun pgferry start to continue\n".to_string(),
    });
    if let Some(follow) = &report.follow {
        out.push_str(&format!(
            "migration {}: applied up to {} ({} transactions, {} changes in this run)\n",
            follow.migration, follow.applied_lsn, follow.transactions, follow.changes
        ));
    }
    if let Some(by) = &report.handed_over_to {
        out.push_str(&format!(
            "change capture stopped: the {by} took over (it drains the rest itself); if that cutover rolls back, run pgferry start again\n"
        ));
    }
    out
}

pub(crate) async fn seed(command: SeedCommand) -> Result<ExitCode> {
    let SeedCommand::Prepare(args) = command;
    let source = parse_spec("--source", &args.source)?;
    let migration = parse_migration(&args.name)?;
    if !args.instance.all_databases {
        let report = prepare_one(&source, &migration, args.capture_ddl).await?;
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
            Format::Table => print!("{}", render::seed_prepared(&report)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A snapshot restore brings every database over: each one pgferry does not
    // follow would stay frozen at the snapshot on the target. Every database is
    // prepared before the operator takes the one snapshot.
    let plan = pgferry::instance::planned(&source, &args.instance.selection()).await?;
    pgferry::instance::refuse_without_room(&source, &migration, &plan.databases, false, 0).await?;
    for (name, why) in plan.left_out.iter().filter(|(_, why)| why.loses_writes()) {
        tracing::warn!(target: crate::logging::EVENTS, "database {name:?} is left out: {}", why.as_str());
    }
    let mut reports = Vec::new();
    for database in &plan.databases {
        let report = prepare_one(&source.with_dbname(database), &migration, args.capture_ddl)
            .await
            .map_err(|e| Error { message: format!("database {database:?}: {}", e.message), ..e })?;
        if args.format == Format::Table {
            print!("== database {database:?} ==\n{}", render::seed_prepared(&report));
        }
        reports.push((database.clone(), report));
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&reports).expect("report serializes")),
        Format::Table => println!("every database is prepared: take the one snapshot (or copy) of the instance now"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `seed prepare` of one database (DDL capture installed first when asked).
async fn prepare_one(
    source: &pgferry_pg::ConnSpec,
    migration: &pgferry_core::names::MigrationName,
    capture_ddl: bool,
) -> Result<pgferry::seed::PrepareReport> {
    let events = pgferry::events::Events::to(vec![Arc::new(crate::follow::LogLines)]);
    if capture_ddl {
        // seed prepare refuses a cut-over migration itself, but after this install.
        let prepare = pgferry_core::lifecycle::Command::SeedPrepare;
        pgferry::lifecycle::refuse_unless_allowed(source, None, migration, prepare).await?;
        pgferry::ddl::install(source, migration).await?;
    }
    pgferry::seed::prepare(source, migration, &events).await
}
