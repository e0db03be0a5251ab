//! `pgferry validate` against real clusters: equal data gives no false positive
//! across 15 -> 18, each kind of planted difference is found with its key, and
//! what a comparison cannot prove (rows that keep changing, lag) is NOT PROVEN
//! (exit 4), never EQUAL and never DIFFERENT; `rehearse` and the cutover's check
//! judge the same state alike.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion, Writer};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn load(c: &Cluster) {
    c.create_database("app");
    c.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, n numeric, ts timestamptz, arr int[], j jsonb, b bytea, s text, big text);
         INSERT INTO t SELECT g, CASE WHEN g = 26 THEN 1.5 ELSE g / 7.0 END,
                '2024-01-01'::timestamptz + g * interval '1 hour', ARRAY[g, g + 1], jsonb_build_object('g', g),
                decode(md5(g::text), 'hex'), CASE WHEN g = 25 THEN NULL ELSE 'secret-value-' || g END,
                CASE WHEN g % 100 = 0 THEN (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 300) i) END
         FROM generate_series(1, 2000) g;
         CREATE TABLE nokey (a int, b text);
         INSERT INTO nokey SELECT g % 50, 'b' || (g % 50) FROM generate_series(1, 100) g;
         CREATE TABLE \"Odd \"\"name\" (k text PRIMARY KEY, v int);
         INSERT INTO \"Odd \"\"name\" SELECT 'key ' || g, g FROM generate_series(1, 300) g;",
    );
}

