//! The fence against real clusters: every session on the migrated database but
//! pgferry's own is ended (its own role's included), nobody but pgferry and the
//! administrators may connect to that database, other databases on the server do
//! not notice, and lowering the fence puts every privilege and setting back exactly.

use pgferry::fence;
use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use pgferry_testkit::{Cluster, PgVersion};

/// Role limits, database settings and each database's ACL (as a sorted set, so a
/// default ACL and its spelled-out equal compare equal).
fn settings(c: &Cluster) -> String {
    c.psql(
        "postgres",
        "SELECT string_agg(rolname || '=' || rolconnlimit, ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'
         UNION ALL SELECT coalesce((SELECT string_agg(array_to_string(setconfig, ','), ';') FROM pg_db_role_setting WHERE setrole = 0), 'none')
         UNION ALL SELECT string_agg(datname || ':' || array_to_string(ARRAY(SELECT a::text FROM unnest(coalesce(datacl, acldefault('d', datdba))) a ORDER BY 1), ','), ' ' ORDER BY datname)
                   FROM pg_database WHERE datname IN ('app', 'other')",
    )
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))?;
    tokio::spawn(conn);
    Ok(client)
}

async fn raise(
    spec: &ConnSpec,
    src: &tokio_postgres::Client,
    migration: &MigrationName,
    admins: &[String],
) -> Result<fence::FenceReport, pgferry::Error> {
    let plan = fence::planned(src, admins).await?;
    fence::raise(spec, src, migration, &plan, admins).await
}

