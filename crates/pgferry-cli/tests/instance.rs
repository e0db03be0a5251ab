//! A whole instance (#18): `check --all-databases` checks every database of the
//! source server against the target server's database of the same name, names
//! what it leaves out and why (loudly where the operator chose it: those writes
//! are lost), and gives the statement that creates a database the target lacks
//! as the source has it.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn definition(c: &Cluster, db: &str) -> String {
    c.psql(
        "postgres",
        &format!(
            "SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype || ' ' || datlocprovider::text || ' ' || coalesce(daticulocale, '') || ' ' || pg_get_userbyid(datdba)
             FROM pg_database WHERE datname = '{db}'"
        ),
    )
}

#[test]
fn check_all_databases_covers_the_instance_names_what_it_leaves_out_and_how_to_create_what_is_missing() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    source.psql("postgres", "CREATE ROLE shop_owner");
    for db in ["shop", "reports", "empty"] {
        source.create_database(db);
    }
    for sql in [
        "CREATE DATABASE \"Intl db\" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LC_COLLATE 'C' LC_CTYPE 'C' OWNER shop_owner",
        "CREATE DATABASE closed",
        "ALTER DATABASE closed ALLOW_CONNECTIONS false",
    ] {
        source.psql("postgres", sql);
    }
    source.psql("shop", "CREATE TABLE orders (id int PRIMARY KEY)");
    for db in ["shop", "reports", "empty"] {
        target.create_database(db);
    }
    target.psql("postgres", "CREATE ROLE shop_owner");
    let (s, t) = (source.url("postgres"), target.url("postgres"));

    let out = pgferry(&["check", "--source", &s, "--target", &t, "--all-databases", "--exclude-database", "reports"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "a database missing on the target: not ready\n{stdout}");
    for db in ["Intl db", "empty", "postgres", "shop"] {
        assert!(stdout.contains(&format!("=== database {db}\n")), "{db} is checked:\n{stdout}");
    }
    assert!(stdout.contains("WARNING: left out: reports (excluded by --exclude-database: its writes after the copy will NOT reach the target)"), "{stdout}");
    assert!(stdout.contains("left out: closed (it allows no connections)"), "{stdout}");
    assert!(stdout.contains("left out: template1 (a template)"), "{stdout}");
    let create = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("CREATE DATABASE"))
        .unwrap_or_else(|| panic!("the statement is given:\n{stdout}"))
        .trim()
        .to_string();
    target.psql("postgres", &create);
    assert_eq!(definition(&target, "Intl db"), definition(&source, "Intl db"), "created as the source has it");

    let out = pgferry(&["check", "--source", &s, "--target", &t, "--all-databases", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["plan"]["databases"], serde_json::json!(["Intl db", "empty", "postgres", "reports", "shop"]));

    let out = pgferry(&["check", "--source", &s, "--target", &t, "--all-databases", "--database", "shpo"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the source server has no database \"shpo\"") && stderr.contains("hint: "), "{stderr}");
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn verdicts(report: &serde_json::Value) -> Vec<(String, String)> {
    report["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .map(|d| {
            let verdict = d["report"]["verdict"].as_str().or(d["missing"].as_str().map(|_| "missing")).unwrap_or("?");
            (d["database"].as_str().unwrap().to_string(), verdict.to_string())
        })
        .collect()
}

