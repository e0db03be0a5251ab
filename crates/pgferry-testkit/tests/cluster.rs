use pgferry_testkit::{Cluster, PgVersion};

#[test]
fn a_cluster_starts_with_logical_replication_and_is_removed_on_drop() {
    let cluster = Cluster::start(PgVersion::V15);
    assert_eq!(cluster.psql("postgres", "SHOW wal_level"), "logical");
    assert_eq!(cluster.psql("postgres", "SHOW server_version_num").len(), 6);
    let dir = cluster.data_dir().to_path_buf();
    assert!(dir.join("PG_VERSION").exists());
    drop(cluster);
    assert!(!dir.exists(), "the cluster's directory is removed");
}

#[test]
fn two_clusters_run_side_by_side_on_different_ports() {
    let a = Cluster::start(PgVersion::V15);
    let b = Cluster::start(PgVersion::V15);
    assert_ne!(a.port(), b.port());
    a.psql("postgres", "CREATE TABLE only_in_a (id int)");
    assert_eq!(b.psql("postgres", "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"), "0");
}

#[test]
fn a_cluster_is_stopped_when_its_test_panics() {
    let port = std::panic::catch_unwind(|| {
        let cluster = Cluster::start(PgVersion::V15);
        let port = cluster.port();
        std::panic::panic_any(port);
    })
    .unwrap_err();
    let port = *port.downcast_ref::<u16>().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "server still listening");
}

#[test]
fn postgresql_18_runs_beside_15() {
    let cluster = Cluster::start(PgVersion::V18);
    assert!(cluster.psql("postgres", "SHOW server_version_num").starts_with("18"));
}
