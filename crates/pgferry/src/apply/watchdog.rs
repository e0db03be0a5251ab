//! The I/O behind [`super::liveness`]: reading the source's
//! `wal_sender_timeout`, and watching the target's apply session from a second
//! connection while a session runs.
//!
//! The apply session's own requests cannot carry a deadline that fits them all
//! (a batch's statement may run for seconds), and a half-open connection
//! answers nothing, so the target is judged from outside: a probe over its own
//! connection asks for the apply session's row in `pg_stat_activity`. No answer
//! within the limit is a target cut off from pgferry; no row is an apply
//! session the target ended (its idle-in-transaction timeout, a terminate).
//!
//! A session given up for dead may still live on the target, with its last
//! statements and even its COMMIT held in the network: when the network
//! heals they run. So the next session ends the previous apply session
//! ([`retire`]) and waits until it is gone before it reads where to start:
//! what it held is then either committed (and read as applied) or rolled back,
//! never committed behind the next session's back.

use std::future::Future;
use std::time::Duration;

use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use super::liveness::Liveness;
use super::Stop;
use crate::error::{Error, ErrorKind};

/// The source's `wal_sender_timeout`, over a regular connection, within the
/// connect timeout.
pub(crate) async fn read_liveness(source: &ConnSpec, first: bool) -> Result<Liveness, Stop> {
    let client = pgferry_pg::connect(source).await.map_err(|e| connect_stop(e, first))?;
    let shown = within(connect_limit(source), "the source", "reading wal_sender_timeout", async {
        client
            .query_one("SELECT current_setting('wal_sender_timeout')", &[])
            .await
            .map(|r| r.get::<_, String>(0))
            .map_err(|e| Stop::target("reading the source's wal_sender_timeout", e))
    })
    .await??;
    Liveness::from_shown(&shown).ok_or_else(|| {
        Stop::Fatal(Error::new(
            ErrorKind::Server,
            format!("the source shows an unreadable wal_sender_timeout: {shown}"),
        ))
    })
}

/// A connection failure: final on the first session (the operator's input is
/// wrong), retried later (the network).
pub(crate) fn connect_stop(e: pgferry_pg::ConnectError, first: bool) -> Stop {
    if first {
        Stop::Fatal(e.into())
    } else {
        Stop::Transient(e.into())
    }
}

/// The deadline for a setup step: the spec's connect timeout, 10 s when off.
pub(crate) fn connect_limit(spec: &ConnSpec) -> Duration {
    spec.connect_timeout.unwrap_or(Duration::from_secs(10))
}

/// Runs `step` on `side` within `limit`; past it, the connection is dead.
pub(crate) async fn within<T>(
    limit: Duration,
    side: &str,
    doing: &str,
    step: impl Future<Output = T>,
) -> Result<T, Stop> {
    tokio::time::timeout(limit, step).await.map_err(|_| {
        Stop::Transient(Error::new(
            ErrorKind::Connection,
            format!(
                "{side} did not answer within {} s while {doing}: the connection is dead (a network partition or a half-open connection)",
                limit.as_secs_f64()
            ),
        ))
    })
}

/// An apply session on the target, by its backend.
#[derive(Clone, Debug)]
pub(crate) struct ApplySession {
    pub(crate) pid: i32,
    /// `backend_start` as text: with the pid, names the backend even when
    /// the pid is reused.
    started: String,
}

/// The apply session `dst` is.
pub(crate) async fn identify(dst: &Client, limit: Duration) -> Result<ApplySession, Stop> {
    let row = within(limit, "the target", "opening the apply session", async {
        dst.query_one("SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()", &[]).await
    })
    .await?
    .map_err(|e| Stop::target("opening the apply session on the target", e))?;
    Ok(ApplySession { pid: row.get(0), started: row.get(1) })
}

/// Ends a previous apply session (over `dst`, the new one) and waits, at most
/// `limit`, until the target has no trace of it.
pub(crate) async fn retire(dst: &Client, previous: &ApplySession, limit: Duration) -> Result<(), Stop> {
    const GONE: &str = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2";
    let ending = async {
        dst.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2",
            &[&previous.pid, &previous.started],
        )
        .await?;
        while !dst.query_one(GONE, &[&previous.pid, &previous.started]).await?.get::<_, bool>(0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    };
    within(limit, "the target", "ending the previous apply session", ending)
        .await?
        .map_err(|e| Stop::target("ending the previous apply session on the target", e))
}

/// Probes the apply sessions (backends `apply_pids`, one per lane) until the
/// target is found dead; never returns while it is alive.
pub(crate) async fn watch_target(probe: &Client, apply_pids: &[i32], liveness: Liveness) -> Stop {
    let limit = liveness.probe_answer_within();
    loop {
        tokio::time::sleep(liveness.probe_every()).await;
        for apply_pid in apply_pids {
            let asked = within(limit, "the target", "probing the apply session", async {
                probe.query_opt("SELECT state FROM pg_stat_activity WHERE pid = $1", &[apply_pid]).await
            })
            .await;
            match asked {
                Err(dead) => return dead,
                Ok(Err(e)) => return Stop::target("probing the apply session on the target", e),
                Ok(Ok(None)) => {
                    return Stop::Transient(Error::new(
                        ErrorKind::Connection,
                        format!("the target ended the apply session (backend {apply_pid})"),
                    ))
                }
                Ok(Ok(Some(_))) => {}
            }
        }
    }
}
