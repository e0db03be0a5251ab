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
//! 3. with `--capture-ddl`, DDL capture's install on the source ([`crate::ddl`]); with
//!    `--roles`, the source's roles the target lacks ([`crate::roles`]);
//! 4. the data: the copy ([`crate::copy`]), or for a seeded target the attach
//!    ([`crate::seed`]);
//! 5. change capture ([`crate::apply`]) until stopped: a shutdown request
//!    finishes the current source transaction, commits, and returns.
//!
//! A shutdown during step 4 cancels it; what committed stays journaled and the
//! next run continues from there, exactly as after a kill.
//!
//! Throughout, `start` answers a `cutover` or `rehearse` that asks for the
//! runner lock through the target ([`crate::handover`]): during step 5 it stops
//! change capture as for a shutdown and hands the lock over; it ends once a
//! cutover holds it, and resumes change capture after a rehearsal, or when the
//! requester died or gave up before taking it. During steps 2 to 4 it refuses.

use std::cell::RefCell;
use std::time::Duration;

use pgferry_core::handover::RunnerPhase;
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
use crate::handover::Released;
use crate::roles::RolesReport;
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
    /// Create the source's roles the target lacks ([`crate::roles`]) once the
    /// run's refusals are past (the preflight, DDL capture's install), before
    /// the copy needs them as owners and grantees: a refused run creates none.
    pub roles: bool,
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
    /// `None` when stopped before change capture started; across a rehearsal's
    /// handover, the runs' totals.
    pub follow: Option<FollowReport>,
    /// The cutover that took the runner lock over ("cutover (pid 123 on host-a)"):
    /// change capture has stopped for good in this process.
    pub handed_over_to: Option<String>,
    /// The roles created on the target (`StartOptions::roles`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<RolesReport>,
}

