//! Live re-checks. While change capture runs, a chunk read under the two
//! snapshots can differ only because the target had not applied yet what the
//! source's snapshot held (or had applied more). Such a chunk is read again:
//! the source's rows, then a logical message on the source whose position the
//! target's apply journal must pass before the target's rows are read. Equal
//! now: matched. Still different after [`ATTEMPTS`] reads: a mismatch when the
//! source's rows stayed the same between the last reads, otherwise rows that
//! change constantly, reported as such rather than as a failure (the cutover's
//! exact check, fenced, settles them).

use std::time::{Duration, Instant};

use pgferry_core::names::MigrationName;
use pgferry_core::validation::{diff_rows, KeyDifference, RowDigest};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use super::tables::ValidatedTable;
use super::{rows, Scope, ValidateOptions};
use crate::error::{Error, ErrorKind, Result};

/// Reads of a differing chunk before it is judged.
const ATTEMPTS: usize = 3;
/// How long the target may take to apply up to a re-check's position.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A re-check's verdict.
pub(super) enum Outcome {
    Equal { rows: i64 },
    Differs { source_rows: i64, target_rows: i64, differences: Vec<KeyDifference> },
    Changing { source_rows: i64, target_rows: i64 },
}

/// Connections for re-checks, open only while the migration's change capture runs.
pub(super) struct Live {
    source: Client,
    target: Client,
    name: MigrationName,
}

impl Live {
    /// `None` unless the migration's slot is being streamed from right now.
    pub(super) async fn open(source: &ConnSpec, target: &ConnSpec, name: &MigrationName) -> Result<Option<Live>> {
        let src = pgferry_pg::connect(source).await?;
        let streaming = src
            .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&name.slot()])
            .await
            .map_err(|e| Error::server("reading the migration's slot", e))?
            .is_some_and(|r| r.get(0));
        if !streaming {
            return Ok(None);
        }
        Ok(Some(Live { source: src, target: pgferry_pg::connect(target).await?, name: name.clone() }))
    }

    pub(super) async fn recheck(&self, table: &ValidatedTable, scope: &Scope, options: &ValidateOptions) -> Result<Outcome> {
        let mut previous: Option<Vec<RowDigest>> = None;
        let mut changing = false;
        let mut last = (0, 0, Vec::new());
        for _ in 0..ATTEMPTS {
            let source_rows = rows(&self.source, table, scope).await?;
            self.wait_for_target().await?;
            let target_rows = rows(&self.target, table, scope).await?;
            let differences = diff_rows(&source_rows, &target_rows, options.max_differences, options.show_values);
            if differences.is_empty() {
                return Ok(Outcome::Equal { rows: source_rows.len() as i64 });
            }
            changing = previous.as_ref().is_some_and(|p| !same_rows(p, &source_rows));
            last = (source_rows.len() as i64, target_rows.len() as i64, differences);
            previous = Some(source_rows);
        }
        let (source_rows, target_rows, differences) = last;
        Ok(if changing {
            Outcome::Changing { source_rows, target_rows }
        } else {
            Outcome::Differs { source_rows, target_rows, differences }
        })
    }

    /// Marks the source's current position in its WAL and waits until the
    /// target has applied past it.
    async fn wait_for_target(&self) -> Result<()> {
        let mark: String = self
            .source
            .query_one("SELECT pg_logical_emit_message(false, 'pgferry_recheck', '')::text", &[])
            .await
            .map_err(|e| Error::server("marking the source's position for a re-check", e))?
            .get(0);
        let deadline = Instant::now() + CATCH_UP;
        loop {
            let passed = self
                .target
                .query_opt(
                    "SELECT applied_lsn >= $2::text::pg_lsn FROM pgferry.apply_progress WHERE migration = $1",
                    &[&self.name.as_str(), &mark],
                )
                .await
                .map_err(|e| Error::server("reading the applied position", e))?
                .is_some_and(|r| r.get(0));
            if passed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::new(ErrorKind::Precondition, format!("the target did not apply up to {mark} within a minute"))
                    .with_hint("check that change capture is keeping up (pgferry status), then rerun the validation"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How far the target was behind the source while the migration's change
/// capture was not running: its differences may be changes not applied yet.
#[derive(Debug, Serialize)]
pub struct Behind {
    pub applied_lsn: String,
    pub source_lsn: String,
    pub bytes: i64,
}

/// `None` when the target holds everything the source wrote, or there is no
/// migration slot to tell. Before change capture first ran, the target holds
/// what the slot's consistent point held.
pub(super) async fn behind(src: &Client, name: &MigrationName, applied: Option<&str>) -> Result<Option<Behind>> {
    let row = src
        .query_opt(
            "SELECT pg_current_wal_insert_lsn()::text, coalesce($2::text::pg_lsn, confirmed_flush_lsn)::text, \
                    pg_wal_lsn_diff(pg_current_wal_insert_lsn(), coalesce($2::text::pg_lsn, confirmed_flush_lsn))::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&name.slot(), &applied],
        )
        .await
        .map_err(|e| Error::server("reading the source's WAL position", e))?;
    Ok(row.and_then(|row| {
        let bytes: i64 = row.get(2);
        (bytes > 0).then(|| Behind { source_lsn: row.get(0), applied_lsn: row.get(1), bytes })
    }))
}

fn same_rows(a: &[RowDigest], b: &[RowDigest]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.key == y.key && x.hash == y.hash)
}
