//! `--replica-identity-full`: with the operator's consent, the source's tables
//! without a replica identity get REPLICA IDENTITY FULL, so their UPDATEs and
//! DELETEs are replicated; the change is journaled before it is made, survives a
//! kill, and `abort` sets both sides back exactly.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).envs(envs.iter().copied()).output().expect("run pgferry")
}

fn ok(out: Output) {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Each keyless table's replica identity, as `table:identity` sorted.
fn identities(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT string_agg(relname || ':' || relreplident::text, ',' ORDER BY relname) FROM pg_class
         WHERE relname IN ('events', 'silent', 't')",
    )
}

fn content(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT (SELECT string_agg(e::text, ',' ORDER BY e::text) FROM events e) || ' / ' ||
                (SELECT string_agg(s::text, ',' ORDER BY s::text) FROM silent s)",
    )
}

#[test]
fn keyless_tables_get_full_identity_with_consent_are_replicated_exactly_and_abort_sets_them_back() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V18);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE events (v int, note text);
         CREATE TABLE silent (v int);
         ALTER TABLE silent REPLICA IDENTITY NOTHING;
         INSERT INTO events SELECT g, 'n' || g FROM generate_series(1, 50) g;
         INSERT INTO events VALUES (1, 'n1');
         INSERT INTO silent SELECT generate_series(1, 20);",
    );
    let (s, t) = (source.url("app"), target.url("app"));
    let copy = ["copy", "--source", &s, "--target", &t, "--replica-identity-full"];

    // Killed after the second table was journaled and before its ALTER: the
    // first is FULL already, the second is not; the journal names both.
    let killed = pgferry(&copy, &[("PGFERRY_FAILPOINT", "copy-after-replica-identity-journaled:2")]);
    assert_eq!(killed.status.code(), Some(137), "{}", String::from_utf8_lossy(&killed.stderr));
    assert_eq!(identities(&source), "events:f,silent:n,t:d");
    assert_eq!(
        target.psql(
            "app",
            "SELECT string_agg(table_name || '=' || original, ',' ORDER BY table_name) FROM pgferry.replica_identity"
        ),
        "events=d,silent=n"
    );
    let out = pgferry(&copy, &[]);
    ok(out.clone());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REPLICA IDENTITY FULL set on the source (abort and cleanup set it back): \"public\".\"events\", \"public\".\"silent\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(identities(&source), "events:f,silent:f,t:d");

    // Their UPDATEs and DELETEs work on the source and reach the target; FULL
    // matches one row of two identical ones.
    source.psql(
        "app",
        "UPDATE events SET note = 'changed' WHERE v = 2;
         DELETE FROM events WHERE ctid = (SELECT min(ctid) FROM events WHERE v = 1);
         DELETE FROM silent WHERE v > 15;
         UPDATE silent SET v = 100 WHERE v = 1;",
    );
    ok(pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"], &[]));
    assert_eq!(content(&source), content(&target));
    let copied = content(&target);
    assert!(
        copied.starts_with("(1,n1),(10,n10),") && copied.contains("(2,changed)"),
        "one of the two (1,n1) deleted: {copied}"
    );

    // abort: both sides as they were (the target's FULL came with the schema dump).
    let out = pgferry(&["abort", "--source", &s, "--target", &t], &[]);
    ok(out.clone());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["replica_identity_restored"],
        serde_json::json!(["\"public\".\"events\"", "\"public\".\"silent\""])
    );
    assert_eq!(identities(&source), "events:d,silent:n,t:d");
    assert_eq!(identities(&target), "events:d,silent:n,t:d");
    assert_eq!(source.psql("app", "SELECT count(*) FROM pg_publication"), "0");
}

#[test]
fn without_consent_the_preflight_names_each_keyless_table_and_the_choices() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql("app", "CREATE TABLE events (v int); INSERT INTO events SELECT generate_series(1, 1000);");
    let (s, t) = (source.url("app"), target.url("app"));
    let out = pgferry(&["start", "--source", &s, "--target", &t, "--until-caught-up"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"public\".\"events\" ("), "the table and its size: {stderr}");
    assert!(stderr.contains("--replica-identity-full") && stderr.contains("--recopy-keyless-tables"), "{stderr}");
    assert_eq!(
        source.psql("app", "SELECT relreplident FROM pg_class WHERE relname = 'events'"),
        "d",
        "nothing changed"
    );

    ok(pgferry(&["start", "--source", &s, "--target", &t, "--until-caught-up", "--replica-identity-full"], &[]));
    assert_eq!(source.psql("app", "SELECT relreplident FROM pg_class WHERE relname = 'events'"), "f");
    source.psql("app", "UPDATE events SET v = -v WHERE v <= 10");
    ok(pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"], &[]));
    assert_eq!(target.psql("app", "SELECT count(*) FROM events WHERE v < 0"), "10");
}
