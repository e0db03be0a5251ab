//! Seeded migrations against real clusters: a `pg_basebackup` copy of the source,
//! taken while transactions commit continuously, plays the restored snapshot.
//! Change capture from the copy's end must neither lose nor double a transaction
//! at the boundary (an insert-only table without a key would show a duplicate as
//! an extra row); wrong positions, early copies and foreign targets are refused
//! with nothing applied.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion, Writer};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "pgferry failed ({:?}):\n{}", out.status.code(), text(out));
}

const SCHEMA: &str = "
    CREATE TABLE accounts (id bigint PRIMARY KEY, n bigint NOT NULL, note text);
    CREATE TABLE events (seq bigint, note text);
    INSERT INTO accounts SELECT g, 0, repeat('x', g % 300) FROM generate_series(1, 2000) g;
    INSERT INTO events SELECT g, 'initial' FROM generate_series(1, 2000) g;";

fn source() -> Cluster {
    source_of(PgVersion::V15)
}

fn source_of(version: PgVersion) -> Cluster {
    let source = Cluster::start(version);
    source.create_database("app");
    source.psql("app", SCHEMA);
    source
}

/// Small transactions committing back to back until stopped: an insert into the
/// keyless table, an update and an insert on the keyed one.
fn writer(source: &Cluster, first: u64) -> Writer {
    Writer::start(source.url("app"), move |n| {
        let k = first + n;
        format!(
            "BEGIN; INSERT INTO events VALUES ({k}, 'live'); UPDATE accounts SET n = n + 1 WHERE id = {}; \
             INSERT INTO accounts VALUES ({}, {k}, 'new'); COMMIT;",
            k % 2000 + 1,
            1_000_000 + k
        )
    })
}

fn prepare(source: &Cluster, name: &str) -> String {
    let out = pgferry(&["seed", "prepare", "--source", &source.url("app"), "--name", name]);
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start_seeded(source: &Cluster, copy: &Cluster, name: &str, position: &[&str]) -> Output {
    let (s, t) = (source.url("app"), copy.url("app"));
    let mut args = vec!["start", "--source", &s, "--target", &t, "--name", name, "--seeded"];
    args.extend_from_slice(position);
    args.extend_from_slice(&["--until-caught-up", "--keyless-tables-are-insert-only"]);
    pgferry(&args)
}

fn from_log(copy: &Cluster) -> [String; 2] {
    ["--seed-log".into(), copy.log_path().display().to_string()]
}

fn args(strings: &[String; 2]) -> [&str; 2] {
    [&strings[0], &strings[1]]
}

#[test]
fn seeding_a_copy_taken_under_writes_loses_and_doubles_nothing_at_the_boundary() {
    let source = source();
    source.psql("app", "SELECT pg_create_physical_replication_slot('standby_a')");
    for (round, name) in ["s1", "s2", "s3"].into_iter().enumerate() {
        seed_under_writes(&source, round, name);
    }
}

/// The same from a PostgreSQL 18 source and its copy: 18's server log and catalogs.
#[test]
fn seeding_a_postgresql_18_copy_loses_and_doubles_nothing() {
    let source = source_of(PgVersion::V18);
    source.psql("app", "SELECT pg_create_physical_replication_slot('standby_a')");
    seed_under_writes(&source, 0, "s18");
}

/// One seeded migration: prepared, copied physically under writes, attached, rerun,
/// compared, cleaned up.
fn seed_under_writes(source: &Cluster, round: usize, name: &str) {
    let writer = writer(source, 10_000_000 * (round as u64 + 1));
    let prepared = prepare(source, name);
    assert!(prepared.contains("READY: take the copy now"), "{prepared}");
    let copy = source.physical_copy();
    // A snapshot restore keeps the source's slots; pg_basebackup does not, so plant one.
    copy.psql("app", "SELECT pg_create_physical_replication_slot('standby_a')");
    let seeded = start_seeded(source, &copy, name, &args(&from_log(&copy)));
    let written = writer.stop();
    assert_ok(&seeded);
    let report = text(&seeded);
    assert!(report.contains("the copy ends at"), "{report}");
    assert!(report.contains("dropped inherited replication slots: standby_a"), "{report}");
    assert!(report.contains(&format!("dropped inherited publications: pgferry_{name}")), "{report}");
    assert!(written > 20, "the writer committed during the copy");
    // Rerun: the attach is journaled and kept; change capture catches up.
    let rerun = start_seeded(source, &copy, name, &args(&from_log(&copy)));
    assert_ok(&rerun);
    assert!(text(&rerun).contains("already seeded"), "{}", text(&rerun));
    assert_eq!(copy.fingerprints("app"), source.fingerprints("app"), "round {round}: copy and source differ");
    assert_eq!(
        copy.psql("app", "SELECT count(*) - count(DISTINCT seq) FROM events"),
        "0",
        "a transaction was applied twice"
    );
    assert_eq!(copy.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0");
    assert_eq!(source.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'standby_a'"), "1");
    // Not cut over: abort removes it (cleanup is for after the cutover).
    assert_ok(&pgferry(&["abort", "--source", &source.url("app"), "--target", &copy.url("app"), "--name", name]));
    assert_eq!(
        source
            .psql("app", &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_{name}%'")),
        "0"
    );
    assert_eq!(source.psql("app", "SELECT count(*) FROM pgferry.seed_marker"), "0", "abort leaves no marker");
}

fn assert_refused(out: &Output, needle: &str, copy: &Cluster) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(text(out).contains(needle), "expected {needle:?} in:\n{}", text(out));
    assert_eq!(
        copy.psql(
            "app",
            "SELECT to_regclass('pgferry.migration') IS NULL AND to_regclass('pgferry.apply_progress') IS NULL"
        ),
        "t",
        "a refused seed must not journal anything"
    );
}

#[test]
fn wrong_positions_early_copies_and_foreign_targets_are_refused() {
    let source = source();
    let early = source.physical_copy();
    prepare(&source, "r1");
    let marker_lsn = source.psql("app", "SELECT lsn FROM pgferry.seed_marker WHERE migration = 'r1'");
    let older = source.physical_copy();
    source.psql("app", "INSERT INTO events SELECT g, 'between copies' FROM generate_series(1, 500) g");
    let newer = source.physical_copy();

    assert_refused(
        &start_seeded(&source, &early, "r1", &args(&from_log(&early))),
        "copied before pgferry seed prepare",
        &early,
    );

    let before_marker = source.psql("app", &format!("SELECT ('{marker_lsn}'::pg_lsn - 8)::text"));
    assert_refused(&start_seeded(&source, &older, "r1", &["--seed-lsn", &before_marker]), "before the marker", &older);
    assert_refused(
        &start_seeded(&source, &older, "r1", &["--seed-lsn", "FF/0"]),
        "past the copy's own WAL end",
        &older,
    );

    let foreign = Cluster::start(PgVersion::V18);
    foreign.create_database("app");
    assert_refused(
        &start_seeded(&source, &foreign, "r1", &["--seed-lsn", &marker_lsn]),
        "not a copy of the source",
        &foreign,
    );

    let no_line = start_seeded(&source, &older, "r1", &["--seed-log", "/dev/null"]);
    assert_refused(&no_line, "has no 'redo done at' line", &older);

    // The newer copy is seeded and followed: the slot moves past the older copy's end.
    assert_ok(&start_seeded(&source, &newer, "r1", &args(&from_log(&newer))));
    assert_eq!(newer.fingerprints("app"), source.fingerprints("app"));
    assert_refused(&start_seeded(&source, &older, "r1", &args(&from_log(&older))), "already advanced", &older);
}
