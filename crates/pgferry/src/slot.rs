//! Reading the migration's replication slot and journal for
//! [`pgferry_core::slot::judge`], and the error every command gives for a lost
//! slot ([`ErrorKind::SlotLost`]): change capture cannot resume from it, and a
//! validation cannot be trusted, since the changes it held can never arrive.

use pgferry_core::cutover::CutoverStep;
use pgferry_core::names::MigrationName;
use pgferry_core::phase::MigrationPhase;
use pgferry_core::slot::{judge, need, SlotNeed, SlotRow, SlotVerdict};
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// The slot's row; `None` when it does not exist.
pub(crate) async fn read_row(src: &Client, slot: &str) -> Result<Option<SlotRow>> {
    let row = src
        .query_opt("SELECT wal_status, safe_wal_size FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?;
    Ok(row.map(|r| SlotRow { wal_status: r.get(0), safe_wal_size: r.get(1) }))
}

/// `max_slot_wal_keep_size` in bytes; `None` when unlimited.
pub(crate) async fn keep_size_bytes(src: &Client) -> Result<Option<i64>> {
    let mb: i64 = src
        .query_one("SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading max_slot_wal_keep_size", e))?;
    Ok((mb >= 0).then_some(mb * 1024 * 1024))
}

/// Whether the migration journaled on the target needs its slot now.
pub(crate) async fn read_need(dst: &Client, migration: &MigrationName) -> Result<SlotNeed> {
    let phase = journaled(dst, "pgferry.migration", "SELECT phase FROM pgferry.migration WHERE name = $1", migration)
        .await?
        .as_deref()
        .and_then(MigrationPhase::parse);
    let step = journaled(dst, "pgferry.cutover", "SELECT step FROM pgferry.cutover WHERE migration = $1", migration)
        .await?
        .as_deref()
        .and_then(CutoverStep::parse);
    Ok(need(phase, step))
}

/// One text value of the migration's row in a journal table, when the table exists.
async fn journaled(
    dst: &Client,
    table: &'static str,
    query: &'static str,
    migration: &MigrationName,
) -> Result<Option<String>> {
    let read = |e| Error::server("reading the target's journal", e);
    let exists: bool = dst.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.map_err(read)?.get(0);
    if !exists {
        return Ok(None);
    }
    Ok(dst.query_opt(query, &[&migration.as_str()]).await.map_err(read)?.map(|r| r.get(0)))
}

/// The slot's verdict for the migration journaled on `dst`.
pub(crate) async fn verdict(src: &Client, dst: &Client, migration: &MigrationName) -> Result<SlotVerdict> {
    let need = read_need(dst, migration).await?;
    if need == SlotNeed::NotNow {
        return Ok(SlotVerdict::NotNeeded);
    }
    let row = read_row(src, &migration.slot()).await?;
    Ok(judge(need, row.as_ref(), keep_size_bytes(src).await?))
}

/// The error for a lost slot: what happened, why `consequence`, and the remedy.
pub(crate) fn lost_error(verdict: &SlotVerdict, migration: &MigrationName, consequence: &str) -> Option<Error> {
    if !verdict.is_lost() {
        return None;
    }
    let (what, remedy) = verdict.problem(&migration.slot())?;
    Some(Error::new(ErrorKind::SlotLost, format!("{what}: {consequence}")).with_hint(remedy))
}

/// Refuses with [`ErrorKind::SlotLost`] when the migration's slot is lost.
pub(crate) async fn refuse_lost(
    src: &Client,
    dst: &Client,
    migration: &MigrationName,
    consequence: &str,
) -> Result<()> {
    match lost_error(&verdict(src, dst, migration).await?, migration, consequence) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
