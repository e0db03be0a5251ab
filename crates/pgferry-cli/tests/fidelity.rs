//! What logical replication does not carry, carried (issue 17, items 1-4), on
//! real clusters, 15 -> 15 and 15 -> 18: materialized views populated after the
//! copy and refreshed on demand, large objects compared by content and brought
//! up to date, a partition created or attached during change capture covered
//! (and a missing one stopping change capture by name; a TRUNCATE of one
//! partition, which PostgreSQL does not send, found and copied again), and a
//! TRUNCATE committed between the slot and the copy's lock leaving no trace.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).envs(envs.iter().copied()).output().expect("run pgferry")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "pgferry failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `copy` with the source's own pg_dump.
fn copy(source: &Cluster, target: &Cluster, name: &str) {
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    assert_ok(&pgferry(
        &["copy", "--source", &s, "--target", &t, "--name", name],
        &[("PGFERRY_PG_BIN", bin.to_str().unwrap())],
    ));
}

fn catch_up(source: &Cluster, target: &Cluster, name: &str) -> Output {
    let (s, t) = (source.url("app"), target.url("app"));
    pgferry(&["follow", "--source", &s, "--target", &t, "--name", name, "--until-caught-up"], &[])
}

fn validate(source: &Cluster, target: &Cluster) -> (bool, serde_json::Value) {
    let (s, t) = (source.url("app"), target.url("app"));
    let out = pgferry(&["validate", "--source", &s, "--target", &t, "--format", "json"], &[]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

fn table(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

fn spec(c: &Cluster) -> pgferry_pg::ConnSpec {
    pgferry_pg::ConnSpec::parse(&c.url("app")).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Runs `run` with a session of pgferry's on each side, as the cutover passes its own.
fn on_sessions<T>(
    source: &Cluster,
    target: &Cluster,
    run: impl AsyncFnOnce(&tokio_postgres::Client, &tokio_postgres::Client) -> T,
) -> T {
    runtime().block_on(async {
        let src = pgferry_pg::connect(&spec(source)).await.unwrap();
        let dst = pgferry_pg::connect(&spec(target)).await.unwrap();
        run(&src, &dst).await
    })
}

/// The targets each test moves a PostgreSQL 15 source to.
const TARGETS: [PgVersion; 2] = [PgVersion::V15, PgVersion::V18];

/// Rows of a materialized view as text, or its error.
fn view_rows(c: &Cluster, view: &str) -> Result<String, String> {
    c.try_psql(
        "app",
        &format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(v::text, '|' ORDER BY v::text)), '') FROM {view} v"
        ),
    )
}

#[test]
fn materialized_views_are_populated_after_the_copy_refreshed_on_demand_and_validated() {
    for version in TARGETS {
        let source = Cluster::start(PgVersion::V15);
        source.create_database("app");
        source.psql(
            "app",
            "CREATE TABLE sales (id int PRIMARY KEY, region text, amount numeric);
             INSERT INTO sales SELECT g, 'r' || (g % 5), g * 1.5 FROM generate_series(1, 500) g;
             CREATE MATERIALIZED VIEW by_region AS SELECT region, sum(amount) AS total, count(*) AS n FROM sales GROUP BY region;
             CREATE VIEW big_regions AS SELECT region, total FROM by_region WHERE n > 10;
             CREATE MATERIALIZED VIEW a_top AS SELECT region, total FROM big_regions ORDER BY total DESC LIMIT 3;
             CREATE MATERIALIZED VIEW never_filled AS SELECT id FROM sales WITH NO DATA;",
        );
        let target = Cluster::start(version);
        target.create_database("app");
        copy(&source, &target, "mv");
        // a_top reads by_region through a view, and sorts before it by name:
        // refreshed in name order, it would fail on an unpopulated by_region.
        for view in ["by_region", "a_top"] {
            assert_eq!(view_rows(&target, view), view_rows(&source, view), "{view} after the copy to {version:?}");
        }
        let unpopulated =
            |c: &Cluster| c.psql("app", "SELECT relispopulated FROM pg_class WHERE relname = 'never_filled'");
        assert_eq!((unpopulated(&source).as_str(), unpopulated(&target).as_str()), ("f", "f"), "kept unpopulated");
        let (equal, report) = validate(&source, &target);
        assert!(equal, "{report}");
        assert_eq!(table(&report, "\"public\".\"by_region\"")["source_rows"], 5, "{report}");

        // Changes replicated, then the source's views refreshed: the target's
        // are stale until refreshed, and validation says so.
        source.psql("app", "INSERT INTO sales SELECT g, 'r9', 1 FROM generate_series(501, 600) g; UPDATE sales SET amount = 0 WHERE id < 50;");
        assert_ok(&catch_up(&source, &target, "mv"));
        source.psql("app", "REFRESH MATERIALIZED VIEW by_region; REFRESH MATERIALIZED VIEW a_top; REFRESH MATERIALIZED VIEW never_filled;");
        let (equal, report) = validate(&source, &target);
        assert!(!equal, "stale views must differ: {report}");
        assert_eq!(table(&report, "\"public\".\"by_region\"")["mismatched"], 1, "{report}");
        assert!(
            table(&report, "\"public\".\"never_filled\"")["problem"]
                .as_str()
                .unwrap()
                .contains("not populated on the target"),
            "{report}"
        );

        let mv = pgferry_core::names::MigrationName::new("mv").unwrap();
        let refreshed = on_sessions(&source, &target, async |s, t| {
            pgferry::materialized_views::refresh_materialized_views(s, t, &mv, "test").await
        })
        .unwrap();
        let order: Vec<(&str, &str)> = refreshed.views.iter().map(|v| (v.view.as_str(), v.action)).collect();
        assert_eq!(
            order,
            [
                ("\"public\".\"by_region\"", "refreshed"),
                ("\"public\".\"never_filled\"", "refreshed"),
                ("\"public\".\"a_top\"", "refreshed")
            ]
        );
        for view in ["by_region", "a_top", "never_filled"] {
            assert_eq!(view_rows(&target, view), view_rows(&source, view), "{view} after the refresh on {version:?}");
        }
        let (equal, report) = validate(&source, &target);
        assert!(equal, "{report}");

        // Unpopulated on the source again: emptied on the target.
        source.psql("app", "REFRESH MATERIALIZED VIEW never_filled WITH NO DATA");
        let mv = pgferry_core::names::MigrationName::new("mv").unwrap();
        let refreshed = on_sessions(&source, &target, async |s, t| {
            pgferry::materialized_views::refresh_materialized_views(s, t, &mv, "test").await
        })
        .unwrap();
        assert!(
            refreshed.views.iter().any(|v| v.view == "\"public\".\"never_filled\"" && v.action == "emptied"),
            "{refreshed:?}"
        );
        assert_eq!(unpopulated(&target), "f");
        assert!(validate(&source, &target).0);
    }
}

/// Each large object's OID and digest.
fn large_objects(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT string_agg(oid || ':' || md5(lo_get(oid)) || ':' || coalesce(lomacl::text, ''), ',' ORDER BY oid) FROM pg_largeobject_metadata",
    )
}

