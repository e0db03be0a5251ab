//! The migration's replication slot as a state of its own: healthy, at risk,
//! about to be lost, or lost.
//!
//! The slot holds every change the target has not applied yet. When it is
//! dropped, or the source invalidates it because it held more WAL than
//! `max_slot_wal_keep_size` allows (`pg_replication_slots.wal_status = 'lost'`,
//! see [the view](https://www.postgresql.org/docs/current/view-pg-replication-slots.html)),
//! those changes can never reach the target: no rerun of change capture helps,
//! and a validation cannot know what is missing. The only way on is to remove
//! the migration and copy again (or seed again). Before that, `wal_status =
//! 'unreserved'` (negative `safe_wal_size`) means the source will invalidate the
//! slot at its next checkpoint unless change capture catches up, and a
//! headroom below [`RISK_SHARE`] of the limit means it is getting close.
//!
//! [`judge`] decides from the catalog row alone; the executors only read it.

use serde::Serialize;

use crate::cutover::CutoverStep;
use crate::phase::MigrationPhase;

/// A slot with less than this share of `max_slot_wal_keep_size` left is at risk.
pub const RISK_SHARE: f64 = 0.2;

/// What to do once the slot is lost.
pub const LOST_REMEDY: &str = "the changes the slot held can no longer reach the target: run `pgferry abort` (it removes what is left of this migration), then copy again with `pgferry start`; for a seeded migration, seed again (`pgferry seed prepare`, a new physical copy, then `pgferry start --seeded`)";

/// What to do while the slot is about to be lost.
pub const UNRESERVED_REMEDY: &str = "start change capture now (`pgferry follow` or `pgferry start`) so that it consumes the retained WAL before the source's next checkpoint, or raise max_slot_wal_keep_size (ALTER SYSTEM, then SELECT pg_reload_conf())";

/// What to do while the slot nears its limit.
pub const AT_RISK_REMEDY: &str =
    "keep change capture running, or raise max_slot_wal_keep_size (ALTER SYSTEM, then SELECT pg_reload_conf())";

/// The slot's row in `pg_replication_slots`, as far as its health goes.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct SlotRow {
    /// `reserved`, `extended`, `unreserved` or `lost` (NULL before the slot reserved WAL).
    pub wal_status: Option<String>,
    /// Bytes of WAL that may still be written before the slot is lost; `None` when
    /// `max_slot_wal_keep_size` is unlimited or the slot is lost.
    pub safe_wal_size: Option<i64>,
}

/// Whether the migration needs its slot now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotNeed {
    /// No migration is journaled, or its copy has not reached the data yet (a
    /// rerun makes a new slot), or the cutover switched the application.
    NotNow,
    /// Change capture starts or resumes from it.
    Needed,
}

/// Whether a migration at this phase and cutover step needs its slot.
pub fn need(phase: Option<MigrationPhase>, cutover: Option<CutoverStep>) -> SlotNeed {
    let copying_from_it = phase.is_some_and(|p| p >= MigrationPhase::Data);
    let switched = cutover.is_some_and(|s| s >= CutoverStep::Switched);
    if copying_from_it && !switched {
        SlotNeed::Needed
    } else {
        SlotNeed::NotNow
    }
}

/// Why a slot is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LostCause {
    /// It no longer exists on the source.
    Dropped,
    /// The source invalidated it (`wal_status = 'lost'`): WAL it held was removed.
    Invalidated,
}

/// The slot's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SlotVerdict {
    /// Nothing needs the slot now, so nothing is judged.
    NotNeeded,
    Healthy,
    /// Less than [`RISK_SHARE`] of `max_slot_wal_keep_size` left.
    AtRisk {
        headroom_bytes: i64,
    },
    /// Invalidated at the source's next checkpoint unless change capture catches up.
    Unreserved {
        headroom_bytes: Option<i64>,
    },
    Lost {
        cause: LostCause,
    },
}

/// Judges the slot from its row (`None`: it does not exist) and
/// `max_slot_wal_keep_size` in bytes (`None`: unlimited).
pub fn judge(need: SlotNeed, row: Option<&SlotRow>, keep_size_bytes: Option<i64>) -> SlotVerdict {
    if need == SlotNeed::NotNow {
        return SlotVerdict::NotNeeded;
    }
    let Some(row) = row else { return SlotVerdict::Lost { cause: LostCause::Dropped } };
    match (row.wal_status.as_deref(), row.safe_wal_size) {
        (Some("lost"), _) => SlotVerdict::Lost { cause: LostCause::Invalidated },
        (Some("unreserved"), headroom) => SlotVerdict::Unreserved { headroom_bytes: headroom },
        (_, Some(headroom)) if headroom <= 0 => SlotVerdict::Unreserved { headroom_bytes: Some(headroom) },
        (_, Some(headroom)) if keep_size_bytes.is_some_and(|keep| (headroom as f64) < keep as f64 * RISK_SHARE) => {
            SlotVerdict::AtRisk { headroom_bytes: headroom }
        }
        _ => SlotVerdict::Healthy,
    }
}

