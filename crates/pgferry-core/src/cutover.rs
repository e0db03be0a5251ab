//! The cutover's decisions: whether to start (go/no-go), and, after a failure or a
//! kill, whether to roll back or to finish.
//!
//! Both are pure functions of observed figures and the journaled step, so they are
//! pinned by plain tests and the executor only does I/O. The point of no return is
//! the switch: before it, any failure puts the source back as it was (the fence
//! lifted exactly) and replication goes on; from it on, the cutover is completed,
//! since traffic may already flow to the target.

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
    /// The copy's phase is `copied` and change capture has applied at least once.
    pub replicating: bool,
    /// Another process holds the slot; the cutover drains the stream itself.
    pub stream_in_use: bool,
    /// Tables without a replica identity: only their inserts and truncates are
    /// replicated, so an UPDATE or DELETE on them since the copy would be missing.
    pub insert_only_tables: Vec<String>,
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
        reasons.push("the replication slot is in use: stop pgferry follow first (the cutover drains the stream itself)".to_string());
    }
    for table in &observed.pending_schema_changes {
        reasons.push(format!("{table} changed on the source: apply the same DDL on the target, then resume"));
    }
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
    Switched,
    Opened,
    Reported,
}

impl CutoverStep {
    pub const ALL: [CutoverStep; 9] = [
        CutoverStep::Decided,
        CutoverStep::Fenced,
        CutoverStep::Drained,
        CutoverStep::SequencesSet,
        CutoverStep::ConstraintsRestored,
        CutoverStep::Validated,
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

/// What a rerun (or the run that failed) must do, given the last completed step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was fenced: start from the go/no-go.
    Start,
    /// Before the switch: lift the fence exactly and let replication go on.
    RollBack,
    /// The switch happened: finish the remaining steps.
    Finish,
}

/// Recovery after the last journaled step (`None`: no cutover recorded).
pub fn recovery(last_completed: Option<CutoverStep>) -> Recovery {
    match last_completed {
        None | Some(CutoverStep::Decided) => Recovery::Start,
        Some(step) if step < CutoverStep::Switched => Recovery::RollBack,
        Some(_) => Recovery::Finish,
    }
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
            stream_in_use: true,
            insert_only_tables: vec!["\"public\".\"log\"".into()],
        };
        let Decision::NoGo(reasons) = go_no_go(&observed, &Policy::default()) else { panic!("must be no-go") };
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        let vouched = Policy { keyless_tables: KeylessTables::InsertOnly, ..Policy::default() };
        let recopied = Policy { keyless_tables: KeylessTables::Recopy, ..Policy::default() };
        for policy in [vouched, recopied] {
            let Decision::NoGo(fewer) = go_no_go(&observed, &policy) else { panic!("still no-go") };
            assert_eq!(fewer.len(), 5, "{policy:?}");
        }
        assert!(reasons[5].contains("\"public\".\"t\" changed on the source"));
    }

    #[test]
    fn failures_before_the_switch_roll_back_and_after_it_finish() {
        assert_eq!(recovery(None), Recovery::Start);
        assert_eq!(recovery(Some(CutoverStep::Decided)), Recovery::Start);
        for step in [CutoverStep::Fenced, CutoverStep::Drained, CutoverStep::SequencesSet, CutoverStep::ConstraintsRestored, CutoverStep::Validated] {
            assert_eq!(recovery(Some(step)), Recovery::RollBack, "{step}");
        }
        for step in [CutoverStep::Switched, CutoverStep::Opened, CutoverStep::Reported] {
            assert_eq!(recovery(Some(step)), Recovery::Finish, "{step}");
        }
    }

    #[test]
    fn the_stored_format_is_pinned() {
        let stored: Vec<_> = CutoverStep::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            stored,
            ["decided", "fenced", "drained", "sequences_set", "constraints_restored", "validated", "switched", "opened", "reported"]
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
}