#[test]
fn large_objects_are_compared_by_content_and_brought_up_to_date() {
    for version in TARGETS {
        let source = Cluster::start(PgVersion::V15);
        source.create_database("app");
        source.psql(
            "app",
            "CREATE TABLE docs (id int PRIMARY KEY, body oid);
             INSERT INTO docs SELECT g, lo_from_bytea(100000 + g, convert_to(repeat(md5(g::text), 100 * g), 'UTF8')) FROM generate_series(1, 5) g;",
        );
        let target = Cluster::start(version);
        target.create_database("app");
        for c in [&source, &target] {
            c.psql("app", "CREATE ROLE reader");
        }
        copy(&source, &target, "lo");
        assert_eq!(large_objects(&target), large_objects(&source));
        let (equal, report) = validate(&source, &target);
        assert!(equal, "{report}");
        assert_eq!(report["large_objects"]["source_objects"], 5, "{report}");

        // After the copy: one created (larger than a piece), one changed in
        // place (same size), one unlinked, one granted to a role.
        source.psql(
            "app",
            "INSERT INTO docs VALUES (6, lo_from_bytea(100006, convert_to(repeat(md5('six'), 80000), 'UTF8')));
             SELECT lo_put(100002, 10, '\\x000102'::bytea);
             SELECT lo_unlink(100004);
             GRANT SELECT ON LARGE OBJECT 100001 TO reader WITH GRANT OPTION; GRANT UPDATE ON LARGE OBJECT 100006 TO reader",
        );
        assert_ok(&catch_up(&source, &target, "lo"));
        let (equal, report) = validate(&source, &target);
        assert!(!equal, "references equal, contents not: {report}");
        let d = &report["large_objects"]["differences"];
        assert_eq!(
            (d["missing"].clone(), d["extra"].clone(), d["changed"].clone()),
            (serde_json::json!([100006]), serde_json::json!([100004]), serde_json::json!([100001, 100002])),
            "{report}"
        );

        let synced = on_sessions(&source, &target, pgferry::large_objects::sync_large_objects).unwrap();
        assert_eq!(
            synced.bytes_copied,
            80000 * 32 + 200 * 32 + 100 * 32,
            "only the new and the changed objects are copied (a grant changes an object)"
        );
        assert_eq!(large_objects(&target), large_objects(&source), "on {version:?}");
        assert!(validate(&source, &target).0);
        let again = on_sessions(&source, &target, pgferry::large_objects::sync_large_objects).unwrap();
        assert!(again.differences.is_empty() && again.bytes_copied == 0, "nothing left to copy: {again:?}");
    }
}

