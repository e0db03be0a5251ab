//! Runs one command: parse its inputs, call the library, render the result.

use std::process::ExitCode;

use pgferry::{ErrorKind, Result};
use pgferry_core::preflight::CheckPlan;
use pgferry_pg::ConnSpec;

use crate::cli::{CheckArgs, Command, CopyArgs, CutoverArgs, Format, NamedPair, StatusArgs, ValidateArgs};
use crate::render;

pub(crate) async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check(args) => check(args).await,
        Command::Copy(args) => copy(args).await,
        Command::Follow(args) => crate::follow::follow(args).await,
        Command::Validate(args) => validate(args).await,
        Command::Status(args) => status(args).await,
        Command::Cutover(args) => cutover(args).await,
        Command::Rehearse(args) => rehearse(args).await,
        Command::Abort(args) => remove(args, pgferry::cleanup::Fence::Lift).await,
        Command::Cleanup(args) => remove(args, pgferry::cleanup::Fence::Keep).await,
        Command::Inventory(args) => crate::target::inventory(args).await,
        Command::Target(command) => crate::target::run(command).await,
        Command::Aws(command) => crate::aws::run(command).await,
    }
}

pub(crate) fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Usage | ErrorKind::Connection => 2,
        ErrorKind::Precondition | ErrorKind::Server => 3,
    }
}

async fn check(args: CheckArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let plan = CheckPlan {
        full_copy: !args.seeded,
        long_transaction_seconds: args.long_transaction_seconds,
    };
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
    let options = pgferry::copy::CopyOptions {
        migration,
        jobs: args.jobs.max(1),
        index_jobs: args.index_jobs.max(1),
        split_larger_than: args.split_larger_than,
    };
    let view = crate::progress::CopyView::new();
    let report = pgferry::copy::copy(&source, &target, &options, &view.progress()).await;
    view.finish();
    let report = report?;
    match args.format {
        Format::Table => print!("{}", render::copy_summary(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `--name` as a migration name.
pub(crate) fn parse_migration(name: &str) -> Result<pgferry_core::names::MigrationName> {
    pgferry_core::names::MigrationName::new(name).map_err(|e| pgferry::Error::new(ErrorKind::Usage, format!("--name: {e}")))
}

/// Parses both connection strings, reporting both when both are wrong.
pub(crate) fn parse_pair(source: &str, target: &str) -> Result<(ConnSpec, ConnSpec)> {
    match (parse_spec("--source", source), parse_spec("--target", target)) {
        (Ok(s), Ok(t)) => Ok((s, t)),
        (s, t) => Err(pgferry::Error::combine(s.err().into_iter().chain(t.err()).collect())),
    }
}

async fn validate(args: ValidateArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let options = pgferry::validate::ValidateOptions {
        jobs: args.jobs.max(1),
        chunk_rows: args.chunk_rows.max(1),
        max_differences: args.max_differences,
        show_values: args.show_values,
    };
    let report = pgferry::validate::validate(&source, &target, &options).await?;
    match args.format {
        Format::Table => print!("{}", render::validation(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(if report.equal { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn remove(args: NamedPair, fence: pgferry::cleanup::Fence) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let migration = parse_migration(&args.name)?;
    let report = pgferry::cleanup::remove(&source, &target, &migration, fence).await?;
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
        policy: pgferry_core::cutover::Policy {
            max_lag_bytes: args.max_lag_bytes,
            accept_insert_only_tables: args.keyless_tables_are_insert_only,
        },
    };
    Ok((source, target, options))
}

async fn rehearse(args: CutoverArgs) -> Result<ExitCode> {
    let (source, target, options) = cutover_options(&args)?;
    let validation = pgferry::validate::ValidateOptions { jobs: 2, chunk_rows: 100_000, max_differences: 10, show_values: false };
    let rehearsal = pgferry::rehearse::rehearse(&source, &target, &options, &validation).await?;
    match args.format {
        Format::Table => print!("{}", render::rehearsal(&rehearsal)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&rehearsal).expect("rehearsal serializes")),
    }
    Ok(if rehearsal.ready() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn cutover(args: CutoverArgs) -> Result<ExitCode> {
    let (source, target, options) = cutover_options(&args)?;
    let report = pgferry::cutover::cutover(&source, &target, &options).await?;
    match args.format {
        Format::Table => print!("{}", render::cutover(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.named.pair.source, &args.named.pair.target)?;
    let migration = parse_migration(&args.named.name)?;
    let status = pgferry::status::status(&source, &target, &migration).await?;
    match args.format {
        Format::Table => print!("{}", render::status(&status)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&status).expect("status serializes")),
    }
    Ok(ExitCode::SUCCESS)
}
