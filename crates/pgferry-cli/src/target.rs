//! `pgferry inventory` and `pgferry target prepare | restore | validate-constraints`:
//! their arguments, how they run, and how their results are drawn. Data (tables,
//! JSON, scripts) goes to stdout; progress and failures to stderr.

use std::fmt::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use pgferry::target::{Outcome, PrepareOutput, TargetReport};
use pgferry::Result;
use pgferry_core::inventory::{Inventory, SchemaFilter, SequenceKind, TableKind};
use pgferry_core::preflight::human_bytes;
use pgferry_core::target::Action;
use pgferry_pg::ConnSpec;

use crate::cli::{Format, Pair};

#[derive(Args, Debug)]
pub(crate) struct InventoryArgs {
    /// The database to list (URL or key=value string).
    #[arg(long, env = "PGFERRY_DB", hide_env_values = true)]
    pub(crate) db: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Only this schema (repeat for several); default: every user schema.
    #[arg(long = "schema")]
    pub(crate) schemas: Vec<String>,
    /// Leave this schema out (repeat for several).
    #[arg(long = "exclude-schema")]
    pub(crate) exclude_schemas: Vec<String>,
}

/// Steps 3 and 6 of a DMS migration: the target's foreign keys, triggers and sequences.
#[derive(Subcommand, Debug)]
pub(crate) enum TargetCommand {
    /// Save, then drop the target's foreign keys and disable its enabled triggers (before a DMS load).
    Prepare(PrepareArgs),
    /// Put back what prepare saved and set the sequences from the source (after writes stop).
    Restore(RestoreArgs),
    /// Validate the foreign keys restore left NOT VALID (runs without blocking writes).
    ValidateConstraints(ValidateArgs),
}

#[derive(Args, Debug)]
pub(crate) struct PrepareArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// Print the SQL script instead of running it; nothing is changed.
    #[arg(long)]
    pub(crate) sql_only: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    pub(crate) pair: Pair,
    /// Validate the foreign keys now (after the downtime part), or later with validate-constraints.
    #[arg(long, value_enum, default_value_t = Validate::Now)]
    pub(crate) validate: Validate,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Validate {
    Now,
    Later,
}

