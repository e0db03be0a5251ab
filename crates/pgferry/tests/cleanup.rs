//! `abort` and `cleanup` remove exactly what one migration made, on both sides.

use pgferry::cleanup::{remove, Fence};
use pgferry::copy::{copy, CopyOptions};
use pgferry::events::Events;
use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use pgferry_testkit::{Cluster, PgVersion};

struct Setup {
    source: Cluster,
    target: Cluster,
    source_spec: ConnSpec,
    target_spec: ConnSpec,
    migration: MigrationName,
}

async fn copied() -> Setup {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE ROLE app1 LOGIN CONNECTION LIMIT 4;
         CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE keyless (v int);
         CREATE PUBLICATION mypub FOR TABLE t;
         CREATE PUBLICATION pgferry_other FOR TABLE t;",
    );
    source.psql("app", "SELECT pg_create_logical_replication_slot('pgferry_other', 'pgoutput')");
    source.psql("app", "SELECT pg_create_logical_replication_slot('users_slot', 'pgoutput')");
    let source_spec = ConnSpec::parse(&source.url("app")).unwrap();
    let target_spec = ConnSpec::parse(&target.url("app")).unwrap();
    let migration = MigrationName::new("main").unwrap();
    let options = CopyOptions {
        migration: migration.clone(),
        jobs: 1,
        index_jobs: 1,
        split_larger_than: 0,
        replica_identity_full: false,
    };
    copy(&source_spec, &target_spec, &options, &Events::silent()).await.unwrap();
    Setup { source, target, source_spec, target_spec, migration }
}

/// The source's slots (the database's OID in a name spelled `OID`) and publications.
fn objects(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT (SELECT string_agg(replace(slot_name, '__' || d.oid, '__OID'), ',' ORDER BY slot_name)
                 FROM pg_replication_slots, pg_database d WHERE d.datname = current_database()) || ' / ' ||
                (SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication)",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_lifts_the_fence_and_removes_only_this_migrations_objects() {
    let s = copied().await;
    assert_eq!(
        objects(&s.source),
        "pgferry_main__OID,pgferry_other,users_slot / mypub,pgferry_main,pgferry_main__insert_only,pgferry_other"
    );
    let src = pgferry_pg::connect(&s.source_spec).await.unwrap();
    raise_fence(&s, &src).await;
    assert_eq!(can_connect(&s.source), "f");

    let report = remove(&s.source_spec, &s.target_spec, &s.migration, Fence::Lift, false).await.unwrap();
    assert_eq!(report.fence_settings_restored, 2, "CONNECT for PUBLIC, the read-only setting");
    assert!(report.dropped_slot && report.dropped_state_schema);
    assert_eq!(objects(&s.source), "pgferry_other,users_slot / mypub,pgferry_other");
    assert_eq!(can_connect(&s.source), "t");
    assert_eq!(s.target.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");
    assert_eq!(s.target.psql("app", "SELECT count(*) FROM t"), "0", "the copied tables stay");
    // A second run finds nothing left to do.
    let again = remove(&s.source_spec, &s.target_spec, &s.migration, Fence::Lift, false).await.unwrap();
    assert!(!again.dropped_slot && again.dropped_publications.is_empty() && again.journal_rows_deleted == 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_after_a_cutover_keeps_the_old_source_fenced() {
    let s = copied().await;
    let src = pgferry_pg::connect(&s.source_spec).await.unwrap();
    raise_fence(&s, &src).await;
    s.target.psql("app", "CREATE TABLE IF NOT EXISTS pgferry.cutover (migration text PRIMARY KEY, step text NOT NULL, fenced_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now());
                          INSERT INTO pgferry.cutover (migration, step) VALUES ('main', 'reported')");
    let refused = remove(&s.source_spec, &s.target_spec, &s.migration, Fence::Lift, false).await.unwrap_err();
    assert!(refused.message.contains("was cut over"), "abort after the switch is refused: {}", refused.message);
    let report = remove(&s.source_spec, &s.target_spec, &s.migration, Fence::Keep, false).await.unwrap();
    assert_eq!(report.fence_settings_restored, 0);
    assert!(report.dropped_slot);
    assert_eq!(can_connect(&s.source), "f");
    assert!(
        pgferry::fence::is_recorded(&src, &s.migration).await.unwrap(),
        "the fence's saved settings stay on the source"
    );
    let report = remove(&s.source_spec, &s.target_spec, &s.migration, Fence::Lift, true).await.unwrap();
    assert_eq!(report.fence_settings_restored, 2, "abort --force lifts it");
    assert_eq!(can_connect(&s.source), "t");
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_of_a_migration_that_was_not_cut_over_is_refused_and_changes_nothing() {
    let s = copied().await;
    let before = objects(&s.source);
    let refused = remove(&s.source_spec, &s.target_spec, &s.migration, Fence::Keep, false).await.unwrap_err();
    assert!(
        refused.message.contains("has not been cut over") && refused.message.contains("nothing was changed"),
        "{}",
        refused.message
    );
    assert!(refused.hint.unwrap().contains("pgferry abort"));
    assert_eq!(objects(&s.source), before);
    assert_eq!(s.target.psql("app", "SELECT count(*) FROM pgferry.migration"), "1");
}

/// Whether app1 may connect to the source database.
fn can_connect(c: &Cluster) -> String {
    c.psql("app", "SELECT has_database_privilege('app1', 'app', 'CONNECT')")
}

async fn raise_fence(s: &Setup, src: &tokio_postgres::Client) {
    let plan = pgferry::fence::planned(src, &[]).await.unwrap();
    pgferry::fence::raise(&s.source_spec, src, &s.migration, &plan, &[]).await.unwrap();
}
