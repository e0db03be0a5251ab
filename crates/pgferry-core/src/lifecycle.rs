//! Which commands a migration's cutover state allows.
//!
//! Once the switch ran, the application writes to the target and the old source
//! is fenced: a command that moves data from the old source (`start`, `copy`,
//! `follow`, `rehearse`, `seed prepare`, `start --seeded`) or writes the target
//! from it (`validate --repair`) would undo the cutover's promise, and `abort`
//! would lift the old source's fence under the application. Before the switch,
//! `cleanup` would end a live migration. While a switch's outcome is unknown (a
//! cutover stopped while its switch command ran), both sides may be the
//! application's, so only the cutover's rerun with the operator's word may go on.
//!
//! The decision is a pure function of what the journals say
//! ([`CutoverRecord`]); the executors read them and refuse, with nothing changed.
//! Read-only commands (`status`, `validate` without `--repair`, `check`) are not
//! asked: they keep working, and `status` says the migration was cut over.

use crate::cutover::CutoverStep;

/// The commands whose running depends on how far the migration's cutover went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    /// `start --seeded`: attaching a physical copy, then change capture.
    StartSeeded,
    Copy,
    Follow,
    Rehearse,
    SeedPrepare,
    /// `validate --repair`: copies differing tables again from the source.
    Repair,
    /// `cutover`: a stopped one is finished or rolled back by its rerun; a
    /// completed one is not run again.
    Cutover,
    /// `abort`: stop the migration and lift the fence; `force` is the operator's word.
    Abort {
        force: bool,
    },
    /// `cleanup`: after the cutover, remove pgferry's objects and keep the old
    /// source fenced; `force` is the operator's word.
    Cleanup {
        force: bool,
    },
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::StartSeeded => "start --seeded",
            Command::Copy => "copy",
            Command::Follow => "follow",
            Command::Rehearse => "rehearse",
            Command::SeedPrepare => "seed prepare",
            Command::Repair => "validate --repair",
            Command::Cutover => "cutover",
            Command::Abort { .. } => "abort",
            Command::Cleanup { .. } => "cleanup",
        }
    }

    /// What the command would do to a cut-over migration, in a few words.
    fn harm(self) -> &'static str {
        match self {
            Command::Repair => "it would write the old source's rows into the target the application now uses",
            Command::Rehearse => "it would drain the old source's stream into the target the application now uses",
            _ => "it would move data from the old, fenced source into the target the application now uses",
        }
    }
}

/// What the journals say about a migration's cutover.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CutoverRecord {
    /// The last step: the target's journal, or `Switching` when only the
    /// source's record of the switch is seen (the target's journal lost, not
    /// read, or behind). `None`: no cutover recorded.
    pub last_step: Option<CutoverStep>,
    /// When the switch command started, as the source records it.
    pub switched_at: Option<String>,
    /// The downtime the cutover journaled.
    pub downtime_seconds: Option<f64>,
}

impl CutoverRecord {
    /// The switch ran and pgferry saw it end: the application uses the target.
    pub fn completed(&self) -> bool {
        self.last_step.is_some_and(|step| step >= CutoverStep::Switched)
    }

