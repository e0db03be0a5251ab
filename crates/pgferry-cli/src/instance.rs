//! `start`, `status`, `validate`, `abort` and `cleanup` with `--all-databases`: the
//! per-database command on every database of the instance's plan
//! ([`pgferry::instance::paired`]), each under a heading (one JSON document
//! for all), then the instance's verdict. A database the target server lacks is
//! named as such (not moved: `check --all-databases` gives the statement that
//! creates it), unless the source still holds the migration's objects there (the
//! target's database was dropped after the copy): then its slot keeps the
//! source's WAL, which is said, and `abort`/`cleanup` fail for that database
//! naming `abort --target-lost`. Each command goes on to the next database when
//! one fails (it cannot be reached, its slot is lost), and fails after all were
//! tried, naming each failure (in the JSON report too, as the database's
//! `error`); a database not validated makes the instance NOT PROVEN at best.

use std::process::ExitCode;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use pgferry::events::Observer;
use pgferry::start::{StartOptions, TargetDatabase};
use tracing::Instrument;

use pgferry::instance::PairedDatabase;
use pgferry::Result;
use pgferry_core::cutover::{
    finished_in_unfinished_instance, instance_recovery, CutoverStep, StoppedCutover, SwitchWord,
};
use pgferry_core::names::MigrationName;
use pgferry_core::slot::SlotVerdict;
use pgferry_core::validation::Verdict;
use serde::Serialize;

use crate::cli::{Format, StatusArgs, ValidateArgs};
use crate::commands::{exit_code, parse_migration, parse_pair, validate_one, verdict_exit_code};
use crate::render;
use crate::start::StartArgs;

/// What the target server lacks, said in place of a database's report.
const MISSING: &str = "missing on the target server: nothing of it was moved (pgferry start --all-databases creates it; pgferry check --all-databases prints the CREATE DATABASE)";

#[derive(Serialize)]
struct DatabaseResult<T: Serialize> {
    database: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing: Option<String>,
    /// Why this database's command failed (the others were still done).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Why nothing was done there ([`FINISHED`], say).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl<T: Serialize> DatabaseResult<T> {
    fn reported(database: String, report: T) -> Self {
        DatabaseResult { database, report: Some(report), missing: None, error: None, note: None }
    }

    fn failed(database: String, error: String) -> Self {
        DatabaseResult { database, report: None, missing: None, error: Some(error), note: None }
    }

    /// A database left as it is, and why.
    fn left(database: String, why: impl Into<String>) -> Self {
        DatabaseResult { database, report: None, missing: None, error: None, note: Some(why.into()) }
    }

    /// A database an earlier run of the instance's cutover finished.
    fn finished(database: String) -> Self {
        Self::left(database, FINISHED)
    }
}

/// What is said of a database the target server lacks: nothing of it moved, or
/// (`Stranded`) the source still holds the migration's objects there.
enum Missing {
    NothingMoved,
    Stranded(String),
}

/// A database's failure, named, kept for the error after all were tried; its
/// message, for the report.
fn failed(database: &str, e: pgferry::Error, failures: &mut Vec<pgferry::Error>) -> String {
    let e = named(database, e);
    let message = e.message.clone();
    failures.push(e);
    message
}

/// The error, with the database it happened in.
fn named(database: &str, e: pgferry::Error) -> pgferry::Error {
    pgferry::Error { message: format!("database {database:?}: {}", e.message), ..e }
}

/// `code` when every database went through, else every failure at once.
fn finished(failures: Vec<pgferry::Error>, code: ExitCode) -> Result<ExitCode> {
    match failures.is_empty() {
        true => Ok(code),
        false => Err(pgferry::Error::combine(failures)),
    }
}

/// How to remove a migration whose target database is gone.
fn target_lost_hint(database: &str) -> String {
    format!(
        "if the target's database is gone for good, \
         pgferry abort --target-lost --all-databases --database {database:?} removes them on the source alone"
    )
}

