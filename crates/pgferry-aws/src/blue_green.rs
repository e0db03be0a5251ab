//! `pgferry aws encrypt --method blue-green`: an RDS Blue/Green deployment
//! whose green instances are encrypted, stopped before its switchover.
//!
//! 1. the plan is pinned (source and key; a migration keeps its method), the
//!    instance is checked against Blue/Green's limits ([`crate::choice`]) and
//!    the key resolved;
//! 2. `CreateBlueGreenDeployment` with one `TargetResourceConfiguration` per
//!    blue instance, the primary and each read replica, all with the key. The
//!    deployment's name is derived from the migration's
//!    ([`AwsNames::blue_green`]), so that a rerun after a kill finds it and
//!    adopts it instead of asking for a second one ([`crate::step::ensure`]).
//!    It is tagged `pgferry:migration` in the call that creates it: a deployment
//!    of that name without the tag is someone else's, and is neither adopted,
//!    switched over nor deleted ([`find_ours`]);
//! 3. wait until it is `AVAILABLE` (a failed provisioning stops the run with
//!    AWS's details);
//! 4. every green instance AWS lists must be encrypted with the key;
//! 5. pgferry's database checks run against green ([`GreenSide`]);
//! 6. stop: the switchover is `pgferry aws switchover`'s, run when the operator
//!    chooses ([`crate::switchover`]).
//!
//! Each step is journaled (intent, call, outcome) in the cloud journal.

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::names::MigrationName;
use serde::Serialize;
use serde_json::json;

use crate::check::{self, Finding, Severity};
use crate::choice::{self, Outcome, Wanted};
use crate::control::ControlPlane;
use crate::fence::MIGRATION_TAG;
use crate::journal::{Event, Journal};
use crate::key::{self, Home};
use crate::model::{Arn, BlueGreen, BlueGreenRequest, GreenKey, Instance, Tag};
use crate::names::AwsNames;
use crate::retry::{call, Pacing};
use crate::step::{done, ensure};
use crate::wait::{self, Look};

/// The database side: pgferry's checks on the green instance's database.
// One thread runs pgferry; the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait GreenSide {
    async fn check(&self, green_instance: &str) -> Result<Vec<Finding>>;
}

#[derive(Clone, Debug)]
pub struct BlueGreenPlan {
    pub migration: MigrationName,
    pub source: String,
    /// An alias (`alias/name`), key ARN or key id; `None` for RDS's default key.
    pub kms_key: Option<String>,
}

/// One blue instance and its green, encrypted, counterpart.
#[derive(Clone, Debug, Serialize)]
pub struct Green {
    pub blue: String,
    pub green: String,
    pub endpoint: Option<String>,
    pub kms_key_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BlueGreenReport {
    pub deployment: String,
    pub name: String,
    pub status: String,
    pub source: String,
    pub kms_key_arn: String,
    /// The blue instances the deployment was asked to encrypt (the primary, then each replica).
    pub encrypted: Vec<String>,
    /// Every green instance AWS lists, each verified encrypted with the key.
    pub green: Vec<Green>,
    /// pgferry's database checks on green.
    pub database: Vec<Finding>,
    pub next: String,
}

/// The step names, in the journal and as failpoints (`aws-after-<step>`).
pub const STEPS: [&str; 4] = ["bg-plan", "blue-green", "green-encryption", "green-checks"];

/// Runs (or resumes) the deployment up to, not including, its switchover.
pub async fn deploy<C: ControlPlane, G: GreenSide>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &BlueGreenPlan,
    green_side: &G,
) -> Result<BlueGreenReport> {
    let name = AwsNames::new(&plan.migration)?.blue_green();
    let migration = plan.migration.as_str();
    let key = settle_plan(cloud, pacing, journal, plan).await?;
    let request = request(cloud, pacing, plan, &name, &key).await?;
    ensure(
        journal,
        "blue-green",
        &name,
        serde_json::to_value(&request).expect("a request serializes"),
        || find_ours(cloud, pacing, &name, migration),
        || async { call(pacing, || cloud.create_blue_green(&request)).await.map(drop) },
    )
    .await?;
    let deployment = available(cloud, pacing, &name, migration).await?;
    if deployment.source != request.source_arn {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("the deployment {name} is of {}, not {}", deployment.source, request.source_arn),
        )
        .with_hint("use another --name for this instance"));
    }
    done(journal, "blue-green", &name, json!({"identifier": deployment.identifier, "target": deployment.target}))?;

    let green = verify_green(cloud, pacing, &deployment, &key).await?;
    done(
        journal,
        "green-encryption",
        &name,
        json!({"green": green.iter().map(|g| &g.green).collect::<Vec<_>>(), "kms_key": key}),
    )?;

    let primary = green
        .first()
        .map(|g| g.green.clone())
        .ok_or_else(|| Error::new(ErrorKind::Server, format!("the deployment {name} lists no green instance")))?;
    let database = green_side.check(&primary).await?;
    let blockers = database.iter().filter(|f| f.severity == Severity::Blocker).count();
    done(journal, "green-checks", &primary, json!({"findings": database.len(), "blockers": blockers}))?;
    Ok(BlueGreenReport {
        deployment: deployment.identifier,
        name: name.clone(),
        status: deployment.status,
        source: plan.source.clone(),
        kms_key_arn: key,
        encrypted: request.targets.into_iter().map(|t| t.source_arn).collect(),
        green,
        database,
        next: format!(
            "the deployment stops before its switchover: pgferry aws switchover --name {}",
            plan.migration.as_str()
        ),
    })
}

