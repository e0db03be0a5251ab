//! Grouping source transactions into target transactions, and the rule that
//! skips what the copy already holds.
//!
//! Source transactions arrive one after the other in commit order. Applying each
//! in its own target transaction would cost a commit (a WAL flush) per source
//! transaction; pgferry instead applies many of them, in order, inside one target
//! transaction and commits it together with the applied position. Commit order is
//! kept because a single session applies them sequentially. A batch ends at a
//! source transaction boundary: at once when nothing more has arrived and the
//! target is free (lag as low as applying each transaction alone), otherwise
//! when it holds enough changes or bytes or is old enough, so a backlog folds
//! and lag stays bounded; and after a source transaction whose DDL it replayed.
//!
//! Inside a batch, changes to tables whose key is their only unique constraint
//! are folded into net changes ([`super::net`]); the batch's end state is the
//! source's state at its last commit either way. A batch's commit (its
//! statements' answers checked, journal rows, COMMIT) runs while the next batch
//! is read and folded; nothing of the next batch is sent before that commit
//! succeeded, and its position is acknowledged to the source only then.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgferry_core::sql::QualifiedName;
use pgferry_pgoutput::Lsn;

use super::progress::Counts;
use super::touched::Touched;

/// When a batch is committed.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_changes: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
    /// Behind the head of the stream, a batch this old commits as soon as the
    /// target has finished the previous one; a backlog still fills batches up
    /// to the limits above ([`should_flush`]).
    pub min_age: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_changes: 20_000,
            max_bytes: 32 << 20,
            max_age: Duration::from_millis(500),
            min_age: Duration::from_millis(50),
        }
    }
}

/// Whether a batch that just completed a source transaction is to be committed.
///
/// `target_idle`: no earlier batch is still committing; `at_head`: nothing
/// more has arrived from the source (the transport holds no message read
/// ahead). At the head of the stream with the target free, the batch commits
/// at once, so under a light or steady load each transaction is visible on the
/// target as soon as it is applied, as with PostgreSQL's own apply worker.
/// Behind the head (a backlog) or while the target still commits the previous
/// batch, the batch grows (group commit), until it is `min_age` old and the
/// target is free, or a limit is reached: that is what lets a backlog fold.
pub(crate) fn should_flush(
    limits: &BatchLimits,
    changes: usize,
    bytes: usize,
    age: Duration,
    target_idle: bool,
    at_head: bool,
) -> bool {
    changes >= limits.max_changes
        || bytes >= limits.max_bytes
        || age >= limits.max_age
        || (target_idle && (at_head || age >= limits.min_age))
}

/// Whether a transaction's changes to a table are already in the copy.
///
/// A table copied again on a resumed copy was read under a snapshot taken at
/// `copied_at` (a later slot's consistent point). That snapshot holds exactly the
/// transactions whose commit record starts before `copied_at` (equivalently,
/// whose commit ends at or before it, since a consistent point is a record
/// boundary). So a transaction is skipped for that table when its commit LSN
/// (`final_lsn` in Begin) is below `copied_at`, the test PostgreSQL's apply worker
/// makes for tables synchronized after the subscription started
/// (`should_apply_changes_for_rel` in `src/backend/replication/logical/worker.c`).
pub(crate) fn already_copied(final_lsn: Lsn, copied_at: Option<Lsn>) -> bool {
    copied_at.is_some_and(|at| final_lsn < at)
}

/// The target transaction being filled.
#[derive(Default)]
pub(crate) struct Batch {
    /// When the first change was applied: the target transaction is open.
    pub(crate) opened: Option<Instant>,
    pub(crate) changes: usize,
    pub(crate) bytes: usize,
    pub(crate) transactions: u64,
    /// The last complete source transaction: its end LSN and commit time.
    pub(crate) end: Option<(Lsn, i64)>,
    pub(crate) stats: BTreeMap<QualifiedName, Counts>,
    pub(crate) touched: Touched,
    /// A DDL command was replayed in it: it commits at the end of that source
    /// transaction, so the next one meets what the command made committed (an
    /// enum label the source added is usable only in a later transaction,
    /// SQLSTATE 55P04 on the same target transaction).
    pub(crate) replayed_ddl: bool,
}

impl Batch {
    pub(crate) fn counts(&mut self, table: &QualifiedName) -> &mut Counts {
        if !self.stats.contains_key(table) {
            self.stats.insert(table.clone(), Counts::default());
        }
        self.stats.get_mut(table).expect("inserted above")
    }

    pub(crate) fn age(&self) -> Duration {
        self.opened.map(|o| o.elapsed()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_end_on_size_bytes_or_age_or_at_once_at_the_head_of_the_stream() {
        let limits = BatchLimits {
            max_changes: 10,
            max_bytes: 100,
            max_age: Duration::from_millis(50),
            min_age: Duration::from_millis(5),
        };
        let young = Duration::from_millis(4);
        assert!(!should_flush(&limits, 9, 99, Duration::from_millis(49), false, false));
        assert!(should_flush(&limits, 10, 0, Duration::ZERO, false, false));
        assert!(should_flush(&limits, 1, 100, Duration::ZERO, false, false));
        assert!(should_flush(&limits, 1, 1, Duration::from_millis(50), false, false));
        assert!(!should_flush(&limits, 1, 1, young, true, false), "a backlog: too young even for an idle target");
        assert!(
            should_flush(&limits, 1, 1, Duration::from_millis(5), true, false),
            "old enough, and the target is idle"
        );
        assert!(
            !should_flush(&limits, 1, 1, Duration::from_millis(5), false, false),
            "the target is busy: the batch grows"
        );
        assert!(should_flush(&limits, 1, 1, Duration::ZERO, true, true), "at the head with the target idle: at once");
        assert!(!should_flush(&limits, 1, 1, young, false, true), "at the head but the target busy: group commit");
    }

    #[test]
    fn a_recopied_table_skips_exactly_the_transactions_its_snapshot_holds() {
        let at = Lsn(1000);
        assert!(already_copied(Lsn(999), Some(at)), "committed before the snapshot: in the copy");
        assert!(!already_copied(Lsn(1000), Some(at)), "commit record at the consistent point: after it");
        assert!(!already_copied(Lsn(1001), Some(at)));
        assert!(!already_copied(Lsn(1), None), "tables copied under the slot's own snapshot skip nothing");
    }
}
