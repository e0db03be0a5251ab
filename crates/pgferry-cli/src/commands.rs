//! Runs one command: parse its inputs, call the library, render the result.

use std::process::ExitCode;

use pgferry::{ErrorKind, Result};
use pgferry_core::preflight::CheckPlan;
use pgferry_pg::ConnSpec;

use crate::cli::{CheckArgs, Command, Format};
use crate::render;

pub(crate) async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check(args) => check(args).await,
    }
}

pub(crate) fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Usage | ErrorKind::Connection => 2,
        ErrorKind::Precondition | ErrorKind::Server => 3,
    }
}

async fn check(args: CheckArgs) -> Result<ExitCode> {
    let source = parse_spec("--source", &args.pair.source);
    let target = parse_spec("--target", &args.pair.target);
    let (source, target) = match (source, target) {
        (Ok(s), Ok(t)) => (s, t),
        (s, t) => return Err(pgferry::Error::combine(s.err().into_iter().chain(t.err()).collect())),
    };
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

fn parse_spec(flag: &str, value: &str) -> Result<ConnSpec> {
    ConnSpec::parse(value).map_err(|e| {
        let mut err = pgferry::Error::from(e);
        err.message = format!("{flag}: {}", err.message);
        err
    })
}
