//! `pgferry aws encrypt`: an encrypted copy of an RDS instance, replicating.
//!
//! RDS encrypts an instance only at creation
//! (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Overview.Encryption.html#Overview.Encryption.Limitations>),
//! so the copy is made from a snapshot:
//!
//! 1. the database side prepares the seed (a logical slot) in every database of
//!    the source instance — before the snapshot, so that every change after the
//!    snapshot is kept. A restore brings every database over, and one that is not
//!    followed stays frozen at the snapshot on the target: every database that
//!    allows connections is in (the rules of `--all-databases`,
//!    [`pgferry_core::instance::plan`]), each its own migration under the same
//!    name, as `pgferry start --all-databases` runs them; one the operator leaves
//!    out is reported loudly;
//! 2. a manual snapshot of the source, then a copy of it encrypted with the KMS key;
//! 3. a restore of the copy, passing every setting of the source, then a modify of
//!    what a restore cannot set;
//! 4. the parity report: any difference but the identifier, endpoint, encryption
//!    and key stops the run;
//! 5. where the target's recovery ended, from its log, handed to the database side,
//!    which attaches every database and replicates each from there;
//! 6. stop: the operator rehearses and cuts over with `pgferry rehearse` and
//!    `pgferry cutover`.
//!
//! Each step is journaled ([`crate::journal`]) and resumable ([`crate::step`]).

use std::str::FromStr;

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::instance::{InstancePlan, LeftOut, Selection};
use pgferry_core::names::MigrationName;
use pgferry_pgoutput::Lsn;
use serde::Serialize;
use serde_json::{json, Value};

use crate::control::ControlPlane;
use crate::journal::{Event, Journal};
use crate::key::{self, Home};
use crate::model::{Arn, Instance, RestoreRequest};
use crate::names::AwsNames;
use crate::parity::{self, Row};
use crate::retry::{call, Pacing};
use crate::step::{done, done_in, ensure};
use crate::{check, logs, wait};

/// The key RDS uses when the operator names none.
pub const DEFAULT_KEY: &str = "alias/aws/rds";

/// The database side of the flow, implemented over PostgreSQL by the caller.
// One thread runs pgferry; the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait SeedSide {
    /// The source instance's databases to follow, narrowed by `selection`, and
    /// those left out with why. Read on each run until the snapshot is asked
    /// for; after it the journaled list is kept.
    async fn databases(&self, selection: &Selection) -> Result<InstancePlan>;
    /// Step 1, before the snapshot: make the source keep every change of
    /// `database` from now on. A run killed before the mark was journaled calls
    /// this again, before any snapshot exists: it must then reuse what the first
    /// call made.
    async fn prepare(&self, database: &str) -> Result<SeedMark>;
    /// Step 5: replicate `database` into the restored target from `redo`, the
    /// position its recovery ended at. Called again after a crash until
    /// journaled as done.
    async fn start_from(&self, database: &str, mark: &SeedMark, redo: Lsn) -> Result<()>;
    /// Every database the source lists now, whatever the plan (templates too).
    async fn existing(&self) -> Result<Vec<String>>;
    /// The restored target's databases that could be followed (allowing
    /// connections; no template, not the provider's own): what the snapshot held.
    async fn restored(&self) -> Result<Vec<String>>;
}

/// What [`SeedSide::prepare`] made: the slot and the position it keeps changes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedMark {
    pub slot: String,
    pub consistent_point: Lsn,
}