impl Missing {
    async fn of(db: &PairedDatabase, migration: &MigrationName) -> Result<Missing> {
        if !pgferry::cleanup::source_holds(&db.source, migration).await? {
            return Ok(Missing::NothingMoved);
        }
        Ok(Missing::Stranded(format!(
            "missing on the target server, but the source still holds migration {migration}'s objects there \
             (its replication slot keeps the source's WAL); {}",
            target_lost_hint(&db.database)
        )))
    }

    fn text(&self) -> &str {
        match self {
            Missing::NothingMoved => MISSING,
            Missing::Stranded(text) => text,
        }
    }
}

#[derive(Serialize)]
struct InstanceResult<T: Serialize> {
    databases: Vec<DatabaseResult<T>>,
    /// Left out by the plan, with why.
    left_out: Vec<(String, pgferry_core::instance::LeftOut)>,
    /// The roles `start --roles` created on the target server.
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<pgferry::roles::RolesReport>,
}

async fn databases(
    pair: &crate::cli::Pair,
    instance: &crate::cli::InstanceArgs,
) -> Result<(Vec<PairedDatabase>, Vec<(String, pgferry_core::instance::LeftOut)>)> {
    let (source, target) = parse_pair(&pair.source, &pair.target)?;
    let (plan, paired) = pgferry::instance::paired(&source, &target, &instance.selection()).await?;
    Ok((paired, plan.left_out))
}

fn heading(database: &str) -> String {
    format!("== database {database:?} ==\n")
}

fn left_out_lines(left_out: &[(String, pgferry_core::instance::LeftOut)]) -> String {
    left_out.iter().map(|(name, why)| format!("left out: {name:?}: {}\n", why.as_str())).collect()
}

pub(crate) async fn validate(args: ValidateArgs) -> Result<ExitCode> {
    let (paired, left_out) = databases(&args.pair, &args.instance).await?;
    let events = crate::metrics::events(&args.metrics, Vec::new())?;
    let migration = parse_migration(&args.name)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut verdict = Verdict::Equal;
    for db in paired {
        let outcome = match &db.target {
            Some(target) => validate_one(&db.source, target, &migration, &args, &events).await.map(|r| (Some(r), None)),
            None => Missing::of(&db, &migration).await.map(|m| (None, Some(m))),
        };
        let (report, missing) = match outcome {
            Ok(found) => found,
            Err(e) => {
                verdict = worse(verdict, Verdict::NotProven);
                let error = failed(&db.database, e, &mut failures);
                if args.format == Format::Table {
                    println!("{}could not be validated: {error}", heading(&db.database));
                }
                results.push(DatabaseResult::failed(db.database, error));
                continue;
            }
        };
        let this = report.as_ref().map_or(Verdict::Different, |r| r.verdict);
        verdict = worse(verdict, this);
        if args.format == Format::Table {
            print!("{}", heading(&db.database));
            match (&report, &missing) {
                (Some(report), _) => print!("{}", render::validation(report)),
                (None, missing) => println!("{}", missing.as_ref().map_or(MISSING, Missing::text)),
            }
        }
        let missing = missing.map(|m| m.text().to_string());
        results.push(DatabaseResult { database: db.database, missing, report, error: None, note: None });
    }
    match args.format {
        Format::Table => {
            let unvalidated = match failures.len() {
                0 => String::new(),
                n => format!("; {n} could not be validated"),
            };
            println!(
                "{}instance: {} ({} database(s){unvalidated})",
                left_out_lines(&left_out),
                verdict_word(verdict),
                results.len()
            )
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&InstanceResult { databases: results, left_out, roles: None })
                .expect("report serializes")
        ),
    }
    finished(failures, verdict_exit_code(verdict))
}

/// The instance's verdict: DIFFERENT if any database differs, else NOT PROVEN if
/// any is not proven, else EQUAL.
fn worse(a: Verdict, b: Verdict) -> Verdict {
    match (a, b) {
        (Verdict::Different, _) | (_, Verdict::Different) => Verdict::Different,
        (Verdict::NotProven, _) | (_, Verdict::NotProven) => Verdict::NotProven,
        _ => Verdict::Equal,
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Equal => "EQUAL",
        Verdict::Different => "DIFFERENT",
        Verdict::NotProven => "NOT PROVEN",
    }
}

