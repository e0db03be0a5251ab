//! A network that stops answering: a TCP proxy ([`Proxy`]) between pgferry and
//! one server goes half-open (nothing forwarded, every socket kept open) while
//! `follow` runs under a write load. Change capture must notice within twice the
//! source's `wal_sender_timeout`, say so once, recover when the network heals,
//! and end with the target equal to the source, nothing lost or applied twice;
//! `status` must answer within seconds and name the side it cannot reach.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion, Proxy, Writer};

/// The source's `wal_sender_timeout` in these tests.
const WAL_SENDER_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack on top of twice the timeout before a dead connection must be
/// reported: several times the deadline itself, so a slow machine does not fail
/// the test, while a pgferry that waits for the network to heal does.
const SLACK: Duration = Duration::from_secs(6);
/// How long the network stays cut: well past the deadline, long enough for
/// reconnection attempts to fail and back off.
const CUT_FOR: Duration = Duration::from_secs(14);

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
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

/// Source (with a short `wal_sender_timeout`) and target, a keyed table and
/// a keyless insert-only one, copied.
fn copied_pair() -> (Cluster, Cluster) {
    let source = Cluster::builder(PgVersion::V15).setting("wal_sender_timeout", "2s").start();
    let target = Cluster::start(PgVersion::V15);
    for c in [&source, &target] {
        c.create_database("app");
    }
    source.psql(
        "app",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL);
         CREATE TABLE audit (seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
         INSERT INTO t SELECT g, 'start' FROM generate_series(1, 1000) g",
    );
    let bin = source.version().bin_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &source.url("app"), "--target", &target.url("app")])
        .env("PGFERRY_PG_BIN", bin)
        .output()
        .expect("run pgferry copy");
    assert_ok(&out);
    (source, target)
}

/// Inserts, updates and deletes on the keyed table, and a keyless insert
/// whose doubling would show.
fn round(n: u64) -> String {
    format!(
        "BEGIN; INSERT INTO t VALUES ({id}, 'new {n}'); UPDATE t SET v = 'upd {n}' WHERE id = {hot};
         DELETE FROM t WHERE id = {gone}; INSERT INTO audit (seq) VALUES ({n}); COMMIT;",
        id = 1000 + n,
        hot = 1 + n % 500,
        gone = 500 + n % 400,
    )
}

/// `url` through the proxy, giving up on a connection after 2 s.
fn through(proxy: &Proxy, cluster: &Cluster) -> String {
    format!("{}&connect_timeout=2", proxy.url(&cluster.url("app"), cluster.port()))
}

/// `follow` in the background, its stderr lines kept with the time each arrived.
struct Follow {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Follow {
    fn spawn(source: &str, target: &str) -> Follow {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
            .args(["follow", "--source", source, "--target", target])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgferry follow");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&lines);
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push((Instant::now(), line));
            }
        });
        Follow { child, lines }
    }

    fn containing(&self, text: &str) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().iter().filter(|(_, l)| l.contains(text)).cloned().collect()
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// The first line containing `text` that arrived after `after`, waiting up to `within`.
    fn line_after(&self, text: &str, after: Instant, within: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self.containing(text).into_iter().find(|(at, _)| *at >= after) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Whether the target applied everything the source committed up to now (the
/// insert position: with `synchronous_commit = off` a commit can lie past the
/// write position that `pg_current_wal_lsn` shows).
fn applied_past_now<'a>(source: &Cluster, target: &'a Cluster) -> impl FnMut() -> bool + 'a {
    let now = source.psql("app", "SELECT pg_current_wal_insert_lsn()");
    move || {
        target
            .try_psql(
                "app",
                &format!("SELECT coalesce(max(applied_lsn) >= '{now}', false) FROM pgferry.apply_progress"),
            )
            .is_ok_and(|t| t == "t")
    }
}

/// How the network comes back.
#[derive(PartialEq)]
enum Heal {
    /// Every connection at once.
    All,
    /// New connections first; the ones open during the cut stay cut off until
    /// change capture recovered over new ones.
    NewConnectionsFirst,
}

/// Cuts the network on one side while follow runs under load; checks the
/// report, the recovery and the data.
fn cut_and_heal(side: &str, expected_cause: &str, heal: Heal) {
    let (source, target) = copied_pair();
    let proxied = if side == "source" { &source } else { &target };
    let proxy = Proxy::start(proxied.port());
    let (s, t) = match side {
        "source" => (through(&proxy, &source), target.url("app")),
        _ => (source.url("app"), through(&proxy, &target)),
    };
    let writer = Writer::start(source.url("app"), round);
    let follow = Follow::spawn(&s, &t);
    assert!(wait_for(Duration::from_secs(30), applied_past_now(&source, &target)), "{}", follow.output());

    let cut = Instant::now();
    proxy.blackhole();
    let noticed = follow.line_after("reconnecting cause=", cut, CUT_FOR);
    let Some((at, line)) = noticed else {
        panic!("the half-open {side} was not noticed in {CUT_FOR:?}:\n{}", follow.output())
    };
    assert!(
        at - cut < WAL_SENDER_TIMEOUT * 2 + SLACK,
        "noticed only after {:?}: {line}\n{}",
        at - cut,
        follow.output()
    );
    assert!(line.contains(expected_cause), "{line}");
    thread::sleep(CUT_FOR.saturating_sub(cut.elapsed()));

    if heal == Heal::NewConnectionsFirst {
        proxy.heal_new_connections();
        assert!(
            wait_for(Duration::from_secs(30), applied_past_now(&source, &target)),
            "change capture did not recover while its old connections were still cut off:\n{}",
            follow.output()
        );
    }
    proxy.heal();
    assert!(
        wait_for(Duration::from_secs(30), applied_past_now(&source, &target)),
        "change capture did not recover after the network healed:\n{}",
        follow.output()
    );
    let rounds = writer.stop();
    assert!(wait_for(Duration::from_secs(30), applied_past_now(&source, &target)), "{}", follow.output());
    assert!(rounds > 20, "the writer wrote {rounds} rounds");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "{}", follow.output());
    let audit = "SELECT count(*) || '/' || count(DISTINCT seq) FROM audit";
    assert_eq!(source.psql("app", audit), target.psql("app", audit), "a transaction lost or applied twice");
    assert_eq!(
        follow.containing("reconnecting cause=").len(),
        1,
        "one report for the episode, not one per attempt:\n{}",
        follow.output()
    );
}

