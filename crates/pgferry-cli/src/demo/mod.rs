//! `pgferry demo`: the whole job on two throwaway local clusters, in one command.
//!
//! A newcomer should see a live migration end to end before pointing pgferry at
//! anything real. The demo makes a source and a target ([`clusters`]), loads a
//! sample shop ([`dataset`]), lets an application write to the source throughout
//! ([`workload`]), and then runs the same library executors as `check`, `copy`,
//! `follow --until-caught-up`, `cutover` and `validate`, drawing their progress with
//! the same views. Once the target has taken over, the application writes to it once,
//! and the ids it gets show that the sequences carried over. The [`summary`] goes to
//! stdout; everything along the way goes to stderr.
//!
//! The cutover compares, fenced and drained, every row change capture touched; a
//! full validation follows it, when the source is fenced and the target holds
//! everything, so the comparison is exact.

mod clusters;
mod dataset;
mod summary;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgferry::apply::{BatchLimits, FollowOptions, Until};
use pgferry::copy::CopyOptions;
use pgferry::cutover::CutoverOptions;
use pgferry::validate::ValidateOptions;
use pgferry::{Error, ErrorKind, Result};
use pgferry_core::names::MigrationName;
use pgferry_core::preflight::{human_bytes, CheckPlan};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::DemoArgs;
use crate::follow::LogLines;
use crate::progress::CopyView;
use crate::render;
use clusters::{random_password, Binaries, Sandbox};
use dataset::{APP_ROLE, DATABASE};
use pgferry::events::Events;
use workload::Workload;

pub(crate) async fn run(args: DemoArgs) -> Result<ExitCode> {
    let binaries = Binaries::find(args.pg_bin.as_deref())?;
    // Listening before the clusters exist, so that Ctrl-C or a kill during any step
    // drops the demo's future and with it the clusters (see `clusters::Sandbox`).
    let listen =
        |kind| signal(kind).map_err(|e| Error::new(ErrorKind::Usage, format!("cannot listen for signals: {e}")));
    let (mut interrupt, mut terminate) = (listen(SignalKind::interrupt())?, listen(SignalKind::terminate())?);
    // The exit codes are those a shell reports for a death by SIGINT or SIGTERM.
    let outcome = tokio::select! {
        biased;
        _ = interrupt.recv() => Err(130),
        _ = terminate.recv() => Err(143),
        result = demo(binaries, args.size_mb) => Ok(result),
    };
    outcome.unwrap_or_else(|code| {
        eprintln!("pgferry demo: interrupted; the demo's clusters are stopped and removed");
        Ok(ExitCode::from(code))
    })
}

