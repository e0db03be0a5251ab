//! A cutover (or rehearse) while `pgferry start` runs: the cutover asks through
//! the target (`pgferry.handover`), start ends its change capture after the
//! transaction at hand and hands the runner lock over; a rehearsal gets it and
//! start resumes afterwards; a requester killed while it waits leaves start
//! running; a start still copying refuses, and a holder that is not a start
//! never answers: both leave everything as it was.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion};

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgferry")
}

fn pair() -> (Cluster, Cluster) {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    // Roles are the server's: the operator makes them on the target (the cutover's gate compares them).
    target.psql("app", "CREATE ROLE app LOGIN PASSWORD 'app-pw'");
    source.psql(
        "app",
        "CREATE ROLE app LOGIN PASSWORD 'app-pw';
         CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL);
         GRANT ALL ON orders TO app;
         INSERT INTO orders SELECT g, 'before ' || g FROM generate_series(1, 2000) g;",
    );
    (source, target)
}

/// What the fence changes: the application's CONNECT and the database's settings.
const FENCE: &str = "SELECT has_database_privilege('app', 'app', 'CONNECT') || ',' ||
    coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting
              WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = 'app')), 'none')";

/// No cutover journaled on the target.
const NO_CUTOVER: &str = "SELECT to_regclass('pgferry.cutover') IS NULL OR NOT EXISTS (SELECT FROM pgferry.cutover)";

fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn orders(c: &Cluster) -> String {
    c.psql("app", "SELECT count(*) || ':' || md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o")
}

fn count(c: &Cluster) -> i64 {
    c.psql("app", "SELECT count(*) FROM orders").parse().unwrap()
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

/// The application: inserts (and updates the row before) as role `app` until its
/// session is ended (the fence) or it is told to stop; the ids it saw committed.
struct Application {
    stop: Arc<AtomicBool>,
    committed: Arc<Mutex<Vec<i64>>>,
    handle: JoinHandle<()>,
}

impl Application {
    fn start(url: String, first_id: i64) -> Application {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let (stopping, seen) = (Arc::clone(&stop), Arc::clone(&committed));
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                let mut id = first_id;
                while !stopping.load(Ordering::Relaxed) {
                    id += 1;
                    let sql = format!(
                        "INSERT INTO orders VALUES ({id}, 'live {id}'); UPDATE orders SET note = note || '+' WHERE id = {}",
                        id - 1
                    );
                    if client.batch_execute(&sql).await.is_err() {
                        break;
                    }
                    seen.lock().unwrap().push(id);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        });
        Application { stop, committed, handle }
    }

    fn committed(&self) -> usize {
        self.committed.lock().unwrap().len()
    }

    fn ended_by_itself(&self) -> bool {
        self.handle.is_finished()
    }

    fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap();
        Arc::try_unwrap(self.committed).unwrap().into_inner().unwrap()
    }
}

/// Change capture applies: the target's count passes what the source had a moment ago.
fn applying(source: &Cluster, target: &Cluster) {
    let now = count(source);
    eventually("change capture applies the application's rows", Duration::from_secs(60), || count(target) >= now);
}

