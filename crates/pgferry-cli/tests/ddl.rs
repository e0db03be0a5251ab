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
    captured_ddl_is_replayed_in_order(&["--apply-lanes", "1"]);
}

/// The same with parallel apply: each replayed command is a barrier, the
/// lanes take the new descriptions once it is committed.
#[test]
fn captured_ddl_is_replayed_in_order_with_four_apply_lanes() {
    captured_ddl_is_replayed_in_order(&["--apply-lanes", "4"]);
}

fn captured_ddl_is_replayed_in_order(lanes: &[&str]) {
    for version in TARGETS {
        let (source, target) = clusters(version);
        for c in [&source, &target] {
            c.psql("app", "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw'");
        }
        source.psql("app", "GRANT CREATE, USAGE ON SCHEMA app TO app_owner");
        start(&source, &target, "ddl", &[&["--capture-ddl"], lanes].concat());
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
        assert_ok(&follow(&source, &target, "ddl", lanes));

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
        let stopped = follow(&source, &target, "ddl", lanes);
        assert!(!stopped.status.success());
        let said = stderr(&stopped);
        assert!(said.contains("CREATE TABLE app.mixed") && said.contains("--apply-ddl"), "{said}");
        assert_eq!(target.psql("app", "SELECT to_regclass('app.mixed') IS NULL"), "t", "nothing of it applied");
        assert_eq!(
            target.psql("app", "SELECT state FROM pgferry.ddl WHERE source_command LIKE '%app.mixed%'"),
            "pending"
        );
        let apply_ddl = [&["--apply-ddl", "CREATE TABLE app.mixed (id int)"], lanes].concat();
        assert_ok(&follow(&source, &target, "ddl", &apply_ddl));
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

fn run_as(source: &Cluster, user: &str, statements: &[&str]) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&source.url_as(user, "user-pw", "app"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        for statement in statements {
            client.batch_execute(statement).await.unwrap_or_else(|e| panic!("{statement}: {e:?}"));
        }
    });
}

/// The settings that change what a DDL text means (the search_path an
/// application's role has, DateStyle, TimeZone, standard_conforming_strings)
/// are the source session's when the command is replayed, not the apply
/// session's: a table created unqualified lands in the application's schema,
/// literals in defaults read the same, and a backslash-escaped quote does not
/// split the text.
#[test]
fn a_replayed_command_runs_under_the_source_sessions_settings() {
    let (source, target) = clusters(PgVersion::V18);
    for c in [&source, &target] {
        c.psql("app", "CREATE ROLE app_user LOGIN PASSWORD 'user-pw'; GRANT CREATE ON SCHEMA public TO app_user");
    }
    source.psql(
        "app",
        "GRANT CREATE, USAGE ON SCHEMA app TO app_user; ALTER ROLE app_user SET search_path = app, public",
    );
    start(&source, &target, "paths", &["--capture-ddl"]);
    run_as(
        &source,
        "app_user",
        &[
            "SET DateStyle = 'ISO, DMY'",
            "CREATE TABLE t2 (id int PRIMARY KEY, born date DEFAULT '03/04/2020')",
            "INSERT INTO t2 (id) VALUES (1), (2)",
            "SET TimeZone = 'Asia/Tokyo'",
            "ALTER TABLE t2 ADD COLUMN at timestamptz DEFAULT '2020-01-01 09:00'",
            "INSERT INTO t2 (id) VALUES (3)",
            "SET standard_conforming_strings = off",
            "COMMENT ON TABLE t2 IS 'it\\'s; fine'",
            "RESET standard_conforming_strings",
            // A text that changes the search_path between its statements.
            "CREATE INDEX t2_born ON t2 (born); SET search_path = public; CREATE TABLE in_public (id int PRIMARY KEY)",
        ],
    );
    assert_ok(&follow(&source, &target, "paths", &[]));
    assert_eq!(
        target.psql("app", "SELECT to_regclass('app.t2') IS NOT NULL, to_regclass('public.in_public') IS NOT NULL"),
        "t|t"
    );
    assert_eq!(
        target.psql("app", "SELECT born, at AT TIME ZONE 'UTC' FROM app.t2 WHERE id = 1"),
        "2020-04-03|2020-01-01 00:00:00"
    );
    assert_eq!(target.psql("app", "SELECT obj_description('app.t2'::regclass)"), "it's; fine");
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
    assert_eq!(schema(&target), schema(&source));
    assert_eq!(target.psql("app", "SELECT tableowner FROM pg_tables WHERE tablename = 't2'"), "app_user");
}

