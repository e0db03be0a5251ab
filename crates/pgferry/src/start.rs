//! `pgferry start`: one command from an empty (or seeded) target to a replicating
//! one, rerunnable at any point.
//!
//! Steps, each resumed from the journal on a rerun:
//! 1. take the migration's runner lock on the target (a session-level advisory
//!    lock: one `start`, `rehearse` or `cutover` at a time; it goes away with the process,
//!    so a killed run never leaves it behind);
//! 2. the lifecycle's guard ([`crate::lifecycle`]): nothing starts once the
//!    migration was cut over; then the preflight, on a migration not journaled yet: every blocking problem at
//!    once, nothing changed;
//! 3. the data: the copy ([`crate::copy`]), or for a seeded target the attach
//!    ([`crate::seed`]);
//! 4. change capture ([`crate::apply`]) until stopped: a shutdown request
//!    finishes the current source transaction, commits, and returns.
//!
//! A shutdown during step 3 cancels it; what committed stays journaled and the
//! next run continues from there, exactly as after a kill.

use std::time::Duration;

use pgferry_core::lifecycle::Command;
use pgferry_core::names::MigrationName;
use pgferry_core::preflight::CheckPlan;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::apply::{follow, FollowOptions, FollowReport};
use crate::copy::{copy, CopyOptions, CopyReport};
use crate::error::{Error, ErrorKind, Result};
use crate::events::Events;
use crate::failpoint;
use crate::seed::{attach, AttachReport, SeedPosition};

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub copy: CopyOptions,
    /// `Some` for a seeded target: where the copy ends.
    pub seed: Option<SeedPosition>,
    pub follow: FollowOptions,
    /// Tables without a replica identity only ever get inserts (see `pgferry check`).
    pub keyless_tables_are_insert_only: bool,
    /// The operator's consent to DDL capture ([`crate::ddl`]): installed on the
    /// source before the copy's slot, so every later command is in the stream.
    pub capture_ddl: bool,
}

/// How the data reached the target.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataStep {
    Copied(CopyReport),
    Seeded(AttachReport),
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct StartReport {
    pub data: Option<DataStep>,
    /// `None` when stopped before change capture started.
    pub follow: Option<FollowReport>,
}

/// Runs (or resumes) the migration up to change capture, then follows until
/// `options.follow.until` or a shutdown request.
pub async fn start(
    source: &ConnSpec,
    target: &ConnSpec,
    options: &StartOptions,
    events: &Events,
) -> Result<StartReport> {
    let name = &options.copy.migration;
    let lock = RunnerLock::take(target, name).await?;
    failpoint::hit("start-after-lock");
    let command = if options.seed.is_some() { Command::StartSeeded } else { Command::Start };
    crate::lifecycle::refuse_unless_allowed(source, Some(target), name, command).await?;
    if crate::copy::journal::phase_if_journaled(&lock.0, name).await?.is_none() {
        preflight(source, target, options).await?;
    }
    failpoint::hit("start-after-check");
    if options.capture_ddl {
        crate::ddl::install(source, name).await?;
    }
    let mut shutdown = options.follow.shutdown.clone();
    let data = async {
        match &options.seed {
            Some(position) => attach(source, target, name, position).await.map(DataStep::Seeded),
            None => copy(source, target, &options.copy, events).await.map(DataStep::Copied),
        }
    };
    let data = tokio::select! {
        data = data => data?,
        () = requested(shutdown.as_mut()) => return Ok(StartReport { data: None, follow: None }),
    };
    failpoint::hit("start-after-data");
    let follow = follow(source, target, &options.follow, events).await?;
    drop(lock);
    Ok(StartReport { data: Some(data), follow: Some(follow) })
}

async fn requested(shutdown: Option<&mut watch::Receiver<bool>>) {
    match shutdown {
        Some(s) => {
            let _ = s.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

async fn preflight(source: &ConnSpec, target: &ConnSpec, options: &StartOptions) -> Result<()> {
    let plan = CheckPlan { full_copy: options.seed.is_none(), ..CheckPlan::default() };
    let keyless_settled = options.keyless_tables_are_insert_only || options.copy.replica_identity_full;
    crate::check::refuse_unless_ready(source, target, &plan, keyless_settled).await.map(|_| ())
}

/// The migration's runner lock: a session advisory lock on the target, held by
/// this connection for as long as the value lives.
pub struct RunnerLock(Client);

impl RunnerLock {
    /// Takes the lock, waiting up to [`LOCK_GRACE`] for a process that has just
    /// ended: the server releases its lock only once it notices the closed
    /// connection, so a rerun right after a refusal would otherwise be refused.
    pub async fn take(target: &ConnSpec, name: &MigrationName) -> Result<RunnerLock> {
        let client = pgferry_pg::connect(target).await?;
        let deadline = tokio::time::Instant::now() + LOCK_GRACE;
        loop {
            let taken: bool = client
                .query_one("SELECT pg_try_advisory_lock(hashtext('pgferry'), hashtext($1))", &[&name.as_str()])
                .await
                .map_err(|e| Error::server("taking the migration's runner lock on the target", e))?
                .get(0);
            if taken {
                return Ok(RunnerLock(client));
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let holder: Option<String> = client
            .query_opt(
                "SELECT format('backend pid %s (%s, %s, since %s)', a.pid, coalesce(a.client_addr::text, 'local socket'),
                               a.application_name, a.backend_start::timestamp(0))
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid::int = hashtext('pgferry') AND l.objid::int = hashtext($1) LIMIT 1",
                &[&name.as_str()],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0));
        let by = holder.map(|h| format!(" (it holds the runner lock: {h})")).unwrap_or_default();
        Err(Error::new(ErrorKind::Refused, format!("another pgferry process is running migration {name}{by}"))
            .with_hint("wait for it or stop it (Ctrl-C or SIGTERM stops pgferry start cleanly); pgferry status shows where it stands"))
    }
}

/// How long [`RunnerLock::take`] waits for a lock whose holder has just ended.
const LOCK_GRACE: Duration = Duration::from_secs(1);
