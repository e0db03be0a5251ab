//! The fence ends every session on the source database, replication connections
//! to it included: a `replication=database` connection runs SQL like any other,
//! so one opened before the cutover must not write on the old source after it.
//! On real clusters.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_replication_connection_opened_before_the_fence_cannot_write_after_the_cutover() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    // Roles are the server's: the operator makes them on the target (the cutover's gate compares them).
    target.psql("app", "CREATE ROLE app LOGIN REPLICATION");
    source.psql(
        "app",
        "CREATE ROLE app LOGIN REPLICATION;
         CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
         GRANT ALL ON orders, orders_id_seq TO app;
         INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 100) g;",
    );
    let (src, dst) = (source.url("app"), target.url("app"));
    let pair = |command: &'static str| vec![command, "--source", &src, "--target", &dst];
    ok(pgferry(&pair("copy")));
    ok(pgferry(&[pair("follow"), vec!["--until-caught-up"]].concat()));

    let conninfo = format!(
        "host={} port={} user=app dbname=app replication=database",
        source.socket_dir().display(),
        source.port()
    );
    let mut session = source
        .version()
        .client_command("psql")
        .args(["-X", "-A", "-t", &conninfo])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql");
    let mut input = session.stdin.take().unwrap();
    writeln!(input, "INSERT INTO orders (note) VALUES ('replication session, before');").unwrap();
    let started = std::time::Instant::now();
    while source.psql("app", "SELECT count(*) FROM orders WHERE note = 'replication session, before'") != "1" {
        assert!(started.elapsed() < Duration::from_secs(20), "the replication session never wrote");
        std::thread::sleep(Duration::from_millis(50));
    }

    let report = ok(pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat()));
    assert!(report.contains("1 session(s) ended"), "{report}");
    writeln!(input, "INSERT INTO orders (note) VALUES ('replication session, after the cutover');").unwrap();
    drop(input);
    let out = session.wait_with_output().unwrap();
    assert_eq!(
        source.psql("app", "SELECT count(*) FROM orders WHERE note LIKE 'replication session, after%'"),
        "0",
        "the old source took a write after the cutover; psql said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(target.psql("app", "SELECT count(*) FROM orders WHERE note = 'replication session, before'"), "1");
}

/// A superuser passes the fence (#16 hostile pass): a row it writes on the fenced
/// source after the drain would stay there alone once the application switched.
/// The cutover proves nothing was written since the drain, right before the
/// switch, and rolls back otherwise, naming the superuser; the rerun carries it.
#[test]
fn a_write_on_the_fenced_source_after_the_drain_rolls_the_cutover_back() {
    let (source, target) = copied_with_a_superuser();
    let (src, dst) = (source.url("app"), target.url("app"));
    let pair = |command: &'static str| vec![command, "--source", &src, "--target", &dst];
    let out = cutover_with_superuser_sql(
        &source,
        &pair("cutover"),
        "INSERT INTO orders (note) VALUES ('by the superuser, fenced')",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("written on the fenced source after the drain")
            && stderr.contains("dba")
            && stderr.contains("rolled back"),
        "{stderr}"
    );
    assert_eq!(source.psql("app", "SELECT has_database_privilege('public', 'app', 'CONNECT')"), "t", "unfenced");
    let stdout = ok(pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat()));
    assert!(stdout.contains("cut over"), "{stdout}");
    let row = "SELECT count(*) FROM orders WHERE note = 'by the superuser, fenced'";
    assert_eq!(target.psql("app", row), "1", "the superuser's row reached the target");
}

/// A logical message inside the fence: one with DDL capture's prefix (a schema
/// change the target would miss) rolls the cutover back; another tool's, which
/// change capture never carries, is said and does not.
#[test]
fn only_this_migrations_captured_ddl_among_logical_messages_rolls_the_cutover_back() {
    for (sql, rolled_back) in [
        ("SELECT pg_logical_emit_message(true, 'pgferry_ddl__main', 'ALTER TABLE orders ADD COLUMN x int')", true),
        ("SELECT pg_logical_emit_message(true, 'heartbeat_tool', 'beat')", false),
    ] {
        let (source, target) = copied_with_a_superuser();
        let (src, dst) = (source.url("app"), target.url("app"));
        let out = cutover_with_superuser_sql(&source, &["cutover", "--source", &src, "--target", &dst], sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match rolled_back {
            true => assert!(
                !out.status.success()
                    && stderr.contains("0 row change(s) and 1 captured DDL command(s)")
                    && stderr.contains("rolled back"),
                "{stderr}"
            ),
            false => assert!(
                out.status.success() && stderr.contains("1 logical message(s) of another tool (prefix heartbeat_tool)"),
                "{stderr}"
            ),
        }
    }
}

/// A prepared transaction outlives the fence's ending of its session (#18
/// hostile pass): the go/no-go refuses one open before the fence, but one
/// prepared after it (here by a superuser, right before the proof of quiet;
/// for an application using two-phase commit, in the moment between the gate
/// and the fence) holds writes that could commit on the old source after the
/// switch. The cutover rolls back naming it; once committed, the rerun carries it.
#[test]
fn a_transaction_prepared_inside_the_fence_rolls_the_cutover_back() {
    let source = Cluster::builder(PgVersion::V15).setting("max_prepared_transactions", "4").start();
    let (source, target) = copied_with_a_superuser_on(source);
    let (src, dst) = (source.url("app"), target.url("app"));
    let pair = |command: &'static str| vec![command, "--source", &src, "--target", &dst];
    let prepare = "BEGIN; INSERT INTO orders (note) VALUES ('prepared inside the fence'); PREPARE TRANSACTION 'late'";
    let out = cutover_with_superuser_sql(&source, &pair("cutover"), prepare);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("prepared transaction(s) are open on the fenced source (late)")
            && stderr.contains("rolled back"),
        "{stderr}"
    );
    assert_eq!(source.psql("app", "SELECT has_database_privilege('public', 'app', 'CONNECT')"), "t", "unfenced");
    source.psql("app", "COMMIT PREPARED 'late'");
    let stdout = ok(pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat()));
    assert!(stdout.contains("cut over"), "{stdout}");
    let row = "SELECT count(*) FROM orders WHERE note = 'prepared inside the fence'";
    assert_eq!(target.psql("app", row), "1", "the prepared transaction's row reached the target once");
}