impl SlotVerdict {
    pub fn is_lost(&self) -> bool {
        matches!(self, SlotVerdict::Lost { .. })
    }

    /// What is wrong with the slot named `slot`, and what to do; `None` when nothing is.
    pub fn problem(&self, slot: &str) -> Option<(String, &'static str)> {
        match self {
            SlotVerdict::NotNeeded | SlotVerdict::Healthy => None,
            SlotVerdict::AtRisk { headroom_bytes } => Some((
                format!(
                    "the slot {slot} is at risk: {headroom_bytes} bytes of WAL may still be written before the source invalidates it (max_slot_wal_keep_size)"
                ),
                AT_RISK_REMEDY,
            )),
            SlotVerdict::Unreserved { headroom_bytes } => Some((
                format!(
                    "the slot {slot} is about to be lost (wal_status unreserved, headroom {}): the source invalidates it at its next checkpoint unless change capture catches up",
                    headroom_bytes.map_or_else(|| "none".to_string(), |b| format!("{b} bytes"))
                ),
                UNRESERVED_REMEDY,
            )),
            SlotVerdict::Lost { cause: LostCause::Dropped } => {
                Some((format!("the migration's replication slot {slot} no longer exists on the source"), LOST_REMEDY))
            }
            SlotVerdict::Lost { cause: LostCause::Invalidated } => Some((
                format!(
                    "the migration's replication slot {slot} was invalidated by the source (wal_status lost): it removed WAL the slot still held, because the slot held more than max_slot_wal_keep_size"
                ),
                LOST_REMEDY,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: i64 = 1 << 30;

    fn row(status: &str, safe: Option<i64>) -> SlotRow {
        SlotRow { wal_status: Some(status.into()), safe_wal_size: safe }
    }

    fn needed(r: Option<&SlotRow>, keep: Option<i64>) -> SlotVerdict {
        judge(SlotNeed::Needed, r, keep)
    }

    #[test]
    fn a_missing_or_invalidated_slot_is_lost() {
        assert_eq!(needed(None, Some(GB)), SlotVerdict::Lost { cause: LostCause::Dropped });
        assert_eq!(needed(Some(&row("lost", None)), Some(GB)), SlotVerdict::Lost { cause: LostCause::Invalidated });
        let (what, remedy) = needed(None, None).problem("pgferry_main").unwrap();
        assert!(what.contains("pgferry_main no longer exists"), "{what}");
        assert!(remedy.contains("pgferry abort") && remedy.contains("seed again"), "{remedy}");
    }

    #[test]
    fn negative_headroom_is_about_to_be_lost() {
        assert_eq!(
            needed(Some(&row("unreserved", Some(-5))), Some(GB)),
            SlotVerdict::Unreserved { headroom_bytes: Some(-5) }
        );
        assert_eq!(
            needed(Some(&row("extended", Some(0))), Some(GB)),
            SlotVerdict::Unreserved { headroom_bytes: Some(0) }
        );
    }

    #[test]
    fn a_slot_is_at_risk_near_its_limit_and_healthy_otherwise() {
        assert_eq!(needed(Some(&row("reserved", Some(GB))), Some(2 * GB)), SlotVerdict::Healthy);
        assert_eq!(
            needed(Some(&row("extended", Some(GB / 10))), Some(2 * GB)),
            SlotVerdict::AtRisk { headroom_bytes: GB / 10 }
        );
        assert_eq!(needed(Some(&row("reserved", None)), None), SlotVerdict::Healthy, "unlimited: never at risk");
        assert_eq!(needed(Some(&SlotRow::default()), None), SlotVerdict::Healthy, "no WAL reserved yet");
    }

    #[test]
    fn the_slot_matters_from_the_data_copy_until_the_switch() {
        use CutoverStep::*;
        use MigrationPhase::*;
        assert_eq!(need(None, None), SlotNeed::NotNow);
        assert_eq!(need(Some(Created), None), SlotNeed::NotNow, "a rerun before the data makes a new slot");
        assert_eq!(need(Some(Schema), None), SlotNeed::NotNow);
        assert_eq!(need(Some(Data), None), SlotNeed::Needed);
        assert_eq!(need(Some(Copied), Some(Drained)), SlotNeed::Needed);
        assert_eq!(need(Some(Copied), Some(Switching)), SlotNeed::Needed);
        assert_eq!(need(Some(Copied), Some(Switched)), SlotNeed::NotNow);
        assert_eq!(judge(SlotNeed::NotNow, None, None), SlotVerdict::NotNeeded);
    }
}