/// What to encrypt, and with which key.
#[derive(Clone, Debug)]
pub struct EncryptPlan {
    pub migration: MigrationName,
    pub source: String,
    pub target: String,
    /// An alias (`alias/name`), key ARN or key id; `None` for RDS's default key.
    pub kms_key: Option<String>,
    /// Which databases are followed (default: every one); final, as the key is.
    pub databases: Selection,
    /// The database `--source`'s URL names: the one database a migration
    /// journaled by an earlier release follows.
    pub connected_database: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct EncryptReport {
    pub source: String,
    pub target: String,
    pub target_endpoint: Option<String>,
    pub kms_key_arn: String,
    pub snapshot: String,
    pub encrypted_snapshot: String,
    /// Every compared setting, source beside target; all equal.
    pub parity: Vec<Row>,
    /// Every database followed, each from its own slot.
    pub databases: Vec<SeededDatabase>,
    /// The databases not followed, with why; those the operator left out lose
    /// their writes after the snapshot.
    pub left_out: Vec<LeftOutDatabase>,
    /// Where the target's recovery ended and replication started.
    pub redo_lsn: String,
}

/// A database followed from the restored instance.
#[derive(Clone, Debug, Serialize)]
pub struct SeededDatabase {
    pub database: String,
    pub slot: String,
    pub consistent_point: String,
    /// Attached and followed until caught up by this run; false when an
    /// earlier run did (it may have fallen behind since).
    pub caught_up_now: bool,
}

/// A database of the source that is not followed.
#[derive(Clone, Debug, Serialize)]
pub struct LeftOutDatabase {
    pub database: String,
    pub why: String,
    /// Left out by the operator: its writes after the snapshot do not reach the target.
    pub loses_writes: bool,
}

/// Runs (or resumes) the flow up to replication.
pub async fn encrypt<C: ControlPlane, S: SeedSide>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &EncryptPlan,
    seed: &S,
) -> Result<EncryptReport> {
    let names = AwsNames::new(&plan.migration)?;
    let snapshot = names.snapshot();
    let wanted = wanted(plan);
    let pinned = pinned_plan(journal, plan, &wanted)?;
    // Until the snapshot is asked for, the source's databases are read on every
    // run, so that one created since an earlier run is prepared too; read before
    // the plan is recorded, so that a name the source lacks binds nothing.
    let listed = if journal.intended("snapshot", &snapshot) && journal.outcome("databases").is_some() {
        None
    } else {
        Some(listed_databases(plan, seed).await?)
    };
    let key = settle_plan(cloud, pacing, journal, plan, pinned, wanted).await?;
    let (databases, left_out) = settle_databases(journal, plan, listed)?;
    let marks = prepare_seeds(journal, &databases, seed).await?;

    ensure(
        journal,
        "snapshot",
        &snapshot,
        json!({"instance": plan.source}),
        || call(pacing, || cloud.describe_snapshot(&snapshot)),
        || async { call(pacing, || cloud.create_snapshot(&plan.source, &snapshot)).await.map(drop) },
    )
    .await?;
    wait::snapshot_ready(cloud, pacing, &snapshot).await?;
    done(journal, "snapshot", &snapshot, Value::Null)?;

    let encrypted = names.encrypted_snapshot();
    ensure(
        journal,
        "encrypted-copy",
        &encrypted,
        json!({"source": snapshot, "kms_key": key}),
        || call(pacing, || cloud.describe_snapshot(&encrypted)),
        || async { call(pacing, || cloud.copy_snapshot(&snapshot, &encrypted, &key)).await.map(drop) },
    )
    .await?;
    let copy = wait::snapshot_ready(cloud, pacing, &encrypted).await?;
    if !copy.encrypted || copy.kms_key_id.as_deref() != Some(key.as_str()) {
        return Err(Error::new(
            ErrorKind::Server,
            format!(
                "the copy {encrypted} is not encrypted with {key} (encrypted: {}, key: {:?})",
                copy.encrypted, copy.kms_key_id
            ),
        )
        .with_hint(format!("delete the snapshot {encrypted} and rerun")));
    }
    done(journal, "encrypted-copy", &encrypted, json!({"kms_key": key}))?;

    let source = source_instance(cloud, pacing, &plan.source).await?;
    let request = RestoreRequest { target: plan.target.clone(), snapshot: encrypted.clone(), settings: source.clone() };
    ensure(
        journal,
        "restore",
        &plan.target,
        json!({"snapshot": encrypted, "settings": source}),
        || call(pacing, || cloud.describe_instance(&plan.target)),
        || async { call(pacing, || cloud.restore_instance(&request)).await.map(drop) },
    )
    .await?;
    wait::instance_ready(cloud, pacing, &plan.target).await?;
    done(journal, "restore", &plan.target, Value::Null)?;

    let target = complete_settings(cloud, pacing, journal, &source, &plan.target).await?;
    let parity = check_parity(journal, &source, &target)?;

    let redo = redo_position(cloud, pacing, journal, &plan.target).await?;
    if let Some((database, mark)) = marks.iter().find(|(_, mark)| redo < mark.consistent_point) {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!(
                "the target's recovery ended at {redo}, before the slot {} of database {database:?} starts at {}",
                mark.slot, mark.consistent_point
            ),
        )
        .with_hint("the snapshot predates the slot, so changes in between would be lost: delete the target and both snapshots, then rerun"));
    }
    if marks.iter().any(|(database, _)| journal.outcome_of("seed", database).is_none()) {
        refuse_unfollowed(plan, &databases, &left_out, seed).await?;
        settle_dropped(journal, plan, &marks, seed).await?;
    }
    let dropped = |database: &str| journal.outcome_of("seed", database).is_some_and(|o| o["dropped"] == true);
    let (marks, gone): (Vec<_>, Vec<_>) = marks.into_iter().partition(|(database, _)| !dropped(database));
    let mut left_out = left_out;
    left_out.extend(gone.into_iter().map(|(database, _)| LeftOutDatabase {
        database,
        why: DROPPED.to_owned(),
        loses_writes: false,
    }));
    let mut caught_up_now = Vec::new();
    for (database, mark) in &marks {
        if journal.outcome_of("seed", database).is_none() {
            journal.record("seed", Event::Intent, database, json!({"slot": mark.slot, "from": redo.to_string()}))?;
            seed.start_from(database, mark, redo).await.map_err(|e| in_database(database, e))?;
            done_in(journal, "seed", database, json!({"from": redo.to_string()}))?;
            caught_up_now.push(database.clone());
        }
    }
    Ok(EncryptReport {
        source: plan.source.clone(),
        target: plan.target.clone(),
        target_endpoint: target.endpoint.clone(),
        kms_key_arn: key,
        snapshot,
        encrypted_snapshot: encrypted,
        parity,
        databases: marks
            .into_iter()
            .map(|(database, mark)| SeededDatabase {
                caught_up_now: caught_up_now.contains(&database),
                database,
                slot: mark.slot,
                consistent_point: mark.consistent_point.to_string(),
            })
            .collect(),
        left_out,
        redo_lsn: redo.to_string(),
    })
}

