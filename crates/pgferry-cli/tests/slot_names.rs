//! Slots are server-wide: two migrations of two databases of one server under the
//! same name (the default, `main`) each get a slot of their own (named after the
//! source database's OID), run, cut over and clean up without touching each other;
//! a migration started under an earlier release's slot name keeps its slot.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every slot on the server, as `name@database`.
fn slots(c: &Cluster) -> String {
    c.psql("postgres", "SELECT coalesce(string_agg(slot_name || '@' || database, ',' ORDER BY slot_name), '') FROM pg_replication_slots")
}

fn oid(c: &Cluster, db: &str) -> String {
    c.psql("postgres", &format!("SELECT oid FROM pg_database WHERE datname = '{db}'"))
}

fn publications(c: &Cluster, db: &str) -> String {
    c.psql(db, "SELECT coalesce(string_agg(pubname, ',' ORDER BY pubname), '') FROM pg_publication")
}

fn content(c: &Cluster, db: &str) -> String {
    c.psql(db, "SELECT count(*) || ':' || md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o")
}

fn may_connect(c: &Cluster, db: &str) -> bool {
    c.psql(db, &format!("SELECT has_database_privilege('app', '{db}', 'CONNECT')")) == "t"
}

struct Servers {
    source: Cluster,
    target: Cluster,
}

impl Servers {
    fn start(databases: &[&str]) -> Servers {
        let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
        // Roles are the server's: made on both (the cutover's gate compares them).
        for c in [&source, &target] {
            c.psql("postgres", "CREATE ROLE app LOGIN PASSWORD 'app-pw'");
        }
        for db in databases {
            source.create_database(db);
            target.create_database(db);
            source.psql(
                db,
                "CREATE TABLE orders (id bigserial PRIMARY KEY, note text); GRANT ALL ON orders, orders_id_seq TO app;
                 INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 100) g;",
            );
        }
        Servers { source, target }
    }

    fn run(&self, command: &str, db: &str, extra: &[&str]) -> Output {
        let (src, dst) = (self.source.url(db), self.target.url(db));
        let mut args = vec![command, "--source", src.as_str(), "--target", dst.as_str()];
        args.extend(extra);
        pgferry(&args)
    }

    fn write(&self, db: &str, note: &str) {
        self.source.psql(db, &format!("INSERT INTO orders (note) SELECT '{note} ' || g FROM generate_series(1, 50) g"));
    }

    fn catch_up(&self, db: &str) {
        ok(self.run("follow", db, &["--until-caught-up"]));
        assert_eq!(content(&self.source, db), content(&self.target, db), "{db}");
    }
}

#[test]
fn two_databases_migrated_under_the_default_name_run_and_end_independently() {
    let s = Servers::start(&["one", "two"]);
    for db in ["one", "two"] {
        ok(s.run("copy", db, &[]));
    }
    let (one, two) = (oid(&s.source, "one"), oid(&s.source, "two"));
    let both = format!("pgferry_main__{one}@one,pgferry_main__{two}@two");
    assert_eq!(slots(&s.source), both);
    assert_eq!(
        s.target.psql("one", "SELECT slot_name FROM pgferry.migration WHERE name = 'main'"),
        format!("pgferry_main__{one}"),
        "the slot's name is recorded when the migration starts"
    );
    for db in ["one", "two"] {
        s.write(db, "after copy");
    }
    s.catch_up("one");
    s.catch_up("two");
    let status: serde_json::Value = serde_json::from_str(&ok(s.run("status", "two", &["--format", "json"]))).unwrap();
    assert_eq!(status["warnings"], serde_json::json!([]), "the slot is found: {status:#}");

    // The first is cut over while the second's writes go on.
    s.write("one", "before cutover");
    s.write("two", "during the first cutover");
    let stdout = ok(s.run("cutover", "one", &["--switch-command", "true"]));
    assert!(stdout.contains("cut over"), "{stdout}");
    assert_eq!(content(&s.source, "one"), content(&s.target, "one"));
    assert!(!may_connect(&s.source, "one"), "the first old source is fenced");
    assert!(may_connect(&s.source, "two"), "the second's is not");
    assert_eq!(slots(&s.source), both, "the cutover keeps both slots");
    s.catch_up("two");
    let validation = ok(s.run("validate", "two", &[]));
    assert!(validation.contains("EQUAL"), "{validation}");

    // Cleaning up the first leaves everything of the second.
    ok(s.run("cleanup", "one", &[]));
    assert_eq!(slots(&s.source), format!("pgferry_main__{two}@two"));
    assert_eq!(publications(&s.source, "one"), "");
    assert_eq!(publications(&s.source, "two"), "pgferry_main,pgferry_main__insert_only");
    assert!(!may_connect(&s.source, "one"), "cleanup keeps the old source fenced");
    s.write("two", "after the first cleanup");
    s.catch_up("two");
    ok(s.run("cutover", "two", &["--switch-command", "true"]));
    assert!(!may_connect(&s.source, "two"));
    ok(s.run("cleanup", "two", &[]));
    assert_eq!(slots(&s.source), "");
}

