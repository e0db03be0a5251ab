//! Seeded migrations' decisions: where a physical copy of the source ends, and
//! whether change capture may start there.
//!
//! A seeded target is a physical copy of the source (an RDS snapshot restore, a
//! `pg_basebackup`, a storage snapshot) taken after `pgferry seed prepare` created
//! the migration's slot. The copy holds every transaction whose commit record
//! was replayed when the copy came up; change capture must send exactly the
//! others.
//!
//! **The boundary.** When recovery ends, PostgreSQL logs `redo done at X/Y`,
//! where `X/Y` is the *start* of the last WAL record it replayed
//! (`xlogreader->ReadRecPtr` in `xlogrecovery.c`). A transaction is in the copy
//! exactly when its commit record starts at or before `X/Y`. Logical decoding
//! skips a transaction when its commit record starts before the position given
//! to `START_REPLICATION` (`SnapBuildXactNeedsSkip` on the commit's start), so
//! change capture starts at `X/Y + 1`: the commit at `X/Y` itself is skipped,
//! the first commit after it (8-byte aligned, so at least `X/Y + 8`) is sent.
//! See [`start_after`].
//!
//! **The checks** ([`judge`]) refuse every position that could lose or double a
//! transaction, all problems at once:
//! - the target must be a copy of this source (same system identifier) and a copy
//!   taken after the slot (it holds the marker row `seed prepare` committed after
//!   creating the slot, with the same token as the source's);
//! - the position must not be before the marker's commit (the copy holds it, so
//!   its redo went past it), nor past the copy's own WAL end or the source's;
//! - the slot must still exist, keep its WAL, and not have been advanced past the
//!   position by anyone.

use std::fmt;

use pgferry_pgoutput::Lsn;

/// The last `redo done at X/Y` position in a server log, if any.
///
/// The log may hold several recoveries (a copy restarted); the last one is the
/// one that brought the copy up.
pub fn redo_done_at(log: &str) -> Option<Lsn> {
    const MARK: &str = "redo done at ";
    log.lines().rev().find_map(|line| {
        let rest = &line[line.find(MARK)? + MARK.len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The position change capture starts from, for a copy whose last replayed
/// record starts at `redo_done`: every commit record at or before it is skipped.
pub fn start_after(redo_done: Lsn) -> Lsn {
    Lsn(redo_done.0 + 1)
}

/// The marker `seed prepare` commits on the source right after making the slot.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Marker {
    /// Random, written on the source: the copy holds the same one.
    pub token: String,
    /// The WAL insert position inside the marker's transaction: its commit
    /// record starts after it.
    pub lsn: Lsn,
}

/// The slot as the source reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SlotFacts {
    pub confirmed_flush: Lsn,
    /// `pg_replication_slots.wal_status`: `lost` means its WAL is gone.
    pub wal_status: String,
}

/// Everything the decision needs, read from both servers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SeedFacts {
    pub source_system_id: String,
    pub target_system_id: String,
    /// The marker on the source; `None` when `seed prepare` has not run.
    pub source_marker: Option<Marker>,
    /// The marker in the copy; `None` when the copy was taken before it.
    pub target_marker: Option<Marker>,
    pub slot: Option<SlotFacts>,
    pub source_wal_end: Lsn,
    /// `None` while the copy is still in recovery.
    pub target_wal_end: Option<Lsn>,
}

/// Why a seed position is refused.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SeedProblem {
    NotPrepared,
    NotACopy { source: String, target: String },
    CopyBeforeSlot,
    CopyOfEarlierPrepare,
    StillRecovering,
    BeforeMarker { seed: Lsn, marker: Lsn },
    PastCopyEnd { seed: Lsn, copy_end: Lsn },
    PastSourceEnd { seed: Lsn, source_end: Lsn },
    NoSlot,
    SlotLost,
    SlotAdvanced { seed: Lsn, confirmed_flush: Lsn },
}

impl SeedProblem {
    /// What the operator should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            SeedProblem::NotPrepared => "run pgferry seed prepare on the source, then take the copy",
            SeedProblem::NotACopy { .. } => "point --target at the instance restored from the copy of this source",
            SeedProblem::CopyBeforeSlot | SeedProblem::CopyOfEarlierPrepare => {
                "take a new copy (snapshot) now: the slot needs a copy taken after pgferry seed prepare reported it ready"
            }
            SeedProblem::StillRecovering => "promote the copy (pg_ctl promote, or wait for the restore to finish), then rerun",
            SeedProblem::BeforeMarker { .. } | SeedProblem::PastCopyEnd { .. } | SeedProblem::PastSourceEnd { .. } => {
                "give the position from the copy's own log (the last 'redo done at' line after it came up), or its log file with --seed-log"
            }
            SeedProblem::NoSlot | SeedProblem::SlotLost | SeedProblem::SlotAdvanced { .. } => {
                "the changes since the copy are no longer available: run pgferry abort, then seed prepare and a new copy"
            }
        }
    }
}

