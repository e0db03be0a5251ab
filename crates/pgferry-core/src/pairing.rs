//! Whether a source and a target given to a command are one migration's pair.
//!
//! Every command that acts on both sides (copy, start, follow, validate, status,
//! rehearse, cutover, abort, cleanup) first checks that its `--target` is the
//! database this `--source` is migrated into, before it changes anything: a
//! target that is the source itself (spelled another way: TCP or a Unix socket,
//! another host alias) would have the source's own pgferry objects removed as the
//! target's journal, and a target that is another database (another migration's,
//! a fresh one) would let a cutover fence, or an abort unfence or drop, a live
//! migration it knows nothing of.
//!
//! The pair is judged by identity, never by name: a database is its cluster's
//! system identifier and its OID ([`DatabaseIdentity`]). The target's journal
//! records its source's identity when the migration starts
//! (`pgferry.migration.source_system_identifier`, `source_database_oid`), and
//! the cutover's row records it too (it outlives `cleanup`). A journal written
//! by an earlier release records none: the recorded slot's name, which carries
//! the source database's OID, is checked where there is one.

use crate::lifecycle::Command;
use crate::names::{MigrationName, PREFIX};
use crate::preflight::{same_database, DatabaseIdentity};

/// What the command needs of the target's journal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    /// The target must already journal this migration: the command acts on a
    /// migration under way (follow, rehearse, cutover, abort, cleanup, repair).
    Journal,
    /// The target may hold no journal of it yet (start and copy create it;
    /// validate, status and check only compare or read).
    JournalOrNone,
}

impl Need {
    /// What a command of the lifecycle needs.
    pub fn of(command: Command) -> Need {
        match command {
            Command::Start | Command::StartSeeded | Command::Copy | Command::SeedPrepare => Need::JournalOrNone,
            Command::Follow
            | Command::Rehearse
            | Command::Repair
            | Command::Cutover
            | Command::Abort { .. }
            | Command::Cleanup { .. } => Need::Journal,
        }
    }
}

/// What the target's journal says about this migration's source.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TargetJournal {
    /// No row of this migration; `others`: the migrations the target does journal.
    Absent { others: Vec<String> },
    /// The migration's row (`pgferry.migration`, else the cutover's row that
    /// `cleanup` keeps).
    Journaled {
        /// `None`: written by an earlier release, which did not record it.
        source: Option<DatabaseIdentity>,
        /// The recorded slot's name, if any.
        slot_name: Option<String>,
    },
    /// A physical copy of the source not attached yet (`start --seeded` before
    /// its first run): it holds the seed marker it inherited, with this token.
    SeedCopy { token: String },
}

/// Everything the decision needs, observed on both sides.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PairFacts {
    pub source: DatabaseIdentity,
    pub target: DatabaseIdentity,
    /// The target's server shows pgferry's session on the source (see [`same_database`]).
    pub target_shows_source_session: bool,
    pub journal: TargetJournal,
    /// The token of the source's own seed marker of this migration, if any.
    pub source_seed_token: Option<String>,
}

/// A pair the command may act on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Paired {
    /// The target's journal records this source.
    Recorded,
    /// A physical copy of this source holding this source's current seed marker.
    SeedCopy,
    /// An earlier release's journal: no identity recorded, nothing contradicts it.
    Unrecorded,
    /// The target journals nothing of this migration yet (allowed by [`Need::JournalOrNone`]).
    NotJournaled,
}

/// Why a pair is refused: what was found, why it matters, how to fix it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mismatch {
    pub what: String,
    pub why: String,
    pub fix: String,
}

/// Two identities name the same database. The system identifier is compared
/// only when both sides could read it (`pg_control_system()` may be denied to
/// the role; the database OID alone then decides).
pub fn same_identity(recorded: &DatabaseIdentity, observed: &DatabaseIdentity) -> bool {
    let systems_agree = recorded.system_identifier.is_empty()
        || observed.system_identifier.is_empty()
        || recorded.system_identifier == observed.system_identifier;
    systems_agree && recorded.database_oid == observed.database_oid
}

