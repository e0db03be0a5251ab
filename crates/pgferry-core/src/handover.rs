//! The handover of a migration's runner lock from a running `pgferry start` to a
//! `cutover` or a `rehearse`.
//!
//! One process at a time drives a migration (the runner lock, a session advisory
//! lock on the target). Without a handover the operator had to stop `start`
//! before the cutover, and the backlog grew while nothing applied it. Instead the
//! cutover writes a request into the target (`pgferry.handover`, so it works from
//! any machine that reaches the target), the running `start` ends its change
//! capture after the transaction at hand (committed, acknowledged) and releases
//! the lock, and the cutover takes it and goes on as it always does.
//!
//! Three decisions, each a plain function of what the executors observed:
//! - [`answer`]: what `start` says to a request (hand over while change capture
//!   runs; refuse while it is still copying; withdraw a request whose sender is
//!   gone, a `kill -9` of a waiting cutover);
//! - [`waiting`]: what the requester does while it waits (proceed once it holds
//!   the lock, give up on a refusal, on no answer, or at its deadline; each time
//!   withdrawing its request, so nothing is left changed);
//! - [`after_release`]: what `start` does once it let the lock go (end once the
//!   cutover holds it; wait while a rehearsal holds it, then resume; resume when
//!   the requester died or gave up without taking it).

use std::time::Duration;

/// The command that asks for the runner lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    Cutover,
    Rehearse,
}

impl Asker {
    /// The spelling stored in `pgferry.handover.command` (pinned by a test).
    pub fn as_str(self) -> &'static str {
        match self {
            Asker::Cutover => "cutover",
            Asker::Rehearse => "rehearse",
        }
    }

    pub fn parse(text: &str) -> Option<Asker> {
        match text {
            "cutover" => Some(Asker::Cutover),
            "rehearse" => Some(Asker::Rehearse),
            _ => None,
        }
    }
}

/// Where the running `start` stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerPhase {
    /// The preflight, the copy or the seed attach: the target is still being built.
    Building,
    /// Change capture runs: it can stop after any source transaction.
    Following,
}

/// `start`'s answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Stop change capture after the transaction at hand, commit, release the lock.
    HandOver,
    /// Refused, with the reason the requester prints; nothing changes.
    Refuse(String),
    /// The requester's session is gone: its request is deleted, `start` goes on.
    Withdraw,
}

/// What `start` answers a request, from its phase and whether the requester's
/// session on the target still exists.
pub fn answer(phase: RunnerPhase, requester_alive: bool, asker: Asker) -> Answer {
    if !requester_alive {
        return Answer::Withdraw;
    }
    match phase {
        RunnerPhase::Following => Answer::HandOver,
        RunnerPhase::Building => Answer::Refuse(format!(
            "pgferry start has not finished copying (or attaching) the data: change capture is not running yet, so the {} cannot take over; nothing was changed",
            asker.as_str()
        )),
    }
}

/// What the requester has seen so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// No answer yet.
    Pending,
    /// `start` is ending its change capture.
    Accepted,
    Refused(String),
}

/// The requester's next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// It holds the runner lock: the cutover (or rehearsal) goes on.
    Proceed,
    KeepWaiting,
    /// Withdraw the request and stop: `start` refused.
    Refused(String),
    /// Withdraw and stop: nothing answered within `answer_within` (the lock's
    /// holder is not a `start` that hands over: `follow`, `copy`, another cutover).
    NoAnswer,
    /// Withdraw and stop: accepted, but the lock was not free by the deadline.
    TimedOut,
}

/// The requester's wait, from the reply, whether it now holds the lock, and how long it waited.
pub fn waiting(reply: &Reply, holds_lock: bool, waited: Duration, answer_within: Duration, deadline: Duration) -> Wait {
    if holds_lock {
        return Wait::Proceed;
    }
    match reply {
        Reply::Refused(reason) => Wait::Refused(reason.clone()),
        Reply::Pending if waited >= answer_within => Wait::NoAnswer,
        _ if waited >= deadline => Wait::TimedOut,
        _ => Wait::KeepWaiting,
    }
}