/// Each step of the demo, timed.
struct Clock {
    last: Instant,
    steps: Vec<(&'static str, f64)>,
}

impl Clock {
    fn lap(&mut self, step: &'static str) {
        self.steps.push((step, self.last.elapsed().as_secs_f64()));
        self.last = Instant::now();
    }
}

async fn demo(binaries: Binaries, size_mb: u32) -> Result<ExitCode> {
    let mut clock = Clock { last: Instant::now(), steps: Vec::new() };
    if binaries.has_dump_tools() && std::env::var_os("PGFERRY_PG_BIN").is_none() {
        // pg_dump must match the servers: the copy takes it from PGFERRY_PG_BIN
        // (pgferry_pg::tools). Set before any other thread reads the environment.
        std::env::set_var("PGFERRY_PG_BIN", binaries.dir());
    }
    let from = binaries.dir().display().to_string();
    let mut sandbox = Sandbox::new(binaries)?;
    eprintln!("pgferry demo: two throwaway clusters in {} (programs from {from})", sandbox.path().display());
    let source = sandbox.start("source")?;
    let target = sandbox.start("target")?;
    let (superuser, app) = (random_password()?, random_password()?);
    let postgres = pgferry_pg::connect(&source.local_superuser("postgres")).await?;
    dataset::prepare_cluster(&postgres, &superuser, &app).await?;
    // The target's application role gets the source's hash, as an operator
    // copies it: the cutover's gate compares the two (a password set anew there
    // would have a salt of its own, and the gate would warn).
    let hash = dataset::password_hash(&postgres).await?;
    dataset::prepare_cluster(&pgferry_pg::connect(&target.local_superuser("postgres")).await?, &superuser, &hash)
        .await?;
    clock.lap("start clusters");

    eprintln!("pgferry demo: loading a sample of about {size_mb} MB into the source (port {})", source.port());
    let loaded = dataset::load(&pgferry_pg::connect(&source.local_superuser(DATABASE)).await?, size_mb).await?;
    eprintln!("pgferry demo: loaded {}", human_bytes(loaded.bytes));
    clock.lap("load sample");

    let src = source.tcp("postgres", &superuser, DATABASE);
    let tgt = target.tcp("postgres", &superuser, DATABASE);
    let workload = Workload::start(source.tcp(APP_ROLE, &app, DATABASE), loaded.customers);
    eprintln!("pgferry demo: the application ({APP_ROLE}) writes to the source from now on");

    let checked =
        pgferry::check::check(&src, &tgt, &CheckPlan { full_copy: true, long_transaction_seconds: 300 }).await?;
    eprint!("{}", render::check_table(&checked));
    if !checked.ready {
        return Err(Error::new(ErrorKind::Precondition, "pgferry check found problems with the demo's own clusters")
            .with_hint(
                "read the findings above; the servers' settings are made by pgferry demo, so this is worth an issue",
            ));
    }
    clock.lap("check");

    let migration = MigrationName::new("demo").expect("a valid migration name");
    let copy_options = CopyOptions {
        migration: migration.clone(),
        jobs: 2,
        index_jobs: 2,
        split_larger_than: 100 << 20,
        replica_identity_full: false,
    };
    let view = Arc::new(CopyView::new(false));
    let copied = pgferry::copy::copy(&src, &tgt, &copy_options, &Events::to(vec![view.clone()])).await;
    view.finish();
    let copied = copied?;
    eprint!("{}", render::copy_summary(&copied));
    clock.lap("copy");

    let follow_options = FollowOptions {
        migration: migration.clone(),
        until: Until::CaughtUp,
        batch: BatchLimits::default(),
        shutdown: None,
        drain: false,
        lanes: 1,
    };
    let followed = pgferry::apply::follow(&src, &tgt, &follow_options, &Events::to(vec![Arc::new(LogLines)])).await?;
    eprintln!("pgferry demo: caught up: {} changes applied", followed.changes);
    clock.lap("follow");

    eprintln!("pgferry demo: cutover ({} application transactions committed so far)", workload.committed());
    let cutover_options = CutoverOptions {
        migration,
        administrators: Vec::new(),
        switch_command: None,
        switch_timeout: CutoverOptions::SWITCH_TIMEOUT,
        outside_fence: None,
        policy: Default::default(),
        switch_word: Default::default(),
        shutdown: None,
        views: Default::default(),
        handover_timeout: CutoverOptions::HANDOVER_TIMEOUT,
        instance_switch: None,
        instance_recovery: false,
    };
    let cut = Box::pin(pgferry::cutover::cutover(&src, &tgt, &cutover_options, &Events::silent())).await?;
    eprint!("{}", render::cutover(&cut));
    let application = workload.stopped(Duration::from_secs(5)).await;
    clock.lap("cutover");

    let validate_options = ValidateOptions { jobs: 2, chunk_rows: 100_000, max_differences: 10, show_values: false };
    let validation = pgferry::validate::validate(&src, &tgt, None, &validate_options, &Events::silent()).await?;
    eprint!("{}", render::validation(&validation));
    clock.lap("validate");

    let source_last = workload::last_ids(&pgferry_pg::connect(&src).await?).await?;
    let target_new = workload::write_after_switch(&target.tcp(APP_ROLE, &app, DATABASE)).await?;
    clock.lap("write on target");

    let summary = summary::Summary {
        source_version: &checked.source.version,
        target_version: &checked.target.version,
        sample_bytes: loaded.bytes,
        copy: &copied,
        followed: followed.changes,
        application: &application,
        cutover: &cut,
        validation: &validation,
        takeover: (&source_last, &target_new),
        steps: &clock.steps,
    };
    print!("{}", summary::render(&summary));
    Ok(if summary.succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
