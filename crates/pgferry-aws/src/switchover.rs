//! `pgferry aws switchover`: the Blue/Green deployment's switchover, with the
//! write downtime measured from the database side, and `pgferry aws finish
//! --blue-green`'s cleanup of the deployment.
//!
//! AWS bounds the switchover with a timeout (after which it rolls back and blue
//! keeps serving) and says it "typically takes under a minute"; pgferry
//! measures what the applications see: a probe ([`WriteProbe`]) commits a
//! write through the applications' endpoint over and over while the switchover
//! runs, and the write downtime is the longest time between two commits
//! ([`write_downtime`]). A switchover that failed its guardrails, or ran out
//! of time and was rolled back, stops the command with AWS's details.
//!
//! Both act only on the deployment `pgferry aws encrypt --method blue-green`
//! created (tagged for the migration) and verified to its end in the same state
//! directory: its identifier is journaled, with the `green-checks` outcome. So
//! a green that was never verified encrypted is never switched in, and a
//! deployment of the same name made by someone else, or made again since, is
//! neither switched over nor deleted. A probe that cannot write before the
//! switchover would measure nothing: the switchover is not asked for then.
//!
//! The call is journaled (intent, call, outcome): a rerun after a kill waits for
//! a switchover in progress, records one that completed, and calls again only
//! when the deployment is `AVAILABLE` (never started, or rolled back). The
//! cleanup, killed after its delete call, finds the deployment gone (or
//! `DELETING`) and completes.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::names::MigrationName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::blue_green::find_ours;
use crate::control::ControlPlane;
use crate::journal::{Event, Journal};
use crate::model::BlueGreen;
use crate::names::AwsNames;
use crate::retry::{call, Pacing};
use crate::step::done;
use crate::wait::{self, Look};

/// One write through the applications' endpoint.
// One thread runs pgferry; the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait WriteProbe {
    /// Commits one write; an error when it could not (refused, read-only, timed out).
    async fn write(&self) -> Result<()>;
}

#[derive(Clone, Debug)]
pub struct SwitchoverPlan {
    pub migration: MigrationName,
    /// `SwitchoverTimeout`: AWS rolls back a switchover that takes longer.
    pub timeout_seconds: i32,
    /// Between two probe writes.
    pub probe_interval: Duration,
}

/// One probe write: when it ended (seconds from the first write's start) and whether it committed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub committed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SwitchoverReport {
    pub deployment: String,
    pub name: String,
    pub status: String,
    pub timeout_seconds: i32,
    /// The longest time between two committed probe writes; `None` when the
    /// switchover was not watched (it completed while pgferry was not running).
    pub write_downtime_seconds: Option<f64>,
    pub writes_committed: usize,
    pub writes_failed: usize,
}

/// The longest time between two committed writes, `None` with fewer than two.
pub fn write_downtime(samples: &[Sample]) -> Option<f64> {
    let commits: Vec<f64> = samples.iter().filter(|s| s.committed).map(|s| s.at).collect();
    commits
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(None, |longest: Option<f64>, gap| Some(longest.map_or(gap, |l| l.max(gap))))
}

fn missing(name: &str) -> Error {
    Error::new(ErrorKind::Precondition, format!("there is no Blue/Green deployment {name}"))
        .with_hint("create it first: pgferry aws encrypt --method blue-green (same --name and --state-dir)")
}

async fn find<C: ControlPlane>(cloud: &C, pacing: &Pacing, name: &str, migration: &str) -> Result<BlueGreen> {
    find_ours(cloud, pacing, name, migration).await?.ok_or_else(|| missing(name))
}

/// The identifier of the deployment `pgferry aws encrypt --method blue-green`
/// created and verified to the end (every green instance encrypted with the
/// key, pgferry's checks run on green), as this state directory records it.
fn verified(journal: &Journal, migration: &str) -> Result<String> {
    let identifier = journal.outcome("blue-green").and_then(|o| o["identifier"].as_str()).map(str::to_owned);
    match identifier {
        Some(identifier) if journal.outcome("green-checks").is_some() => Ok(identifier),
        _ => Err(Error::new(
            ErrorKind::Precondition,
            "this state directory has no Blue/Green deployment that pgferry aws encrypt --method blue-green created \
             and verified (every green instance encrypted with the key, pgferry's checks run on green)",
        )
        .with_hint(format!(
            "run pgferry aws encrypt --method blue-green --name {migration} to its end with this --state-dir first; \
             pgferry switches over and deletes only a deployment it verified"
        ))),
    }
}

