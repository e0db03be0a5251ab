//! `pgferry aws ...`: the RDS side of a migration (check, encrypt, fence,
//! switch, finish; or, on the Blue/Green path, encrypt --method blue-green,
//! switchover, finish --blue-green), its arguments and how its results are drawn. AWS
//! credentials and region come from the usual chain (AWS_PROFILE, AWS_REGION,
//! instance roles, ...); `AWS_ENDPOINT_URL` points every call elsewhere.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use pgferry::{Error, ErrorKind, Result};
use pgferry_aws::blue_green::{BlueGreenPlan, BlueGreenReport};
use pgferry_aws::check::{self, Severity};
use pgferry_aws::choice::{self, Method, Outcome, Paths, Wanted};
use pgferry_aws::encrypt::EncryptPlan;
use pgferry_aws::journal::Journal;
use pgferry_aws::pg::{derived_target, instance_report, PgGreen, PgProbe, PgSeed};
use pgferry_aws::retry::Pacing;
use pgferry_aws::sdk::Aws;
use pgferry_aws::switchover::SwitchoverPlan;
use pgferry_core::instance::Selection;
use pgferry_core::names::MigrationName;
use serde::Serialize;

use crate::cli::Format;
use crate::commands::{parse_migration, parse_spec};

#[derive(Subcommand, Debug)]
pub(crate) enum AwsCommand {
    /// Can this RDS instance be encrypted, by pgferry or by a Blue/Green deployment, and which path fits (exit 0 ready, 1 not).
    Check(CheckArgs),
    /// Snapshot, encrypted copy, restore with every setting, parity report, replication; or with --method blue-green, an encrypted Blue/Green deployment stopped before its switchover (resumable).
    Encrypt(EncryptArgs),
    /// Switch the Blue/Green deployment over, measuring the write downtime through the applications' endpoint.
    Switchover(SwitchoverArgs),
    /// Swap the source's security groups for a fence group pgferry creates (or yours); --lift puts the old ones back.
    Fence(FenceArgs),
    /// Point a Route53 CNAME at an instance's endpoint and wait until it is in sync.
    Switch(SwitchArgs),
    /// After the cutover: target replicas, final snapshot, cleanup; deletes the source only with --delete-source --yes.
    Finish(FinishArgs),
}

/// The migration and where its cloud journal lives.
#[derive(Args, Debug)]
pub(crate) struct State {
    /// The migration's name: the AWS resources pgferry creates are named after it.
    #[arg(long, default_value = "main")]
    pub(crate) name: String,
    /// Where the cloud journal is kept between runs [default: ./pgferry-state/<name>].
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
}

impl State {
    fn open(&self) -> Result<(MigrationName, Journal)> {
        self.open_waiting(Duration::ZERO)
    }

    /// Waits up to `wait` for another command holding the journal to end.
    fn open_waiting(&self, wait: Duration) -> Result<(MigrationName, Journal)> {
        let migration = parse_migration(&self.name)?;
        let dir = self.state_dir.clone().unwrap_or_else(|| PathBuf::from("pgferry-state").join(&self.name));
        let journal = Journal::open_for_waiting(&dir, migration.as_str(), wait)?;
        Ok((migration, journal))
    }
}

/// Which databases of the instance: every one by default, as a restore brings
/// every one over.
#[derive(Args, Debug)]
pub(crate) struct Databases {
    /// Only this database of the instance (repeatable) [default: every one that
    /// allows connections, but templates and rdsadmin].
    #[arg(long = "database", value_name = "NAME", requires = "source")]
    pub(crate) only: Vec<String>,
    /// Leave this database out (repeatable): its writes after the snapshot will
    /// NOT reach the target.
    #[arg(long = "exclude-database", value_name = "NAME", requires = "source")]
    pub(crate) excluded: Vec<String>,
}

