//! What pgferry says about a cutover that was stopped, on real clusters: while
//! an earlier cutover's fence is still up, `status` and `cutover --dry-run` say
//! that the next cutover only rolls it back (not "would start now"), a copy from
//! the fenced source into another target is refused with nothing changed, and
//! once the cutover completed, `cutover --dry-run` is refused as the cutover is.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).envs(envs.iter().copied()).output().expect("run pgferry")
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The source's slots with their positions, its publications and its fence journal.
fn source_state(source: &Cluster) -> String {
    [
        source.psql(
            "app",
            "SELECT coalesce(string_agg(slot_name || ':' || coalesce(confirmed_flush_lsn::text, '-'), ',' ORDER BY slot_name), 'none') FROM pg_replication_slots",
        ),
        source.psql("app", "SELECT coalesce(string_agg(pubname, ',' ORDER BY pubname), 'none') FROM pg_publication"),
        source.psql(
            "app",
            "SELECT coalesce(string_agg(migration || '/' || kind || '/' || name, ',' ORDER BY kind, name), 'none') FROM pgferry.source_fence",
        ),
    ]
    .join(" | ")
}

#[test]
fn a_stopped_cutover_is_reported_as_what_the_rerun_does_and_a_copy_from_its_fenced_source_is_refused() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    target.create_database("elsewhere");
    // Roles are the server's: the operator makes them on the target (the cutover's gate compares them).
    target.psql("app", "CREATE ROLE app LOGIN");
    source.psql(
        "app",
        "CREATE ROLE app LOGIN;
         CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
         GRANT ALL ON orders, orders_id_seq TO app;
         INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 300) g;",
    );
    let (src, dst, elsewhere) = (source.url("app"), target.url("app"), target.url("elsewhere"));
    let pair = |command: &'static str| vec![command, "--source", &src, "--target", &dst];
    let out = pgferry(&pair("copy"), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = pgferry(&[pair("follow"), vec!["--until-caught-up"]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let out = pgferry(&pair("cutover"), &[("PGFERRY_FAILPOINT", "cutover-after-fenced:1")]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    let fenced = source_state(&source);
    assert!(fenced.contains("main/read_only/"), "{fenced}");

    let status = pgferry(&pair("status"), &[]);
    let shown = text(&status);
    assert!(!shown.contains("would start now"), "{shown}");
    assert!(shown.contains("the next pgferry cutover only rolls it back"), "{shown}");
    let plan = pgferry(&[pair("cutover"), vec!["--dry-run"]].concat(), &[]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(text(&plan).contains("would NOT start") && text(&plan).contains("only rolls it back"), "{}", text(&plan));

    // A copy from the fenced source into another database: refused, nothing changed on either side.
    let out = pgferry(&["copy", "--source", &src, "--target", &elsewhere], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("fenced by the cutover of migration main"), "{}", text(&out));
    assert!(text(&out).contains("--target-lost"), "the hint names the way out when the target is gone: {}", text(&out));
    assert_eq!(source_state(&source), fenced, "the refused copy changed the source");
    assert_eq!(target.psql("elsewhere", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");

    let out = pgferry(&pair("cutover"), &[]);
    assert!(text(&out).contains("rolled back"), "{}", text(&out));
    let out = pgferry(&pair("cutover"), &[]);
    assert!(out.status.success(), "{}", text(&out));

    // Completed: the plan is refused as the cutover itself is.
    let plan = pgferry(&[pair("cutover"), vec!["--dry-run"]].concat(), &[]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(text(&plan).contains("migration main was already cut over"), "{}", text(&plan));
    assert!(!text(&plan).contains("would start now"), "{}", text(&plan));
}
