//! The network fence: the source's security groups swapped for a restrictive one.
//!
//! `pgferry cutover` fences writes inside PostgreSQL; this fence, optional, also
//! closes the network to the applications, as the manual runbook did.
//!
//! By default pgferry makes the restrictive group itself: `pgferry-<name>-fence`
//! in the instance's VPC, tagged `pgferry:migration` and `pgferry:fence-of` in
//! the call that creates it, whose only inbound rules are TCP to the instance's
//! port from the ranges the operator allows (`--allow-cidr`): pgferry itself
//! must still reach the source during the cutover's drain and checks, so at
//! least one range is required. A rerun finds the group by its name in the VPC
//! (EC2 refuses a second group of that name, so there is never a second one) and
//! adopts it only if its tags say it is this migration's fence of this instance;
//! a group of that name that is not is refused before anything changes. The
//! operator may instead name a group of their own (`--fence-group`), which
//! pgferry neither creates nor deletes.
//!
//! The source's groups before the fence are journaled before the swap, and
//! lifting puts back exactly that list, then deletes the group pgferry created,
//! once its tags still say so. A group made ahead (`--prepare`) for a cutover
//! that never fenced is deleted by the lift too, the source left as it is, so
//! that an abandoned cutover leaves nothing of pgferry's behind. A security group change applies to new
//! connections; the cutover's database fence ends the existing ones.

use std::net::IpAddr;

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::names::MigrationName;
use serde::Serialize;
use serde_json::{json, Value};

use crate::control::ControlPlane;
use crate::journal::{Event, Journal};
use crate::model::{GroupRequest, Ingress, Instance, Modification, SecurityGroup, Tag};
use crate::names::AwsNames;
use crate::retry::{call, Pacing};
use crate::wait::{self, Look};

/// The tag naming the migration whose fence a group is.
pub const MIGRATION_TAG: &str = "pgferry:migration";
/// The tag naming the instance a group fences.
pub const FENCED_TAG: &str = "pgferry:fence-of";

/// Where the restrictive group comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceGroup {
    /// pgferry's own, created (or found again) in the instance's VPC, open to
    /// these ranges only (checked by [`allowed_ranges`]).
    Own { allow: Vec<String> },
    /// The operator's (`sg-...`): pgferry neither creates nor deletes it.
    Given(String),
}

#[derive(Clone, Debug)]
pub struct FencePlan {
    pub migration: MigrationName,
    pub source: String,
    pub group: FenceGroup,
    /// Make pgferry's group and its rules, but leave the source's groups alone:
    /// run ahead of the cutover, so that its fence command only swaps.
    pub prepare_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FenceReport {
    pub source: String,
    pub fence_group: String,
    /// pgferry created the fence group, and deletes it when the fence is lifted.
    pub own_group: bool,
    /// The inbound rules of pgferry's group.
    pub ingress: Vec<Ingress>,
    /// The groups before the fence, which lifting restores.
    pub previous: Vec<String>,
    /// The groups the source has now.
    pub now: Vec<String>,
    /// The fence group deleted by this lift.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
    pub notes: Vec<String>,
}

/// Checks the operator's `--allow-cidr` ranges: IPv4 or IPv6, a prefix, and not everyone.
pub fn allowed_ranges(ranges: &[String]) -> Result<Vec<String>> {
    if ranges.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            "pgferry aws fence needs --allow-cidr: the group pgferry creates lets in nothing else, \
             and pgferry itself must still reach the source during the cutover's drain",
        )
        .with_hint(
            "pass --allow-cidr <address pgferry connects from>/32 (repeat it for the administrators), \
             or --fence-group with a group of your own",
        ));
    }
    let mut checked = Vec::new();
    for range in ranges {
        let bad = |why: &str| {
            Error::new(ErrorKind::Usage, format!("--allow-cidr {range}: {why}"))
                .with_hint("give an address range such as 10.0.3.17/32 or 2001:db8::/64")
        };
        let (address, prefix) = range.split_once('/').ok_or_else(|| bad("no /prefix length"))?;
        let address: IpAddr = address.parse().map_err(|_| bad("not an IPv4 or IPv6 address"))?;
        let longest = if address.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= longest).ok_or_else(|| bad("not a prefix length"))?;
        if prefix == 0 {
            return Err(bad("lets every address in, so the fence would keep no one out"));
        }
        if !checked.contains(range) {
            checked.push(range.clone());
        }
    }
    Ok(checked)
}

