//! The phases of a migration, as journaled on the target in `pgferry.migration`.
//!
//! Every phase here is durable: it is written in the same transaction as the work
//! that completes the phase before it, so a rerun reads where to continue. The
//! stored spelling is part of the on-disk format and pinned by a test.

use std::fmt;

/// Where a migration stands.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// The journal row exists; the slot may or may not (a rerun recreates it).
    Created,
    /// The slot exists; the schema (pre-data) is being restored.
    Schema,
    /// The schema is in; table data is being copied.
    Data,
    /// All data is in; indexes, constraints and triggers are being built.
    PostData,
    /// The copy is complete: data, indexes, constraints, sequences, statistics.
    Copied,
}

impl MigrationPhase {
    pub const ALL: [MigrationPhase; 5] = [
        MigrationPhase::Created,
        MigrationPhase::Schema,
        MigrationPhase::Data,
        MigrationPhase::PostData,
        MigrationPhase::Copied,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Created => "created",
            MigrationPhase::Schema => "schema",
            MigrationPhase::Data => "data",
            MigrationPhase::PostData => "post_data",
            MigrationPhase::Copied => "copied",
        }
    }

    /// Reads the stored form; `None` for a value this version does not know.
    pub fn parse(stored: &str) -> Option<MigrationPhase> {
        MigrationPhase::ALL.into_iter().find(|p| p.as_str() == stored)
    }
}

impl fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_format_is_pinned() {
        let stored: Vec<_> = MigrationPhase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(stored, ["created", "schema", "data", "post_data", "copied"]);
        for phase in MigrationPhase::ALL {
            assert_eq!(MigrationPhase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(MigrationPhase::parse("streaming?"), None);
    }

    #[test]
    fn phases_are_ordered_as_they_happen() {
        assert!(MigrationPhase::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
