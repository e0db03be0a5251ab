//! Which shape of pgferry's state a database holds, and what to do about it.
//!
//! A migration runs for days or weeks: the pgferry that cuts it over may be newer
//! than the one that copied it. Every `pgferry.*` table is made by numbered
//! upgrades owned by one module (`pgferry::state`), and each side records the
//! last upgrade it received in `pgferry.state_version` (one row per role the
//! database plays: a database can be one migration's source and another's
//! target). [`decide`] is the pure rule: a state behind this release is brought
//! up to date in place, one already current is left alone (no DDL, so nothing
//! waits for a lock), and one newer than this release is refused, since this
//! pgferry cannot know what the newer one recorded.

use std::fmt;

/// The role a database plays for pgferry, each with its own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The database migrated from: the fence journal and the seed marker.
    Source,
    /// The database migrated into: the migration's journal.
    Target,
}

impl Side {
    /// As stored in `pgferry.state_version.side` (pinned by a test).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a side's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Up to date: nothing to run.
    Current,
    /// Run the upgrades numbered `from..=to`, in order, then record `to`.
    /// `from` is 1 for a database without a recorded version: either nothing of
    /// pgferry's, or an earlier release's tables, which the first upgrade (made
    /// only of `IF NOT EXISTS` statements) brings up to date as they are.
    Upgrade { from: u32, to: u32 },
    /// Recorded by a newer pgferry: refused.
    Newer { stored: u32, known: u32 },
}

/// Decides from the stored version (`None`: none recorded) and the last upgrade
/// this release knows.
pub fn decide(stored: Option<u32>, known: u32) -> Decision {
    match stored {
        Some(stored) if stored > known => Decision::Newer { stored, known },
        Some(stored) if stored == known => Decision::Current,
        Some(stored) => Decision::Upgrade { from: stored + 1, to: known },
        None => Decision::Upgrade { from: 1, to: known },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_upgraded_from_where_it_stands_left_alone_when_current_and_refused_when_newer() {
        assert_eq!(decide(None, 3), Decision::Upgrade { from: 1, to: 3 });
        assert_eq!(decide(Some(1), 3), Decision::Upgrade { from: 2, to: 3 });
        assert_eq!(decide(Some(3), 3), Decision::Current);
        assert_eq!(decide(Some(4), 3), Decision::Newer { stored: 4, known: 3 });
    }

    #[test]
    fn the_stored_spelling_of_a_side_is_pinned() {
        assert_eq!((Side::Source.as_str(), Side::Target.as_str()), ("source", "target"));
    }
}