/// The error, naming the database of the instance it happened in.
pub(crate) fn in_database(database: &str, e: Error) -> Error {
    Error { message: format!("database {database:?}: {}", e.message), ..e }
}

/// What the run asks for: the source, target, key and databases, each final.
fn wanted(plan: &EncryptPlan) -> Value {
    let sorted = |names: &[String]| {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        names
    };
    json!({
        "source": plan.source,
        "target": plan.target,
        "kms_key": plan.kms_key.clone().unwrap_or_else(|| DEFAULT_KEY.to_owned()),
        "databases": {"only": sorted(&plan.databases.only), "excluded": sorted(&plan.databases.excluded)},
    })
}

/// The plan the migration was started with, if any; a rerun asking for another
/// method or plan is refused.
fn pinned_plan(journal: &mut Journal, plan: &EncryptPlan, wanted: &Value) -> Result<Option<Value>> {
    if journal.last("bg-plan", Event::Intent).is_some() {
        return Err(Error::new(ErrorKind::Usage, "this migration was started with --method blue-green")
            .with_hint("a migration keeps its method: rerun with --method blue-green, or use a new --name"));
    }
    let Some(pinned) = journal.last("plan", Event::Intent).map(|e| e.detail.clone()) else { return Ok(None) };
    if pinned.get("databases").is_none() {
        return continue_single_database(journal, plan, &pinned, wanted).map(Some);
    }
    // Journaled before the names were sorted: the same names in another order are the same plan.
    let mut earlier = pinned.clone();
    for list in ["only", "excluded"] {
        if let Some(Value::Array(names)) = earlier.pointer_mut(&format!("/databases/{list}")) {
            names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            names.dedup();
        }
    }
    if earlier != *wanted {
        return Err(refused_plan(&pinned, wanted));
    }
    Ok(Some(pinned))
}

fn refused_plan(pinned: &Value, wanted: &Value) -> Error {
    Error::new(ErrorKind::Usage, format!("this migration was started as {pinned}, not {wanted}")).with_hint(
        "the source, target, key and databases of a migration are final: rerun with the first values, or use a new --name",
    )
}

