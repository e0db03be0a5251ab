//! Slots are server-wide: two migrations of two databases of one server under the
//! same name (the default, `main`) must never drop or take over each other's slot.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn slots(c: &Cluster) -> String {
    c.psql("postgres", "SELECT coalesce(string_agg(slot_name || '@' || database, ',' ORDER BY slot_name), '') FROM pg_replication_slots")
}

#[test]
fn a_second_database_migrated_under_the_same_name_is_refused_and_leaves_the_first_alone() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    for db in ["one", "two"] {
        source.create_database(db);
        target.create_database(db);
        source.psql(db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);");
    }
    let copy = |db: &str, extra: &[&str]| {
        let (src, dst) = (source.url(db), target.url(db));
        let mut args = vec!["copy", "--source", src.as_str(), "--target", dst.as_str()];
        args.extend(extra);
        pgferry(&args)
    };
    let out = copy("one", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(slots(&source), "pgferry_main@one");
    let out = copy("two", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("belongs to database one") && stderr.contains("--name"), "{stderr}");
    assert_eq!(slots(&source), "pgferry_main@one", "the first migration's slot untouched");
    assert_eq!(source.psql("two", "SELECT count(*) FROM pg_publication"), "0", "nothing made in the second database");
    assert_eq!(target.psql("two", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");
    // abort of the second database under the same name does not drop the first's slot either.
    let (src, dst) = (source.url("two"), target.url("two"));
    let out = pgferry(&["abort", "--source", &src, "--target", &dst]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(slots(&source), "pgferry_main@one");
    // Under a name of its own it works.
    let out = copy("two", &["--name", "two"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(slots(&source), "pgferry_main@one,pgferry_two@two");
}
