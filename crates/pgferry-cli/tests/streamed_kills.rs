//! Streamed transactions (a PostgreSQL 15 source with `logical_decoding_work_mem
//! = 64kB`, so nearly every transaction here streams) under a hostile workload:
//! writers running large transactions side by side, their stream blocks
//! interleaved, with key changes, deletes, TRUNCATE, updates that leave a
//! TOASTed column unchanged, nested savepoints rolled back and released at
//! several depths, and transactions rolled back whole (or by a deadlock),
//! while `pgferry follow` is killed (SIGKILL) again and again at random moments
//! and at its failpoints. The target ends identical to the source, with no
//! transaction applied twice or lost (15 -> 15 and 15 -> 18; and 15 -> 18 with
//! four apply lanes).

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).envs(envs.iter().copied()).output().expect("run pgferry")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "pgferry failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writers, each owning the keys `id % WRITERS == w` (so they interleave
/// without waiting on each other's rows, until one truncates).
const WRITERS: u64 = 3;

fn streaming_source() -> Cluster {
    let source = Cluster::builder(PgVersion::V15).setting("logical_decoding_work_mem", "64kB").start();
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE kv (id bigint PRIMARY KEY, n bigint NOT NULL, doc text);
         CREATE TABLE scratch (id bigint PRIMARY KEY, v text);
         CREATE TABLE log (writer int, seq bigint, note text);
         INSERT INTO kv SELECT g, g, NULL FROM generate_series(1, 3000) g;
         INSERT INTO scratch SELECT g, 's' FROM generate_series(1, 1000) g;",
    );
    source
}

/// A TOASTed value (stored out of line: md5 text compresses only to about half).
fn doc(seed: &str) -> String {
    format!("(SELECT string_agg(md5({seed} || '.' || i), '') FROM generate_series(1, 300) i)")
}

/// A tiny deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One statement of writer `w` (its keys: `id % WRITERS = w`).
fn statement(rng: &mut Rng, w: u64, next: &mut u64) -> String {
    let r = rng.below(3000);
    let mine = format!("id % {WRITERS} = {w}");
    let lo = r * 10;
    match rng.below(12) {
        0 | 1 => {
            let rows = 200 + rng.below(800);
            let first = *next * WRITERS + w;
            *next += rows;
            format!(
                "INSERT INTO kv SELECT {first} + g * {WRITERS}, g, CASE WHEN g % 50 = 0 THEN {} END FROM generate_series(0, {rows} - 1) g;",
                doc("g")
            )
        }
        // Updates that leave the TOASTed column unchanged.
        2 | 3 => format!("UPDATE kv SET n = n + 1 WHERE {mine} AND id BETWEEN {lo} AND {lo} + 6000;"),
        // The key changed (moved past every key written so far, still its writer's).
        4 => {
            let shift = (*next + 1_000_000) * WRITERS;
            // Past the moved keys too (at most 33,000 before the shift).
            *next += 1_020_000;
            format!("UPDATE kv SET id = id + {shift} WHERE {mine} AND id BETWEEN {lo} AND {lo} + 3000;")
        }
        5 => format!("DELETE FROM kv WHERE {mine} AND id BETWEEN {lo} AND {lo} + 1500;"),
        6 => format!("UPDATE kv SET doc = {} WHERE {mine} AND id BETWEEN {lo} AND {lo} + 60;", doc("id::text")),
        7 => format!("INSERT INTO log SELECT {w}, g, 'w{w}' FROM generate_series(1, {}) g;", 500 + rng.below(1500)),
        8 => "TRUNCATE scratch; INSERT INTO scratch SELECT g, 't' FROM generate_series(1, 1500) g;".into(),
        9 => format!("UPDATE scratch SET v = v || '{w}' WHERE id % 7 = {};", r % 7),
        _ => format!("UPDATE kv SET n = n * 2, doc = doc WHERE {mine} AND id BETWEEN {lo} AND {lo} + 3000;"),
    }
}

/// A transaction of several statements, some inside nested savepoints rolled
/// back or released; one in eight rolled back whole.
fn transaction(rng: &mut Rng, w: u64, next: &mut u64) -> String {
    let mut sql = String::from("BEGIN;");
    let mut depth = 0;
    for _ in 0..2 + rng.below(5) {
        match rng.below(6) {
            0 | 1 if depth < 4 => {
                depth += 1;
                sql.push_str(&format!("SAVEPOINT s{depth};"));
            }
            2 if depth > 0 => {
                sql.push_str(&format!("ROLLBACK TO SAVEPOINT s{depth};"));
                if rng.below(2) == 0 {
                    sql.push_str(&format!("RELEASE s{depth};"));
                    depth -= 1;
                }
            }
            3 if depth > 0 => {
                sql.push_str(&format!("RELEASE s{depth};"));
                depth -= 1;
            }
            _ => {}
        }
        sql.push_str(&statement(rng, w, next));
    }
    sql.push_str(if rng.below(8) == 0 { "ROLLBACK;" } else { "COMMIT;" });
    sql
}