#[derive(Args, Debug)]
pub(crate) struct ValidateArgs {
    /// The database restore ran on.
    #[arg(long, env = "PGFERRY_TARGET", hide_env_values = true)]
    pub(crate) target: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

pub(crate) async fn inventory(args: InventoryArgs) -> Result<ExitCode> {
    let db = crate::commands::parse_spec("--db", &args.db)?;
    let filter = SchemaFilter { include: args.schemas, exclude: args.exclude_schemas };
    let inventory = pgferry::inventory::inventory(&db, &filter).await?;
    match args.format {
        Format::Table => print!("{}", inventory_table(&inventory)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&inventory).expect("inventory serializes")),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run(command: TargetCommand) -> Result<ExitCode> {
    let (report, format) = match command {
        TargetCommand::Prepare(args) => {
            let (source, target) = pair(&args.pair)?;
            match Box::pin(pgferry::target::prepare(&source, &target, args.sql_only)).await? {
                PrepareOutput::Script(script) => {
                    print!("{script}");
                    return Ok(ExitCode::SUCCESS);
                }
                PrepareOutput::Report(report) => (report, args.format),
            }
        }
        TargetCommand::Restore(args) => {
            let (source, target) = pair(&args.pair)?;
            let report = Box::pin(pgferry::target::restore(&source, &target, args.validate == Validate::Now)).await?;
            (report, args.format)
        }
        TargetCommand::ValidateConstraints(args) => {
            let target = crate::commands::parse_spec("--target", &args.target)?;
            (pgferry::target::validate_constraints(&target).await?, args.format)
        }
    };
    match format {
        Format::Table => print!("{}", report_table(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(if report.failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn pair(pair: &Pair) -> Result<(ConnSpec, ConnSpec)> {
    match (crate::commands::parse_spec("--source", &pair.source), crate::commands::parse_spec("--target", &pair.target))
    {
        (Ok(s), Ok(t)) => Ok((s, t)),
        (s, t) => Err(pgferry::Error::combine(s.err().into_iter().chain(t.err()).collect())),
    }
}

/// One line per object: what was done, and how it went.
fn report_table(report: &TargetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pgferry {} on {}", report.command, report.target);
    for warning in &report.warnings {
        let _ = writeln!(out, "  warning  {warning}");
    }
    for o in &report.objects {
        let action = match o.action {
            Action::DropForeignKey => "dropped".to_string(),
            Action::DisableTrigger => "disabled".to_string(),
            Action::AddForeignKeyNotValid => "added NOT VALID".to_string(),
            Action::AddForeignKeyValidated => {
                "added and validated (before PostgreSQL 18 a partitioned table's foreign key cannot be NOT VALID)"
                    .to_string()
            }
            Action::RecognizeForeignKey => "already present".to_string(),
            Action::SetTriggerState { state } => format!("set to {}", state.as_str()),
            Action::SetSequence { last_value, is_called } => format!("set to {last_value} (is_called {is_called})"),
            Action::ValidateForeignKey => "validated".to_string(),
        };
        match &o.outcome {
            Outcome::Done => {
                let _ = writeln!(out, "  ok       {}: {action}", o.object);
            }
            Outcome::Failed { sqlstate, message, detail } => {
                let _ = writeln!(out, "  FAILED   {}: not {action}: {message} (SQLSTATE {sqlstate})", o.object);
                if let Some(detail) = detail {
                    let _ = writeln!(out, "           {detail}");
                }
            }
        }
    }
    for seq in &report.missing_sequences {
        let _ = writeln!(out, "  MISSING  sequence {seq} is on the source but not on the target: not set");
    }
    let done =
        report.objects.len() - report.objects.iter().filter(|o| matches!(o.outcome, Outcome::Failed { .. })).count();
    let _ = writeln!(out, "{done} object(s) done, {} failure(s)", report.failures);
    if report.objects.iter().any(|o| matches!(o.outcome, Outcome::Failed { .. })) {
        let _ = writeln!(out, "repair or delete the rows named above, then run pgferry target validate-constraints (rerun pgferry target restore for a foreign key that could not be added)");
    }
    out
}

/// The inventory, one section per kind of object.
fn inventory_table(inv: &Inventory) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "schemas ({}): {}",
        inv.schemas.len(),
        inv.schemas.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        out,
        "extensions ({}): {}",
        inv.extensions.len(),
        inv.extensions.iter().map(|e| format!("{} {}", e.name, e.version)).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(out, "large objects: {}", inv.large_objects);
    let _ = writeln!(out, "\ntables ({})", inv.tables.len());
    for t in &inv.tables {
        let mut notes = Vec::new();
        if t.kind == TableKind::Partitioned {
            notes.push("partitioned".to_string());
        }
        if let Some(parent) = &t.partition_of {
            notes.push(format!("partition of {parent}"));
        }
        if !t.inherits.is_empty() {
            notes.push(format!("inherits {}", t.inherits.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")));
        }
        if t.unlogged {
            notes.push("unlogged".into());
        }
        if t.primary_key.is_empty() {
            notes.push(format!("no primary key, replica identity {:?}", t.replica_identity).to_lowercase());
        }
        if !t.identity_columns.is_empty() {
            notes.push(format!("{} identity column(s)", t.identity_columns.len()));
        }
        if !t.generated_columns.is_empty() {
            notes.push(format!("{} generated column(s)", t.generated_columns.len()));
        }
        let rows = t.size.estimated_rows.map_or("?".to_string(), |r| r.to_string());
        let _ = writeln!(
            out,
            "  {:<50} {:>10} {:>12} rows  {}",
            t.name.to_string(),
            human_bytes(t.size.bytes),
            rows,
            notes.join("; ")
        );
    }
    let _ = writeln!(out, "\nforeign keys ({})", inv.foreign_keys.len());
    for fk in &inv.foreign_keys {
        let _ = writeln!(out, "  {} {}: {}", fk.table, fk.name, fk.definition.as_str());
    }
    let _ = writeln!(out, "\ntriggers ({})", inv.triggers.len());
    for t in &inv.triggers {
        let mut notes = vec![t.state.as_str()];
        if t.constraint_trigger {
            notes.push("constraint trigger");
        }
        if t.cloned_from_parent {
            notes.push("clone of the parent's");
        }
        let _ = writeln!(out, "  {} {}: {}", t.table, t.name, notes.join(", "));
    }
    let _ = writeln!(out, "\nsequences ({})", inv.sequences.len());
    for s in &inv.sequences {
        let kind = match (&s.kind, &s.owned_by) {
            (SequenceKind::Standalone, _) => "standalone".to_string(),
            (SequenceKind::Serial, Some(o)) => format!("serial {}.{}", o.table, o.column),
            (SequenceKind::Identity, Some(o)) => format!("identity {}.{}", o.table, o.column),
            (kind, None) => format!("{kind:?}").to_lowercase(),
        };
        let _ = writeln!(
            out,
            "  {} ({kind}, {}, increment {}{}): last_value {}, is_called {}",
            s.name,
            s.data_type,
            s.increment,
            if s.cycle { ", cycle" } else { "" },
            s.position.last_value,
            s.position.is_called
        );
    }
    let _ = writeln!(
        out,
        "\nconstraints ({}), indexes ({}), views and materialized views ({})",
        inv.constraints.len(),
        inv.indexes.len(),
        inv.views.len()
    );
    out
}