    /// ` (switched at T, downtime D s)`, with what is recorded; empty when nothing is.
    pub fn when(&self) -> String {
        let parts: Vec<String> = [
            self.switched_at.as_ref().map(|at| format!("switched at {at}")),
            self.downtime_seconds.filter(|d| d.is_finite()).map(|d| format!("downtime {d:.3} s")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// Why a command is refused, and what to do instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub instead: String,
}

fn refusal(reason: String, instead: &str) -> Result<(), Refusal> {
    Err(Refusal { reason, instead: instead.to_string() })
}

/// Whether `command` may run on migration `migration` in the state `record`
/// describes; the reason and what to do instead when not.
pub fn allowed(migration: &str, command: Command, record: &CutoverRecord) -> Result<(), Refusal> {
    if let Command::Abort { force: true } | Command::Cleanup { force: true } = command {
        return Ok(());
    }
    let when = record.when();
    match (command, record.last_step) {
        // The cutover's own rerun decides a stopped switch (`cutover::recovery`).
        (Command::Cutover, Some(CutoverStep::Reported)) => refusal(
            format!("migration {migration} was already cut over{when}"),
            "the old source stays fenced; pgferry cleanup removes the migration's objects",
        ),
        (Command::Cutover, _) => Ok(()),
        (Command::Abort { .. } | Command::Cleanup { .. }, Some(CutoverStep::Switching)) => refusal(
            format!("a cutover of migration {migration} was stopped while its switch command ran{when}: the application may point at either side"),
            "rerun pgferry cutover with --switch-ran or --switch-did-not-run first",
        ),
        (_, Some(CutoverStep::Switching)) => refusal(
            format!(
                "a cutover of migration {migration} ran its switch command{when} and its end is not recorded: the application may point at the target, and {} would act on the old source ({})",
                command.as_str(),
                command.harm()
            ),
            "see where the application points; if the cutover was stopped, rerun pgferry cutover with --switch-ran or --switch-did-not-run; once it is cut over, pgferry cleanup retires the migration, and a new migration needs another --name",
        ),
        (Command::Abort { .. }, _) if record.completed() => refusal(
            format!("migration {migration} was cut over{when}: the application was switched to the target, and abort would lift the old source's fence and let writes land on it"),
            "pgferry cleanup removes the migration's objects and keeps the old source fenced; --force lifts the fence anyway (only once nothing reaches the old source)",
        ),
        (Command::Abort { .. }, _) => Ok(()),
        (Command::Cleanup { .. }, _) if !record.completed() => refusal(
            format!("migration {migration} has not been cut over: cleanup would drop the slot, publications and journal of a live migration"),
            "to stop and remove the migration use pgferry abort; to finish it, pgferry cutover; --force removes it anyway",
        ),
        (Command::Cleanup { .. }, _) => Ok(()),
        _ if record.completed() => refusal(
            format!("migration {migration} was cut over{when}: the application uses the target and the old source is fenced; {} is refused: {}", command.as_str(), command.harm()),
            "pgferry cleanup retires this migration (the old source stays fenced); a new migration needs another --name",
        ),
        _ => Ok(()),
    }
}

/// Whether `abort --target-lost` may lift the fence and remove the migration's
/// objects on the source, knowing only what the source records (the target, and
/// with it the cutover's journal, is gone). A switch the source saw start may
/// have moved the application onto the lost target: only the operator knows, so
/// only `force` goes on.
pub fn allowed_without_target(migration: &str, record: &CutoverRecord, force: bool) -> Result<(), Refusal> {
    match &record.switched_at {
        Some(at) if !force => refusal(
            format!("the source records that a cutover of migration {migration} started its switch command at {at}: the application may have been moved to the lost target, and abort would make the old source writable beside it"),
            "see where the application points; once nothing writes to the lost target (the switch did not complete, or the application was moved back), rerun with --force: the fence is lifted and the migration's objects on the source removed",
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CutoverStep::*;

    const DATA_COMMANDS: [Command; 7] = [
        Command::Start,
        Command::StartSeeded,
        Command::Copy,
        Command::Follow,
        Command::Rehearse,
        Command::SeedPrepare,
        Command::Repair,
    ];

    fn at(step: Option<CutoverStep>) -> CutoverRecord {
        CutoverRecord { last_step: step, ..CutoverRecord::default() }
    }

    fn before_the_switch() -> [Option<CutoverStep>; 7] {
        [
            None,
            Some(Decided),
            Some(Fenced),
            Some(Drained),
            Some(SequencesSet),
            Some(ConstraintsRestored),
            Some(Validated),
        ]
    }

    #[test]
    fn data_commands_run_until_the_switch_and_are_refused_after_it() {
        for command in DATA_COMMANDS {
            for step in before_the_switch() {
                assert_eq!(allowed("main", command, &at(step)), Ok(()), "{command:?} at {step:?}");
            }
            for step in [Switched, Opened, Reported] {
                let refusal = allowed("main", command, &at(Some(step))).unwrap_err();
                assert!(refusal.reason.contains("migration main was cut over"), "{refusal:?}");
                assert!(refusal.reason.contains(command.as_str()), "{refusal:?}");
                assert!(refusal.instead.contains("pgferry cleanup"), "{refusal:?}");
                assert!(refusal.instead.contains("another --name"), "{refusal:?}");
            }
            let unknown = allowed("main", command, &at(Some(Switching))).unwrap_err();
            assert!(unknown.instead.contains("--switch-ran"), "{unknown:?}");
        }
    }

    #[test]
    fn the_refusal_says_when_it_was_cut_over() {
        let record = CutoverRecord {
            last_step: Some(Reported),
            switched_at: Some("2026-12-06 12:00:00+00".into()),
            downtime_seconds: Some(0.7284),
        };
        let refusal = allowed("shop", Command::Follow, &record).unwrap_err();
        assert!(
            refusal
                .reason
                .starts_with("migration shop was cut over (switched at 2026-12-06 12:00:00+00, downtime 0.728 s)"),
            "{refusal:?}"
        );
        assert_eq!(at(Some(Reported)).when(), "");
        let unknown_downtime = CutoverRecord { downtime_seconds: Some(f64::NAN), ..at(Some(Reported)) };
        assert_eq!(unknown_downtime.when(), "");
    }

    #[test]
    fn abort_after_the_switch_and_cleanup_before_it_are_refused_unless_forced() {
        let abort = Command::Abort { force: false };
        let cleanup = Command::Cleanup { force: false };
        for step in before_the_switch() {
            assert!(allowed("main", abort, &at(step)).is_ok(), "{step:?}");
            assert!(allowed("main", cleanup, &at(step)).is_err(), "{step:?}");
        }
        for step in [Some(Switched), Some(Opened), Some(Reported)] {
            assert!(allowed("main", abort, &at(step)).is_err(), "{step:?}");
            assert!(allowed("main", cleanup, &at(step)).is_ok(), "{step:?}");
        }
        for removal in [abort, cleanup] {
            let refusal = allowed("main", removal, &at(Some(Switching))).unwrap_err();
            assert!(refusal.instead.contains("--switch-ran or --switch-did-not-run"), "{refusal:?}");
        }
        for forced in [Command::Abort { force: true }, Command::Cleanup { force: true }] {
            for step in [None, Some(Switching), Some(Reported)] {
                assert!(allowed("main", forced, &at(step)).is_ok());
            }
        }
    }

    #[test]
    fn a_cutover_is_refused_only_once_it_reported() {
        for step in before_the_switch().into_iter().chain([Some(Switching), Some(Switched), Some(Opened)]) {
            assert!(allowed("main", Command::Cutover, &at(step)).is_ok(), "{step:?}: its rerun finishes or rolls back");
        }
        let refusal = allowed("main", Command::Cutover, &at(Some(Reported))).unwrap_err();
        assert!(refusal.reason.contains("already cut over"), "{refusal:?}");
    }

    #[test]
    fn completed_means_the_switch_was_seen_to_end() {
        let completed: Vec<_> = CutoverStep::ALL.into_iter().filter(|s| at(Some(*s)).completed()).collect();
        assert_eq!(completed, [Switched, Opened, Reported]);
        assert!(!at(None).completed());
    }

    #[test]
    fn an_abort_without_its_target_needs_the_operators_word_once_the_switch_started() {
        assert!(allowed_without_target("main", &at(None), false).is_ok());
        let fenced_only = CutoverRecord { last_step: Some(Fenced), ..Default::default() };
        assert!(allowed_without_target("main", &fenced_only, false).is_ok());
        let switched = CutoverRecord {
            last_step: Some(Switching),
            switched_at: Some("2026-12-06 23:00:00+00".into()),
            downtime_seconds: None,
        };
        let refusal = allowed_without_target("main", &switched, false).unwrap_err();
        assert!(refusal.reason.contains("2026-12-06 23:00:00+00"), "{refusal:?}");
        assert!(refusal.instead.contains("--force"), "{refusal:?}");
        assert!(allowed_without_target("main", &switched, true).is_ok());
    }
}
