//! Opening connections, and saying plainly why one could not be opened.
//!
//! A failed connection is the first error most operators meet. The cause is sorted
//! into what the operator must do about it ([`ConnectFailure`]), and the message
//! names the server by its redacted URL, never with the password.
//!
//! Opening a connection has a deadline ([`ConnSpec::connect_timeout`], 10 s by
//! default) over all of it: TCP, TLS, startup and authentication, as libpq's
//! `connect_timeout` (tokio-postgres' own timeout covers the TCP connect only, so
//! a server that accepts and never answers would hang). Every TCP socket has
//! keepalives ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_RETRIES`]),
//! so a peer that vanished without closing (a silent partition, a NAT or load
//! balancer dropping state) fails the connection within about a minute instead of
//! never. Keepalives probe only an idle socket: data sent and never acknowledged
//! is bounded by `TCP_USER_TIMEOUT` ([`TCP_USER_TIMEOUT`], the same budget), so a
//! write into a partition fails as fast as a read from one. The application's
//! time limits are lifted for pgferry's own sessions ([`LIFT_TIMEOUTS`]), and so
//! is a read-only default ([`LIFT_READ_ONLY`]) but where a session must start as
//! the application's would ([`connect_as_application`]).

use std::error::Error as _;
use std::time::Duration;

use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connspec::{ConnSpec, Host, SslMode};
use crate::tls::{client_config, TlsConfigError};

/// What went wrong, by what the operator should do about it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnectFailure {
    /// Nothing answered: wrong host or port, server down, firewall.
    Unreachable,
    /// The server refused the user or password.
    Authentication,
    /// The database does not exist.
    NoDatabase,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// The server refused for another reason (pg_hba.conf, too many connections, ...).
    Refused,
}

/// A connection that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {server}: {cause}")]
pub struct ConnectError {
    /// The redacted URL of the server.
    pub server: String,
    pub failure: ConnectFailure,
    /// The cause in one sentence.
    pub cause: String,
}

impl ConnectError {
    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self.failure {
            ConnectFailure::Unreachable => "check the host and port, that the server runs, and that this machine may reach it (security groups, firewalls); a slow network may need a longer connect_timeout (seconds, in the URL or PGCONNECT_TIMEOUT)",
            ConnectFailure::Authentication => "check the user name and password (in the URL, PGPASSWORD or ~/.pgpass)",
            ConnectFailure::NoDatabase => "create the database first, or fix the database name in the URL",
            ConnectFailure::Tls => "check sslmode and sslrootcert: sslrootcert must be the CA that signed the server's certificate (for RDS, the region's or the global bundle), and with verify-full the host must match the certificate",
            ConnectFailure::Refused => "read the server's message above; pg_hba.conf or connection limits may need a change",
        }
    }
}

/// Idle time before a socket's first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the connection is dead.
pub const KEEPALIVE_RETRIES: u32 = 3;

/// How long data may stay unacknowledged before the connection is dead
/// (`TCP_USER_TIMEOUT`, Linux): the keepalives' own budget.
pub const TCP_USER_TIMEOUT: Duration =
    Duration::from_secs(KEEPALIVE_IDLE.as_secs() + KEEPALIVE_INTERVAL.as_secs() * KEEPALIVE_RETRIES as u64);

/// Connects and spawns the connection's I/O task: a session of pgferry's own,
/// the application's time limits and read-only default lifted.
pub async fn connect(spec: &ConnSpec) -> Result<Client, ConnectError> {
    open(spec, &[LIFT_TIMEOUTS, LIFT_READ_ONLY]).await
}

/// A session as the application's start: read-only where the database or the
/// role says so (the fence's probe, the switchover's write probe); only the
/// time limits lifted.
pub async fn connect_as_application(spec: &ConnSpec) -> Result<Client, ConnectError> {
    open(spec, &[LIFT_TIMEOUTS]).await
}

async fn open(spec: &ConnSpec, lifts: &[Lift]) -> Result<Client, ConnectError> {
    let fail = |failure, cause: String| ConnectError { server: spec.to_string(), failure, cause };
    let tls = client_config(spec).map_err(|e: TlsConfigError| fail(ConnectFailure::Tls, e.to_string()))?;
    let config = pg_config(spec);
    let (client, connection) = within_connect_timeout(spec, config.connect(MakeRustlsConnect::new(tls)))
        .await
        .map_err(|timeout| fail(ConnectFailure::Unreachable, timeout))?
        .map_err(|e| {
            let (failure, cause) = classify(&e);
            fail(failure, cause)
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed with an error");
        }
    });
    lift(&client, lifts).await.map_err(|e| {
        let (failure, cause) = classify(&e);
        fail(failure, cause)
    })?;
    Ok(client)
}

/// A setting of the application's that pgferry's sessions lift: a cheap probe
/// of whether it is in effect at all, and the statement that lifts it.
struct Lift {
    /// A boolean SQL expression: whether the setting is in effect.
    probe: &'static str,
    /// Lifts it where the database, the role or the server set it.
    statement: &'static str,
}

/// Runs the lifts whose setting is in effect. Their statements read
/// `pg_settings`, which builds every setting of the server and costs about as
/// much as the connection itself (1-2 ms of the server's time on a fresh
/// session); the probes read only the settings concerned, in one round trip, so
/// a server that sets none of them pays nothing more.
async fn lift(client: &Client, lifts: &[Lift]) -> Result<(), tokio_postgres::Error> {
    let probes: Vec<&str> = lifts.iter().map(|l| l.probe).collect();
    let answers = client.simple_query(&["SELECT ", &probes.join(", ")].concat()).await?;
    let Some(row) = answers.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    }) else {
        return Ok(());
    };
    let needed: Vec<&str> =
        lifts.iter().enumerate().filter(|(i, _)| row.get(*i) == Some("t")).map(|(_, l)| l.statement).collect();
    if !needed.is_empty() {
        client.simple_query(&needed.join(";")).await?;
    }
    Ok(())
}