/// A migration journaled by a release that followed only the database of
/// `--source`'s URL: a snapshot it took keeps changes in that database alone.
/// It continues only as it was started, which the operator says with
/// `--database` naming that one database; the instance's other databases are
/// then reported as left out. Its journal entries are not carried over:
/// `seed prepare` and the attach run again in that database, and reuse the
/// slot, marker and attach the earlier release made there; in another database
/// (the URL changed) they make a slot after the snapshot, which the redo check
/// refuses, rather than follow from a slot that is not that database's.
fn continue_single_database(
    journal: &mut Journal,
    plan: &EncryptPlan,
    pinned: &Value,
    wanted: &Value,
) -> Result<Value> {
    let mut earlier = wanted.clone();
    if let Some(fields) = earlier.as_object_mut() {
        fields.remove("databases");
    }
    if *pinned != earlier {
        return Err(refused_plan(pinned, wanted));
    }
    let database = &plan.connected_database;
    if plan.databases != (Selection { only: vec![database.clone()], excluded: vec![] }) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "this migration was started by an earlier pgferry, which follows only the database of --source's URL ({database:?}), not every database of {}",
                plan.source
            ),
        )
        .with_hint(format!(
            "continue it as it was started with --database {database:?} (the instance's other databases are then left out: \
             their writes after the snapshot will NOT reach the target), or start over under a new --name to follow every database \
             (this migration's slot in {database:?} then keeps the source's WAL until pgferry abort of migration {} removes it)",
            plan.migration
        )));
    }
    journal.record("plan", Event::Intent, &plan.target, wanted.clone())?;
    Ok(wanted.clone())
}

/// Resolves the key and pins the plan: a rerun must name the same instances and key.
async fn settle_plan<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &EncryptPlan,
    pinned: Option<Value>,
    wanted: Value,
) -> Result<String> {
    let requested = plan.kms_key.clone().unwrap_or_else(|| DEFAULT_KEY.to_owned());
    if pinned.is_some() {
        if let Some(arn) = journal.outcome("plan").and_then(|o| o["kms_key_arn"].as_str()) {
            return Ok(arn.to_owned());
        }
    }
    let facts = check::gather(cloud, pacing, &plan.source).await?;
    if pinned.is_none() {
        let blockers: Vec<String> = check::verdicts(&facts)
            .into_iter()
            .filter(|f| f.severity == check::Severity::Blocker)
            .map(|f| f.what)
            .collect();
        if !blockers.is_empty() {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!("{} cannot be encrypted yet: {}", plan.source, blockers.join("; ")),
            )
            .with_hint(format!("pgferry aws check --source-instance {} says how to fix each", plan.source)));
        }
    }
    let home =
        facts.instance.arn.as_deref().and_then(Arn::parse).map(|a| Home { region: a.region, account: a.account });
    let key = key::resolve(cloud, pacing, &requested, home).await?;
    if pinned.is_none() {
        journal.record("plan", Event::Intent, &plan.target, wanted)?;
    }
    tracing::warn!(key = %key, "the target is encrypted with this key; RDS cannot change an instance's key later");
    done(journal, "plan", &plan.target, json!({"kms_key_arn": key}))?;
    Ok(key)
}

/// The source's databases to follow, as the operator narrowed them: a name
/// the source lacks, or a selection that leaves nothing, is refused.
async fn listed_databases<S: SeedSide>(plan: &EncryptPlan, seed: &S) -> Result<InstancePlan> {
    let instance = seed.databases(&plan.databases).await?;
    if instance.databases.is_empty() {
        return Err(Error::new(ErrorKind::Usage, format!("no database of {} is left to follow", plan.source))
            .with_hint("leave --exclude-database out, or name a database that allows connections with --database"));
    }
    Ok(instance)
}

/// The databases this migration follows, journaled. `listed` is the source's
/// list read by this run (until the snapshot is asked for): it replaces the
/// journaled one when a database was created or dropped since. After that the
/// journaled list is final: the snapshot holds what it holds.
fn settle_databases(
    journal: &mut Journal,
    plan: &EncryptPlan,
    listed: Option<InstancePlan>,
) -> Result<(Vec<String>, Vec<LeftOutDatabase>)> {
    let journaled = journal.outcome("databases").cloned();
    let Some(instance) = listed else {
        let outcome = journaled.unwrap_or_default();
        let databases = outcome["databases"].as_array().into_iter().flatten().filter_map(Value::as_str);
        let left_out = outcome["left_out"].as_array().into_iter().flatten().map(|l| LeftOutDatabase {
            database: l["database"].as_str().unwrap_or_default().to_owned(),
            why: l["why"].as_str().unwrap_or_default().to_owned(),
            loses_writes: l["loses_writes"].as_bool().unwrap_or(false),
        });
        return Ok((databases.map(str::to_owned).collect(), left_out.collect()));
    };
    // A database an earlier run prepared stays followed while the source has
    // it (closed to connections since, say): its slot keeps the source's WAL
    // until it is attached, and leaving it out would leave the slot behind.
    let mut instance = instance;
    let (kept, left_out): (Vec<_>, Vec<_>) = std::mem::take(&mut instance.left_out)
        .into_iter()
        .partition(|(database, _)| journal.outcome_of("seed-prepare", database).is_some());
    instance.left_out = left_out;
    instance.databases.extend(kept.into_iter().map(|(database, _)| database));
    instance.databases.sort();
    let left_out: Vec<LeftOutDatabase> = instance
        .left_out
        .iter()
        .map(|(database, why)| LeftOutDatabase {
            database: database.clone(),
            why: left_out_why(*why).to_owned(),
            loses_writes: why.loses_writes(),
        })
        .collect();
    for l in left_out.iter().filter(|l| l.loses_writes) {
        tracing::warn!(database = %l.database, "left out: {}", l.why);
    }
    let outcome = json!({"databases": instance.databases, "left_out": left_out});
    if journaled.as_ref() != Some(&outcome) {
        if journaled.is_some() {
            tracing::warn!(
                databases = ?instance.databases,
                "the source's databases changed since the last run (no snapshot yet): following these"
            );
        }
        journal.record("databases", Event::Outcome, &plan.source, outcome)?;
        pgferry::failpoint::hit("aws-after-databases");
    }
    Ok((instance.databases, left_out))
}