/// Why `group` is not this migration's fence of `instance`, if it is not.
pub fn not_ours(group: &SecurityGroup, migration: &str, instance: &str) -> Option<String> {
    match (group.tag(MIGRATION_TAG), group.tag(FENCED_TAG)) {
        (Some(m), Some(i)) if m == migration && i == instance => None,
        (None, _) | (_, None) => {
            Some(format!("it is not tagged {MIGRATION_TAG} and {FENCED_TAG}: pgferry did not create it"))
        }
        (Some(m), Some(i)) => Some(format!("pgferry created it for migration {m}'s fence of {i}")),
    }
}

/// The rules of `wanted` that `group` lacks.
pub fn missing_rules(group: &SecurityGroup, wanted: &[Ingress]) -> Vec<Ingress> {
    wanted.iter().filter(|w| !group.ingress.contains(w)).cloned().collect()
}

/// The last fence recorded, and how far its lifting got.
struct Recorded {
    /// The instance fenced.
    instance: String,
    detail: Value,
    lifted: bool,
    deleted: bool,
}

fn last_fence(journal: &Journal) -> Option<Recorded> {
    let entries = journal.entries();
    let at = entries.iter().rposition(|e| e.step == "fence" && e.event == Event::Intent)?;
    let after = &entries[at + 1..];
    let done = |step: &str| after.iter().any(|e| e.step == step && e.event == Event::Outcome);
    Some(Recorded {
        instance: entries[at].resource.clone(),
        detail: entries[at].detail.clone(),
        lifted: done("lift"),
        deleted: done("delete-fence-group"),
    })
}

/// The fence recorded here is of one instance: another one named on the command
/// line is refused before anything changes (its groups would be swapped for this
/// fence's, or set to the other instance's list).
fn same_instance(recorded: &Recorded, source: &str) -> Result<()> {
    if recorded.instance == source {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Usage, format!("this state directory's fence is of {}, not {source}", recorded.instance))
        .with_hint(format!(
            "pass --source-instance {}; to fence {source}, use another --name and --state-dir",
            recorded.instance
        )))
}

fn groups(detail: &Value, key: &str) -> Vec<String> {
    detail[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

async fn instance<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<Instance> {
    call(pacing, || cloud.describe_instance(id)).await?.ok_or_else(|| crate::check::no_instance(id))
}

/// Records a step's outcome; a failpoint for the kill tests.
fn outcome(journal: &mut Journal, step: &str, resource: &str, detail: Value) -> Result<()> {
    journal.record(step, Event::Outcome, resource, detail)?;
    pgferry::failpoint::hit(&format!("aws-after-{step}"));
    Ok(())
}

/// Swaps the source's security groups for the fence group (resumable).
pub async fn fence<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &FencePlan,
) -> Result<FenceReport> {
    let unlifted = last_fence(journal).filter(|r| !r.lifted);
    if let Some(recorded) = &unlifted {
        same_instance(recorded, &plan.source)?;
    }
    let source = instance(cloud, pacing, &plan.source).await?;
    let mut report = FenceReport { source: plan.source.clone(), ..FenceReport::default() };
    if let Some(recorded) = unlifted {
        report.fence_group = recorded.detail["group"].as_str().unwrap_or_default().to_owned();
        report.own_group = recorded.detail["own"] == true;
        report.previous = groups(&recorded.detail, "previous");
        report.now = if plan.prepare_only {
            source.security_group_ids()
        } else {
            swap(cloud, pacing, journal, "fence", &source, std::slice::from_ref(&report.fence_group)).await?
        };
        return Ok(report);
    }
    report.previous = source.security_group_ids();
    match &plan.group {
        FenceGroup::Given(group) => {
            refuse_unrecorded(&plan.source, &report.previous, group)?;
            report.fence_group = group.clone();
        }
        FenceGroup::Own { allow } => {
            let group = own_group(cloud, pacing, journal, plan, &source).await?;
            refuse_unrecorded(&plan.source, &report.previous, &group.id)?;
            report.ingress = open_rules(cloud, pacing, journal, &source, &group, allow).await?;
            report.fence_group = group.id;
            report.own_group = true;
        }
    }
    if plan.prepare_only {
        report.now = report.previous.clone();
        report.notes.push(format!("{} is ready; the source's groups are unchanged", report.fence_group));
        return Ok(report);
    }
    let detail = json!({"group": report.fence_group, "own": report.own_group, "previous": report.previous});
    journal.record("fence", Event::Intent, &plan.source, detail)?;
    report.now = swap(cloud, pacing, journal, "fence", &source, std::slice::from_ref(&report.fence_group)).await?;
    Ok(report)
}

/// The source already has only the fence group, and no fence is recorded: its groups before are lost.
fn refuse_unrecorded(source: &str, previous: &[String], group: &str) -> Result<()> {
    if previous != [group] {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Precondition, format!("{source} already has only {group}"))
        .with_hint("pgferry has no record of its groups before that; set them back with aws rds modify-db-instance"))
}

