//! The cutover's decisions: whether to start (go/no-go), and, after a failure or a
//! kill, whether to roll back or to finish.
//!
//! Both are pure functions of observed figures and the journaled step, so they are
//! pinned by plain tests and the executor only does I/O. The point of no return is
//! the switch command's start: before it, any failure puts the source back as it
//! was (the fence lifted exactly) and replication goes on. The command's start is
//! journaled (`switching`) before it runs; when pgferry saw it fail or stopped it
//! at its time limit, it is known not to be running and the cutover rolls back;
//! when pgferry was killed while it ran, nobody but the operator knows whether the
//! application moved, so nothing rolls back by itself: the rerun asks, and the
//! operator answers with `--switch-ran` or `--switch-did-not-run`. After the
//! switch, the cutover is completed, since traffic may already flow to the target.

use std::fmt;

use serde::Serialize;

/// What the go/no-go looks at, observed just before the fence.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Observed {
    /// Bytes of WAL between the source's current position and the applied one.
    pub lag_bytes: i64,
    /// Chunks that validation found different and did not clear since.
    pub validation_mismatches: i64,
    /// Tables whose source definition no longer matches the target.
    pub pending_schema_changes: Vec<String>,
    /// Tables whose existing rows a replayed DDL command rewrote with values
    /// each side computed for itself (a volatile default, `USING`), not found
    /// equal since: `"table: why"`.
    pub rows_to_prove: Vec<String>,
    /// The copy's phase is `copied` and change capture has applied at least once.
    pub replicating: bool,
    /// Another process holds the slot; the cutover drains the stream itself.
    pub stream_in_use: bool,
    /// Tables without a replica identity: only their inserts and truncates are
    /// replicated, so an UPDATE or DELETE on them since the copy would be missing.
    pub insert_only_tables: Vec<String>,
    /// Prepared transactions (two-phase commit) on the source database: the fence
    /// cannot stop their COMMIT PREPARED, so their writes could land after it.
    pub prepared_transactions: Vec<String>,
    /// The catalog parity gate: what differs between the source's and the target's
    /// catalogs (each difference refuses), and the warnings.
    pub parity: crate::parity::Parity,
}

/// What to do about tables without a replica identity, whose UPDATEs and
/// DELETEs change capture cannot carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeylessTables {
    /// No cutover while there are any.
    Refuse,
    /// The operator vouches that they only ever receive inserts (logs, histories).
    InsertOnly,
    /// Copy them again inside the fence, once writes have stopped: exact, at the
    /// cost of their copy time in the downtime.
    Recopy,
}

impl KeylessTables {
    pub fn as_str(self) -> &'static str {
        match self {
            KeylessTables::Refuse => "refuse",
            KeylessTables::InsertOnly => "insert_only",
            KeylessTables::Recopy => "recopy",
        }
    }
}

/// Limits set by the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub max_lag_bytes: i64,
    pub keyless_tables: KeylessTables,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { max_lag_bytes: 16 * 1024 * 1024, keyless_tables: KeylessTables::Refuse }
    }
}

/// The verdict, with every reason against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "reasons", rename_all = "snake_case")]
pub enum Decision {
    Go,
    NoGo(Vec<String>),
}