/// Identical texts are distinct commands: each is replayed (the journal's
/// identity is the message's position in the source's WAL, never its text),
/// exactly once even when change capture is killed after committing them and
/// receives them again.
#[test]
fn identical_commands_are_each_replayed_exactly_once() {
    let (source, target) = clusters(PgVersion::V18);
    source.psql("app", "CREATE SCHEMA app2; CREATE TABLE app2.items (id int PRIMARY KEY, name text)");
    start(&source, &target, "twice", &["--capture-ddl"]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut client = source.connect("app").await;
        let tx = client.transaction().await.unwrap();
        for statement in [
            "ALTER TABLE app.items ADD COLUMN extra int",
            "ALTER TABLE app.items DROP COLUMN extra",
            "ALTER TABLE app.items ADD COLUMN extra int",
            "UPDATE app.items SET extra = id WHERE id <= 10",
            "SET LOCAL search_path = app",
            "CREATE INDEX ON items (name)",
            "CREATE INDEX ON items (name)",
            "SET LOCAL search_path = app2",
            "CREATE INDEX ON items (name)",
        ] {
            tx.batch_execute(statement).await.unwrap();
        }
        tx.commit().await.unwrap();
    });
    source.psql("app", "UPDATE app.items SET extra = -id WHERE id > 90");
    // Killed before the batch's COMMIT on the target: its replays and their
    // journal rows go together, and the rerun replays each command once.
    let killed = pgferry(
        &[
            "follow",
            "--source",
            &source.url("app"),
            "--target",
            &target.url("app"),
            "--name",
            "twice",
            "--until-caught-up",
        ],
        &[("PGFERRY_FAILPOINT", "apply-before-commit:1")],
    );
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    assert_ok(&follow(&source, &target, "twice", &[]));
    let indexes = |c: &Cluster| {
        c.psql(
            "app",
            "SELECT string_agg(schemaname || '.' || indexname, ',' ORDER BY 1) FROM pg_indexes WHERE schemaname IN ('app', 'app2') AND indexname LIKE 'items_name_idx%'",
        )
    };
    assert_eq!(indexes(&source), "app.items_name_idx,app.items_name_idx1,app2.items_name_idx");
    assert_eq!(indexes(&target), indexes(&source));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
    assert_eq!(schema(&target), schema(&source));
    assert_eq!(
        target.psql(
            "app",
            "SELECT count(*) || ',' || count(DISTINCT source_lsn) FROM pgferry.ddl WHERE migration = 'twice' AND state = 'applied'"
        ),
        "6,6",
        "six commands, each journaled once by its position"
    );
}