/// The deployment found is the one the journal recorded, not another made since under the same name.
fn same(deployment: &BlueGreen, identifier: &str) -> Result<()> {
    if deployment.identifier == identifier {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Precondition,
        format!(
            "the Blue/Green deployment {} is now {}, not {identifier}, which pgferry created and verified",
            deployment.name, deployment.identifier
        ),
    )
    .with_hint("the deployment was deleted and made again outside this migration: start over with a new --name"))
}

/// Runs (or resumes) the switchover, measuring the write downtime.
pub async fn switchover<C: ControlPlane, P: WriteProbe>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &SwitchoverPlan,
    probe: &P,
) -> Result<SwitchoverReport> {
    let name = AwsNames::new(&plan.migration)?.blue_green();
    let migration = plan.migration.as_str();
    if let Some(report) = journal.outcome("switchover").and_then(|o| serde_json::from_value(o.clone()).ok()) {
        return Ok(report);
    }
    let identifier = verified(journal, migration)?;
    let deployment = find(cloud, pacing, &name, migration).await?;
    same(&deployment, &identifier)?;
    let report = |d: &BlueGreen, samples: Option<&[Sample]>| SwitchoverReport {
        deployment: d.identifier.clone(),
        name: name.clone(),
        status: d.status.clone(),
        timeout_seconds: plan.timeout_seconds,
        write_downtime_seconds: samples.and_then(write_downtime),
        writes_committed: samples.map_or(0, |s| s.iter().filter(|s| s.committed).count()),
        writes_failed: samples.map_or(0, |s| s.iter().filter(|s| !s.committed).count()),
    };
    let finished = match deployment.status.as_str() {
        // Asked by a run that was killed, or from the console: not watched, so not measured.
        "SWITCHOVER_COMPLETED" => report(&deployment, None),
        "SWITCHOVER_IN_PROGRESS" => {
            let d = completed(cloud, pacing, &name, plan).await?;
            report(&d, None)
        }
        "AVAILABLE" => {
            if let Err(err) = probe.write().await {
                return Err(Error::new(
                    ErrorKind::Connection,
                    format!("the write probe cannot commit through --source before the switchover: {}", err.message),
                )
                .with_hint(
                    "give --source the applications' endpoint as a role that can write (the probe commits \
                     SELECT txid_current()); nothing was switched",
                ));
            }
            journal.record(
                "switchover",
                Event::Intent,
                &name,
                json!({"identifier": deployment.identifier, "timeout_seconds": plan.timeout_seconds}),
            )?;
            let samples = RefCell::new(Vec::new());
            let over = Cell::new(false);
            let switched = async {
                let result = async {
                    call(pacing, || cloud.switchover_blue_green(&deployment.identifier, plan.timeout_seconds)).await?;
                    completed(cloud, pacing, &name, plan).await
                }
                .await;
                over.set(true);
                result
            };
            let (switched, ()) = tokio::join!(switched, watch(probe, plan, &samples, &over));
            let d = switched?;
            journal.record("switchover", Event::Call, &name, Value::Null)?;
            let samples = samples.into_inner();
            report(&d, Some(&samples))
        }
        other => {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!("the Blue/Green deployment {name} is {other}, not AVAILABLE"),
            )
            .with_hint(
                "a switchover needs an AVAILABLE deployment: wait for it, or see its events in the RDS console",
            ))
        }
    };
    done(journal, "switchover", &name, serde_json::to_value(&finished).expect("a report serializes"))?;
    Ok(finished)
}

/// Probe writes until the switchover is over and one more write has committed.
async fn watch<P: WriteProbe>(probe: &P, plan: &SwitchoverPlan, samples: &RefCell<Vec<Sample>>, over: &Cell<bool>) {
    let started = Instant::now();
    // After the switchover, give the endpoint as long again as AWS's timeout to take writes.
    let mut after: Option<Instant> = None;
    loop {
        let committed = match probe.write().await {
            Ok(()) => true,
            Err(err) => {
                tracing::info!(%err, "probe write failed");
                false
            }
        };
        samples.borrow_mut().push(Sample { at: started.elapsed().as_secs_f64(), committed });
        if over.get() {
            let since = *after.get_or_insert_with(Instant::now);
            let limit = Duration::from_secs(u64::try_from(plan.timeout_seconds).unwrap_or(0));
            if committed || since.elapsed() >= limit {
                return;
            }
        }
        tokio::time::sleep(plan.probe_interval).await;
    }
}