/// Copied and caught up, with a login superuser `dba` on the source.
fn copied_with_a_superuser() -> (Cluster, Cluster) {
    copied_with_a_superuser_on(Cluster::start(PgVersion::V15))
}

/// The same, from the source cluster given.
fn copied_with_a_superuser_on(source: Cluster) -> (Cluster, Cluster) {
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    // Roles are the server's: the operator makes them on the target (the cutover's gate compares them).
    target.psql("app", "CREATE ROLE dba LOGIN SUPERUSER");
    source.psql(
        "app",
        "CREATE ROLE dba LOGIN SUPERUSER;
         CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
         INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 100) g;",
    );
    let (src, dst) = (source.url("app"), target.url("app"));
    ok(pgferry(&["copy", "--source", &src, "--target", &dst]));
    ok(pgferry(&["follow", "--source", &src, "--target", &dst, "--until-caught-up"]));
    (source, target)
}

/// Runs the cutover `args`, pausing it right before its last check that
/// nothing was written since the drain, while the superuser `dba` (who passes
/// the fence and turns read-only off) runs `sql` on the source.
fn cutover_with_superuser_sql(source: &Cluster, args: &[&str], sql: &str) -> Output {
    let pause = tempfile::tempdir().unwrap();
    let mut cutover = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args([args, &["--switch-command", "true"]].concat())
        .env("PGFERRY_PAUSE", format!("cutover-before-quiet-check:{}", pause.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reached = pause.path().join("cutover-before-quiet-check.reached");
    let started = std::time::Instant::now();
    while !reached.exists() {
        if cutover.try_wait().unwrap().is_some() {
            let out = cutover.wait_with_output().unwrap();
            panic!("the cutover ended before its last check: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the cutover reached its last check");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dba = format!("host={} port={} user=dba dbname=app", source.socket_dir().display(), source.port());
    let wrote = source
        .version()
        .client_command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &dba, "-c", "SET default_transaction_read_only = off", "-c", sql])
        .output()
        .unwrap();
    assert!(wrote.status.success(), "{}", String::from_utf8_lossy(&wrote.stderr));
    std::fs::write(pause.path().join("cutover-before-quiet-check.go"), b"").unwrap();
    cutover.wait_with_output().unwrap()
}

/// A superuser's transaction that wrote before the drain's end and commits
/// after it (#18: the drain runs across the fence and stops at a mark written
/// once fenced): its changes reach no drain, and its commit is after the
/// drained position, so the proof of quiet sees it and the cutover rolls back;
/// the rerun carries its row.
#[test]
fn a_superuser_transaction_open_across_the_drains_end_rolls_the_cutover_back() {
    use std::io::Write;
    let (source, target) = copied_with_a_superuser();
    let (src, dst) = (source.url("app"), target.url("app"));
    let pair = |command: &'static str| vec![command, "--source", &src, "--target", &dst];
    let pause = tempfile::tempdir().unwrap();
    let cutover = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args([&pair("cutover")[..], &["--switch-command", "true"]].concat())
        .env("PGFERRY_PAUSE", format!("cutover-before-mark,cutover-before-quiet-check:{}", pause.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reached = |name: &str| {
        let path = pause.path().join(format!("{name}.reached"));
        let started = std::time::Instant::now();
        while !path.exists() {
            assert!(started.elapsed() < Duration::from_secs(60), "the cutover reached {name}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    reached("cutover-before-mark");
    let dba = format!("host={} port={} user=dba dbname=app", source.socket_dir().display(), source.port());
    let mut session = source
        .version()
        .client_command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &dba])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = session.stdin.take().unwrap();
    writeln!(
        input,
        "SET default_transaction_read_only = off; BEGIN; INSERT INTO orders (note) VALUES ('open across the drain');"
    )
    .unwrap();
    let written = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'dba' AND backend_xid IS NOT NULL AND state = 'idle in transaction'";
    let started = std::time::Instant::now();
    while source.psql("postgres", written) != "1" {
        assert!(started.elapsed() < Duration::from_secs(20), "the superuser's transaction wrote");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(pause.path().join("cutover-before-mark.go"), b"").unwrap();
    reached("cutover-before-quiet-check");
    writeln!(input, "COMMIT;").unwrap();
    drop(input);
    let committed = session.wait_with_output().unwrap();
    assert!(committed.status.success(), "{}", String::from_utf8_lossy(&committed.stderr));
    std::fs::write(pause.path().join("cutover-before-quiet-check.go"), b"").unwrap();
    let out = cutover.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains(
            "1 row change(s) and 0 captured DDL command(s) were written on the fenced source after the drain"
        ) && stderr.contains("rolled back"),
        "{stderr}"
    );
    assert_eq!(source.psql("app", "SELECT has_database_privilege('public', 'app', 'CONNECT')"), "t", "unfenced");
    let stdout = ok(pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat()));
    assert!(stdout.contains("cut over"), "{stdout}");
    assert_eq!(target.psql("app", "SELECT count(*) FROM orders WHERE note = 'open across the drain'"), "1");
}