impl fmt::Display for SeedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeedProblem::NotPrepared => write!(f, "the source has no seed marker for this migration"),
            SeedProblem::NotACopy { source, target } => write!(
                f,
                "the target is not a copy of the source: system identifier {target}, the source's is {source}"
            ),
            SeedProblem::CopyBeforeSlot => write!(f, "the target was copied before pgferry seed prepare made the slot (it has no marker)"),
            SeedProblem::CopyOfEarlierPrepare => {
                write!(f, "the target was copied under an earlier seed prepare whose slot no longer exists (its marker differs)")
            }
            SeedProblem::StillRecovering => write!(f, "the target is still in recovery"),
            SeedProblem::BeforeMarker { seed, marker } => write!(
                f,
                "seed position {seed} is before the marker committed at {marker}, which the copy holds: it would apply transactions twice"
            ),
            SeedProblem::PastCopyEnd { seed, copy_end } => write!(
                f,
                "seed position {seed} is past the copy's own WAL end {copy_end}: transactions the copy lacks would be lost"
            ),
            SeedProblem::PastSourceEnd { seed, source_end } => {
                write!(f, "seed position {seed} is past the source's current WAL position {source_end}")
            }
            SeedProblem::NoSlot => write!(f, "the migration's replication slot is missing on the source"),
            SeedProblem::SlotLost => write!(f, "the migration's replication slot lost the WAL it held (wal_status lost)"),
            SeedProblem::SlotAdvanced { seed, confirmed_flush } => write!(
                f,
                "the slot was already advanced to {confirmed_flush}, past seed position {seed}: the changes in between are gone"
            ),
        }
    }
}