/// Writer `w` until `stop`: each transaction is sent as one string, so it runs
/// whole; a deadlock (a TRUNCATE against another writer) rolls it back.
fn spawn_writer(url: String, w: u64, seed: u64, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut rng = Rng((seed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let (mut committed, mut next) = (0u64, 10_000u64);
            while !stop.load(Ordering::SeqCst) {
                let sql = transaction(&mut rng, w, &mut next);
                match client.batch_execute(&sql).await {
                    Ok(()) => committed += 1,
                    Err(e) => {
                        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                        assert!(code == "40P01" || code == "40001", "writer {w}: {:?}", e.as_db_error());
                        client.batch_execute("ROLLBACK").await.unwrap();
                    }
                }
            }
            committed
        })
    })
}

fn seed() -> u64 {
    let seed = std::env::var("PGFERRY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("seed {seed} (PGFERRY_TEST_SEED replays it)");
    seed
}

fn spawn_follow(source: &Cluster, target: &Cluster, envs: &[(&str, &str)], lanes: &str) -> Child {
    let (s, t) = (source.url("app"), target.url("app"));
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &s, "--target", &t, "--name", "main", "--apply-lanes", lanes])
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgferry follow")
}

/// What the keyless table holds per writer: a transaction applied twice (or
/// half) shows.
const LOG_SUMMARY: &str = "SELECT coalesce(string_agg(note || '=' || n || '/' || s, ' ' ORDER BY note), '')
    FROM (SELECT note, count(*) n, sum(seq) s FROM log GROUP BY note) x";

#[test]
fn killed_again_and_again_under_interleaved_streamed_writes_15_to_15() {
    killed_under_streamed_writes(PgVersion::V15, "1");
}

#[test]
fn killed_again_and_again_under_interleaved_streamed_writes_15_to_18() {
    killed_under_streamed_writes(PgVersion::V18, "1");
}

/// The same with parallel apply: a streamed transaction is split over the
/// lanes at its commit like a whole one (on lane 0 alone when it holds a
/// barrier, a key change or TRUNCATE, or is larger than a lane holds).
#[test]
fn killed_again_and_again_under_interleaved_streamed_writes_with_four_apply_lanes_15_to_18() {
    killed_under_streamed_writes(PgVersion::V18, "4");
}

fn killed_under_streamed_writes(to: PgVersion, lanes: &str) {
    let source = streaming_source();
    let target = Cluster::start(to);
    target.create_database("app");
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    assert_ok(&pgferry(
        &["copy", "--source", &s, "--target", &t, "--name", "main"],
        &[("PGFERRY_PG_BIN", bin.to_str().unwrap())],
    ));
    let seed = seed();
    let mut rng = Rng(seed ^ 0x5851_f42d_4c95_7f2d | 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS).map(|w| spawn_writer(source.url("app"), w, seed, stop.clone())).collect();
    for round in 0..12 {
        let failpoint = match round % 4 {
            0 => Some(format!("streamed-block-spooled:{}", 1 + rng.below(6))),
            1 => Some(format!("apply-before-commit:{}", 1 + rng.below(3))),
            2 => Some(format!("apply-after-commit:{}", 1 + rng.below(3))),
            _ => None,
        };
        let envs: Vec<(&str, &str)> = failpoint.iter().map(|f| ("PGFERRY_FAILPOINT", f.as_str())).collect();
        let mut child = spawn_follow(&source, &target, &envs, lanes);
        let wait = if failpoint.is_some() { 20_000 } else { 300 + rng.below(3000) };
        let deadline = Instant::now() + Duration::from_millis(wait);
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round} ({failpoint:?}): follow ended on its own: {status:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let committed: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(committed > 20, "the writers committed only {committed} transactions");
    let catch_up =
        ["follow", "--source", &s, "--target", &t, "--name", "main", "--until-caught-up", "--apply-lanes", lanes];
    assert_ok(&pgferry(&catch_up, &[]));
    assert_eq!(source.psql("app", LOG_SUMMARY), target.psql("app", LOG_SUMMARY), "seed {seed}");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "seed {seed}");
    let sums = "SELECT count(*) || '/' || sum(n) || '/' || sum(length(doc)) FROM kv";
    assert_eq!(source.psql("app", sums), target.psql("app", sums), "seed {seed}");
    let slot = target.psql("app", "SELECT slot_name FROM pgferry.migration WHERE name = 'main'");
    let streamed = format!("SELECT stream_txns > 0 FROM pg_stat_replication_slots WHERE slot_name = '{slot}'");
    assert_eq!(source.psql("app", &streamed), "t", "the source streamed nothing");
}
