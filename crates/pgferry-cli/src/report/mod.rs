//! `pgferry report`: the migration as the target's journal recorded it, as one
//! self-contained HTML page with plots ([`html`], [`plots`]) or as JSON (the same
//! data, [`pgferry::report::MigrationRecord`]). It reads only the target.

mod html;
mod plots;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use pgferry::{Error, ErrorKind, Result};

use crate::commands::{parse_migration, parse_spec};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReportFormat {
    Html,
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// The database migrated to: its journal is read (the source is not needed).
    #[arg(long, env = "PGFERRY_TARGET", hide_env_values = true)]
    pub(crate) target: String,
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
    /// Where to write the report (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub(crate) format: ReportFormat,
}

pub(crate) async fn report(args: ReportArgs) -> Result<ExitCode> {
    let target = parse_spec("--target", &args.target)?;
    let migration = parse_migration(&args.name)?;
    let record = pgferry::report::read(&target, &migration).await?;
    let text = match args.format {
        ReportFormat::Html => html::page(&record),
        ReportFormat::Json => serde_json::to_string_pretty(&record).expect("record serializes") + "\n",
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).map_err(|e| {
            Error::new(ErrorKind::Usage, format!("--output {}: {e}", path.display()))
                .with_hint("give a file in a directory that exists and that you may write to")
        })?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