/// Why a followed database is not attached: gone from both instances.
const DROPPED: &str = "dropped on the source after the snapshot, and on the target";

/// A followed database not yet attached that the source no longer has was
/// dropped there after the snapshot (its slot first, which PostgreSQL
/// requires): there is nothing left to follow. While the restored target still
/// holds it the run stops, saying to drop it there too (a dropped database is
/// a change the target must get); once both lack it, it is journaled as
/// dropped and the others go on.
async fn settle_dropped<S: SeedSide>(
    journal: &mut Journal,
    plan: &EncryptPlan,
    marks: &[(String, SeedMark)],
    seed: &S,
) -> Result<()> {
    let existing = seed.existing().await?;
    let on_source = |database: &str| existing.iter().any(|d| d == database);
    let gone: Vec<&String> = marks
        .iter()
        .map(|(database, _)| database)
        .filter(|database| journal.outcome_of("seed", database).is_none() && !on_source(database))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let restored = seed.restored().await?;
    if let Some(database) = gone.iter().find(|database| restored.contains(database)) {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!(
                "database {database:?} was dropped on the source after the snapshot; the restored {} still holds it",
                plan.target
            ),
        )
        .with_hint(format!("drop it on {} too (DROP DATABASE), then rerun: the other databases go on", plan.target)));
    }
    for database in gone {
        tracing::warn!(database = %database, "{DROPPED}: not followed");
        journal.record("seed", Event::Outcome, database, json!({"dropped": true}))?;
    }
    Ok(())
}

/// Refuses to replicate into a restored instance holding a database the plan
/// neither follows nor leaves out by the operator's choice: one created on the
/// source (or opened to connections, having been left out as allowing none)
/// after the seed was prepared (between a kill and the rerun that asked for the snapshot, or
/// while the snapshot was being asked for). The snapshot brought it over, but
/// no slot kept its changes after it: followed as it is, it would sit frozen
/// at the snapshot on the target and its later writes would be lost at the
/// cutover without a word.
async fn refuse_unfollowed<S: SeedSide>(
    plan: &EncryptPlan,
    databases: &[String],
    left_out: &[LeftOutDatabase],
    seed: &S,
) -> Result<()> {
    let restored = seed.restored().await?;
    let unknown: Vec<String> = restored
        .into_iter()
        // Left out for a reason of its own (it allowed no connections) but
        // followable in the snapshot: opened since, and unfollowed all the same.
        .filter(|d| !databases.contains(d) && !left_out.iter().any(|l| &l.database == d && l.loses_writes))
        .map(|d| format!("{d:?}"))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Precondition,
        format!(
            "the restored {} holds {} that this migration does not follow: created on the source (or opened to \
             connections) after the seed was prepared, so no slot kept its changes after the snapshot (they would be \
             lost at the cutover)",
            plan.target,
            unknown.join(", ")
        ),
    )
    .with_hint(
        "if it is not needed, drop it on the target and the source, then rerun; to move it, delete the target \
         instance and start over under a new --name, whose seed is prepared in it before its snapshot",
    ))
}

/// Why a database is not followed, said for a snapshot: one the operator left
/// out is restored with the others, then stays as the snapshot had it.
fn left_out_why(why: LeftOut) -> &'static str {
    match why {
        LeftOut::Excluded => {
            "excluded by --exclude-database: its writes after the snapshot will NOT reach the target (it stays there as the snapshot had it)"
        }
        LeftOut::NotNamed => {
            "not named by --database: its writes after the snapshot will NOT reach the target (it stays there as the snapshot had it)"
        }
        other => other.as_str(),
    }
}