/// Finds pgferry's fence group in the source's VPC, or creates it with its tags.
async fn own_group<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &FencePlan,
    source: &Instance,
) -> Result<SecurityGroup> {
    let name = AwsNames::new(&plan.migration)?.fence_group();
    let migration = plan.migration.as_str();
    let vpc = source.vpc_id.clone().ok_or_else(|| {
        Error::new(ErrorKind::Precondition, format!("{} is in no VPC (its subnet group names none)", plan.source))
            .with_hint("give a group of your own with --fence-group")
    })?;
    let adopt = |group: SecurityGroup| match not_ours(&group, migration, &plan.source) {
        None => Ok(group),
        Some(why) => Err(Error::new(
            ErrorKind::Precondition,
            format!(
                "security group {name} ({}) in {vpc} exists and is not this migration's fence of {}: {why}",
                group.id, plan.source
            ),
        )
        .with_hint(format!(
            "pgferry adopts and later deletes only a group it tagged for this migration; delete or rename {} if it is \
             a leftover, choose another --name, or pass it as --fence-group to use it as your own",
            group.id
        ))),
    };
    if let Some(found) = call(pacing, || cloud.find_security_group(&vpc, &name)).await? {
        let group = adopt(found)?;
        let last = journal.entries().iter().rev().find(|e| e.step == "fence-group" && e.resource == name);
        if last.is_none_or(|e| e.event == Event::Intent) {
            tracing::info!(group = %group.id, %name, "found pgferry's fence group: an earlier run created it");
            journal.record("fence-group", Event::Call, &name, json!({"group": group.id, "found": true}))?;
        }
        return Ok(group);
    }
    let tags = vec![
        Tag { key: "Name".into(), value: name.clone() },
        Tag { key: MIGRATION_TAG.into(), value: migration.to_owned() },
        Tag { key: FENCED_TAG.into(), value: plan.source.clone() },
    ];
    let request = GroupRequest {
        name: name.clone(),
        description: format!("pgferry fence of {} (migration {migration}): only the allowed ranges", plan.source),
        vpc_id: vpc.clone(),
        tags: tags.clone(),
    };
    journal.record("fence-group", Event::Intent, &name, json!({"vpc": vpc, "tags": tags}))?;
    let (request, vpc_ref, name_ref) = (&request, &vpc, &name);
    let created = call(pacing, || async move {
        match cloud.create_security_group(request).await {
            Ok(id) => Ok(Some(id)),
            // Created meanwhile (by a run whose answer was lost, and not visible yet to the search).
            Err(err) if err.code.as_deref() == Some("InvalidGroup.Duplicate") => Ok(None),
            Err(err) => Err(err),
        }
    })
    .await?;
    let group = match created {
        Some(id) => SecurityGroup { id, name: name.clone(), vpc_id: vpc.clone(), tags, ingress: Vec::new() },
        None => adopt(
            wait::until(pacing, &format!("security group {name}"), || async move {
                Ok(match call(pacing, || cloud.find_security_group(vpc_ref, name_ref)).await? {
                    Some(group) => Look::Ready(group),
                    None => Look::Waiting("not listed yet".into()),
                })
            })
            .await?,
        )?,
    };
    journal.record("fence-group", Event::Call, &name, json!({"group": group.id}))?;
    Ok(group)
}