#[test]
fn a_partition_created_or_attached_during_change_capture_is_covered_a_missing_one_stops_it_and_a_truncated_one_is_found(
) {
    for version in TARGETS {
        let source = Cluster::start(PgVersion::V15);
        source.create_database("app");
        source.psql(
            "app",
            "CREATE TABLE events (id int, at int, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
             CREATE TABLE events_0 PARTITION OF events FOR VALUES FROM (0) TO (100);
             CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (100) TO (200);
             INSERT INTO events SELECT g, g % 200, 'v' FROM generate_series(1, 400) g;",
        );
        let target = Cluster::start(version);
        target.create_database("app");
        copy(&source, &target, "parts");
        assert_eq!(source.psql("app", "SELECT pubviaroot FROM pg_publication WHERE pubname = 'pgferry_parts'"), "t");

        // After the copy: a partition created, an empty table attached, rows
        // routed into both, and rows moved between partitions.
        source.psql(
            "app",
            "CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM (200) TO (300);
             CREATE TABLE events_3 (LIKE events INCLUDING ALL);
             ALTER TABLE events ATTACH PARTITION events_3 FOR VALUES FROM (300) TO (400);
             INSERT INTO events SELECT g, 200 + g % 200, 'new' FROM generate_series(401, 600) g;
             UPDATE events SET at = at + 200 WHERE id BETWEEN 1 AND 20;
             UPDATE events SET v = 'changed' WHERE id BETWEEN 401 AND 410;
             DELETE FROM events WHERE id BETWEEN 590 AND 600;",
        );
        let stopped = catch_up(&source, &target, "parts");
        let stderr = String::from_utf8_lossy(&stopped.stderr);
        assert!(!stopped.status.success(), "a row with no partition on the target must stop change capture");
        assert!(
            stderr.contains("\"public\".\"events\"") && stderr.contains("no partition of it on the target accepts"),
            "{stderr}"
        );
        assert_eq!(
            target.psql("app", "SELECT count(*) FROM events"),
            "400",
            "nothing of the stopped batch was applied"
        );

        target.psql(
            "app",
            "CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM (200) TO (300);
             CREATE TABLE events_3 PARTITION OF events FOR VALUES FROM (300) TO (400);",
        );
        assert_ok(&catch_up(&source, &target, "parts"));
        assert_eq!(target.fingerprints("app"), source.fingerprints("app"), "on {version:?}");
        assert_eq!(
            target.psql("app", "SELECT count(*) FROM events_2"),
            source.psql("app", "SELECT count(*) FROM events_2")
        );
        let (equal, report) = validate(&source, &target);
        assert!(equal, "{report}");

        // The changed-rows check reaches the partitions of a root's changes.
        source.psql(
            "app",
            "UPDATE events SET v = 'again' WHERE id BETWEEN 500 AND 510; TRUNCATE events;
                            INSERT INTO events VALUES (1, 350, 'after truncate');",
        );
        assert_ok(&catch_up(&source, &target, "parts"));
        assert_eq!(target.fingerprints("app"), source.fingerprints("app"), "a TRUNCATE of the root, on {version:?}");
        let (s, t) = (source.url("app"), target.url("app"));
        let out = pgferry(
            &["validate", "--source", &s, "--target", &t, "--name", "parts", "--changed-only", "--format", "json"],
            &[],
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success(), "{report}");
        let compared: Vec<&str> =
            report["tables"].as_array().unwrap().iter().map(|t| t["table"].as_str().unwrap()).collect();
        assert!(
            compared.contains(&"\"public\".\"events_3\""),
            "the root's changes are checked in its partitions: {report}"
        );

        // A TRUNCATE of one partition is not sent under publish_via_partition_root:
        // the partition's new file names it, and it is copied again.
        source.psql("app", "INSERT INTO events VALUES (2, 50, 'x'), (3, 150, 'y')");
        assert_ok(&catch_up(&source, &target, "parts"));
        source.psql("app", "TRUNCATE events_0");
        assert_ok(&catch_up(&source, &target, "parts"));
        assert_ne!(target.fingerprints("app"), source.fingerprints("app"), "PostgreSQL does not send it");
        // validate says why it differs and that the cutover carries it: the
        // difference is not journaled as one that holds the cutover back.
        let out = pgferry(&["validate", "--source", &s, "--target", &t, "--name", "parts", "--format", "json"], &[]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(1), "DIFFERENT: {report}");
        assert_eq!(table(&report, "\"public\".\"events_0\"")["recopied_by_cutover"], true, "{report}");
        let text = pgferry(&["validate", "--source", &s, "--target", &t, "--name", "parts"], &[]);
        assert!(String::from_utf8_lossy(&text.stdout).contains("the cutover copies it again"), "{text:?}");
        assert_eq!(
            target.psql("app", "SELECT mismatched_chunks FROM pgferry.validation WHERE migration = 'parts'"),
            "0",
            "nothing holds the cutover back"
        );
        let name = pgferry_core::names::MigrationName::new("parts").unwrap();
        let uncovered =
            on_sessions(&source, &target, async |s, t| pgferry::partitions::uncovered_partitions(s, t, &name).await)
                .unwrap();
        let named = |list: &[pgferry_core::sql::QualifiedName]| {
            list.iter().map(|t| t.name.as_str().to_string()).collect::<Vec<_>>()
        };
        assert!(named(&uncovered.rewritten).contains(&"events_0".to_string()), "{uncovered:?}");
        assert_eq!(named(&uncovered.unrecorded), ["events_2", "events_3"], "{uncovered:?}");
        runtime()
            .block_on(pgferry::partitions::recopy_partitions(&spec(&source), &spec(&target), &name, &uncovered.all()))
            .unwrap();
        assert_eq!(target.fingerprints("app"), source.fingerprints("app"), "after the recopy, on {version:?}");
        let after =
            on_sessions(&source, &target, async |s, t| pgferry::partitions::uncovered_partitions(s, t, &name).await)
                .unwrap();
        assert_eq!(after, Default::default());
    }
}

