//! The settings parity report: the source beside the restored target.
//!
//! A restore from a snapshot does not copy an instance's settings; pgferry
//! passes each one and then modifies what a restore cannot take. This report is
//! the proof: every setting is compared, and only the identifier, the endpoint,
//! the encryption and the KMS key may differ (those are the point of the
//! migration). Any other difference stops the run before replication starts,
//! because fixing it later means another reboot or restore.

use serde::Serialize;

use crate::model::{Instance, Modification};

/// One setting, source beside target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub setting: &'static str,
    pub source: String,
    pub target: String,
}

fn show<T: std::fmt::Debug>(value: &Option<T>) -> String {
    match value {
        Some(v) => format!("{v:?}").trim_matches('"').to_owned(),
        None => "(none)".to_owned(),
    }
}

fn list(values: &[String]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        "(none)".to_owned()
    } else {
        sorted.join(", ")
    }
}

/// The compared settings of an instance, by name, rendered for the report.
/// Settings that only mean something when another is on (the zone of a
/// Single-AZ instance, the Performance Insights key) are compared only then.
pub fn settings(i: &Instance) -> Vec<(&'static str, String)> {
    let mut tags: Vec<String> = i.tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect();
    tags.sort();
    let monitoring = i.monitoring_interval.unwrap_or(0);
    vec![
        ("engine", i.engine.clone()),
        ("engine version", i.engine_version.clone()),
        ("master user", show(&i.master_username)),
        ("instance class", i.instance_class.clone()),
        ("storage type", show(&i.storage_type)),
        ("allocated storage (GiB)", i.allocated_storage.to_string()),
        ("storage autoscaling limit (GiB)", show(&i.max_allocated_storage)),
        ("IOPS", show(&i.iops)),
        ("storage throughput (MiB/s)", show(&i.storage_throughput)),
        ("subnet group", show(&i.subnet_group)),
        ("VPC", show(&i.vpc_id)),
        ("security groups", list(&i.security_group_ids())),
        ("parameter group", show(&i.parameter_group.as_ref().map(|g| &g.name))),
        ("option group", show(&i.option_group)),
        ("Multi-AZ", i.multi_az.to_string()),
        ("availability zone", if i.multi_az { "(chosen by RDS)".to_owned() } else { show(&i.availability_zone) }),
        ("port", show(&i.port)),
        ("publicly accessible", i.publicly_accessible.to_string()),
        ("auto minor version upgrade", i.auto_minor_version_upgrade.to_string()),
        ("IAM authentication", i.iam_auth.to_string()),
        ("deletion protection", i.deletion_protection.to_string()),
        ("copy tags to snapshots", i.copy_tags_to_snapshot.to_string()),
        ("tags", list(&tags)),
        ("CA certificate", show(&i.ca_certificate)),
        ("backup retention (days)", i.backup_retention_days.to_string()),
        ("backup window", show(&i.backup_window)),
        ("maintenance window", show(&i.maintenance_window)),
        ("monitoring interval (s)", monitoring.to_string()),
        ("monitoring role", if monitoring > 0 { show(&i.monitoring_role_arn) } else { "(off)".to_owned() }),
        ("Performance Insights", i.performance_insights.to_string()),
        (
            "Performance Insights key",
            if i.performance_insights { show(&i.performance_insights_kms_key) } else { "(off)".to_owned() },
        ),
        (
            "Performance Insights retention (days)",
            if i.performance_insights { show(&i.performance_insights_retention_days) } else { "(off)".to_owned() },
        ),
        ("log exports", list(&i.log_exports)),
    ]
}

/// Settings that follow another: when the other differs, only it is reported.
const DEPENDS_ON: &[(&str, &str)] = &[
    ("availability zone", "Multi-AZ"),
    ("monitoring role", "monitoring interval (s)"),
    ("Performance Insights key", "Performance Insights"),
    ("Performance Insights retention (days)", "Performance Insights"),
];

/// Every compared setting that differs between source and target.
pub fn differences(source: &Instance, target: &Instance) -> Vec<Row> {
    let all: Vec<Row> = settings(source)
        .into_iter()
        .zip(settings(target))
        .filter(|((_, s), (_, t))| s != t)
        .map(|((setting, source), (_, target))| Row { setting, source, target })
        .collect();
    let differs = |name: &str| all.iter().any(|d| d.setting == name);
    all.iter()
        .filter(|d| !DEPENDS_ON.iter().any(|(dependent, parent)| d.setting == *dependent && differs(parent)))
        .cloned()
        .collect()
}

