//! A lost slot is a state of its own: `status`, `follow` and `validate` each exit
//! 5 with the remedy (abort, then copy or seed again) when the migration's slot
//! was invalidated by the source (`max_slot_wal_keep_size` exceeded, made to
//! happen for real: WAL written and a checkpoint) or dropped; `status` says
//! before that, while the slot is only about to be lost, with exit 1. Also the
//! service's log lines: `--log-format json` writes one JSON object per line, and
//! text lines carry no terminal escapes when stderr is not a terminal.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "pgferry failed ({:?}):\n{}\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A migration copied and caught up, its source keeping at most 32 MB of WAL for the slot.
fn copied_migration() -> (Cluster, Cluster) {
    let source = Cluster::builder(PgVersion::V15).setting("max_slot_wal_keep_size", "32MB").start();
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g",
    );
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    let copy = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &s, "--target", &t])
        .env("PGFERRY_PG_BIN", &bin)
        .output()
        .expect("run pgferry copy");
    assert_ok(&copy);
    assert_ok(&pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"]));
    (source, target)
}

fn wal_status(source: &Cluster) -> String {
    source.psql(
        "app",
        "SELECT coalesce(wal_status, 'none') FROM pg_replication_slots WHERE slot_name LIKE 'pgferry\\_main\\_\\_%'",
    )
}

/// Writes WAL nobody consumes (change capture is stopped) past the slot's limit:
/// the slot is `unreserved` until the next checkpoint removes what it held.
fn outgrow_the_limit(source: &Cluster) {
    for round in 0..6 {
        source.psql("app", &format!("UPDATE t SET v = 'round {round}' WHERE id <= 50"));
        source.psql("app", "SELECT pg_switch_wal()");
    }
    assert_eq!(wal_status(source), "unreserved", "the slot is past its limit, waiting for a checkpoint");
}

fn lose_the_slot(source: &Cluster) {
    outgrow_the_limit(source);
    source.psql("app", "CHECKPOINT");
    assert_eq!(wal_status(source), "lost", "the checkpoint invalidated the slot");
}

fn drop_the_slot(source: &Cluster) {
    source.psql("app", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry\\_main\\_\\_%'");
    assert_eq!(wal_status(source), "", "dropped");
}

fn assert_slot_lost(out: &Output, why: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "exit 5 for a lost slot:\n{}\n{stderr}", text(&out.stdout));
    assert!(stderr.contains(why), "the error says why ({why}):\n{stderr}");
    assert!(stderr.contains("hint: ") && stderr.contains("pgferry abort"), "the remedy:\n{stderr}");
    assert!(stderr.contains("seed again"), "the remedy for a seeded migration:\n{stderr}");
    assert!(
        !stderr.contains("rerun to resume") && !stderr.contains("start `pgferry follow`"),
        "misleading advice:\n{stderr}"
    );
}

#[test]
fn status_and_check_warn_while_the_slot_is_about_to_be_lost_then_status_exits_5_with_the_remedy() {
    let (source, target) = copied_migration();
    let (s, t) = (source.url("app"), target.url("app"));
    let status = |format: &str| pgferry(&["status", "--source", &s, "--target", &t, "--format", format]);
    let check = || text(&pgferry(&["check", "--source", &s, "--target", &t]).stdout);
    assert!(!check().contains("[slot_"), "{}", check());

    let healthy = status("json");
    assert_ok(&healthy);
    let json: serde_json::Value = serde_json::from_slice(&healthy.stdout).unwrap();
    assert_eq!(json["slot_verdict"]["state"], "healthy", "{json:#}");

    outgrow_the_limit(&source);
    let doomed = status("table");
    let stdout = text(&doomed.stdout);
    assert_eq!(doomed.status.code(), Some(1), "about to be lost is a problem found:\n{stdout}");
    assert!(stdout.contains("WARNING: the slot pgferry_main__") && stdout.contains(" is about to be lost"), "{stdout}");
    assert!(stdout.contains("start change capture now"), "{stdout}");
    let checked = check();
    assert!(
        checked.contains("warning [slot_at_risk] the slot pgferry_main__") && checked.contains(" is about to be lost"),
        "{checked}"
    );

    source.psql("app", "CHECKPOINT");
    let lost = status("json");
    assert_eq!(lost.status.code(), Some(5), "{}", text(&lost.stderr));
    let json: serde_json::Value = serde_json::from_slice(&lost.stdout).unwrap();
    assert_eq!(json["slot_verdict"], serde_json::json!({"state": "lost", "cause": "invalidated"}), "{json:#}");
    assert!(json["slot_remedy"].as_str().unwrap().contains("pgferry abort"), "{json:#}");
    assert_eq!(json["cutover"]["decision"], "no_go", "{json:#}");
    let table = status("table");
    assert_eq!(table.status.code(), Some(5));
    let stdout = text(&table.stdout);
    assert!(stdout.contains("headroom none (lost)") && !stdout.contains("unlimited"), "{stdout}");
    assert!(stdout.contains("was invalidated by the source") && stdout.contains("pgferry abort"), "{stdout}");
    let checked = check();
    assert!(checked.contains("warning [slot_lost] the migration's replication slot pgferry_main__"), "{checked}");

    drop_the_slot(&source);
    let dropped = status("json");
    assert_eq!(dropped.status.code(), Some(5));
    let json: serde_json::Value = serde_json::from_slice(&dropped.stdout).unwrap();
    assert_eq!(json["slot_verdict"], serde_json::json!({"state": "lost", "cause": "dropped"}), "{json:#}");
}