/// Adds the allowed ranges the group lacks (TCP to the source's port); its rules after.
async fn open_rules<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    source: &Instance,
    group: &SecurityGroup,
    allow: &[String],
) -> Result<Vec<Ingress>> {
    let port = source.port.ok_or_else(|| {
        Error::new(ErrorKind::Precondition, format!("{} reports no port", source.identifier))
            .with_hint("wait until the instance is available, then rerun")
    })?;
    let wanted: Vec<Ingress> = allow.iter().map(|range| Ingress::tcp(port, range)).collect();
    for rule in missing_rules(group, &wanted) {
        journal.record("fence-rule", Event::Intent, &group.id, json!(rule))?;
        call(pacing, || cloud.allow_ingress(&group.id, &rule)).await?;
        journal.record("fence-rule", Event::Call, &group.id, Value::Null)?;
    }
    let mut ingress = group.ingress.clone();
    ingress.extend(missing_rules(group, &wanted));
    outcome(journal, "fence-group", &group.name, json!({"group": group.id, "ingress": ingress}))?;
    Ok(ingress)
}

/// Puts back exactly the groups the source had before the fence, then deletes pgferry's fence group.
pub async fn lift<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    migration: &MigrationName,
    source: &str,
) -> Result<FenceReport> {
    let recorded = last_fence(journal);
    let own = recorded.as_ref().is_some_and(|r| r.detail["own"] == true);
    let Some(recorded) = recorded.filter(|r| !r.lifted || (own && !r.deleted)) else {
        if let Some(group) = prepared_group(journal) {
            return lift_prepared(cloud, pacing, journal, migration, source, group).await;
        }
        // Lifted already (by the same fence's lift for another database of an
        // instance's cutover, or a lift run twice): nothing to do.
        if let Some(done) = last_fence(journal) {
            same_instance(&done, source)?;
            return Ok(FenceReport {
                source: source.to_owned(),
                fence_group: done.detail["group"].as_str().unwrap_or_default().to_owned(),
                own_group: own,
                previous: groups(&done.detail, "previous"),
                now: groups(&done.detail, "previous"),
                notes: vec!["lifted already: nothing was changed".to_owned()],
                ..Default::default()
            });
        }
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("no fence of {source} is recorded in this state directory"),
        )
        .with_hint("pass the --state-dir and --name used by pgferry aws fence"));
    };
    same_instance(&recorded, source)?;
    let group = recorded.detail["group"].as_str().unwrap_or_default().to_owned();
    let previous = groups(&recorded.detail, "previous");
    let instance = instance(cloud, pacing, source).await?;
    let now = if recorded.lifted {
        instance.security_group_ids()
    } else {
        journal.record("lift", Event::Intent, source, json!({"restore": previous}))?;
        swap(cloud, pacing, journal, "lift", &instance, &previous).await?
    };
    let mut report = FenceReport {
        source: source.to_owned(),
        fence_group: group,
        own_group: own,
        previous,
        now,
        ..Default::default()
    };
    if own {
        remove_group(cloud, pacing, journal, migration, &mut report).await?;
    }
    Ok(report)
}

/// pgferry's group made by `--prepare` (its rules are the last `fence-group` outcome)
/// that no fence has used since, nor a lift deleted.
fn prepared_group(journal: &Journal) -> Option<String> {
    let entries = journal.entries();
    let at = entries.iter().rposition(|e| e.step == "fence-group" && e.event == Event::Outcome)?;
    let group = entries[at].detail["group"].as_str()?.to_owned();
    let since = &entries[at + 1..];
    let used_or_gone = since.iter().any(|e| {
        (e.step == "fence" && e.event == Event::Intent)
            || (e.step == "delete-fence-group" && e.event == Event::Outcome && e.resource == group)
    });
    (!used_or_gone).then_some(group)
}

/// Deletes a prepared group that never fenced the source (the cutover was abandoned before its fence).
async fn lift_prepared<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    migration: &MigrationName,
    source: &str,
    group: String,
) -> Result<FenceReport> {
    let fenced = call(pacing, || cloud.describe_security_group(&group))
        .await?
        .and_then(|g| g.tag(FENCED_TAG).map(str::to_owned));
    if let Some(fenced) = fenced.filter(|f| f != source) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("the group {group} was prepared to fence {fenced}, not {source}"),
        )
        .with_hint(format!("pass --source-instance {fenced}")));
    }
    let now = instance(cloud, pacing, source).await?.security_group_ids();
    if now.contains(&group) {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("{source} holds {group}, which pgferry prepared, but no fence of it is recorded here"),
        )
        .with_hint(
            "pgferry has no record of the groups before that; set them back with aws rds modify-db-instance, then rerun",
        ));
    }
    let mut report = FenceReport {
        source: source.to_owned(),
        fence_group: group,
        own_group: true,
        previous: now.clone(),
        now,
        notes: vec!["the group was prepared and never swapped in: the source's groups are unchanged".into()],
        ..FenceReport::default()
    };
    remove_group(cloud, pacing, journal, migration, &mut report).await?;
    Ok(report)
}