/// Whether the cutover may start now.
pub fn go_no_go(observed: &Observed, policy: &Policy) -> Decision {
    let mut reasons = Vec::new();
    if !observed.replicating {
        reasons.push("change capture is not running yet: finish the copy and start streaming".to_string());
    }
    if observed.lag_bytes > policy.max_lag_bytes {
        reasons.push(format!(
            "the target is {} bytes behind (limit {}): wait for change capture to catch up",
            observed.lag_bytes, policy.max_lag_bytes
        ));
    }
    if observed.validation_mismatches > 0 {
        reasons.push(format!(
            "validation found {} differing chunk(s): run pgferry validate and resolve them",
            observed.validation_mismatches
        ));
    }
    if !observed.insert_only_tables.is_empty() && policy.keyless_tables == KeylessTables::Refuse {
        reasons.push(format!(
            "{} have no replica identity, so only their inserts and truncates were replicated: copy them again inside the fence with --recopy-keyless-tables (their copy time adds to the downtime), or, if they only ever receive inserts, say so with --keyless-tables-are-insert-only (pgferry validate shows any difference)",
            observed.insert_only_tables.join(", ")
        ));
    }
    if observed.stream_in_use {
        reasons.push(
            "the replication slot is in use: stop pgferry follow first (the cutover drains the stream itself)"
                .to_string(),
        );
    }
    if !observed.prepared_transactions.is_empty() {
        reasons.push(format!(
            "prepared transactions are open on the source ({}): commit or roll them back first (COMMIT PREPARED / ROLLBACK PREPARED), or they could commit after the fence",
            observed.prepared_transactions.join(", ")
        ));
    }
    for table in &observed.pending_schema_changes {
        reasons.push(format!("{table} changed on the source: apply the same DDL on the target, then resume"));
    }
    for table in &observed.rows_to_prove {
        reasons.push(format!(
            "{table}; its rows may differ from the source's though change capture carried no change of them: prove them equal with pgferry validate --changed-only (it compares the table in full; equal clears this), or copy the table again with pgferry validate --repair (with change capture stopped), then rerun the cutover"
        ));
    }
    reasons.extend(observed.parity.reasons());
    if reasons.is_empty() {
        Decision::Go
    } else {
        Decision::NoGo(reasons)
    }
}

/// The cutover's steps, in order. Each is journaled when it completes; all are
/// durable, and the stored spelling is pinned by a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoverStep {
    Decided,
    Fenced,
    Drained,
    SequencesSet,
    ConstraintsRestored,
    Validated,
    /// The switch command is about to start (or runs): it may have moved the
    /// application, until pgferry sees how it ended.
    Switching,
    Switched,
    Opened,
    Reported,
}

impl CutoverStep {
    pub const ALL: [CutoverStep; 10] = [
        CutoverStep::Decided,
        CutoverStep::Fenced,
        CutoverStep::Drained,
        CutoverStep::SequencesSet,
        CutoverStep::ConstraintsRestored,
        CutoverStep::Validated,
        CutoverStep::Switching,
        CutoverStep::Switched,
        CutoverStep::Opened,
        CutoverStep::Reported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CutoverStep::Decided => "decided",
            CutoverStep::Fenced => "fenced",
            CutoverStep::Drained => "drained",
            CutoverStep::SequencesSet => "sequences_set",
            CutoverStep::ConstraintsRestored => "constraints_restored",
            CutoverStep::Validated => "validated",
            CutoverStep::Switching => "switching",
            CutoverStep::Switched => "switched",
            CutoverStep::Opened => "opened",
            CutoverStep::Reported => "reported",
        }
    }

    pub fn parse(stored: &str) -> Option<CutoverStep> {
        CutoverStep::ALL.into_iter().find(|s| s.as_str() == stored)
    }
}

impl fmt::Display for CutoverStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operator's word about a switch command that was running when pgferry stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SwitchWord {
    #[default]
    Unspoken,
    /// `--switch-did-not-run`: the application still points at the source.
    DidNotRun,
    /// `--switch-ran`: the application points at the target.
    Ran,
}

/// What a rerun must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing is fenced: start from the go/no-go.
    Start,
    /// Before the switch: lift the fence exactly and let replication go on.
    RollBack,
    /// The switch happened: finish the remaining steps, the old source stays fenced.
    Finish,
    /// The switch command was running when pgferry stopped and may have moved the
    /// application: only the operator can say (`--switch-ran` or `--switch-did-not-run`).
    AskOperator,
    /// The journaled switch command's process group is still running on this machine.
    WaitForSwitch,
    /// The cutover completed earlier: nothing to do.
    Done,
}

/// What a rerun sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Resumed {
    /// The last journaled step (`None`: no cutover recorded).
    pub last_step: Option<CutoverStep>,
    /// The source's journal holds a fence of this migration (pgferry's or the outside one).
    pub fence_recorded: bool,
    /// The journaled switch command still runs on this machine.
    pub switch_running: bool,
    pub word: SwitchWord,
}