/// Runs (or resumes) the migration up to change capture, then follows until
/// `options.follow.until`, a shutdown request, or a cutover that takes over
/// ([`crate::handover`]).
pub async fn start(
    source: &ConnSpec,
    target: &ConnSpec,
    options: &StartOptions,
    events: &Events,
) -> Result<StartReport> {
    let name = &options.copy.migration;
    let lock = RunnerLock::take(target, name).await?;
    failpoint::hit("start-after-lock");
    let command = command_of(options);
    crate::lifecycle::refuse_unless_allowed(source, Some(target), name, command).await?;
    if crate::copy::journal::phase_if_journaled(lock.client(), name).await?.is_none() {
        preflight(source, target, options).await?;
    }
    failpoint::hit("start-after-check");
    if options.capture_ddl {
        crate::ddl::install(source, name).await?;
    }
    let roles = match options.roles {
        true => Some(made_roles(source, target).await?),
        false => None,
    };
    let (phase, phase_seen) = watch::channel(RunnerPhase::Building);
    let (stop, stopped) = watch::channel(false);
    let accepted = RefCell::new(None);
    let operator = options.follow.shutdown.clone();
    let work = async {
        let mut shutdown = operator.clone();
        let data = async {
            match &options.seed {
                Some(position) => attach(source, target, name, position).await.map(DataStep::Seeded),
                None => copy(source, target, &options.copy, events).await.map(DataStep::Copied),
            }
        };
        let data = tokio::select! {
            data = data => data?,
            () = requested(shutdown.as_mut()) => return Ok(StartReport { data: None, follow: None, handed_over_to: None, roles: None }),
        };
        failpoint::hit("start-after-data");
        phase.send_replace(RunnerPhase::Following);
        let follow_options = FollowOptions { shutdown: Some(stopped.clone()), ..options.follow.clone() };
        let mut lock = lock;
        let mut total: Option<FollowReport> = None;
        loop {
            let run = lock.hold(target, name, Box::pin(follow(source, target, &follow_options, events))).await?;
            total = Some(match total {
                None => run,
                Some(t) => FollowReport {
                    transactions: t.transactions + run.transactions,
                    changes: t.changes + run.changes,
                    ..run
                },
            });
            let Some(request) = accepted.borrow_mut().take() else { break };
            match crate::handover::release(lock, request, &accepted, operator.as_ref(), source, name).await? {
                Released::Ended(by) => {
                    return Ok(StartReport { data: Some(data), follow: total, handed_over_to: Some(by), roles: None })
                }
                Released::Stopped => {
                    return Ok(StartReport { data: Some(data), follow: total, handed_over_to: None, roles: None })
                }
                Released::Resumed(again) => lock = again,
            }
            // A rehearsal may have been followed by a cutover in between.
            crate::lifecycle::refuse_unless_allowed(source, Some(target), name, command).await?;
            if operator.as_ref().is_some_and(|s| *s.borrow()) {
                break;
            }
            // A request accepted meanwhile keeps its stop: change capture ends at once for it.
            if accepted.borrow().is_none() {
                stop.send_replace(false);
            }
        }
        drop(lock);
        Ok(StartReport { data: Some(data), follow: total, handed_over_to: None, roles: None })
    };
    let forward = async {
        if let Some(mut operator) = operator.clone() {
            let _ = operator.wait_for(|stop| *stop).await;
            stop.send_replace(true);
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        report = work => report.map(|report| StartReport { roles, ..report }),
        () = crate::handover::respond(target, name, &phase_seen, &stop, &accepted) => unreachable!("answers for ever"),
        () = forward => unreachable!("pending for ever"),
    }
}

async fn requested(shutdown: Option<&mut watch::Receiver<bool>>) {
    match shutdown {
        Some(s) => {
            let _ = s.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

fn command_of(options: &StartOptions) -> Command {
    if options.seed.is_some() {
        Command::StartSeeded
    } else {
        Command::Start
    }
}

/// Where a database of `start --all-databases` is on the target server.
pub enum TargetDatabase<'a> {
    /// It exists: its URL.
    Exists(&'a ConnSpec),
    /// The run is to create it ([`crate::instance::create_missing`]): the
    /// target server's URL (its database stands in for the server).
    ToCreate(&'a ConnSpec),
}

/// What refuses a start before it changes anything, as [`start`] checks it
/// (the lifecycle's guard; the preflight unless the migration is journaled;
/// for a database still to create, the source's findings and the target
/// server's, [`crate::check::check_before_creation`]), without taking the
/// runner lock: `start --all-databases` asks every database first, so that a
/// refusal anywhere creates no role and no database.
pub async fn refusals(source: &ConnSpec, target: TargetDatabase<'_>, options: &StartOptions) -> Result<()> {
    let name = &options.copy.migration;
    match target {
        TargetDatabase::Exists(target) => {
            crate::lifecycle::refuse_unless_allowed(source, Some(target), name, command_of(options)).await?;
            let dst = pgferry_pg::connect(target).await?;
            if crate::copy::journal::phase_if_journaled(&dst, name).await?.is_none() {
                preflight(source, target, options).await?;
            }
        }
        TargetDatabase::ToCreate(server) => {
            crate::lifecycle::refuse_unless_allowed(source, None, name, command_of(options)).await?;
            let findings = crate::check::check_before_creation(source, server, &check_plan(options)).await?;
            crate::check::refuse_problems(findings, keyless_settled(options))?;
        }
    }
    Ok(())
}

/// Creates the source's roles the target lacks, said in the log at once (the
/// report comes with the run's end).
pub async fn made_roles(source: &ConnSpec, target: &ConnSpec) -> Result<RolesReport> {
    let made = crate::roles::roles(source, target, false).await?;
    if !made.created.is_empty() {
        // Names only: a role's settings may hold what the log should not.
        let names: Vec<String> = made.created.iter().map(|r| format!("{:?}", r.name)).collect();
        tracing::info!(target: crate::events::LOGGED, "created the source's roles the target lacked: {}", names.join(", "));
    }
    Ok(made)
}

async fn preflight(source: &ConnSpec, target: &ConnSpec, options: &StartOptions) -> Result<()> {
    crate::check::refuse_unless_ready(source, target, &check_plan(options), keyless_settled(options)).await.map(|_| ())
}

fn check_plan(options: &StartOptions) -> CheckPlan {
    CheckPlan { full_copy: options.seed.is_none(), ..CheckPlan::default() }
}

fn keyless_settled(options: &StartOptions) -> bool {
    options.keyless_tables_are_insert_only || options.copy.replica_identity_full
}

/// The migration's runner lock: a session advisory lock on the target, held by
/// this connection for as long as the value lives.
pub struct RunnerLock(Client);

impl RunnerLock {
    /// Takes the lock, waiting up to [`LOCK_GRACE`] for a process that has just
    /// ended: the server releases its lock only once it notices the closed
    /// connection, so a rerun right after a refusal would otherwise be refused.
    pub async fn take(target: &ConnSpec, name: &MigrationName) -> Result<RunnerLock> {
        let client = match RunnerLock::take_or_client(target, name).await? {
            Ok(lock) => return Ok(lock),
            Err(client) => client,
        };
        let by = RunnerLock::holder(&client, name)
            .await
            .map(|h| format!(" (it holds the runner lock: {h})"))
            .unwrap_or_default();
        Err(Error::new(ErrorKind::Refused, format!("another pgferry process is running migration {name}{by}"))
            .with_hint("wait for it or stop it (Ctrl-C or SIGTERM stops pgferry start cleanly); pgferry status shows where it stands"))
    }

    /// The lock within [`LOCK_GRACE`], or the connection that could not take it.
    pub(crate) async fn take_or_client(target: &ConnSpec, name: &MigrationName) -> Result<Result<RunnerLock, Client>> {
        let client = pgferry_pg::connect(target).await?;
        let deadline = tokio::time::Instant::now() + LOCK_GRACE;
        loop {
            if RunnerLock::try_once(&client, name).await? {
                return Ok(Ok(RunnerLock(client)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Err(client));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One attempt on `client`'s session.
    pub(crate) async fn try_once(client: &Client, name: &MigrationName) -> Result<bool> {
        Ok(client
            .query_one("SELECT pg_try_advisory_lock(hashtext('pgferry'), hashtext($1))", &[&name.as_str()])
            .await
            .map_err(|e| Error::server("taking the migration's runner lock on the target", e))?
            .get(0))
    }

    /// The session that holds the lock, described for the operator.
    pub(crate) async fn holder(client: &Client, name: &MigrationName) -> Option<String> {
        client
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
            .map(|r| r.get(0))
    }

    /// A session that has just taken the lock.
    pub(crate) fn from_client(client: Client) -> RunnerLock {
        RunnerLock(client)
    }

    pub(crate) fn client(&self) -> &Client {
        &self.0
    }

    /// Lets the lock go and keeps the session.
    pub(crate) async fn release(self, name: &MigrationName) -> Result<Client> {
        self.0
            .query_one("SELECT pg_advisory_unlock(hashtext('pgferry'), hashtext($1))", &[&name.as_str()])
            .await
            .map_err(|e| Error::server("releasing the migration's runner lock on the target", e))?;
        Ok(self.0)
    }
}

impl RunnerLock {
    /// Runs `work` while the lock is held. The lock lives in one session: when
    /// that session ends (terminated on the target, its connection lost, the
    /// target restarted) the lock is gone, and another pgferry process could
    /// take the migration and apply beside this one. So the lock is taken again
    /// at once (waiting while the target cannot be reached); if another process
    /// holds it by then, `work` is stopped there, as a kill stops it (every step
    /// is rerunnable), and the error says why.
    pub async fn hold<T>(
        &mut self,
        target: &ConnSpec,
        name: &MigrationName,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            done = work => done,
            lost = self.keep(target, name) => Err(lost),
        }
    }

    /// Takes the lock again whenever its session ends; returns only when
    /// another process holds it.
    async fn keep(&mut self, target: &ConnSpec, name: &MigrationName) -> Error {
        loop {
            while !self.0.is_closed() {
                tokio::time::sleep(LOCK_WATCH).await;
            }
            loop {
                match RunnerLock::take(target, name).await {
                    Ok(lock) => {
                        *self = lock;
                        tracing::warn!("the runner lock's session on the target ended; lock taken again");
                        break;
                    }
                    Err(e) if e.kind == ErrorKind::Refused => {
                        return Error::new(
                            ErrorKind::Server,
                            format!(
                                "the session holding the migration's runner lock on the target ended \
                                 (terminated, or its connection lost), and {}: this one stopped rather than run beside it",
                                e.message
                            ),
                        )
                        .with_hint("stop the other process, or let it run; a rerun resumes from what the target recorded");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        }
    }
}

/// How often [`RunnerLock::hold`] looks at the lock's session.
const LOCK_WATCH: Duration = Duration::from_millis(200);

/// How long [`RunnerLock::take`] waits for a lock whose holder has just ended.
const LOCK_GRACE: Duration = Duration::from_secs(1);
