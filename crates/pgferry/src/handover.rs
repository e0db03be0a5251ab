//! The runner lock handed from a running `pgferry start` to a `cutover` or a
//! `rehearse`, through the target: the request is a row of `pgferry.handover`
//! (state upgrade 3), so the two processes may run on different machines. The
//! decisions are `pgferry_core::handover`'s; this module reads and writes the row
//! and the lock.
//!
//! The requester ([`take_over`]) writes its request with its own session's pid on
//! the target (the session that will hold the lock) and its deadline, then tries
//! the lock every [`POLL`]. `start` ([`respond`]) reads the request every [`POLL`]
//! while it runs: while change capture runs it accepts and stops change capture
//! after the source transaction at hand (committed and acknowledged, as for
//! SIGTERM); while it still copies it refuses; a request whose session is gone (a
//! requester killed with `kill -9`) is deleted. Once change capture has stopped,
//! [`release`] lets the lock go and watches who takes it: the cutover (start
//! ends), a rehearsal (start waits for it to end, then resumes), or nobody before
//! the requester died or gave up (start takes the lock again and resumes). The
//! requester withdraws its request whenever it gives up, so a refusal, a holder
//! that never answers (`follow`, `copy`, another cutover) or a timeout leaves
//! nothing changed.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use pgferry_core::handover::{
    after_release, answer, waiting, AfterRelease, Answer, Asker, Holder, Reply, RunnerPhase, Wait,
};
use pgferry_core::names::MigrationName;
use pgferry_core::state::Side;
use pgferry_pg::ConnSpec;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::start::RunnerLock;

/// How often each side looks at the request and the lock.
const POLL: Duration = Duration::from_millis(200);
/// How long the requester waits for `start` to answer at all.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long `start` waits for the slot to be released by its own stream's end.
const SLOT_RELEASE_WITHIN: Duration = Duration::from_secs(10);

/// A request `start` accepted.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    asker: Asker,
    /// The requester's session on the target: the one that takes the lock.
    backend: i32,
    /// "cutover (pid 123 on host-a)".
    who: String,
}

/// Who the requester took the lock from.
#[derive(Clone, Debug)]
pub struct TookOver {
    /// The session that held it, as [`RunnerLock`] names a holder.
    pub from: String,
}