/// Waits until the switchover completed; a failure or a rollback is an error.
async fn completed<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    name: &str,
    plan: &SwitchoverPlan,
) -> Result<BlueGreen> {
    let mut pace = pacing.clone();
    pace.timeout = pace.timeout.min(Duration::from_secs(u64::try_from(plan.timeout_seconds).unwrap_or(0) * 2 + 60));
    wait::until(&pace, &format!("the switchover of {name}"), || async {
        let d = find(cloud, pacing, name, plan.migration.as_str()).await?;
        let details = d.status_details.clone().unwrap_or_default();
        match d.status.as_str() {
            "SWITCHOVER_COMPLETED" => Ok(Look::Ready(d)),
            "SWITCHOVER_IN_PROGRESS" => Ok(Look::Waiting(d.status)),
            "AVAILABLE" => Err(Error::new(
                ErrorKind::Server,
                format!("the switchover of {name} did not complete within {} s and was rolled back: blue still serves ({details})", plan.timeout_seconds),
            )
            .with_hint("see the deployment's events; fix what held it up (long transactions, replica lag) or raise --timeout, then rerun")),
            other => Err(Error::new(
                ErrorKind::Server,
                format!("the switchover of {name} is {other}: {details}"),
            )
            .with_hint("the switchover's guardrails stopped it; see the deployment's events in the RDS console, fix the cause, then rerun")),
        }
    })
    .await
}

#[derive(Clone, Debug, Serialize)]
pub struct CleanupReport {
    pub deployment: String,
    pub name: String,
    /// What stays, for the operator: the old blue instances AWS renamed.
    pub left: Vec<String>,
}

/// Deletes the deployment once it has switched over; the instances stay.
pub async fn clean_up<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    migration: &MigrationName,
) -> Result<CleanupReport> {
    const STEP: &str = "delete-blue-green";
    let name = AwsNames::new(migration)?.blue_green();
    let left_of = |detail: &Value| -> Vec<String> {
        detail["left"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };
    if let Some(finished) = journal.outcome(STEP) {
        return Ok(CleanupReport {
            deployment: finished["identifier"].as_str().unwrap_or_default().to_owned(),
            name,
            left: left_of(finished),
        });
    }
    let identifier = verified(journal, migration.as_str())?;
    let found = find_ours(cloud, pacing, &name, migration.as_str()).await?;
    // A run killed after its delete call: the deployment is gone, or on its way.
    if let Some(intent) = journal.last(STEP, Event::Intent).map(|e| e.detail.clone()) {
        if found.as_ref().is_none_or(|d| d.status == "DELETING") {
            journal.record(STEP, Event::Call, &name, json!({"found": "gone"}))?;
            done(journal, STEP, &name, intent.clone())?;
            return Ok(CleanupReport { deployment: identifier, name, left: left_of(&intent) });
        }
    }
    let deployment = found.ok_or_else(|| missing(&name))?;
    same(&deployment, &identifier)?;
    if deployment.status != "SWITCHOVER_COMPLETED" {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("the Blue/Green deployment {name} is {}: it has not switched over", deployment.status),
        )
        .with_hint(format!(
            "run pgferry aws switchover first; nothing was deleted. To give up instead, delete the deployment and \
             its green instances yourself (aws rds delete-blue-green-deployment --blue-green-deployment-identifier \
             {} --delete-target): green's data goes with them, blue stays as it is",
            deployment.identifier
        )));
    }
    let left: Vec<String> = deployment.members.iter().map(|m| m.source.clone()).collect();
    let detail = json!({"identifier": deployment.identifier, "left": left});
    journal.record(STEP, Event::Intent, &name, detail.clone())?;
    call(pacing, || cloud.delete_blue_green(&deployment.identifier)).await?;
    journal.record(STEP, Event::Call, &name, Value::Null)?;
    done(journal, STEP, &name, detail)?;
    Ok(CleanupReport { deployment: deployment.identifier, name, left })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: f64, committed: bool) -> Sample {
        Sample { at, committed }
    }

    #[test]
    fn the_downtime_is_the_longest_time_between_two_commits() {
        let samples = [s(0.0, true), s(0.1, true), s(0.2, false), s(1.0, false), s(1.7, true), s(1.8, true)];
        let downtime = write_downtime(&samples).unwrap();
        assert!((downtime - 1.6).abs() < 1e-9, "{downtime}");
        assert_eq!(write_downtime(&[s(0.0, true), s(1.0, false)]), None);
        assert_eq!(write_downtime(&[]), None);
    }
}
