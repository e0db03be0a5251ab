//! `pgferry aws check`: can this RDS instance be encrypted by pgferry, and
//! which path fits it (pgferry's, or a Blue/Green deployment: [`crate::choice`])?
//!
//! The facts are read with a few calls ([`gather`]); the verdicts are a pure
//! function of them ([`verdicts`]). The database-level checks (tables without a
//! key, the replication role's grants, ...) are `pgferry check`'s, run on the
//! source when its connection is given, in every database of the instance (or
//! those `--database` names), and joined to these, each naming its database
//! ([`database_verdicts`], [`crate::pg::instance_report`]); without it the
//! report says they were not run.

use serde::Serialize;

use crate::control::ControlPlane;
use crate::model::{Arn, Instance, Parameter};
use crate::retry::{call, Pacing};
use pgferry::{Error, ErrorKind, Result};

/// The parameter that turns on logical decoding on RDS (`wal_level = logical`).
pub const LOGICAL_REPLICATION: &str = "rds.logical_replication";

/// What the check reads from AWS.
#[derive(Clone, Debug, Serialize)]
pub struct Facts {
    pub instance: Instance,
    /// `rds.logical_replication` as the instance's parameter group sets it.
    pub logical_replication: Option<Parameter>,
    /// The instance's read replicas in its own region (a cross-region one is
    /// listed by ARN in `instance.read_replicas` and not described).
    pub replicas: Vec<Instance>,
    /// The RDS Proxies targeting the instance; `None` when they could not be read.
    pub proxies: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// pgferry cannot start until this is fixed.
    Blocker,
    /// Works, but the operator should act or know.
    Warning,
    Note,
}

/// One verdict, with how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn finding(severity: Severity, what: impl Into<String>, fix: Option<String>) -> Finding {
    Finding { severity, what: what.into(), fix }
}

/// The instance the operator named does not exist where pgferry looks.
pub fn no_instance(id: &str) -> Error {
    Error::new(ErrorKind::Precondition, format!("there is no RDS instance {id}"))
        .with_hint("check --source-instance and AWS_REGION (aws rds describe-db-instances lists them)")
}

/// Reads the facts of one instance.
pub async fn gather<C: ControlPlane>(cloud: &C, pacing: &Pacing, id: &str) -> Result<Facts> {
    let instance = call(pacing, || cloud.describe_instance(id)).await?.ok_or_else(|| no_instance(id))?;
    let logical_replication = match &instance.parameter_group {
        Some(group) => call(pacing, || cloud.describe_parameter(&group.name, LOGICAL_REPLICATION)).await?,
        None => None,
    };
    let mut replicas = Vec::new();
    for id in instance.read_replicas.iter().filter(|r| Arn::parse(r).is_none()) {
        if let Some(replica) = call(pacing, || cloud.describe_instance(id)).await? {
            replicas.push(replica);
        }
    }
    let proxies = match call(pacing, || cloud.proxies_targeting(id)).await {
        Ok(proxies) => Some(proxies),
        Err(err) => {
            tracing::warn!(%err, "cannot tell which RDS Proxies target the instance");
            None
        }
    };
    Ok(Facts { instance, logical_replication, replicas, proxies })
}

const REBOOT_WARNING: &str =
    "the reboot is a short outage (a minute or two; a failover with Multi-AZ): schedule it before the migration day";

/// The verdicts, most severe first.
pub fn verdicts(facts: &Facts) -> Vec<Finding> {
    let i = &facts.instance;
    let mut found = Vec::new();
    if i.engine != "postgres" {
        found.push(finding(
            Severity::Blocker,
            format!("the engine is {}, not postgres", i.engine),
            Some(
                "pgferry aws moves RDS for PostgreSQL instances (Aurora encrypts through a cluster snapshot copy)"
                    .into(),
            ),
        ));
    }
    if i.status != "available" {
        found.push(finding(
            Severity::Blocker,
            format!("the instance is {}, not available", i.status),
            Some("wait for it to be available, then check again".into()),
        ));
    }
    if i.replica_of.is_some() {
        found.push(finding(
            Severity::Blocker,
            "the instance is a read replica".to_owned(),
            Some("name its primary: pgferry encrypts a primary and recreates its replicas".into()),
        ));
    }
    found.extend(logical_replication(facts));
    if i.backup_retention_days == 0 {
        found.push(finding(
            Severity::Blocker,
            "automated backups are off (retention 0 days)".to_owned(),
            Some(format!(
                "turn them on: aws rds modify-db-instance --db-instance-identifier {} --backup-retention-period 7 --apply-immediately; the target is given the same retention, and read replicas need it",
                i.identifier
            )),
        ));
    }
    if i.storage_encrypted {
        found.push(finding(
            Severity::Note,
            format!("the instance is already encrypted (key {})", i.kms_key_id.as_deref().unwrap_or("unknown")),
            Some("encrypting again only changes the key".into()),
        ));
    }
    found.push(finding(
        Severity::Note,
        format!(
            "pgferry replicates as the master user {} or a role granted rds_replication",
            i.master_username.as_deref().unwrap_or("(unknown)")
        ),
        Some("pgferry check, run against the source, verifies the role's grants".into()),
    ));
    if !i.read_replicas.is_empty() {
        found.push(finding(
            Severity::Note,
            format!("read replicas: {}", i.read_replicas.join(", ")),
            Some("pgferry aws finish creates matching replicas of the target".into()),
        ));
    }
    found.sort_by_key(|f| f.severity);
    found
}