/// Pins the plan, refuses an instance Blue/Green cannot encrypt, resolves the key.
async fn settle_plan<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &BlueGreenPlan,
) -> Result<String> {
    if journal.last("plan", Event::Intent).is_some() {
        return Err(Error::new(
            ErrorKind::Usage,
            "this migration was started with the snapshot method (pgferry aws encrypt without --method)",
        )
        .with_hint("a migration keeps its method: rerun without --method blue-green, or use a new --name"));
    }
    let requested = plan.kms_key.clone().unwrap_or_else(|| crate::encrypt::DEFAULT_KEY.to_owned());
    let wanted = json!({"method": "blue-green", "source": plan.source, "kms_key": requested});
    let pinned = journal.last("bg-plan", Event::Intent).map(|e| e.detail.clone());
    if let Some(pinned) = &pinned {
        if *pinned != wanted {
            return Err(Error::new(ErrorKind::Usage, format!("this migration was started as {pinned}, not {wanted}"))
                .with_hint(
                    "the source and key of a migration are final: rerun with the first values, or use a new --name",
                ));
        }
        if let Some(arn) = journal.outcome("bg-plan").and_then(|o| o["kms_key_arn"].as_str()) {
            return Ok(arn.to_owned());
        }
    }
    let facts = check::gather(cloud, pacing, &plan.source).await?;
    if pinned.is_none() {
        let mut refused: Vec<String> = choice::blue_green_checks(&facts, &Wanted::default())
            .into_iter()
            .filter(|c| c.outcome == Outcome::RulesOut)
            .map(|c| c.detail)
            .collect();
        if facts.instance.status != "available" {
            refused.push(format!("the instance is {}, not available", facts.instance.status));
        }
        if !refused.is_empty() {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!(
                    "a Blue/Green deployment cannot encrypt {}: {}",
                    plan.source,
                    refused.join("; ")
                ),
            )
            .with_hint(format!(
                "pgferry's own path does: pgferry aws encrypt without --method (pgferry aws check --source-instance {} compares both)",
                plan.source
            )));
        }
    }
    let home =
        facts.instance.arn.as_deref().and_then(Arn::parse).map(|a| Home { region: a.region, account: a.account });
    let key = key::resolve(cloud, pacing, &requested, home).await?;
    if pinned.is_none() {
        journal.record("bg-plan", Event::Intent, &plan.source, wanted)?;
    }
    tracing::warn!(key = %key, "the green instances are encrypted with this key; RDS cannot change an instance's key later");
    done(journal, "bg-plan", &plan.source, json!({"kms_key_arn": key}))?;
    Ok(key)
}

async fn describe<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<Instance> {
    call(pacing, || cloud.describe_instance(id)).await?.ok_or_else(|| check::no_instance(id))
}

fn arn_of(instance: &Instance) -> Result<String> {
    instance
        .arn
        .clone()
        .ok_or_else(|| Error::new(ErrorKind::Server, format!("RDS gave no ARN for {}", instance.identifier)))
}

/// The deployment to ask for: the key for the primary and for each replica.
async fn request<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    plan: &BlueGreenPlan,
    name: &str,
    key: &str,
) -> Result<BlueGreenRequest> {
    let source = describe(cloud, pacing, &plan.source).await?;
    let source_arn = arn_of(&source)?;
    let mut targets = vec![GreenKey { source_arn: source_arn.clone(), kms_key_id: key.to_owned() }];
    for replica in &source.read_replicas {
        let arn = match Arn::parse(replica) {
            Some(_) => replica.clone(),
            None => arn_of(&describe(cloud, pacing, replica).await?)?,
        };
        targets.push(GreenKey { source_arn: arn, kms_key_id: key.to_owned() });
    }
    let tags = vec![Tag { key: MIGRATION_TAG.into(), value: plan.migration.as_str().to_owned() }];
    Ok(BlueGreenRequest { name: name.to_owned(), source_arn, targets, tags })
}

