//! The migration's history on the target (`pgferry.timeline`): one row per
//! copy phase reached, cutover step taken and validation finished, each
//! written in the same statement or transaction as the journal row it mirrors.
//!
//! Why a history beside the state rows: `pgferry.migration`, `pgferry.cutover`
//! and `pgferry.validation` hold where a migration stands now (one row each, so
//! that a rerun reads one answer); `pgferry report` needs when each stage began
//! and every validation's verdict, after the fact.

use pgferry_core::names::MigrationName;
use serde_json::Value;
use tokio_postgres::GenericClient;

/// Created with each journal that writes to it (copy, cutover, validation).
pub(crate) const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS pgferry.timeline (
    migration text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL,
    name text NOT NULL,
    detail jsonb
);
CREATE INDEX IF NOT EXISTS timeline_migration_at ON pgferry.timeline (migration, at);";

/// What a row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A copy phase (`pgferry_core::phase::MigrationPhase`) was reached.
    Phase,
    /// A cutover step (`pgferry_core::cutover::CutoverStep`) was journaled.
    CutoverStep,
    /// A validation finished: its verdict, its figures in `detail`.
    Validation,
    /// The preflight's findings when the migration began, in `detail`.
    Preflight,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Phase => "phase",
            Kind::CutoverStep => "cutover_step",
            Kind::Validation => "validation",
            Kind::Preflight => "preflight",
        }
    }
}

pub(crate) async fn record(
    client: &impl GenericClient,
    name: &MigrationName,
    kind: Kind,
    what: &str,
    detail: Option<Value>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO pgferry.timeline (migration, kind, name, detail) VALUES ($1, $2, $3, $4)",
            &[&name.as_str(), &kind.as_str(), &what, &detail],
        )
        .await
        .map(|_| ())
}