/// Waits (bounded) for a file a paused pgferry creates.
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(Instant::now() < deadline, "pgferry never reached {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `copy` of the source's database `app` into `target_url`, with `sql` run on
/// the source between the slot's snapshot and the first read.
fn copy_with_sql_before_the_reads(source: &Cluster, target_url: &str, name: &str, sql: &str) -> Output {
    let pause = tempfile::tempdir().unwrap();
    let copying = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &source.url("app"), "--target", target_url, "--name", name])
        .env("PGFERRY_PG_BIN", source.version().bin_dir())
        .env("PGFERRY_PAUSE", format!("copy-before-lock:{}", pause.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&pause.path().join("copy-before-lock.reached"));
    source.psql("app", sql);
    std::fs::write(pause.path().join("copy-before-lock.go"), b"").unwrap();
    copying.wait_with_output().unwrap()
}

#[test]
fn a_truncate_between_the_slot_and_the_copys_lock_leaves_no_trace() {
    for version in TARGETS {
        let source = Cluster::start(PgVersion::V15);
        source.create_database("app");
        source.psql(
            "app",
            "CREATE TABLE hit (id int PRIMARY KEY, v int);
             CREATE TABLE calm (id int PRIMARY KEY, v int);
             CREATE TABLE parted (id int, k int, v int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
             CREATE TABLE parted_a PARTITION OF parted FOR VALUES IN (1);
             CREATE TABLE parted_b PARTITION OF parted FOR VALUES IN (2);
             INSERT INTO hit SELECT g, 0 FROM generate_series(1, 300) g;
             INSERT INTO calm SELECT g, 0 FROM generate_series(1, 300) g;
             INSERT INTO parted SELECT g, 1 + g % 2, 0 FROM generate_series(1, 300) g;",
        );
        let target = Cluster::start(version);
        target.create_database("app");
        // Between the slot's snapshot and the reads: updates, then a TRUNCATE
        // (of a plain table and of one partition), then new rows and updates.
        let out = copy_with_sql_before_the_reads(
            &source,
            &target.url("app"),
            "trunc",
            "UPDATE hit SET v = 1 WHERE id <= 100;
             UPDATE calm SET v = 1 WHERE id <= 100;
             UPDATE parted SET v = 1 WHERE id <= 100;
             TRUNCATE hit;
             TRUNCATE parted_a;
             INSERT INTO hit SELECT g, 2 FROM generate_series(1, 50) g;
             INSERT INTO parted SELECT g, 1, 2 FROM generate_series(1000, 1010) g;
             UPDATE hit SET v = 3 WHERE id <= 10;",
        );
        assert_ok(&out);
        source.psql("app", "UPDATE hit SET v = 4 WHERE id <= 5; UPDATE calm SET v = 4 WHERE id <= 5; UPDATE parted SET v = 4 WHERE id <= 5;");
        let follow = catch_up(&source, &target, "trunc");
        assert_ok(&follow);
        assert!(!String::from_utf8_lossy(&follow.stderr).contains("was not found"));
        assert_eq!(target.fingerprints("app"), source.fingerprints("app"), "on {version:?}");
        assert_eq!(target.psql("app", "SELECT count(*) FROM hit"), "50");
        assert!(validate(&source, &target).0);
    }
}

/// A TRUNCATE while a worker reads the table waits for that one piece; one of a
/// table not read yet goes through at once and the table is copied again. The
/// copy never waits on a lock of its own (pg_dump's way, every table locked to
/// the end, hung here: the TRUNCATE queued behind the lock, the next reader of
/// that table behind the TRUNCATE).
#[test]
fn a_truncate_during_the_copy_neither_hangs_it_nor_leaves_a_trace() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         CREATE TABLE later (id int PRIMARY KEY, v int);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
         INSERT INTO later SELECT g, 0 FROM generate_series(1, 300) g;",
    );
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    let pause = tempfile::tempdir().unwrap();
    let pause_env = format!("copy-piece-read:{}", pause.path().display());
    let (s, t) = (source.url("app"), target.url("app"));
    let mut copying = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &s, "--target", &t, "--name", "trunc", "--jobs", "1"])
        .env("PGFERRY_PG_BIN", source.version().bin_dir())
        .env("PGFERRY_PAUSE", &pause_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The only worker has read `big` (the largest, first) and holds its lock.
    wait_for(&pause.path().join("copy-piece-read.reached"));
    let truncating_big = std::thread::spawn({
        let url = source.url("app");
        let psql = source.version().bin_dir().join("psql");
        move || Command::new(psql).args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-c", "TRUNCATE big"]).output().unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!truncating_big.is_finished(), "TRUNCATE big should wait for the piece being read");
    // Not read yet: nothing of pgferry's holds it.
    // Read after the TRUNCATE under the older snapshot, the table would be empty
    // while the stream still sends these updates of its old rows.
    source.psql(
        "app",
        "UPDATE later SET v = 9 WHERE id <= 100; TRUNCATE later; INSERT INTO later SELECT g, 1 FROM generate_series(1, 40) g;",
    );
    std::fs::write(pause.path().join("copy-piece-read.go"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while copying.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            copying.kill().unwrap();
            panic!("the copy hung on a TRUNCATE");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = copying.wait_with_output().unwrap();
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("copied again"), "the rewrite of `later` is reported");
    assert!(truncating_big.join().unwrap().status.success());
    source.psql("app", "INSERT INTO big VALUES (1, 'after'); UPDATE later SET v = 2 WHERE id <= 5;");
    let follow = catch_up(&source, &target, "trunc");
    assert_ok(&follow);
    assert!(!String::from_utf8_lossy(&follow.stderr).contains("was not found"));
    assert_eq!(target.psql("app", "SELECT count(*) FROM later"), "40");
    assert_eq!(target.psql("app", "SELECT count(*) FROM big"), "1");
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
    assert!(validate(&source, &target).0);
}

/// Between the snapshot and the reads: two tables swap names (the COPY would
/// read the other table: copied again under a later snapshot), and a column
/// changes type (the rows no longer fit the table made from the snapshot's
/// schema: refused, named, never copied as another type's bytes).
#[test]
fn tables_renamed_or_retyped_after_the_snapshot_are_never_copied_wrong() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE a (id int PRIMARY KEY, v int);
         CREATE TABLE b (id int PRIMARY KEY, v int);
         CREATE TABLE c (id int PRIMARY KEY, v int);
         INSERT INTO a SELECT g, 1 FROM generate_series(1, 100) g;
         INSERT INTO b SELECT g, 2 FROM generate_series(1, 300) g;
         INSERT INTO c SELECT g, 3 FROM generate_series(1, 50) g;",
    );
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    let out = copy_with_sql_before_the_reads(
        &source,
        &target.url("app"),
        "swap",
        "ALTER TABLE a RENAME TO tmp; ALTER TABLE b RENAME TO a; ALTER TABLE tmp RENAME TO b;",
    );
    assert_ok(&out);
    assert_ok(&catch_up(&source, &target, "swap"));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
    assert_eq!(target.psql("app", "SELECT count(*) FROM a WHERE v = 2"), "300");

    // A second migration of the same source into a fresh database.
    target.create_database("app2");
    let out = copy_with_sql_before_the_reads(
        &source,
        &target.url("app2"),
        "retype",
        "ALTER TABLE c ALTER COLUMN v TYPE real USING v + 0.5",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stopped, to resume once the target has the change: {stderr}");
    assert!(stderr.contains("its columns changed") && stderr.contains("v real"), "{stderr}");
    assert_eq!(target.psql("app2", "SELECT count(*) FROM c"), "0", "no row copied as another type's bytes");
}

/// A table replaced while the copy waits to read it (#17, F11): made anew, the old
/// one dropped, the new one renamed into its place. The copy reads the new one
/// under a later snapshot, and it is published before that snapshot, so that its
/// changes after the copy arrive; it was left out of the publication and change
/// capture said nothing.
#[test]
fn a_table_replaced_during_the_copy_is_copied_and_followed() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE accounts (id int PRIMARY KEY, v int);
         CREATE TABLE other (id int PRIMARY KEY);
         INSERT INTO accounts SELECT g, 1 FROM generate_series(1, 200) g;
         INSERT INTO other SELECT generate_series(1, 10);",
    );
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    let out = copy_with_sql_before_the_reads(
        &source,
        &target.url("app"),
        "replace",
        "CREATE TABLE accounts_new (LIKE accounts INCLUDING ALL);
         INSERT INTO accounts_new SELECT id, 2 FROM accounts WHERE id <= 150;
         DROP TABLE accounts; ALTER TABLE accounts_new RENAME TO accounts;",
    );
    assert_ok(&out);
    let published =
        "SELECT count(*) FROM pg_publication_tables WHERE pubname LIKE 'pgferry\\_replace%' AND tablename = 'accounts'";
    assert_eq!(source.psql("app", published), "1", "the new table is published");
    source.psql("app", "UPDATE accounts SET v = 3 WHERE id <= 10; DELETE FROM accounts WHERE id > 140; INSERT INTO accounts VALUES (999, 4)");
    assert_ok(&catch_up(&source, &target, "replace"));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
    assert_eq!(target.psql("app", "SELECT count(*) || ':' || sum(v) FROM accounts"), "141:294");
}

