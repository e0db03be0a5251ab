//! One typed stream of what the executors do, for whoever watches: the CLI's
//! progress bars and log lines, its Prometheus metrics, a test.
//!
//! Why one stream: each executor used to take its own callback type, so every new
//! watcher (metrics after the bars and the log lines) meant one more parameter per
//! executor and one more adapter per command. Now an executor takes one
//! [`Events`], and a new watcher is one `impl Observer`. The library only emits;
//! it draws nothing and exports nothing, so it needs no terminal or HTTP code.
//!
//! Events are emitted on the executor's own task, synchronously: an observer must
//! be quick (update a counter, draw a bar) and never block. The hot path emits
//! once per copied buffer and once per applied batch, never once per row.

use std::sync::Arc;

/// The tracing target of what the operator must see in the log whatever its
/// level filter (the CLI always writes it): for what happens once and has no
/// event of its own, such as the roles `start --roles` created.
pub const LOGGED: &str = "pgferry_events";

pub use crate::apply::FollowEvent;
pub use crate::copy::CopyEvent;
pub use crate::seed::SeedEvent;

/// The command a migration is running, as `pgferry_phase{phase}` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Copy,
    Seed,
    Follow,
    Validate,
    Cutover,
}

impl Phase {
    pub const ALL: [Phase; 5] = [Phase::Copy, Phase::Seed, Phase::Follow, Phase::Validate, Phase::Cutover];

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Copy => "copy",
            Phase::Seed => "seed",
            Phase::Follow => "follow",
            Phase::Validate => "validate",
            Phase::Cutover => "cutover",
        }
    }
}

/// Something an executor did.
#[derive(Clone, Debug)]
pub enum Event {
    /// An executor began: the migration is now in this phase.
    Phase(Phase),
    Copy(CopyEvent),
    Seed(SeedEvent),
    Follow(FollowEvent),
    /// A validation ended with this verdict (`EQUAL`, `DIFFERENT`, `NOT PROVEN`).
    Validated {
        verdict: &'static str,
        mismatched_chunks: u64,
        rows_compared: u64,
    },
    /// A cutover step was journaled.
    CutoverStep {
        step: &'static str,
    },
    /// The switch succeeded after this long with writes stopped.
    Switched {
        downtime_seconds: f64,
    },
}

/// One watcher of the stream.
pub trait Observer: Send + Sync {
    fn observe(&self, event: &Event);
}

/// Any closure is an observer (tests, one-off adapters).
impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn observe(&self, event: &Event) {
        self(event)
    }
}

/// The observers an executor reports to: cheap to clone, shared by its workers.
#[derive(Clone, Default)]
pub struct Events(Arc<[Arc<dyn Observer>]>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Events({} observers)", self.0.len())
    }
}

impl Events {
    /// Reports to each of `observers`, in order.
    pub fn to(observers: Vec<Arc<dyn Observer>>) -> Self {
        Events(observers.into())
    }

    /// Reports to nobody.
    pub fn silent() -> Self {
        Events::default()
    }

    pub fn emit(&self, event: Event) {
        for observer in self.0.iter() {
            observer.observe(&event);
        }
    }

    pub(crate) fn copy(&self, event: CopyEvent) {
        if !self.0.is_empty() {
            self.emit(Event::Copy(event))
        }
    }

    pub(crate) fn follow(&self, event: FollowEvent) {
        self.emit(Event::Follow(event))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn every_observer_sees_every_event_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (Arc::clone(&seen), Arc::clone(&seen));
        let events = Events::to(vec![
            Arc::new(move |e: &Event| a.lock().unwrap().push(format!("a {e:?}"))),
            Arc::new(move |e: &Event| b.lock().unwrap().push(format!("b {e:?}"))),
        ]);
        events.emit(Event::Phase(Phase::Follow));
        events.emit(Event::CutoverStep { step: "fenced" });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(seen[0].starts_with("a Phase(Follow)") && seen[1].starts_with("b Phase(Follow)"));
        assert!(seen[3].starts_with("b CutoverStep"));
    }

    #[test]
    fn phase_labels_are_distinct() {
        let labels: std::collections::HashSet<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(labels.len(), Phase::ALL.len());
    }
}
