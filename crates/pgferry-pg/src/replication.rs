//! The replication connection, and the slot whose exported snapshot every copy
//! worker reads through.
//!
//! `CREATE_REPLICATION_SLOT ... LOGICAL pgoutput EXPORT_SNAPSHOT` returns the slot's
//! consistent point and the name of a snapshot that shows exactly the data committed
//! before that point. Workers import it with `SET TRANSACTION SNAPSHOT`, so the copy
//! and the change stream meet without a gap or an overlap. The snapshot lives only
//! while the replication session stays idle, so [`SnapshotSlot`] keeps the session
//! open until it is dropped
//! ([Streaming Replication Protocol](https://www.postgresql.org/docs/current/protocol-replication.html)).
//!
//! A replication session is opened gated: its startup and authentication, up to
//! an `IDENTIFY_SYSTEM`, run under the spec's connect timeout, like every other
//! connection ([`crate::connect`]). The transport sets no TCP keepalive on its
//! socket and has no option for one, so the server is asked to probe instead
//! (`tcp_keepalives_*` and `tcp_user_timeout` at startup, with pgferry's values):
//! a pgferry that vanished ends its walsender and frees the slot for the next run.

use pgferry_core::sql::{Ident, Sql};
use pgwire_replication::{PgWireError, ReplicationClient, ReplicationConfig, TlsConfig};

use crate::connect::{
    within_connect_timeout, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES, STARTUP_LIMITS, TCP_USER_TIMEOUT,
};
use crate::connspec::{ConnSpec, SslMode};

/// A slot's consistent point with the snapshot exported at it.
pub struct SnapshotSlot {
    /// The LSN from which the slot's change stream starts, as PostgreSQL prints it.
    pub consistent_point: String,
    /// The exported snapshot, valid while this value lives.
    pub snapshot_name: String,
    _session: ReplicationClient,
}

/// Why a replication session failed.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {cause}")]
pub struct ReplicationError {
    pub doing: String,
    pub cause: String,
    /// The server's SQLSTATE, when the server refused ([`crate::sqlstate::code_of_transport`]).
    pub code: Option<tokio_postgres::error::SqlState>,
}

/// The transport's configuration for a connection spec.
pub fn replication_config(spec: &ConnSpec, slot: &str, publications: Vec<String>) -> ReplicationConfig {
    let root = spec.sslrootcert.clone();
    let tls = match spec.sslmode {
        SslMode::Disable => TlsConfig::disabled(),
        SslMode::Allow | SslMode::Prefer => {
            TlsConfig { mode: pgwire_replication::SslMode::Prefer, ..TlsConfig::disabled() }
        }
        SslMode::Require if root.is_none() => TlsConfig::require(),
        SslMode::Require | SslMode::VerifyCa => TlsConfig::verify_ca(root),
        SslMode::VerifyFull => TlsConfig::verify_full(root),
    };
    let mut config = ReplicationConfig::default();
    config.host = spec.host_str();
    config.port = spec.port;
    config.user = spec.user.clone();
    config.password = spec.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
    config.database = spec.dbname.clone();
    config.tls = tls;
    config.slot = slot.to_string();
    config.publication = publications.into();
    config.application_name = Some(spec.application_name.clone());
    let keepalives = format!(
        "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={KEEPALIVE_RETRIES} -c tcp_user_timeout={}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        TCP_USER_TIMEOUT.as_millis()
    );
    config.options = Some(match &spec.options {
        Some(given) => format!("{STARTUP_LIMITS} {given} {keepalives}"),
        None => format!("{STARTUP_LIMITS} {keepalives}"),
    });
    config
}

/// Opens a replication session and waits, at most the spec's connect timeout,
/// for the server to answer `IDENTIFY_SYSTEM`; the session is then ready for
/// commands, or for [`ReplicationClient::start`].
pub async fn open_gated(spec: &ConnSpec, config: ReplicationConfig) -> Result<ReplicationClient, PgWireError> {
    let mut session = ReplicationClient::connect_gated(config).await?;
    within_connect_timeout(spec, session.identify_system())
        .await
        .map_err(|timeout| PgWireError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, timeout)))??;
    Ok(session)
}

