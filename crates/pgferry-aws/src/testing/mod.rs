//! Test support: a moto server, fixtures in it, and a scripted control plane
//! for what moto cannot model. Compiled for this crate's tests and, with the
//! `testing` feature, for the CLI's.

mod fixtures;
mod moto;
mod scripted;

pub use fixtures::{create_key, create_source, create_zone, security_group_id, Source};
pub use moto::Moto;
pub use scripted::{RecordingSeed, Scripted};