/// What to modify on a freshly restored target so that it matches the source:
/// the settings a restore does not take, and any the restore did not apply.
pub fn after_restore(source: &Instance, target: &Instance) -> Modification {
    let mut source_groups = source.security_group_ids();
    let mut target_groups = target.security_group_ids();
    source_groups.sort();
    target_groups.sort();
    let enable: Vec<String> = source.log_exports.iter().filter(|l| !target.log_exports.contains(l)).cloned().collect();
    let disable: Vec<String> = target.log_exports.iter().filter(|l| !source.log_exports.contains(l)).cloned().collect();
    let monitoring = |i: &Instance| (i.monitoring_interval.unwrap_or(0), i.monitoring_role_arn.clone());
    let insights = |i: &Instance| {
        (i.performance_insights, i.performance_insights_kms_key.clone(), i.performance_insights_retention_days)
    };
    Modification {
        backup_retention_days: changed(&source.backup_retention_days, &target.backup_retention_days),
        backup_window: changed(&source.backup_window, &target.backup_window).flatten(),
        maintenance_window: changed(&source.maintenance_window, &target.maintenance_window).flatten(),
        max_allocated_storage: changed(&source.max_allocated_storage, &target.max_allocated_storage).flatten(),
        monitoring: changed(&monitoring(source), &monitoring(target)),
        performance_insights: changed(&insights(source), &insights(target)),
        log_exports: (!enable.is_empty() || !disable.is_empty()).then_some((enable, disable)),
        security_groups: changed(&source_groups, &target_groups).map(|_| source.security_group_ids()),
        deletion_protection: changed(&source.deletion_protection, &target.deletion_protection),
    }
}