/// The database OID a slot name of this release carries (`pgferry_<name>__<oid>`).
fn slot_database_oid(migration: &MigrationName, slot: &str) -> Option<u32> {
    slot.strip_prefix(PREFIX)?.strip_prefix(migration.as_str())?.strip_prefix("__")?.parse().ok()
}

fn describe(id: &DatabaseIdentity) -> String {
    match id.system_identifier.as_str() {
        "" => format!("database OID {} (system identifier not readable)", id.database_oid),
        system => format!("system identifier {system}, database OID {}", id.database_oid),
    }
}

/// Judges the pair for `command` (its name, for the messages) of `migration`.
pub fn judge(migration: &MigrationName, command: &str, need: Need, facts: &PairFacts) -> Result<Paired, Mismatch> {
    let source = describe(&facts.source);
    if same_database(&facts.source, &facts.target, facts.target_shows_source_session) {
        return Err(Mismatch {
            what: format!("the target is the source itself: they are the same database ({source}, and the target's server shows pgferry's session on the source)"),
            why: format!("{command} would take the source's own pgferry objects (the live migration's slot, publications, fence journal) for the target's and change or remove them"),
            fix: "point --target at the database the source is migrated into: the same server under another spelling (TCP or a Unix socket, another host name) is still the source".into(),
        });
    }
    match &facts.journal {
        TargetJournal::Journaled { source: Some(recorded), .. } if !same_identity(recorded, &facts.source) => {
            Err(Mismatch {
                what: format!(
                    "the target's journal of migration {migration} names another source ({}); this source is {source}",
                    describe(recorded)
                ),
                why: format!("{command} acts on one migration's source and target together: with another source's target it could fence, unfence or remove the objects of a migration it does not belong to"),
                fix: format!("give the --source and --target of one migration (the target journals its source when the migration starts), or another --name than {migration}"),
            })
        }
        TargetJournal::Journaled { source: Some(_), .. } => Ok(Paired::Recorded),
        TargetJournal::Journaled { source: None, slot_name } => {
            match slot_name.as_deref().and_then(|slot| slot_database_oid(migration, slot)) {
                Some(oid) if oid != facts.source.database_oid => Err(Mismatch {
                    what: format!(
                        "the target's journal of migration {migration} records the slot {} of a source database with OID {oid}; this source is {source}",
                        slot_name.as_deref().unwrap_or_default()
                    ),
                    why: format!("{command} acts on one migration's source and target together: with another source's target it could fence, unfence or remove the objects of a migration it does not belong to"),
                    fix: format!("give the --source and --target of one migration, or another --name than {migration}"),
                }),
                _ => Ok(Paired::Unrecorded),
            }
        }
        TargetJournal::SeedCopy { token }
            if facts.source_seed_token.as_deref() == Some(token.as_str())
                && same_identity(&facts.target, &facts.source) =>
        {
            Ok(Paired::SeedCopy)
        }
        TargetJournal::SeedCopy { .. } | TargetJournal::Absent { .. } if need == Need::JournalOrNone => {
            Ok(Paired::NotJournaled)
        }
        TargetJournal::SeedCopy { .. } => Err(Mismatch {
            what: format!("the target holds a seed marker of migration {migration} that is not this source's current one (another source, or an earlier seed prepare), and no journal of it"),
            why: format!("{command} acts on a migration under way: this target is not that migration's, so it cannot say what the migration did"),
            fix: "give the --target this source was seeded into (the copy taken after its last pgferry seed prepare)".into(),
        }),
        TargetJournal::Absent { others } => Err(Mismatch {
            what: format!(
                "the target holds no journal of migration {migration}: it has not been copied into this database{}",
                match others.as_slice() {
                    [] => String::new(),
                    others => format!(" (the target journals: {})", others.join(", ")),
                }
            ),
            why: format!("{command} acts on a migration under way, which pgferry journals on its target: this target (another database, or an empty one) is not where this source is migrated, so nothing may be fenced, unfenced or dropped on the source on its word"),
            fix: if command.starts_with("abort") || command.starts_with("cleanup") {
                format!("point --target at the database this source was copied into (by pgferry start or pgferry copy), with the same --name ({migration}); a migration never started has nothing to {command}")
            } else {
                format!("run pgferry copy (or pgferry start) first if migration {migration} has not started; if it has, point --target at the database this source was copied into, with the same --name")
            },
        }),
    }
}