#[test]
fn a_slot_of_another_database_under_the_earlier_name_is_neither_taken_over_nor_dropped() {
    let s = Servers::start(&["one", "two"]);
    // An earlier release's slot of database one, of a migration named main.
    s.source.psql("one", "SELECT pg_create_logical_replication_slot('pgferry_main', 'pgoutput')");
    ok(s.run("copy", "two", &[]));
    let two = oid(&s.source, "two");
    assert_eq!(slots(&s.source), format!("pgferry_main@one,pgferry_main__{two}@two"));
    ok(s.run("abort", "two", &[]));
    assert_eq!(slots(&s.source), "pgferry_main@one", "abort drops only its own slot");
}

#[test]
fn a_migration_started_by_an_earlier_release_keeps_its_slot() {
    let s = Servers::start(&["app"]);
    ok(s.run("copy", "app", &[]));
    let new = format!("pgferry_main__{}", oid(&s.source, "app"));
    // Turn the migration into one an earlier release started: its slot named after
    // the migration alone (copied at the same position), no name recorded (the
    // column absent, as that release created the table).
    s.source.psql(
        "app",
        &format!("SELECT pg_copy_logical_replication_slot('{new}', 'pgferry_main'); SELECT pg_drop_replication_slot('{new}');"),
    );
    s.target.psql("app", "ALTER TABLE pgferry.migration DROP COLUMN slot_name");
    s.write("app", "after copy");
    s.catch_up("app");
    assert_eq!(slots(&s.source), "pgferry_main@app", "change capture used the earlier name and made no slot");
    let status: serde_json::Value = serde_json::from_str(&ok(s.run("status", "app", &["--format", "json"]))).unwrap();
    assert_eq!(status["warnings"], serde_json::json!([]), "the earlier name's slot is found: {status:#}");
    s.write("app", "before cutover");
    ok(s.run("cutover", "app", &["--switch-command", "true"]));
    assert_eq!(content(&s.source, "app"), content(&s.target, "app"));
    let report = ok(s.run("cleanup", "app", &[]));
    assert_eq!(slots(&s.source), "", "cleanup dropped the earlier name's slot: {report}");
}

/// Who may connect to a database and its settings: what a fence changes.
fn fence_settings(c: &Cluster, db: &str) -> String {
    c.psql(
        "postgres",
        &format!(
            "SELECT array_to_string(ARRAY(SELECT a::text FROM unnest(coalesce(datacl, acldefault('d', datdba))) a ORDER BY 1), ',')
                    || ' ' || coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0), '')
             FROM pg_database d WHERE datname = '{db}'"
        ),
    )
}

/// Two migrations of one server fenced at once (#18): lifting one fence puts back
/// exactly that database's settings and leaves the other's fence as it was, so
/// the fences compose whatever order they are lifted in.
#[test]
fn two_fences_on_one_server_are_lifted_independently_and_exactly() {
    let s = Servers::start(&["one", "two"]);
    let before: Vec<String> = ["one", "two"].iter().map(|db| fence_settings(&s.source, db)).collect();
    for db in ["one", "two"] {
        ok(s.run("copy", db, &[]));
        s.catch_up(db);
        let (src, dst) = (s.source.url(db), s.target.url(db));
        let killed = Command::new(env!("CARGO_BIN_EXE_pgferry"))
            .args(["cutover", "--source", &src, "--target", &dst, "--switch-command", "true"])
            .env("PGFERRY_FAILPOINT", "cutover-after-fenced:1")
            .output()
            .unwrap();
        assert_eq!(killed.status.code(), Some(137), "killed while fenced");
        assert!(!may_connect(&s.source, db), "{db} is fenced");
    }
    let fenced_two = fence_settings(&s.source, "two");
    assert_ne!(fenced_two, before[1]);
    ok(s.run("abort", "one", &[]));
    assert_eq!(fence_settings(&s.source, "one"), before[0], "one's settings exactly as before its fence");
    assert_eq!(fence_settings(&s.source, "two"), fenced_two, "two's fence untouched");
    assert!(may_connect(&s.source, "one") && !may_connect(&s.source, "two"));
    ok(s.run("abort", "two", &[]));
    assert_eq!(fence_settings(&s.source, "two"), before[1]);
    assert_eq!(slots(&s.source), "");
}