/// Deletes pgferry's fence group once the source has left it, if its tags still say it is pgferry's.
async fn remove_group<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    migration: &MigrationName,
    report: &mut FenceReport,
) -> Result<()> {
    const STEP: &str = "delete-fence-group";
    let id = report.fence_group.clone();
    let Some(group) = call(pacing, || cloud.describe_security_group(&id)).await? else {
        return outcome(journal, STEP, &id, json!({"gone": true}));
    };
    if let Some(why) = not_ours(&group, migration.as_str(), &report.source) {
        report.notes.push(format!("{id} is kept: {why}"));
        return outcome(journal, STEP, &id, json!({"kept": why}));
    }
    journal.record(STEP, Event::Intent, &id, json!({"name": group.name}))?;
    // EC2 refuses while the instance's network interfaces still hold the group.
    let id_ref = &id;
    wait::until(pacing, &format!("deleting {id}"), || async move {
        let deleted = call(pacing, || async move {
            match cloud.delete_security_group(id_ref).await {
                Ok(()) => Ok(true),
                Err(err) if err.code.as_deref() == Some("DependencyViolation") => Ok(false),
                Err(err) if err.code.as_deref() == Some("InvalidGroup.NotFound") => Ok(true),
                Err(err) => Err(err),
            }
        })
        .await?;
        Ok(if deleted { Look::Ready(()) } else { Look::Waiting("still in use".into()) })
    })
    .await?;
    journal.record(STEP, Event::Call, &id, Value::Null)?;
    report.deleted = Some(id.clone());
    outcome(journal, STEP, &id, Value::Null)
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
    outcome(journal, step, id, json!({"groups": now}))?;
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(r: &[&str]) -> Result<Vec<String>> {
        allowed_ranges(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn allowed_ranges_are_addresses_with_a_prefix_and_not_everyone() {
        assert_eq!(
            ranges(&["10.0.3.17/32", "2001:db8::/64", "10.0.3.17/32"]).unwrap(),
            ["10.0.3.17/32", "2001:db8::/64"]
        );
        for (bad, why) in [
            ("10.0.3.17", "no /prefix"),
            ("10.0.3/24", "not an IPv4"),
            ("10.0.0.0/33", "not a prefix length"),
            ("0.0.0.0/0", "keep no one out"),
            ("::/0", "keep no one out"),
        ] {
            let err = ranges(&[bad]).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Usage);
            assert!(err.message.contains(why), "{bad}: {}", err.message);
            assert!(err.hint.is_some());
        }
        let none = ranges(&[]).unwrap_err();
        assert!(none.message.contains("pgferry itself must still reach the source"), "{}", none.message);
    }

    fn group(tags: &[(&str, &str)]) -> SecurityGroup {
        SecurityGroup {
            id: "sg-1".into(),
            tags: tags.iter().map(|(k, v)| Tag { key: k.to_string(), value: v.to_string() }).collect(),
            ingress: vec![Ingress::tcp(5432, "10.0.0.1/32")],
            ..SecurityGroup::default()
        }
    }

    #[test]
    fn only_this_migrations_fence_of_this_instance_is_ours() {
        let ours = group(&[(MIGRATION_TAG, "main"), (FENCED_TAG, "prod-db")]);
        assert_eq!(not_ours(&ours, "main", "prod-db"), None);
        assert!(not_ours(&ours, "other", "prod-db").unwrap().contains("migration main's fence of prod-db"));
        assert!(not_ours(&ours, "main", "db-2").is_some());
        assert!(not_ours(&group(&[("Name", "x")]), "main", "prod-db").unwrap().contains("did not create it"));
        assert!(not_ours(&group(&[(MIGRATION_TAG, "main")]), "main", "prod-db").is_some());
    }

    #[test]
    fn only_the_missing_rules_are_added() {
        let wanted = [Ingress::tcp(5432, "10.0.0.1/32"), Ingress::tcp(5432, "10.0.0.2/32")];
        assert_eq!(missing_rules(&group(&[]), &wanted), [Ingress::tcp(5432, "10.0.0.2/32")]);
    }
}