/// Takes the migration's runner lock for `asker`: at once when it is free, else
/// by asking the running `pgferry start` to hand it over, waiting at most
/// `deadline` (or until `stop` turns true: SIGINT/SIGTERM). Every refusal
/// withdraws the request and changed nothing else.
pub async fn take_over(
    target: &ConnSpec,
    name: &MigrationName,
    asker: Asker,
    deadline: Duration,
    stop: Option<&watch::Receiver<bool>>,
) -> Result<(RunnerLock, Option<TookOver>)> {
    let client = match RunnerLock::take_or_client(target, name).await? {
        Ok(lock) => return Ok((lock, None)),
        Err(client) => client,
    };
    let holder = RunnerLock::holder(&client, name).await.unwrap_or_else(|| "unknown".to_string());
    // No DDL here: a start of this release made the table with its journal
    // before its copy; without it the holder cannot be one that hands over yet.
    crate::state::refuse_newer(&client, Side::Target).await?;
    let table: bool = client
        .query_one("SELECT to_regclass('pgferry.handover') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::server("looking for pgferry.handover on the target", e))?
        .get(0);
    if !table {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("another pgferry process holds migration {name} ({holder}) and cannot hand it over: a pgferry start that has not begun its copy yet, or a process that does not hand over (follow, copy, validate --repair, an older pgferry); nothing was changed"),
        )
        .with_hint("wait until pgferry status shows change capture running, or stop that process, then rerun"));
    }
    let request = client
        .query_opt(
            "INSERT INTO pgferry.handover AS h (migration, command, requester_pid, requester_host, requester_backend, wait_until)
             VALUES ($1, $2, $3, $4, pg_backend_pid(), now() + make_interval(secs => $5))
             ON CONFLICT (migration) DO UPDATE SET command = excluded.command, requester_pid = excluded.requester_pid,
                 requester_host = excluded.requester_host, requester_backend = excluded.requester_backend,
                 requested_at = now(), wait_until = excluded.wait_until, answer = NULL, answered_at = NULL
             WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = h.requester_backend)
             RETURNING true",
            &[&name.as_str(), &asker.as_str(), &(std::process::id() as i32), &this_host(), &deadline.as_secs_f64()],
        )
        .await
        .map_err(|e| Error::server("asking the running pgferry start to hand over (pgferry.handover)", e))?;
    if request.is_none() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("another cutover or rehearse of migration {name} is already waiting for pgferry start to hand over; nothing was changed"),
        )
        .with_hint("wait for it to finish, then run this one"));
    }
    tracing::warn!(
        "asking the running pgferry start of migration {name} ({holder}) to hand over to this {}",
        asker.as_str()
    );
    crate::failpoint::pause("handover-requested").await;
    let asked = Instant::now();
    loop {
        let holds = RunnerLock::try_once(&client, name).await?;
        let reply = if holds { Reply::Pending } else { reply(&client, name).await? };
        let next = waiting(&reply, holds, asked.elapsed(), ANSWER_WITHIN, deadline);
        if next == Wait::KeepWaiting && stop.is_some_and(|s| *s.borrow()) {
            withdraw(&client, name).await?;
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!("stopped by a signal while waiting for pgferry start to hand migration {name} over; the request was withdrawn, nothing was changed"),
            ));
        }
        if next == Wait::KeepWaiting {
            tokio::time::sleep(POLL).await;
            continue;
        }
        withdraw(&client, name).await?;
        let refused = |message: String, hint: &str| Err(Error::new(ErrorKind::Refused, message).with_hint(hint));
        return match next {
            Wait::Proceed => Ok((RunnerLock::from_client(client), Some(TookOver { from: holder }))),
            Wait::Refused(reason) => {
                refused(reason, "wait until pgferry status shows change capture running, then rerun")
            }
            Wait::NoAnswer => refused(
                format!(
                    "the process holding migration {name}'s runner lock ({holder}) did not answer the handover request within {} s: it is not a pgferry start that hands over (a follow, copy, validate --repair, another cutover or rehearse, or an older pgferry); the request was withdrawn, nothing was changed",
                    ANSWER_WITHIN.as_secs()
                ),
                "stop that process (Ctrl-C or SIGTERM), then rerun",
            ),
            Wait::TimedOut => refused(
                format!(
                    "pgferry start accepted the handover but did not release migration {name}'s runner lock within {} s (it finishes the source transaction at hand first); the request was withdrawn, nothing was changed, and start resumes change capture",
                    deadline.as_secs()
                ),
                "rerun with a longer --handover-timeout, or stop pgferry start (SIGTERM) and rerun",
            ),
            Wait::KeepWaiting => unreachable!("handled above"),
        };
    }
}

