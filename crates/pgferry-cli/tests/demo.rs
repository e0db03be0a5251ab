//! `pgferry demo` as a newcomer runs it: a small sample migrated end to end ends
//! with a summary that proves the migration (equal rows, measured downtime,
//! replicated changes, the target continuing the sequences), and leaves no cluster
//! behind, also when it is stopped half-way; without PostgreSQL's programs it says
//! what is missing and how to get it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pgferry(args: &[&str]) -> (Output, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .env_remove("PGFERRY_PG_BIN")
        .output()
        .expect("run pgferry");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// The number after `label` on the summary's line that starts with it.
fn figure(summary: &str, label: &str) -> f64 {
    let line =
        summary.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} line in:\n{summary}"));
    let value = line[label.len()..].split_whitespace().next().unwrap();
    value.parse().unwrap_or_else(|_| panic!("{value:?} on {line:?} is not a number"))
}

/// The clusters' directory, from the stderr line that names it.
fn clusters_dir(line: &str) -> Option<PathBuf> {
    let rest = line.strip_prefix("pgferry demo: two throwaway clusters in ")?;
    rest.split(" (").next().map(PathBuf::from)
}

/// Whether a server still runs with its data in `dir`.
fn server_runs_in(dir: &Path) -> bool {
    let out = Command::new("ps").args(["-eo", "args"]).output().expect("run ps");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.contains(&dir.display().to_string()))
}

#[test]
fn a_small_demo_migrates_under_writes_and_removes_its_clusters() {
    let (output, summary, log) = pgferry(&["demo", "--size-mb", "5"]);
    assert_migrated_and_cleaned_up(&output, &summary, &log);
}

/// The same on PostgreSQL 18 at both ends: the newest source's catalogs, pgoutput
/// and sequences, through copy, change capture, cutover and validation.
#[test]
fn a_demo_migrates_from_a_postgresql_18_source() {
    let bin = pgferry_testkit::PgVersion::V18.bin_dir();
    let (output, summary, log) = pgferry(&["demo", "--size-mb", "5", "--pg-bin", bin.to_str().unwrap()]);
    assert!(summary.starts_with("pgferry demo: PostgreSQL 18.") && summary.contains("-> PostgreSQL 18."), "{summary}");
    assert_migrated_and_cleaned_up(&output, &summary, &log);
}

/// The summary proves the migration (equal rows, measured downtime, replicated
/// changes, sequences continued) and no cluster or password is left behind.
fn assert_migrated_and_cleaned_up(output: &Output, summary: &str, log: &str) {
    assert!(output.status.success(), "demo failed:\n{summary}\n{log}");
    let validation = summary.lines().find(|l| l.starts_with("validation")).expect("a validation line");
    assert!(validation.contains("EQUAL"), "{summary}");
    assert!(figure(summary, "downtime") > 0.0, "{summary}");
    assert!(figure(summary, "changes replicated") > 0.0, "{summary}");
    assert!(figure(summary, "application") > 0.0, "{summary}");
    assert!(summary.contains("the sequences continue, no collision"), "{summary}");
    let dir =
        log.lines().find_map(clusters_dir).unwrap_or_else(|| panic!("the clusters' directory is not named:\n{log}"));
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(!summary.contains("password") && !log.contains("password"), "{summary}\n{log}");
}

#[test]
fn missing_postgresql_programs_exit_2_with_how_to_get_them() {
    let (output, summary, log) = pgferry(&["demo", "--pg-bin", "/nonexistent"]);
    assert_eq!(output.status.code(), Some(2), "{summary}\n{log}");
    assert!(log.contains("initdb and pg_ctl were not found (looked in /nonexistent)"), "{log}");
    assert!(log.contains("hint: ") && log.contains("apt-get install postgresql") && log.contains("--pg-bin"), "{log}");
    assert!(summary.is_empty(), "{summary}");
}

#[test]
fn a_demo_stopped_half_way_stops_and_removes_its_clusters() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["demo", "--size-mb", "20"])
        .env_remove("PGFERRY_PG_BIN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pgferry demo");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let dir = lines.by_ref().find_map(|l| clusters_dir(&l)).expect("the clusters' directory is named");
    // Stopped while it loads the sample: both servers run, the application does not yet.
    lines.by_ref().find(|l| l.starts_with("pgferry demo: loading")).expect("the load starts");
    assert!(server_runs_in(&dir), "no server runs in {}", dir.display());
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(killed.success());
    let rest: Vec<String> = lines.collect();
    assert_eq!(child.wait().unwrap().code(), Some(143), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted; the demo's clusters are stopped and removed")), "{rest:?}");
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(!server_runs_in(&dir), "a server still runs in {}", dir.display());
}
