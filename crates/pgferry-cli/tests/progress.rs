//! Change capture's progress lines tell the truth while a large transaction is
//! applied: its changes count in the rate before its commit, instead of "0
//! changes/s" for the minutes the operator most wants to watch.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion};

/// Rows of the one large transaction: enough that applying it outlasts two
/// progress intervals (5 s each) on this machine.
const ROWS: u64 = 1_500_000;

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.trim().split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

#[test]
fn a_large_transaction_shows_its_rate_before_it_commits() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    for c in [&source, &target] {
        c.create_database("app");
    }
    source.psql("app", "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)");
    let (s, t) = (source.url("app"), target.url("app"));
    let copy = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &s, "--target", &t])
        .env("PGFERRY_PG_BIN", source.version().bin_dir())
        .output()
        .expect("run pgferry copy");
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));

    let mut follow = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &s, "--target", &t])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgferry follow");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = Arc::clone(&lines);
    let stderr = follow.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            keep.lock().unwrap().push(line);
        }
    });

    source.psql("app", &format!("INSERT INTO t SELECT g, 'bulk' FROM generate_series(1, {ROWS}) g"));
    let committed = lsn(&source.psql("app", "SELECT pg_current_wal_insert_lsn()"));
    let deadline = Instant::now() + Duration::from_secs(300);
    while target.psql("app", "SELECT count(*) FROM t") != ROWS.to_string() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let all = lines.lock().unwrap().join("\n");
    assert_eq!(target.psql("app", "SELECT count(*) FROM t"), ROWS.to_string(), "applied in the end:\n{all}");

    // A progress line from before the transaction's commit was acknowledged
    // (applied short of its end) that shows a rate: only the open batch's
    // changes can make it, since nothing else was written.
    let during: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("change capture"))
        .filter(|l| field(l, "applied").is_some_and(|a| lsn(a) < committed))
        .collect();
    assert!(
        during.iter().any(|l| field(l, "changes_per_second").is_some_and(|r| r.parse::<f64>().unwrap() > 0.0)),
        "no progress line showed the large transaction's rate before its commit:\n{all}"
    );
}
