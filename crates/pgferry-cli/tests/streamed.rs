//! Large transactions that a PostgreSQL 14+ source streams before they commit
//! (pgoutput protocol version 2, `streaming 'on'`), with the source's
//! `logical_decoding_work_mem` at its minimum (64kB) so that every transaction
//! here passes it: each arrives complete and exactly once, a rolled-back
//! subtransaction or a rolled-back transaction leaves only what committed, two
//! transactions streamed interleaved both arrive, and pgferry killed while one
//! is spooled, before and after its commit on the target loses and doubles
//! nothing; with DDL capture, a command inside one is replayed in place.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
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

/// A source that streams every transaction over 64kB.
fn streaming_source(version: PgVersion) -> Cluster {
    let source = Cluster::builder(version).setting("logical_decoding_work_mem", "64kB").start();
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text);
         CREATE TABLE log (seq bigint, note text);
         INSERT INTO big SELECT g, 0, 'seed' FROM generate_series(1, 100) g;",
    );
    source
}

fn copy(source: &Cluster, target: &Cluster, name: &str) {
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    assert_ok(&pgferry(
        &["copy", "--source", &s, "--target", &t, "--name", name],
        &[("PGFERRY_PG_BIN", bin.to_str().unwrap())],
    ));
}

/// A target of `version` holding the copy of `source`'s `app` (migration `main`).
fn copied_target(source: &Cluster, version: PgVersion) -> Cluster {
    let target = Cluster::start(version);
    target.create_database("app");
    copy(source, &target, "main");
    target
}

/// An 18 target that `start --capture-ddl` copied `source`'s `app` to and
/// caught up (migration `ddl`).
fn capturing_ddl(source: &Cluster) -> Cluster {
    let target = Cluster::start(PgVersion::V18);
    target.create_database("app");
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    assert_ok(&pgferry(
        &[
            "start",
            "--source",
            &s,
            "--target",
            &t,
            "--name",
            "ddl",
            "--until-caught-up",
            "--capture-ddl",
            "--keyless-tables-are-insert-only",
        ],
        &[("PGFERRY_PG_BIN", bin.to_str().unwrap())],
    ));
    target
}

fn catch_up(source: &Cluster, target: &Cluster, name: &str) -> Output {
    let (s, t) = (source.url("app"), target.url("app"));
    pgferry(&["follow", "--source", &s, "--target", &t, "--name", name, "--until-caught-up"], &[])
}

fn spawn_follow(source: &Cluster, target: &Cluster, name: &str, envs: &[(&str, &str)]) -> Child {
    let (s, t) = (source.url("app"), target.url("app"));
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &s, "--target", &t, "--name", name])
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgferry follow")
}

/// Waits for `child` to end by itself (a failpoint), at most a minute.
fn exits_at_failpoint(mut child: Child, failpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                status.code(),
                Some(137),
                "{failpoint}: follow ended otherwise: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("{failpoint} was not reached within a minute: {}", String::from_utf8_lossy(&out.stderr));
}