#[test]
fn a_cutover_takes_over_from_a_running_start_under_writes_and_a_rehearsal_hands_back() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    let application = Application::start(source.url_as("app", "app-pw", "app"), 100_000);
    let mut start = spawn(&["start", "--source", &s, "--target", &t, "--service"], &[]);
    eventually("change capture started", Duration::from_secs(120), || {
        target.try_psql("app", "SELECT applied_lsn FROM pgferry.apply_progress").is_ok_and(|r| !r.is_empty())
    });
    applying(&source, &target);

    // A rehearsal from another process gets the runner lock, and start resumes after it.
    let out = pgferry(&["rehearse", "--source", &s, "--target", &t]);
    assert!(matches!(out.status.code(), Some(0 | 4)), "{}", text(&out));
    assert!(text(&out).contains("handed over by the running pgferry start"), "{}", text(&out));
    assert!(alive(&mut start), "start goes on after a rehearsal");
    applying(&source, &target);

    // A cutover killed while it waits for the lock: start takes the lock again and goes on.
    let dir = tempfile::tempdir().unwrap();
    let pause = format!("handover-requested:{}", dir.path().display());
    let mut waiting = spawn(&["cutover", "--source", &s, "--target", &t], &[("PGFERRY_PAUSE", &pause)]);
    eventually("the request is written", Duration::from_secs(30), || {
        dir.path().join("handover-requested.reached").exists()
    });
    eventually("start accepts it", Duration::from_secs(30), || {
        target.psql("app", "SELECT count(*) FROM pgferry.handover WHERE answer = 'accepted'") == "1"
    });
    waiting.kill().unwrap();
    waiting.wait().unwrap();
    eventually("start withdraws the dead requester's request", Duration::from_secs(30), || {
        target.psql("app", "SELECT count(*) FROM pgferry.handover") == "0"
    });
    assert!(alive(&mut start), "start keeps running");
    applying(&source, &target);
    assert_eq!(target.psql("app", NO_CUTOVER), "t", "nothing of a cutover happened");
    assert!(!application.ended_by_itself(), "the application was never fenced");

    // A cutover that took over and then rolls back says that change capture is not running.
    let out = pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "false"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("change capture is NOT running"), "{}", text(&out));
    assert!(text(&out).contains("run pgferry start (or pgferry follow) again"), "{}", text(&out));
    let ended = start.wait_with_output().unwrap();
    assert_eq!(ended.status.code(), Some(0), "{}", text(&ended));
    assert!(text(&ended).contains("if that cutover rolls back, run pgferry start again"), "{}", text(&ended));
    assert_eq!(source.psql("app", FENCE), "true,none", "rolled back: the source unfenced");
    // The fence ended the application's session; it connects again.
    let mut committed = application.stop();
    let application = Application::start(source.url_as("app", "app-pw", "app"), 500_000);
    let start = spawn(&["start", "--source", &s, "--target", &t, "--service"], &[]);
    applying(&source, &target);

    // The dry run while start runs: it would take over, not refuse.
    let planned = pgferry(&["cutover", "--source", &s, "--target", &t, "--dry-run"]);
    assert!(planned.status.success(), "{}", text(&planned));
    assert!(text(&planned).contains("take over the runner lock from the process holding it"), "{}", text(&planned));

    // The cutover proper: start hands over, ends with exit 0 and says who took over.
    let before = application.committed();
    let out = pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("taken over from the running pgferry start"), "{}", text(&out));
    // The application's one session; none of start's, nor the drain's (#18: it runs across the fence).
    assert!(text(&out).contains("; 1 session(s) ended."), "{}", text(&out));
    let started = start.wait_with_output().unwrap();
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    assert!(text(&started).contains("change capture stopped: the cutover (pid"), "{}", text(&started));
    assert!(text(&started).contains("took over"), "{}", text(&started));
    eventually("the fence ended the application's session", Duration::from_secs(10), || application.ended_by_itself());
    let after = application.stop();
    assert!(after.len() > before, "the application wrote up to the fence");
    committed.extend(after);
    // Every row the application saw committed is on the target, none twice, the same rows.
    let ids: Vec<String> = committed.iter().map(ToString::to_string).collect();
    let missing = target.psql(
        "app",
        &format!(
            "SELECT count(*) FROM unnest('{{{}}}'::bigint[]) i WHERE NOT EXISTS (SELECT 1 FROM orders WHERE id = i)",
            ids.join(",")
        ),
    );
    assert_eq!(missing, "0", "no committed row lost");
    assert_eq!(orders(&target), orders(&source), "the same rows on both sides");
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.handover"), "0", "no request left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_still_copying_refuses_and_a_holder_that_is_not_a_start_never_answers() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    // Held on a target where nothing of pgferry exists yet: refused at once, and
    // the cutover creates nothing there (no state, no request).
    let early = target.connect("app").await;
    early.execute("SELECT pg_advisory_lock(hashtext('pgferry'), hashtext('main'))", &[]).await.unwrap();
    let out = pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot hand it over"), "{}", text(&out));
    assert_eq!(target.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");
    drop(early);
    let dir = tempfile::tempdir().unwrap();
    let pause = format!("copy-before-lock:{}", dir.path().display());
    let start = spawn(&["start", "--source", &s, "--target", &t, "--service"], &[("PGFERRY_PAUSE", &pause)]);
    eventually("the copy is under way", Duration::from_secs(60), || {
        dir.path().join("copy-before-lock.reached").exists()
    });
    let fenced_before = source.psql("app", FENCE);
    let out = pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("has not finished copying"), "{}", text(&out));
    assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.handover"), "0", "the request was withdrawn");
    assert_eq!(target.psql("app", NO_CUTOVER), "t", "nothing of a cutover happened");
    assert_eq!(source.psql("app", FENCE), fenced_before, "the source was not fenced");
    // The copy goes on to change capture as if nothing had been asked.
    std::fs::write(dir.path().join("copy-before-lock.go"), b"").unwrap();
    eventually("change capture started", Duration::from_secs(120), || {
        target.try_psql("app", "SELECT applied_lsn FROM pgferry.apply_progress").is_ok_and(|r| !r.is_empty())
    });
    Command::new("kill").args(["-TERM", &start.id().to_string()]).status().unwrap();
    let out = start.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(target.fingerprints("app"), source.fingerprints("app"));

    // A holder of the lock that is not a start (here a plain session) never answers:
    // the cutover withdraws its request after its wait and changes nothing.
    let holder = target.connect("app").await;
    holder.execute("SELECT pg_advisory_lock(hashtext('pgferry'), hashtext('main'))", &[]).await.unwrap();
    // Ctrl-C while it waits: the request is withdrawn at once.
    let waiting = spawn(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"], &[]);
    eventually("the request is written", Duration::from_secs(30), || {
        target.psql("app", "SELECT count(*) FROM pgferry.handover") == "1"
    });
    Command::new("kill").args(["-INT", &waiting.id().to_string()]).status().unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("the request was withdrawn, nothing was changed"), "{}", text(&out));
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.handover"), "0");
    let out = pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("did not answer the handover request"), "{}", text(&out));
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.handover"), "0", "the request was withdrawn");
    assert_eq!(target.psql("app", NO_CUTOVER), "t");
    assert_eq!(source.psql("app", FENCE), fenced_before, "the source was not fenced");
}

