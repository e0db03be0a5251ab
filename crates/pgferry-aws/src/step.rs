//! One resumable step: find the resource in the cloud, or create it after
//! journaling the intent.
//!
//! Whether a call took effect is read from the cloud, never assumed: a run
//! killed between a call and its journal entry leaves an intent without a call,
//! and the rerun finds the resource by its deterministic name instead of asking
//! for a second one. A resource with that name that pgferry never intended to
//! create is refused, so that a typo cannot make pgferry adopt (and later
//! delete) someone else's instance.

use std::future::Future;

use pgferry::{Error, ErrorKind, Result};
use serde_json::{json, Value};

use crate::journal::{Event, Journal};

/// Makes sure `resource` exists: found (and, if it was pgferry's, adopted), or created.
pub(crate) async fn ensure<T, D, DF, K, KF>(
    journal: &mut Journal,
    step: &str,
    resource: &str,
    intent: Value,
    describe: D,
    create: K,
) -> Result<()>
where
    D: FnOnce() -> DF,
    DF: Future<Output = Result<Option<T>>>,
    K: FnOnce() -> KF,
    KF: Future<Output = Result<()>>,
{
    let called = journal.entries().iter().any(|e| e.step == step && e.resource == resource && e.event == Event::Call);
    match describe().await? {
        Some(_) if journal.intended(step, resource) => {
            if !called {
                tracing::info!(step, resource, "found in the cloud: the previous run's call took effect");
                journal.record(step, Event::Call, resource, json!({"found": true}))?;
            }
            Ok(())
        }
        Some(_) => Err(Error::new(
            ErrorKind::Precondition,
            format!("{resource} already exists and this migration did not create it"),
        )
        .with_hint(
            "if an earlier run of this migration made it, run with that run's --state-dir; otherwise choose another \
             --target-instance or --name, or delete it if it is a leftover",
        )),
        None if called => Err(Error::new(
            ErrorKind::Precondition,
            format!("{resource} was created by this migration but no longer exists"),
        )
        .with_hint("someone deleted it; start over with a new --name (or delete the --state-dir)")),
        None => {
            journal.record(step, Event::Intent, resource, intent)?;
            create().await?;
            journal.record(step, Event::Call, resource, Value::Null)
        }
    }
}

/// Journals the step's outcome unless an earlier run did.
pub(crate) fn done(journal: &mut Journal, step: &str, resource: &str, outcome: Value) -> Result<()> {
    if journal.outcome(step).is_some() {
        return Ok(());
    }
    journal.record(step, Event::Outcome, resource, outcome)?;
    pgferry::failpoint::hit(&format!("aws-after-{step}"));
    Ok(())
}

/// Journals the outcome of `step` for one `resource` of several (a database of
/// the instance); a failpoint after each, as after a step.
pub(crate) fn done_in(journal: &mut Journal, step: &str, resource: &str, outcome: Value) -> Result<()> {
    journal.record(step, Event::Outcome, resource, outcome)?;
    pgferry::failpoint::hit(&format!("aws-after-{step}"));
    Ok(())
}
