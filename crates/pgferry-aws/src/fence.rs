//! The network fence: the source's security groups swapped for a restrictive one.
//!
//! `pgferry cutover` fences writes inside PostgreSQL; this fence, optional, also
//! closes the network to the applications, as the manual runbook did. The
//! operator names the restrictive group: one whose only ingress rules are the
//! ranges pgferry and the administrators connect from (pgferry leaves EC2 alone:
//! its SDK alone would double pgferry's build time). The source's groups before
//! the fence are journaled before the swap, and lifting puts back exactly that
//! list. A security group change applies to new connections; the cutover's
//! database fence ends the existing ones.

use pgferry::{Error, ErrorKind, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::control::ControlPlane;
use crate::journal::{Event, Journal};
use crate::model::{Instance, Modification};
use crate::retry::{call, Pacing};
use crate::wait;

#[derive(Clone, Debug)]
pub struct FencePlan {
    pub source: String,
    /// The restrictive security group (`sg-...`) to put in place of the source's.
    pub group: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FenceReport {
    pub source: String,
    pub fence_group: String,
    /// The groups before the fence, which lifting restores.
    pub previous: Vec<String>,
    /// The groups the source has now.
    pub now: Vec<String>,
}

/// The recorded fence in force: the detail of the last fence intent not followed by a lift.
fn in_force(journal: &Journal) -> Option<&Value> {
    journal.entries().iter().rev().find_map(|e| match (e.step.as_str(), e.event) {
        ("lift", Event::Outcome) => Some(None),
        ("fence", Event::Intent) => Some(Some(&e.detail)),
        _ => None,
    })?
}

fn groups(detail: &Value, key: &str) -> Vec<String> {
    detail[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

async fn instance<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<Instance> {
    call(pacing, || cloud.describe_instance(id))
        .await?
        .ok_or_else(|| Error::new(ErrorKind::Precondition, format!("there is no RDS instance {id}")))
}

/// Swaps the source's security groups for the fence group (resumable).
pub async fn fence<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &FencePlan,
) -> Result<FenceReport> {
    let source = instance(cloud, pacing, &plan.source).await?;
    let (group, previous) = match in_force(journal) {
        Some(detail) => (detail["group"].as_str().unwrap_or_default().to_owned(), groups(detail, "previous")),
        None => {
            let previous = source.security_group_ids();
            if previous == [plan.group.clone()] {
                return Err(Error::new(
                    ErrorKind::Precondition,
                    format!("{} already has only {}", plan.source, plan.group),
                )
                .with_hint(
                    "pgferry has no record of its groups before that; set them back with aws rds modify-db-instance",
                ));
            }
            let detail = json!({"group": plan.group, "previous": previous});
            journal.record("fence", Event::Intent, &plan.source, detail)?;
            (plan.group.clone(), previous)
        }
    };
    let now = swap(cloud, pacing, journal, "fence", &source, std::slice::from_ref(&group)).await?;
    Ok(FenceReport { source: plan.source.clone(), fence_group: group, previous, now })
}

/// Puts back exactly the groups the source had before the fence.
pub async fn lift<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    source: &str,
) -> Result<FenceReport> {
    let Some(detail) = in_force(journal).cloned() else {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("no fence of {source} is recorded in this state directory"),
        )
        .with_hint("pass the --state-dir and --name used by pgferry aws fence"));
    };
    let previous = groups(&detail, "previous");
    let instance = instance(cloud, pacing, source).await?;
    journal.record("lift", Event::Intent, source, json!({"restore": previous}))?;
    let now = swap(cloud, pacing, journal, "lift", &instance, &previous).await?;
    Ok(FenceReport {
        source: source.to_owned(),
        fence_group: detail["group"].as_str().unwrap_or_default().to_owned(),
        previous,
        now,
    })
}

/// Sets the instance's groups to `groups` (in order) unless they are already, and waits.
async fn swap<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    step: &str,
    instance: &Instance,
    groups: &[String],
) -> Result<Vec<String>> {
    let id = &instance.identifier;
    if instance.security_group_ids() != groups {
        let change = Modification { security_groups: Some(groups.to_vec()), ..Modification::default() };
        call(pacing, || cloud.modify_instance(id, &change)).await?;
        journal.record(step, Event::Call, id, Value::Null)?;
    }
    let now = wait::instance_ready(cloud, pacing, id).await?.security_group_ids();
    journal.record(step, Event::Outcome, id, json!({"groups": now}))?;
    pgferry::failpoint::hit(&format!("aws-after-{step}"));
    Ok(now)
}
