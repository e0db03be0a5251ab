//! The outside fence: the operator's own commands for writers pgferry cannot
//! stop from inside the database (a restrictive security group, as the runbook
//! swapped in, e.g. `pgferry aws fence`; a firewall rule; a paused pooler).
//!
//! The cutover raises it right after its own fence and lifts it when it rolls
//! back, before lowering its own (the reverse order). It is journaled on the
//! source beside pgferry's own fence (`pgferry.source_fence`, kind `outside`), so
//! the rollback needs nothing but the source: `raising` before the command runs,
//! `raised` after, so a cutover killed at any point and rerun knows whether to
//! lift it. A lift after `raising` that fails is reported but does not stop the
//! rollback (the raise may never have run); a lift after `raised` that fails stops
//! it, with the source still fenced outside and the operator told. Each command
//! runs with a time limit in a process group of its own ([`crate::shell`]).

use std::time::Duration;

use pgferry_core::names::MigrationName;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::shell;

/// The journal rows' kind.
pub(crate) const KIND: &str = "outside";

/// The operator's commands, run with `sh -c`.
#[derive(Clone, Debug)]
pub struct OutsideFence {
    pub raise: String,
    pub lift: String,
    /// The longest either command may run.
    pub timeout: Duration,
}

/// Raises the outside fence, journaled on the source before and after.
pub(crate) async fn raise(src: &Client, name: &MigrationName, fence: &OutsideFence) -> Result<()> {
    set_state(src, name, "raising").await?;
    shell::run("the fence command", &fence.raise, fence.timeout).await?;
    set_state(src, name, "raised").await
}

/// Whether this migration's journal says the outside fence may be up.
pub(crate) async fn recorded(src: &Client, name: &MigrationName) -> Result<Option<String>> {
    if !crate::fence::journal_exists(src).await? {
        return Ok(None);
    }
    Ok(src
        .query_opt(
            "SELECT previous FROM pgferry.source_fence WHERE migration = $1 AND kind = $2",
            &[&name.as_str(), &KIND],
        )
        .await
        .map_err(|e| Error::server("reading the outside fence's journal", e))?
        .map(|r| r.get(0)))
}

/// Lifts the outside fence if this migration's journal says it may be up.
pub(crate) async fn lift(src: &Client, name: &MigrationName, fence: Option<&OutsideFence>) -> Result<()> {
    let Some(state) = recorded(src, name).await? else { return Ok(()) };
    let Some(fence) = fence else {
        return Err(Error::new(ErrorKind::Usage, "an outside fence was raised by --fence-command and must be lifted")
            .with_hint("rerun with the same --fence-command and --unfence-command"));
    };
    match (shell::run("the unfence command", &fence.lift, fence.timeout).await, state.as_str()) {
        (Ok(()), _) => {}
        (Err(e), "raising") => {
            tracing::warn!("the unfence command failed; the fence command may never have run: {}", e.message)
        }
        (Err(e), _) => return Err(e),
    }
    src.execute("DELETE FROM pgferry.source_fence WHERE migration = $1 AND kind = $2", &[&name.as_str(), &KIND])
        .await
        .map_err(|e| Error::server("clearing the outside fence's journal", e))?;
    Ok(())
}

/// Forgets a recorded outside fence without running anything (`abort --force`:
/// the operator lifted it, or it never went up).
pub(crate) async fn forget(src: &Client, name: &MigrationName) -> Result<()> {
    src.execute("DELETE FROM pgferry.source_fence WHERE migration = $1 AND kind = $2", &[&name.as_str(), &KIND])
        .await
        .map(|_| ())
        .map_err(|e| Error::server("clearing the outside fence's journal", e))
}

async fn set_state(src: &Client, name: &MigrationName, state: &str) -> Result<()> {
    src.execute(
        "INSERT INTO pgferry.source_fence (migration, kind, name, previous) VALUES ($1, $2, '', $3)
         ON CONFLICT (migration, kind, name) DO UPDATE SET previous = excluded.previous",
        &[&name.as_str(), &KIND, &state],
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::server("journaling the outside fence", e))
}
