//! pgferry's library facade: the executors behind each command. Decisions come
//! from `pgferry_core`; the I/O they need happens here and in `pgferry_pg`.

pub mod apply;
pub mod check;
pub mod cleanup;
pub mod copy;
pub mod cutover;
pub mod ddl;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod fence;
pub mod handover;
pub mod instance;
pub mod inventory;
pub mod large_objects;
pub mod lifecycle;
pub mod materialized_views;
pub mod outside_fence;
pub mod pairing;
pub mod parity;
pub mod partitions;
mod pool;
pub mod rehearse;
pub mod report;
pub mod roles;
pub mod seed;
mod shell;
mod slot;
pub mod start;
pub mod state;
pub mod status;
pub mod switch_barrier;
pub mod target;
pub mod timeline;
pub mod validate;

pub use error::{Error, ErrorKind, Result};