#[test]
fn follow_exits_5_with_the_remedy_when_the_slot_is_lost_or_dropped() {
    let (source, target) = copied_migration();
    let (s, t) = (source.url("app"), target.url("app"));
    lose_the_slot(&source);
    let follow = |extra: &[&str]| {
        let mut args = vec!["follow", "--source", &s, "--target", &t, "--until-caught-up"];
        args.extend_from_slice(extra);
        pgferry(&args)
    };
    assert_slot_lost(&follow(&[]), "was invalidated by the source (wal_status lost)");
    // The same error as a service logs it: one JSON object.
    let json = follow(&["--log-format", "json"]);
    assert_eq!(json.status.code(), Some(5));
    let lines: Vec<serde_json::Value> = text(&json.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("the error is logged");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert!(last["message"].as_str().unwrap().contains("invalidated"), "{last}");
    assert!(last["hint"].as_str().unwrap().contains("pgferry abort"), "{last}");

    drop_the_slot(&source);
    assert_slot_lost(&follow(&[]), " no longer exists on the source");
}

#[test]
fn validate_exits_5_saying_its_verdict_cannot_be_trusted_when_the_slot_is_lost() {
    let (source, target) = copied_migration();
    let (s, t) = (source.url("app"), target.url("app"));
    lose_the_slot(&source);
    let validate = |extra: &[&str]| {
        let mut args = vec!["validate", "--source", &s, "--target", &t];
        args.extend_from_slice(extra);
        pgferry(&args)
    };
    for extra in [&[][..], &["--changed-only"][..]] {
        let out = validate(extra);
        assert_slot_lost(&out, "cannot be trusted");
        assert!(text(&out.stdout).is_empty(), "no verdict printed:\n{}", text(&out.stdout));
    }
    drop_the_slot(&source);
    assert_slot_lost(&validate(&[]), "no longer exists");
}

#[test]
fn service_log_lines_are_json_objects_or_plain_text_without_escapes() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g",
    );
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    let start = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["start", "--source", &s, "--target", &t, "--until-caught-up", "--service", "--log-format", "json", "-v"])
        .env("PGFERRY_PG_BIN", &bin)
        .output()
        .expect("run pgferry start");
    assert_ok(&start);
    let stderr = text(&start.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}\n{stderr}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string() && l["message"].is_string()), "{stderr}");
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.starts_with("copying 1 table(s)")), "the copy's events: {messages:?}");
    let started = lines.iter().find(|l| l["message"] == "following the source").expect("change capture's start");
    assert!(started["from"].is_string(), "the event's fields are the object's: {started}");

    source.psql("app", "UPDATE t SET v = 'again' WHERE id <= 10");
    let follow = pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up", "-vv"]);
    assert_ok(&follow);
    let stderr = text(&follow.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("pgferry: following the source from=")), "{stderr}");
    assert!(stderr.lines().count() > 1, "debug lines too: {stderr}");
    assert!(!follow.stderr.contains(&0x1b), "no terminal escapes when stderr is not a terminal:\n{stderr}");
}