/// The application's time limits, lifted for pgferry's sessions: a database or
/// role with `statement_timeout = '30s'` (and the copy carries the database's
/// settings to the target) would cancel a long COPY, index build or validation
/// half way. The limits every supported server knows are given at startup
/// ([`STARTUP_LIMITS`], ahead of the URL's own `options`, which win); those of
/// newer servers are lifted by this query right after, where they are set for
/// the database, the role or the server.
/// ([Client connection defaults](https://www.postgresql.org/docs/current/runtime-config-client.html))
const LIFT_TIMEOUTS: Lift = Lift {
    probe: "coalesce(current_setting('idle_session_timeout', true), '0') <> '0'
        OR coalesce(current_setting('transaction_timeout', true), '0') <> '0'",
    statement: "SELECT set_config(name, '0', false) FROM pg_settings
        WHERE name IN ('idle_session_timeout', 'transaction_timeout')
          AND source NOT IN ('default', 'client', 'session') AND setting <> '0'",
};

/// A database, role or server that starts sessions read-only
/// (`default_transaction_read_only`, which the copy carries to the target too)
/// would refuse pgferry's own writes: the publication, the journal, the rows it
/// applies. Lifted where it is set for them, not where the connection asked for it.
const LIFT_READ_ONLY: Lift = Lift {
    probe: "current_setting('default_transaction_read_only') = 'on'",
    statement: "SELECT set_config(name, 'off', false) FROM pg_settings
        WHERE name = 'default_transaction_read_only' AND setting = 'on'
          AND source NOT IN ('default', 'client', 'session')",
};

/// The startup options that lift the application's time limits.
macro_rules! time_limits {
    () => {
        "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0"
    };
}

/// Startup options that lift the application's time limits (see [`LIFT_TIMEOUTS`]).
pub(crate) const STARTUP_LIMITS: &str = time_limits!();

/// The startup options of `pg_dump` and `pg_restore` (`PGOPTIONS`): the time
/// limits and the read-only default lifted (see [`LIFT_READ_ONLY`]).
pub(crate) const CLIENT_PROGRAM_OPTIONS: &str = concat!(time_limits!(), " -c default_transaction_read_only=off");

/// Runs `opening` under the spec's connect timeout; on expiry, says so in one
/// sentence.
pub async fn within_connect_timeout<T>(
    spec: &ConnSpec,
    opening: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    match spec.connect_timeout {
        Some(limit) => tokio::time::timeout(limit, opening).await.map_err(|_| {
            format!(
                "no answer within {} s (connect_timeout): the server accepted the connection but did not complete the startup, or nothing answered",
                limit.as_secs()
            )
        }),
        None => Ok(opening.await),
    }
}

/// The tokio-postgres configuration for a spec.
pub(crate) fn pg_config(spec: &ConnSpec) -> Config {
    let mut config = Config::new();
    match &spec.host {
        Host::Tcp(h) => config.host(h),
        Host::Socket(p) => config.host_path(p),
    };
    config
        .port(spec.port)
        .user(&spec.user)
        .dbname(&spec.dbname)
        .application_name(&spec.application_name)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT)
        .ssl_mode(match spec.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
    if let Some(p) = &spec.password {
        config.password(p.expose());
    }
    if let Some(t) = spec.connect_timeout {
        config.connect_timeout(t);
    }
    match &spec.options {
        Some(o) => config.options(format!("{STARTUP_LIMITS} {o}")),
        None => config.options(STARTUP_LIMITS),
    };
    config
}

fn classify(error: &tokio_postgres::Error) -> (ConnectFailure, String) {
    if let Some(db) = error.as_db_error() {
        let failure = match db.code() {
            c if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                ConnectFailure::Authentication
            }
            c if *c == SqlState::INVALID_CATALOG_NAME => ConnectFailure::NoDatabase,
            _ => ConnectFailure::Refused,
        };
        return (failure, format!("the server says: {}", db.message()));
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return (ConnectFailure::Tls, describe_tls(tls));
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                return (ConnectFailure::Tls, describe_tls(tls));
            }
            return (ConnectFailure::Unreachable, io.to_string());
        }
        source = cause.source();
    }
    let text = error.to_string();
    if text.contains("TLS") || text.contains("SSL") {
        return (ConnectFailure::Tls, text);
    }
    (ConnectFailure::Unreachable, text)
}

fn describe_tls(error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "TLS: the server's certificate is not signed by a CA in sslrootcert (wrong CA file?)".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "TLS: the server's certificate does not name this host (verify-full checks the host name)".into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "TLS: the server's certificate has expired".into()
        }
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_has_keepalives_and_the_spec_s_timeout() {
        let config = pg_config(&ConnSpec::parse("host=h connect_timeout=4").unwrap());
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(config.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(4)));
        assert_eq!(config.get_options(), Some(STARTUP_LIMITS));
    }

    #[test]
    fn the_urls_own_options_come_after_the_lifted_limits_and_win() {
        let config = pg_config(&ConnSpec::parse("host=h options='-c statement_timeout=5min'").unwrap());
        assert_eq!(config.get_options(), Some(format!("{STARTUP_LIMITS} -c statement_timeout=5min").as_str()));
    }
}