/// Waits (bounded) until the application's session holds its ACCESS EXCLUSIVE
/// lock on `accounts`; that session's pid.
fn lock_holder(source: &Cluster) -> String {
    let held =
        "SELECT pid FROM pg_locks WHERE relation = 'accounts'::regclass AND mode = 'AccessExclusiveLock' AND granted";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pid = source.psql("app", held);
        if !pid.is_empty() {
            return pid;
        }
        assert!(Instant::now() < deadline, "the application's lock was taken");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A copy held up by an application's lock (#17, F8) says who holds it and how to
/// end it, instead of standing still without a word; it goes on once the lock is gone.
#[test]
fn a_copy_waiting_for_an_applications_lock_names_the_holder() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE accounts (id int PRIMARY KEY, v int); INSERT INTO accounts SELECT g, 1 FROM generate_series(1, 100) g;",
    );
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    let pause = tempfile::tempdir().unwrap();
    let copying = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &source.url("app"), "--target", &target.url("app"), "--name", "locked"])
        .env("PGFERRY_PAUSE", format!("copy-before-lock:{}", pause.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&pause.path().join("copy-before-lock.reached"));
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            source.psql("app", "BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(14); COMMIT;")
        });
        let holder_pid = lock_holder(&source);
        std::fs::write(pause.path().join("copy-before-lock.go"), b"").unwrap();
        let out = copying.wait_with_output().unwrap();
        holder.join().unwrap();
        assert_ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("waits for a lock on accounts held by the source's session pid {holder_pid}"))
                && stderr.contains("pg_terminate_backend"),
            "{stderr}"
        );
    });
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