/// Recovery after a stop, or an error when the operator's word does not apply.
pub fn recovery(resumed: &Resumed) -> Result<Recovery, String> {
    let Resumed { last_step, fence_recorded, switch_running, word } = *resumed;
    if word != SwitchWord::Unspoken && last_step != Some(CutoverStep::Switching) {
        return Err(match last_step {
            Some(step) => format!("--switch-ran and --switch-did-not-run answer for a switch command that was running when pgferry stopped; this cutover's last step is {step}"),
            None => "--switch-ran and --switch-did-not-run answer for a switch command that was running when pgferry stopped; no cutover is recorded".to_string(),
        });
    }
    let before_switch = last_step.is_none_or(|step| step < CutoverStep::Switching);
    Ok(match last_step {
        _ if before_switch && fence_recorded => Recovery::RollBack,
        // A stopped cutover whose fence is already lifted (a rollback that could
        // not reach the target to clear its journal): nothing to undo.
        _ if before_switch => Recovery::Start,
        Some(CutoverStep::Switching) if switch_running => Recovery::WaitForSwitch,
        // No fence recorded any more (a rollback lowered it but could not clear
        // the target's journal, or the source's journal was lost): finishing
        // would open the target over a source that may take writes.
        Some(CutoverStep::Switching) if !fence_recorded && word == SwitchWord::Ran => {
            return Err("--switch-ran: the source's fence is not recorded any more (an earlier rollback may have lowered it), so pgferry cannot finish this cutover over it; see whether the source takes writes: --switch-did-not-run rolls the cutover back".into())
        }
        Some(CutoverStep::Switching) => match word {
            SwitchWord::Unspoken => Recovery::AskOperator,
            SwitchWord::DidNotRun => Recovery::RollBack,
            SwitchWord::Ran => Recovery::Finish,
        },
        Some(CutoverStep::Reported) => Recovery::Done,
        None | Some(_) => Recovery::Finish,
    })
}

/// What the stopped cutovers of one instance's cutover (`cutover
/// --all-databases`: every database journals the same instance cutover) prove
/// about its one switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceSwitch {
    /// A database stopped before journaling that its switch starts. The switch
    /// command runs only once every database journaled it, so it never ran.
    NeverRan,
    /// A database journaled the switch's success, so the command ran and succeeded.
    Ran,
    /// Every database stopped at the switch: only the operator can say.
    Unknown,
}

/// The instance switch's fate from the last steps of the databases that
/// journaled one instance cutover (the source's record of a switch counted).
pub fn instance_switch(steps: &[CutoverStep]) -> InstanceSwitch {
    if steps.iter().any(|s| *s < CutoverStep::Switching) {
        InstanceSwitch::NeverRan
    } else if steps.iter().any(|s| *s > CutoverStep::Switching) {
        InstanceSwitch::Ran
    } else {
        InstanceSwitch::Unknown
    }
}

/// The word a database stopped at the switch of an instance cutover is
/// recovered with: what the other databases prove, else the operator's; an
/// operator's word that the journals contradict is refused.
pub fn instance_word(switch: InstanceSwitch, operator: SwitchWord) -> Result<SwitchWord, String> {
    match (switch, operator) {
        (InstanceSwitch::NeverRan, SwitchWord::Ran) => Err("--switch-ran: pgferry's switch command never ran, since a database of the same instance cutover stopped before its switch".into()),
        (InstanceSwitch::NeverRan, _) => Ok(SwitchWord::DidNotRun),
        (InstanceSwitch::Ran, SwitchWord::DidNotRun) => Err("--switch-did-not-run: the switch went through, as a database of the same instance cutover journaled past it".into()),
        (InstanceSwitch::Ran, _) => Ok(SwitchWord::Ran),
        (InstanceSwitch::Unknown, word) => Ok(word),
    }
}

/// Where one database's earlier cutover stopped, as the rerun of an
/// instance's cutover weighs it against the other databases'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoppedCutover {
    /// The last journaled step, the source's record of a switch counted.
    pub last_step: Option<CutoverStep>,
    /// The source's journal holds a fence of it.
    pub fenced: bool,
    /// The instance cutover it was part of (`None`: cut over alone, or journaled by an earlier release).
    pub instance: Option<String>,
}