/// Every reason not to start change capture after `redo_done` (empty: go).
pub fn judge(redo_done: Lsn, facts: &SeedFacts) -> Vec<SeedProblem> {
    let mut problems = Vec::new();
    if facts.source_system_id != facts.target_system_id {
        problems.push(SeedProblem::NotACopy {
            source: facts.source_system_id.clone(),
            target: facts.target_system_id.clone(),
        });
    }
    match (&facts.source_marker, &facts.target_marker) {
        (None, _) => problems.push(SeedProblem::NotPrepared),
        (Some(_), None) => problems.push(SeedProblem::CopyBeforeSlot),
        (Some(source), Some(copy)) if source.token != copy.token => problems.push(SeedProblem::CopyOfEarlierPrepare),
        (Some(_), Some(copy)) if redo_done < copy.lsn => {
            problems.push(SeedProblem::BeforeMarker { seed: redo_done, marker: copy.lsn })
        }
        _ => {}
    }
    match facts.target_wal_end {
        None => problems.push(SeedProblem::StillRecovering),
        Some(copy_end) if redo_done >= copy_end => {
            problems.push(SeedProblem::PastCopyEnd { seed: redo_done, copy_end })
        }
        Some(_) => {}
    }
    if redo_done >= facts.source_wal_end {
        problems.push(SeedProblem::PastSourceEnd { seed: redo_done, source_end: facts.source_wal_end });
    }
    match &facts.slot {
        None => problems.push(SeedProblem::NoSlot),
        Some(slot) if slot.wal_status == "lost" => problems.push(SeedProblem::SlotLost),
        Some(slot) if slot.confirmed_flush > start_after(redo_done) => {
            problems.push(SeedProblem::SlotAdvanced { seed: redo_done, confirmed_flush: slot.confirmed_flush })
        }
        Some(_) => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-11-28 05:00:00.000 UTC [10] LOG:  database system was interrupted; last known up at 2026-11-28 04:59:58 UTC
2026-11-28 05:00:00.100 UTC [10] LOG:  redo starts at 0/2000028
2026-11-28 05:00:00.200 UTC [10] LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.00 s
2026-11-28 05:00:01.000 UTC [10] LOG:  database system is ready to accept connections
2026-11-28 06:00:00.200 UTC [11] LOG:  redo done at 1/A0 system usage: CPU: user: 0.00 s
";

    #[test]
    fn the_last_recovery_in_the_log_counts() {
        assert_eq!(redo_done_at(LOG), Some(Lsn(0x1_0000_00A0)));
        assert_eq!(redo_done_at(&LOG[..LOG.find("2026-11-28 06").unwrap()]), Some(Lsn(0x300_0148)));
        assert_eq!(redo_done_at("LOG:  redo is not required\n"), None);
        assert_eq!(redo_done_at("LOG:  redo done at garbage\n"), None);
    }

    #[test]
    fn the_commit_at_the_redo_position_is_in_the_copy() {
        let redo = Lsn(0x300_0148);
        let start = start_after(redo);
        // Decoding skips commits that start before the start position.
        assert!(redo < start, "the last replayed commit is skipped");
        assert!(Lsn(redo.0 + 8) >= start, "the next aligned record is sent");
    }

    fn good() -> SeedFacts {
        let marker = Marker { token: "t1".into(), lsn: Lsn(0x200_0000) };
        SeedFacts {
            source_system_id: "7301".into(),
            target_system_id: "7301".into(),
            source_marker: Some(marker.clone()),
            target_marker: Some(marker),
            slot: Some(SlotFacts { confirmed_flush: Lsn(0x100_0000), wal_status: "reserved".into() }),
            source_wal_end: Lsn(0x900_0000),
            target_wal_end: Some(Lsn(0x400_0000)),
        }
    }

    #[test]
    fn a_copy_taken_after_prepare_at_its_own_redo_position_is_accepted() {
        assert_eq!(judge(Lsn(0x300_0148), &good()), vec![]);
        // The marker's own commit may be the last record replayed.
        assert_eq!(judge(Lsn(0x200_0000), &good()), vec![]);
    }

    #[test]
    fn every_wrong_position_is_refused() {
        let facts = good();
        assert!(matches!(judge(Lsn(0x1FF_FFF8), &facts)[..], [SeedProblem::BeforeMarker { .. }]));
        assert!(matches!(judge(Lsn(0x400_0000), &facts)[..], [SeedProblem::PastCopyEnd { .. }]));
        let mut far = facts.clone();
        far.target_wal_end = Some(Lsn(u64::MAX));
        assert!(matches!(judge(Lsn(0x900_0000), &far)[..], [SeedProblem::PastSourceEnd { .. }]));
    }

    #[test]
    fn a_target_that_is_not_the_prepared_copy_is_refused() {
        let mut other = good();
        other.target_system_id = "9999".into();
        other.target_marker = None;
        assert_eq!(
            judge(Lsn(0x300_0148), &other),
            vec![SeedProblem::NotACopy { source: "7301".into(), target: "9999".into() }, SeedProblem::CopyBeforeSlot]
        );
        let mut earlier = good();
        earlier.target_marker = Some(Marker { token: "t0".into(), lsn: Lsn(0x100) });
        assert_eq!(judge(Lsn(0x300_0148), &earlier), vec![SeedProblem::CopyOfEarlierPrepare]);
        let mut unprepared = good();
        unprepared.source_marker = None;
        assert_eq!(judge(Lsn(0x300_0148), &unprepared), vec![SeedProblem::NotPrepared]);
        let mut recovering = good();
        recovering.target_wal_end = None;
        assert_eq!(judge(Lsn(0x300_0148), &recovering), vec![SeedProblem::StillRecovering]);
    }

    #[test]
    fn a_stale_slot_is_refused() {
        let mut facts = good();
        facts.slot = None;
        assert_eq!(judge(Lsn(0x300_0148), &facts), vec![SeedProblem::NoSlot]);
        facts.slot = Some(SlotFacts { confirmed_flush: Lsn(0x100), wal_status: "lost".into() });
        assert_eq!(judge(Lsn(0x300_0148), &facts), vec![SeedProblem::SlotLost]);
        facts.slot = Some(SlotFacts { confirmed_flush: Lsn(0x350_0000), wal_status: "extended".into() });
        assert!(matches!(judge(Lsn(0x300_0148), &facts)[..], [SeedProblem::SlotAdvanced { .. }]));
        // A rerun after a first attach: the slot stands exactly at the start position.
        facts.slot = Some(SlotFacts { confirmed_flush: start_after(Lsn(0x300_0148)), wal_status: "reserved".into() });
        assert_eq!(judge(Lsn(0x300_0148), &facts), vec![]);
    }
}
