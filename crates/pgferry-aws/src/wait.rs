//! Waiting for RDS and Route53 to finish what a call started.
//!
//! RDS answers a create or modify at once and does the work afterwards: an
//! instance passes through `creating`, `backing-up`, `modifying`..., a snapshot
//! through `creating` or `copying`. pgferry polls the `Describe*` call at the
//! pace's interval (not the SDK waiters, whose 30-second minimum delay would make
//! tests slow), logs each new state, and gives up after the pace's timeout with
//! the last state seen. A state RDS cannot leave by itself (`failed`,
//! `incompatible-parameters`, ...) stops the wait at once.

use std::future::Future;
use std::time::Instant as Clock;

use pgferry::{Error, ErrorKind, Result};

use crate::control::ControlPlane;
use crate::model::{Instance, Snapshot};
use crate::retry::{call, Pacing};

/// What one look found.
pub enum Look<T> {
    Ready(T),
    /// Not yet; the state to report.
    Waiting(String),
}

/// Instance states that need the operator; see
/// <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html#Overview.DBInstance.Status>.
const STUCK: &[&str] = &[
    "failed",
    "incompatible-credentials",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "restore-error",
    "storage-full",
    "error",
];

/// Polls `look` until it is ready, a failure, or the timeout.
pub async fn until<T, F, Fut>(pacing: &Pacing, what: &str, mut look: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look<T>>>,
{
    let started = Clock::now();
    let mut last = String::new();
    loop {
        match look().await? {
            Look::Ready(value) => return Ok(value),
            Look::Waiting(state) => {
                if STUCK.contains(&state.as_str()) {
                    return Err(Error::new(ErrorKind::Server, format!("{what} is {state}"))
                        .with_hint("see the instance's events in the RDS console; fix the cause, then rerun"));
                }
                if state != last {
                    tracing::info!(%what, %state, elapsed = ?started.elapsed(), "waiting");
                    last = state;
                }
            }
        }
        if started.elapsed() >= pacing.timeout {
            return Err(Error::new(
                ErrorKind::Server,
                format!("gave up waiting for {what} after {:?}; it was last {last}", pacing.timeout),
            )
            .with_hint("rerun when it is ready: the run resumes where it stopped"));
        }
        tokio::time::sleep(pacing.poll).await;
    }
}

/// Waits for an instance to be `available` with no modification pending and
/// every security group change applied.
pub async fn instance_ready<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<Instance> {
    until(pacing, &format!("instance {id}"), || async {
        let found = call(pacing, || cloud.describe_instance(id)).await?;
        Ok(match found {
            None => Look::Waiting("not found".into()),
            Some(i) if i.status == "available" && !i.pending_modifications && i.security_groups_settled() => {
                Look::Ready(i)
            }
            Some(i) if i.status == "available" => Look::Waiting("applying changes".into()),
            Some(i) => Look::Waiting(i.status),
        })
    })
    .await
}

pub async fn snapshot_ready<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<Snapshot> {
    until(pacing, &format!("snapshot {id}"), || async {
        let found = call(pacing, || cloud.describe_snapshot(id)).await?;
        Ok(match found {
            None => Look::Waiting("not found".into()),
            Some(s) if s.status == "available" => Look::Ready(s),
            Some(s) => Look::Waiting(match s.percent_progress {
                Some(p) => format!("{} {p}%", s.status),
                None => s.status,
            }),
        })
    })
    .await
}

pub async fn instance_gone<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<()> {
    until(pacing, &format!("deletion of instance {id}"), || async {
        let found = call(pacing, || cloud.describe_instance(id)).await?;
        Ok(match found {
            None => Look::Ready(()),
            Some(i) => Look::Waiting(i.status),
        })
    })
    .await
}

/// Waits for a Route53 change to reach every authoritative server (`INSYNC`).
pub async fn change_insync<C: ControlPlane>(cloud: &C, pacing: &Pacing, change: &str) -> Result<()> {
    until(pacing, &format!("Route53 change {change}"), || async {
        let status = call(pacing, || cloud.change_status(change)).await?;
        Ok(if status == "INSYNC" { Look::Ready(()) } else { Look::Waiting(status) })
    })
    .await
}
