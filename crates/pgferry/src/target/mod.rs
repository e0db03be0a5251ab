//! `pgferry target prepare | restore | validate-constraints`: the target's foreign
//! keys and triggers out of the way of an AWS DMS full load, then back, and its
//! sequences set from the source.
//!
//! The plans are pure (`pgferry_core::target`); this module reads what they need,
//! runs each step as one transaction, and reports per object. A failpoint after
//! every committed step (`<command>:after-step`, see [`crate::failpoint`]) lets
//! tests kill the process between any two steps.

mod prepare;
mod restore;

pub use prepare::{prepare, PrepareOutput};
pub use restore::{restore, validate_constraints};

use pgferry_core::sql::QualifiedName;
use pgferry_core::target::{Action, Object, Step};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// What a command did, object by object.
#[derive(Debug, Serialize)]
pub struct TargetReport {
    pub command: &'static str,
    /// The target's URL, without its password.
    pub target: String,
    pub objects: Vec<ObjectReport>,
    /// Sequences of the source that the target lacks (restore).
    pub missing_sequences: Vec<QualifiedName>,
    /// Differences between the source and the target worth a look (prepare).
    pub warnings: Vec<String>,
    pub failures: usize,
}

#[derive(Debug, Serialize)]
pub struct ObjectReport {
    pub object: Object,
    #[serde(flatten)]
    pub action: Action,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    /// A failure that leaves the object for a later run, such as a foreign key
    /// that orphan rows keep from validating.
    Failed {
        sqlstate: String,
        message: String,
        /// The server's DETAIL: for orphan rows, an example key.
        detail: Option<String>,
    },
}

/// Runs the steps, each in its own transaction, with a failpoint after each.
/// A foreign key that orphan rows keep from validating is reported and skipped;
/// any other failure stops the run (a rerun resumes).
async fn run_steps(client: &mut Client, failpoint: &str, steps: &[Step]) -> Result<Vec<ObjectReport>> {
    let mut reports = Vec::with_capacity(steps.len());
    for step in steps {
        tracing::info!(object = %step.object, action = ?step.action, "step");
        let outcome = match run_step(client, step).await {
            Ok(()) => Outcome::Done,
            Err(e) => match e.as_db_error() {
                // Rows that a foreign key would reject.
                Some(db) if *db.code() == SqlState::FOREIGN_KEY_VIOLATION => {
                    eprintln!("FAILED {}: {} ({})", step.object, db.message(), db.detail().unwrap_or(""));
                    Outcome::Failed {
                        sqlstate: db.code().code().to_string(),
                        message: db.message().to_string(),
                        detail: db.detail().map(str::to_string),
                    }
                }
                _ => {
                    return Err(Error::server(&step.object.to_string(), e)
                        .with_hint("fix the cause, then rerun the same command: it resumes where it stopped"))
                }
            },
        };
        crate::failpoint::hit(failpoint);
        reports.push(ObjectReport { object: step.object.clone(), action: step.action, outcome });
    }
    Ok(reports)
}

async fn run_step(client: &mut Client, step: &Step) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    for statement in &step.statements {
        tx.batch_execute(statement.as_str()).await?;
    }
    tx.commit().await
}

fn failures(objects: &[ObjectReport]) -> usize {
    objects.iter().filter(|o| matches!(o.outcome, Outcome::Failed { .. })).count()
}
