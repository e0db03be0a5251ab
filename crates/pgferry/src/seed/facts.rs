//! Reads what [`pgferry_core::seed::judge`] decides on, from both servers.

use pgferry_core::names::MigrationName;
use pgferry_core::seed::{SeedFacts, SlotFacts};
use tokio_postgres::Client;

use super::marker;
use crate::error::{Error, Result};

pub(crate) async fn read(src: &Client, dst: &Client, name: &MigrationName, slot: &str) -> Result<SeedFacts> {
    let slot = src
        .query_opt(
            "SELECT confirmed_flush_lsn::text, coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| Error::server("reading the migration's slot", e))?
        .map(|r| {
            Ok::<_, Error>(SlotFacts {
                confirmed_flush: marker::parse(&r.get::<_, Option<String>>(0).unwrap_or_else(|| "0/0".into()))?,
                wal_status: r.get(1),
            })
        })
        .transpose()?;
    let source_wal_end = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| Error::server("reading the source's WAL position", e))?;
    let target_wal_end = dst
        .query_one("SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END", &[])
        .await
        .map_err(|e| Error::server("reading the target's WAL position", e))?;
    Ok(SeedFacts {
        source_system_id: system_id("source", src).await?,
        target_system_id: system_id("target", dst).await?,
        source_marker: marker::read(src, name).await?,
        target_marker: marker::read(dst, name).await?,
        slot,
        source_wal_end: marker::parse(source_wal_end.get(0))?,
        target_wal_end: target_wal_end.get::<_, Option<&str>>(0).map(marker::parse).transpose()?,
    })
}

async fn system_id(side: &str, client: &Client) -> Result<String> {
    client
        .query_one("SELECT system_identifier::text FROM pg_control_system()", &[])
        .await
        .map(|r| r.get::<_, String>(0))
        .map_err(|e| Error::server(&format!("reading the {side}'s system identifier"), e))
}
