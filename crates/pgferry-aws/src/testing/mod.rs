//! Test support: a moto server, fixtures in it, and a scripted control plane
//! for what moto cannot model. Compiled for this crate's tests and, with the
//! `testing` feature, for the CLI's.

mod doubles;
mod fixtures;
mod moto;
mod scripted;

pub use doubles::{RecordingGreen, ScriptedProbe};
pub use fixtures::{
    blue_green_statuses, create_foreign_blue_green, create_key, create_plain_security_group, create_proxy,
    create_source, create_zone, instance_security_groups, manage_master_password, security_group_id,
    security_groups_named, snapshot_exists, GroupSeen, Source,
};
pub use moto::Moto;
pub use scripted::{RecordingSeed, Scripted};
