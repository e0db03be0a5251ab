//! The command line, as clap reads it.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Move a live PostgreSQL database to a new instance, with seconds of downtime
/// and proof that nothing was lost.
#[derive(Parser, Debug)]
#[command(name = "pgferry", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug); PGFERRY_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success (check: ready), 1 problems found, 2 usage, configuration or connection error, 3 failure while changing a server (rerun to resume).";

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Preflight: report every problem that stands between these servers and a migration.
    Check(CheckArgs),
}

/// Where to connect. URLs or key=value strings; PG* variables and ~/.pgpass fill gaps.
#[derive(Args, Debug)]
pub(crate) struct Pair {
    /// The database to move (URL or key=value string).
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: String,
    /// The database to move to.
    #[arg(long, env = "PGFERRY_TARGET", hide_env_values = true)]
    pub(crate) target: String,
}

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// The target is a physical copy of the source (seeded migration): it may hold data.
    #[arg(long)]
    pub(crate) seeded: bool,
    /// Report transactions open longer than this many seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) long_transaction_seconds: i64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}
