//! pgferry's pure core: how names reach SQL, the names pgferry gives its objects,
//! and the decisions (preflight verdicts, plans, go/no-go) that executors act on.
//!
//! Nothing in this crate performs I/O, so every decision is a plain function that a
//! plain `#[test]` can pin down.

pub mod copy_plan;
pub mod cutover;
pub mod ddl;
pub mod fence;
pub mod fidelity;
pub mod foreign_keys;
pub mod handover;
pub mod instance;
pub mod inventory;
pub mod journal;
pub mod lifecycle;
pub mod names;
pub mod pairing;
pub mod parity;
pub mod phase;
pub mod preflight;
pub mod roles;
pub mod seed;
pub mod slot;
pub mod sql;
pub mod state;
pub mod target;
pub mod validation;
