//! The cloud's resources as plain structs: what pgferry reads from RDS, KMS, EC2
//! and Route53, with nothing of the SDK in them, so that every decision over them
//! (the check's verdicts, the parity report, the restore request) is a pure
//! function that tests can feed by hand.

use serde::{Deserialize, Serialize};

/// An RDS DB instance: the settings pgferry copies, compares and checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub identifier: String,
    /// `arn:aws:rds:<region>:<account>:db:<identifier>`: where the instance lives.
    pub arn: Option<String>,
    /// `available`, `creating`, `modifying`, `backing-up`, ...
    pub status: String,
    pub engine: String,
    pub engine_version: String,
    pub endpoint: Option<String>,
    pub port: Option<i32>,
    pub master_username: Option<String>,
    /// The master password is managed by Secrets Manager (`MasterUserSecret`).
    pub master_user_secret: bool,
    pub instance_class: String,
    pub storage_type: Option<String>,
    pub allocated_storage: i32,
    pub max_allocated_storage: Option<i32>,
    pub iops: Option<i32>,
    pub storage_throughput: Option<i32>,
    pub subnet_group: Option<String>,
    pub vpc_id: Option<String>,
    /// The VPC security group ids, in the order RDS lists them.
    pub security_groups: Vec<SecurityGroupMembership>,
    pub parameter_group: Option<ParameterGroupMembership>,
    pub option_group: Option<String>,
    pub multi_az: bool,
    pub availability_zone: Option<String>,
    pub publicly_accessible: bool,
    pub auto_minor_version_upgrade: bool,
    pub iam_auth: bool,
    pub deletion_protection: bool,
    pub copy_tags_to_snapshot: bool,
    pub tags: Vec<Tag>,
    pub ca_certificate: Option<String>,
    pub backup_retention_days: i32,
    pub backup_window: Option<String>,
    pub maintenance_window: Option<String>,
    pub monitoring_interval: Option<i32>,
    pub monitoring_role_arn: Option<String>,
    pub performance_insights: bool,
    pub performance_insights_kms_key: Option<String>,
    pub performance_insights_retention_days: Option<i32>,
    pub log_exports: Vec<String>,
    pub storage_encrypted: bool,
    pub kms_key_id: Option<String>,
    pub read_replicas: Vec<String>,
    pub replica_of: Option<String>,
    /// A modification is waiting for the maintenance window or being applied.
    pub pending_modifications: bool,
}

impl Instance {
    pub fn security_group_ids(&self) -> Vec<String> {
        self.security_groups.iter().map(|g| g.id.clone()).collect()
    }

    /// The IOPS and throughput to ask for on a restore or replica: gp3 below
    /// 400 GiB (PostgreSQL's threshold) runs at its baseline and refuses explicit
    /// values, and gp2 or magnetic storage takes none
    /// (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Storage.html#gp3-storage>).
    pub fn provisioned_performance(&self) -> (Option<i32>, Option<i32>) {
        match self.storage_type.as_deref() {
            Some("gp3") if self.allocated_storage < 400 => (None, None),
            Some("gp3" | "io1" | "io2") => (self.iops, self.storage_throughput),
            _ => (None, None),
        }
    }

    /// The value of tag `key`, if the instance has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }

    /// Every security group change has been applied (none is `adding` or `removing`).
    pub fn security_groups_settled(&self) -> bool {
        self.security_groups.iter().all(|g| g.status == "active")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupMembership {
    pub id: String,
    /// `active`, `adding`, `removing`.
    pub status: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterGroupMembership {
    pub name: String,
    /// `in-sync`, `applying` or `pending-reboot`: a static parameter such as
    /// `rds.logical_replication` is in effect only once this is `in-sync`.
    pub apply_status: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One parameter of a DB parameter group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub value: Option<String>,
    /// `immediate` or `pending-reboot`.
    pub apply_method: Option<String>,
}

/// An RDS DB snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub identifier: String,
    pub instance: String,
    /// `creating`, `available`, `copying`, `failed`, ...
    pub status: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub percent_progress: Option<i32>,
}

/// A KMS key, resolved from an alias, ARN or key id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub arn: String,
    pub enabled: bool,
}

/// One log file of a DB instance, as `DescribeDBLogFiles` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFile {
    pub name: String,
    pub last_written: i64,
    pub size: i64,
}

/// One page of `DownloadDBLogFilePortion`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPortion {
    pub data: String,
    pub marker: Option<String>,
    pub pending: bool,
}

/// A DNS record as Route53 holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub value: String,
    pub ttl: i64,
}

