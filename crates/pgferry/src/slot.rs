//! Which replication slot a migration uses.
//!
//! Slots are server-wide, so this release names a migration's slot after the
//! migration and the source database's OID ([`MigrationName::slot`]): two databases
//! of one server migrated under the same name (the default, `main`) keep two slots.
//! The name is recorded when the migration starts, in the same statement that
//! journals it on the target (`pgferry.migration.slot_name`), or for a seeded
//! migration in the source's seed marker first (the physical copy inherits it, and
//! the attach copies it into the target's journal). Every command uses the recorded
//! name: a migration journaled by an earlier release has none recorded and keeps
//! [`MigrationName::legacy_slot`]. Only a migration not journaled anywhere yet gets
//! a name computed now.
//!
//! Its health: reading the slot and the journal for [`pgferry_core::slot::judge`],
//! and the error every command gives for a lost slot ([`ErrorKind::SlotLost`]):
//! change capture cannot resume from it, and a validation cannot be trusted,
//! since the changes it held can never arrive.

use pgferry_core::cutover::CutoverStep;
use pgferry_core::names::MigrationName;
use pgferry_core::phase::MigrationPhase;
use pgferry_core::slot::{judge, need, SlotNeed, SlotRow, SlotVerdict};
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// The migration's slot on `src`, as recorded, else as this release names it.
pub(crate) async fn resolve(src: &Client, dst: &Client, name: &MigrationName) -> Result<String> {
    match on_target(dst, name).await? {
        Some(slot) => Ok(slot),
        None => on_source(src, name).await,
    }
}

/// The slot of a migration journaled on the target; `None` when it is not.
pub(crate) async fn on_target(dst: &Client, name: &MigrationName) -> Result<Option<String>> {
    Ok(recorded(dst, Record::Migration, name).await?.map(|recorded| recorded.unwrap_or_else(|| name.legacy_slot())))
}

/// The slot as the source alone tells it: the seed marker's, else as this release
/// names it (for `seed prepare`, which has no target yet).
pub(crate) async fn on_source(src: &Client, name: &MigrationName) -> Result<String> {
    if let Some(marked) = recorded(src, Record::SeedMarker, name).await? {
        return Ok(marked.unwrap_or_else(|| name.legacy_slot()));
    }
    Ok(name.slot(database_oid(src).await?))
}

/// Where a migration's slot name is recorded.
#[derive(Clone, Copy)]
enum Record {
    /// The target's journal.
    Migration,
    /// The source's seed marker (and its physical copy's).
    SeedMarker,
}

/// `Some(recorded)` when the migration has a row in the record (`None` inside: a
/// row written by an earlier release, before the column existed or without it).
async fn recorded(client: &Client, record: Record, name: &MigrationName) -> Result<Option<Option<String>>> {
    // to_jsonb reads the column when it exists and yields NULL when an earlier
    // release's table lacks it.
    let (table, query) = match record {
        Record::Migration => {
            ("pgferry.migration", "SELECT to_jsonb(t)->>'slot_name' FROM pgferry.migration t WHERE name = $1")
        }
        Record::SeedMarker => {
            ("pgferry.seed_marker", "SELECT to_jsonb(t)->>'slot_name' FROM pgferry.seed_marker t WHERE migration = $1")
        }
    };
    let fail = |e| Error::server(&format!("reading the slot's name in {table}"), e);
    let exists: bool = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.map_err(fail)?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt(query, &[&name.as_str()]).await.map_err(fail)?;
    Ok(row.map(|r| r.get::<_, Option<String>>(0)))
}

/// The OID of the database `client` is connected to.
pub(crate) async fn database_oid(client: &Client) -> Result<u32> {
    client
        .query_one("SELECT oid FROM pg_database WHERE datname = current_database()", &[])
        .await
        .map(|r| r.get::<_, u32>(0))
        .map_err(|e| Error::server("reading the database's OID", e))
}

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
    let row = read_row(src, &resolve(src, dst, migration).await?).await?;
    Ok(judge(need, row.as_ref(), keep_size_bytes(src).await?))
}

/// The error for a lost slot `slot`: what happened, why `consequence`, and the remedy.
pub(crate) fn lost_error(verdict: &SlotVerdict, slot: &str, consequence: &str) -> Option<Error> {
    if !verdict.is_lost() {
        return None;
    }
    let (what, remedy) = verdict.problem(slot)?;
    Some(Error::new(ErrorKind::SlotLost, format!("{what}: {consequence}")).with_hint(remedy))
}

/// Refuses with [`ErrorKind::SlotLost`] when the migration's slot is lost.
pub(crate) async fn refuse_lost(
    src: &Client,
    dst: &Client,
    migration: &MigrationName,
    consequence: &str,
) -> Result<()> {
    let slot = resolve(src, dst, migration).await?;
    match lost_error(&verdict(src, dst, migration).await?, &slot, consequence) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
