//! `pgferry start` against real clusters: killed at every step boundary (named
//! failpoints) while the application writes, each rerun continues, and the last
//! one ends with a target equal to the source; one runner at a time; SIGTERM
//! stops change capture cleanly with everything applied kept.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str], failpoint: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgferry"));
    command.args(args);
    if let Some(failpoint) = failpoint {
        command.env("PGFERRY_FAILPOINT", failpoint);
    }
    command.output().expect("run pgferry")
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const SCHEMA: &str = "
    CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, note text);
    CREATE TABLE lines (order_id bigint REFERENCES orders, n int, PRIMARY KEY (order_id, n));
    CREATE TABLE history (at timestamptz DEFAULT now(), what text);
    INSERT INTO orders (customer, note) SELECT g % 100, repeat('n', g % 500) FROM generate_series(1, 3000) g;
    INSERT INTO lines SELECT id, 1 FROM orders;
    INSERT INTO history (what) SELECT 'h' || g FROM generate_series(1, 100) g;";

const WRITE: &str = "
    WITH o AS (INSERT INTO orders (customer, note) VALUES (7, 'live') RETURNING id) INSERT INTO lines SELECT id, 1 FROM o;
    UPDATE orders SET note = note || '+' WHERE id = (SELECT max(id) - 5 FROM orders);
    INSERT INTO history (what) VALUES ('w');";

fn pair() -> (Cluster, Cluster) {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql("app", SCHEMA);
    let target = Cluster::start(PgVersion::V18);
    target.create_database("app");
    (source, target)
}

fn start_args<'a>(s: &'a str, t: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["start", "--source", s, "--target", t, "--name", "m", "--keyless-tables-are-insert-only"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn start_killed_at_every_step_boundary_completes_on_rerun() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    for failpoint in [
        "start-after-lock:1",
        "start-after-check:1",
        "copy-after-created:1",
        "start-after-data:1",
        "apply-after-commit:1",
    ] {
        source.psql("app", WRITE);
        let out = pgferry(&start_args(&s, &t, &["--until-caught-up"]), Some(failpoint));
        assert_eq!(out.status.code(), Some(137), "{failpoint}: {}", text(&out));
        source.psql("app", WRITE);
    }
    let out = pgferry(&start_args(&s, &t, &["--until-caught-up"]), None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("applied up to"), "{}", text(&out));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

#[test]
fn the_preflight_refuses_with_every_problem_and_changes_nothing() {
    let (source, target) = pair();
    target.psql("app", "CREATE TABLE squatter (id int)");
    let out = pgferry(&["start", "--source", &source.url("app"), "--target", &target.url("app"), "--name", "m"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("[replica_identity]") && report.contains("history"), "{report}");
    assert!(report.contains("[target_not_empty]"), "{report}");
    assert_eq!(source.psql("app", "SELECT count(*) FROM pg_replication_slots"), "0", "nothing created on the source");
    assert_eq!(source.psql("app", "SELECT count(*) FROM pg_publication"), "0", "nothing created on the source");
    assert_eq!(
        target.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"),
        "0",
        "nothing created on the target"
    );
}

#[tokio::test]
async fn one_runner_at_a_time() {
    let (source, target) = pair();
    let holder = target.connect("app").await;
    holder.execute("SELECT pg_advisory_lock(hashtext('pgferry'), hashtext('m'))", &[]).await.unwrap();
    let out = pgferry(&start_args(&source.url("app"), &target.url("app"), &["--until-caught-up"]), None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("another pgferry process is running migration m"), "{}", text(&out));
    assert!(text(&out).contains("it holds the runner lock: backend pid"), "the holder is named: {}", text(&out));
    drop(holder);
}

#[test]
fn sigterm_stops_change_capture_cleanly() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    let child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(start_args(&s, &t, &["--service"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgferry");
    let deadline = Instant::now() + Duration::from_secs(60);
    while target.try_psql("app", "SELECT applied_lsn FROM pgferry.apply_progress").map_or(true, |r| r.is_empty()) {
        assert!(Instant::now() < deadline, "change capture did not start");
        source.psql("app", WRITE);
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..20 {
        source.psql("app", WRITE);
    }
    // Stop only once change capture has applied those writes: SIGTERM then ends a running stream.
    let count = "SELECT count(*) FROM orders";
    while target.psql("app", count) != source.psql("app", count) {
        assert!(Instant::now() < deadline, "change capture did not apply the writes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("stopping after the current transaction"), "{}", text(&out));
    assert!(text(&out).contains("applied up to"), "{}", text(&out));
    // Whatever was applied stays; a rerun catches up the rest.
    let out = pgferry(&start_args(&s, &t, &["--until-caught-up"]), None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

#[test]
fn a_seeded_start_killed_after_removing_inherited_state_completes_on_rerun() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql("app", SCHEMA);
    let prepared = pgferry(&["seed", "prepare", "--source", &source.url("app"), "--name", "m"], None);
    assert!(prepared.status.success(), "{}", text(&prepared));
    let copy = source.physical_copy();
    source.psql("app", WRITE);
    let (s, t, log) = (source.url("app"), copy.url("app"), copy.log_path().display().to_string());
    let seeded =
        |failpoint| pgferry(&start_args(&s, &t, &["--seeded", "--seed-log", &log, "--until-caught-up"]), failpoint);
    assert_eq!(seeded(Some("seed-after-inherited:1")).status.code(), Some(137));
    source.psql("app", WRITE);
    let out = seeded(None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(copy.fingerprints("app"), source.fingerprints("app"));
}
