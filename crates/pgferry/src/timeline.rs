//! The migration's history on the target (`pgferry.timeline`, made by
//! [`crate::state`]): one row per copy phase reached, cutover step taken and
//! validation finished, each written in the same statement as the journal row it
//! mirrors, and the preflight's findings when the copy began.
//!
//! Why a history beside the state rows: `pgferry.migration`, `pgferry.cutover`
//! and `pgferry.validation` hold where a migration stands now (one row each, so
//! that a rerun reads one answer); `pgferry report` needs when each stage began
//! and every validation's verdict, after the fact.

use pgferry_core::names::MigrationName;
use serde_json::Value;
use tokio_postgres::GenericClient;

/// What a row records (its stored `kind`, written as a literal by the
/// statements that mirror a state row, pinned by the test below).
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

    /// Reads the stored form; `None` for a kind this version does not know.
    pub fn parse(stored: &str) -> Option<Kind> {
        [Kind::Phase, Kind::CutoverStep, Kind::Validation, Kind::Preflight].into_iter().find(|k| k.as_str() == stored)
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

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn kinds_read_back_as_written() {
        for kind in [Kind::Phase, Kind::CutoverStep, Kind::Validation, Kind::Preflight] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::CutoverStep.as_str(), "cutover_step");
        assert_eq!(Kind::parse("other"), None);
    }
}