/// A table dropped, renamed, or with a column dropped after the snapshot and
/// before its rows are read (#17, F3): a dropped one is simply not copied; a
/// renamed one, or a changed column, stops the copy naming both sides and the
/// remedy, instead of a bare "does not exist" that a rerun repeats.
#[test]
fn a_table_dropped_renamed_or_narrowed_before_its_read_is_handled_or_named() {
    let setup = "CREATE TABLE keep (id int PRIMARY KEY); CREATE TABLE gone (id int PRIMARY KEY, v int);
                 INSERT INTO keep SELECT generate_series(1, 50); INSERT INTO gone SELECT g, g FROM generate_series(1, 50) g;";
    for (change, expected) in [
        ("DROP TABLE gone", None),
        ("ALTER TABLE gone RENAME TO moved", Some("was renamed to moved on the source after the copy's snapshot")),
        ("ALTER TABLE gone DROP COLUMN v", Some("columns changed on the source after the copy's snapshot")),
    ] {
        let source = Cluster::start(PgVersion::V15);
        source.create_database("app");
        source.psql("app", setup);
        let target = Cluster::start(PgVersion::V15);
        target.create_database("app");
        let out = copy_with_sql_before_the_reads(&source, &target.url("app"), "narrow", change);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match expected {
            None => {
                assert_ok(&out);
                assert_eq!(target.psql("app", "SELECT count(*) FROM keep"), "50");
                assert_eq!(target.psql("app", "SELECT count(*) FROM gone"), "0", "{change}: nothing of it copied");
            }
            Some(named) => {
                assert_eq!(out.status.code(), Some(3), "{change}: {stderr}");
                assert!(
                    stderr.contains(named) && stderr.contains("hint: pgferry abort, then copy again"),
                    "{change}: {stderr}"
                );
                assert!(!stderr.contains("does not exist"), "{change}: not the bare error: {stderr}");
            }
        }
    }
}

