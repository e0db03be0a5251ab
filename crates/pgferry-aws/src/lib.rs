//! pgferry's AWS control plane: moving an RDS for PostgreSQL instance to an
//! encrypted copy of itself (AWS encrypts an instance only at creation).
//!
//! - [`check`]: can this instance be encrypted by pgferry (logical replication in
//!   effect, backups, replicas, why not Blue/Green);
//! - [`encrypt`]: snapshot, encrypted copy, restore with every setting, parity
//!   report, then replication from where the restore's recovery ended;
//! - [`fence`] and [`switch`]: the cutover's network fence and DNS switch;
//! - [`finish`]: replicas, final snapshot, cleanup.
//!
//! Every AWS call goes through [`control::ControlPlane`]; the decisions over
//! what it returns ([`check::verdicts`], [`parity`]) are pure functions. The
//! steps are journaled in a local file ([`journal`]) and resume by reading the
//! cloud's state. The AWS SDK lives in this crate alone because it takes long to
//! compile. The walkthrough is `docs/aws.md`.

pub mod check;
pub mod control;
pub mod encrypt;
pub mod fence;
pub mod finish;
pub mod journal;
pub mod logs;
pub mod model;
pub mod names;
pub mod parity;
pub mod pg;
pub mod retry;
pub mod sdk;
mod step;
pub mod switch;
pub mod wait;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