#[test]
fn a_half_open_source_is_noticed_within_twice_wal_sender_timeout_and_change_capture_recovers() {
    cut_and_heal("source", "the source sent nothing", Heal::All);
}

#[test]
fn a_half_open_target_is_noticed_and_change_capture_recovers() {
    cut_and_heal("target", "the target did not answer", Heal::All);
}

/// The apply session given up for dead still holds its open batch (row locks,
/// and its statements held in the network). The next session must end it
/// before reading where to start: otherwise it waits on those locks, and when
/// the old connection heals, its batch commits behind the new session's back
/// and is applied twice.
#[test]
fn an_apply_session_still_cut_off_is_ended_before_the_next_one_starts() {
    cut_and_heal("target", "the target did not answer", Heal::NewConnectionsFirst);
}

/// A quiet source sends no changes: the keepalives it owes a live connection
/// must keep change capture from taking it for dead.
#[test]
fn a_quiet_source_is_not_taken_for_a_dead_one() {
    let (source, target) = copied_pair();
    let follow = Follow::spawn(&source.url("app"), &target.url("app"));
    let started = Instant::now();
    assert!(
        follow.line_after("following the source", started, Duration::from_secs(20)).is_some(),
        "{}",
        follow.output()
    );
    thread::sleep(WAL_SENDER_TIMEOUT * 8);
    assert!(follow.containing("reconnecting").is_empty(), "{}", follow.output());
    source.psql("app", "INSERT INTO t VALUES (0, 'after the quiet')");
    assert!(wait_for(Duration::from_secs(20), applied_past_now(&source, &target)), "{}", follow.output());
    assert_eq!(target.psql("app", "SELECT v FROM t WHERE id = 0"), "after the quiet");
}

/// A slow network is not a dead one; connections dropped outright are
/// reconnected, reported once.
#[test]
fn a_slow_source_is_waited_on_and_dropped_connections_are_reconnected() {
    let (source, target) = copied_pair();
    let proxy = Proxy::start(source.port());
    let writer = Writer::start(source.url("app"), round);
    let follow = Follow::spawn(&through(&proxy, &source), &target.url("app"));
    assert!(wait_for(Duration::from_secs(30), applied_past_now(&source, &target)), "{}", follow.output());

    proxy.delay(Duration::from_millis(500));
    thread::sleep(WAL_SENDER_TIMEOUT * 5);
    assert!(follow.containing("reconnecting").is_empty(), "a slow network taken for a dead one:\n{}", follow.output());
    proxy.heal();

    let dropped = Instant::now();
    proxy.drop_connections();
    assert!(
        follow.line_after("reconnecting cause=", dropped, Duration::from_secs(20)).is_some(),
        "{}",
        follow.output()
    );
    let rounds = writer.stop();
    assert!(wait_for(Duration::from_secs(30), applied_past_now(&source, &target)), "{}", follow.output());
    assert!(rounds > 20, "the writer wrote {rounds} rounds");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "{}", follow.output());
    let audit = "SELECT count(*) || '/' || count(DISTINCT seq) FROM audit";
    assert_eq!(source.psql("app", audit), target.psql("app", audit), "a transaction lost or applied twice");
    assert_eq!(follow.containing("reconnecting cause=").len(), 1, "{}", follow.output());
}

/// `status` through a blackholed proxy, on either side.
#[test]
fn status_names_the_side_it_cannot_reach_within_seconds() {
    let (source, target) = copied_pair();
    for side in ["source", "target"] {
        let proxied = if side == "source" { &source } else { &target };
        let proxy = Proxy::start(proxied.port());
        let (s, t) = match side {
            "source" => (through(&proxy, &source), target.url("app")),
            _ => (source.url("app"), through(&proxy, &target)),
        };
        let before = pgferry(&["status", "--source", &s, "--target", &t]);
        assert_ok(&before);
        proxy.blackhole();
        let started = Instant::now();
        let out = pgferry(&["status", "--source", &s, "--target", &t]);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{side}: {stderr}");
        assert!(took < Duration::from_secs(20), "{side}: status took {took:?}");
        assert!(stderr.contains(&format!("the {side} is unreachable")), "{stderr}");
        assert!(stderr.contains("no answer within 2 s"), "{stderr}");
    }
}