fn copy(source: &Cluster, target: &Cluster) {
    let out = pgferry(&["copy", "--source", &source.url("app"), "--target", &target.url("app")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `pgferry follow` in the background, once it streams from the slot (a
/// validation started earlier would find change capture not running).
fn spawn_follow(source: &Cluster, target: &Cluster) -> std::process::Child {
    let follow = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &source.url("app"), "--target", &target.url("app")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while source.psql("app", "SELECT count(*) FROM pg_replication_slots WHERE active") == "0" {
        assert!(std::time::Instant::now() < deadline, "follow did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    follow
}

fn validate(source: &Cluster, target: &Cluster, extra: &[&str]) -> Output {
    let (s, t) = (source.url("app"), target.url("app"));
    let mut args = vec!["validate", "--source", &s, "--target", &t, "--chunk-rows", "500", "--max-differences", "50"];
    args.extend_from_slice(extra);
    pgferry(&args)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn equal_data_is_equal_on_15_to_15_and_15_to_18() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    for version in [PgVersion::V15, PgVersion::V18] {
        let target = Cluster::start(version);
        target.create_database("app");
        copy(&source, &target);
        let out = validate(&source, &target, &["--format", "json"]);
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "{report:#}");
        let t = report["tables"].as_array().unwrap().iter().find(|t| t["table"] == "\"public\".\"t\"").unwrap();
        assert_eq!(t["chunks"], 4, "2000 rows in chunks of 500");
        assert_eq!(t["source_rows"], 2000);
        let text = String::from_utf8_lossy(&validate(&source, &target, &[]).stdout).into_owned();
        assert!(text.contains("EQUAL: 3 table(s) compared, 0 differ"), "{text}");
        source.psql("app", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry\\_main\\_\\_%';
             DROP PUBLICATION pgferry_main, pgferry_main__insert_only;");
    }
}

#[test]
fn every_kind_of_difference_is_found_with_its_key() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    copy(&source, &target);
    target.psql(
        "app",
        "DELETE FROM t WHERE id = 10;
         INSERT INTO t (id, s) VALUES (5000, 'extra');
         UPDATE t SET n = n + 1 WHERE id = 20;
         UPDATE t SET ts = 'infinity' WHERE id = 21;
         UPDATE t SET arr = arr || 0 WHERE id = 22;
         UPDATE t SET j = j || '{\"x\": 1}' WHERE id = 23;
         UPDATE t SET b = b || '\\x00'::bytea WHERE id = 24;
         UPDATE t SET s = '' WHERE id = 25;
         UPDATE t SET n = 1.50 WHERE id = 26;
         UPDATE t SET big = big || 'x' WHERE id = 300;
         UPDATE nokey SET b = 'changed' WHERE ctid = (SELECT ctid FROM nokey WHERE a = 7 LIMIT 1);
         UPDATE \"Odd \"\"name\" SET v = -1 WHERE k = 'key 42';",
    );
    let out = validate(&source, &target, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let table = |name: &str| report["tables"].as_array().unwrap().iter().find(|t| t["table"] == name).unwrap().clone();
    let t = table("\"public\".\"t\"");
    let found: Vec<(String, String)> = t["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["key"].as_str().unwrap().to_string(), d["difference"].as_str().unwrap().to_string()))
        .collect();
    let expect = |key: &str, kind: &str| {
        assert!(found.contains(&(key.to_string(), kind.to_string())), "{key} {kind} not in {found:?}");
    };
    expect("(10)", "missing");
    expect("(5000)", "extra");
    for key in ["(20)", "(21)", "(22)", "(23)", "(24)", "(25)", "(26)", "(300)"] {
        expect(key, "changed");
    }
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(t["differences"][0].get("source_row").is_none(), "values hidden by default");
    assert_eq!(table("\"public\".\"nokey\"")["mismatched"], 1);
    assert_eq!(table("\"public\".\"Odd \"\"name\"")["differences"][0]["key"], "(\"key 42\")");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret-value"), "values leaked without --show-values");

    let out = validate(&source, &target, &["--show-values"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("source: (20,"), "{text}");
    assert!(text.contains("DIFFERENT: 3 table(s) compared, 3 differ"), "{text}");
}

fn follow_caught_up(source: &Cluster, target: &Cluster) {
    let out = pgferry(&["follow", "--source", &source.url("app"), "--target", &target.url("app"), "--until-caught-up"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn table(report: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    report["tables"].as_array().unwrap().iter().find(|t| t["table"] == name).cloned()
}

#[test]
fn changed_only_rechecks_exactly_the_rows_change_capture_touched() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(PgVersion::V18);
    target.create_database("app");
    copy(&source, &target);
    source.psql(
        "app",
        "UPDATE t SET n = 0 WHERE id IN (5, 6);
         UPDATE t SET id = 9000 WHERE id = 8;
         DELETE FROM t WHERE id = 7;
         INSERT INTO t (id, s) VALUES (10001, 'new');
         INSERT INTO nokey VALUES (99, 'new');",
    );
    follow_caught_up(&source, &target);
    // A difference in a touched row and one in a row nobody touched.
    target.psql("app", "UPDATE t SET s = 'drift' WHERE id = 5; UPDATE t SET s = 'drift' WHERE id = 100;");

    let out = validate(&source, &target, &["--changed-only", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let t = table(&report, "\"public\".\"t\"").expect("t was touched");
    assert_eq!(
        t["source_rows"], 4,
        "of the touched keys 5, 6, 7, 8, 9000, 10001, the source holds 5, 6, 9000, 10001: {t:#}"
    );
    let keys: Vec<&str> = t["differences"].as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["(5)"], "only the touched row is re-checked");
    assert_eq!(
        table(&report, "\"public\".\"nokey\"").expect("nokey was touched")["source_rows"],
        101,
        "keyless: whole table"
    );
    assert!(table(&report, "\"public\".\"Odd \"\"name\"").is_none(), "an untouched table is not compared");
    let status = |source: &Cluster, target: &Cluster| {
        json(&pgferry(&["status", "--source", &source.url("app"), "--target", &target.url("app"), "--format", "json"]))
    };
    let seen = status(&source, &target);
    assert_eq!(seen["validation"]["equal"], false, "{seen:#}");
    assert_eq!(seen["validation"]["mode"], "changed_only");
    assert!(seen["cutover"]["reasons"].to_string().contains("validation found 1 differing chunk"), "{seen:#}");

    // Repaired, the touched rows are found equal and marked checked.
    target.psql("app", "UPDATE t SET s = 'secret-value-5' WHERE id = 5");
    let out = validate(&source, &target, &["--changed-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let out = validate(&source, &target, &["--changed-only", "--format", "json"]);
    assert_eq!(json(&out)["tables"].as_array().unwrap().len(), 0, "nothing touched since");
    let seen = status(&source, &target);
    assert_eq!(seen["validation"]["equal"], true, "{seen:#}");
    assert_eq!(seen["touched_rows"], 0, "{seen:#}");
    // A full validation still sees the untouched drift.
    assert_eq!(validate(&source, &target, &[]).status.code(), Some(1));

    // Touched again after the check: re-checked again, and a TRUNCATE covers the whole table.
    source.psql("app", "UPDATE t SET n = 1 WHERE id = 6; TRUNCATE nokey;");
    follow_caught_up(&source, &target);
    let report = json(&validate(&source, &target, &["--changed-only", "--format", "json"]));
    assert_eq!(table(&report, "\"public\".\"t\"").unwrap()["source_rows"], 1);
    assert_eq!(table(&report, "\"public\".\"nokey\"").unwrap()["source_rows"], 0);
    assert_eq!(report["equal"], true, "{report:#}");
}

#[test]
fn under_a_steady_write_load_with_change_capture_running_only_real_differences_are_reported() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(PgVersion::V18);
    target.create_database("app");
    copy(&source, &target);
    // Change capture not running while the source is written: the differences
    // are real at the two snapshots, and the report says the target is behind.
    source.psql("app", "UPDATE t SET s = 'not applied yet' WHERE id = 3");
    let out = validate(&source, &target, &["--format", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(4), "lag is not a mismatch: {report:#}");
    assert_eq!(report["verdict"], "not_proven", "{report:#}");
    assert!(
        report["behind"]["bytes"].as_i64().is_some_and(|b| b > 0),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["behind"]["pending_changes"], 1, "{report:#}");
    let text = String::from_utf8_lossy(&validate(&source, &target, &[]).stdout).to_string();
    assert!(text.contains("change capture was not running"), "{text}");

    let mut follow = spawn_follow(&source, &target);
    // Hot rows: ids 1 to 1000 updated all the time, and new rows appended.
    let writer = Writer::start(source.url("app"), |n| {
        format!(
            "UPDATE t SET n = n + 1, s = 'w{n}' WHERE id = {}; INSERT INTO t (id, s) VALUES ({}, 'appended');",
            n * 7 % 1000 + 1,
            100_000 + n
        )
    });
    let out = validate(&source, &target, &["--format", "json"]);
    let report = json(&out);
    assert_ne!(out.status.code(), Some(1), "no false mismatch under writes: {report:#}");
    assert_ne!(report["verdict"], "different", "{report:#}");
    for t in report["tables"].as_array().unwrap() {
        assert_eq!(t["mismatched"], 0, "{t:#}");
        assert_eq!(
            t["verdict"] == "not_proven",
            t["changing"].as_u64().unwrap() > 0,
            "NOT PROVEN exactly when chunks kept changing: {t:#}"
        );
    }

    // A real difference in a row nobody writes is still found, with its key.
    target.psql("app", "UPDATE t SET s = 'drift' WHERE id = 1500");
    let out = validate(&source, &target, &["--format", "json"]);
    let report = json(&out);
    writer.stop();
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let t = table(&report, "\"public\".\"t\"").unwrap();
    let keys: Vec<&str> = t["differences"].as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["(1500)"], "{t:#}");
    assert_eq!(t["mismatched"], 1, "{t:#}");
}

#[test]
fn repair_copies_differing_tables_again_and_change_capture_stays_exact() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    source.psql("app", "CREATE TABLE child (id int PRIMARY KEY, t_id int REFERENCES t)");
    source.psql("app", "INSERT INTO child SELECT g, g FROM generate_series(1, 50) g");
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    copy(&source, &target);
    source.psql("app", "UPDATE t SET s = 'before repair' WHERE id = 30; INSERT INTO t (id) VALUES (7000);");
    follow_caught_up(&source, &target);
    target.psql("app", "UPDATE t SET s = 'drift' WHERE id = 40; DELETE FROM t WHERE id = 1999;");

    // Not while change capture runs.
    let mut follow = spawn_follow(&source, &target);
    let refused = validate(&source, &target, &["--repair"]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("repair needs change capture stopped"));
    follow.kill().unwrap();
    follow.wait().unwrap();
    // Drift on the target; changes on the source not applied yet, to another table.
    target.psql("app", "UPDATE t SET s = 'drift again' WHERE id = 40");
    source.psql("app", "UPDATE \"Odd \"\"name\" SET v = -41 WHERE k = 'key 41'; INSERT INTO \"Odd \"\"name\" VALUES ('key 7001', 7001);");

    let out = validate(&source, &target, &["--repair", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(4), "the lagging table is not proven: {report:#}\n{stderr}");
    assert!(stderr.contains("pgferry: repaired \"public\".\"t\""), "{stderr}");
    assert!(
        stderr.contains("not repaired \"public\".\"Odd \"\"name\": not proven different"),
        "only lag there: {stderr}"
    );
    assert!(!stderr.contains("pgferry: repaired \"public\".\"Odd"), "{stderr}");
    assert_eq!(table(&report, "\"public\".\"t\"").unwrap()["verdict"], "equal", "{report:#}");
    assert_eq!(
        table(&report, "\"public\".\"Odd \"\"name\"").unwrap()["unproven"][0]["pending_changes"],
        2,
        "{report:#}"
    );
    // Change capture resumes: what the repair's snapshot held is skipped, the rest applied.
    source.psql("app", "UPDATE t SET s = 'after repair' WHERE id = 42; DELETE FROM t WHERE id = 1998; INSERT INTO t (id) VALUES (7002);");
    follow_caught_up(&source, &target);
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.repair"), "1");
}

/// A database with one small table, copied and followed.
fn hot_pair(source_version: PgVersion, target_version: PgVersion) -> (Cluster, Cluster) {
    let source = Cluster::start(source_version);
    source.create_database("app");
    source.psql("app", "CREATE TABLE hot (id int PRIMARY KEY, v int NOT NULL); INSERT INTO hot SELECT g, 0 FROM generate_series(1, 10) g;");
    let target = Cluster::start(target_version);
    target.create_database("app");
    copy(&source, &target);
    follow_caught_up(&source, &target);
    (source, target)
}

#[test]
fn a_table_whose_every_chunk_keeps_changing_is_not_proven_with_its_count() {
    let (source, target) = hot_pair(PgVersion::V15, PgVersion::V18);
    // Rows only the target has, below and above the source's keys: both chunks
    // differ at every read, and the writer changes every source row all the time.
    target.psql("app", "INSERT INTO hot VALUES (0, 0), (1000, 0)");
    let mut follow = spawn_follow(&source, &target);
    let writer = Writer::start(source.url("app"), |_| "UPDATE hot SET v = v + 1".to_string());
    let (s, t) = (source.url("app"), target.url("app"));
    let args = ["validate", "--source", s.as_str(), "--target", t.as_str(), "--chunk-rows", "5"];
    let out = pgferry(&[&args[..], &["--format", "json"]].concat());
    let text = pgferry(&args);
    writer.stop();
    follow.kill().unwrap();
    follow.wait().unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(4), "NOT PROVEN, not EQUAL: {report:#}");
    assert_eq!(report["verdict"], "not_proven");
    assert_eq!(report["equal"], false);
    let hot = table(&report, "\"public\".\"hot\"").unwrap();
    assert_eq!(hot["chunks"], 2, "{hot:#}");
    assert_eq!(hot["changing"], 2, "{hot:#}");
    assert_eq!(hot["unproven"], serde_json::json!([{"reason": "kept_changing", "chunks": 2}]), "{hot:#}");
    let stderr = String::from_utf8_lossy(&text.stderr).into_owned();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("NOT PROVEN: 1 table(s) compared, 0 differ, 1 not proven"), "{text}\n{stderr}");
    assert!(text.contains("2 chunk(s) kept changing"), "{text}");
}

#[test]
fn changed_only_with_change_capture_stopped_counts_lag_as_not_proven_never_as_a_mismatch() {
    let (source, target) = hot_pair(PgVersion::V15, PgVersion::V15);
    source.psql("app", "UPDATE hot SET v = 1 WHERE id IN (2, 3)");
    follow_caught_up(&source, &target);
    // Touched rows changed again, not applied yet: lag.
    source.psql(
        "app",
        "UPDATE hot SET v = 2 WHERE id = 2; UPDATE hot SET v = 2 WHERE id = 3; DELETE FROM hot WHERE id = 4",
    );
    let out = validate(&source, &target, &["--changed-only", "--format", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(4), "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["verdict"], "not_proven");
    assert_eq!(report["behind"]["pending_changes"], 3, "{report:#}");
    let hot = table(&report, "\"public\".\"hot\"").unwrap();
    assert_eq!(
        hot["unproven"],
        serde_json::json!([{"reason": "may_be_lag", "chunks": 1, "pending_changes": 3}]),
        "{hot:#}"
    );
    let text = String::from_utf8_lossy(&validate(&source, &target, &["--changed-only"]).stdout).into_owned();
    assert!(text.contains("3 change(s) not applied yet") && text.contains("NOT PROVEN: 1 table(s)"), "{text}");
    let status =
        json(&pgferry(&["status", "--source", &source.url("app"), "--target", &target.url("app"), "--format", "json"]));
    assert_eq!(status["validation"]["verdict"], "NOT PROVEN", "{status:#}");
    assert_eq!(status["validation"]["mismatched_chunks"], 0, "lag does not block the cutover: {status:#}");

    // Caught up: equal. A real difference with nothing pending: DIFFERENT.
    follow_caught_up(&source, &target);
    assert_eq!(validate(&source, &target, &["--changed-only"]).status.code(), Some(0));
    source.psql("app", "UPDATE hot SET v = 3 WHERE id = 5");
    follow_caught_up(&source, &target);
    target.psql("app", "UPDATE hot SET v = 99 WHERE id = 5");
    let out = validate(&source, &target, &["--changed-only", "--format", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(table(&report, "\"public\".\"hot\"").unwrap()["differences"][0]["key"], "(5)");
}

#[test]
fn repair_copies_nothing_when_the_only_differences_may_be_lag() {
    let (source, target) = hot_pair(PgVersion::V15, PgVersion::V15);
    source.psql("app", "UPDATE hot SET v = 7 WHERE id = 1; INSERT INTO hot VALUES (11, 0);");
    let out = validate(&source, &target, &["--repair"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("not repaired \"public\".\"hot\": not proven different (1 chunk(s) differ while 2 change(s)"),
        "{stderr}"
    );
    assert!(!stderr.contains("pgferry: repaired"), "{stderr}");
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.repair"), "0", "nothing repaired");
    // The lag is applied by change capture, as it would have been.
    follow_caught_up(&source, &target);
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

fn rehearse_or_cutover(command: &str, source: &Cluster, target: &Cluster) -> Output {
    pgferry(&[command, "--source", &source.url("app"), "--target", &target.url("app"), "--format", "json"])
}

#[test]
fn rehearse_and_the_cutovers_check_judge_the_same_state_alike() {
    let (source, target) = hot_pair(PgVersion::V15, PgVersion::V15);
    for c in [&source, &target] {
        c.psql("app", "CREATE ROLE app LOGIN");
    }
    // Under a writer the rehearsal's rows written after its drain are lag:
    // never DIFFERENT (they were, three times, before the cutover found them equal).
    // Paced (a few hundred rounds a second): an unpaced one on a loaded machine
    // outran change capture past the go/no-go's lag limit.
    let writer = Writer::start(source.url("app"), |n| {
        format!("UPDATE hot SET v = {n} WHERE id = {}; SELECT pg_sleep(0.002)", n % 10 + 1)
    });
    for _ in 0..3 {
        let out = rehearse_or_cutover("rehearse", &source, &target);
        let report = json(&out);
        let verdict = &report["validation"]["verdict"];
        assert!(verdict == "equal" || verdict == "not_proven", "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
        assert_ne!(out.status.code(), Some(1), "{report:#}");
    }
    writer.stop();
    // The writer leaves more lag than the go/no-go allows: caught up first.
    follow_caught_up(&source, &target);
    // The same state for both: equal.
    let out = rehearse_or_cutover("rehearse", &source, &target);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(json(&out)["validation"]["verdict"], "equal");

    // A changed row that differs on the target: DIFFERENT for both, with its key.
    source.psql("app", "UPDATE hot SET v = -1 WHERE id = 4");
    follow_caught_up(&source, &target);
    target.psql("app", "UPDATE hot SET v = 44 WHERE id = 4");
    let out = rehearse_or_cutover("rehearse", &source, &target);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let hot = table(&report["validation"], "\"public\".\"hot\"").unwrap();
    assert_eq!(
        (hot["verdict"].as_str(), hot["differences"][0]["key"].as_str()),
        (Some("different"), Some("(4)")),
        "{hot:#}"
    );
    let out = rehearse_or_cutover("cutover", &source, &target);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rolled back") && stderr.contains("\"public\".\"hot\" (keys (4)): DIFFERENT"), "{stderr}");
    // Repaired: equal for both (the recorded difference cleared first), and the cutover goes through.
    target.psql("app", "UPDATE hot SET v = -1 WHERE id = 4");
    assert_eq!(validate(&source, &target, &["--changed-only"]).status.code(), Some(0));
    assert_eq!(json(&rehearse_or_cutover("rehearse", &source, &target))["validation"]["verdict"], "equal");
    let out = rehearse_or_cutover("cutover", &source, &target);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

/// `validate --changed-only` with change capture stopped compares the touched
/// rows applied so far; the changes not applied yet are not among them, so an
/// EQUAL says how far behind the target is (#16 hostile pass: it said EQUAL with
/// five updates waiting and no word of them).
#[test]
fn changed_only_with_change_capture_stopped_says_what_it_did_not_compare() {
    let (source, target) = hot_pair(PgVersion::V15, PgVersion::V15);
    source.psql("app", "UPDATE hot SET v = 9 WHERE id <= 5; INSERT INTO hot VALUES (11, 0)");
    let out = validate(&source, &target, &["--changed-only"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("change capture was not running")
            && stdout.contains("6 change(s) not applied yet")
            && stdout.contains("the changes not applied yet are not compared"),
        "{stdout}"
    );
    follow_caught_up(&source, &target);
    let out = validate(&source, &target, &["--changed-only"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("change capture was not running"), "caught up: nothing to say\n{stdout}");
}
