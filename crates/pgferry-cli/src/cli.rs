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
    /// The migration's settings file (default: ./pgferry.toml when it exists);
    /// flags and PGFERRY_* variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Lines on stderr: text (`pgferry: message key=value`) or json (one object per line).
    #[arg(long, global = true, value_enum, env = "PGFERRY_LOG_FORMAT", default_value_t = crate::logging::LogFormat::Text)]
    pub(crate) log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success (check: ready), 1 problems found, or the command refused to run and changed nothing (the message says why and how to fix it), 2 usage, configuration or connection error, 3 failure while changing a server (rerun to resume), 4 validation NOT PROVEN, 5 the migration's replication slot is lost (abort, then copy or seed again).";

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Try it: two throwaway local clusters, a sample database under live writes, migrated end to end.
    Demo(DemoArgs),
    /// Preflight: report every problem that stands between these servers and a migration.
    Check(CheckArgs),
    /// The whole migration up to replicating: preflight, copy (or seed), then change capture until stopped or a cutover takes over (rerunnable).
    Start(crate::start::StartArgs),
    /// Seeded migrations: make the source ready for a physical copy (snapshot) that becomes the target.
    #[command(subcommand)]
    Seed(crate::start::SeedCommand),
    /// Create the source's roles the target lacks (attributes, memberships, settings; never passwords).
    Roles(RolesArgs),
    /// Copy schema and data into an empty target under one consistent snapshot (resumable).
    Copy(CopyArgs),
    /// Change capture: apply the source's changes to the copied target until stopped.
    Follow(FollowArgs),
    /// Prove that source and target hold the same rows (exit 0 equal, 1 different).
    Validate(ValidateArgs),
    /// Where a migration stands: phase, lag, per-table changes, slot headroom, cutover readiness.
    Status(StatusArgs),
    /// The migration as the target's journal recorded it: one self-contained HTML page with plots, or JSON.
    Report(crate::report::ReportArgs),
    /// Fence the source, drain, set sequences, switch; rolls back by itself before the switch.
    Cutover(CutoverArgs),
    /// Every cutover step that does not stop writes, timed: the downtime to expect (exit 0 ready, 1 not).
    Rehearse(CutoverArgs),
    /// Stop a migration: lift any fence, drop its slot, publications and journal rows.
    Abort(AbortArgs),
    /// After the cutover: drop the migration's slot, publications and journal rows.
    Cleanup(RemoveArgs),
    /// List what a database holds: tables, keys, triggers, sequences, indexes, views.
    Inventory(crate::target::InventoryArgs),
    /// Steps 3 and 6 of an AWS DMS migration: the target's foreign keys, triggers and sequences.
    #[command(subcommand)]
    Target(crate::target::TargetCommand),
    /// Encrypt an RDS instance by migrating it to an encrypted copy: check, encrypt, fence, switch, finish.
    #[command(subcommand)]
    Aws(crate::aws::AwsCommand),
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// The directory holding PostgreSQL's initdb and pg_ctl (default: PATH, then
    /// `pg_config --bindir`, then /usr/lib/postgresql/*/bin, newest first).
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin: Option<std::path::PathBuf>,
    /// The sample database's approximate size in MB.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) size_mb: u32,
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
    #[command(flatten)]
    pub(crate) instance: InstanceArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// A whole instance: every database of the source server.
#[derive(Args, Debug)]
pub(crate) struct InstanceArgs {
    /// Every database of the source server that allows connections (templates and
    /// the provider's own, such as rdsadmin, left out); the URLs name the servers.
    #[arg(long)]
    pub(crate) all_databases: bool,
    /// Only this database (repeatable), with --all-databases.
    #[arg(long = "database", requires = "all_databases")]
    pub(crate) databases: Vec<String>,
    /// Leave this database out (repeatable), with --all-databases: its writes after
    /// the copy will not reach the target.
    #[arg(long = "exclude-database", requires = "all_databases")]
    pub(crate) excluded: Vec<String>,
}