pub(crate) async fn status(args: StatusArgs) -> Result<ExitCode> {
    let (paired, left_out) = databases(&args.named.pair, &args.instance).await?;
    let migration = parse_migration(&args.named.name)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut code = 0u8;
    for db in paired {
        let outcome = match &db.target {
            Some(target) => {
                Box::pin(pgferry::status::status(&db.source, target, &migration)).await.map(|s| (Some(s), None))
            }
            None => Missing::of(&db, &migration).await.map(|m| (None, Some(m))),
        };
        let (status, missing) = match outcome {
            Ok(found) => found,
            Err(e) => {
                let error = failed(&db.database, e, &mut failures);
                if args.format == Format::Table {
                    println!("{}status could not be read: {error}", heading(&db.database));
                }
                results.push(DatabaseResult::failed(db.database, error));
                continue;
            }
        };
        code = code.max(match status.as_ref().map(|s| &s.slot_verdict) {
            Some(SlotVerdict::Lost { .. }) => exit_code(pgferry::ErrorKind::SlotLost),
            Some(SlotVerdict::Unreserved { .. }) | None => 1,
            Some(_) => 0,
        });
        if args.format == Format::Table {
            print!("{}", heading(&db.database));
            match (&status, &missing) {
                (Some(status), _) => print!("{}", render::status(status)),
                (None, missing) => println!("{}", missing.as_ref().map_or(MISSING, Missing::text)),
            }
        }
        let missing = missing.map(|m| m.text().to_string());
        results.push(DatabaseResult { database: db.database, missing, report: status, error: None, note: None });
    }
    match args.format {
        Format::Table => print!("{}", left_out_lines(&left_out)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&InstanceResult { databases: results, left_out, roles: None })
                .expect("status serializes")
        ),
    }
    finished(failures, ExitCode::from(code))
}

/// `abort`/`cleanup` of the migration `name` in every database of the plan; with
/// `target` `None` (`abort --target-lost`), on the source alone.
pub(crate) async fn remove(
    source: &pgferry_pg::ConnSpec,
    target: Option<&pgferry_pg::ConnSpec>,
    name: &str,
    instance: &crate::cli::InstanceArgs,
    fence: pgferry::cleanup::Fence,
    force: bool,
) -> Result<ExitCode> {
    let migration = parse_migration(name)?;
    let (plan, paired) = match target {
        Some(target) => pgferry::instance::paired(source, target, &instance.selection()).await?,
        None => {
            let plan = pgferry::instance::planned(source, &instance.selection()).await?;
            let on_source = |database: &String| PairedDatabase {
                source: source.with_dbname(database),
                database: database.clone(),
                target: None,
            };
            let paired = plan.databases.iter().map(on_source).collect();
            (plan, paired)
        }
    };
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for db in paired {
        let removed = match (&db.target, target) {
            (Some(t), _) => Ok(Some(pgferry::cleanup::remove(&db.source, t, &migration, fence, force).await)),
            (None, None) => Ok(Some(pgferry::cleanup::remove_without_target(&db.source, &migration, force).await)),
            (None, Some(_)) => Missing::of(&db, &migration).await.map(|missing| match missing {
                Missing::NothingMoved => None,
                Missing::Stranded(text) => Some(Err(pgferry::Error::new(
                    pgferry::ErrorKind::Refused,
                    format!("{text}; nothing was changed there"),
                ))),
            }),
        };
        let (report, error) = match removed {
            Ok(Some(Ok(report))) => (Some(report), None),
            Ok(Some(Err(e))) | Err(e) => (None, Some(failed(&db.database, e, &mut failures))),
            Ok(None) => (None, None),
        };
        let missing = (report.is_none() && error.is_none()).then(|| MISSING.to_string());
        results.push(DatabaseResult { database: db.database, missing, report, error, note: None });
    }
    let report = InstanceResult { databases: results, left_out: plan.left_out, roles: None };
    println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    finished(failures, ExitCode::SUCCESS)
}