/// A cutover that asks while a rehearsal holds the lock: start accepts it, and once
/// the rehearsal ends the cutover gets the lock (start does not resume over it).
#[test]
fn a_cutover_asking_while_a_rehearsal_holds_the_lock_takes_over_after_it() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    let start = spawn(&["start", "--source", &s, "--target", &t, "--service"], &[]);
    eventually("change capture started", Duration::from_secs(120), || {
        target.try_psql("app", "SELECT applied_lsn FROM pgferry.apply_progress").is_ok_and(|r| !r.is_empty())
    });
    let dir = tempfile::tempdir().unwrap();
    let pause = format!("rehearse-after-lock:{}", dir.path().display());
    let rehearse = spawn(&["rehearse", "--source", &s, "--target", &t], &[("PGFERRY_PAUSE", &pause)]);
    eventually("the rehearsal holds the lock", Duration::from_secs(30), || {
        dir.path().join("rehearse-after-lock.reached").exists()
    });
    let cutover = spawn(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true"], &[]);
    eventually("start accepts the cutover's request too", Duration::from_secs(30), || {
        target.psql("app", "SELECT count(*) FROM pgferry.handover WHERE command = 'cutover' AND answer = 'accepted'")
            == "1"
    });
    source.psql("app", "INSERT INTO orders SELECT g, 'during the rehearsal ' || g FROM generate_series(3001, 3100) g");
    std::fs::write(dir.path().join("rehearse-after-lock.go"), b"").unwrap();
    let rehearsed = rehearse.wait_with_output().unwrap();
    assert!(matches!(rehearsed.status.code(), Some(0 | 4)), "{}", text(&rehearsed));
    let cut = cutover.wait_with_output().unwrap();
    assert!(cut.status.success(), "{}", text(&cut));
    let started = start.wait_with_output().unwrap();
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    assert!(text(&started).contains("change capture stopped: the cutover (pid"), "{}", text(&started));
    assert_eq!(orders(&target), orders(&source), "the same rows on both sides");
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.handover"), "0", "no request left behind");
}

/// A start that accepted but does not let go in time (paused right after its
/// answer): the cutover gives up at --handover-timeout with nothing changed, and
/// start, finding the requester gone, takes the migration back and goes on.
#[test]
fn a_cutover_that_gives_up_waiting_leaves_start_following() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    let dir = tempfile::tempdir().unwrap();
    let pause = format!("handover-accepted:{}", dir.path().display());
    let mut start = spawn(&["start", "--source", &s, "--target", &t, "--service"], &[("PGFERRY_PAUSE", &pause)]);
    eventually("change capture started", Duration::from_secs(120), || {
        target.try_psql("app", "SELECT applied_lsn FROM pgferry.apply_progress").is_ok_and(|r| !r.is_empty())
    });
    let out =
        pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true", "--handover-timeout", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("did not release migration main's runner lock within 3 s"), "{}", text(&out));
    assert!(dir.path().join("handover-accepted.reached").exists(), "start had accepted");
    assert_eq!(target.psql("app", "SELECT count(*) FROM pgferry.handover"), "0", "the request was withdrawn");
    assert_eq!(target.psql("app", NO_CUTOVER), "t");
    assert_eq!(source.psql("app", FENCE), "true,none", "the source was not fenced");
    std::fs::write(dir.path().join("handover-accepted.go"), b"").unwrap();
    source.psql("app", "INSERT INTO orders SELECT g, 'after ' || g FROM generate_series(5001, 5100) g");
    applying(&source, &target);
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(&mut start), "start took the migration back and goes on");
    source.psql("app", "INSERT INTO orders SELECT g, 'later ' || g FROM generate_series(5101, 5200) g");
    applying(&source, &target);
    Command::new("kill").args(["-TERM", &start.id().to_string()]).status().unwrap();
    let out = start.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("change capture resumes"), "{}", text(&out));
    assert_eq!(orders(&target), orders(&source));
}
