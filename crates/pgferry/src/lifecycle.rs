//! The lifecycle guard: reads how far a migration's cutover went and refuses the
//! commands that state does not allow ([`pgferry_core::lifecycle::allowed`]),
//! before they change anything.
//!
//! The state comes from both sides: the target's cutover journal
//! (`pgferry.cutover`: the last step and the downtime) and the source's record of
//! the switch (`pgferry.source_fence`, kind `switch`: when the switch command
//! started), which survives a target journal that was lost or removed, and is all
//! there is for `seed prepare`, which has no target. Reading changes nothing:
//! a refused command leaves both servers as they were.
//!
//! Before the state, the pair: a command given a target is refused unless that
//! target is the one this source is migrated into ([`crate::pairing`]), or the
//! state it reads would be another migration's, or the source's own.

use pgferry_core::cutover::CutoverStep;
use pgferry_core::lifecycle::{allowed, Command, CutoverRecord, Refusal};
use pgferry_core::names::MigrationName;
use pgferry_core::pairing::Need;
use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// Refuses `command` when the migration's cutover state does not allow it;
/// `target` is `None` for a command that has none (`seed prepare`).
pub async fn refuse_unless_allowed(
    source: &ConnSpec,
    target: Option<&ConnSpec>,
    migration: &MigrationName,
    command: Command,
) -> Result<()> {
    let src = pgferry_pg::connect(source).await?;
    let dst = match target {
        Some(target) => Some(pgferry_pg::connect(target).await?),
        None => None,
    };
    if let Some(dst) = &dst {
        crate::pairing::require(&src, dst, migration, command.as_str(), Need::of(command)).await?;
    }
    check(migration, command, &record(&src, dst.as_ref(), migration).await?)
}

/// The guard of a command that acts on both sides, before it changes anything:
/// the target must be this source's ([`crate::pairing::require`]: never the
/// source itself, and journaling this migration where the command needs it),
/// then the cutover's state must allow the command.
pub(crate) async fn guard(
    src: &Client,
    dst: &Client,
    migration: &MigrationName,
    command: Command,
) -> Result<crate::pairing::Pair> {
    let pair = crate::pairing::require(src, dst, migration, command.as_str(), Need::of(command)).await?;
    check(migration, command, &record(src, Some(dst), migration).await?)?;
    Ok(pair)
}

/// The command's refusal as an error (exit 1, nothing changed), if it is refused.
pub(crate) fn check(migration: &MigrationName, command: Command, record: &CutoverRecord) -> Result<()> {
    allowed(migration.as_str(), command, record).map_err(|Refusal { reason, instead }| {
        Error::new(ErrorKind::Refused, format!("{reason}; nothing was changed")).with_hint(instead)
    })
}

/// What the journals on both sides say about the migration's cutover.
pub async fn record(src: &Client, dst: Option<&Client>, migration: &MigrationName) -> Result<CutoverRecord> {
    let switched_at = crate::fence::switch_started_at(src, migration).await?;
    let (journaled, downtime_seconds) = match dst {
        Some(dst) => journaled_step(dst, migration).await?,
        None => (None, None),
    };
    Ok(CutoverRecord {
        last_step: journaled.max(switched_at.is_some().then_some(CutoverStep::Switching)),
        switched_at,
        downtime_seconds,
    })
}

/// The target's journaled step and downtime, read without changing the journal
/// (an earlier release's table may lack the downtime's column).
async fn journaled_step(dst: &Client, migration: &MigrationName) -> Result<(Option<CutoverStep>, Option<f64>)> {
    let exists: bool = dst
        .query_one("SELECT to_regclass('pgferry.cutover') IS NOT NULL", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the cutover journal", e))?;
    if !exists {
        return Ok((None, None));
    }
    let row = dst
        .query_opt(
            "SELECT step, (to_jsonb(c) ->> 'downtime_seconds')::float8 FROM pgferry.cutover c WHERE migration = $1",
            &[&migration.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the cutover journal", e))?;
    let Some(row) = row else { return Ok((None, None)) };
    let stored: String = row.get(0);
    let step = CutoverStep::parse(&stored).ok_or_else(|| {
        Error::new(
            ErrorKind::Precondition,
            format!("the cutover journal holds a step this pgferry does not know: {stored}"),
        )
        .with_hint("use the pgferry version that ran the cutover")
    })?;
    Ok((Some(step), row.get(1)))
}
