//! `pgferry aws ...`: the RDS side of a migration (check, encrypt, fence,
//! switch, finish), its arguments and how its results are drawn. AWS
//! credentials and region come from the usual chain (AWS_PROFILE, AWS_REGION,
//! instance roles, ...); `AWS_ENDPOINT_URL` points every call elsewhere.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use pgferry::{Error, ErrorKind, Result};
use pgferry_aws::check::{self, Severity};
use pgferry_aws::encrypt::EncryptPlan;
use pgferry_aws::journal::Journal;
use pgferry_aws::pg::{derived_target, PgSeed};
use pgferry_aws::retry::Pacing;
use pgferry_aws::sdk::Aws;
use pgferry_core::names::MigrationName;
use pgferry_core::preflight::CheckPlan;
use serde::Serialize;

use crate::cli::Format;
use crate::commands::{parse_migration, parse_spec};

#[derive(Subcommand, Debug)]
pub(crate) enum AwsCommand {
    /// Can this RDS instance be encrypted: logical replication in effect, backups, replicas (exit 0 ready, 1 not).
    Check(CheckArgs),
    /// Snapshot, encrypted copy, restore with every setting, parity report, replication (resumable).
    Encrypt(EncryptArgs),
    /// Swap the source's security groups for a restrictive one (--lift puts the old ones back).
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
        let migration = parse_migration(&self.name)?;
        let dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("pgferry-state").join(&self.name));
        Ok((migration, Journal::open(&dir)?))
    }
}

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// The RDS instance identifier to check.
    #[arg(long)]
    pub(crate) source_instance: String,
    /// The instance's database (URL or key=value string): when given, pgferry
    /// check's database-level checks run too.
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct EncryptArgs {
    #[arg(long)]
    pub(crate) source_instance: String,
    /// The identifier of the encrypted instance to create.
    #[arg(long)]
    pub(crate) target_instance: String,
    /// KMS key: alias (alias/name), ARN or key id [default: alias/aws/rds]. The choice is final.
    #[arg(long)]
    pub(crate) kms_key: Option<String>,
    /// The source database (URL or key=value string), as for every pgferry command.
    #[arg(long, env = "PGFERRY_SOURCE", hide_env_values = true)]
    pub(crate) source: String,
    /// The restored instance's database [default: --source with the new instance's endpoint].
    #[arg(long, env = "PGFERRY_TARGET", hide_env_values = true)]
    pub(crate) target: Option<String>,
    #[command(flatten)]
    pub(crate) state: State,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct FenceArgs {
    #[arg(long)]
    pub(crate) source_instance: String,
    /// The restrictive security group (sg-...) to put in place: ingress only from
    /// where pgferry and the administrators connect.
    #[arg(long, required_unless_present = "lift", conflicts_with = "lift")]
    pub(crate) fence_group: Option<String>,
    /// Put back the security groups the source had before the fence.
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
    #[arg(long)]
    pub(crate) source_instance: String,
    #[arg(long)]
    pub(crate) target_instance: String,
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
                    let plan = CheckPlan { full_copy: false, ..CheckPlan::default() };
                    findings.extend(check::database_verdicts(&pgferry::check::check_source(&source, &plan).await?));
                }
                None => findings.push(check::database_not_checked()),
            }
            findings.sort_by_key(|f| f.severity);
            match args.format {
                Format::Table => print!("{}", render_findings(&args.source_instance, &findings)),
                Format::Json => print_json(&findings),
            }
            Ok(if check::ready(&findings) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AwsCommand::Encrypt(args) => {
            let (migration, mut journal) = args.state.open()?;
            let source = parse_spec("--source", &args.source)?;
            let target = match &args.target {
                Some(target) => parse_spec("--target", target)?,
                None => derived_target(&source, &args.source_instance, &args.target_instance)?,
            };
            let seed = PgSeed { source, target, migration: migration.clone(), progress: crate::follow::log_lines() };
            let plan = EncryptPlan {
                migration,
                source: args.source_instance,
                target: args.target_instance,
                kms_key: args.kms_key,
            };
            let report = Box::pin(pgferry_aws::encrypt::encrypt(&cloud, &pacing, &mut journal, &plan, &seed)).await?;
            match args.format {
                Format::Table => print!("{}", render_encrypt(&report)),
                Format::Json => print_json(&report),
            }
            Ok(ExitCode::SUCCESS)
        }
        AwsCommand::Fence(args) => {
            let (_, mut journal) = args.state.open()?;
            let report = match args.fence_group {
                Some(group) if !args.lift => {
                    let plan = pgferry_aws::fence::FencePlan {
                        source: args.source_instance,
                        group,
                    };
                    Box::pin(pgferry_aws::fence::fence(
                        &cloud,
                        &pacing,
                        &mut journal,
                        &plan,
                    ))
                    .await?
                }
                _ => {
                    Box::pin(pgferry_aws::fence::lift(
                        &cloud,
                        &pacing,
                        &mut journal,
                        &args.source_instance,
                    ))
                    .await?
                }
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
            let report = Box::pin(pgferry_aws::switch::switch(
                &cloud,
                &pacing,
                &mut journal,
                &plan,
            ))
            .await?;
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
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
                source: args.source_instance,
                target: args.target_instance,
                delete_source: args.delete_source,
            };
            let report = Box::pin(pgferry_aws::finish::finish(
                &cloud,
                &pacing,
                &mut journal,
                &plan,
            ))
            .await?;
            print_json(&report);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a report serializes")
    );
}

fn render_findings(instance: &str, findings: &[check::Finding]) -> String {
    let mut out = String::new();
    let verdict = if check::ready(findings) {
        "ready"
    } else {
        "not ready"
    };
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

fn render_encrypt(report: &pgferry_aws::encrypt::EncryptReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} is an encrypted copy of {} (key {})",
        report.target, report.source, report.kms_key_arn
    );
    let _ = writeln!(
        out,
        "endpoint: {}",
        report.target_endpoint.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(out, "\nsettings (source = target):");
    let width = report
        .parity
        .iter()
        .map(|r| r.setting.len())
        .max()
        .unwrap_or(0);
    for row in &report.parity {
        let _ = writeln!(out, "  {:width$}  {}", row.setting, row.source);
    }
    let _ = writeln!(
        out,
        "\nthe target's recovery ended at {}; replicate from there with slot {}",
        report.redo_lsn, report.slot
    );
    let _ = writeln!(
        out,
        "next: pgferry rehearse, then pgferry cutover (docs/aws.md)"
    );
    out
}