/// Creates a logical slot (permanent, or temporary: gone with the session) and
/// exports its snapshot.
pub async fn create_slot_with_snapshot(
    spec: &ConnSpec,
    slot: &str,
    temporary: bool,
) -> Result<SnapshotSlot, ReplicationError> {
    let fail = |doing: &str| {
        let doing = doing.to_string();
        move |e: pgwire_replication::PgWireError| ReplicationError {
            doing,
            cause: e.to_string(),
            code: crate::sqlstate::code_of_transport(&e),
        }
    };
    let config = replication_config(spec, slot, Vec::new());
    let mut session = open_gated(spec, config).await.map_err(fail("opening a replication connection to the source"))?;
    let command = Sql::new("CREATE_REPLICATION_SLOT ")
        .ident(&Ident::from_catalog(slot))
        .push(if temporary { " TEMPORARY" } else { "" })
        .push(" LOGICAL pgoutput EXPORT_SNAPSHOT");
    let rows =
        session.simple_query(command.as_str()).await.map_err(fail(&format!("creating the replication slot {slot}")))?;
    let text = |row: &Vec<Option<bytes::Bytes>>, i: usize| {
        row.get(i).and_then(|v| v.as_ref()).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
    };
    let row = rows.first().ok_or_else(|| ReplicationError {
        doing: format!("creating the replication slot {slot}"),
        cause: "the server returned no row".into(),
        code: None,
    })?;
    Ok(SnapshotSlot { consistent_point: text(row, 1), snapshot_name: text(row, 2), _session: session })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use pgferry_testkit::{Cluster, PgVersion};

    use super::*;

    /// A listener nobody reads from: TCP connects, the startup is never answered.
    #[tokio::test]
    async fn a_silent_server_is_given_up_at_the_connect_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "postgresql://u@127.0.0.1:{}/db?sslmode=disable&connect_timeout=2",
            silent.local_addr().unwrap().port()
        );
        let spec = ConnSpec::parse(&url).unwrap();
        let started = Instant::now();
        let err = create_slot_with_snapshot(&spec, "s", true).await.err().expect("no server answered");
        assert!(started.elapsed() < Duration::from_secs(30), "gave up only after {:?}", started.elapsed());
        assert!(err.to_string().contains("no answer within 2 s (connect_timeout)"), "{err}");
    }

    /// The transport sets no keepalive on its socket, so the server probes it.
    #[tokio::test]
    async fn the_server_probes_a_replication_session_with_pgferrys_keepalives() {
        let cluster = Cluster::start(PgVersion::V15);
        let spec = ConnSpec::parse(&cluster.url("postgres")).unwrap();
        let mut session = open_gated(&spec, replication_config(&spec, "s", Vec::new())).await.unwrap();
        for (setting, value) in [
            ("tcp_keepalives_idle", "30"),
            ("tcp_keepalives_interval", "10"),
            ("tcp_keepalives_count", "3"),
            ("tcp_user_timeout", "60000"),
        ] {
            let rows = session.simple_query(&format!("SHOW {setting}")).await.unwrap();
            let shown = rows[0][0].as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            assert_eq!(shown.as_deref(), Some(value), "{setting}");
        }
    }

    /// The server's refusal reaches the caller with its SQLSTATE, not only as text.
    #[tokio::test]
    async fn a_refused_replication_command_carries_its_sqlstate() {
        let cluster = Cluster::start(PgVersion::V15);
        let spec = ConnSpec::parse(&cluster.url("postgres")).unwrap();
        let _held = create_slot_with_snapshot(&spec, "taken", true).await.unwrap();
        let err = create_slot_with_snapshot(&spec, "taken", true).await.err().expect("the name is taken");
        assert_eq!(err.code, Some(tokio_postgres::error::SqlState::DUPLICATE_OBJECT), "{err}");
        assert_eq!(crate::sqlstate::classify(err.code.as_ref().unwrap()), crate::sqlstate::Class::Definite);
    }
}
