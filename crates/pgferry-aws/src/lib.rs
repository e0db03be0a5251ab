//! pgferry's AWS control plane: moving an RDS for PostgreSQL instance to an
//! encrypted copy of itself (AWS encrypts an instance only at creation).
//!
//! - [`check`]: can this instance be encrypted by pgferry (logical replication in
//!   effect, backups, replicas), and [`choice`]: can a Blue/Green deployment
//!   encrypt it (each of its limits checked), what each path costs, which to take;
//! - [`encrypt`]: snapshot, encrypted copy, restore with every setting, parity
//!   report, then replication from where the restore's recovery ended;
//! - [`fence`] and [`switch`]: the cutover's network fence and DNS switch;
//! - [`finish`]: replicas, final snapshot, cleanup;
//! - [`blue_green`]: the other path, an RDS Blue/Green deployment with a KMS key
//!   for each green instance, stopped before its switchover, and [`switchover`]:
//!   the switchover with the write downtime measured, then the deployment removed.
//!
//! Every AWS call goes through [`control::ControlPlane`]; the decisions over
//! what it returns ([`check::verdicts`], [`parity`]) are pure functions. The
//! steps are journaled in a local file ([`journal`]) and resume by reading the
//! cloud's state. The AWS SDK lives in this crate alone because it takes long to
//! compile; the few EC2 calls are signed by hand ([`ec2`]) rather than add the
//! largest SDK crate. The walkthrough is `docs/aws.md`.

pub mod blue_green;
pub mod check;
pub mod choice;
pub mod control;
pub mod ec2;
pub mod encrypt;
pub mod fence;
pub mod finish;
pub mod journal;
pub mod key;
pub mod logs;
pub mod model;
pub mod names;
pub mod parity;
pub mod pg;
pub mod retry;
pub mod sdk;
mod sdk_blue_green;
mod sdk_ec2;
mod step;
pub mod switch;
pub mod switchover;
pub mod wait;
mod xml;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
