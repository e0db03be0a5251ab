//! Change capture's lag and throughput, sampled into the journal on the target
//! (`pgferry.follow_sample`, created with the apply journal, [`super::progress`])
//! every status interval, so that `pgferry report` can draw them after the fact:
//! metrics scraped by a monitoring system are gone when the migration is shown
//! weeks later, the journal is not. A row is about 100 bytes: a month of samples
//! every 5 s is about 50 MB, dropped with the journal by `cleanup`.
//!
//! Samples are written on change capture's catalog connection, outside the apply
//! transaction, within a second or not at all: a lost sample loses a point of a
//! plot, never a change, and never ends the session (a dead connection is the
//! stream's and the watchdog's to report, with their own causes).

use pgferry_core::names::MigrationName;
use pgferry_pgoutput::Lsn;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// One point of the lag and throughput plots.
pub(crate) struct Sample {
    pub(crate) applied: Lsn,
    pub(crate) lag_bytes: u64,
    pub(crate) lag_seconds: f64,
    pub(crate) changes_per_second: f64,
    /// Totals of this run of change capture.
    pub(crate) transactions: u64,
    pub(crate) changes: u64,
}

pub(crate) async fn record(
    target: &Client,
    name: &MigrationName,
    sample: &Sample,
    retained: Option<u64>,
) -> Result<()> {
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    target
        .execute(
            "INSERT INTO pgferry.follow_sample
                 (migration, applied_lsn, lag_bytes, lag_seconds, changes_per_second, transactions, changes, slot_retained_bytes)
             VALUES ($1, $2::text::pg_lsn, $3, $4, $5, $6, $7, $8)",
            &[
                &name.as_str(),
                &sample.applied.to_string(),
                &as_i64(sample.lag_bytes),
                &sample.lag_seconds,
                &sample.changes_per_second,
                &as_i64(sample.transactions),
                &as_i64(sample.changes),
                &retained.map(as_i64),
            ],
        )
        .await
        .map(|_| ())
        .map_err(|e| Error::server("sampling change capture's lag into the journal", e))
}

/// The WAL the source keeps for the slot: from its `restart_lsn` to the
/// current position (`None` when the slot is gone: the stream reports that).
pub(crate) async fn slot_retained_bytes(source: &Client, slot: &str) -> Result<Option<u64>> {
    let row = source
        .query_opt(
            "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| Error::server("reading the WAL the source keeps for the slot", e))?;
    Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)).map(|n| n.max(0) as u64))
}