/// A psql session kept open, so a transaction can stay in progress while the
/// test does something else.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    fn open(cluster: &Cluster) -> Session {
        let mut child = cluster
            .version()
            .client_command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(cluster.socket_dir())
            .args(["-p", &cluster.port().to_string(), "-d", "app"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start psql");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session { child, stdin, stdout }
    }

    /// Runs `sql` and waits until it finished.
    fn run(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql}\n\\echo __done__").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "psql ended (an error?) running: {sql}");
            if line.trim_end() == "__done__" {
                return;
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the keyless table holds: any transaction applied twice (or half) shows.
const LOG_SUMMARY: &str = "SELECT coalesce(string_agg(note || '=' || n || '/' || s, ' ' ORDER BY note), '')
    FROM (SELECT note, count(*) n, sum(seq) s FROM log GROUP BY note) x";

fn streamed_transactions(source: &Cluster, slot: &str) -> i64 {
    source
        .psql(
            "app",
            &format!("SELECT coalesce(sum(stream_txns), 0) FROM pg_stat_replication_slots WHERE slot_name = '{slot}'"),
        )
        .parse()
        .unwrap()
}

fn slot_of(target: &Cluster, name: &str) -> String {
    target.psql("app", &format!("SELECT slot_name FROM pgferry.migration WHERE name = '{name}'"))
}

#[test]
fn streamed_transactions_arrive_exactly_once_from_15_to_15_and_18() {
    streamed_transactions_arrive_exactly_once(PgVersion::V15, &[(PgVersion::V15, "to15"), (PgVersion::V18, "to18")]);
}

#[test]
fn streamed_transactions_arrive_exactly_once_from_18_to_18() {
    streamed_transactions_arrive_exactly_once(PgVersion::V18, &[(PgVersion::V18, "to18")]);
}

fn streamed_transactions_arrive_exactly_once(from: PgVersion, to: &[(PgVersion, &'static str)]) {
    let source = streaming_source(from);
    let targets: Vec<(Cluster, &str)> = to
        .iter()
        .copied()
        .map(|(version, name)| {
            let target = Cluster::start(version);
            target.create_database("app");
            copy(&source, &target, name);
            (target, name)
        })
        .collect();
    // Fifty thousand rows in one transaction.
    source.psql(
        "app",
        "BEGIN;
         INSERT INTO big SELECT g, 1, repeat('x', 20) FROM generate_series(1000, 50999) g;
         INSERT INTO log SELECT g, 'one' FROM generate_series(1, 50000) g;
         COMMIT;",
    );
    // A subtransaction rolled back in the middle, another released.
    source.psql(
        "app",
        "BEGIN;
         INSERT INTO log SELECT g, 'two' FROM generate_series(1, 20000) g;
         SAVEPOINT s;
         INSERT INTO log SELECT g, 'rolled back' FROM generate_series(1, 20000) g;
         UPDATE big SET v = v + 100 WHERE id < 2000;
         ROLLBACK TO s;
         UPDATE big SET v = v + 1 WHERE id BETWEEN 1000 AND 20999;
         SAVEPOINT t;
         INSERT INTO log SELECT g, 'released' FROM generate_series(1, 5000) g;
         RELEASE t;
         COMMIT;",
    );
    // A whole transaction rolled back.
    source.psql(
        "app",
        "BEGIN;
         INSERT INTO log SELECT g, 'aborted' FROM generate_series(1, 30000) g;
         DELETE FROM big WHERE id > 40000;
         ROLLBACK;",
    );
    // Two transactions interleaved, the later one committing first.
    let (mut a, mut b) = (Session::open(&source), Session::open(&source));
    a.run("BEGIN; INSERT INTO log SELECT g, 'a' FROM generate_series(1, 20000) g;");
    b.run("BEGIN; INSERT INTO log SELECT g, 'b' FROM generate_series(1, 20000) g;");
    b.run("UPDATE big SET v = v + 10 WHERE id % 2 = 0;");
    a.run("DELETE FROM big WHERE id % 2 = 1 AND id % 7 = 0 AND id > 1000;");
    b.run("COMMIT;");
    a.run("INSERT INTO log SELECT g, 'a' FROM generate_series(20001, 30000) g; COMMIT;");
    let expected =
        "a=30000/450015000 b=20000/200010000 one=50000/1250025000 released=5000/12502500 two=20000/200010000";
    assert_eq!(source.psql("app", LOG_SUMMARY), expected);
    for (target, name) in &targets {
        assert_ok(&catch_up(&source, target, name));
        assert_eq!(target.psql("app", LOG_SUMMARY), expected, "{name}");
        assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "content differs for {name}");
        // They did arrive streamed: the source counts each streamed transaction
        // (its statistics reach the view within moments).
        let slot = slot_of(target, name);
        let deadline = Instant::now() + Duration::from_secs(20);
        while streamed_transactions(&source, &slot) < 4 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
        }
        assert!(streamed_transactions(&source, &slot) >= 4, "{name}: the source streamed too few transactions");
        // A rerun finds nothing more to apply.
        assert_ok(&catch_up(&source, target, name));
        assert_eq!(target.psql("app", LOG_SUMMARY), expected, "{name} after a rerun");
    }
}

/// PostgreSQL 15.18's walsender has been seen to fail decoding a TRUNCATE in a
/// transaction streamed in progress (`could not open relation with OID`,
/// `XX000`) where decoding it whole at its commit works. Such a failure, in the
/// middle of a streamed transaction whose first blocks are spooled, cannot be
/// produced on demand, so it is injected (`PGFERRY_FAULT`): change capture goes
/// on with each transaction sent whole at its commit, says so, and applies
/// every transaction exactly once.
#[test]
fn a_walsender_failing_to_decode_a_streamed_transaction_is_followed_on_without_streaming_15_to_15() {
    let source = streaming_source(PgVersion::V15);
    let target = copied_target(&source, PgVersion::V15);
    source.psql(
        "app",
        "BEGIN;
         INSERT INTO big SELECT g, 1, repeat('x', 20) FROM generate_series(1000, 30999) g;
         INSERT INTO log SELECT g, 'one' FROM generate_series(1, 30000) g;
         SAVEPOINT s;
         INSERT INTO log SELECT g, 'rolled back' FROM generate_series(1, 20000) g;
         ROLLBACK TO s;
         UPDATE big SET v = v + 1 WHERE id BETWEEN 1000 AND 20999;
         COMMIT;
         INSERT INTO log SELECT g, 'two' FROM generate_series(1, 20000) g;",
    );
    let (s, t) = (source.url("app"), target.url("app"));
    let args = ["follow", "--source", &s, "--target", &t, "--name", "main", "--until-caught-up"];
    let out = pgferry(&args, &[("PGFERRY_FAULT", "stream-decoding-fails:3")]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed decoding a transaction streamed in progress"), "{stderr}");
    assert!(stderr.contains("injected by PGFERRY_FAULT"), "the cause is named: {stderr}");
    let expected = "one=30000/450015000 two=20000/200010000";
    assert_eq!(source.psql("app", LOG_SUMMARY), expected);
    assert_eq!(target.psql("app", LOG_SUMMARY), expected);
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
    // The first session streamed the first transaction's blocks up to the
    // failure; the next decoded both transactions whole (spilled to the
    // source's disk, not streamed: 'two' would have streamed too). The
    // source's statistics reach the view within moments.
    let slot = slot_of(&target, "main");
    let stats = format!(
        "SELECT stream_txns || '/' || (spill_txns > 0) FROM pg_stat_replication_slots WHERE slot_name = '{slot}'"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while source.psql("app", &stats) != "1/true" && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(source.psql("app", &stats), "1/true", "streamed transactions / spilled after the failure");
    // A rerun (streaming again) finds nothing more to apply.
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(target.psql("app", LOG_SUMMARY), expected);
}

#[test]
fn killed_while_a_streamed_transaction_is_spooled_and_around_its_commit_nothing_is_lost_or_doubled_15_to_15() {
    killed_while_a_streamed_transaction_is_spooled_and_around_its_commit(PgVersion::V15);
}

#[test]
fn killed_while_a_streamed_transaction_is_spooled_and_around_its_commit_nothing_is_lost_or_doubled_15_to_18() {
    killed_while_a_streamed_transaction_is_spooled_and_around_its_commit(PgVersion::V18);
}

fn killed_while_a_streamed_transaction_is_spooled_and_around_its_commit(to: PgVersion) {
    let source = streaming_source(PgVersion::V15);
    let target = copied_target(&source, to);
    let mut open = Session::open(&source);
    open.run(
        "BEGIN;
         INSERT INTO log SELECT g, 'big' FROM generate_series(1, 50000) g;
         UPDATE big SET v = v + 1;",
    );
    // Past its changes so far.
    let past = source.psql("app", "SELECT pg_current_wal_lsn()");
    // The source streams it while it is still open: pgferry is killed after
    // spooling its second block; then, started again, after its first block
    // (the source streams it again from the start).
    exits_at_failpoint(
        spawn_follow(&source, &target, "main", &[("PGFERRY_FAILPOINT", "streamed-block-spooled:2")]),
        "streamed-block-spooled:2",
    );
    exits_at_failpoint(
        spawn_follow(&source, &target, "main", &[("PGFERRY_FAILPOINT", "streamed-block-spooled:1")]),
        "streamed-block-spooled:1",
    );
    // Running with it open while a small transaction commits after its first
    // changes: the applied position passes them (is acknowledged to the
    // source), yet after the kill the source streams the open one again from
    // its start (what follows proves it).
    let mut running = spawn_follow(&source, &target, "main", &[]);
    open.run("INSERT INTO log SELECT g, 'big' FROM generate_series(50001, 60000) g;");
    source.psql("app", "INSERT INTO log VALUES (0, 'small')");
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.psql("app", "SELECT count(*) FROM log") != "1" && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(target.psql("app", "SELECT count(*) FROM log"), "1", "the small one only, nothing of the open one");
    let applied = target.psql("app", "SELECT applied_lsn::text FROM pgferry.apply_progress");
    assert_eq!(source.psql("app", &format!("SELECT '{applied}'::pg_lsn > '{past}'::pg_lsn")), "t", "{applied}");
    let slot = slot_of(&target, "main");
    let confirmed =
        format!("SELECT confirmed_flush_lsn >= '{applied}' FROM pg_replication_slots WHERE slot_name = '{slot}'");
    let deadline = Instant::now() + Duration::from_secs(20);
    while source.psql("app", &confirmed) != "t" && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(source.psql("app", &confirmed), "t", "the slot was not told {applied}");
    running.kill().unwrap();
    running.wait().unwrap();
    open.run("COMMIT;");
    // Killed after applying it, before the target's commit; then just after.
    for failpoint in ["apply-before-commit:1", "apply-after-commit:1"] {
        exits_at_failpoint(spawn_follow(&source, &target, "main", &[("PGFERRY_FAILPOINT", failpoint)]), failpoint);
    }
    assert_eq!(target.psql("app", "SELECT count(*) FROM log"), "60001", "committed on the target by the last run");
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(target.psql("app", LOG_SUMMARY), "big=60000/1800030000 small=1/0");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// With DDL capture, a command inside a streamed transaction is replayed at its
/// place among the transaction's changes (the rows after it have the new column).
#[test]
fn a_command_inside_a_streamed_transaction_is_replayed_in_place() {
    let source = streaming_source(PgVersion::V15);
    let target = capturing_ddl(&source);
    // Statement by statement (psql sends each on its own), as an application would.
    Session::open(&source).run(
        "BEGIN;
         INSERT INTO big SELECT g, 1, 'before' FROM generate_series(1000, 30999) g;
         ALTER TABLE big ADD COLUMN extra int;
         UPDATE big SET extra = id WHERE id % 3 = 0;
         INSERT INTO big SELECT g, 2, 'after', -g FROM generate_series(31000, 50999) g;
         INSERT INTO log SELECT g, 'ddl' FROM generate_series(1, 20000) g;
         COMMIT;",
    );
    assert_ok(&catch_up(&source, &target, "ddl"));
    let extra = "SELECT count(extra) || '/' || sum(extra) FROM big";
    assert_eq!(target.psql("app", extra), source.psql("app", extra));
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
    let slot = slot_of(&target, "ddl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while streamed_transactions(&source, &slot) < 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    assert!(streamed_transactions(&source, &slot) >= 1, "the source did not stream it");
}

/// The source describes a table (and its user types) once per streamed
/// transaction, tagged with the subtransaction whose change needed it first:
/// when that subtransaction rolls back, the transaction's later changes to the
/// table come with no description of their own. A session that had not seen
/// the table before still applies them.
#[test]
fn a_table_first_described_in_a_rolled_back_subtransaction_is_still_known_15_to_18() {
    let source = streaming_source(PgVersion::V15);
    source.psql(
        "app",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE feel (id bigint PRIMARY KEY, m mood NOT NULL);",
    );
    let target = copied_target(&source, PgVersion::V18);
    // The first change of each table in this session is in a subtransaction
    // that rolls back (nested one level down for `feel`).
    source.psql(
        "app",
        "BEGIN;
         SAVEPOINT a;
         INSERT INTO log SELECT g, 'rolled back' FROM generate_series(1, 20000) g;
         ROLLBACK TO a;
         INSERT INTO log SELECT g, 'kept' FROM generate_series(1, 20000) g;
         SAVEPOINT b;
         UPDATE big SET v = 1 WHERE id = 1;
         SAVEPOINT c;
         INSERT INTO feel SELECT g, 'sad' FROM generate_series(1, 5000) g;
         RELEASE c;
         ROLLBACK TO b;
         INSERT INTO feel SELECT g, 'happy' FROM generate_series(1, 5000) g;
         UPDATE big SET v = 2 WHERE id = 2;
         COMMIT;",
    );
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(target.psql("app", LOG_SUMMARY), "kept=20000/200010000");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// The peak resident memory (VmHWM, kB) of `child` until it ends, and its output.
fn peak_memory_kb(mut child: Child) -> (u64, Output) {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak = peak.max(kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("peak resident memory {peak} kB");
    (peak, child.wait_with_output().unwrap())
}

fn spawn_catch_up(source: &Cluster, target: &Cluster, name: &str) -> Child {
    let (s, t) = (source.url("app"), target.url("app"));
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &s, "--target", &t, "--name", name, "--until-caught-up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgferry follow")
}

/// A streamed transaction's size shows on disk, not in pgferry's memory: a
/// million and a half rows (their set statements were all held in flight:
/// 290 MB), then four thousand rows of 100 kB values each (400 MB of text,
/// though the source compresses them to little) apply with pgferry's peak
/// resident memory under 200 MB (about 100 MB in a debug build).
#[test]
fn a_large_streamed_transaction_applies_in_bounded_memory_15_to_18() {
    let source = streaming_source(PgVersion::V15);
    let target = copied_target(&source, PgVersion::V18);
    source.psql(
        "app",
        "BEGIN;
         INSERT INTO big SELECT g, g % 1000, md5(g::text) FROM generate_series(1000, 1500999) g;
         COMMIT;",
    );
    let (peak, out) = peak_memory_kb(spawn_catch_up(&source, &target, "main"));
    assert_ok(&out);
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
    assert!(peak < 200 * 1024, "1.5 million rows: peak resident memory {peak} kB");
    source.psql(
        "app",
        "BEGIN;
         INSERT INTO big SELECT g, 0, repeat(md5(g::text), 3125) FROM generate_series(1600000, 1603999) g;
         COMMIT;",
    );
    let (peak, out) = peak_memory_kb(spawn_catch_up(&source, &target, "main"));
    assert_ok(&out);
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
    assert!(peak < 200 * 1024, "4,000 rows of 100 kB: peak resident memory {peak} kB");
}

/// A cutover while a streamed transaction is open on the source: the fence
/// ends its session, so the source aborts it (the stream says so); one that
/// committed just before the fence, not yet applied, is drained. `validate`
/// run while one is open compares only what committed. The target ends equal,
/// without the aborted transaction's rows.
#[test]
fn a_cutover_with_a_streamed_transaction_open_drains_what_committed_and_drops_the_aborted_15_to_18() {
    let source = streaming_source(PgVersion::V15);
    let target = copied_target(&source, PgVersion::V18);
    assert_ok(&catch_up(&source, &target, "main"));
    let mut open = Session::open(&source);
    open.run("BEGIN; INSERT INTO log SELECT g, 'open' FROM generate_series(1, 30000) g; UPDATE big SET v = -1;");
    let (s, t) = (source.url("app"), target.url("app"));
    let validate = pgferry(&["validate", "--source", &s, "--target", &t, "--name", "main"], &[]);
    assert_ok(&validate);
    // Committed just before the cutover, so the drain applies it.
    source.psql("app", "INSERT INTO log SELECT g, 'committed' FROM generate_series(1, 40000) g");
    let out = pgferry(
        &[
            "cutover",
            "--source",
            &s,
            "--target",
            &t,
            "--name",
            "main",
            "--switch-command",
            "true",
            "--keyless-tables-are-insert-only",
        ],
        &[],
    );
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Downtime (fence to switch):"), "{stdout}");
    drop(open);
    assert_eq!(source.psql("app", LOG_SUMMARY), "committed=40000/800020000");
    assert_eq!(target.psql("app", LOG_SUMMARY), "committed=40000/800020000");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// With no usable temporary directory a streamed transaction cannot be
/// spooled: change capture stops with the directory named and how to fix it,
/// having applied nothing of the streamed one; a rerun with room applies it.
#[test]
fn a_streamed_transaction_without_a_usable_temporary_directory_stops_clearly_and_a_rerun_applies_it() {
    let source = streaming_source(PgVersion::V15);
    let target = copied_target(&source, PgVersion::V18);
    source.psql("app", "INSERT INTO log VALUES (1, 'before')");
    source.psql("app", "INSERT INTO log SELECT g, 'streamed' FROM generate_series(1, 30000) g");
    let missing = tempfile::tempdir().unwrap().path().join("gone");
    let (s, t) = (source.url("app"), target.url("app"));
    let out = pgferry(
        &["follow", "--source", &s, "--target", &t, "--name", "main", "--until-caught-up"],
        &[("TMPDIR", missing.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(missing.to_str().unwrap()) && stderr.contains("TMPDIR"), "{stderr}");
    // The small one's batch may or may not have committed before the stop.
    assert!(!target.psql("app", LOG_SUMMARY).contains("streamed"), "nothing of the streamed one");
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(target.psql("app", LOG_SUMMARY), "before=1/1 streamed=30000/450015000");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// Prepared transactions streamed before their PREPARE: nothing of them is
/// applied while they are prepared (the slot decodes without two-phase), the
/// one committed later arrives whole at its COMMIT PREPARED (after a kill
/// while they were prepared, and the applied position past their changes),
/// the one rolled back never does.
#[test]
fn a_streamed_prepared_transaction_arrives_at_commit_prepared_only_15_to_15() {
    let source = Cluster::builder(PgVersion::V15)
        .setting("logical_decoding_work_mem", "64kB")
        .setting("max_prepared_transactions", "10")
        .start();
    source.create_database("app");
    source.psql("app", "CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text); CREATE TABLE log (seq bigint, note text); INSERT INTO big SELECT g, 0, 'seed' FROM generate_series(1, 100) g;");
    let target = copied_target(&source, PgVersion::V15);
    source.psql(
        "app",
        "BEGIN; INSERT INTO log SELECT g, 'prepared' FROM generate_series(1, 30000) g; UPDATE big SET v = v + 1;
         PREPARE TRANSACTION 'p1';
         BEGIN; INSERT INTO log SELECT g, 'rolled back' FROM generate_series(1, 30000) g; INSERT INTO big SELECT g, 9, 'p2' FROM generate_series(1000, 9999) g;
         PREPARE TRANSACTION 'p2';
         INSERT INTO log VALUES (1, 'plain');",
    );
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(target.psql("app", LOG_SUMMARY), "plain=1/1", "nothing of a prepared transaction");
    // Past their changes now, the source sends them again only at their end.
    let mut running = spawn_follow(&source, &target, "main", &[]);
    thread::sleep(Duration::from_secs(2));
    running.kill().unwrap();
    running.wait().unwrap();
    source.psql("app", "COMMIT PREPARED 'p1'");
    source.psql("app", "ROLLBACK PREPARED 'p2'");
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(target.psql("app", LOG_SUMMARY), "plain=1/1 prepared=30000/450015000");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// With DDL capture, a command inside a streamed transaction's rolled-back
/// savepoint, or inside a streamed transaction rolled back whole, is never
/// replayed; the one after the savepoint is.
#[test]
fn a_command_in_a_rolled_back_part_of_a_streamed_transaction_is_not_replayed() {
    let source = streaming_source(PgVersion::V15);
    let target = capturing_ddl(&source);
    let mut session = Session::open(&source);
    session.run(
        "BEGIN;
         INSERT INTO big SELECT g, 1, 'before' FROM generate_series(1000, 20999) g;
         SAVEPOINT a;
         ALTER TABLE big ADD COLUMN gone int;
         UPDATE big SET gone = 1 WHERE id < 5000;
         SAVEPOINT b;
         ALTER TABLE log ADD COLUMN gone_too int;
         INSERT INTO log SELECT g, 'rolled back', g FROM generate_series(1, 5000) g;
         RELEASE b;
         ROLLBACK TO a;
         ALTER TABLE big ADD COLUMN kept text;
         UPDATE big SET kept = 'k' || id WHERE id % 2 = 0;
         INSERT INTO log SELECT g, 'kept' FROM generate_series(1, 20000) g;
         COMMIT;",
    );
    session.run(
        "BEGIN;
         ALTER TABLE log ADD COLUMN never int;
         INSERT INTO log SELECT g, 'aborted', g FROM generate_series(1, 20000) g;
         ROLLBACK;",
    );
    source.psql("app", "INSERT INTO big VALUES (-1, -1, 'after', 'k')");
    assert_ok(&catch_up(&source, &target, "ddl"));
    let columns = "SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, ordinal_position)
                   FROM information_schema.columns WHERE table_schema = 'public'";
    assert_eq!(target.psql("app", columns), source.psql("app", columns));
    assert_eq!(target.psql("app", LOG_SUMMARY), "kept=20000/200010000");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// `follow` under an open-files limit of 24 (`prlimit`), with `limit` the hard one.
fn catch_up_limited(source: &Cluster, target: &Cluster, name: &str, hard: u32) -> Output {
    let (s, t) = (source.url("app"), target.url("app"));
    Command::new("prlimit")
        .arg(format!("--nofile=24:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &s, "--target", &t, "--name", name, "--until-caught-up"])
        .output()
        .expect("run pgferry under prlimit")
}

/// Each transaction the source streams at once holds a spool file open: thirty
/// of them under a soft open-files limit of 24 are applied all the same (the
/// soft limit is raised to the hard one); where the hard limit is that low
/// too, change capture stops saying which limit to raise, not blaming TMPDIR.
#[test]
fn many_streamed_transactions_open_at_once_pass_a_low_soft_open_files_limit() {
    let source = streaming_source(PgVersion::V15);
    let target = copied_target(&source, PgVersion::V15);
    let mut sessions: Vec<Session> = (0..30)
        .map(|i| {
            let mut session = Session::open(&source);
            session.run(&format!("BEGIN; INSERT INTO log SELECT g, 's{i}' FROM generate_series(1, 3000) g;"));
            session
        })
        .collect();
    let out = catch_up_limited(&source, &target, "main", 24);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("open-files limit") && !stderr.contains("TMPDIR"), "{stderr}");
    assert_ok(&catch_up_limited(&source, &target, "main", 4096));
    for session in &mut sessions {
        session.run("COMMIT;");
    }
    assert_ok(&catch_up_limited(&source, &target, "main", 4096));
    let expected = source.psql("app", LOG_SUMMARY);
    assert_eq!(expected.matches("=3000/4501500").count(), 30, "{expected}");
    assert_eq!(target.psql("app", LOG_SUMMARY), expected);
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}