/// What a restore from a snapshot is given: every setting of the source, passed
/// explicitly because a restore otherwise falls back to defaults (Single-AZ, the
/// default security group and parameter group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreRequest {
    pub target: String,
    pub snapshot: String,
    pub settings: Instance,
}

/// What `ModifyDBInstance` is given after a restore: the settings a restore cannot take.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Modification {
    pub backup_retention_days: Option<i32>,
    pub backup_window: Option<String>,
    pub maintenance_window: Option<String>,
    pub max_allocated_storage: Option<i32>,
    pub monitoring: Option<(i32, Option<String>)>,
    pub performance_insights: Option<(bool, Option<String>, Option<i32>)>,
    pub log_exports: Option<(Vec<String>, Vec<String>)>,
    pub security_groups: Option<Vec<String>>,
    pub deletion_protection: Option<bool>,
}

impl Modification {
    pub fn is_empty(&self) -> bool {
        *self == Modification::default()
    }
}

/// What a read replica is created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRequest {
    pub replica: String,
    pub primary: String,
    pub settings: Instance,
}

/// The parts of an RDS ARN (`arn:<partition>:rds:<region>:<account>:<kind>:<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arn<'a> {
    pub region: &'a str,
    pub account: &'a str,
    pub name: &'a str,
}

impl<'a> Arn<'a> {
    /// `None` for anything that is not an RDS ARN (a bare identifier, say).
    pub fn parse(text: &'a str) -> Option<Arn<'a>> {
        let mut parts = text.splitn(7, ':');
        let (arn, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
        if arn != "arn" || service != "rds" {
            return None;
        }
        let (region, account, _kind, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Arn { region, account, name })
    }
}

/// An RDS Blue/Green deployment, as `DescribeBlueGreenDeployments` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlueGreen {
    /// `bgd-...`, chosen by AWS.
    pub identifier: String,
    /// Chosen by pgferry ([`crate::names::AwsNames::blue_green`]): how a rerun finds it.
    pub name: String,
    /// The blue (current) instance's ARN.
    pub source: String,
    /// The green instance's ARN.
    pub target: Option<String>,
    /// `PROVISIONING`, `AVAILABLE`, `SWITCHOVER_IN_PROGRESS`, `SWITCHOVER_COMPLETED`,
    /// `INVALID_CONFIGURATION`, `SWITCHOVER_FAILED`, `DELETING`.
    pub status: String,
    pub status_details: Option<String>,
    /// Each blue instance (the primary and its replicas) beside its green one.
    pub members: Vec<Member>,
    /// pgferry tags its deployment (`pgferry:migration`) when it creates it: how
    /// a deployment of that name made by someone else is told apart.
    pub tags: Vec<Tag>,
}

impl BlueGreen {
    /// The value of tag `key`, if the deployment has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

/// One blue instance and its green counterpart in a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub source: String,
    pub target: Option<String>,
    pub status: Option<String>,
}

/// What `CreateBlueGreenDeployment` is given: one key per blue instance, the
/// primary and each read replica, so that every green one is encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlueGreenRequest {
    pub name: String,
    pub source_arn: String,
    pub targets: Vec<GreenKey>,
    /// Given in the call that creates it (`pgferry:migration`).
    pub tags: Vec<Tag>,
}

/// `TargetResourceConfiguration`: the blue instance's ARN and the green one's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreenKey {
    pub source_arn: String,
    pub kms_key_id: String,
}

/// An EC2 security group, as `DescribeSecurityGroups` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `sg-...`, chosen by AWS.
    pub id: String,
    /// Unique in its VPC: how a rerun finds the fence group pgferry created.
    pub name: String,
    pub vpc_id: String,
    pub tags: Vec<Tag>,
    pub ingress: Vec<Ingress>,
}

impl SecurityGroup {
    /// The value of tag `key`, if the group has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

/// One inbound rule: a protocol and port range open to one address range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    /// `tcp`, `udp`, `icmp`, or `-1` for every protocol.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    /// An IPv4 or IPv6 range (`10.0.3.17/32`, `2001:db8::/64`), or a security group (`sg-...`).
    pub source: String,
}

impl Ingress {
    /// TCP to `port` from `source`.
    pub fn tcp(port: i32, source: &str) -> Ingress {
        Ingress { protocol: "tcp".into(), from_port: Some(port), to_port: Some(port), source: source.to_owned() }
    }
}

/// What `CreateSecurityGroup` is given: the group is tagged in the same call, so
/// that it never exists without the tags that say it is pgferry's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRequest {
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub tags: Vec<Tag>,
}
