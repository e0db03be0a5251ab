//! The last validation's verdict per migration, kept on the target
//! (`pgferry.validation`) so that `pgferry status` can show it and the
//! cutover's go/no-go refuses while a difference is unresolved.

use pgferry_core::names::MigrationName;
use pgferry_core::phase::MigrationPhase;
use serde::Serialize;
use tokio_postgres::Client;

use super::ValidationReport;
use crate::error::{Error, Result};

/// The last validation of a migration, as `pgferry status` shows it.
#[derive(Debug, Serialize)]
pub struct LastValidation {
    /// `full` or `changed_only`.
    pub mode: String,
    /// `EQUAL`, `DIFFERENT` or `NOT PROVEN` (`None`: recorded by an older pgferry).
    pub verdict: Option<String>,
    pub equal: bool,
    /// Chunks of the tables found DIFFERENT (never differences that may be lag).
    pub mismatched_chunks: i64,
    pub changing_chunks: i64,
    pub rows_compared: i64,
    pub finished_at: String,
}

/// Records a finished validation's verdict, replacing the previous one. A target
/// whose copy has not finished gets no record (nor a journal where there is
/// none): a verdict about a target not copied yet would stop the cutover after
/// the copy.
pub(super) async fn record(client: &Client, name: &MigrationName, mode: &str, report: &ValidationReport) -> Result<()> {
    let phase = crate::copy::journal::phase_if_journaled(client, name).await?;
    if phase.is_none_or(|(phase, _)| phase != MigrationPhase::Copied) {
        return Ok(());
    }
    let sum = |f: fn(&super::TableVerdict) -> i64| report.tables.iter().map(f).sum::<i64>();
    // What holds the cutover back: the cutover refreshes materialized views and
    // copies again the partitions change capture cannot vouch for itself.
    let mismatched: i64 = report
        .different()
        .filter(|t| !t.materialized_view && !t.recopied_by_cutover)
        .map(|t| t.mismatched.max(1) as i64)
        .sum();
    let verdict = report.verdict.as_str();
    let rows_compared = sum(|t| t.source_rows);
    let detail = serde_json::json!({"mode": mode, "mismatched_chunks": mismatched, "rows_compared": rows_compared});
    crate::state::ensure(client, pgferry_core::state::Side::Target).await?;
    let write = || async {
        // One statement: the history row and the verdict are written together.
        client
            .execute(
                "WITH history AS (INSERT INTO pgferry.timeline (migration, kind, name, detail) VALUES ($1, 'validation', $7, $8))
                 INSERT INTO pgferry.validation (migration, mode, equal, mismatched_chunks, changing_chunks, rows_compared, verdict)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (migration) DO UPDATE SET mode = excluded.mode, equal = excluded.equal, verdict = excluded.verdict,
                     mismatched_chunks = excluded.mismatched_chunks, changing_chunks = excluded.changing_chunks,
                     rows_compared = excluded.rows_compared, finished_at = now()",
                &[
                    &name.as_str(),
                    &mode,
                    &report.equal,
                    &mismatched,
                    &sum(|t| t.changing as i64),
                    &rows_compared,
                    &verdict,
                    &detail,
                ],
            )
            .await
    };
    write().await.map(|_| ()).map_err(|e| Error::server("recording the validation's verdict", e))
}

/// The migration's last validation, if any.
pub async fn last_validation(dst: &Client, name: &MigrationName) -> Result<Option<LastValidation>> {
    let exists: bool = dst
        .query_one("SELECT to_regclass('pgferry.validation') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::server("looking for the validation journal", e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = dst
        .query_opt(
            "SELECT mode, equal, mismatched_chunks, changing_chunks, rows_compared, finished_at::text, verdict
             FROM pgferry.validation WHERE migration = $1",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the validation journal", e))?;
    Ok(row.map(|r| LastValidation {
        mode: r.get(0),
        equal: r.get(1),
        mismatched_chunks: r.get(2),
        changing_chunks: r.get(3),
        rows_compared: r.get(4),
        finished_at: r.get(5),
        verdict: r.get(6),
    }))
}
