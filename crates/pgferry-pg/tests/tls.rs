//! TLS against a real server with a certificate from a CA made by the harness.

use pgferry_pg::{connect, ConnSpec, ConnectFailure};
use pgferry_testkit::{Cluster, PgVersion};

fn spec(cluster: &Cluster, host: &str, mode: &str, rootcert: Option<&std::path::Path>) -> ConnSpec {
    let mut s = format!("host={host} port={} user=postgres dbname=postgres sslmode={mode}", cluster.port());
    if let Some(cert) = rootcert {
        s.push_str(&format!(" sslrootcert={}", cert.display()));
    }
    ConnSpec::parse(&s).unwrap()
}

async fn ssl_in_use(client: &tokio_postgres::Client) -> bool {
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn verify_full_succeeds_with_the_right_ca_and_each_mode_encrypts() {
    let cluster = Cluster::builder(PgVersion::V15).tls().start();
    let ca = cluster.tls_files().unwrap().ca_cert.clone();
    for (host, mode, root) in [
        ("127.0.0.1", "verify-full", Some(ca.as_path())),
        ("localhost", "verify-full", Some(ca.as_path())),
        ("127.0.0.1", "verify-ca", Some(ca.as_path())),
        ("127.0.0.1", "require", None),
        ("127.0.0.1", "prefer", None),
    ] {
        let client =
            connect(&spec(&cluster, host, mode, root)).await.unwrap_or_else(|e| panic!("{mode} to {host}: {e}"));
        assert!(ssl_in_use(&client).await, "{mode} must encrypt");
    }
    let plain = connect(&spec(&cluster, "127.0.0.1", "disable", None)).await.unwrap();
    assert!(!ssl_in_use(&plain).await);
}

#[tokio::test]
async fn a_wrong_ca_fails_with_a_message_naming_the_cause() {
    let cluster = Cluster::builder(PgVersion::V15).tls().start();
    let wrong = cluster.tls_files().unwrap().other_ca_cert.clone();
    for mode in ["verify-full", "verify-ca", "require"] {
        let err = connect(&spec(&cluster, "127.0.0.1", mode, Some(&wrong))).await.unwrap_err();
        assert_eq!(err.failure, ConnectFailure::Tls, "{mode}: {err}");
        assert!(err.to_string().contains("not signed by a CA in sslrootcert"), "{mode}: {err}");
        assert!(err.hint().contains("sslrootcert"), "{mode}");
    }
}

#[tokio::test]
async fn a_missing_root_certificate_file_is_named() {
    let cluster = Cluster::builder(PgVersion::V15).tls().start();
    let err = connect(&spec(&cluster, "127.0.0.1", "verify-full", Some(std::path::Path::new("/nonexistent/ca.pem"))))
        .await
        .unwrap_err();
    assert_eq!(err.failure, ConnectFailure::Tls);
    assert!(err.to_string().contains("/nonexistent/ca.pem does not exist"), "{err}");
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_clearly() {
    let cluster = Cluster::start(PgVersion::V15);
    let err = connect(&spec(&cluster, "127.0.0.1", "require", None)).await.unwrap_err();
    assert_eq!(err.failure, ConnectFailure::Tls, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn unknown_databases_and_bad_passwords_are_told_apart() {
    let cluster = Cluster::start(PgVersion::V15);
    cluster.psql("postgres", "CREATE ROLE bob LOGIN PASSWORD 'right'");
    let err = connect(&ConnSpec::parse(&cluster.url("nosuchdb")).unwrap()).await.unwrap_err();
    assert_eq!(err.failure, ConnectFailure::NoDatabase, "{err}");
    let err = connect(&ConnSpec::parse(&cluster.url_as("bob", "wrong", "postgres")).unwrap()).await.unwrap_err();
    assert_eq!(err.failure, ConnectFailure::Authentication, "{err}");
    assert!(connect(&ConnSpec::parse(&cluster.url_as("bob", "right", "postgres")).unwrap()).await.is_ok());
}
