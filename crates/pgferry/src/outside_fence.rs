//! The outside fence: the operator's own commands for writers pgferry cannot
//! stop from inside the database (a restrictive security group, as the runbook
//! swapped in, e.g. `pgferry aws fence`; a firewall rule; a paused pooler).
//!
//! The cutover raises it right after its own fence and lifts it when it rolls
//! back, before lowering its own (the reverse order). It is journaled on the
//! target (`pgferry.outside_fence`): `raising` before the command runs, `raised`
//! after, so a cutover killed at any point and rerun knows whether to lift it.
//! A lift after `raising` that fails is reported but does not stop the rollback
//! (the raise may never have run); a lift after `raised` that fails stops it,
//! with the source still fenced outside and the operator told.

use pgferry_core::names::MigrationName;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

const JOURNAL_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS pgferry;
CREATE TABLE IF NOT EXISTS pgferry.outside_fence (
    migration text PRIMARY KEY,
    state text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);";

/// The operator's commands, run with `sh -c`.
#[derive(Clone, Debug)]
pub struct OutsideFence {
    pub raise: String,
    pub lift: String,
}

/// Raises the outside fence, journaled before and after.
pub(crate) async fn raise(dst: &Client, name: &MigrationName, fence: &OutsideFence) -> Result<()> {
    dst.batch_execute(JOURNAL_SQL).await.map_err(|e| Error::server("creating the outside fence's journal", e))?;
    set_state(dst, name, "raising").await?;
    run_shell("the fence command", &fence.raise).await?;
    set_state(dst, name, "raised").await
}

/// Lifts the outside fence if this migration's journal says it may be up.
pub(crate) async fn lift(dst: &Client, name: &MigrationName, fence: Option<&OutsideFence>) -> Result<()> {
    dst.batch_execute(JOURNAL_SQL).await.map_err(|e| Error::server("creating the outside fence's journal", e))?;
    let state: Option<String> = dst
        .query_opt("SELECT state FROM pgferry.outside_fence WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the outside fence's journal", e))?
        .map(|r| r.get(0));
    let Some(state) = state else { return Ok(()) };
    let Some(fence) = fence else {
        return Err(Error::new(ErrorKind::Usage, "an outside fence was raised by --fence-command and must be lifted")
            .with_hint("rerun with the same --fence-command and --unfence-command"));
    };
    match (run_shell("the unfence command", &fence.lift).await, state.as_str()) {
        (Ok(()), _) => {}
        (Err(e), "raising") => tracing::warn!("the unfence command failed; the fence command may never have run: {}", e.message),
        (Err(e), _) => return Err(e),
    }
    dst.execute("DELETE FROM pgferry.outside_fence WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("clearing the outside fence's journal", e))?;
    Ok(())
}

async fn set_state(dst: &Client, name: &MigrationName, state: &str) -> Result<()> {
    dst.execute(
        "INSERT INTO pgferry.outside_fence (migration, state) VALUES ($1, $2)
         ON CONFLICT (migration) DO UPDATE SET state = excluded.state, updated_at = now()",
        &[&name.as_str(), &state],
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::server("journaling the outside fence", e))
}

/// Runs an operator's command with `sh -c`; a non-zero exit is an error naming `what`.
pub(crate) async fn run_shell(what: &str, command: &str) -> Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .map_err(|e| Error::new(ErrorKind::Precondition, format!("{what} could not start: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Precondition, format!("{what} failed ({status})")))
    }
}