impl Databases {
    fn selection(&self) -> Selection {
        Selection { only: self.only.clone(), excluded: self.excluded.clone() }
    }
}

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// The RDS instance identifier to check.
    #[arg(long)]
    pub(crate) source_instance: String,
    /// The instance (URL or key=value string; its database is only the one
    /// connected to first): when given, pgferry check's database-level checks
    /// run too, in every database of the instance.
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: Option<String>,
    #[command(flatten)]
    pub(crate) databases: Databases,
    /// The downtime pgferry rehearse measured (its expected_downtime_seconds), to weigh the paths.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) rehearsed_downtime: Option<f64>,
    /// The region the encrypted instance must be in [default: the instance's].
    #[arg(long)]
    pub(crate) target_region: Option<String>,
    /// The AWS account the encrypted instance must be in [default: the instance's].
    #[arg(long)]
    pub(crate) target_account: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// How `aws encrypt` makes the encrypted instance.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EncryptMethod {
    /// pgferry's: snapshot, encrypted copy, restore, change capture; cut over with pgferry cutover.
    Snapshot,
    /// An RDS Blue/Green deployment with the key for each green instance; switch with pgferry aws switchover.
    BlueGreen,
}

#[derive(Args, Debug)]
pub(crate) struct EncryptArgs {
    #[arg(long)]
    pub(crate) source_instance: String,
    #[arg(long, value_enum, default_value_t = EncryptMethod::Snapshot)]
    pub(crate) method: EncryptMethod,
    /// The identifier of the encrypted instance to create (the snapshot method; Blue/Green names green itself).
    #[arg(long)]
    pub(crate) target_instance: Option<String>,
    /// KMS key: alias (alias/name), ARN or key id [default: alias/aws/rds]. The choice is final.
    #[arg(long)]
    pub(crate) kms_key: Option<String>,
    /// The source instance (URL or key=value string; its database is only the
    /// one connected to first): every database of it is seeded and followed.
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: String,
    #[command(flatten)]
    pub(crate) databases: Databases,
    /// The restored instance [default: --source with the new instance's endpoint].
    #[arg(long, env = "PGFERRY_TARGET", hide_env_values = true)]
    pub(crate) target: Option<String>,
    /// With --method blue-green: green's database, for pgferry's checks [default: --source with green's endpoint].
    #[arg(long)]
    pub(crate) green: Option<String>,
    #[command(flatten)]
    pub(crate) state: State,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct SwitchoverArgs {
    /// The database through the endpoint the applications use: the probe writes through it.
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: String,
    /// AWS rolls the switchover back if it takes longer (SwitchoverTimeout, 30 to 3600).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(i32).range(30..=3600))]
    pub(crate) timeout: i32,
    #[command(flatten)]
    pub(crate) state: State,
}

#[derive(Args, Debug)]
pub(crate) struct FenceArgs {
    #[arg(long)]
    pub(crate) source_instance: String,
    /// An address range (CIDR) let in by the fence group pgferry creates, to the
    /// instance's port; repeat it. Give at least where pgferry connects from: it
    /// must still reach the source during the cutover's drain.
    #[arg(long = "allow-cidr", value_name = "CIDR", conflicts_with_all = ["lift", "fence_group"])]
    pub(crate) allow_cidr: Vec<String>,
    /// A restrictive security group of your own (sg-...) instead of pgferry's:
    /// pgferry neither creates nor deletes it.
    #[arg(long, conflicts_with = "lift")]
    pub(crate) fence_group: Option<String>,
    /// Create pgferry's fence group and its rules now, without touching the
    /// source's groups, so that the cutover's fence command only swaps them.
    #[arg(long, conflicts_with_all = ["lift", "fence_group"])]
    pub(crate) prepare: bool,
    /// Put back the security groups the source had before the fence, and delete
    /// the fence group pgferry created.
    #[arg(long)]
    pub(crate) lift: bool,
    #[command(flatten)]
    pub(crate) state: State,
}

#[derive(Args, Debug)]
pub(crate) struct SwitchArgs {
    /// The Route53 hosted zone id.
    #[arg(long)]
    pub(crate) zone: String,
    /// The CNAME's name, e.g. db.example.com.
    #[arg(long)]
    pub(crate) record: String,
    /// The instance whose endpoint the CNAME should name.
    #[arg(long)]
    pub(crate) to_instance: String,
    /// The record's TTL in seconds; lower it ahead of time by switching to the current instance.
    #[arg(long, default_value_t = 60)]
    pub(crate) ttl: i64,
    #[command(flatten)]
    pub(crate) state: State,
}

#[derive(Args, Debug)]
pub(crate) struct FinishArgs {
    #[arg(long, required_unless_present = "blue_green")]
    pub(crate) source_instance: Option<String>,
    #[arg(long, required_unless_present = "blue_green")]
    pub(crate) target_instance: Option<String>,
    /// After pgferry aws switchover: delete the Blue/Green deployment (both instances stay).
    #[arg(long, conflicts_with_all = ["source_instance", "target_instance", "delete_source"])]
    pub(crate) blue_green: bool,
    /// Delete the source after its final snapshot (needs --yes too).
    #[arg(long)]
    pub(crate) delete_source: bool,
    /// Confirms --delete-source.
    #[arg(long)]
    pub(crate) yes: bool,
    #[command(flatten)]
    pub(crate) state: State,
}

pub(crate) async fn run(command: AwsCommand) -> Result<ExitCode> {
    // The flows' futures hold the SDK's (about 20 kB): boxed, to keep the stack small.
    let cloud = Aws::from_env().await;
    let pacing = Pacing::aws();
    match command {
        AwsCommand::Check(args) => {
            let facts = Box::pin(check::gather(&cloud, &pacing, &args.source_instance)).await?;
            let mut findings = check::verdicts(&facts);
            match &args.source {
                Some(source) => {
                    let source = parse_spec("--source", source)?;
                    findings.extend(instance_report(&source, &source, &args.databases.selection()).await?);
                }
                None => findings.push(check::database_not_checked()),
            }
            findings.sort_by_key(|f| f.severity);
            let wanted = Wanted {
                region: args.target_region,
                account: args.target_account,
                rehearsed_downtime_seconds: args.rehearsed_downtime,
            };
            let blockers = findings.iter().filter(|f| f.severity == Severity::Blocker).count();
            let paths = choice::paths(&facts, blockers, &wanted);
            match args.format {
                Format::Table => {
                    print!("{}{}", render_findings(&args.source_instance, &findings), render_paths(&paths))
                }
                Format::Json => print_json(&CheckReport {
                    instance: &args.source_instance,
                    ready: check::ready(&findings),
                    findings: &findings,
                    paths: &paths,
                }),
            }
            Ok(if check::ready(&findings) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        AwsCommand::Encrypt(args) if args.method == EncryptMethod::BlueGreen => {
            if args.target_instance.is_some() || args.target.is_some() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "--method blue-green takes no --target-instance or --target: AWS names the green instances",
                )
                .with_hint("give --green for green's database if --source with green's endpoint does not reach it"));
            }
            let (migration, mut journal) = args.state.open()?;
            let source = parse_spec("--source", &args.source)?;
            // A database name blue lacks, or a selection leaving none to check on
            // green, is refused now, not after the deployment is made.
            if pgferry::instance::planned(&source, &args.databases.selection()).await?.databases.is_empty() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("no database of {} is left to check on green", args.source_instance),
                )
                .with_hint(
                    "leave --exclude-database out, or name a database that allows connections with --database",
                ));
            }
            let green = args.green.as_deref().map(|g| parse_spec("--green", g)).transpose()?;
            let side = PgGreen {
                source,
                source_instance: args.source_instance.clone(),
                green,
                databases: args.databases.selection(),
            };
            let plan = BlueGreenPlan { migration, source: args.source_instance, kms_key: args.kms_key };
            let report = Box::pin(pgferry_aws::blue_green::deploy(&cloud, &pacing, &mut journal, &plan, &side)).await?;
            match args.format {
                Format::Table => print!("{}", render_blue_green(&report)),
                Format::Json => print_json(&report),
            }
            Ok(ExitCode::SUCCESS)
        }
        AwsCommand::Encrypt(args) => {
            if args.green.is_some() {
                return Err(Error::new(ErrorKind::Usage, "--green is for --method blue-green")
                    .with_hint("the snapshot method's new database is --target"));
            }
            let Some(target_instance) = args.target_instance else {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "--target-instance is required: the identifier of the encrypted instance to create",
                )
                .with_hint("or use --method blue-green, where AWS names the green instance"));
            };
            let (migration, mut journal) = args.state.open()?;
            let source = parse_spec("--source", &args.source)?;
            let target = match &args.target {
                Some(target) => parse_spec("--target", target)?,
                None => derived_target(&source, &args.source_instance, &target_instance)?,
            };
            let seed = PgSeed {
                source,
                target,
                migration: migration.clone(),
                events: pgferry::events::Events::to(vec![std::sync::Arc::new(crate::follow::LogLines)]),
            };
            let plan = EncryptPlan {
                migration,
                source: args.source_instance,
                target: target_instance,
                kms_key: args.kms_key,
                databases: args.databases.selection(),
                connected_database: seed.source.dbname.clone(),
            };
            let report = Box::pin(pgferry_aws::encrypt::encrypt(&cloud, &pacing, &mut journal, &plan, &seed)).await?;
            match args.format {
                Format::Table => print!("{}", render_encrypt(&report)),
                Format::Json => print_json(&report),
            }
            Ok(ExitCode::SUCCESS)
        }
        AwsCommand::Switchover(args) => {
            let (migration, mut journal) = args.state.open()?;
            let endpoint = parse_spec("--source", &args.source)?;
            let probe = PgProbe::new(endpoint, Duration::from_secs(2));
            let plan =
                SwitchoverPlan { migration, timeout_seconds: args.timeout, probe_interval: Duration::from_millis(100) };
            let report =
                Box::pin(pgferry_aws::switchover::switchover(&cloud, &pacing, &mut journal, &plan, &probe)).await?;
            print_json(&report);
            Ok(ExitCode::SUCCESS)
        }
        AwsCommand::Finish(args) if args.blue_green => {
            let (migration, mut journal) = args.state.open()?;
            let report = Box::pin(pgferry_aws::switchover::clean_up(&cloud, &pacing, &mut journal, &migration)).await?;
            print_json(&report);
            Ok(ExitCode::SUCCESS)
        }
        AwsCommand::Fence(args) => {
            use pgferry_aws::fence::{allowed_ranges, FenceGroup, FencePlan};
            let group = match args.fence_group {
                Some(group) => FenceGroup::Given(group),
                None if args.lift => FenceGroup::Own { allow: Vec::new() },
                None => FenceGroup::Own { allow: allowed_ranges(&args.allow_cidr)? },
            };
            // A cutover's rollback may lift while the raise of a killed run
            // still runs: the lift waits for it.
            let wait = if args.lift { Duration::from_secs(300) } else { Duration::ZERO };
            let (migration, mut journal) = args.state.open_waiting(wait)?;
            let report = if args.lift {
                Box::pin(pgferry_aws::fence::lift(&cloud, &pacing, &mut journal, &migration, &args.source_instance))
                    .await?
            } else {
                let plan = FencePlan { migration, source: args.source_instance, group, prepare_only: args.prepare };
                Box::pin(pgferry_aws::fence::fence(&cloud, &pacing, &mut journal, &plan)).await?
            };
            print_json(&report);
            Ok(ExitCode::SUCCESS)
        }
        AwsCommand::Switch(args) => {
            let (_, mut journal) = args.state.open()?;
            let plan = pgferry_aws::switch::SwitchPlan {
                zone: args.zone,
                record: args.record,
                instance: args.to_instance,
                ttl: args.ttl,
            };
            let report = Box::pin(pgferry_aws::switch::switch(&cloud, &pacing, &mut journal, &plan)).await?;
            for warning in &report.warnings {
                tracing::warn!(target: crate::logging::EVENTS, "{warning}");
            }
            print_json(&report);
            Ok(ExitCode::SUCCESS)
        }
        AwsCommand::Finish(args) => {
            if args.delete_source && !args.yes {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "--delete-source deletes the source instance: add --yes to confirm",
                )
                .with_hint("its final snapshot pgferry-<name>-final is taken first and kept"));
            }
            let (migration, mut journal) = args.state.open()?;
            let plan = pgferry_aws::finish::FinishPlan {
                migration,
                source: args.source_instance.unwrap_or_default(),
                target: args.target_instance.unwrap_or_default(),
                delete_source: args.delete_source,
            };
            let report = Box::pin(pgferry_aws::finish::finish(&cloud, &pacing, &mut journal, &plan)).await?;
            print_json(&report);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A duration in seconds as `pgferry rehearse` reports it: a finite number, 0 or more.
