//! `pgferry aws finish`: after the cutover, make the target whole and retire the source.
//!
//! 1. read replicas of the target matching the source's (class, zone and settings);
//! 2. a final manual snapshot of the source, kept;
//! 3. the source deleted, only when asked twice (`--delete-source --yes`);
//! 4. the intermediate snapshots (pgferry's names only) deleted;
//! 5. a report of every resource the migration created and deleted, from the journal.
//!
//! It acts only on the source and target that `pgferry aws encrypt` recorded in
//! the same state directory ([`same_migration`]): a mistyped `--source-instance`
//! with `--delete-source --yes` must not delete an unrelated instance.

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::names::MigrationName;
use serde::Serialize;
use serde_json::{json, Value};

use crate::control::ControlPlane;
use crate::journal::{Event, Journal};
use crate::model::{Instance, Modification, ReplicaRequest};
use crate::names::AwsNames;
use crate::retry::{call, Pacing};
use crate::step::{done, ensure};
use crate::wait;

#[derive(Clone, Debug)]
pub struct FinishPlan {
    pub migration: MigrationName,
    pub source: String,
    pub target: String,
    pub delete_source: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FinishReport {
    /// Every resource this migration created, in order.
    pub created: Vec<String>,
    /// Every resource this migration deleted, in order.
    pub deleted: Vec<String>,
    /// What is left for the operator.
    pub left: Vec<String>,
}

const CREATING_STEPS: &[&str] = &["snapshot", "encrypted-copy", "restore", "fence-group", "final-snapshot"];
const DELETING_STEPS: &[&str] = &["delete-source", "delete-snapshot", "delete-fence-group"];

pub async fn finish<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &FinishPlan,
) -> Result<FinishReport> {
    let names = AwsNames::new(&plan.migration)?;
    if journal.last("bg-plan", Event::Intent).is_some() {
        return Err(Error::new(
            ErrorKind::Usage,
            "this migration was started with --method blue-green: it has no target of pgferry's to finish",
        )
        .with_hint(format!(
            "a migration keeps its method: pgferry aws finish --blue-green --name {} after pgferry aws switchover",
            plan.migration.as_str()
        )));
    }
    same_migration(journal, plan)?;
    let mut left = Vec::new();
    match call(pacing, || cloud.describe_instance(&plan.source)).await? {
        Some(source) => {
            replicas(cloud, pacing, journal, &names, &source, &plan.target).await?;
            final_snapshot(cloud, pacing, journal, &names, &source.identifier).await?;
            if plan.delete_source {
                delete_source(cloud, pacing, journal, &source).await?;
            } else {
                left.push(format!(
                    "the source {} is kept; delete it with --delete-source --yes once the target has proven itself",
                    source.identifier
                ));
            }
        }
        // Deleted by an earlier run, which may have died before journaling it.
        None if journal.intended("delete-source", &plan.source) => {
            if journal.last("delete-source", Event::Call).is_none() {
                journal.record("delete-source", Event::Call, &plan.source, json!({"found": "gone"}))?;
            }
            done(journal, "delete-source", &plan.source, Value::Null)?;
        }
        None => return Err(crate::check::no_instance(&plan.source)),
    }
    if let Some(intent) = journal.last("delete-source", Event::Intent) {
        let replicas: Vec<&str> =
            intent.detail["replicas"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
        if !replicas.is_empty() {
            left.push(format!(
                "the source's read replicas {} are now standalone instances: delete them once nothing reads from them",
                replicas.join(", ")
            ));
        }
    }
    for snapshot in names.intermediate_snapshots() {
        if call(pacing, || cloud.describe_snapshot(&snapshot)).await?.is_some() {
            journal.record("delete-snapshot", Event::Intent, &snapshot, Value::Null)?;
            call(pacing, || cloud.delete_snapshot(&snapshot)).await?;
            journal.record("delete-snapshot", Event::Call, &snapshot, Value::Null)?;
        }
    }
    left.push(format!("the final snapshot {} is kept", names.final_snapshot()));
    Ok(FinishReport {
        created: resources(journal, |step| CREATING_STEPS.contains(&step) || step.starts_with("replica-")),
        deleted: resources(journal, |step| DELETING_STEPS.contains(&step)),
        left,
    })
}

/// Finish acts on the instances `pgferry aws encrypt` recorded in this state
/// directory, and on no others: a mistyped `--source-instance` with
/// `--delete-source --yes` must not delete an unrelated instance.
fn same_migration(journal: &Journal, plan: &FinishPlan) -> Result<()> {
    let Some(encrypted) = journal.last("plan", Event::Intent).map(|e| e.detail.clone()) else {
        return Err(Error::new(
            ErrorKind::Usage,
            "this state directory records no pgferry aws encrypt: finish acts only on the instances it records",
        )
        .with_hint("pass the --state-dir and --name of the migration's pgferry aws encrypt"));
    };
    let (source, target) = (encrypted["source"].as_str().unwrap_or(""), encrypted["target"].as_str().unwrap_or(""));
    if source == plan.source && target == plan.target {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Usage,
        format!("this migration encrypted {source} into {target}, not {} into {}", plan.source, plan.target),
    )
    .with_hint(format!("pass --source-instance {source} --target-instance {target}")))
}