fn cluster_with_two_databases() -> Cluster {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.create_database("other");
    source.psql(
        "app",
        "CREATE ROLE app1 LOGIN PASSWORD 'pw1'; CREATE ROLE app2 LOGIN PASSWORD 'pw2' CONNECTION LIMIT 7;
         CREATE ROLE dba LOGIN PASSWORD 'pwd'; CREATE ROLE super_app LOGIN SUPERUSER PASSWORD 'pws';
         GRANT CONNECT ON DATABASE app TO app2 WITH GRANT OPTION;
         CREATE TABLE t (id int); GRANT ALL ON t TO app1, app2, dba;
         ALTER DATABASE app SET work_mem = '8MB';",
    );
    source.psql("other", "CREATE TABLE o (id int); GRANT ALL ON o TO app1;");
    source
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fence_ends_every_session_but_pgferrys_own_touches_no_other_database_and_lifts_exactly() {
    let source = cluster_with_two_databases();
    let before = settings(&source);
    let open1 = connect(&source.url_as("app1", "pw1", "app")).await.unwrap();
    let open2 = connect(&source.url_as("app2", "pw2", "app")).await.unwrap();
    let superuser_app = connect(&source.url_as("super_app", "pws", "app")).await.unwrap();
    let in_other = connect(&source.url_as("app1", "pw1", "other")).await.unwrap();
    open2.batch_execute("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();
    // A session of pgferry's own role, with a transaction open before the fence.
    let same_role = connect(&source.url("app")).await.unwrap();
    same_role.batch_execute("BEGIN; INSERT INTO t VALUES (99)").await.unwrap();

    let spec = ConnSpec::parse(&source.url("app")).unwrap();
    let src = pgferry_pg::connect(&spec).await.unwrap();
    let migration = MigrationName::new("main").unwrap();
    let report = raise(&spec, &src, &migration, &["dba".to_string()]).await.unwrap();
    assert_eq!(report.connect_revoked_from, ["PUBLIC", "app2"]);
    assert_eq!(
        report.terminated_sessions, 4,
        "the applications', the superuser's and pgferry's own role's other session"
    );
    assert!(fence::is_recorded(&src, &migration).await.unwrap());

    // Open sessions are gone, their transactions with them; new ones refused.
    assert!(
        same_role.batch_execute("COMMIT").await.is_err(),
        "pgferry's own role's transaction cannot commit after the fence"
    );
    assert!(superuser_app.batch_execute("INSERT INTO t VALUES (7)").await.is_err());
    assert!(open1.batch_execute("INSERT INTO t VALUES (2)").await.is_err());
    assert!(open2.batch_execute("COMMIT").await.is_err());
    for (role, pw) in [("app1", "pw1"), ("app2", "pw2")] {
        let refused = connect(&source.url_as(role, pw, "app")).await.unwrap_err();
        assert!(refused.contains("permission denied for database"), "{refused}");
    }
    // The other database's application does not notice.
    in_other.batch_execute("INSERT INTO o VALUES (1)").await.unwrap();
    connect(&source.url_as("app1", "pw1", "other"))
        .await
        .unwrap()
        .batch_execute("INSERT INTO o VALUES (2)")
        .await
        .unwrap();
    // pgferry's own session still writes; an administrator still connects, and new
    // sessions start read-only until told otherwise.
    src.batch_execute("INSERT INTO t VALUES (3)").await.unwrap();
    let dba = connect(&source.url_as("dba", "pwd", "app")).await.unwrap();
    let err = dba.batch_execute("INSERT INTO t VALUES (4)").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "read_only_sql_transaction: {err:?}");
    dba.batch_execute("BEGIN READ WRITE; INSERT INTO t VALUES (5); COMMIT").await.unwrap();

    // Raising again is refused: it would save the fenced state as the previous one.
    let again = raise(&spec, &src, &migration, &["dba".to_string()]).await.unwrap_err();
    assert!(again.message.contains("already fences"), "{}", again.message);
    assert_eq!(
        fence::lower(&src, &migration).await.unwrap(),
        4,
        "CONNECT granted to dba, revoked from PUBLIC and app2; read-only"
    );
    assert_eq!(settings(&source), before, "every privilege and setting back as it was");
    assert!(!fence::is_recorded(&src, &migration).await.unwrap());
    assert_eq!(fence::lower(&src, &migration).await.unwrap(), 0, "lowering twice is harmless");
    let app1 = connect(&source.url_as("app1", "pw1", "app")).await.unwrap();
    app1.batch_execute("INSERT INTO t VALUES (6)").await.unwrap();
    assert_eq!(source.psql("app", "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"), "3,5,6");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_migrations_of_two_databases_on_one_server_keep_their_own_fences() {
    let source = cluster_with_two_databases();
    let before = settings(&source);
    let migration = MigrationName::new("main").unwrap();
    let app_spec = ConnSpec::parse(&source.url("app")).unwrap();
    let other_spec = ConnSpec::parse(&source.url("other")).unwrap();
    let app = pgferry_pg::connect(&app_spec).await.unwrap();
    let other = pgferry_pg::connect(&other_spec).await.unwrap();
    raise(&app_spec, &app, &migration, &[]).await.unwrap();
    let fenced_app = settings(&source);
    raise(&other_spec, &other, &migration, &[]).await.unwrap();
    assert!(connect(&source.url_as("app1", "pw1", "other")).await.is_err());
    // Lifting the second restores exactly what the first left.
    fence::lower(&other, &migration).await.unwrap();
    assert_eq!(settings(&source), fenced_app);
    assert!(connect(&source.url_as("app1", "pw1", "other")).await.is_ok());
    assert!(connect(&source.url_as("app1", "pw1", "app")).await.is_err(), "app stays fenced");
    fence::lower(&app, &migration).await.unwrap();
    assert_eq!(settings(&source), before);

    // A second migration of the same database is refused while the first fences it.
    raise(&app_spec, &app, &migration, &[]).await.unwrap();
    let second = MigrationName::new("second").unwrap();
    let refused = raise(&app_spec, &app, &second, &[]).await.unwrap_err();
    assert!(refused.message.contains("fenced by another migration: main"), "{}", refused.message);
    fence::lower(&app, &migration).await.unwrap();
    assert_eq!(settings(&source), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_read_only_setting_is_put_back_as_it_was() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.create_database("other");
    source.psql("app", "CREATE ROLE app1 LOGIN; ALTER DATABASE app SET default_transaction_read_only = off;");
    let before = settings(&source);
    let spec = ConnSpec::parse(&source.url("app")).unwrap();
    let src = pgferry_pg::connect(&spec).await.unwrap();
    let migration = MigrationName::new("main").unwrap();
    raise(&spec, &src, &migration, &[]).await.unwrap();
    assert_ne!(settings(&source), before);
    fence::lower(&src, &migration).await.unwrap();
    assert_eq!(settings(&source), before);
}