/// A command that rewrites a table's existing rows with values computed on
/// each side (a volatile default) makes them differ where change capture
/// carried nothing: the table is marked for a whole check in the replay's
/// transaction, the changed-rows validation compares it wholly, and the cutover
/// refuses before fencing, naming the table and the repair; repaired, the
/// cutover goes through and the target ends equal.
#[test]
fn a_volatile_default_makes_the_cutover_refuse_until_the_table_is_proven() {
    let (source, target) = clusters(PgVersion::V18);
    let (s, t) = (source.url("app"), target.url("app"));
    start(&source, &target, "volatile", &["--capture-ddl"]);
    source.psql("app", "ALTER TABLE app.items ADD COLUMN r double precision DEFAULT random()");
    source.psql("app", "ALTER TABLE app.events ADD COLUMN k int DEFAULT 7");
    source.psql("app", "UPDATE app.items SET name = 'touched' WHERE id = 5");
    assert_ok(&follow(&source, &target, "volatile", &[]));
    assert_ne!(target.fingerprints("app"), source.fingerprints("app"), "random() differs on each side");

    let changed = pgferry(&["validate", "--source", &s, "--target", &t, "--name", "volatile", "--changed-only"], &[]);
    assert_eq!(
        changed.status.code(),
        Some(1),
        "the changed rows' check compares the table wholly: {}",
        String::from_utf8_lossy(&changed.stdout)
    );

    let acl = |c: &Cluster| c.psql("app", "SELECT coalesce(datacl::text, '') FROM pg_database WHERE datname = 'app'");
    let before = acl(&source);
    let refused = pgferry(&["cutover", "--source", &s, "--target", &t, "--name", "volatile"], &[]);
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(said.contains("\"app\".\"items\"") && said.contains("validate --repair"), "{said}");
    assert!(!said.contains("\"app\".\"events\""), "a constant default rewrites nothing that differs: {said}");
    assert_eq!(acl(&source), before, "refused before the fence");

    let repaired = pgferry(&["validate", "--source", &s, "--target", &t, "--name", "volatile", "--repair"], &[]);
    assert_ok(&repaired);
    assert_ok(&pgferry(&["cutover", "--source", &s, "--target", &t, "--name", "volatile"], &[]));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

/// A table unlogged at the copy, written to, then made logged: the rows written
/// while it was unlogged never reached the WAL. The replayed SET LOGGED marks
/// it, so the cutover refuses, naming it and the repair, instead of cutting
/// over a target without those rows; repaired, the target ends equal.
#[test]
fn a_table_made_logged_makes_the_cutover_refuse_until_the_table_is_proven() {
    let (source, target) = clusters(PgVersion::V15);
    let (s, t) = (source.url("app"), target.url("app"));
    source.psql(
        "app",
        "CREATE UNLOGGED TABLE app.scratch (id int PRIMARY KEY, v text);
         INSERT INTO app.scratch SELECT g, 'copied' FROM generate_series(1, 50) g",
    );
    start(&source, &target, "logged", &["--capture-ddl"]);
    source.psql("app", "INSERT INTO app.scratch SELECT g, 'unlogged' FROM generate_series(51, 80) g");
    source.psql("app", "ALTER TABLE app.scratch SET LOGGED");
    source.psql("app", "INSERT INTO app.scratch SELECT g, 'logged' FROM generate_series(81, 90) g");
    assert_ok(&follow(&source, &target, "logged", &[]));
    assert_eq!(target.psql("app", "SELECT count(*) FROM app.scratch"), "60", "rows 51-80 never reached the WAL");

    let refused = pgferry(&["cutover", "--source", &s, "--target", &t, "--name", "logged"], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(said.contains("\"app\".\"scratch\"") && said.contains("validate --repair"), "{said}");

    assert_ok(&pgferry(&["validate", "--source", &s, "--target", &t, "--name", "logged", "--repair"], &[]));
    assert_ok(&pgferry(&["cutover", "--source", &s, "--target", &t, "--name", "logged"], &[]));
    assert_eq!(target.psql("app", "SELECT count(*) FROM app.scratch"), "90");
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

/// `start --capture-ddl` run again (a rerun after a kill, or a restart):
/// installing DDL capture again is not captured by the triggers already there,
/// so change capture goes on through it and replays the application's DDL after.
#[test]
fn a_rerun_of_start_does_not_capture_its_own_installation() {
    let (source, target) = clusters(PgVersion::V15);
    start(&source, &target, "again", &["--capture-ddl"]);
    start(&source, &target, "again", &["--capture-ddl"]);
    source.psql("app", "ALTER TABLE app.items ADD COLUMN note text");
    source.psql("app", "UPDATE app.items SET note = 'n' WHERE id < 10");
    assert_ok(&follow(&source, &target, "again", &[]));
    assert_eq!(schema(&target), schema(&source));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

/// An enum label the source adds is usable there only once its transaction
/// committed; change capture applies many source transactions in one target
/// transaction, so a label added in one and used in the next (a migration, then
/// the application's writes) must reach the target committed before the row:
/// the batch ends after a transaction whose DDL it replayed. Both arrive as a
/// backlog, so one batch would hold them all.
#[test]
fn an_enum_label_added_then_used_in_the_next_transaction_is_replayed_before_its_rows() {
    for version in TARGETS {
        let (source, target) = clusters(version);
        source.psql(
            "app",
            "CREATE TYPE app.mood AS ENUM ('sad'); CREATE TABLE app.moods (id int PRIMARY KEY, m app.mood)",
        );
        start(&source, &target, "labels", &["--capture-ddl"]);
        source.psql("app", "ALTER TYPE app.mood ADD VALUE 'ok'");
        source.psql("app", "INSERT INTO app.moods VALUES (1, 'ok')");
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut client = source.connect("app").await;
            let tx = client.transaction().await.unwrap();
            tx.batch_execute("ALTER TYPE app.mood ADD VALUE 'happy'").await.unwrap();
            tx.batch_execute("INSERT INTO app.moods VALUES (2, 'sad')").await.unwrap();
            tx.commit().await.unwrap();
        });
        source
            .psql("app", "INSERT INTO app.moods VALUES (3, 'happy'); UPDATE app.items SET name = 'after' WHERE id = 1");
        let out = follow(&source, &target, "labels", &[]);
        assert_ok(&out);
        let moods = "SELECT enum_range(NULL::app.mood)::text || ' ' || string_agg(id || '=' || m, ',' ORDER BY id) FROM app.moods";
        assert_eq!(source.psql("app", moods), "{sad,ok,happy} 1=ok,2=sad,3=happy");
        assert_eq!(target.psql("app", moods), source.psql("app", moods), "15 -> {version:?}");
        assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
    }
}

/// `start` (paused at `pause`) until the pause is reached.
fn start_paused(
    source: &Cluster,
    target: &Cluster,
    pause: &str,
    dir: &std::path::Path,
    capture: bool,
) -> std::process::Child {
    let (s, t) = (source.url("app"), target.url("app"));
    let mut args = vec!["start", "--source", &s, "--target", &t, "--until-caught-up"];
    if capture {
        args.push("--capture-ddl");
    }
    let child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(&args)
        .env("PGFERRY_PAUSE", format!("{pause}:{}", dir.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = dir.join(format!("{pause}.reached"));
    for _ in 0..600 {
        if reached.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(reached.exists(), "start reached {pause}");
    child
}

/// The application's DDL while `start` makes its publications: with DDL capture
/// installed and no publication yet, the capture's trigger failed the
/// application's CREATE TABLE ("publication does not exist": the source broken,
/// seen in CI under load). And a table made after the publications but before
/// the slot is in the copy's snapshot yet in no publication: its later changes
/// were never streamed (without DDL capture nothing publishes it). Both tables
/// now arrive with every row.
#[test]
fn a_table_made_while_the_copy_makes_its_publications_arrives_with_its_later_rows() {
    for (pause, capture) in [("copy-before-publications", true), ("copy-before-slot", false)] {
        let (source, target) = clusters(PgVersion::V15);
        let dir = tempfile::tempdir().unwrap();
        let start = start_paused(&source, &target, pause, dir.path(), capture);
        let made = source.try_psql(
            "app",
            "CREATE TABLE app.fresh (id int PRIMARY KEY, v text); INSERT INTO app.fresh VALUES (1, 'before the slot')",
        );
        assert!(made.is_ok(), "{pause}: the application's DDL works: {made:?}");
        std::fs::write(dir.path().join(format!("{pause}.go")), b"").unwrap();
        assert_ok(&start.wait_with_output().unwrap());
        source.psql(
            "app",
            "INSERT INTO app.fresh VALUES (2, 'after the copy'); UPDATE app.fresh SET v = 'changed' WHERE id = 1",
        );
        let (s, t) = (source.url("app"), target.url("app"));
        assert_ok(&pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"], &[]));
        let rows = "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM app.fresh";
        assert_eq!(target.psql("app", rows), "1=changed,2=after the copy", "{pause}");
        assert_eq!(target.psql("app", rows), source.psql("app", rows), "{pause}");
    }
}
