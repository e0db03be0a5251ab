//! Live re-checks. While change capture runs, a chunk read under the two
//! snapshots can differ only because the target had not applied yet what the
//! source's snapshot held (or had applied more). Such a chunk is read again:
//! the source's rows, then a logical message on the source whose position the
//! target's apply journal must pass before the target's rows are read, then the
//! source's rows again. Equal: matched. A mismatch only when the source's rows
//! were the same before and after the target's read (so the target's applied
//! state lies between two reads that agree); otherwise the next attempt starts
//! from the later read. After [`ATTEMPTS`] the chunk kept changing: NOT PROVEN,
//! never EQUAL (the cutover's exact check, fenced, settles it).

use std::time::{Duration, Instant};

use pgferry_core::names::MigrationName;
use pgferry_core::validation::{diff_rows, KeyDifference, RowDigest};
use pgferry_pg::ConnSpec;
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
    pub(super) async fn open(
        source: &ConnSpec,
        target: &ConnSpec,
        name: &MigrationName,
        slot: &str,
    ) -> Result<Option<Live>> {
        let src = pgferry_pg::connect(source).await?;
        let streaming = src
            .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
            .await
            .map_err(|e| Error::server("reading the migration's slot", e))?
            .is_some_and(|r| r.get(0));
        if !streaming {
            return Ok(None);
        }
        Ok(Some(Live { source: src, target: pgferry_pg::connect(target).await?, name: name.clone() }))
    }

    pub(super) async fn recheck(
        &self,
        table: &ValidatedTable,
        scope: &Scope,
        options: &ValidateOptions,
    ) -> Result<Outcome> {
        let mut before = rows(&self.source, table, scope).await?;
        for _ in 0..ATTEMPTS {
            self.wait_for_target().await?;
            let target_rows = rows(&self.target, table, scope).await?;
            let differences = diff_rows(&before, &target_rows, options.max_differences, options.show_values);
            if differences.is_empty() {
                return Ok(Outcome::Equal { rows: before.len() as i64 });
            }
            let after = rows(&self.source, table, scope).await?;
            if same_rows(&before, &after) {
                return Ok(Outcome::Differs {
                    source_rows: before.len() as i64,
                    target_rows: target_rows.len() as i64,
                    differences,
                });
            }
            before = after;
        }
        let source_rows = before.len() as i64;
        let target_rows = rows(&self.target, table, scope).await?.len() as i64;
        Ok(Outcome::Changing { source_rows, target_rows })
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
                return Err(Error::new(
                    ErrorKind::Precondition,
                    format!("the target did not apply up to {mark} within a minute"),
                )
                .with_hint("check that change capture is keeping up (pgferry status), then rerun the validation"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn same_rows(a: &[RowDigest], b: &[RowDigest]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.key == y.key && x.hash == y.hash)
}