/// Whether `abort` or `cleanup` finds its migration already removed on both sides
/// (a rerun after a finished run): the target journals nothing of it, is not the
/// source itself, and the source holds none of its objects (`source_holds_any`:
/// its slot, publications, fence rows, seed marker, DDL capture). Then there is
/// nothing to do and nothing to refuse; otherwise the pairing decides.
pub fn already_removed(facts: &PairFacts, source_holds_any: bool) -> bool {
    matches!(facts.journal, TargetJournal::Absent { .. })
        && !same_database(&facts.source, &facts.target, facts.target_shows_source_session)
        && facts.source_seed_token.is_none()
        && !source_holds_any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(system: &str, oid: u32) -> DatabaseIdentity {
        DatabaseIdentity { system_identifier: system.into(), database_oid: oid }
    }

    fn facts(source: DatabaseIdentity, target: DatabaseIdentity, shows: bool, journal: TargetJournal) -> PairFacts {
        PairFacts { source, target, target_shows_source_session: shows, journal, source_seed_token: None }
    }

    fn recorded(system: &str, oid: u32) -> TargetJournal {
        TargetJournal::Journaled { source: Some(id(system, oid)), slot_name: None }
    }

    fn main() -> MigrationName {
        MigrationName::new("main").unwrap()
    }

    #[test]
    fn the_source_itself_is_never_a_target_whatever_its_journal() {
        for journal in [TargetJournal::Absent { others: vec![] }, recorded("7", 5)] {
            for need in [Need::Journal, Need::JournalOrNone] {
                let refused = judge(&main(), "abort", need, &facts(id("7", 5), id("7", 5), true, journal.clone()));
                let mismatch = refused.unwrap_err();
                assert!(mismatch.what.contains("the target is the source itself"), "{mismatch:?}");
                assert!(mismatch.fix.contains("--target"), "{mismatch:?}");
            }
        }
    }

    #[test]
    fn a_journal_of_this_source_pairs_and_one_of_another_is_refused() {
        let ours = facts(id("7", 5), id("9", 3), false, recorded("7", 5));
        assert_eq!(judge(&main(), "cutover", Need::Journal, &ours), Ok(Paired::Recorded));
        for other in [recorded("7", 6), recorded("8", 5)] {
            for need in [Need::Journal, Need::JournalOrNone] {
                let mismatch =
                    judge(&main(), "cutover", need, &facts(id("7", 5), id("9", 3), false, other.clone())).unwrap_err();
                assert!(mismatch.what.contains("names another source"), "{mismatch:?}");
                assert!(mismatch.what.contains("database OID 5"), "names this source: {mismatch:?}");
            }
        }
        // A physical copy (a seeded target) shares both identifiers with its source.
        let seeded = facts(id("7", 5), id("7", 5), false, recorded("7", 5));
        assert_eq!(judge(&main(), "cutover", Need::Journal, &seeded), Ok(Paired::Recorded));
    }

    #[test]
    fn an_unreadable_system_identifier_leaves_the_database_oid_to_decide() {
        let unreadable = facts(id("", 5), id("", 3), false, recorded("7", 5));
        assert_eq!(judge(&main(), "abort", Need::Journal, &unreadable), Ok(Paired::Recorded));
        let other = facts(id("", 5), id("", 3), false, recorded("7", 6));
        assert!(judge(&main(), "abort", Need::Journal, &other).is_err());
    }

    #[test]
    fn no_journal_is_refused_only_where_the_command_needs_one() {
        let absent = facts(id("7", 5), id("9", 3), false, TargetJournal::Absent { others: vec!["shop".into()] });
        let mismatch = judge(&main(), "cutover", Need::Journal, &absent).unwrap_err();
        assert!(mismatch.what.contains("no journal of migration main"), "{mismatch:?}");
        assert!(mismatch.what.contains("(the target journals: shop)"), "{mismatch:?}");
        assert!(mismatch.fix.contains("pgferry copy"), "{mismatch:?}");
        assert_eq!(judge(&main(), "copy", Need::JournalOrNone, &absent), Ok(Paired::NotJournaled));
    }

    #[test]
    fn an_earlier_releases_journal_is_checked_by_its_slot_name() {
        let journal = |slot: Option<&str>| TargetJournal::Journaled { source: None, slot_name: slot.map(Into::into) };
        let judged =
            |slot| judge(&main(), "abort", Need::Journal, &facts(id("7", 5), id("9", 3), false, journal(slot)));
        assert_eq!(judged(None), Ok(Paired::Unrecorded));
        assert_eq!(judged(Some("pgferry_main")), Ok(Paired::Unrecorded));
        assert_eq!(judged(Some("pgferry_main__5")), Ok(Paired::Unrecorded));
        assert!(judged(Some("pgferry_main__6")).unwrap_err().what.contains("OID 6"));
    }

    #[test]
    fn a_physical_copy_before_its_attach_pairs_by_the_seed_markers_token() {
        let copy = |token: &str, source_token: Option<&str>| PairFacts {
            source_seed_token: source_token.map(Into::into),
            ..facts(id("7", 5), id("7", 5), false, TargetJournal::SeedCopy { token: token.into() })
        };
        assert_eq!(judge(&main(), "abort", Need::Journal, &copy("t1", Some("t1"))), Ok(Paired::SeedCopy));
        assert!(judge(&main(), "abort", Need::Journal, &copy("t0", Some("t1"))).is_err());
        assert!(judge(&main(), "abort", Need::Journal, &copy("t1", None)).is_err());
        assert_eq!(
            judge(&main(), "start --seeded", Need::JournalOrNone, &copy("t0", Some("t1"))),
            Ok(Paired::NotJournaled),
            "start --seeded judges the marker itself"
        );
    }

    #[test]
    fn a_rerun_of_a_finished_abort_finds_nothing_only_when_nothing_is_left_anywhere() {
        let absent = || TargetJournal::Absent { others: vec![] };
        assert!(already_removed(&facts(id("7", 5), id("9", 3), false, absent()), false));
        assert!(!already_removed(&facts(id("7", 5), id("9", 3), false, absent()), true), "the source holds its slot");
        assert!(!already_removed(&facts(id("7", 5), id("7", 5), true, absent()), false), "the source itself");
        assert!(!already_removed(&facts(id("7", 5), id("9", 3), false, recorded("7", 5)), false));
        let marked =
            PairFacts { source_seed_token: Some("t".into()), ..facts(id("7", 5), id("9", 3), false, absent()) };
        assert!(!already_removed(&marked, false), "a seed marker on the source");
    }

    #[test]
    fn every_command_that_acts_on_a_migration_under_way_needs_its_journal() {
        assert_eq!(Need::of(Command::Abort { force: true }), Need::Journal);
        assert_eq!(Need::of(Command::Cleanup { force: false }), Need::Journal);
        assert_eq!(Need::of(Command::Cutover), Need::Journal);
        assert_eq!(Need::of(Command::Follow), Need::Journal);
        assert_eq!(Need::of(Command::Rehearse), Need::Journal);
        assert_eq!(Need::of(Command::Repair), Need::Journal);
        assert_eq!(Need::of(Command::Start), Need::JournalOrNone);
        assert_eq!(Need::of(Command::Copy), Need::JournalOrNone);
    }
}