fn logical_replication(facts: &Facts) -> Option<Finding> {
    let i = &facts.instance;
    let Some(group) = &i.parameter_group else {
        return Some(finding(Severity::Blocker, "the instance has no parameter group".to_owned(), None));
    };
    let set_it = format!(
        "aws rds modify-db-parameter-group --db-parameter-group-name {} --parameters ParameterName={LOGICAL_REPLICATION},ParameterValue=1,ApplyMethod=pending-reboot",
        group.name
    );
    let reboot = format!("aws rds reboot-db-instance --db-instance-identifier {}", i.identifier);
    if group.name.starts_with("default.") {
        return Some(finding(
            Severity::Blocker,
            format!("{LOGICAL_REPLICATION} cannot be set: the instance uses the default parameter group {}", group.name),
            Some(format!(
                "1. aws rds create-db-parameter-group --db-parameter-group-name <name> --db-parameter-group-family <family of {}> --description 'logical replication'\n2. {}\n3. aws rds modify-db-instance --db-instance-identifier {} --db-parameter-group-name <name>\n4. {reboot}\n{REBOOT_WARNING}",
                group.name,
                set_it.replace(&group.name, "<name>"),
                i.identifier
            )),
        ));
    }
    let on = facts.logical_replication.as_ref().and_then(|p| p.value.as_deref()) == Some("1");
    if !on {
        return Some(finding(
            Severity::Blocker,
            format!("{LOGICAL_REPLICATION} is not 1 in parameter group {}", group.name),
            Some(format!("1. {set_it}\n2. {reboot}\n{REBOOT_WARNING}")),
        ));
    }
    if group.apply_status != "in-sync" {
        return Some(finding(
            Severity::Blocker,
            format!(
                "{LOGICAL_REPLICATION}=1 is set in {} but not in effect: the parameter group is {}",
                group.name, group.apply_status
            ),
            Some(format!("{reboot}\n{REBOOT_WARNING}")),
        ));
    }
    None
}

/// `pgferry check`'s findings on the source database, as verdicts of this check.
pub fn database_verdicts(database: &str, findings: &[pgferry_core::preflight::Finding]) -> Vec<Finding> {
    findings
        .iter()
        .map(|f| {
            let severity = match f.severity {
                pgferry_core::preflight::Severity::Problem => Severity::Blocker,
                pgferry_core::preflight::Severity::Warning => Severity::Warning,
            };
            let what = if f.objects.is_empty() {
                format!("database {database:?}: {}", f.what)
            } else {
                format!("database {database:?}: {} ({})", f.what, f.objects.join(", "))
            };
            finding(severity, what, Some(f.fix.clone()))
        })
        .collect()
}

/// A database the operator left out of the instance: a restore brings it over,
/// and its writes after the snapshot never follow.
pub fn left_out(database: &str, why: pgferry_core::instance::LeftOut) -> Finding {
    let by = match why {
        pgferry_core::instance::LeftOut::Excluded => "excluded by --exclude-database",
        pgferry_core::instance::LeftOut::NotNamed => "not named by --database",
        other => other.as_str(),
    };
    finding(
        Severity::Warning,
        format!("database {database:?} is left out ({by}): its writes after the snapshot will NOT reach the target"),
        Some(format!("drop --exclude-database {database:?} (or name it with --database) to move it too")),
    )
}

/// `--database`/`--exclude-database` leave no database that allows
/// connections: nothing would be followed (`aws encrypt` refuses such a run).
pub fn nothing_to_follow() -> Finding {
    finding(
        Severity::Blocker,
        "no database of the instance is left to check or follow",
        Some("leave --exclude-database out, or name a database that allows connections with --database".into()),
    )
}

/// A database of the instance that pgferry's checks could not run in.
pub fn not_checked(database: &str, e: pgferry::Error) -> Finding {
    finding(
        Severity::Blocker,
        format!("database {database:?}: cannot be checked: {}", e.message),
        Some(e.hint.unwrap_or_else(|| "make the database reachable to --source's role, then check again".into())),
    )
}