impl StoppedCutover {
    fn same_instance<'a>(&self, all: &'a [StoppedCutover]) -> impl Iterator<Item = CutoverStep> + 'a {
        let instance = self.instance.clone();
        all.iter().filter(move |s| instance.is_some() && s.instance == instance).filter_map(|s| s.last_step)
    }
}

/// Database `i` completed its cutover in an instance cutover that another
/// database has not completed yet: the rerun finishes the others and leaves
/// it as it is, instead of refusing the whole instance as cut over already.
pub fn finished_in_unfinished_instance(stopped: &[StoppedCutover], i: usize) -> bool {
    stopped[i].last_step == Some(CutoverStep::Reported)
        && stopped[i].same_instance(stopped).any(|step| step != CutoverStep::Reported)
}

/// How the rerun of an instance's cutover recovers the databases whose
/// cutover stopped (`recovering`, by index): each one's word, the databases
/// stopped at the switch first (their proof lies in the others' journals,
/// which recovering the others clears). The operator's word answers only for
/// those at the switch, weighed against what the others of the same instance
/// cutover prove ([`instance_switch`]); given where none is at the switch, it
/// is refused as for one database. `Err`: the database and why, nothing done.
pub fn instance_recovery(
    stopped: &[StoppedCutover],
    recovering: &[usize],
    operator: SwitchWord,
) -> Result<Vec<(usize, SwitchWord)>, (usize, String)> {
    let at_switch = |i: &usize| stopped[*i].last_step == Some(CutoverStep::Switching);
    let mut order: Vec<usize> = recovering.to_vec();
    order.sort_by_key(|i| !at_switch(i));
    if operator != SwitchWord::Unspoken {
        if let Some(&first) = order.first().filter(|i| !at_switch(i)) {
            let step = stopped[first].last_step.map_or("none".to_string(), |s| s.to_string());
            return Err((first, format!("--switch-ran and --switch-did-not-run answer for a switch command that was running when pgferry stopped; no database stopped at its switch (this one's last step: {step})")));
        }
    }
    order
        .into_iter()
        .map(|i| {
            if !at_switch(&i) {
                return Ok((i, SwitchWord::Unspoken));
            }
            if stopped[i].instance.is_none() {
                return Ok((i, operator));
            }
            let steps: Vec<CutoverStep> = stopped[i].same_instance(stopped).collect();
            instance_word(instance_switch(&steps), operator).map(|word| (i, word)).map_err(|why| (i, why))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observed {
        Observed { replicating: true, lag_bytes: 1000, ..Observed::default() }
    }

    #[test]
    fn a_caught_up_clean_migration_may_cut_over() {
        assert_eq!(go_no_go(&healthy(), &Policy::default()), Decision::Go);
    }

    #[test]
    fn every_reason_against_is_given() {
        let observed = Observed {
            replicating: false,
            lag_bytes: 1 << 30,
            validation_mismatches: 2,
            pending_schema_changes: vec!["\"public\".\"t\"".into()],
            rows_to_prove: vec!["\"public\".\"r\": a column with a default that is not a constant was added".into()],
            stream_in_use: true,
            insert_only_tables: vec!["\"public\".\"log\"".into()],
            prepared_transactions: vec!["p1".into()],
            ..Observed::default()
        };
        let Decision::NoGo(reasons) = go_no_go(&observed, &Policy::default()) else { panic!("must be no-go") };
        assert_eq!(reasons.len(), 8, "{reasons:?}");
        assert!(
            reasons[7].contains("\"public\".\"r\"") && reasons[7].contains("pgferry validate --repair"),
            "{reasons:?}"
        );
        assert!(reasons[5].contains("prepared transactions are open on the source (p1)"), "{reasons:?}");
        let vouched = Policy { keyless_tables: KeylessTables::InsertOnly, ..Policy::default() };
        let recopied = Policy { keyless_tables: KeylessTables::Recopy, ..Policy::default() };
        for policy in [vouched, recopied] {
            let Decision::NoGo(fewer) = go_no_go(&observed, &policy) else { panic!("still no-go") };
            assert_eq!(fewer.len(), 7, "{policy:?}");
        }
        assert!(reasons[6].contains("\"public\".\"t\" changed on the source"));
    }

    fn after(step: Option<CutoverStep>, fence_recorded: bool, word: SwitchWord) -> Result<Recovery, String> {
        recovery(&Resumed { last_step: step, fence_recorded, switch_running: false, word })
    }

    #[test]
    fn failures_before_the_switch_roll_back_and_after_it_finish() {
        assert_eq!(after(None, false, SwitchWord::Unspoken), Ok(Recovery::Start));
        assert_eq!(after(Some(CutoverStep::Decided), false, SwitchWord::Unspoken), Ok(Recovery::Start));
        assert_eq!(
            after(Some(CutoverStep::Decided), true, SwitchWord::Unspoken),
            Ok(Recovery::RollBack),
            "killed inside the fence's raise"
        );
        assert_eq!(after(None, true, SwitchWord::Unspoken), Ok(Recovery::RollBack), "a fence without a cutover row");
        assert_eq!(
            after(Some(CutoverStep::Drained), false, SwitchWord::Unspoken),
            Ok(Recovery::Start),
            "lifted, the target's journal not cleared"
        );
        for step in [
            CutoverStep::Fenced,
            CutoverStep::Drained,
            CutoverStep::SequencesSet,
            CutoverStep::ConstraintsRestored,
            CutoverStep::Validated,
        ] {
            assert_eq!(after(Some(step), true, SwitchWord::Unspoken), Ok(Recovery::RollBack), "{step}");
        }
        for step in [CutoverStep::Switched, CutoverStep::Opened] {
            assert_eq!(after(Some(step), true, SwitchWord::Unspoken), Ok(Recovery::Finish), "{step}");
        }
        assert_eq!(after(Some(CutoverStep::Reported), true, SwitchWord::Unspoken), Ok(Recovery::Done));
    }

    #[test]
    fn a_switch_whose_end_nobody_saw_is_never_rolled_back_by_itself() {
        assert_eq!(after(Some(CutoverStep::Switching), true, SwitchWord::Unspoken), Ok(Recovery::AskOperator));
        assert_eq!(after(Some(CutoverStep::Switching), true, SwitchWord::DidNotRun), Ok(Recovery::RollBack));
        assert_eq!(after(Some(CutoverStep::Switching), true, SwitchWord::Ran), Ok(Recovery::Finish));
        let running = Resumed {
            last_step: Some(CutoverStep::Switching),
            fence_recorded: true,
            switch_running: true,
            word: SwitchWord::DidNotRun,
        };
        assert_eq!(recovery(&running), Ok(Recovery::WaitForSwitch));
    }

    #[test]
    fn the_operators_word_is_refused_where_it_does_not_apply() {
        for step in [None, Some(CutoverStep::Validated), Some(CutoverStep::Reported)] {
            for word in [SwitchWord::Ran, SwitchWord::DidNotRun] {
                assert!(after(step, true, word).is_err(), "{step:?} {word:?}");
            }
        }
    }

    #[test]
    fn the_stored_format_is_pinned() {
        let stored: Vec<_> = CutoverStep::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            stored,
            [
                "decided",
                "fenced",
                "drained",
                "sequences_set",
                "constraints_restored",
                "validated",
                "switching",
                "switched",
                "opened",
                "reported"
            ]
        );
        for step in CutoverStep::ALL {
            assert_eq!(CutoverStep::parse(step.as_str()), Some(step));
        }
        assert!(CutoverStep::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_decision_serializes_with_its_reasons() {
        let json = serde_json::to_string(&Decision::NoGo(vec!["lag".into()])).unwrap();
        assert_eq!(json, r#"{"decision":"no_go","reasons":["lag"]}"#);
    }

    fn at(step: Option<CutoverStep>, instance: Option<&str>) -> StoppedCutover {
        StoppedCutover { last_step: step, fenced: true, instance: instance.map(String::from) }
    }

    #[test]
    fn an_instance_rerun_recovers_the_databases_at_the_switch_first_by_the_others_proof() {
        use CutoverStep::*;
        let stopped = [at(Some(Validated), Some("a")), at(Some(Switching), Some("a")), at(None, None)];
        assert_eq!(
            instance_recovery(&stopped, &[0, 1], SwitchWord::Unspoken),
            Ok(vec![(1, SwitchWord::DidNotRun), (0, SwitchWord::Unspoken)]),
            "the one at the switch first, rolled back by the other's proof"
        );
        assert!(instance_recovery(&stopped, &[0, 1], SwitchWord::Ran)
            .is_err_and(|(i, why)| i == 1 && why.contains("never ran")));
        // Another instance cutover's journal proves nothing.
        let stopped = [at(Some(Validated), Some("old")), at(Some(Switching), Some("a"))];
        assert_eq!(
            instance_recovery(&stopped, &[0, 1], SwitchWord::Unspoken),
            Ok(vec![(1, SwitchWord::Unspoken), (0, SwitchWord::Unspoken)])
        );
        // Past the switch: finished, a contrary word refused.
        let stopped = [at(Some(Reported), Some("a")), at(Some(Switching), Some("a")), at(Some(Opened), Some("a"))];
        assert_eq!(
            instance_recovery(&stopped, &[1, 2], SwitchWord::Unspoken),
            Ok(vec![(1, SwitchWord::Ran), (2, SwitchWord::Unspoken)])
        );
        assert!(instance_recovery(&stopped, &[1, 2], SwitchWord::DidNotRun).is_err());
        assert!(finished_in_unfinished_instance(&stopped, 0));
        assert!(!finished_in_unfinished_instance(&[at(Some(Reported), Some("a")), at(Some(Reported), Some("a"))], 0));
        assert!(!finished_in_unfinished_instance(&[at(Some(Reported), None), at(Some(Switching), None)], 0));
        // A word where no database stopped at its switch: refused, as for one database.
        let stopped = [at(Some(Validated), Some("a")), at(Some(Fenced), Some("a"))];
        assert!(instance_recovery(&stopped, &[0, 1], SwitchWord::Ran)
            .is_err_and(|(_, why)| why.contains("no database stopped at its switch")));
        assert!(instance_recovery(&stopped, &[0, 1], SwitchWord::Unspoken).is_ok());
    }

    #[test]
    fn a_switch_journaled_whose_fence_is_no_longer_recorded_is_never_finished() {
        assert_eq!(after(Some(CutoverStep::Switching), false, SwitchWord::Unspoken), Ok(Recovery::AskOperator));
        assert_eq!(after(Some(CutoverStep::Switching), false, SwitchWord::DidNotRun), Ok(Recovery::RollBack));
        assert!(after(Some(CutoverStep::Switching), false, SwitchWord::Ran)
            .is_err_and(|why| why.contains("not recorded any more")));
    }

    #[test]
    fn an_instance_switch_is_proved_by_any_database_of_its_cutover() {
        use CutoverStep::*;
        assert_eq!(instance_switch(&[Switching, Validated, Switching]), InstanceSwitch::NeverRan);
        assert_eq!(instance_switch(&[Switching, Decided]), InstanceSwitch::NeverRan);
        assert_eq!(instance_switch(&[Switching, Switched, Switching]), InstanceSwitch::Ran);
        assert_eq!(instance_switch(&[Switching, Reported]), InstanceSwitch::Ran);
        assert_eq!(instance_switch(&[Switching, Switching]), InstanceSwitch::Unknown);
        assert_eq!(instance_word(InstanceSwitch::NeverRan, SwitchWord::Unspoken), Ok(SwitchWord::DidNotRun));
        assert_eq!(instance_word(InstanceSwitch::NeverRan, SwitchWord::DidNotRun), Ok(SwitchWord::DidNotRun));
        assert!(instance_word(InstanceSwitch::NeverRan, SwitchWord::Ran).is_err());
        assert_eq!(instance_word(InstanceSwitch::Ran, SwitchWord::Unspoken), Ok(SwitchWord::Ran));
        assert!(instance_word(InstanceSwitch::Ran, SwitchWord::DidNotRun).is_err());
        for word in [SwitchWord::Unspoken, SwitchWord::Ran, SwitchWord::DidNotRun] {
            assert_eq!(instance_word(InstanceSwitch::Unknown, word), Ok(word));
        }
    }
}
