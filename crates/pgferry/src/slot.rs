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

use pgferry_core::names::MigrationName;
use tokio_postgres::Client;

use crate::error::{Error, Result};

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
