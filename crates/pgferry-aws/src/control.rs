//! The calls pgferry makes to AWS, as one trait.
//!
//! [`crate::sdk::Aws`] implements it with the AWS SDK (and, for the fence's
//! security group, EC2 calls signed by hand: [`crate::ec2`]). Tests use the same
//! implementation against a local moto server, and wrap it in a scripted layer
//! (`testing::Scripted`) for what moto cannot model: resources passing through
//! `creating` or `modifying`, parameter groups pending a reboot, throttling, the
//! log download, and failures injected at any call.
//!
//! Every method is one API call (or one paged listing) and returns the cloud's
//! answer as plain structs from [`crate::model`]. Retries, waits and journaling
//! live above this trait, so that a scripted answer exercises them exactly as a
//! real one would.

use std::fmt;

use crate::model::{
    BlueGreen, BlueGreenRequest, GroupRequest, Ingress, Instance, Key, LogFile, LogPortion, Modification, Parameter,
    Record, ReplicaRequest, RestoreRequest, SecurityGroup, Snapshot,
};

/// A failed call, with the IAM action it needed so that an AccessDenied can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudError {
    /// The IAM action of the call, e.g. `rds:CreateDBSnapshot`.
    pub action: &'static str,
    /// The service's error code, e.g. `Throttling`; `None` when no answer came back.
    pub code: Option<String>,
    pub message: String,
}

impl CloudError {
    pub fn new(action: &'static str, code: Option<&str>, message: impl Into<String>) -> Self {
        CloudError { action, code: code.map(str::to_owned), message: message.into() }
    }

    /// The service asked the caller to slow down: retry after a backoff.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "Throttling"
                    | "ThrottlingException"
                    | "ThrottledException"
                    | "RequestLimitExceeded"
                    | "RequestThrottled"
                    | "RequestThrottledException"
                    | "TooManyRequestsException"
                    | "PriorRequestNotComplete"
                    | "SlowDown"
            )
        )
    }

    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError")
        )
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.action, self.message),
            None => write!(f, "{} failed: {}", self.action, self.message),
        }
    }
}

pub type CloudResult<T> = Result<T, CloudError>;

/// The AWS calls pgferry needs. `describe_*` return `None` for a resource that
/// does not exist, so that a rerun can tell "not created yet" from a failure.
// pgferry runs on one thread (see the CLI's main), so the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait ControlPlane {
    async fn describe_instance(&self, id: &str) -> CloudResult<Option<Instance>>;
    /// One parameter of a parameter group, `None` when the group does not set it.
    async fn describe_parameter(&self, group: &str, name: &str) -> CloudResult<Option<Parameter>>;
    async fn describe_snapshot(&self, id: &str) -> CloudResult<Option<Snapshot>>;
    async fn create_snapshot(&self, instance: &str, snapshot: &str) -> CloudResult<Snapshot>;
    async fn copy_snapshot(&self, source: &str, copy: &str, kms_key_arn: &str) -> CloudResult<Snapshot>;
    async fn delete_snapshot(&self, id: &str) -> CloudResult<()>;
    async fn restore_instance(&self, request: &RestoreRequest) -> CloudResult<Instance>;
    async fn modify_instance(&self, id: &str, change: &Modification) -> CloudResult<Instance>;
    async fn reboot_instance(&self, id: &str) -> CloudResult<Instance>;
    async fn create_read_replica(&self, request: &ReplicaRequest) -> CloudResult<Instance>;
    /// Deletes an instance without a final snapshot: pgferry takes its own first.
    async fn delete_instance(&self, id: &str) -> CloudResult<()>;
    async fn list_log_files(&self, instance: &str) -> CloudResult<Vec<LogFile>>;
    async fn download_log_portion(&self, instance: &str, file: &str, marker: &str) -> CloudResult<LogPortion>;
    async fn describe_key(&self, key: &str) -> CloudResult<Key>;
    async fn get_record(&self, zone: &str, name: &str) -> CloudResult<Option<Record>>;
    /// UPSERTs a CNAME; returns the change id.
    async fn upsert_cname(&self, zone: &str, name: &str, record: &Record) -> CloudResult<String>;
    /// `PENDING` or `INSYNC`.
    async fn change_status(&self, change: &str) -> CloudResult<String>;
    /// The names of the RDS Proxies with this instance among their targets.
    async fn proxies_targeting(&self, instance: &str) -> CloudResult<Vec<String>>;
    /// The Blue/Green deployment with this name, `None` when there is none.
    async fn describe_blue_green(&self, name: &str) -> CloudResult<Option<BlueGreen>>;
    async fn create_blue_green(&self, request: &BlueGreenRequest) -> CloudResult<BlueGreen>;
    async fn switchover_blue_green(&self, id: &str, timeout_seconds: i32) -> CloudResult<BlueGreen>;
    /// Deletes the deployment only: both instances stay.
    async fn delete_blue_green(&self, id: &str) -> CloudResult<()>;
    /// The security group with this name in this VPC, `None` when there is none.
    async fn find_security_group(&self, vpc_id: &str, name: &str) -> CloudResult<Option<SecurityGroup>>;
    /// The security group with this id, `None` when there is none.
    async fn describe_security_group(&self, id: &str) -> CloudResult<Option<SecurityGroup>>;
    /// Creates the group with its tags; returns its id.
    async fn create_security_group(&self, request: &GroupRequest) -> CloudResult<String>;
    /// Adds one inbound rule to the group (a rule it has already is no error).
    async fn allow_ingress(&self, group_id: &str, rule: &Ingress) -> CloudResult<()>;
    async fn delete_security_group(&self, id: &str) -> CloudResult<()>;
}
