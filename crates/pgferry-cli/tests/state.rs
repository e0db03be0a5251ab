//! pgferry's state across releases (#22): a migration whose state was written by
//! the release before numbered upgrades (the same tables, no
//! `pgferry.state_version`) is continued and cut over by this one, its state
//! brought up to date in place; a state a newer pgferry recorded is refused by
//! every command before anything changes.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn migrated() -> (Cluster, Cluster) {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
         INSERT INTO orders (note) SELECT 'before ' || g FROM generate_series(1, 200) g;",
    );
    let (s, t) = (source.url("app"), target.url("app"));
    ok(pgferry(&["copy", "--source", &s, "--target", &t]));
    source.psql("app", "INSERT INTO orders (note) SELECT 'after ' || g FROM generate_series(1, 50) g");
    ok(pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"]));
    (source, target)
}

const VERSIONS: &str =
    "SELECT coalesce(string_agg(side || ':' || version, ',' ORDER BY side), 'none') FROM pgferry.state_version";

#[test]
fn a_migration_started_before_numbered_upgrades_is_continued_and_cut_over() {
    let (source, target) = migrated();
    let (s, t) = (source.url("app"), target.url("app"));
    assert_eq!(target.psql("app", VERSIONS), "target:5", "the stored format is pinned");
    // The previous release's state: the same tables, no version recorded.
    target.psql("app", "DROP TABLE pgferry.state_version");
    source.psql("app", "DROP TABLE IF EXISTS pgferry.state_version");
    source.psql("app", "INSERT INTO orders (note) SELECT 'later ' || g FROM generate_series(1, 30) g");
    ok(pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"]));
    assert_eq!(target.psql("app", VERSIONS), "target:5", "brought up to date in place");
    // A state of upgrade 1 (before the report's tables, the handover, the lanes and the instance cutover) receives upgrades 2 to 5.
    target.psql(
        "app",
        "DROP TABLE pgferry.timeline, pgferry.follow_sample, pgferry.handover, pgferry.apply_lane;
         ALTER TABLE pgferry.cutover DROP COLUMN instance_cutover; UPDATE pgferry.state_version SET version = 1",
    );
    ok(pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"]));
    assert_eq!(target.psql("app", VERSIONS), "target:5");
    let made =
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'pgferry' AND tablename IN ('timeline', 'follow_sample', 'handover')";
    assert_eq!(target.psql("app", made), "3");
    let column = "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgferry' AND table_name = 'cutover' AND column_name = 'instance_cutover'";
    assert_eq!(target.psql("app", column), "1");
    let out = ok(pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"]));
    assert!(out.contains("cut over"), "{out}");
    assert_eq!(source.psql("app", VERSIONS), "source:1");
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));
}

#[test]
fn a_state_recorded_by_a_newer_pgferry_is_refused_and_nothing_changes() {
    let (source, target) = migrated();
    let (s, t) = (source.url("app"), target.url("app"));
    let journal = "SELECT applied_lsn::text FROM pgferry.apply_progress";
    for (side, cluster) in [("target", &target), ("source", &source)] {
        cluster.psql(
            "app",
            &format!(
                "CREATE SCHEMA IF NOT EXISTS pgferry; CREATE TABLE IF NOT EXISTS pgferry.state_version (side text PRIMARY KEY, version integer NOT NULL, release text NOT NULL, upgraded_at timestamptz NOT NULL DEFAULT now());
                 INSERT INTO pgferry.state_version VALUES ('{side}', 99, '9.9.9') ON CONFLICT (side) DO UPDATE SET version = 99"
            ),
        );
        let before = (target.psql("app", journal), source.psql("app", "SELECT count(*) FROM pg_publication"));
        for args in [
            vec!["follow", "--source", &s, "--target", &t, "--until-caught-up"],
            vec!["cutover", "--source", &s, "--target", &t, "--switch-command", "true"],
            vec!["abort", "--source", &s, "--target", &t],
            vec!["validate", "--source", &s, "--target", &t],
        ] {
            let out = pgferry(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} on a newer {side} state: {err}");
            assert!(
                err.contains(&format!("the {side}'s pgferry state is at upgrade 99")) && err.contains("hint: "),
                "{err}"
            );
        }
        let after = (target.psql("app", journal), source.psql("app", "SELECT count(*) FROM pg_publication"));
        assert_eq!(after, before, "nothing changed");
        assert_eq!(source.psql("app", "SELECT has_database_privilege('public', 'app', 'CONNECT')"), "t", "not fenced");
        cluster.psql("app", &format!("DELETE FROM pgferry.state_version WHERE side = '{side}'"));
    }
    ok(pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"]));
}