/// Who holds the runner lock after `start` released it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    /// The session that asked for the handover.
    Requester,
    /// Any other session (another command started meanwhile).
    Other,
}

/// What `start` does next, once it released the lock to a requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRelease {
    /// The cutover holds the lock: `start` ends (exit 0), saying so.
    End,
    Wait,
    /// Take the lock again and resume change capture (the rehearsal ended, or the
    /// requester died or gave up before it took the lock).
    Resume,
}

pub fn after_release(asker: Asker, holder: Holder, requester_alive: bool, before_its_deadline: bool) -> AfterRelease {
    match (holder, asker) {
        (Holder::Requester, Asker::Cutover) => AfterRelease::End,
        (Holder::Requester, Asker::Rehearse) | (Holder::Other, _) => AfterRelease::Wait,
        (Holder::Nobody, _) if requester_alive && before_its_deadline => AfterRelease::Wait,
        (Holder::Nobody, _) => AfterRelease::Resume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_hands_over_only_while_change_capture_runs_and_only_to_a_live_requester() {
        assert_eq!(answer(RunnerPhase::Following, true, Asker::Cutover), Answer::HandOver);
        assert_eq!(answer(RunnerPhase::Following, false, Asker::Cutover), Answer::Withdraw);
        assert_eq!(answer(RunnerPhase::Building, false, Asker::Rehearse), Answer::Withdraw);
        let Answer::Refuse(reason) = answer(RunnerPhase::Building, true, Asker::Rehearse) else { panic!() };
        assert!(
            reason.contains("not finished copying")
                && reason.contains("rehearse")
                && reason.contains("nothing was changed")
        );
    }

    #[test]
    fn the_requester_proceeds_only_with_the_lock_and_otherwise_gives_up_at_each_bound() {
        let s = Duration::from_secs;
        let (within, deadline) = (s(10), s(60));
        assert_eq!(waiting(&Reply::Pending, true, s(0), within, deadline), Wait::Proceed);
        assert_eq!(waiting(&Reply::Accepted, true, s(100), within, deadline), Wait::Proceed);
        assert_eq!(waiting(&Reply::Pending, false, s(1), within, deadline), Wait::KeepWaiting);
        assert_eq!(waiting(&Reply::Pending, false, s(10), within, deadline), Wait::NoAnswer);
        assert_eq!(waiting(&Reply::Accepted, false, s(30), within, deadline), Wait::KeepWaiting);
        assert_eq!(waiting(&Reply::Accepted, false, s(60), within, deadline), Wait::TimedOut);
        assert_eq!(
            waiting(&Reply::Refused("copying".into()), false, s(0), within, deadline),
            Wait::Refused("copying".into())
        );
    }

    #[test]
    fn start_ends_for_a_cutover_waits_out_a_rehearsal_and_resumes_when_the_requester_is_gone() {
        use AfterRelease::*;
        assert_eq!(after_release(Asker::Cutover, Holder::Requester, true, true), End);
        assert_eq!(after_release(Asker::Rehearse, Holder::Requester, true, true), Wait);
        assert_eq!(after_release(Asker::Rehearse, Holder::Nobody, false, true), Resume, "the rehearsal ended");
        assert_eq!(after_release(Asker::Cutover, Holder::Nobody, true, true), Wait, "not taken yet");
        assert_eq!(after_release(Asker::Cutover, Holder::Nobody, false, true), Resume, "killed while waiting");
        assert_eq!(after_release(Asker::Cutover, Holder::Nobody, true, false), Resume, "gave up");
        assert_eq!(after_release(Asker::Cutover, Holder::Other, false, false), Wait);
    }

    #[test]
    fn the_askers_stored_spelling_is_pinned() {
        for asker in [Asker::Cutover, Asker::Rehearse] {
            assert_eq!(Asker::parse(asker.as_str()), Some(asker));
        }
        assert_eq!((Asker::Cutover.as_str(), Asker::Rehearse.as_str()), ("cutover", "rehearse"));
    }
}