/// Why `deployment` is not this migration's, if it is not: pgferry tags the
/// deployment it creates with the migration's name.
pub fn not_ours(deployment: &BlueGreen, migration: &str) -> Option<String> {
    match deployment.tag(MIGRATION_TAG) {
        Some(m) if m == migration => None,
        Some(m) => Some(format!("it is tagged {MIGRATION_TAG}={m}, another migration's")),
        None => Some(format!("it is not tagged {MIGRATION_TAG}: pgferry did not create it")),
    }
}

/// The deployment named `name` if it is this migration's; someone else's is an error.
pub(crate) async fn find_ours<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    name: &str,
    migration: &str,
) -> Result<Option<BlueGreen>> {
    let Some(found) = call(pacing, || cloud.describe_blue_green(name)).await? else { return Ok(None) };
    match not_ours(&found, migration) {
        None => Ok(Some(found)),
        Some(why) => Err(Error::new(
            ErrorKind::Precondition,
            format!("the Blue/Green deployment {name} ({}) is not this migration's: {why}", found.identifier),
        )
        .with_hint(format!(
            "pgferry adopts, switches over and deletes only a deployment it tagged for this migration: choose another \
             --name, or delete {} if it is a leftover",
            found.identifier
        ))),
    }
}

/// Deployment states that will not become `AVAILABLE` by themselves.
fn failed(status: &str) -> bool {
    !matches!(status, "PROVISIONING" | "AVAILABLE")
}

/// Waits for the deployment to be `AVAILABLE`.
async fn available<C: ControlPlane>(cloud: &C, pacing: &Pacing, name: &str, migration: &str) -> Result<BlueGreen> {
    wait::until(pacing, &format!("Blue/Green deployment {name}"), || async {
        let found = find_ours(cloud, pacing, name, migration).await?;
        match found {
            None => Ok(Look::Waiting("not found".into())),
            Some(d) if d.status == "AVAILABLE" => Ok(Look::Ready(d)),
            Some(d) if d.status.starts_with("SWITCHOVER_") || d.status == "DELETING" => Err(Error::new(
                ErrorKind::Precondition,
                format!("the Blue/Green deployment {name} is {}: past what pgferry aws encrypt does", d.status),
            )
            .with_hint(format!(
                "pgferry aws switchover --name {migration} reports its switchover; pgferry aws finish --blue-green \
                 --name {migration} removes the deployment"
            ))),
            Some(d) if failed(&d.status) => Err(Error::new(
                ErrorKind::Server,
                format!(
                    "the Blue/Green deployment {name} is {}{}",
                    d.status,
                    d.status_details
                        .as_deref()
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default()
                ),
            )
            .with_hint(format!(
                "see the deployment's events in the RDS console; fix the cause, delete the deployment and its green \
                 instances (aws rds delete-blue-green-deployment --blue-green-deployment-identifier {} --delete-target), \
                 then run again with a new --name: this migration's deployment is recorded as created",
                d.identifier
            ))),
            Some(d) => Ok(Look::Waiting(d.status)),
        }
    })
    .await
}

/// Every green instance the deployment lists, ready and encrypted with `key`.
async fn verify_green<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    deployment: &BlueGreen,
    key: &str,
) -> Result<Vec<Green>> {
    let mut pairs: Vec<(String, String)> =
        deployment.members.iter().filter_map(|m| Some((m.source.clone(), m.target.clone()?))).collect();
    if pairs.is_empty() {
        if let Some(target) = &deployment.target {
            pairs.push((deployment.source.clone(), target.clone()));
        }
    }
    let mut green = Vec::new();
    for (blue, target) in pairs {
        let id = Arn::parse(&target).map_or(target.as_str(), |a| a.name);
        let instance = wait::instance_ready(cloud, pacing, id).await?;
        if !instance.storage_encrypted || instance.kms_key_id.as_deref() != Some(key) {
            return Err(Error::new(
                ErrorKind::Server,
                format!(
                    "the green instance {id} is not encrypted with {key} (encrypted: {}, key: {:?})",
                    instance.storage_encrypted, instance.kms_key_id
                ),
            )
            .with_hint(format!(
                "delete the deployment {} with its green instances (aws rds delete-blue-green-deployment \
                 --blue-green-deployment-identifier {} --delete-target), then run again with a new --name: this \
                 migration's deployment is recorded as created; pgferry aws switchover refuses it",
                deployment.name, deployment.identifier
            )));
        }
        green.push(Green {
            blue,
            green: instance.identifier,
            endpoint: instance.endpoint,
            kms_key_id: instance.kms_key_id,
        });
    }
    Ok(green)
}