impl InstanceArgs {
    pub(crate) fn selection(&self) -> pgferry_core::instance::Selection {
        pgferry_core::instance::Selection { only: self.databases.clone(), excluded: self.excluded.clone() }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct RolesArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// Show the statements and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct CopyArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// The migration's name: its slot, publications and journal rows derive from it.
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) tuning: CopyTuning,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// How the copy spreads its work, and what it may change on the source.
#[derive(Args, Debug)]
pub(crate) struct CopyTuning {
    /// Parallel COPY workers (at least 1).
    #[arg(long, env = "PGFERRY_JOBS", default_value_t = 2, value_parser = parse_count)]
    pub(crate) jobs: usize,
    /// Parallel index and constraint builds (at least 1).
    #[arg(long, env = "PGFERRY_INDEX_JOBS", default_value_t = 2, value_parser = parse_count)]
    pub(crate) index_jobs: usize,
    /// Split tables larger than this into page ranges copied in parallel (e.g. 100MB; 0 = never).
    #[arg(long, env = "PGFERRY_SPLIT_LARGER_THAN", default_value = "100MB", value_parser = parse_size)]
    pub(crate) split_larger_than: i64,
    /// Give the source's tables without a primary key or replica identity REPLICA
    /// IDENTITY FULL, so their UPDATEs and DELETEs are replicated too (each then logs
    /// the whole old row; `pgferry check` lists the tables). Journaled; abort and
    /// cleanup set them back.
    #[arg(long)]
    pub(crate) replica_identity_full: bool,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) named: NamedPair,
    /// Redraw every few seconds until stopped (Ctrl-C); a failed round is reported and the next one tried.
    #[arg(long, conflicts_with = "all_databases")]
    pub(crate) watch: bool,
    #[command(flatten)]
    pub(crate) instance: InstanceArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// `--refresh-materialized-views`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum RefreshViews {
    BeforeSwitch,
    After,
}

#[derive(Args, Debug)]
pub(crate) struct CutoverArgs {
    #[command(flatten)]
    pub(crate) named: NamedPair,
    #[command(flatten)]
    pub(crate) instance: InstanceArgs,
    /// Run with `sh -c` to send the application to the target (DNS, pooler, config);
    /// if it fails, the cutover rolls back.
    #[arg(long, env = "PGFERRY_SWITCH_COMMAND")]
    pub(crate) switch_command: Option<String>,
    /// Seconds the switch command (and --fence-command, --unfence-command) may run;
    /// past it its whole process group is stopped and the cutover rolls back.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) switch_timeout: u64,
    /// After a cutover was stopped while its switch command ran: the application
    /// was switched to the target; the cutover finishes and the source stays fenced.
    #[arg(long, conflicts_with = "switch_did_not_run")]
    pub(crate) switch_ran: bool,
    /// After a cutover was stopped while its switch command ran: the application
    /// still points at the source; the cutover rolls back and the source is unfenced.
    #[arg(long)]
    pub(crate) switch_did_not_run: bool,
    /// Run with `sh -c` right after pgferry's fence, for writers outside the database
    /// (e.g. "pgferry aws fence ..."); needs --unfence-command, run on rollback.
    #[arg(long, requires = "unfence_command")]
    pub(crate) fence_command: Option<String>,
    /// Lifts --fence-command's fence when the cutover rolls back (e.g. "pgferry aws fence --lift ...").
    #[arg(long, requires = "fence_command")]
    pub(crate) unfence_command: Option<String>,
    /// A role that keeps its connections during the fence (repeatable).
    #[arg(long = "admin-role", env = "PGFERRY_ADMIN_ROLES", value_delimiter = ',')]
    pub(crate) admin_roles: Vec<String>,
    /// Refuse to start when the target is further behind than this many bytes of WAL.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub(crate) max_lag_bytes: i64,
    /// The tables without a replica identity only ever receive inserts (logs,
    /// histories): their missing UPDATE/DELETE replication does not matter.
    #[arg(long, conflicts_with = "recopy_keyless_tables")]
    pub(crate) keyless_tables_are_insert_only: bool,
    /// Copy the tables without a replica identity again inside the fence (exact;
    /// their copy time adds to the downtime).
    #[arg(long)]
    pub(crate) recopy_keyless_tables: bool,
    /// When the materialized views are refreshed: `before-switch`, inside the fence
    /// (fresh for the application, counted in the downtime), or `after` the switch
    /// (outside the downtime; the application reads them stale until refreshed).
    #[arg(long, value_enum, default_value_t = RefreshViews::BeforeSwitch)]
    pub(crate) refresh_materialized_views: RefreshViews,
    /// Seconds to wait for a running `pgferry start` to hand over (finish its
    /// transaction at hand, release the migration); past it the request is withdrawn.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) handover_timeout: u64,
    /// Print what the cutover would do (go/no-go, the roles fenced, the steps) and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    pub(crate) named: NamedPair,
    /// Go on where the migration's state says no (abort after the switch lifts the
    /// old source's fence; cleanup before the cutover ends a live migration).
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) instance: InstanceArgs,
}