/// `start --all-databases`: one process moving every database of the plan side
/// by side, each its own migration (slot, publications, journal in its own
/// database), the copy's `--jobs` and `--index-jobs` shared out among them; log
/// lines and metrics name the database. A database the target server lacks is
/// created there first as the source has it (a seeded target's lacking one
/// refuses the whole run before anything starts). One that stops (refused,
/// failed) is said at once, the others go on; the run fails at the end, naming
/// each.
pub(crate) async fn start(
    source: &pgferry_pg::ConnSpec,
    target: &pgferry_pg::ConnSpec,
    args: &StartArgs,
    options: StartOptions,
) -> Result<ExitCode> {
    let (plan, mut paired) = pgferry::instance::paired(source, target, &args.instance.selection()).await?;
    let migration = &options.follow.migration;
    // A database whose target was dropped after it was moved is not moved
    // again from nothing behind the operator's back; a seeded target is the
    // snapshot, so one missing there was dropped since.
    let mut stranded = Vec::new();
    for db in paired.iter().filter(|db| db.target.is_none()) {
        match Missing::of(db, migration).await? {
            Missing::Stranded(text) if !args.seeded => stranded.push(named(
                &db.database,
                pgferry::Error::new(pgferry::ErrorKind::Refused, format!("{text}; nothing was started")),
            )),
            _ if args.seeded => refuse_missing(&paired, "nothing was started")?,
            _ => {}
        }
    }
    if !stranded.is_empty() {
        return Err(pgferry::Error::combine(stranded));
    }
    let resuming = pgferry::instance::resuming_copies(&paired, migration).await?;
    pgferry::instance::refuse_without_room(source, migration, &plan.databases, true, resuming).await?;
    // Every refusal before anything is created: each database the target has
    // asked as its start would ask it (a database created below is asked by
    // its own start, once it exists).
    let mut refused = Vec::new();
    for db in &paired {
        let on_target = match &db.target {
            Some(target) => TargetDatabase::Exists(target),
            None => TargetDatabase::ToCreate(target),
        };
        if let Err(e) = pgferry::start::refusals(&db.source, on_target, &options).await {
            refused.push(named(&db.database, e));
        }
    }
    if !refused.is_empty() {
        return Err(pgferry::Error::combine(refused));
    }
    let definitions = match args.seeded {
        true => Vec::new(),
        false => pgferry::instance::missing_definitions(target, &paired).await?,
    };
    let planned_roles: Vec<String> = match options.roles && !definitions.is_empty() {
        true => pgferry::roles::roles(source, target, true).await?.created.into_iter().map(|r| r.name).collect(),
        false => Vec::new(),
    };
    pgferry::instance::refuse_lacking_owners(
        target,
        &definitions,
        &planned_roles,
        "no role or database was created and nothing started",
    )
    .await?;
    let serving = crate::metrics::serve_if_asked(&args.metrics)?;
    // Roles are the server's: made once, before a missing database needs its
    // owner or a copy its grantees.
    let mut options = options;
    let roles = match std::mem::take(&mut options.roles) {
        true => Some(pgferry::start::made_roles(source, target).await?),
        false => None,
    };
    if let (Some(made), Format::Table) = (&roles, args.format) {
        print!("{}", render::roles(made));
    }
    for database in pgferry::instance::create_missing(target, &mut paired, definitions).await? {
        tracing::info!(target: crate::logging::EVENTS, "created database {database:?} on the target, as the source has it");
    }
    refuse_missing(&paired, "nothing was started")?;
    for (name, why) in plan.left_out.iter().filter(|(_, why)| why.loses_writes()) {
        tracing::warn!(target: crate::logging::EVENTS, "database {name:?} is left out: {}", why.as_str());
    }
    let shares = paired.len().max(1);
    let mut runs: FuturesUnordered<_> = paired
        .iter()
        .map(|db| {
            let mut options = options.clone();
            options.copy.jobs = (options.copy.jobs / shares).max(1);
            options.copy.index_jobs = (options.copy.index_jobs / shares).max(1);
            let observers: Vec<Arc<dyn Observer>> =
                vec![Arc::new(crate::progress::CopyView::new(true)), Arc::new(crate::follow::LogLines)];
            let events = crate::metrics::events_of(serving, observers, Some(&db.database));
            let span = tracing::info_span!(target: crate::logging::EVENTS, "database", database = %db.database);
            let target = db.target.as_ref().expect("refused above when missing");
            async move {
                (db.database.clone(), Box::pin(pgferry::start::start(&db.source, target, &options, &events)).await)
            }
            .instrument(span)
        })
        .collect();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    while let Some((database, outcome)) = runs.next().await {
        match outcome {
            Ok(report) => {
                if args.format == Format::Table {
                    print!("{}{}", heading(&database), crate::start::start_summary(&report));
                }
                results.push(DatabaseResult::reported(database, report));
            }
            Err(e) => {
                tracing::error!(target: crate::logging::EVENTS, "database {database:?} stopped: {}", e.message);
                let e = named(&database, e);
                results.push(DatabaseResult::failed(database, e.message.clone()));
                failures.push(e);
            }
        }
    }
    if args.format == Format::Json {
        let report = InstanceResult { databases: results, left_out: plan.left_out, roles };
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    }
    finished(failures, ExitCode::SUCCESS)
}

