//! `pgferry check` against real clusters: a clean pair passes, every injected
//! problem is reported at once with its fix, and nothing leaks a password.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .env("HOME", home.path())
        .env_remove("PGFERRY_PG_BIN")
        .output()
        .expect("run pgferry")
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(output)))
}

fn codes(report: &serde_json::Value) -> Vec<String> {
    report["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_clean_pair_is_ready_on_15_to_15_and_15_to_18() {
    let source = Cluster::start(PgVersion::V15);
    source.psql("postgres", "CREATE TABLE t (id int PRIMARY KEY, v text)");
    for target_version in [PgVersion::V15, PgVersion::V18] {
        let target = Cluster::start(target_version);
        let out = pgferry(&["check", "--source", &source.url("postgres"), "--target", &target.url("postgres")]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains("READY: 0 problem(s)"), "{stdout}");
        assert!(stdout.contains("SOURCE  postgresql://postgres@127.0.0.1:"), "{stdout}");
    }
}

#[test]
fn every_problem_is_reported_at_once_with_its_fix() {
    let source = Cluster::builder(PgVersion::V15)
        .setting("wal_level", "replica")
        .setting("max_replication_slots", "0")
        .setting("max_wal_senders", "0")
        .setting("max_prepared_transactions", "5")
        .start();
    let target = Cluster::start(PgVersion::V18);
    source.psql(
        "postgres",
        "CREATE ROLE app LOGIN PASSWORD 'app-pw';
         CREATE SCHEMA sales AUTHORIZATION app;
         CREATE TABLE sales.no_key (a int, b text);
         CREATE TABLE sales.keyed (id int PRIMARY KEY, n int, doubled int GENERATED ALWAYS AS (n * 2) STORED);
         CREATE TABLE sales.nothing (id int PRIMARY KEY); ALTER TABLE sales.nothing REPLICA IDENTITY NOTHING;
         CREATE UNLOGGED TABLE sales.scratch (id int PRIMARY KEY);
         SELECT lo_create(0);
         CREATE EXTENSION adminpack;",
    );
    source.psql("postgres", "BEGIN; CREATE TABLE pt (id int); PREPARE TRANSACTION 'stuck_gid';");
    target.psql(
        "postgres",
        "CREATE DATABASE ascii_db ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    target.psql("ascii_db", "CREATE TABLE already_here (id int)");

    let out = pgferry(&[
        "check",
        "--source",
        &source.url_as("app", "app-pw", "postgres"),
        "--target",
        &target.url("ascii_db"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let report = json(&out);
    let found = codes(&report);
    for code in [
        "wal_level",
        "replication_privilege",
        "replication_slots",
        "wal_senders",
        "replica_identity",
        "prepared_transactions",
        "extensions",
        "encoding",
        "target_not_empty",
        "max_slot_wal_keep_size",
        "unlogged_tables",
        "large_objects",
        "generated_columns",
        "collation",
    ] {
        assert!(found.contains(&code.to_string()), "{code} not in {found:?}");
    }
    let finding =
        |code: &str| report["findings"].as_array().unwrap().iter().find(|f| f["code"] == code).unwrap().clone();
    let identity = finding("replica_identity");
    let objects: Vec<&str> = identity["objects"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects[0].starts_with("\"sales\".\"no_key\" ("), "{objects:?}");
    assert!(objects[1].starts_with("\"sales\".\"nothing\" ("), "{objects:?}");
    assert!(identity["fix"].as_str().unwrap().contains("REPLICA IDENTITY FULL"));
    assert!(finding("wal_level")["fix"].as_str().unwrap().contains("wal_level = logical"));
    assert_eq!(finding("extensions")["objects"][0], "adminpack");
    assert_eq!(finding("prepared_transactions")["objects"][0], "stuck_gid");
    assert_eq!(finding("generated_columns")["objects"][0], "\"sales\".\"keyed\".\"doubled\"");
    assert_eq!(report["ready"], false);

    // The table form carries the same findings, grouped by side, with fixes.
    let out = pgferry(&[
        "check",
        "--source",
        &source.url_as("app", "app-pw", "postgres"),
        "--target",
        &target.url("ascii_db"),
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    let source_part = &stdout[..stdout.find("TARGET").unwrap()];
    assert!(source_part.contains("PROBLEM [wal_level]"), "{stdout}");
    assert!(source_part.contains("fix: "), "{stdout}");
    assert!(stdout[stdout.find("TARGET").unwrap()..].contains("PROBLEM [encoding]"), "{stdout}");
    assert!(stdout.contains("NOT READY"), "{stdout}");
    source.psql("postgres", "ROLLBACK PREPARED 'stuck_gid'");
}

#[test]
fn long_transactions_are_named_with_their_pid() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let holder = runtime.block_on(async {
        let client = source.connect("postgres").await;
        client.batch_execute("BEGIN; SELECT txid_current();").await.unwrap();
        client
    });
    let pid: i32 = runtime.block_on(async { holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0) });
    let out = pgferry(&[
        "check",
        "--source",
        &source.url("postgres"),
        "--target",
        &target.url("postgres"),
        "--long-transaction-seconds",
        "0",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "a warning does not block: {:?}", text(&out));
    let report = json(&out);
    let long = report["findings"].as_array().unwrap().iter().find(|f| f["code"] == "long_transactions").unwrap();
    assert!(long["objects"][0].as_str().unwrap().starts_with(&format!("pid {pid} ")), "{long}");
}

#[test]
fn an_older_target_and_an_old_pg_dump_are_problems() {
    let source = Cluster::start(PgVersion::V18);
    let target = Cluster::start(PgVersion::V15);
    let out = pgferry(&[
        "check",
        "--source",
        &source.url("postgres"),
        "--target",
        &target.url("postgres"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let found = codes(&json(&out));
    assert!(found.contains(&"target_version".to_string()), "{found:?}");
    assert!(found.contains(&"pg_dump".to_string()), "pg_dump 15 cannot dump 18: {found:?}");
}

#[test]
fn unreachable_servers_exit_2_and_both_sides_are_named() {
    let out = pgferry(&[
        "check",
        "--source",
        "postgresql://u:secret-one@127.0.0.1:1/db?sslmode=disable&connect_timeout=5",
        "--target",
        "host=127.0.0.1 port=2 user=u password=secret-two dbname=db sslmode=disable",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("source: cannot connect to postgresql://u@127.0.0.1:1/db"), "{stderr}");
    assert!(stderr.contains("target: cannot connect to postgresql://u@127.0.0.1:2/db"), "{stderr}");
    assert!(stderr.contains("hint: check the host and port"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("secret-"), "{stderr}");
}

#[test]
fn bad_connection_strings_exit_2_with_the_reason() {
    let out = pgferry(&["check", "--source", "sslmode=bogus", "--target", "port=notaport"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--source: invalid sslmode \"bogus\""), "{stderr}");
    assert!(stderr.contains("--target: invalid port"), "{stderr}");
}

#[test]
fn a_password_in_a_url_appears_in_no_output_or_log() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    let password = "Sup3r-S3cret-pw";
    source.psql("postgres", &format!("CREATE ROLE mover LOGIN SUPERUSER PASSWORD '{password}'"));
    let good = source.url_as("mover", password, "postgres");
    let wrong = source.url_as("mover", "Wr0ng-S3cret-pw", "postgres");
    for (source_url, expected) in [(&good, 0), (&wrong, 2)] {
        for format in ["table", "json"] {
            let out = pgferry(&[
                "-vv",
                "check",
                "--source",
                source_url,
                "--target",
                &target.url("postgres"),
                "--format",
                format,
            ]);
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(expected), "{stdout}{stderr}");
            let all = format!("{stdout}{stderr}");
            assert!(!all.contains("S3cret"), "password leaked:\n{all}");
            assert!(all.contains("postgresql://mover@127.0.0.1"), "{all}");
        }
    }
    let out = pgferry(&["check", "--source", &wrong, "--target", &target.url("postgres")]);
    assert!(text(&out).1.contains("hint: check the user name and password"), "{:?}", text(&out));
}

#[test]
fn a_password_in_a_url_appears_in_no_output_of_copy_follow_status_and_validate() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    let password = "Cl0ud-S3cret-pw";
    for c in [&source, &target] {
        c.psql("postgres", &format!("CREATE ROLE mover LOGIN SUPERUSER REPLICATION PASSWORD '{password}'"));
    }
    source.psql("postgres", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)");
    let (s, t) = (source.url_as("mover", password, "postgres"), target.url_as("mover", password, "postgres"));
    for args in [
        vec!["-vv", "copy", "--source", &s, "--target", &t],
        vec!["-vv", "follow", "--source", &s, "--target", &t, "--until-caught-up"],
        vec!["-vv", "status", "--source", &s, "--target", &t, "--format", "json"],
        vec!["-vv", "validate", "--source", &s, "--target", &t],
    ] {
        let out = pgferry(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
        assert!(!format!("{stdout}{stderr}").contains("S3cret"), "password leaked by {}: {stdout}{stderr}", args[1]);
    }
}

/// A server that accepts TCP and never answers (a listener nobody reads from):
/// each side is given up at its connect timeout, the URL's or the default 10 s,
/// with a clear error, instead of hanging for ever.
#[test]
fn a_silent_server_is_given_up_at_the_connect_timeout() {
    let silent =
        [std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap()];
    let [source_port, target_port] = silent.each_ref().map(|l| l.local_addr().unwrap().port());
    let started = std::time::Instant::now();
    let out = pgferry(&[
        "check",
        "--source",
        &format!("postgresql://u@127.0.0.1:{source_port}/db?sslmode=disable&connect_timeout=3"),
        "--target",
        &format!("postgresql://u@127.0.0.1:{target_port}/db?sslmode=disable"),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "gave up only after {:?}", started.elapsed());
    assert!(
        stderr.contains(&format!("source: cannot connect to postgresql://u@127.0.0.1:{source_port}/db")),
        "{stderr}"
    );
    assert!(stderr.contains("no answer within 3 s (connect_timeout)"), "{stderr}");
    assert!(stderr.contains("no answer within 10 s (connect_timeout)"), "the default: {stderr}");
    assert!(stderr.contains("hint: check the host and port"), "{stderr}");
}

/// The source given as its own target, spelled another way (a Unix socket,
/// `localhost`): a problem of its own in `check`.
#[test]
fn the_source_as_its_own_target_is_a_problem() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql("app", "CREATE TABLE t (id int PRIMARY KEY)");
    let by_socket = format!("host={} port={} user=postgres dbname=app", source.socket_dir().display(), source.port());
    let by_localhost = format!("postgresql://postgres@localhost:{}/app?sslmode=disable", source.port());
    for target in [&source.url("app"), &by_socket, &by_localhost] {
        let out = pgferry(&["check", "--source", &source.url("app"), "--target", target, "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{target}: {:?}", text(&out));
        let report = json(&out);
        let same = report["findings"].as_array().unwrap().iter().find(|f| f["code"] == "same_database");
        let same = same.unwrap_or_else(|| panic!("{target}: {report}"));
        assert!(same["fix"].as_str().unwrap().contains("--target"), "{same}");
    }
    // Another database of the same server is another database.
    source.create_database("other");
    let out = pgferry(&["check", "--source", &source.url("app"), "--target", &source.url("other"), "--format", "json"]);
    assert!(!codes(&json(&out)).contains(&"same_database".to_string()), "{:?}", text(&out));
}

/// A role with REPLICATION but no CREATE on either database and owning no
/// table: `check` names every privilege `start` would miss, each with its fix.
#[test]
fn a_replication_only_role_is_told_every_missing_privilege() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE ROLE app; CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int PRIMARY KEY);
         ALTER TABLE t OWNER TO app; ALTER TABLE u OWNER TO app",
    );
    for c in [&source, &target] {
        c.psql("postgres", "CREATE ROLE rep LOGIN REPLICATION PASSWORD 'rep-pw'");
    }
    let (s, t) = (source.url_as("rep", "rep-pw", "app"), target.url_as("rep", "rep-pw", "app"));
    let out = pgferry(&["check", "--source", &s, "--target", &t, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let report = json(&out);
    let findings = report["findings"].as_array().unwrap();
    let of = |code: &str, side: &str| findings.iter().find(|f| f["code"] == code && f["side"] == side).cloned();
    let source_create = of("create_privilege", "source").unwrap_or_else(|| panic!("{report}"));
    assert!(source_create["fix"].as_str().unwrap().contains("GRANT CREATE ON DATABASE app TO rep"), "{source_create}");
    let target_create = of("create_privilege", "target").unwrap_or_else(|| panic!("{report}"));
    assert!(target_create["fix"].as_str().unwrap().contains("GRANT CREATE ON DATABASE app TO rep"), "{target_create}");
    let ownership = of("table_ownership", "source").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        ownership["objects"],
        serde_json::json!(["\"public\".\"t\" (owner app)", "\"public\".\"u\" (owner app)"])
    );

    // Granted what the fixes say, the same role is ready.
    source.psql("app", "GRANT CREATE ON DATABASE app TO rep; GRANT app TO rep");
    target.psql("app", "GRANT CREATE ON DATABASE app TO rep");
    let out = pgferry(&["check", "--source", &s, "--target", &t, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

/// Roles are global: a role that owns a table or holds a privilege on the source
/// and is missing on the target makes the copy restore no owner and no privilege
/// at all. `check` names each such role (a warning: still ready), and no longer
/// once it exists on the target.
#[test]
fn roles_missing_on_the_target_are_named_by_check() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    source.psql(
        "postgres",
        "CREATE ROLE owner_role; CREATE ROLE reader; CREATE ROLE unrelated;
         CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO owner_role; GRANT SELECT ON t TO reader;",
    );
    let args = ["check", "--source", &source.url("postgres"), "--target", &target.url("postgres"), "--format", "json"];
    let report = json(&pgferry(&args));
    let missing = report["findings"].as_array().unwrap().iter().find(|f| f["code"] == "missing_roles").cloned();
    let missing = missing.unwrap_or_else(|| panic!("{report}"));
    assert_eq!(missing["objects"], serde_json::json!(["owner_role", "reader"]), "{report}");
    assert_eq!(missing["severity"], "warning");
    target.psql("postgres", "CREATE ROLE owner_role; CREATE ROLE reader");
    let report = json(&pgferry(&args));
    assert!(!codes(&report).contains(&"missing_roles".to_string()), "{report}");
}
