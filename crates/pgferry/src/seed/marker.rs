//! The seed marker: a row `pgferry seed prepare` commits on the source right
//! after creating the slot. A physical copy that holds the row was taken after
//! the slot existed; its token tells which prepare it belongs to, and its
//! position is a lower bound for the copy's end (see [`pgferry_core::seed`]). It
//! also records the slot's name ([`crate::slot`]), which the copy inherits.

use pgferry_core::names::MigrationName;
use pgferry_core::seed::Marker;
use pgferry_pgoutput::Lsn;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// Commits a new marker for the slot `slot` made at `slot_lsn`, replacing an older one.
pub(crate) async fn write(source: &Client, name: &MigrationName, slot: &str, slot_lsn: Lsn) -> Result<Marker> {
    crate::state::ensure(source, pgferry_core::state::Side::Source).await?;
    // pg_current_wal_insert_lsn() is read before the commit record is written,
    // so the commit starts after it.
    let row = source
        .query_one(
            "INSERT INTO pgferry.seed_marker (migration, token, lsn, slot_lsn, slot_name)
             VALUES ($1, gen_random_uuid()::text, pg_current_wal_insert_lsn(), $2::text::pg_lsn, $3)
             ON CONFLICT (migration) DO UPDATE SET token = excluded.token, lsn = excluded.lsn,
                 slot_lsn = excluded.slot_lsn, slot_name = excluded.slot_name, created_at = now()
             RETURNING token, lsn::text",
            &[&name.as_str(), &slot_lsn.to_string(), &slot],
        )
        .await
        .map_err(|e| Error::server("writing the seed marker on the source", e))?;
    Ok(Marker { token: row.get(0), lsn: parse(&row.get::<_, String>(1))? })
}

/// The migration's marker on a server (the source, or a copy of it).
pub(crate) async fn read(client: &Client, name: &MigrationName) -> Result<Option<Marker>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('pgferry.seed_marker') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::server("looking for the seed marker", e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT token, lsn::text FROM pgferry.seed_marker WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the seed marker", e))?;
    row.map(|r| Ok(Marker { token: r.get(0), lsn: parse(&r.get::<_, String>(1))? })).transpose()
}

pub(crate) fn parse(text: &str) -> Result<Lsn> {
    text.parse().map_err(|e| Error::new(ErrorKind::Server, format!("the server returned an invalid position: {e}")))
}

/// Deletes the migration's marker (cleanup); true when there was one. The table
/// itself stays while other migrations' markers are in it.
pub(crate) async fn forget(source: &Client, name: &MigrationName) -> Result<bool> {
    if read(source, name).await?.is_none() {
        return Ok(false);
    }
    source
        .execute("DELETE FROM pgferry.seed_marker WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("deleting the seed marker on the source", e))?;
    Ok(true)
}