/// The verdict when the source database was not reachable to this check.
pub fn database_not_checked() -> Finding {
    finding(
        Severity::Warning,
        "the database-level checks of pgferry check were not run (tables without a key, the replication role, settings)",
        Some("pass --source with the instance's connection (or set PGFERRY_SOURCE) to run them too".into()),
    )
}

/// Whether the verdicts let the migration start.
pub fn ready(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.severity != Severity::Blocker)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::ParameterGroupMembership;

    pub(crate) fn good() -> Facts {
        Facts {
            instance: Instance {
                identifier: "db".into(),
                status: "available".into(),
                engine: "postgres".into(),
                master_username: Some("postgres".into()),
                parameter_group: Some(ParameterGroupMembership {
                    name: "pg16-logical".into(),
                    apply_status: "in-sync".into(),
                }),
                backup_retention_days: 7,
                ..Instance::default()
            },
            logical_replication: Some(Parameter {
                value: Some("1".into()),
                apply_method: Some("pending-reboot".into()),
            }),
            replicas: vec![],
            proxies: Some(vec![]),
        }
    }

    fn blockers(facts: &Facts) -> Vec<String> {
        verdicts(facts).into_iter().filter(|f| f.severity == Severity::Blocker).map(|f| f.what).collect()
    }

    #[test]
    fn database_findings_join_the_verdicts_with_their_fix_and_severity() {
        use pgferry_core::preflight::{Finding as Db, Severity as DbSeverity, Side};
        let db = [
            Db {
                side: Side::Source,
                severity: DbSeverity::Problem,
                code: "replica_identity",
                what: "2 tables have no primary key".into(),
                fix: "add a key".into(),
                objects: vec!["public.a".into(), "public.b".into()],
            },
            Db {
                side: Side::Source,
                severity: DbSeverity::Warning,
                code: "x",
                what: "long transaction".into(),
                fix: "end it".into(),
                objects: vec![],
            },
        ];
        let found = database_verdicts("app", &db);
        assert_eq!(found[0].severity, Severity::Blocker);
        assert_eq!(found[0].what, "database \"app\": 2 tables have no primary key (public.a, public.b)");
        assert_eq!(found[0].fix.as_deref(), Some("add a key"));
        assert_eq!(found[1].severity, Severity::Warning);
        assert!(!ready(&found), "a database problem blocks like a cloud one");
        assert!(ready(&[database_not_checked()]), "not running them is a warning, not a blocker");
    }

    #[test]
    fn a_good_instance_is_ready() {
        let found = verdicts(&good());
        assert!(ready(&found), "{found:?}");
        assert!(found.iter().any(|f| f.what.contains("master user postgres")));
    }

    #[test]
    fn logical_replication_off_gives_the_steps_and_the_outage_warning() {
        let mut facts = good();
        facts.logical_replication = None;
        let found = verdicts(&facts);
        assert!(!ready(&found));
        let fix = found[0].fix.as_deref().unwrap();
        assert!(fix.contains("ParameterName=rds.logical_replication,ParameterValue=1"), "{fix}");
        assert!(fix.contains("reboot-db-instance --db-instance-identifier db"), "{fix}");
        assert!(fix.contains("short outage"), "{fix}");
    }

    #[test]
    fn the_default_parameter_group_needs_a_custom_one() {
        let mut facts = good();
        facts.instance.parameter_group.as_mut().unwrap().name = "default.postgres16".into();
        let found = verdicts(&facts);
        assert!(found[0].what.contains("default parameter group"));
        assert!(found[0].fix.as_deref().unwrap().contains("create-db-parameter-group"));
    }

    #[test]
    fn a_parameter_pending_reboot_is_not_in_effect() {
        let mut facts = good();
        facts.instance.parameter_group.as_mut().unwrap().apply_status = "pending-reboot".into();
        assert_eq!(
            blockers(&facts),
            vec!["rds.logical_replication=1 is set in pg16-logical but not in effect: the parameter group is pending-reboot"]
        );
    }

    #[test]
    fn other_blockers_and_notes() {
        let mut facts = good();
        facts.instance.backup_retention_days = 0;
        facts.instance.status = "backing-up".into();
        facts.instance.engine = "mysql".into();
        facts.instance.read_replicas = vec!["db-r1".into()];
        assert_eq!(
            blockers(&facts),
            vec![
                "the engine is mysql, not postgres",
                "the instance is backing-up, not available",
                "automated backups are off (retention 0 days)"
            ]
        );
        assert!(verdicts(&facts).iter().any(|f| f.what == "read replicas: db-r1"));
    }
}
