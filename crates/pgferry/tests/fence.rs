//! The fence against real clusters: application roles' open and new sessions
//! cannot write, pgferry's own and an administrator's can still act, and lowering
//! the fence puts every setting back exactly.

use pgferry::fence;
use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use pgferry_testkit::{Cluster, PgVersion};

fn settings(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT string_agg(rolname || '=' || rolconnlimit, ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'
         UNION ALL SELECT coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting
                                    WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = 'app')), 'none')",
    )
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fence_stops_every_application_writer_and_lifts_exactly() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE ROLE app1 LOGIN PASSWORD 'pw1'; CREATE ROLE app2 LOGIN PASSWORD 'pw2' CONNECTION LIMIT 7;
         CREATE ROLE dba LOGIN PASSWORD 'pwd'; CREATE ROLE super_app LOGIN SUPERUSER PASSWORD 'pws';
         CREATE TABLE t (id int); GRANT ALL ON t TO app1, app2, dba;
         ALTER DATABASE app SET work_mem = '8MB';",
    );
    let before = settings(&source);
    let open1 = connect(&source.url_as("app1", "pw1", "app")).await.unwrap();
    let open2 = connect(&source.url_as("app2", "pw2", "app")).await.unwrap();
    let superuser_app = connect(&source.url_as("super_app", "pws", "app")).await.unwrap();
    open2.batch_execute("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();

    let spec = ConnSpec::parse(&source.url("app")).unwrap();
    let src = pgferry_pg::connect(&spec).await.unwrap();
    let dst = pgferry_pg::connect(&ConnSpec::parse(&target.url("app")).unwrap()).await.unwrap();
    let migration = MigrationName::new("main").unwrap();
    let report = fence::raise(&spec, &src, &dst, &migration, &["dba".to_string()]).await.unwrap();
    assert_eq!(report.fenced_roles, ["app1", "app2"]);
    assert_eq!(report.terminated_sessions, 3, "the superuser application's session too");
    assert!(superuser_app.batch_execute("INSERT INTO t VALUES (7)").await.is_err());
    assert!(fence::is_recorded(&dst, &migration).await.unwrap());

    // Open sessions are gone, new ones refused.
    assert!(open1.batch_execute("INSERT INTO t VALUES (2)").await.is_err());
    assert!(open2.batch_execute("COMMIT").await.is_err());
    let refused = connect(&source.url_as("app1", "pw1", "app")).await.unwrap_err();
    assert!(refused.contains("too many connections for role"), "{refused}");
    // pgferry's own session still writes; an administrator still connects, and new
    // sessions start read-only until told otherwise.
    src.batch_execute("INSERT INTO t VALUES (3)").await.unwrap();
    let dba = connect(&source.url_as("dba", "pwd", "app")).await.unwrap();
    let err = dba.batch_execute("INSERT INTO t VALUES (4)").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "read_only_sql_transaction: {err:?}");
    dba.batch_execute("BEGIN READ WRITE; INSERT INTO t VALUES (5); COMMIT").await.unwrap();

    // Raising again changes nothing that lowering could not undo.
    fence::raise(&spec, &src, &dst, &migration, &["dba".to_string()]).await.unwrap();
    assert_eq!(fence::lower(&src, &dst, &migration).await.unwrap(), 3);
    assert_eq!(settings(&source), before, "every setting back as it was");
    assert!(!fence::is_recorded(&dst, &migration).await.unwrap());
    assert_eq!(fence::lower(&src, &dst, &migration).await.unwrap(), 0, "lowering twice is harmless");
    let app1 = connect(&source.url_as("app1", "pw1", "app")).await.unwrap();
    app1.batch_execute("INSERT INTO t VALUES (6)").await.unwrap();
    assert_eq!(source.psql("app", "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"), "3,5,6");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_read_only_setting_is_put_back_as_it_was() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql("app", "CREATE ROLE app1 LOGIN; ALTER DATABASE app SET default_transaction_read_only = off;");
    let before = settings(&source);
    let spec = ConnSpec::parse(&source.url("app")).unwrap();
    let src = pgferry_pg::connect(&spec).await.unwrap();
    let dst = pgferry_pg::connect(&ConnSpec::parse(&target.url("app")).unwrap()).await.unwrap();
    let migration = MigrationName::new("main").unwrap();
    fence::raise(&spec, &src, &dst, &migration, &[]).await.unwrap();
    assert_ne!(settings(&source), before);
    fence::lower(&src, &dst, &migration).await.unwrap();
    assert_eq!(settings(&source), before);
}
