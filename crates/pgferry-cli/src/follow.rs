//! `pgferry follow`: runs change capture in the foreground, with a status line on
//! stderr every few seconds. Stopping it at any moment (Ctrl-C, kill) is safe: the
//! next run resumes from the last position committed on the target.

use std::process::ExitCode;

use pgferry::apply::{follow as run, BatchLimits, FollowEvent, FollowOptions, Until};
use pgferry::events::{Event, Observer, SeedEvent};
use pgferry::{Error, ErrorKind, Result};

use tracing::{info, warn};

use crate::cli::{FollowArgs, Format};
use crate::commands::{parse_migration, parse_pair};
use crate::logging::EVENTS;

pub(crate) async fn follow(args: FollowArgs) -> Result<ExitCode> {
    let (source, target) = parse_pair(&args.pair.source, &args.pair.target)?;
    let migration = parse_migration(&args.name)?;
    let until = match (&args.until_lsn, args.until_caught_up) {
        (Some(lsn), _) => {
            Until::Lsn(lsn.parse().map_err(|e| Error::new(ErrorKind::Usage, format!("--until-lsn: {e}")))?)
        }
        (None, true) => Until::CaughtUp,
        (None, false) => Until::Stopped,
    };
    let shutdown = crate::signals::stop_on_signals(
        "stopping after the current transaction (signal again to exit at once)",
        crate::signals::Second::Exits,
    )?;
    let options = FollowOptions {
        migration,
        until,
        batch: BatchLimits::default(),
        shutdown: Some(shutdown),
        drain: false,
        lanes: args.apply_lanes,
    };
    let mut runner = pgferry::start::RunnerLock::take(&target, &options.migration).await?;
    let command = pgferry_core::lifecycle::Command::Follow;
    pgferry::lifecycle::refuse_unless_allowed(&source, Some(&target), &options.migration, command).await?;
    if let Some(sql) = &args.apply_ddl {
        let done = pgferry::ddl::apply_operator_ddl(&target, &options.migration, sql).await?;
        match (&done.stands_for, &done.source_lsn) {
            (Some(command), Some(at)) => {
                eprintln!("pgferry: applied on the target in place of the source's {command:?} at {at}")
            }
            _ => eprintln!("pgferry: applied on the target"),
        }
    }
    let events = crate::metrics::events(&args.metrics, vec![std::sync::Arc::new(LogLines)])?;
    let work = Box::pin(run(&source, &target, &options, &events));
    let report = runner.hold(&target, &options.migration, work).await?;
    match args.format {
        Format::Table => println!(
            "migration {}: applied up to {} ({} transactions, {} changes in this run)",
            report.migration, report.applied_lsn, report.transactions, report.changes
        ),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
    }
    Ok(ExitCode::SUCCESS)
}

/// Change capture's and the seed's progress as log lines on stderr, one per event.
pub(crate) struct LogLines;

impl Observer for LogLines {
    fn observe(&self, event: &Event) {
        match event {
            Event::Follow(event) => follow_line(event),
            Event::Seed(SeedEvent::WaitingForTransactions { pids }) => info!(
                target: EVENTS,
                "creating the slot waits for the open transactions of these sessions to end: {pids:?}"
            ),
            _ => {}
        }
    }
}

fn follow_line(event: &FollowEvent) {
    match event {
        FollowEvent::Started { from } => info!(target: EVENTS, from = %from, "following the source"),
        FollowEvent::Status { applied, lag_bytes, lag_seconds, changes_per_second, .. } => info!(
            target: EVENTS,
            applied = %applied,
            lag_bytes,
            lag_seconds = (lag_seconds * 10.0).round() / 10.0,
            changes_per_second = changes_per_second.round(),
            "change capture"
        ),
        FollowEvent::Reconnecting { cause } => warn!(target: EVENTS, cause = %cause, "reconnecting"),
        // Warned where it happens (`apply::follow`), for every command.
        FollowEvent::StreamingOff { .. } => {}
        FollowEvent::Unreplicated { relations } => {
            for r in relations {
                warn!(target: EVENTS, relation = %r.relation, "{}", r.why);
            }
        }
        FollowEvent::Applied { .. } => {}
    }
}