/// The resources of the steps `pick` selects whose call took effect, in journal order.
fn resources(journal: &Journal, pick: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for e in journal.entries().iter().filter(|e| e.event == Event::Call && pick(&e.step)) {
        if !found.contains(&e.resource) {
            found.push(e.resource.clone());
        }
    }
    found
}

/// One replica of the target per replica of the source, with the source replica's settings.
async fn replicas<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    names: &AwsNames,
    source: &Instance,
    target: &str,
) -> Result<()> {
    let mut originals = source.read_replicas.clone();
    originals.sort();
    for (n, original) in originals.iter().enumerate() {
        let step = format!("replica-{}", n + 1);
        let name = names.replica(n + 1);
        let settings = call(pacing, || cloud.describe_instance(original)).await?.ok_or_else(|| {
            Error::new(ErrorKind::Precondition, format!("the source's replica {original} no longer exists"))
        })?;
        let request = ReplicaRequest { replica: name.clone(), primary: target.to_owned(), settings };
        ensure(
            journal,
            &step,
            &name,
            json!({"primary": target, "like": original}),
            || call(pacing, || cloud.describe_instance(&name)),
            || async { call(pacing, || cloud.create_read_replica(&request)).await.map(drop) },
        )
        .await?;
        wait::instance_ready(cloud, pacing, &name).await?;
        done(journal, &step, &name, json!({"like": original}))?;
    }
    Ok(())
}

async fn final_snapshot<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    names: &AwsNames,
    source: &str,
) -> Result<()> {
    let snapshot = names.final_snapshot();
    ensure(
        journal,
        "final-snapshot",
        &snapshot,
        json!({"instance": source}),
        || call(pacing, || cloud.describe_snapshot(&snapshot)),
        || async { call(pacing, || cloud.create_snapshot(source, &snapshot)).await.map(drop) },
    )
    .await?;
    wait::snapshot_ready(cloud, pacing, &snapshot).await?;
    done(journal, "final-snapshot", &snapshot, Value::Null)
}

async fn delete_source<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    source: &Instance,
) -> Result<()> {
    let id = &source.identifier;
    if source.deletion_protection {
        let change = Modification { deletion_protection: Some(false), ..Modification::default() };
        journal.record("unprotect-source", Event::Intent, id, Value::Null)?;
        call(pacing, || cloud.modify_instance(id, &change)).await?;
        journal.record("unprotect-source", Event::Call, id, Value::Null)?;
        wait::instance_ready(cloud, pacing, id).await?;
    }
    journal.record("delete-source", Event::Intent, id, json!({"replicas": source.read_replicas}))?;
    call(pacing, || cloud.delete_instance(id)).await?;
    journal.record("delete-source", Event::Call, id, Value::Null)?;
    wait::instance_gone(cloud, pacing, id).await?;
    done(journal, "delete-source", id, Value::Null)
}