/// Step 1 in every database, each journaled: a rerun prepares only those whose
/// mark was not recorded.
async fn prepare_seeds<S: SeedSide>(
    journal: &mut Journal,
    databases: &[String],
    seed: &S,
) -> Result<Vec<(String, SeedMark)>> {
    let mut marks = Vec::new();
    for database in databases {
        if let Some(outcome) = journal.outcome_of("seed-prepare", database) {
            let slot = outcome["slot"].as_str().unwrap_or_default().to_owned();
            let point = outcome["consistent_point"].as_str().and_then(|t| Lsn::from_str(t).ok());
            if let Some(consistent_point) = point {
                marks.push((database.clone(), SeedMark { slot, consistent_point }));
                continue;
            }
        }
        journal.record("seed-prepare", Event::Intent, database, Value::Null)?;
        let mark = seed.prepare(database).await.map_err(|e| in_database(database, e))?;
        let outcome = json!({"slot": mark.slot, "consistent_point": mark.consistent_point.to_string()});
        done_in(journal, "seed-prepare", database, outcome)?;
        marks.push((database.clone(), mark));
    }
    Ok(marks)
}

async fn source_instance<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<Instance> {
    call(pacing, || cloud.describe_instance(id))
        .await?
        .ok_or_else(|| Error::new(ErrorKind::Precondition, format!("the source instance {id} no longer exists")))
}

/// Modifies what the restore could not set, and reboots a target whose parameter
/// group waits for one (a new instance: nobody is connected yet).
async fn complete_settings<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    source: &Instance,
    id: &str,
) -> Result<Instance> {
    let target = wait::instance_ready(cloud, pacing, id).await?;
    let change = parity::after_restore(source, &target);
    let target = if change.is_empty() {
        target
    } else {
        journal.record("modify", Event::Intent, id, serde_json::to_value(&change).expect("a change serializes"))?;
        call(pacing, || cloud.modify_instance(id, &change)).await?;
        journal.record("modify", Event::Call, id, Value::Null)?;
        let target = wait::instance_ready(cloud, pacing, id).await?;
        done(journal, "modify", id, Value::Null)?;
        target
    };
    if target.parameter_group.as_ref().is_some_and(|g| g.apply_status == "pending-reboot") {
        journal.record("reboot", Event::Intent, id, json!({"why": "parameter group pending-reboot"}))?;
        call(pacing, || cloud.reboot_instance(id)).await?;
        journal.record("reboot", Event::Call, id, Value::Null)?;
        let target = wait::instance_ready(cloud, pacing, id).await?;
        journal.record("reboot", Event::Outcome, id, Value::Null)?;
        return Ok(target);
    }
    Ok(target)
}

fn check_parity(journal: &mut Journal, source: &Instance, target: &Instance) -> Result<Vec<Row>> {
    let differences = parity::differences(source, target);
    if !differences.is_empty() {
        let lines: Vec<String> =
            differences.iter().map(|d| format!("  {}: source {}, target {}", d.setting, d.source, d.target)).collect();
        journal.record("parity", Event::Outcome, &target.identifier, json!({"differences": differences}))?;
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("{} does not match {}:\n{}", target.identifier, source.identifier, lines.join("\n")),
        )
        .with_hint(format!(
            "pgferry does not replicate into an instance that differs; fix {} with aws rds modify-db-instance (or delete it) and rerun",
            target.identifier
        )));
    }
    let rows = parity::settings(source)
        .into_iter()
        .zip(parity::settings(target))
        .map(|((setting, source), (_, target))| Row { setting, source, target })
        .collect();
    journal.record("parity", Event::Outcome, &target.identifier, json!({"differences": []}))?;
    Ok(rows)
}

async fn redo_position<C: ControlPlane>(cloud: &C, pacing: &Pacing, journal: &mut Journal, id: &str) -> Result<Lsn> {
    if let Some(lsn) = journal.outcome("redo").and_then(|o| o["lsn"].as_str()).and_then(|t| Lsn::from_str(t).ok()) {
        return Ok(lsn);
    }
    let (lsn, file) = logs::redo_done(cloud, pacing, id).await?;
    done(journal, "redo", id, json!({"lsn": lsn.to_string(), "file": file}))?;
    Ok(lsn)
}