/// The source's value, when the target's differs.
fn changed<T: PartialEq + Clone>(source: &T, target: &T) -> Option<T> {
    (source != target).then(|| source.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ParameterGroupMembership, SecurityGroupMembership, Tag};

    pub(crate) fn source() -> Instance {
        Instance {
            identifier: "db-old".into(),
            arn: None,
            master_user_secret: false,
            status: "available".into(),
            engine: "postgres".into(),
            engine_version: "16.3".into(),
            endpoint: Some("db-old.x.us-east-1.rds.amazonaws.com".into()),
            port: Some(5432),
            master_username: Some("postgres".into()),
            instance_class: "db.r6g.large".into(),
            storage_type: Some("gp3".into()),
            allocated_storage: 400,
            max_allocated_storage: Some(1000),
            iops: Some(12000),
            storage_throughput: Some(500),
            subnet_group: Some("private".into()),
            vpc_id: Some("vpc-1".into()),
            security_groups: vec![SecurityGroupMembership { id: "sg-app".into(), status: "active".into() }],
            parameter_group: Some(ParameterGroupMembership {
                name: "pg16-logical".into(),
                apply_status: "in-sync".into(),
            }),
            option_group: Some("default:postgres-16".into()),
            multi_az: false,
            availability_zone: Some("us-east-1a".into()),
            publicly_accessible: false,
            auto_minor_version_upgrade: true,
            iam_auth: true,
            deletion_protection: true,
            copy_tags_to_snapshot: true,
            tags: vec![Tag { key: "team".into(), value: "data".into() }],
            ca_certificate: Some("rds-ca-rsa2048-g1".into()),
            backup_retention_days: 7,
            backup_window: Some("03:00-03:30".into()),
            maintenance_window: Some("sun:05:00-sun:05:30".into()),
            monitoring_interval: Some(60),
            monitoring_role_arn: Some("arn:aws:iam::1:role/rds-monitoring".into()),
            performance_insights: true,
            performance_insights_kms_key: Some("arn:aws:kms:us-east-1:1:key/pi".into()),
            performance_insights_retention_days: Some(7),
            log_exports: vec!["postgresql".into(), "upgrade".into()],
            storage_encrypted: false,
            kms_key_id: None,
            read_replicas: vec!["db-old-r1".into()],
            replica_of: None,
            pending_modifications: false,
        }
    }

    /// The restored target as it should be: only the exempt settings differ.
    fn target() -> Instance {
        Instance {
            identifier: "db-new".into(),
            endpoint: Some("db-new.x.us-east-1.rds.amazonaws.com".into()),
            storage_encrypted: true,
            kms_key_id: Some("arn:aws:kms:us-east-1:1:key/k".into()),
            read_replicas: vec![],
            status: "modifying".into(),
            ..source()
        }
    }

    #[test]
    fn only_identifier_endpoint_encryption_and_key_may_differ() {
        assert_eq!(differences(&source(), &target()), vec![]);
        assert!(after_restore(&source(), &target()).is_empty());
    }

    /// A setting's name and how to change it.
    type Flip = (&'static str, fn(&mut Instance));

    /// Each listed setting, changed alone on the target, is flagged under its name.
    #[test]
    fn every_setting_is_flagged_when_it_differs() {
        let flips: Vec<Flip> = vec![
            ("engine version", |t| t.engine_version = "16.4".into()),
            ("master user", |t| t.master_username = Some("admin".into())),
            ("instance class", |t| t.instance_class = "db.t4g.micro".into()),
            ("storage type", |t| t.storage_type = Some("io1".into())),
            ("allocated storage (GiB)", |t| t.allocated_storage = 500),
            ("storage autoscaling limit (GiB)", |t| t.max_allocated_storage = None),
            ("IOPS", |t| t.iops = Some(3000)),
            ("storage throughput (MiB/s)", |t| t.storage_throughput = Some(125)),
            ("subnet group", |t| t.subnet_group = Some("default".into())),
            ("VPC", |t| t.vpc_id = Some("vpc-2".into())),
            ("security groups", |t| t.security_groups[0].id = "sg-default".into()),
            ("parameter group", |t| t.parameter_group.as_mut().unwrap().name = "default.postgres16".into()),
            ("option group", |t| t.option_group = Some("custom".into())),
            ("Multi-AZ", |t| t.multi_az = true),
            ("availability zone", |t| t.availability_zone = Some("us-east-1b".into())),
            ("port", |t| t.port = Some(5433)),
            ("publicly accessible", |t| t.publicly_accessible = true),
            ("auto minor version upgrade", |t| t.auto_minor_version_upgrade = false),
            ("IAM authentication", |t| t.iam_auth = false),
            ("deletion protection", |t| t.deletion_protection = false),
            ("copy tags to snapshots", |t| t.copy_tags_to_snapshot = false),
            ("tags", |t| t.tags.clear()),
            ("CA certificate", |t| t.ca_certificate = Some("rds-ca-ecc384-g1".into())),
            ("backup retention (days)", |t| t.backup_retention_days = 1),
            ("backup window", |t| t.backup_window = Some("04:00-04:30".into())),
            ("maintenance window", |t| t.maintenance_window = None),
            ("monitoring interval (s)", |t| t.monitoring_interval = Some(0)),
            ("monitoring role", |t| t.monitoring_role_arn = Some("arn:aws:iam::1:role/other".into())),
            ("Performance Insights", |t| t.performance_insights = false),
            ("Performance Insights key", |t| t.performance_insights_kms_key = None),
            ("Performance Insights retention (days)", |t| t.performance_insights_retention_days = Some(731)),
            ("log exports", |t| {
                t.log_exports.pop();
            }),
        ];
        let listed: Vec<&str> = settings(&source()).iter().map(|(name, _)| *name).filter(|n| *n != "engine").collect();
        assert_eq!(flips.iter().map(|(name, _)| *name).collect::<Vec<_>>(), listed, "every setting has a flip");
        for (setting, flip) in flips {
            let mut changed = target();
            flip(&mut changed);
            let found = differences(&source(), &changed);
            assert_eq!(found.iter().map(|d| d.setting).collect::<Vec<_>>(), vec![setting], "flipping {setting}");
        }
        let mut other_engine = target();
        other_engine.engine = "mysql".into();
        assert_eq!(differences(&source(), &other_engine)[0].setting, "engine");
    }

    #[test]
    fn order_of_lists_does_not_matter_and_dependent_settings_are_skipped_when_off() {
        let mut s = source();
        s.log_exports.reverse();
        s.multi_az = true;
        s.performance_insights = false;
        let mut t = target();
        t.multi_az = true;
        t.availability_zone = Some("us-east-1c".into());
        t.performance_insights = false;
        t.performance_insights_kms_key = None;
        assert_eq!(differences(&s, &t), vec![]);
    }

    #[test]
    fn a_restore_is_followed_by_what_it_cannot_set() {
        let restored = Instance {
            backup_retention_days: 1,
            backup_window: Some("09:00-09:30".into()),
            maintenance_window: None,
            max_allocated_storage: None,
            monitoring_interval: Some(0),
            monitoring_role_arn: None,
            performance_insights: false,
            performance_insights_kms_key: None,
            performance_insights_retention_days: None,
            log_exports: vec!["postgresql".into(), "iam-db-auth-error".into()],
            ..target()
        };
        let change = after_restore(&source(), &restored);
        assert_eq!(change.backup_retention_days, Some(7));
        assert_eq!(change.backup_window.as_deref(), Some("03:00-03:30"));
        assert_eq!(change.maintenance_window.as_deref(), Some("sun:05:00-sun:05:30"));
        assert_eq!(change.max_allocated_storage, Some(1000));
        assert_eq!(change.monitoring, Some((60, Some("arn:aws:iam::1:role/rds-monitoring".into()))));
        assert_eq!(change.performance_insights, Some((true, Some("arn:aws:kms:us-east-1:1:key/pi".into()), Some(7))));
        assert_eq!(change.log_exports, Some((vec!["upgrade".into()], vec!["iam-db-auth-error".into()])));
        assert_eq!(change.security_groups, None);
        assert_eq!(change.deletion_protection, None);
    }
}
