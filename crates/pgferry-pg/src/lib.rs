//! pgferry's PostgreSQL layer: how connections are specified and opened (with TLS),
//! and the catalog queries that observe a server.

pub mod connect;
pub mod connspec;
pub mod copy_pipe;
pub mod facts;
pub mod inventory;
pub mod journal;
mod pgpass;
pub mod replication;
pub mod sqlstate;
mod tls;
pub mod tools;

pub use connect::{connect, connect_as_application, ConnectError, ConnectFailure};
pub use connspec::{ConnSpec, ConnSpecError, Host, Secret, SslMode};
pub use tls::TlsConfigError;
