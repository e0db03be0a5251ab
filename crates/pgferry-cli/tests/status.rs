//! `pgferry status` reads where a migration stands, from any terminal.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn status(source: &Cluster, target: &Cluster) -> serde_json::Value {
    let (s, t) = (source.url("app"), target.url("app"));
    let out = pgferry(&["status", "--source", &s, "--target", &t, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn status_follows_the_migration_from_nothing_to_streaming_and_warns_when_the_slot_is_at_risk() {
    let source = Cluster::builder(PgVersion::V15).setting("max_slot_wal_keep_size", "64MB").start();
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g",
    );
    let before = status(&source, &target);
    assert_eq!(before["phase"], serde_json::Value::Null);
    assert_eq!(before["cutover"]["decision"], "no_go");

    let (s, t) = (source.url("app"), target.url("app"));
    assert!(pgferry(&["copy", "--source", &s, "--target", &t]).status.success());
    source.psql("app", "INSERT INTO t SELECT g, 'new' FROM generate_series(101, 150) g; UPDATE t SET v = 'x' WHERE id <= 10; DELETE FROM t WHERE id > 140");
    assert!(pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"]).status.success());
    let now = status(&source, &target);
    assert_eq!(now["phase"], "copied");
    assert_eq!(now["tables"][0]["table"], "public.t");
    assert_eq!(
        (
            now["tables"][0]["inserts"].as_i64(),
            now["tables"][0]["updates"].as_i64(),
            now["tables"][0]["deletes"].as_i64()
        ),
        (Some(50), Some(10), Some(10))
    );
    assert_eq!(now["cutover"]["decision"], "go", "{now:#}");
    assert_eq!(now["slot"]["active"], false);
    assert!(now["warnings"].as_array().unwrap().is_empty(), "{now:#}");

    // About 60 MB of WAL that nobody consumes: the slot nears its limit.
    source.psql("app", "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 250000) g");
    let risky = status(&source, &target);
    let warning = risky["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("is at risk"), "{risky:#}");
    let text = String::from_utf8_lossy(&pgferry(&["status", "--source", &s, "--target", &t]).stdout).into_owned();
    let slot = target.psql("app", "SELECT slot_name FROM pgferry.migration");
    assert!(text.contains(&format!("WARNING: the slot {slot} is at risk")), "{text}");

    // A reader that leaves at once (`pgferry status | head -0`): a quiet exit, no panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["status", "--source", &s, "--target", &t])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pgferry");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