/// `validate` and `status` with `--all-databases`: each database migrated on its
/// own is validated (or its status read) under its own name; one the target
/// server lacks makes the instance DIFFERENT (nothing of it moved); excluded, it
/// is named as left out; a row changed on one target makes the instance DIFFERENT;
/// one `abort --all-databases` removes every database's migration.
#[test]
fn validate_and_status_cover_every_database_of_the_instance() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V18));
    for db in ["shop", "it's odd", "unmoved"] {
        source.create_database(db);
        source.psql(
            db,
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 500) g",
        );
    }
    for db in ["shop", "it's odd"] {
        target.create_database(db);
        let (s, t) = (source.url(&db.replace('\'', "%27")), target.url(&db.replace('\'', "%27")));
        let out = pgferry(&["copy", "--source", &s, "--target", &t]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        source.psql(db, "UPDATE t SET v = 'w' WHERE id < 10");
        let out = pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    let all = |command: &str, extra: &[&str]| {
        pgferry(&[&[command, "--source", &s, "--target", &t, "--all-databases", "--format", "json"], extra].concat())
    };
    let out = all("validate", &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a database missing on the target: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(
        verdicts(&report),
        [
            ("it's odd".to_string(), "equal".to_string()),
            ("postgres".to_string(), "equal".to_string()),
            ("shop".to_string(), "equal".to_string()),
            ("unmoved".to_string(), "missing".to_string())
        ],
        "{report:#}"
    );
    let out = all("validate", &["--exclude-database", "unmoved"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert!(report["left_out"].to_string().contains("unmoved"), "{report:#}");
    let table = pgferry(&[
        "validate",
        "--source",
        &s,
        "--target",
        &t,
        "--all-databases",
        "--database",
        "shop",
        "--database",
        "it's odd",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("== database \"shop\" ==") && text.contains("instance: EQUAL (2 database(s))"), "{text}");
    assert!(
        text.contains(
            "left out: \"unmoved\": not named by --database: its writes after the copy will NOT reach the target"
        ),
        "{text}"
    );

    target.psql("shop", "UPDATE t SET v = 'tampered' WHERE id = 100");
    let out = all("validate", &["--database", "shop", "--database", "it's odd"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        verdicts(&json(&out)),
        [("it's odd".to_string(), "equal".to_string()), ("shop".to_string(), "different".to_string())]
    );

    let out = all("status", &["--database", "shop", "--database", "it's odd"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let status = json(&out);
    let databases = status["databases"].as_array().unwrap();
    assert_eq!(databases.len(), 2, "{status:#}");
    for d in databases {
        assert!(d["report"]["phase"].to_string().contains("copied"), "each database's own migration: {d:#}");
    }
    let out = all("status", &[]);
    assert_eq!(out.status.code(), Some(1), "a database missing on the target is a problem found");
    let watch = pgferry(&["status", "--source", &s, "--target", &t, "--all-databases", "--watch"]);
    assert_eq!(watch.status.code(), Some(2), "--watch is for one database");

    // One abort for the instance: every database's migration removed, a database
    // without one (or missing on the target) left as it is; a rerun changes nothing.
    let slots = "SELECT count(*) FROM pg_replication_slots";
    assert_eq!(source.psql("postgres", slots), "2");
    for _ in 0..2 {
        let out = pgferry(&["abort", "--source", &s, "--target", &t, "--all-databases"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = json(&out);
        assert_eq!(report["databases"].as_array().unwrap().len(), 4, "{report:#}");
        assert_eq!(source.psql("postgres", slots), "0");
        for db in ["shop", "it's odd"] {
            assert_eq!(source.psql(db, "SELECT count(*) FROM pg_publication"), "0", "{db}");
        }
    }
}

/// `start --all-databases --roles`: a database whose start would be refused
/// refuses the whole run before any role or database is created, whether the
/// target has it (here not empty) or the run is to create it (here with a
/// table no row of which could be updated on the target: no replica identity,
/// which `check --all-databases` says beforehand), or because the target's user
/// could not create it (no CREATEDB, not a member of its owner's role).
#[test]
fn start_all_databases_refused_anywhere_creates_no_role_and_no_database() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    for sql in ["CREATE ROLE shop_owner", "CREATE DATABASE shop OWNER shop_owner", "CREATE DATABASE reports"] {
        source.psql("postgres", sql);
    }
    source.psql("shop", "CREATE TABLE t (id int PRIMARY KEY)");
    target.create_database("shop");
    target.psql("shop", "CREATE TABLE leftover (id int)");
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    let out = pgferry(&["start", "--source", &s, "--target", &t, "--all-databases", "--roles", "--until-caught-up"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("database \"shop\""), "the refusing database named: {said}");
    assert_eq!(target.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'shop_owner'"), "0", "{said}");
    assert_eq!(target.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'reports'"), "0", "{said}");
    assert_eq!(source.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0", "nothing started");

    target.psql("postgres", "DROP DATABASE shop");
    // The check says beforehand what the start of a database still to create would find.
    source.psql("reports", "CREATE TABLE log (msg text)");
    let checked = pgferry(&["check", "--source", &s, "--target", &t, "--all-databases"]);
    let said = String::from_utf8_lossy(&checked.stdout).into_owned();
    let reports = said.split("=== database reports").nth(1).unwrap_or_else(|| panic!("{said}"));
    assert!(reports.contains("CREATE DATABASE") && reports.contains("[replica_identity]"), "{said}");
    source.psql("reports", "DROP TABLE log");
    // A target user without CREATEDB, who would not be a member of the owner --roles makes.
    target.psql("postgres", "CREATE ROLE mover LOGIN PASSWORD 'mover-pw' CREATEROLE");
    let as_mover = target.url_as("mover", "mover-pw", "postgres");
    let out = pgferry(&[
        "start",
        "--source",
        &s,
        "--target",
        &as_mover,
        "--all-databases",
        "--exclude-database",
        "postgres",
        "--roles",
        "--until-caught-up",
    ]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("\"mover\" may not create databases (it has no CREATEDB)"), "{said}");
    assert!(
        said.contains("owned by role \"shop_owner\", which --roles would create, but the target's user \"mover\" would not be a member"),
        "{said}"
    );
    assert_eq!(target.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'shop_owner'"), "0", "{said}");

    source.psql("reports", "CREATE TABLE log (msg text)");
    let out = pgferry(&["start", "--source", &s, "--target", &t, "--all-databases", "--roles", "--until-caught-up"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("database \"reports\"") && said.contains("replica_identity"), "{said}");
    assert_eq!(target.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'shop_owner'"), "0", "{said}");
    assert_eq!(
        target.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname IN ('shop', 'reports')"),
        "0",
        "{said}"
    );
    assert_eq!(source.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0", "nothing started");
}

/// `start --all-databases`: refused with nothing created or started while a
/// database's owner is missing on the target server; then it creates every
/// database the target lacks as the source has it (owner, encoding, locale;
/// its settings carried by the copy), and one process copies and follows every
/// database side by side (each its own migration, log lines naming the
/// database), and the instance validates EQUAL.
#[test]
fn start_all_databases_moves_every_database_side_by_side() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    let names = ["shop", "Ünïcode db", "reports"];
    for sql in [
        "CREATE ROLE shop_owner",
        "CREATE DATABASE shop OWNER shop_owner",
        "ALTER DATABASE shop SET work_mem = '8MB'",
        "CREATE DATABASE \"Ünïcode db\"",
        "CREATE DATABASE reports TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LC_COLLATE 'C' LC_CTYPE 'C'",
    ] {
        source.psql("postgres", sql);
    }
    for db in names {
        source.psql(db, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g");
    }
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    let start = |extra: &[&str]| {
        pgferry(
            &[&["start", "--source", &s, "--target", &t, "--all-databases", "--until-caught-up", "--service"], extra]
                .concat(),
        )
    };
    let refused = start(&[]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("database \"shop\" is owned by role \"shop_owner\", which the target server lacks")
            && stderr.contains("pgferry roles"),
        "{stderr}"
    );
    assert_eq!(source.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0", "nothing started");
    assert_eq!(target.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname IN ('shop', 'reports')"), "0");

    target.psql("postgres", "CREATE ROLE shop_owner");
    let out = start(&["--jobs", "4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for db in names {
        assert!(stderr.contains(&format!("database={db}")), "log lines name {db}: {stderr}");
        assert!(stderr.contains(&format!("created database {db:?} on the target")), "{stderr}");
        assert_eq!(definition(&target, db), definition(&source, db), "{db} created as the source has it");
    }
    assert_eq!(target.psql("shop", "SHOW work_mem"), "8MB", "the database's settings carried");
    assert_eq!(
        source.psql("postgres", "SELECT count(*) FROM pg_replication_slots"),
        "4",
        "one slot per database, postgres's too"
    );
    for db in names {
        source.psql(db, "UPDATE t SET v = 'changed' WHERE id % 7 = 0; DELETE FROM t WHERE id > 1990");
    }
    let out = start(&[]);
    assert!(out.status.success(), "a rerun follows on: {}", String::from_utf8_lossy(&out.stderr));
    let validated = pgferry(&["validate", "--source", &s, "--target", &t, "--all-databases"]);
    let text = String::from_utf8_lossy(&validated.stdout);
    assert!(validated.status.success() && text.contains("instance: EQUAL (4 database(s))"), "{text}");
}

/// Whether the application may connect to each database (the fence revokes it).
fn connect_allowed(c: &Cluster, databases: &[&str]) -> Vec<String> {
    databases
        .iter()
        .map(|db| {
            c.psql(
                "postgres",
                &format!("SELECT has_database_privilege('public', '{}', 'CONNECT')", db.replace('\'', "''")),
            )
        })
        .collect()
}

/// `cutover --all-databases`: a go/no-go refusal in one database fences none;
/// a difference found inside one database's fence, or a failed switch command,
/// rolls every database back (none switched, all unfenced); then every
/// database is fenced, drained and checked, and the switch command runs once.
#[test]
fn one_cutover_for_the_instance_switches_every_database_once_or_none() {
    let names = ["shop", "it's odd", "reports"];
    let (source, target, instance) = instance_of(PgVersion::V18, &names, 300);
    let run = |command: &str, extra: &[&str]| on_instance(command, &instance, extra);
    let out = run("start", &["--until-caught-up"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for db in names {
        source.psql(db, "UPDATE t SET v = 'after the copy' WHERE id <= 5");
    }
    let out = run("start", &["--until-caught-up"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let switched = tempfile::NamedTempFile::new().unwrap();
    let switch = format!("echo switched >> {}", switched.path().display());
    let switches = || std::fs::read_to_string(switched.path()).unwrap().lines().count();
    let open = vec!["t".to_string(); 3];
    // A word about a switch where no cutover stopped: refused before anything.
    let word = run("cutover", &["--switch-did-not-run", "--switch-command", &switch]);
    let stderr = String::from_utf8_lossy(&word.stderr);
    assert_eq!(word.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no database of the instance stopped at its switch"), "{stderr}");

    // A go/no-go refusal in one database: nothing fenced anywhere.
    target.psql("reports", "CREATE INDEX extra ON t (v)");
    let refused = run("cutover", &["--switch-command", &switch]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the instance's cutover may not start")
            && stderr.contains("database \"reports\": catalog parity"),
        "{stderr}"
    );
    assert_eq!(connect_allowed(&source, &names), open);
    target.psql("reports", "DROP INDEX extra");

    // A changed row found different inside one database's fence: all roll back.
    target.psql("it's odd", "UPDATE t SET v = 'tampered' WHERE id = 3");
    let failed = run("cutover", &["--switch-command", &switch]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(
        stderr.contains("database \"it's odd\"") && stderr.contains("the instance's one switch did not run"),
        "{stderr}"
    );
    assert_eq!(switches(), 0, "no switch ran");
    assert_eq!(connect_allowed(&source, &names), open, "every database unfenced");
    target.psql("it's odd", "UPDATE t SET v = 'after the copy' WHERE id = 3");
    // The check journaled its difference: a validation that proves the repair clears it.
    let validated = run("validate", &[]);
    assert!(validated.status.success(), "{}", String::from_utf8_lossy(&validated.stdout));

    // A failing switch command: every database rolls back.
    let failed = run("cutover", &["--switch-command", "exit 3"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && stderr.contains("rolled back"), "{stderr}");
    assert!(!stderr.contains("may not start"), "refused by the switch, not the go/no-go: {stderr}");
    assert_eq!(connect_allowed(&source, &names), open, "every database unfenced");

    let rehearsed = run("rehearse", &[]);
    let text = String::from_utf8_lossy(&rehearsed.stdout);
    assert!(rehearsed.status.success(), "{text}{}", String::from_utf8_lossy(&rehearsed.stderr));
    for db in names {
        assert!(text.contains(&format!("== database {db:?} ==")), "each database rehearsed: {text}");
    }
    assert_eq!(connect_allowed(&source, &names), open, "a rehearsal fences nothing");
    let done = run("cutover", &["--switch-command", &switch]);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(switches(), 1, "one switch for the instance");
    assert!(stdout.contains("instance: 3 database(s) cut over with one switch; downtime"), "{stdout}");
    assert_eq!(connect_allowed(&source, &names), vec!["f".to_string(); 3], "every old database fenced");
    for db in names {
        assert_eq!(target.psql(db, "SELECT count(*) FROM t WHERE v = 'after the copy'"), "5", "{db}");
    }
}

/// The outside fence (`--fence-command`) is the instance's: one cutover of two
/// databases runs it once, and a rollback runs the lift once (run per database
/// at the same moment, `pgferry aws fence` on one state directory would refuse
/// all but one, and a second lift would find nothing to lift).
#[test]
fn the_outside_fence_is_raised_once_for_the_instance_and_lifted_once() {
    let names = ["shop", "reports"];
    let (source, _target, instance) = instance_of(PgVersion::V15, &names, 100);
    let calls = tempfile::NamedTempFile::new().unwrap();
    let (raise, lift) =
        (format!("echo raise >> {}", calls.path().display()), format!("echo lift >> {}", calls.path().display()));
    let run = |command: &str, extra: &[&str]| on_instance(command, &instance, extra);
    let out = run("start", &["--until-caught-up"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hooks = ["--fence-command", raise.as_str(), "--unfence-command", lift.as_str()];
    let failed = run("cutover", &[&hooks[..], &["--switch-command", "exit 3"]].concat());
    assert!(!failed.status.success(), "{}", String::from_utf8_lossy(&failed.stderr));
    let said = || std::fs::read_to_string(calls.path()).unwrap();
    assert_eq!(said(), "raise\nlift\n", "raised once, lifted once");
    assert_eq!(connect_allowed(&source, &names), ["t", "t"]);
    let done = run("cutover", &[&hooks[..], &["--switch-command", "true"]].concat());
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(said(), "raise\nlift\nraise\n", "raised once more, and kept");
}

/// `cutover --all-databases` killed while its databases are fenced and not yet
/// switched: a rerun rolls every database back by itself (nothing asks the
/// operator whether a switch ran), and the next run cuts the instance over.
#[test]
fn an_instance_cutover_killed_before_its_switch_rolls_back_on_the_rerun() {
    let names = ["shop", "reports"];
    let (source, _target, instance) = instance_of(PgVersion::V15, &names, 100);
    let args = |command: &'static str, extra: &[&'static str]| -> Vec<String> {
        [&[command.to_string()][..], &instance, &extra.iter().map(|e| e.to_string()).collect::<Vec<_>>()].concat()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args("start", &["--until-caught-up"])).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pause = tempfile::tempdir().unwrap();
    let mut cutover = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args("cutover", &["--switch-command", "true"]))
        .env("PGFERRY_PAUSE", format!("cutover-before-quiet-check:{}", pause.path().display()))
        .spawn()
        .unwrap();
    let reached = pause.path().join("cutover-before-quiet-check.reached");
    let started = std::time::Instant::now();
    while !reached.exists() || connect_allowed(&source, &names) != ["f", "f"] {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "both databases fenced and paused");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cutover.kill().unwrap();
    cutover.wait().unwrap();
    let rerun = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args("cutover", &["--switch-command", "true"]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(!rerun.status.success() && stderr.contains("it has been rolled back"), "{stderr}");
    assert!(!stderr.contains("--switch-ran"), "nothing asks whether a switch ran: {stderr}");
    assert_eq!(connect_allowed(&source, &names), ["t", "t"], "every database unfenced");
    let done = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args("cutover", &["--switch-command", "true"]))
        .output()
        .unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(connect_allowed(&source, &names), ["f", "f"]);
}

/// The seeded path for a whole instance (a snapshot restore brings every
/// database over): `seed prepare --all-databases` before the one physical copy,
/// taken under writes in two databases; `start --seeded --all-databases` attaches
/// every database at the copy's end and catches up; every database is then equal
/// to its source, and one cutover switches the instance.
#[test]
fn a_seeded_instance_attaches_every_database_from_one_copy() {
    let source = Cluster::start(PgVersion::V15);
    for db in ["app", "shop"] {
        source.create_database(db);
        source.psql(db, "CREATE TABLE accounts (id int PRIMARY KEY, n int); INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 500) g");
    }
    let (s, name) = (source.url("postgres"), "inst");
    let prepared = pgferry(&["seed", "prepare", "--source", &s, "--all-databases", "--name", name]);
    let stdout = String::from_utf8_lossy(&prepared.stdout);
    assert!(
        prepared.status.success() && stdout.contains("every database is prepared"),
        "{stdout}{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let writers: Vec<_> = ["app", "shop"]
        .into_iter()
        .map(|db| {
            pgferry_testkit::Writer::start(source.url(db), |n| {
                format!(
                    "UPDATE accounts SET n = n + 1 WHERE id = {}; INSERT INTO accounts VALUES ({}, 1)",
                    n % 500 + 1,
                    1000 + n
                )
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let copy = source.physical_copy();
    let t = copy.url("postgres");
    let log = copy.log_path().display().to_string();
    let start = || {
        pgferry(&[
            "start",
            "--source",
            &s,
            "--target",
            &t,
            "--all-databases",
            "--name",
            name,
            "--seeded",
            "--seed-log",
            &log,
            "--until-caught-up",
        ])
    };
    let seeded = start();
    let written: u64 = writers.into_iter().map(|w| w.stop()).sum();
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    assert!(written > 10, "the writers committed during the copy");
    let rerun = start();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    for db in ["app", "shop", "postgres"] {
        assert_eq!(copy.fingerprints(db), source.fingerprints(db), "{db}: copy and source differ");
    }
    let done = pgferry(&[
        "cutover",
        "--source",
        &s,
        "--target",
        &t,
        "--all-databases",
        "--name",
        name,
        "--switch-command",
        "true",
    ]);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(stdout.contains("instance: 3 database(s) cut over with one switch"), "{stdout}");
}

/// A database whose target was dropped after its copy is missing on the target
/// server, but its slot still keeps the source's WAL: `status` and
/// `abort --all-databases` say so (abort fails for it, exit 1, naming
/// `--target-lost`, and removes the others'), instead of "nothing of it was
/// moved" and a success that leaves the slot behind.
#[test]
fn a_database_dropped_on_the_target_after_its_copy_is_not_called_unmoved() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    for db in ["kept", "gone \"db\""] {
        source.create_database(db);
        source.psql(db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)");
        target.create_database(db);
        let encoded = db.replace(' ', "%20").replace('"', "%22");
        let out = pgferry(&["copy", "--source", &source.url(&encoded), "--target", &target.url(&encoded)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    target.psql("postgres", "DROP DATABASE \"gone \"\"db\"\"\"");
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    let slots = "SELECT count(*) FROM pg_replication_slots";
    assert_eq!(source.psql("postgres", slots), "2");

    let status = pgferry(&["status", "--source", &s, "--target", &t, "--all-databases"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(text.contains("its replication slot keeps the source's WAL") && text.contains("--target-lost"), "{text}");
    assert!(!text.contains("nothing of it was moved"), "{text}");

    // start does not make it again empty and copy it anew: refused, nothing made.
    let out = pgferry(&["start", "--source", &s, "--target", &t, "--all-databases", "--until-caught-up"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("still holds migration main's objects there") && stderr.contains("nothing was started"),
        "{stderr}"
    );
    assert_eq!(target.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'gone \"db\"'"), "0");

    let out = pgferry(&["abort", "--source", &s, "--target", &t, "--all-databases"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("database \"gone \\\"db\\\"\"") && stderr.contains("abort --target-lost"), "{stderr}");
    let report = json(&out);
    let gone = report["databases"].as_array().unwrap().iter().find(|d| d["database"] == "gone \"db\"").cloned();
    assert!(gone.is_some_and(|d| d["error"].as_str().is_some_and(|e| e.contains("--target-lost"))), "{report:#}");
    assert_eq!(source.psql("postgres", slots), "1", "the other database's slot removed, this one's kept");

    let out = pgferry(&["abort", "--source", &s, "--target-lost", "--all-databases", "--database", "gone \"db\""]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(source.psql("postgres", slots), "0");
    let out = pgferry(&["abort", "--source", &s, "--target", &t, "--all-databases"]);
    assert!(out.status.success(), "then nothing is left: {}", String::from_utf8_lossy(&out.stderr));
}

/// `validate` and `status --all-databases` go on past a database they cannot
/// read (here: its target database allows no connections): the others are
/// reported, that one is named with its error (JSON `error`), the instance is
/// not EQUAL, and the command fails after the report (was: the first such
/// database ended the command with no report at all).
#[test]
fn validate_and_status_go_on_past_a_database_they_cannot_read() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    for db in ["fine", "closed"] {
        source.create_database(db);
        source.psql(db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)");
        target.create_database(db);
        let out = pgferry(&["copy", "--source", &source.url(db), "--target", &target.url(db)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    target.psql("postgres", "ALTER DATABASE closed ALLOW_CONNECTIONS false");
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    for command in ["validate", "status"] {
        let out = pgferry(&[command, "--source", &s, "--target", &t, "--all-databases", "--format", "json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("database \"closed\"") && stderr.contains("not currently accepting connections"),
            "{stderr}"
        );
        let report = json(&out);
        let databases = report["databases"].as_array().unwrap();
        let by_name = |name: &str| databases.iter().find(|d| d["database"] == name).cloned().unwrap();
        assert!(by_name("closed")["error"].is_string(), "{report:#}");
        assert!(by_name("fine")["report"].is_object(), "{report:#}");
    }
    let out = pgferry(&["validate", "--source", &s, "--target", &t, "--all-databases"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("instance: NOT PROVEN (3 database(s); 1 could not be validated)"), "{text}");
}

/// `cutover --all-databases` while `start --all-databases` follows every
/// database: each database's cutover takes over from its part of the running
/// start, which then ends (exit 0) once every database was handed over.
#[test]
fn an_instance_cutover_takes_over_from_a_running_instance_start() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    let names = ["shop", "reports"];
    for db in names {
        database_with_rows(&source, &target, db, 100);
    }
    let selection: Vec<&str> = names.iter().flat_map(|n| ["--database", *n]).collect();
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    let start = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args([&["start", "--source", &s, "--target", &t, "--all-databases", "--service"], &selection[..]].concat())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once change capture runs in every database, the dry run says it would take
    // over from the running start (its streams are in use), not refuse.
    let dry_run = || {
        pgferry(
            &[&["cutover", "--source", &s, "--target", &t, "--all-databases", "--dry-run"], &selection[..]].concat(),
        )
    };
    let started = std::time::Instant::now();
    loop {
        let planned = dry_run();
        if planned.status.success() {
            assert!(String::from_utf8_lossy(&planned.stdout).contains("take over the runner lock"));
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{}", String::from_utf8_lossy(&planned.stdout));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    for db in names {
        source.psql(db, "INSERT INTO t VALUES (1000, 'followed')");
    }
    let done = pgferry(
        &[&["cutover", "--source", &s, "--target", &t, "--all-databases", "--switch-command", "true"], &selection[..]]
            .concat(),
    );
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let mut start = start;
    let waited = std::time::Instant::now();
    while start.try_wait().unwrap().is_none() {
        if waited.elapsed() > std::time::Duration::from_secs(60) {
            start.kill().unwrap();
            panic!("start did not end after the cutover took over: {:?}", start.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ended = start.wait_with_output().unwrap();
    assert_eq!(ended.status.code(), Some(0), "{}", String::from_utf8_lossy(&ended.stderr));
    assert_eq!(connect_allowed(&source, &names), ["f", "f"]);
    for db in names {
        assert_eq!(target.psql(db, "SELECT count(*) FROM t WHERE id = 1000"), "1", "{db}: drained by the cutover");
    }
}

/// A source (15) and a target server (`target`) with the databases `names`,
/// each with a table `t` of `rows` rows on the source; and the arguments that
/// name the instance and those databases, after the command's name.
fn instance_of(target: PgVersion, names: &[&str], rows: u32) -> (Cluster, Cluster, Vec<String>) {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(target));
    for db in names {
        database_with_rows(&source, &target, db, rows);
    }
    let mut args = vec!["--source".into(), source.url("postgres"), "--target".into(), target.url("postgres")];
    args.push("--all-databases".into());
    args.extend(names.iter().flat_map(|n| ["--database".to_string(), n.to_string()]));
    (source, target, args)
}

/// `pgferry <command> <instance> <extra>`.
fn on_instance(command: &str, instance: &[String], extra: &[&str]) -> Output {
    let mut args = vec![command];
    args.extend(instance.iter().map(String::as_str));
    args.extend(extra);
    pgferry(&args)
}

/// Database `db` on both servers, with a table `t` of `rows` rows on the source.
fn database_with_rows(source: &Cluster, target: &Cluster, db: &str, rows: u32) {
    source.create_database(db);
    target.create_database(db);
    source.psql(
        db,
        &format!("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, {rows}) g"),
    );
}

/// Each database's own preflight asks for one free slot, which every database of
/// the plan sees: checked only there, the first databases took the last slots
/// and the others failed after they had started (16 databases, 8 free slots).
/// The plan is refused as a whole before anything is made.
#[test]
fn an_instance_that_does_not_fit_in_the_source_servers_slots_is_refused_before_anything_starts() {
    let source = Cluster::builder(PgVersion::V15).setting("max_replication_slots", "3").start();
    let target = Cluster::start(PgVersion::V15);
    let names = ["a", "b", "c", "d"];
    for db in names {
        source.create_database(db);
        source.psql(db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
        target.create_database(db);
    }
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    let selection: Vec<&str> = names.iter().flat_map(|db| ["--database", db]).collect();
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(&selection).map(|a| a.to_string()).collect() };
    let run = |args: Vec<String>| Command::new(env!("CARGO_BIN_EXE_pgferry")).args(&args).output().unwrap();

    let out = run(with(&["check", "--source", &s, "--target", &t, "--all-databases", "--format", "json"]));
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["capacity"][0]["code"], "instance_replication_slots", "{report}");

    for (command, what) in [
        (with(&["start", "--source", &s, "--target", &t, "--all-databases", "--until-caught-up"]), "start"),
        (with(&["seed", "prepare", "--source", &s, "--all-databases"]), "seed prepare"),
    ] {
        let out = run(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains("need 4 new replication slot(s)") && stderr.contains("3 free"), "{what}: {stderr}");
        assert!(stderr.contains("hint: raise max_replication_slots to at least 4"), "{what}: {stderr}");
        assert_eq!(source.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0", "{what} made no slot");
        for db in names {
            assert_eq!(
                target.psql(db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"),
                "0",
                "{what} touched no target database"
            );
        }
    }

    // Three databases fit.
    let out = pgferry(&[
        "check",
        "--source",
        &s,
        "--target",
        &t,
        "--all-databases",
        "--database",
        "a",
        "--database",
        "b",
        "--database",
        "c",
        "--format",
        "json",
    ]);
    assert_eq!(json(&out)["capacity"], serde_json::json!([]), "{}", json(&out));
}

/// A copy stopped while it read the tables resumes under a temporary slot
/// beside the one it kept: a rerun of `start --all-databases` after every
/// database made its slot needs one slot more per resumed copy. When the first
/// run fit exactly, the rerun is refused before anything starts, naming that
/// (was: counted as needing none, every resumed copy then failed for want of a
/// slot).
#[test]
fn a_rerun_whose_copies_resume_needs_a_temporary_slot_for_each_and_is_refused_without_room() {
    let source = Cluster::builder(PgVersion::V15).setting("max_replication_slots", "2").start();
    let target = Cluster::start(PgVersion::V15);
    let names = ["a", "b"];
    for db in names {
        source.create_database(db);
        source.psql(db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000)");
        target.create_database(db);
    }
    let (s, t) = (source.url("postgres"), target.url("postgres"));
    let args = ["start", "--source", &s, "--target", &t, "--all-databases", "--database", "a", "--database", "b"];
    let pause = tempfile::tempdir().unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .arg("--until-caught-up")
        .env("PGFERRY_PAUSE", format!("copy-piece-read:{}", pause.path().display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let phase = "SELECT coalesce((SELECT phase FROM pgferry.migration), 'none')";
    let slots = "SELECT count(*) FROM pg_replication_slots WHERE NOT temporary";
    let both_reading = || {
        source.psql("postgres", slots) == "2"
            && names.iter().all(|db| {
                target.psql(db, "SELECT to_regclass('pgferry.migration') IS NOT NULL") == "t"
                    && target.psql(db, phase) == "data"
            })
    };
    for _ in 0..600 {
        if both_reading() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(both_reading(), "both databases made their slot and are reading their tables");
    first.kill().unwrap();
    first.wait().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).arg("--until-caught-up").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 resumed cop(ies) each take a temporary slot"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
    assert!(stderr.contains("hint: raise max_replication_slots to at least 4"), "{stderr}");
    for db in names {
        assert_eq!(target.psql(db, phase), "data", "{db}: nothing started");
    }
}