#[derive(Args, Debug)]
pub(crate) struct AbortArgs {
    /// The database being moved (URL or key=value string).
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: String,
    /// The database it is being moved to (not with --target-lost).
    #[arg(long, env = "PGFERRY_TARGET", hide_env_values = true, required_unless_present = "target_lost")]
    pub(crate) target: Option<String>,
    /// The migration's name.
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
    /// The target is gone (its server failed or it was dropped): lift the fence and
    /// remove the migration's objects on the source alone, as the source records them.
    #[arg(long)]
    pub(crate) target_lost: bool,
    /// Go on where the migration's state says no (after the switch: lifts the old
    /// source's fence).
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) instance: InstanceArgs,
}

#[derive(Args, Debug)]
pub(crate) struct NamedPair {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// The migration's name.
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
}

#[derive(Args, Debug)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// The migration whose change capture's touched rows are tracked.
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
    /// Compare only the rows change capture touched since they were last found equal.
    #[arg(long)]
    pub(crate) changed_only: bool,
    /// Copy every differing table again from a fresh snapshot (change capture must be stopped), then validate again.
    #[arg(long)]
    pub(crate) repair: bool,
    /// Parallel workers (each holds one connection per side; at least 1).
    #[arg(long, default_value_t = 2, value_parser = parse_count)]
    pub(crate) jobs: usize,
    /// Rows per chunk of a table with a key (at least 1).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub(crate) chunk_rows: i64,
    /// Keys listed per differing table.
    #[arg(long, default_value_t = 10)]
    pub(crate) max_differences: usize,
    /// Show the rows' values in differences (they may be personal data).
    #[arg(long)]
    pub(crate) show_values: bool,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    #[command(flatten)]
    pub(crate) instance: InstanceArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct FollowArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// The migration's name, as given to pgferry copy.
    #[arg(long, env = "PGFERRY_NAME", default_value = "main")]
    pub(crate) name: String,
    /// Stop once every transaction committed before this source position (e.g. 0/3A0B1C8) is applied.
    #[arg(long, conflicts_with = "until_caught_up")]
    pub(crate) until_lsn: Option<String>,
    /// Stop once every transaction committed on the source before the start is applied.
    #[arg(long)]
    pub(crate) until_caught_up: bool,
    /// Target sessions change capture applies a batch over, split by key where order across keys
    /// cannot matter (1: one session; a key change, TRUNCATE, DDL or a table with another unique
    /// index is applied on one session in order).
    #[arg(long, default_value = "1", value_parser = crate::cli::parse_count)]
    pub(crate) apply_lanes: usize,
    /// SQL run on the target first, in place of the schema change change capture stopped at
    /// (journaled; '' when nothing is needed); change capture then continues where it stopped.
    #[arg(long)]
    pub(crate) apply_ddl: Option<String>,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// Reads a number of workers: a whole number of at least 1 (0 would run nothing).
pub(crate) fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// Reads sizes such as `0`, `512kB`, `100MB`, `2GB` (PostgreSQL's units, powers of 1024).
pub(crate) fn parse_size(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| format!("{text:?} is not a size such as 100MB"))?;
    let factor: i64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}: use B, kB, MB, GB or TB")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::{parse_count, parse_size};

    #[test]
    fn worker_counts_are_at_least_one() {
        assert_eq!(parse_count("4"), Ok(4));
        assert_eq!(parse_count("0").unwrap_err(), "must be at least 1");
        assert!(parse_count("-1").is_err());
        assert!(parse_count("two").is_err());
    }

    #[test]
    fn sizes_use_postgresql_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("100MB"), Ok(100 << 20));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert!(parse_size("12XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MB").is_err());
    }
}