async fn reply(client: &Client, name: &MigrationName) -> Result<Reply> {
    let answer: Option<Option<String>> = client
        .query_opt(
            "SELECT answer FROM pgferry.handover WHERE migration = $1 AND requester_backend = pg_backend_pid()",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading pgferry start's answer (pgferry.handover)", e))?
        .map(|r| r.get(0));
    Ok(match answer.flatten().as_deref() {
        None => Reply::Pending,
        Some(ACCEPTED) => Reply::Accepted,
        Some(reason) => Reply::Refused(reason.to_string()),
    })
}

async fn withdraw(client: &Client, name: &MigrationName) -> Result<()> {
    client
        .execute(
            "DELETE FROM pgferry.handover WHERE migration = $1 AND requester_backend = pg_backend_pid()",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("withdrawing the handover request (pgferry.handover)", e))?;
    Ok(())
}

/// The answer that means "accepted"; any other is a refusal's reason.
const ACCEPTED: &str = "accepted";

/// `start`'s side: answers the requests for `name` for as long as it is polled,
/// reading `phase`; on accepting one it records it in `accepted` and sets `stop`,
/// which ends change capture after the transaction at hand. Never returns; a
/// target it cannot read is tried again (change capture has its own deadlines).
pub(crate) async fn respond(
    target: &ConnSpec,
    name: &MigrationName,
    phase: &watch::Receiver<RunnerPhase>,
    stop: &watch::Sender<bool>,
    accepted: &RefCell<Option<Request>>,
) {
    let mut client: Option<Client> = None;
    loop {
        tokio::time::sleep(POLL).await;
        if accepted.borrow().is_some() {
            continue;
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = pgferry_pg::connect(target).await.ok();
        }
        let Some(c) = client.as_ref() else { continue };
        // Copied out first: a borrow held across the await would block the
        // phase's sender (a watch's lock) on this one thread for good.
        let now = *phase.borrow();
        match answer_once(c, name, now).await {
            Ok(Some(request)) => {
                crate::failpoint::pause("handover-accepted").await;
                tracing::warn!(
                    "handing migration {name} over to the {}: change capture stops after the source transaction at hand",
                    request.who
                );
                *accepted.borrow_mut() = Some(request);
                stop.send_replace(true);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(cause = %e.message, "reading handover requests"),
        }
    }
}

/// Reads the pending request, if any, and answers it; `Some` when accepted.
async fn answer_once(client: &Client, name: &MigrationName, phase: RunnerPhase) -> Result<Option<Request>> {
    let fail = |e| Error::server("reading handover requests (pgferry.handover)", e);
    let exists: bool =
        client.query_one("SELECT to_regclass('pgferry.handover') IS NOT NULL", &[]).await.map_err(fail)?.get(0);
    if !exists {
        return Ok(None);
    }
    let Some(row) = client
        .query_opt(
            "SELECT command, requester_pid, requester_host, requester_backend,
                    EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = h.requester_backend)
             FROM pgferry.handover h WHERE migration = $1 AND answer IS NULL",
            &[&name.as_str()],
        )
        .await
        .map_err(fail)?
    else {
        return Ok(None);
    };
    let command: String = row.get(0);
    let Some(asker) = Asker::parse(&command) else { return Ok(None) };
    let backend: i32 = row.get(3);
    let request = Request {
        asker,
        backend,
        who: format!("{command} (pid {} on {})", row.get::<_, i32>(1), row.get::<_, String>(2)),
    };
    let write = |text: String| async move {
        client
            .execute(
                "UPDATE pgferry.handover SET answer = $3, answered_at = now()
                 WHERE migration = $1 AND requester_backend = $2 AND answer IS NULL",
                &[&name.as_str(), &backend, &text],
            )
            .await
            .map_err(|e| Error::server("answering a handover request (pgferry.handover)", e))
    };
    match answer(phase, row.get(4), asker) {
        Answer::HandOver => Ok((write(ACCEPTED.to_string()).await? == 1).then_some(request)),
        Answer::Refuse(reason) => {
            tracing::warn!(
                "refused to hand migration {name} over to the {}: change capture is not running yet",
                request.who
            );
            write(reason).await.map(|_| None)
        }
        Answer::Withdraw => {
            client
                .execute(
                    "DELETE FROM pgferry.handover WHERE migration = $1 AND requester_backend = $2",
                    &[&name.as_str(), &backend],
                )
                .await
                .map_err(|e| Error::server("removing a dead requester's handover request", e))?;
            Ok(None)
        }
    }
}

/// How a handover ended for `start`.
pub(crate) enum Released {
    /// The cutover holds the lock: `start` ends; who took over.
    Ended(String),
    /// `start` holds the lock again (the rehearsal ended, or the requester died
    /// or gave up): change capture resumes.
    Resumed(RunnerLock),
    /// The operator stopped `start` (SIGTERM, Ctrl-C) while another process held the lock.
    Stopped,
}

/// After change capture stopped for `request`: waits until the migration's slot
/// is free (the cutover's go/no-go refuses a slot in use), releases the lock and
/// follows the handover to its end ([`after_release`]). A request accepted
/// meanwhile (`accepted`: a cutover asking while a rehearsal holds the lock) is
/// followed instead once its requester holds the lock.
pub(crate) async fn release(
    lock: RunnerLock,
    request: Request,
    accepted: &RefCell<Option<Request>>,
    operator: Option<&watch::Receiver<bool>>,
    source: &ConnSpec,
    name: &MigrationName,
) -> Result<Released> {
    wait_for_slot_release(source, lock.client(), name).await?;
    let client = lock.release(name).await?;
    let mut request = request;
    let mut said_waiting = false;
    loop {
        let (holder, alive, before_deadline) = observe(&client, name, &request).await?;
        if let Some(pid) = holder.filter(|pid| *pid != request.backend) {
            if accepted.borrow().as_ref().is_some_and(|newer| newer.backend == pid) {
                request = accepted.borrow_mut().take().expect("just seen");
                said_waiting = false;
                continue;
            }
        }
        let holder = match holder {
            None => Holder::Nobody,
            Some(pid) if pid == request.backend => Holder::Requester,
            Some(_) => Holder::Other,
        };
        match after_release(request.asker, holder, alive, before_deadline) {
            AfterRelease::End => return Ok(Released::Ended(request.who)),
            AfterRelease::Wait if operator.is_some_and(|stop| *stop.borrow()) => return Ok(Released::Stopped),
            AfterRelease::Wait => {
                if holder != Holder::Nobody && !said_waiting {
                    said_waiting = true;
                    tracing::warn!(
                        "the {} holds migration {name}'s runner lock: change capture resumes once it ends",
                        request.who
                    );
                }
            }
            AfterRelease::Resume => {
                if RunnerLock::try_once(&client, name).await? {
                    client
                        .execute(
                            "DELETE FROM pgferry.handover WHERE migration = $1 AND requester_backend = $2",
                            &[&name.as_str(), &request.backend],
                        )
                        .await
                        .map_err(|e| Error::server("removing a finished handover request", e))?;
                    tracing::warn!(
                        "the {} no longer holds migration {name}'s runner lock: change capture resumes",
                        request.who
                    );
                    return Ok(Released::Resumed(RunnerLock::from_client(client)));
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The session holding the lock, whether the requester's session is alive, and whether its deadline is ahead.
async fn observe(client: &Client, name: &MigrationName, request: &Request) -> Result<(Option<i32>, bool, bool)> {
    let row = client
        .query_one(
            "SELECT (SELECT l.pid FROM pg_locks l
                     WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.classid::int = hashtext('pgferry') AND l.objid::int = hashtext($1) LIMIT 1),
                    EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = $2),
                    coalesce((SELECT now() < wait_until FROM pgferry.handover WHERE migration = $1 AND requester_backend = $2), false)",
            &[&name.as_str(), &request.backend],
        )
        .await
        .map_err(|e| Error::server("watching the handover of the runner lock", e))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Change capture's stream has ended; the server frees the slot once its
/// walsender has exited, a moment later.
async fn wait_for_slot_release(source: &ConnSpec, dst: &Client, name: &MigrationName) -> Result<()> {
    let src = pgferry_pg::connect(source).await?;
    let slot = crate::slot::resolve(&src, dst, name).await?;
    let since = Instant::now();
    loop {
        let active: bool = src
            .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
            .await
            .map_err(|e| Error::server("reading the source's replication slots", e))?
            .is_some_and(|r| r.get(0));
        if !active || since.elapsed() > SLOT_RELEASE_WITHIN {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}