fn parse_seconds(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds, 0 or more (pgferry rehearse's expected_downtime_seconds)"
        )),
    }
}

fn print_json(value: &impl Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("a report serializes"));
}

fn render_findings(instance: &str, findings: &[check::Finding]) -> String {
    let mut out = String::new();
    let verdict = if check::ready(findings) { "ready" } else { "not ready" };
    let _ = writeln!(out, "{instance}: {verdict}");
    for f in findings {
        let label = match f.severity {
            Severity::Blocker => "BLOCKER",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(out, "  {label}: {}", f.what);
        for line in f.fix.iter().flat_map(|fix| fix.lines()) {
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

/// `aws check --format json`.
#[derive(Serialize)]
struct CheckReport<'a> {
    instance: &'a str,
    ready: bool,
    findings: &'a [check::Finding],
    paths: &'a Paths,
}

fn render_paths(paths: &Paths) -> String {
    let mut out = String::new();
    let bg = &paths.blue_green;
    let verdict = if bg.can_encrypt { "can encrypt this instance" } else { "cannot encrypt this instance" };
    let _ = writeln!(out, "\nBlue/Green deployment (TargetKmsKeyId for each green instance): {verdict}");
    for c in &bg.checks {
        let mark = match c.outcome {
            Outcome::Clear => "ok",
            Outcome::RulesOut => "RULES OUT",
            Outcome::Unknown => "unknown",
        };
        let _ = writeln!(out, "  {mark:9} {}: {}", c.limit, c.detail);
    }
    for cost in &bg.costs {
        let _ = writeln!(out, "  cost: {cost}");
    }
    let pg = &paths.pgferry;
    let state = if pg.ready { "ready".to_owned() } else { format!("{} blocker(s) above", pg.blockers) };
    let _ = writeln!(out, "\npgferry (snapshot, encrypted copy, change capture, fenced cutover): {state}");
    if let Some(s) = pg.rehearsed_downtime_seconds {
        let _ = writeln!(out, "  rehearsed downtime: {s:.2} s");
    }
    for cost in &pg.costs {
        let _ = writeln!(out, "  cost: {cost}");
    }
    let method = match paths.recommendation.method {
        Method::Snapshot => "pgferry (aws encrypt)",
        Method::BlueGreen => "Blue/Green (aws encrypt --method blue-green)",
    };
    let _ = writeln!(out, "\nrecommended: {method}\n  because {}", paths.recommendation.reason);
    out
}

fn render_blue_green(report: &BlueGreenReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Blue/Green deployment {} ({}) of {} is {}, green encrypted with {}",
        report.name, report.deployment, report.source, report.status, report.kms_key_arn
    );
    for g in &report.green {
        let _ = writeln!(
            out,
            "  green {} ({}) for {}",
            g.green,
            g.endpoint.as_deref().unwrap_or("no endpoint yet"),
            g.blue
        );
    }
    let _ = writeln!(out, "asked to encrypt: {}", report.encrypted.join(", "));
    for f in &report.database {
        let _ = writeln!(out, "  {:?}: {}", f.severity, f.what);
    }
    let _ = writeln!(out, "{}", report.next);
    out
}

fn render_encrypt(report: &pgferry_aws::encrypt::EncryptReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} is an encrypted copy of {} (key {})", report.target, report.source, report.kms_key_arn);
    let _ = writeln!(out, "endpoint: {}", report.target_endpoint.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "\nsettings (source = target):");
    let width = report.parity.iter().map(|r| r.setting.len()).max().unwrap_or(0);
    for row in &report.parity {
        let _ = writeln!(out, "  {:width$}  {}", row.setting, row.source);
    }
    let _ = writeln!(
        out,
        "\nthe target's recovery ended at {}; every database below replicates from there:",
        report.redo_lsn
    );
    for db in &report.databases {
        let state = if db.caught_up_now { "caught up" } else { "attached by an earlier run, not followed by this one" };
        let _ = writeln!(out, "  {:?}: slot {}, {state}", db.database, db.slot);
    }
    for l in &report.left_out {
        let loud = if l.loses_writes { "LEFT OUT" } else { "left out" };
        let _ = writeln!(out, "{loud}: {:?}: {}", l.database, l.why);
    }
    let same = if report.left_out.iter().any(|l| l.loses_writes) {
        " (each with the same --database/--exclude-database)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "next: pgferry start --seeded --all-databases --seed-lsn {} (as a service), then pgferry rehearse --all-databases and pgferry cutover --all-databases{same} (docs/aws.md)",
        report.redo_lsn
    );
    out
}