/// The same before the rows are read (#17 hostile pass): a lock held when the
/// copy starts held up its planning without a word.
#[test]
fn a_copy_started_behind_an_applications_lock_names_the_holder() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql("app", "CREATE TABLE accounts (id int PRIMARY KEY, v int); INSERT INTO accounts SELECT g, 1 FROM generate_series(1, 100) g;");
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            source.psql("app", "BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(12); COMMIT;")
        });
        let holder_pid = lock_holder(&source);
        let out =
            pgferry(&["copy", "--source", &source.url("app"), "--target", &target.url("app"), "--name", "early"], &[]);
        holder.join().unwrap();
        assert_ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("held by the source's session pid {holder_pid}")), "{stderr}");
    });
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

/// A label added to an enum on the source during the copy, then carried by
/// rows: one in a table truncated and refilled (copied again under a later
/// snapshot), one inserted in a table already read (brought by change capture).
/// Both arrive: the copy and change capture add the label on the target first.
#[test]
fn an_enum_label_added_during_the_copy_arrives_with_its_rows() {
    for version in TARGETS {
        let source = Cluster::start(PgVersion::V15);
        let target = Cluster::start(version);
        source.create_database("app");
        target.create_database("app");
        source.psql(
            "app",
            "CREATE TYPE mood AS ENUM ('sad', 'ok');
             CREATE TABLE refilled (id int PRIMARY KEY, m mood);
             CREATE TABLE kept (id int PRIMARY KEY, m mood);
             INSERT INTO refilled SELECT g, 'ok' FROM generate_series(1, 100) g;
             INSERT INTO kept SELECT g, 'sad' FROM generate_series(1, 100) g",
        );
        let pause = tempfile::tempdir().unwrap();
        let copying = Command::new(env!("CARGO_BIN_EXE_pgferry"))
            .args(["copy", "--source", &source.url("app"), "--target", &target.url("app")])
            .env("PGFERRY_PG_BIN", source.version().bin_dir())
            .env("PGFERRY_PAUSE", format!("copy-before-lock:{}", pause.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(&pause.path().join("copy-before-lock.reached"));
        source.psql("app", "ALTER TYPE mood ADD VALUE 'happy' BEFORE 'ok'");
        source.psql("app", "TRUNCATE refilled; INSERT INTO refilled VALUES (1, 'happy'), (2, 'sad')");
        source.psql("app", "INSERT INTO kept VALUES (1000, 'happy')");
        std::fs::write(pause.path().join("copy-before-lock.go"), b"").unwrap();
        assert_ok(&copying.wait_with_output().unwrap());
        assert_ok(&catch_up(&source, &target, "main"));
        let labels = "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum";
        assert_eq!(target.psql("app", labels), "sad,happy,ok", "added where the source has it");
        for table in ["refilled", "kept"] {
            let rows = format!("SELECT string_agg(id || ':' || m, ',' ORDER BY id) FROM {table}");
            assert_eq!(target.psql("app", &rows), source.psql("app", &rows), "{table} on {version:?}");
        }
        let (equal, report) = validate(&source, &target);
        assert!(equal, "{report:#}");
    }
}

/// A label the source adds while change capture runs (no DDL capture), and a
/// row that holds it: the row's change fails on the target (`invalid input
/// value for enum`), change capture adds the labels and goes on from where the
/// target stands, without stopping.
#[test]
fn an_enum_label_added_while_change_capture_runs_does_not_stop_it() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V18);
    source.create_database("app");
    target.create_database("app");
    source.psql("app", "CREATE TYPE mood AS ENUM ('sad'); CREATE TABLE moods (id int PRIMARY KEY, m mood)");
    let (s, t) = (source.url("app"), target.url("app"));
    assert_ok(&pgferry(&["copy", "--source", &s, "--target", &t], &[]));
    let mut following = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &s, "--target", &t])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let arrived = |sql: &str| {
        let started = Instant::now();
        while target.psql("app", sql) != "1" {
            assert!(started.elapsed() < Duration::from_secs(60), "not applied: {sql}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    source.psql("app", "INSERT INTO moods VALUES (1, 'sad')");
    arrived("SELECT count(*) FROM moods WHERE id = 1");
    source.psql("app", "ALTER TYPE mood ADD VALUE 'ok'");
    source.psql("app", "INSERT INTO moods VALUES (2, 'ok')");
    arrived("SELECT count(*) FROM moods WHERE id = 2 AND m::text = 'ok'");
    assert!(following.try_wait().unwrap().is_none(), "change capture went on");
    following.kill().unwrap();
    following.wait().unwrap();
}
