//! Schema changes during change capture (issue 17 item 5, issue 23 item 5), on
//! real clusters, 15 -> 15 and 15 -> 18: with `--capture-ddl` the source's DDL
//! arrives in the stream and is replayed in order with the rows (new columns,
//! new tables with rows in their creating transaction, indexes, partitions
//! created and attached, dropped columns), ending with equal rows and equal
//! schema dumps; a command that cannot be replayed, and without consent any
//! schema change, stops change capture by name, and `follow --apply-ddl`
//! continues exactly from there.

use std::process::{Command, Output};

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

const TARGETS: [PgVersion; 2] = [PgVersion::V15, PgVersion::V18];

/// A source with schema `app` (a keyed table, a partitioned one), an empty target.
fn clusters(version: PgVersion) -> (Cluster, Cluster) {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE SCHEMA app;
         CREATE TABLE app.items (id int PRIMARY KEY, name text);
         INSERT INTO app.items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
         CREATE TABLE app.events (id int, at int, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE app.events_0 PARTITION OF app.events FOR VALUES FROM (0) TO (100);
         INSERT INTO app.events SELECT g, g % 100, 'v' FROM generate_series(1, 200) g;",
    );
    let target = Cluster::start(version);
    target.create_database("app");
    (source, target)
}

fn start(source: &Cluster, target: &Cluster, name: &str, extra: &[&str]) {
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    let mut args = vec!["start", "--source", &s, "--target", &t, "--name", name, "--until-caught-up"];
    args.extend_from_slice(extra);
    assert_ok(&pgferry(&args, &[("PGFERRY_PG_BIN", bin.to_str().unwrap())]));
}

fn follow(source: &Cluster, target: &Cluster, name: &str, extra: &[&str]) -> Output {
    let (s, t) = (source.url("app"), target.url("app"));
    let mut args = vec!["follow", "--source", &s, "--target", &t, "--name", name, "--until-caught-up"];
    args.extend_from_slice(extra);
    pgferry(&args, &[])
}