/// `cutover --all-databases`: every database of the plan cut over with one
/// switch. Each database's go/no-go is decided first, and a refusal anywhere
/// fences nothing; then every database's cutover runs side by side (fence,
/// drain, sequences, exact check, each in its own database) and meets the
/// others at the one switch ([`pgferry::switch_barrier::SwitchBarrier`]): the
/// last to arrive runs the switch command once. A failure or a signal before
/// every database arrived rolls every one back. The instance's downtime is the
/// longest database's, from its fence to the switch's end. `--dry-run`: each
/// database's plan.
pub(crate) async fn cutover(
    args: &crate::cli::CutoverArgs,
    source: &pgferry_pg::ConnSpec,
    target: &pgferry_pg::ConnSpec,
    options: pgferry::cutover::CutoverOptions,
) -> Result<ExitCode> {
    let (plan, paired) = pgferry::instance::paired(source, target, &args.instance.selection()).await?;
    refuse_missing(&paired, "nothing was changed")?;
    let stopped = stopped_cutovers(&paired, &options.migration).await?;
    let mut plans = Vec::new();
    let mut refusals = Vec::new();
    let mut done = Vec::new();
    for (i, db) in paired.iter().enumerate() {
        // Cut over by a run of this instance cutover that stopped before
        // finishing the others: left as it is while they are finished.
        if finished_in_unfinished_instance(&stopped, i) {
            done.push(db.database.clone());
            continue;
        }
        let target = db.target.as_ref().expect("refused above when missing");
        let planned = pgferry::cutover::plan(&db.source, target, &options).await?;
        if let pgferry_core::cutover::Decision::NoGo(reasons) = &planned.decision {
            refusals.extend(reasons.iter().map(|r| (db.database.clone(), r.clone())));
        }
        plans.push((db.database.clone(), planned));
    }
    if args.dry_run {
        match args.format {
            Format::Table => {
                for (database, planned) in &plans {
                    print!("{}{}", heading(database), render::cutover_plan(planned));
                }
                for database in &done {
                    println!("{}{FINISHED}", heading(database));
                }
                print!("{}", left_out_lines(&plan.left_out));
            }
            Format::Json => {
                let mut databases: Vec<_> =
                    plans.into_iter().map(|(database, p)| DatabaseResult::reported(database, p)).collect();
                databases.extend(done.into_iter().map(DatabaseResult::finished));
                let report = InstanceResult { databases, left_out: plan.left_out, roles: None };
                println!("{}", serde_json::to_string_pretty(&report).expect("plan serializes"));
            }
        }
        return Ok(if refusals.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    // Databases whose earlier cutover stopped: this run only recovers them
    // (each rolls back, or finishes a switch that ran), as a cutover of one does.
    let recovering: Vec<usize> = paired
        .iter()
        .enumerate()
        .filter(|(_, db)| plans.iter().any(|(name, p)| *name == db.database && p.recovery.is_some()))
        .map(|(i, _)| i)
        .collect();
    if !recovering.is_empty() {
        let done = done.into_iter().map(DatabaseResult::finished).collect();
        let recovery = Recovery { paired: &paired, stopped: &stopped, recovering: &recovering, done };
        return recover(recovery, &options, args.format, plan.left_out).await;
    }
    // Nothing to recover: a word about a switch answers nothing, and must
    // not reach the databases' cutovers (each would first take its runner
    // lock over from a running start).
    if options.switch_word != SwitchWord::Unspoken {
        return Err(pgferry::Error::new(
            pgferry::ErrorKind::Usage,
            "--switch-ran and --switch-did-not-run answer for a switch command that was running when pgferry stopped; no database of the instance stopped at its switch",
        )
        .with_hint("nothing was changed in any database; rerun pgferry cutover --all-databases without it"));
    }
    if !done.is_empty() {
        let names: Vec<String> = done.iter().map(|d| format!("{d:?}")).collect();
        return Err(pgferry::Error::new(
            pgferry::ErrorKind::Refused,
            format!("{} cut over by an earlier run of this instance cutover, but nothing of the other databases' cutover is left to finish or roll back; nothing was changed", names.join(", ")),
        )
        .with_hint("pgferry status --all-databases shows where each database stands; to cut the others over, leave the finished ones out with --exclude-database"));
    }
    if !refusals.is_empty() {
        return Err(pgferry::Error::new(
            pgferry::ErrorKind::Refused,
            format!("the instance's cutover may not start:\n  - {}", by_reason(&refusals).join("\n  - ")),
        )
        .with_hint("nothing was changed in any database; fix the reasons above and rerun"));
    }
    let shutdown = crate::signals::stop_on_signals(
        "stopping: before the switch every database's cutover rolls back; a running switch command is waited for",
        crate::signals::Second::Waits,
    )?;
    let barrier = Arc::new(pgferry::switch_barrier::SwitchBarrier::new(paired.len()));
    // A signal before every database arrived at the switch: none switches.
    let mut signalled = shutdown.clone();
    let watched = barrier.clone();
    tokio::spawn(async move {
        if signalled.wait_for(|stopped| *stopped).await.is_ok() {
            watched.abort("stopped by a signal");
        }
    });
    let serving = crate::metrics::serve_if_asked(&args.metrics)?;
    let mut runs: FuturesUnordered<_> = paired
        .iter()
        .map(|db| {
            let options = pgferry::cutover::CutoverOptions {
                shutdown: Some(shutdown.clone()),
                instance_switch: Some(barrier.clone()),
                ..options.clone()
            };
            let events = crate::metrics::events_of(serving, Vec::new(), Some(&db.database));
            let span = tracing::info_span!(target: crate::logging::EVENTS, "database", database = %db.database);
            let target = db.target.as_ref().expect("refused above when missing");
            async move {
                (db.database.clone(), Box::pin(pgferry::cutover::cutover(&db.source, target, &options, &events)).await)
            }
            .instrument(span)
        })
        .collect();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    while let Some((database, outcome)) = runs.next().await {
        match outcome {
            Ok(report) => results.push(DatabaseResult::reported(database, report)),
            Err(e) => {
                let e = named(&database, e);
                barrier.abort(&e.message);
                results.push(DatabaseResult::failed(database, e.message.clone()));
                failures.push(e);
            }
        }
    }
    results.sort_by(|a, b| a.database.cmp(&b.database));
    let downtime = results.iter().filter_map(|r| r.report.as_ref()).map(|r| r.downtime_seconds).fold(0.0, f64::max);
    match args.format {
        Format::Table => {
            for r in &results {
                if let Some(report) = &r.report {
                    print!("{}{}", heading(&r.database), render::cutover(report));
                }
            }
            if failures.is_empty() {
                println!("instance: {} database(s) cut over with one switch; downtime {downtime:.3} s (the longest database's, from its fence to the switch's end)", results.len());
            }
        }
        Format::Json => {
            let report = InstanceResult { databases: results, left_out: plan.left_out, roles: None };
            println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
        }
    }
    finished(failures, ExitCode::SUCCESS)
}

/// Said of a database an earlier run of the instance's cutover finished.
const FINISHED: &str = "cut over already, by the earlier run of this instance cutover; left as it is";

/// Whether database `db`'s journals still record its cutover at the switch
/// (also when they cannot be read).
async fn still_at_switch(db: &PairedDatabase, migration: &MigrationName) -> bool {
    let target = db.target.as_ref().expect("refused above when missing");
    pgferry::cutover::stopped_cutover(&db.source, target, migration)
        .await
        .map_or(true, |at| at.last_step == Some(CutoverStep::Switching))
}

/// Where each database's earlier cutover stopped, if anywhere.
async fn stopped_cutovers(paired: &[PairedDatabase], migration: &MigrationName) -> Result<Vec<StoppedCutover>> {
    let mut stopped = Vec::new();
    for db in paired {
        let target = db.target.as_ref().expect("refused above when missing");
        let at = pgferry::cutover::stopped_cutover(&db.source, target, migration)
            .await
            .map_err(|e| named(&db.database, e))?;
        stopped.push(at);
    }
    Ok(stopped)
}

/// The databases whose earlier cutover stopped (`recovering`, by the index of
/// `paired`), each recovered by its own cutover run (no new cutover starts
/// anywhere) with the word [`instance_recovery`] gives: a database stopped at
/// the instance's switch as the other databases of the same instance cutover
/// prove (one stopped before its switch: the switch never ran; one past it:
/// it ran), the operator's word only when they cannot tell. Those go first,
/// while the others' journals still hold what they prove, and the first of
/// them that fails stops the run there, the others untouched.
async fn recover(
    recovery: Recovery<'_>,
    options: &pgferry::cutover::CutoverOptions,
    format: Format,
    left_out: Vec<(String, pgferry_core::instance::LeftOut)>,
) -> Result<ExitCode> {
    let Recovery { paired, stopped, recovering, done } = recovery;
    let mut untouched: Vec<usize> = (0..paired.len())
        .filter(|i| !recovering.contains(i) && !done.iter().any(|d| d.database == paired[*i].database))
        .collect();
    let words = instance_recovery(stopped, recovering, options.switch_word).map_err(|(i, why)| {
        named(&paired[i].database, pgferry::Error::new(pgferry::ErrorKind::Usage, why))
            .with_hint("nothing was changed in any database; rerun pgferry cutover --all-databases without it")
    })?;
    if format == Format::Table {
        for r in &done {
            println!("{}{FINISHED}", heading(&r.database));
        }
    }
    let mut results = done;
    let mut failures = Vec::new();
    for (i, word) in words {
        let db = &paired[i];
        let target = db.target.as_ref().expect("refused above when missing");
        let options =
            pgferry::cutover::CutoverOptions { switch_word: word, instance_recovery: true, ..options.clone() };
        let events = pgferry::events::Events::silent();
        let outcome = Box::pin(pgferry::cutover::cutover(&db.source, target, &options, &events)).await;
        // A rollback says so as an error; one that did not get past the
        // switch's record leaves the others' proof untouched.
        let stop_here = match &outcome {
            Err(_) => still_at_switch(db, &options.migration).await,
            Ok(_) => false,
        };
        match outcome {
            Ok(report) => {
                if format == Format::Table {
                    print!("{}{}", heading(&db.database), render::cutover(&report));
                }
                results.push(DatabaseResult::reported(db.database.clone(), report));
            }
            Err(e) => {
                let e = named(&db.database, e);
                results.push(DatabaseResult::failed(db.database.clone(), e.message.clone()));
                failures.push(e);
            }
        }
        if stop_here {
            failures.push(pgferry::Error::new(
                pgferry::ErrorKind::Precondition,
                "the other databases were left as they are, so that their journals still say whether the switch ran: rerun pgferry cutover --all-databases once the cause above is fixed",
            ));
            let why = format!("left as it is: the recovery stopped at database {:?}", db.database);
            let rest: Vec<String> = recovering
                .iter()
                .map(|j| paired[*j].database.clone())
                .filter(|name| !results.iter().any(|r| r.database == *name))
                .collect();
            results.extend(rest.into_iter().map(|name| DatabaseResult::left(name, why.as_str())));
            break;
        }
    }
    untouched.retain(|i| !results.iter().any(|r| r.database == paired[*i].database));
    results.extend(
        untouched
            .into_iter()
            .map(|i| DatabaseResult::left(paired[i].database.clone(), "no cutover of it stopped: nothing to recover")),
    );
    if format == Format::Json {
        let report = InstanceResult { databases: results, left_out, roles: None };
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    }
    finished(failures, ExitCode::SUCCESS)
}

/// The databases of an instance cutover that stopped, as [`recover`] takes them.
struct Recovery<'a> {
    paired: &'a [PairedDatabase],
    stopped: &'a [StoppedCutover],
    /// By the index of `paired`.
    recovering: &'a [usize],
    /// Finished by the earlier run: left as they are.
    done: Vec<DatabaseResult<pgferry::cutover::CutoverReport>>,
}

/// `rehearse --all-databases`: each database rehearsed in turn (one at a time:
/// each takes its own migration's runner lock and measures its own drain),
/// under its heading; the exit code is the worst.
pub(crate) async fn rehearse(
    args: &crate::cli::CutoverArgs,
    source: &pgferry_pg::ConnSpec,
    target: &pgferry_pg::ConnSpec,
    options: &pgferry::cutover::CutoverOptions,
) -> Result<ExitCode> {
    let (plan, paired) = pgferry::instance::paired(source, target, &args.instance.selection()).await?;
    refuse_missing(&paired, "nothing was rehearsed")?;
    let mut results = Vec::new();
    let mut worst = 0u8;
    for db in &paired {
        let target = db.target.as_ref().expect("refused above when missing");
        let rehearsal =
            Box::pin(pgferry::rehearse::rehearse(&db.source, target, options, &crate::commands::REHEARSAL_VALIDATION))
                .await
                .map_err(|e| named(&db.database, e))?;
        let code = crate::commands::rehearsal_code(&rehearsal);
        worst = match (worst, code) {
            (1, _) | (_, 1) => 1,
            (a, b) => a.max(b),
        };
        if args.format == Format::Table {
            print!("{}{}", heading(&db.database), render::rehearsal(&rehearsal));
        }
        results.push(DatabaseResult::reported(db.database.clone(), rehearsal));
    }
    if args.format == Format::Json {
        let report = InstanceResult { databases: results, left_out: plan.left_out, roles: None };
        println!("{}", serde_json::to_string_pretty(&report).expect("rehearsal serializes"));
    }
    Ok(ExitCode::from(worst))
}

/// Refuses when the target server lacks a database of the plan.
fn refuse_missing(paired: &[PairedDatabase], changed: &str) -> Result<()> {
    let missing: Vec<String> =
        paired.iter().filter(|d| d.target.is_none()).map(|d| format!("{:?}", d.database)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(pgferry::Error::new(
        pgferry::ErrorKind::Refused,
        format!("the target server lacks {}: {changed}", missing.join(", ")),
    )
    .with_hint(
        "move them first (pgferry start --all-databases creates them on a copied target; a seeded target lacks them only if they were dropped since the snapshot), or leave them out with --exclude-database",
    ))
}

/// Each reason once, with the databases it holds for: a server-wide one (a
/// role the target lacks) is found by every database's go/no-go.
fn by_reason(refusals: &[(String, String)]) -> Vec<String> {
    let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
    for (database, reason) in refusals {
        match grouped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, databases)) => databases.push(database),
            None => grouped.push((reason, vec![database])),
        }
    }
    grouped
        .into_iter()
        .map(|(reason, databases)| {
            let names: Vec<String> = databases.iter().map(|d| format!("{d:?}")).collect();
            match names.as_slice() {
                [one] => format!("database {one}: {reason}"),
                many => format!("databases {}: {reason}", many.join(", ")),
            }
        })
        .collect()
}

#[cfg(test)]
mod reasons {
    use super::by_reason;

    #[test]
    fn a_reason_every_database_finds_is_said_once_with_their_names() {
        let found = |d: &str, r: &str| (d.to_string(), r.to_string());
        let refusals = [
            found("a", "role app is missing on the target"),
            found("a", "lag 20 MB"),
            found("b", "role app is missing on the target"),
            found("c", "role app is missing on the target"),
        ];
        assert_eq!(
            by_reason(&refusals),
            ["databases \"a\", \"b\", \"c\": role app is missing on the target", "database \"a\": lag 20 MB",]
        );
    }
}