/// Schema `app` as PostgreSQL 18's pg_dump prints it (NOT NULL constraint names,
/// which 18 gives and 15 lacks, left out).
fn schema(c: &Cluster) -> String {
    let out = PgVersion::V18
        .client_command("pg_dump")
        .args(["--schema-only", "--schema=app", "--no-publications", "-h"])
        .arg(c.socket_dir())
        .args(["-p", &c.port().to_string(), "-U", "postgres", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict") && !l.starts_with("-- Dumped"))
        .map(|l| match (l.find(" CONSTRAINT "), l.contains(" NOT NULL")) {
            (Some(at), true) => {
                let rest = &l[at + " CONSTRAINT ".len()..];
                rest.find(" NOT NULL").map_or(l.to_string(), |end| format!("{}{}", &l[..at], &rest[end..]))
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn captured_ddl_is_replayed_in_order_with_the_rows_and_both_sides_end_identical() {
    for version in TARGETS {
        let (source, target) = clusters(version);
        for c in [&source, &target] {
            c.psql("app", "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw'");
        }
        source.psql("app", "GRANT CREATE, USAGE ON SCHEMA app TO app_owner");
        start(&source, &target, "ddl", &["--capture-ddl"]);
        assert_eq!(
            source.psql("app", "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'pgferry_ddl__%'"),
            "2"
        );

        // A column added, then filled by later transactions.
        source.psql("app", "ALTER TABLE app.items ADD COLUMN note text");
        source.psql("app", "UPDATE app.items SET note = 'n' || id WHERE id <= 50");
        // A table created from a query: its rows come from the replay, once.
        source.psql("app", "CREATE TABLE app.summary AS SELECT id, note FROM app.items WHERE id BETWEEN 45 AND 55");
        // pgferry's own schema on the source stays out of the stream.
        source.psql("app", "CREATE SCHEMA IF NOT EXISTS pgferry; CREATE TABLE IF NOT EXISTS pgferry.probe (x int)");
        // A table created with rows in its creating transaction (one statement
        // per request, as applications send them), and more rows later; a
        // keyless one, published for inserts only.
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut client = source.connect("app").await;
            let tx = client.transaction().await.unwrap();
            tx.execute("CREATE TABLE app.fresh (id int PRIMARY KEY, v text)", &[]).await.unwrap();
            tx.execute("INSERT INTO app.fresh SELECT g, 'first' FROM generate_series(1, 20) g", &[]).await.unwrap();
            tx.execute("UPDATE app.items SET note = 'with fresh' WHERE id = 1", &[]).await.unwrap();
            tx.execute("CREATE TABLE app.log (msg text)", &[]).await.unwrap();
            tx.execute("INSERT INTO app.log VALUES ('created')", &[]).await.unwrap();
            tx.commit().await.unwrap();
            // Another role's table: replayed as that role, so owners match.
            let (owner, connection) =
                tokio_postgres::connect(&source.url_as("app_owner", "owner-pw", "app"), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            owner.batch_execute("CREATE TABLE app.owned (id int PRIMARY KEY)").await.unwrap();
            owner.batch_execute("INSERT INTO app.owned VALUES (1), (2)").await.unwrap();
        });
        source.psql("app", "INSERT INTO app.fresh SELECT g, 'later' FROM generate_series(21, 40) g");
        source.psql("app", "UPDATE app.fresh SET v = 'changed' WHERE id % 7 = 0");
        source.psql("app", "INSERT INTO app.log VALUES ('later')");
        // Indexes, one built concurrently on the source.
        source.psql("app", "CREATE INDEX items_note ON app.items (note)");
        source.psql("app", "CREATE INDEX CONCURRENTLY items_name ON app.items (name)");
        // A partition created, a table attached, rows routed into both.
        source.psql(
            "app",
            "CREATE TABLE app.events_1 PARTITION OF app.events FOR VALUES FROM (100) TO (200);
             CREATE TABLE app.events_2 (id int, at int, v text, PRIMARY KEY (id, at));",
        );
        source.psql("app", "ALTER TABLE app.events ATTACH PARTITION app.events_2 FOR VALUES FROM (200) TO (300)");
        source
            .psql("app", "INSERT INTO app.events SELECT g, 100 + g % 200, 'routed' FROM generate_series(1000, 1199) g");
        source.psql("app", "UPDATE app.events SET v = 'moved', at = at + 100 WHERE id BETWEEN 1000 AND 1010");
        // A column dropped, then changes to the table.
        source.psql("app", "ALTER TABLE app.items DROP COLUMN name");
        source
            .psql("app", "UPDATE app.items SET note = 'after drop' WHERE id > 90; DELETE FROM app.items WHERE id = 2");
        assert_ok(&follow(&source, &target, "ddl", &[]));

        assert_eq!(target.fingerprints("app"), source.fingerprints("app"), "rows, to PostgreSQL {version:?}");
        assert_eq!(schema(&target), schema(&source), "schema dumps, to PostgreSQL {version:?}");
        assert_eq!(target.psql("app", "SELECT tableowner FROM pg_tables WHERE tablename = 'owned'"), "app_owner");
        let journaled =
            target.psql("app", "SELECT count(*) FROM pgferry.ddl WHERE migration = 'ddl' AND state = 'applied'");
        assert_eq!(journaled, "10", "each replayed text journaled once");
        assert_eq!(
            target.psql("app", "SELECT to_regclass('pgferry.probe') IS NULL"),
            "t",
            "pgferry's schema is not replayed"
        );

        // A text that mixes DDL with data changes is not guessed at: change
        // capture stops naming it, and the operator's DDL stands in for it.
        source.psql("app", "CREATE TABLE app.mixed (id int); INSERT INTO app.mixed VALUES (1), (2)");
        source.psql("app", "INSERT INTO app.mixed VALUES (3)");
        let stopped = follow(&source, &target, "ddl", &[]);
        assert!(!stopped.status.success());
        let said = stderr(&stopped);
        assert!(said.contains("CREATE TABLE app.mixed") && said.contains("--apply-ddl"), "{said}");
        assert_eq!(target.psql("app", "SELECT to_regclass('app.mixed') IS NULL"), "t", "nothing of it applied");
        assert_eq!(
            target.psql("app", "SELECT state FROM pgferry.ddl WHERE source_command LIKE '%app.mixed%'"),
            "pending"
        );
        assert_ok(&follow(&source, &target, "ddl", &["--apply-ddl", "CREATE TABLE app.mixed (id int)"]));
        assert_eq!(target.fingerprints("app"), source.fingerprints("app"), "after --apply-ddl, to {version:?}");
        assert_eq!(schema(&target), schema(&source));
        assert_eq!(
            target.psql("app", "SELECT state FROM pgferry.ddl WHERE source_command LIKE '%app.mixed%'"),
            "operator"
        );

        // Abort removes DDL capture from the source.
        let (s, t) = (source.url("app"), target.url("app"));
        assert_ok(&pgferry(&["abort", "--source", &s, "--target", &t, "--name", "ddl"], &[]));
        assert_eq!(source.psql("app", "SELECT count(*) FROM pg_event_trigger"), "0");
        assert_eq!(source.psql("app", "SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgferry_ddl%'"), "0");
    }
}

#[test]
fn without_consent_a_schema_change_stops_change_capture_by_name_and_apply_ddl_continues_exactly() {
    for version in TARGETS {
        let (source, target) = clusters(version);
        start(&source, &target, "plain", &[]);
        assert_eq!(source.psql("app", "SELECT count(*) FROM pg_event_trigger"), "0", "no DDL capture without consent");

        source.psql("app", "UPDATE app.items SET name = 'before' WHERE id <= 10");
        source.psql("app", "ALTER TABLE app.items ADD COLUMN note text");
        source.psql("app", "UPDATE app.items SET note = 'n' || id WHERE id <= 50");
        source.psql("app", "INSERT INTO app.items VALUES (101, 'new', 'noted')");
        source.psql("app", "CREATE TABLE app.unseen (id int PRIMARY KEY)");

        let stopped = follow(&source, &target, "plain", &[]);
        assert!(!stopped.status.success());
        let said = stderr(&stopped);
        assert!(said.contains("\"app\".\"items\"") && said.contains("\"note\""), "names table and column: {said}");
        assert!(said.contains("\"app\".\"unseen\"") && said.contains("not in the migration's publication"), "{said}");
        assert_eq!(
            target.psql("app", "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"),
            "0"
        );

        let (s, t) = (source.url("app"), target.url("app"));
        let status = pgferry(&["status", "--source", &s, "--target", &t, "--name", "plain"], &[]);
        let shown = String::from_utf8_lossy(&status.stdout);
        assert!(shown.contains("\"app\".\"unseen\": created on the source after the copy"), "status names it: {shown}");
        assert!(shown.contains("\"app\".\"unseen\" (created on the source after the copy"), "a cutover no-go: {shown}");
        let sql = "ALTER TABLE app.items ADD COLUMN note text";
        assert_ok(&follow(&source, &target, "plain", &["--apply-ddl", sql]));
        let items = |c: &Cluster| {
            c.psql("app", "SELECT count(*) || md5(string_agg(t::text, '|' ORDER BY id)) FROM app.items t")
        };
        assert_eq!(items(&target), items(&source), "nothing lost, nothing doubled, to {version:?}");
        assert_eq!(target.psql("app", "SELECT applied FROM pgferry.ddl WHERE migration = 'plain'"), sql);
    }
}

/// `seed prepare --capture-ddl`: the physical copy inherits the event triggers,
/// which the attach removes; DDL after the copy arrives through the stream.
#[test]
fn a_seeded_migration_captures_ddl_from_its_prepare_on() {
    let (source, _) = clusters(PgVersion::V15);
    let (s, name) = (source.url("app"), "seeded");
    assert_ok(&pgferry(&["seed", "prepare", "--source", &s, "--name", name, "--capture-ddl"], &[]));
    let copy = source.physical_copy();
    assert_eq!(copy.psql("app", "SELECT count(*) FROM pg_event_trigger"), "2", "the copy inherits DDL capture");
    source.psql("app", "ALTER TABLE app.items ADD COLUMN note text");
    source.psql("app", "UPDATE app.items SET note = 'n' || id WHERE id <= 50");
    source.psql("app", "CREATE TABLE app.fresh (id int PRIMARY KEY, v text)");
    source.psql("app", "INSERT INTO app.fresh SELECT g, 'v' FROM generate_series(1, 30) g");
    let t = copy.url("app");
    let log = copy.log_path().display().to_string();
    let args = ["start", "--source", &s, "--target", &t, "--name", name, "--seeded", "--seed-log", &log];
    assert_ok(&pgferry(&[&args[..], &["--until-caught-up"]].concat(), &[]));
    assert_eq!(copy.psql("app", "SELECT count(*) FROM pg_event_trigger"), "0", "removed from the copy at the attach");
    assert_eq!(copy.fingerprints("app"), source.fingerprints("app"));
    assert_eq!(schema(&copy), schema(&source));
}
