//! A randomized lifecycle: pgferry's commands (start, follow for a while, follow
//! until caught up, validate, rehearse, cutover with a switch command, abort,
//! cleanup), some of them sent SIGINT, SIGTERM or SIGKILL at a random moment, in
//! a random order, while an application writes to the source the whole time.
//! After every command the invariants the operator relies on are checked:
//!
//! - the source is fenced exactly when the source's journal (`pgferry.source_fence`)
//!   holds the fence's reason: no fence left up without one, none recorded but down;
//! - a fenced source takes no write of the application's role, and once the
//!   switch command ran (the application may point at the target) the old source
//!   takes none either: at most one side is writable for the application;
//! - after a completed cutover, every row the application saw committed on the
//!   source is on the target, and both hold the same rows;
//! - after a completed cutover, every command that would move data from the old
//!   source again (start, copy, follow, rehearse, validate --repair, seed
//!   prepare, start --seeded) exits 1 saying the migration was cut over, and
//!   changes nothing on either side (slots, publications, fence, journals).
//!
//! The operator's part is played truthfully: asked whether the switch ran, the
//! test answers from the switch command's own mark. A migration that ended
//! (aborted, or cut over and cleaned up) is started again on a fresh target after
//! the old source is given back to the application (`abort --force`). Every run
//! ends with a cutover brought to completion, so the rows are checked at least once.
//!
//! The seed is printed; `PGFERRY_LIFECYCLE_SEED=<seed>` replays a run, and
//! `PGFERRY_LIFECYCLE_STEPS` changes the number of random steps (default 18).

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion};

/// A small deterministic generator (splitmix64): the run is replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

fn seed() -> u64 {
    match std::env::var("PGFERRY_LIFECYCLE_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("PGFERRY_LIFECYCLE_SEED={text:?} is not a number")),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// The application: one session of its own role inserting (and updating) orders
/// on the source, reconnecting whenever it is refused or cut off, and keeping the
/// id of every insert whose commit it saw succeed.
struct Application {
    stop: Arc<AtomicBool>,
    committed: Arc<Mutex<Vec<i64>>>,
    handle: JoinHandle<()>,
}

impl Application {
    fn start(url: String) -> Application {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let (stopping, seen) = (Arc::clone(&stop), Arc::clone(&committed));
        let handle = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                while !stopping.load(Ordering::Relaxed) {
                    let (mut client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                        Ok(connected) => connected,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    tokio::spawn(connection);
                    while !stopping.load(Ordering::Relaxed) {
                        match order(&mut client).await {
                            Ok(id) => seen.lock().unwrap().push(id),
                            Err(_) if client.is_closed() => break,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        });
        let application = Application { stop, committed, handle };
        let started = Instant::now();
        while application.committed().len() < 20 {
            assert!(started.elapsed() < Duration::from_secs(30), "the application commits nothing");
            thread::sleep(Duration::from_millis(10));
        }
        application
    }

    fn committed(&self) -> Vec<i64> {
        self.committed.lock().unwrap().clone()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the application's thread");
    }
}

async fn order(client: &mut tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let id: i64 = tx.query_one("INSERT INTO orders (note) VALUES ('order') RETURNING id", &[]).await?.get(0);
    tx.execute("UPDATE orders SET note = note || '+' WHERE id = $1::bigint - 7", &[&id]).await?;
    tx.commit().await?;
    Ok(id)
}

/// What a command did.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn summary(&self) -> String {
        let last = |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
        let reasons: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("  - ")).collect();
        let status = match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, signal) => format!("killed by signal {}", signal.unwrap_or(0)),
        };
        format!("{status}: {} | {}{}", last(&self.stdout), last(&self.stderr), reasons.join(""))
    }
}

/// The signals a running command may get.
#[derive(Clone, Copy, Debug)]
enum Signal {
    Int,
    Term,
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Int => "INT",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// Every command's output goes to files: a pipe nobody reads could block it.
struct Runner {
    dir: PathBuf,
    count: usize,
}

impl Runner {
    const LIMIT: Duration = Duration::from_secs(120);

    fn spawn(&mut self, args: &[&str]) -> (Child, PathBuf, PathBuf) {
        self.count += 1;
        let (out, err) = (self.dir.join(format!("{}.out", self.count)), self.dir.join(format!("{}.err", self.count)));
        let child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("run pgferry");
        (child, out, err)
    }

    /// Runs the command; with a signal, sends it at its moment (when still running).
    fn run(&mut self, args: &[&str], signal: Option<(Signal, Moment)>) -> Outcome {
        let (mut child, out, err) = self.spawn(args);
        if let Some((signal, moment)) = signal {
            let started = Instant::now();
            let due = |elapsed: Duration| match &moment {
                Moment::After(after) => elapsed >= *after,
                Moment::Exists(path) => path.exists(),
            };
            while !due(started.elapsed()) && child.try_wait().unwrap().is_none() {
                thread::sleep(Duration::from_millis(5));
            }
            if child.try_wait().unwrap().is_none() {
                Command::new("kill").args([&format!("-{}", signal.name()), &child.id().to_string()]).status().unwrap();
            }
        }
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Self::LIMIT {
                let _ = child.kill();
                panic!("pgferry {args:?} did not end within {:?}", Self::LIMIT);
            }
            thread::sleep(Duration::from_millis(20));
        };
        Outcome {
            status,
            stdout: std::fs::read_to_string(out).unwrap_or_default(),
            stderr: std::fs::read_to_string(err).unwrap_or_default(),
        }
    }
}

/// When a signal is sent.
#[derive(Clone, Debug)]
enum Moment {
    After(Duration),
    /// As soon as the file exists: the switch command's mark.
    Exists(PathBuf),
}

/// One random step.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `start`, stopped by a signal after a while (it copies, then follows for ever).
    Start(Signal, u64),
    /// `follow`, stopped by a signal after a while.
    Follow(Signal, u64),
    CatchUp,
    Validate,
    Rehearse,
    /// `cutover`, perhaps sent a signal after so many milliseconds (`None`: while
    /// its switch command runs).
    Cutover(Option<(Signal, Option<u64>)>),
    Abort,
    Cleanup,
}

fn random_step(rng: &mut Rng) -> Step {
    let signal = |rng: &mut Rng| match rng.below(3) {
        0 => Signal::Int,
        1 => Signal::Term,
        _ => Signal::Kill,
    };
    match rng.below(16) {
        0..=2 => Step::Start(signal(rng), rng.millis(300, 4000).as_millis() as u64),
        3..=4 => Step::Follow(signal(rng), rng.millis(200, 2500).as_millis() as u64),
        5..=6 => Step::CatchUp,
        7 => Step::Validate,
        8 => Step::Rehearse,
        9..=11 => Step::Cutover(None),
        12 => Step::Cutover(Some((signal(rng), Some(rng.millis(0, 2500).as_millis() as u64)))),
        13 => Step::Cutover(Some((signal(rng), None))),
        14 => Step::Abort,
        _ => Step::Cleanup,
    }
}

struct Lifecycle {
    source: Cluster,
    target: Cluster,
    urls: [String; 2],
    switched: PathBuf,
    switch_command: String,
    runner: Runner,
    application: Application,
    /// Whether this migration's completed cutover was checked already.
    checked_cutover: bool,
    cutovers_checked: usize,
    log: Vec<String>,
}

impl Lifecycle {
    fn new(version: PgVersion, dir: &Path) -> Lifecycle {
        let source = Cluster::start(PgVersion::V15);
        let target = Cluster::start(version);
        source.create_database("app");
        target.create_database("app");
        // Roles are the server's: the operator makes them on the target (the cutover's gate compares them).
        target.psql("app", "CREATE ROLE app LOGIN PASSWORD 'app-pw'");
        source.psql(
            "app",
            "CREATE ROLE app LOGIN PASSWORD 'app-pw';
             CREATE TABLE orders (id bigserial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now());
             GRANT ALL ON orders, orders_id_seq TO app;
             INSERT INTO orders (note) SELECT 'before ' || g FROM generate_series(1, 5000) g;",
        );
        let urls = [source.url("app"), target.url("app")];
        let application = Application::start(format!("{}&connect_timeout=2", source.url_as("app", "app-pw", "app")));
        let switched = dir.join("switched");
        Lifecycle {
            // The mark first: a signal or a kill while the command still runs
            // finds the application already moved.
            switch_command: format!("touch {} && sleep 0.4", switched.display()),
            switched,
            runner: Runner { dir: dir.to_path_buf(), count: 0 },
            source,
            target,
            urls,
            application,
            checked_cutover: false,
            cutovers_checked: 0,
            log: Vec::new(),
        }
    }

    fn run(&mut self, command: &str, extra: &[&str], signal: Option<(Signal, Moment)>) -> Outcome {
        let mut args = vec![command, "--source", &self.urls[0], "--target", &self.urls[1]];
        args.extend(extra);
        let outcome = self.runner.run(&args, signal.clone());
        let signal = match signal {
            Some((s, Moment::After(after))) => format!(" (SIG{} after {} ms)", s.name(), after.as_millis()),
            Some((s, Moment::Exists(_))) => format!(" (SIG{} once the switch mark exists)", s.name()),
            None => String::new(),
        };
        self.log.push(format!("{command} {}{signal}: {}", extra.join(" "), outcome.summary()));
        let accepted = matches!(outcome.code(), Some(0..=4 | 130 | 143)) || outcome.code().is_none();
        assert!(accepted, "{}\nstdout:\n{}\nstderr:\n{}", self.history(), outcome.stdout, outcome.stderr);
        outcome
    }

    fn history(&self) -> String {
        self.log.iter().enumerate().map(|(i, l)| format!("{i:3} {l}\n")).collect()
    }

    fn step(&mut self, step: Step) {
        match step {
            // Once cut over, sent no signal: the refusal itself is what is checked.
            Step::Start(..) | Step::Follow(..) | Step::CatchUp | Step::Rehearse if self.cut_over() => {
                let [source, target] = self.urls.clone();
                let command: &[&str] = match step {
                    Step::Start(..) => &["start"],
                    Step::Follow(..) => &["follow"],
                    Step::CatchUp => &["follow", "--until-caught-up"],
                    _ => &["rehearse", "--switch-command", "true"],
                };
                let args = [command, &["--source", source.as_str(), "--target", target.as_str()]].concat();
                self.refused(&args);
            }
            Step::Start(signal, ms) => {
                self.run("start", &[], Some((signal, Moment::After(Duration::from_millis(ms)))));
            }
            Step::Follow(signal, ms) => {
                self.run("follow", &[], Some((signal, Moment::After(Duration::from_millis(ms)))));
            }
            Step::CatchUp => {
                self.run("follow", &["--until-caught-up"], None);
            }
            Step::Validate => {
                let outcome = self.run("validate", &[], None);
                if self.cutover_step() == "reported" {
                    assert_eq!(
                        outcome.code(),
                        Some(0),
                        "after the cutover: EQUAL\n{}{}",
                        self.history(),
                        outcome.stdout
                    );
                }
            }
            Step::Rehearse => {
                self.run("rehearse", &["--switch-command", "true"], None);
            }
            Step::Cutover(signal) => {
                let moment = |ms: Option<u64>| match ms {
                    Some(ms) => Moment::After(Duration::from_millis(ms)),
                    None => Moment::Exists(self.switched.clone()),
                };
                self.cutover(signal.map(|(s, ms)| (s, moment(ms))))
            }
            Step::Abort => {
                if self.run("abort", &[], None).code() == Some(0) {
                    self.check("abort");
                    self.fresh_target();
                }
            }
            Step::Cleanup => {
                if self.run("cleanup", &[], None).code() == Some(0) {
                    self.check("cleanup");
                    self.give_the_source_back();
                }
            }
        }
    }

    /// A cutover; when it stops to ask whether the switch ran, the operator answers
    /// truthfully (waiting while the switch command still runs).
    fn cutover(&mut self, signal: Option<(Signal, Moment)>) {
        let command = self.switch_command.clone();
        let mut outcome = self.run("cutover", &["--switch-command", &command], signal);
        for _ in 0..20 {
            if outcome.stderr.contains("still running") {
                thread::sleep(Duration::from_millis(300));
            } else if !outcome.stderr.contains("--switch-ran") || !outcome.stderr.contains("--switch-did-not-run") {
                return;
            }
            self.check("a cutover that asks the operator");
            let word = if self.switched.exists() { "--switch-ran" } else { "--switch-did-not-run" };
            outcome = self.run("cutover", &["--switch-command", &command, word], None);
        }
    }

    /// After an abort: the operator starts over on an empty target.
    fn fresh_target(&mut self) {
        self.target.psql("postgres", "DROP DATABASE app WITH (FORCE)");
        self.target.create_database("app");
        self.checked_cutover = false;
        self.log.push("(a fresh target)".into());
    }

    /// After a cleanup: the application is moved back to the old source, whose
    /// fence the operator lifts (`abort --force`), and the migration starts over.
    fn give_the_source_back(&mut self) {
        let outcome = self.run("abort", &["--force"], None);
        assert_eq!(outcome.code(), Some(0), "{}{}", self.history(), outcome.stderr);
        std::fs::remove_file(&self.switched).unwrap_or_default();
        self.check("the old source given back");
        assert!(self.writable(), "abort --force gives the source back to the application\n{}", self.history());
        self.fresh_target();
    }

    /// Whether the target's journal says the switch ran and was seen to end.
    fn cut_over(&self) -> bool {
        matches!(self.cutover_step().as_str(), "switched" | "opened" | "reported")
    }

    /// Runs a command the lifecycle guard must refuse on a cut-over migration:
    /// exit 1, naming the migration as cut over, with a hint, and nothing changed
    /// on either side.
    fn refused(&mut self, args: &[&str]) {
        let before = self.both_sides();
        let outcome = self.runner.run(args, None);
        let shown: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| !a.starts_with("postgresql://") && !a.starts_with("--source") && !a.starts_with("--target"))
            .collect();
        self.log.push(format!("{} (cut over: refused): {}", shown.join(" "), outcome.summary()));
        let history = self.history();
        let said = outcome.stderr.contains("migration main was cut over")
            || (args[0] == "seed" && outcome.stderr.contains("migration main ran its switch command"));
        assert!(outcome.code() == Some(1) && said, "{args:?} after the cutover\n{history}{}", outcome.stderr);
        assert!(outcome.stderr.contains("hint: "), "{}", outcome.stderr);
        assert_eq!(self.both_sides(), before, "{args:?} after the cutover changed something\n{history}");
    }

    /// Every command that would move data from the old source again, refused.
    fn all_refused(&mut self) {
        let [source, target] = self.urls.clone();
        let pair = |command: &'static str| vec![command, "--source", source.as_str(), "--target", target.as_str()];
        let commands: Vec<Vec<&str>> = vec![
            pair("start"),
            [pair("start"), vec!["--seeded", "--seed-lsn", "0/1"]].concat(),
            pair("copy"),
            pair("follow"),
            [pair("follow"), vec!["--until-caught-up"]].concat(),
            [pair("rehearse"), vec!["--switch-command", "true"]].concat(),
            [pair("validate"), vec!["--repair"]].concat(),
            vec!["seed", "prepare", "--source", source.as_str()],
        ];
        for args in &commands {
            self.refused(args);
        }
    }

    /// What a refused command must leave as it was: the source's slots (with
    /// their positions), publications and fence, and both sides' journals.
    fn both_sides(&self) -> String {
        let journal = "SELECT coalesce(string_agg(c.relname || '=' || (xpath('/row/d/text()', query_to_xml(
                format('SELECT count(*) || '':'' || coalesce(md5(string_agg(t::text, '','' ORDER BY t::text)), '''') AS d FROM %s t', c.oid::regclass),
                false, true, '')))[1]::text, ' ' ORDER BY c.relname), 'none')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgferry' AND c.relkind = 'r'";
        let slots = "SELECT coalesce(string_agg(slot_name || ':' || coalesce(confirmed_flush_lsn::text, '-') || ':' || active, ',' ORDER BY slot_name), 'none') FROM pg_replication_slots";
        let publications = "SELECT coalesce(string_agg(pubname, ',' ORDER BY pubname), 'none') FROM pg_publication";
        [
            self.source.psql("app", slots),
            self.source.psql("app", publications),
            self.fence_up().to_string(),
            self.source.psql("app", journal),
            self.target.psql("app", journal),
        ]
        .join(" | ")
    }

    /// The target's journaled cutover step ("" when none).
    fn cutover_step(&self) -> String {
        self.target.try_psql("app", "SELECT step FROM pgferry.cutover WHERE migration = 'main'").unwrap_or_default()
    }

    /// Whether the application's role can write to the source right now.
    fn writable(&self) -> bool {
        let url = format!("{}&connect_timeout=5", self.source.url_as("app", "app-pw", "app"));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
                return false;
            };
            tokio::spawn(connection);
            client.batch_execute("BEGIN; INSERT INTO orders (note) VALUES ('probe'); ROLLBACK").await.is_ok()
        })
    }

    /// Whether pgferry's fence is up on the source: the application's role may not
    /// connect, or new sessions are read-only.
    fn fence_up(&self) -> bool {
        self.source.psql(
            "app",
            "SELECT NOT has_database_privilege('app', 'app', 'CONNECT') OR EXISTS (
                 SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                 WHERE d.datname = 'app' AND 'default_transaction_read_only=on' = ANY (s.setconfig))",
        ) == "t"
    }

    /// The fence's reasons journaled on the source (the switch's own record aside).
    fn fence_journaled(&self) -> i64 {
        self.source
            .try_psql("app", "SELECT count(*) FROM pgferry.source_fence WHERE kind <> 'switch'")
            .map(|n| n.parse().unwrap())
            .unwrap_or(0)
    }

    fn check(&mut self, after: &str) {
        let (up, journaled, writable) = (self.fence_up(), self.fence_journaled(), self.writable());
        let history = self.history();
        assert_eq!(up, journaled > 0, "after {after}: fence up {up}, {journaled} reason(s) journaled\n{history}");
        assert!(!(up && writable), "after {after}: the fenced source took the application's write\n{history}");
        assert!(
            !(self.switched.exists() && writable),
            "after {after}: the switch ran and the old source is still writable: split brain\n{history}"
        );
        if self.cutover_step() == "reported" && !self.checked_cutover {
            assert!(!writable, "after {after}: cut over and the old source is writable\n{history}");
            self.no_row_lost(after);
            self.all_refused();
            self.checked_cutover = true;
            self.cutovers_checked += 1;
        }
    }

    /// Every row the application saw committed on the source is on the target,
    /// and the fenced source and the target hold the same rows.
    fn no_row_lost(&self, after: &str) {
        let ids = |c: &Cluster| -> HashSet<i64> {
            c.psql("app", "SELECT id FROM orders").lines().map(|l| l.parse().unwrap()).collect()
        };
        let (on_source, on_target) = (ids(&self.source), ids(&self.target));
        let committed = self.application.committed();
        let lost: Vec<&i64> = committed.iter().filter(|id| !on_target.contains(id)).take(10).collect();
        assert!(
            lost.is_empty(),
            "after {after}: rows the application saw committed are not on the target: {lost:?}\n{}",
            self.history()
        );
        assert!(committed.iter().all(|id| on_source.contains(id)), "the source lost a committed row");
        let digest = "SELECT count(*) || ':' || md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o";
        assert_eq!(self.source.psql("app", digest), self.target.psql("app", digest), "{}", self.history());
    }

    /// Brings the migration to a completed cutover, whatever state the random
    /// steps left it in; the first cutover is sent `signal` while its switch
    /// command runs (the random steps seldom reach that moment).
    fn finish(&mut self, signal: Signal) {
        let mut during_the_switch = Some((signal, Moment::Exists(self.switched.clone())));
        for _ in 0..6 {
            if self.cutover_step() == "reported" {
                break;
            }
            self.run("copy", &[], None);
            self.check("copy");
            self.run("follow", &["--until-caught-up"], None);
            self.check("follow --until-caught-up");
            let signal = if self.switched.exists() { None } else { during_the_switch.take() };
            self.cutover(signal);
            self.check("cutover");
        }
        assert_eq!(self.cutover_step(), "reported", "the migration could not be finished\n{}", self.history());
        self.check("the final cutover");
    }
}

fn lifecycle(version: PgVersion) {
    let seed = seed();
    let steps: usize = std::env::var("PGFERRY_LIFECYCLE_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(18);
    eprintln!("lifecycle 15 -> {version:?}: PGFERRY_LIFECYCLE_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut run = Lifecycle::new(version, dir.path());
    run.check("the set-up");
    for _ in 0..steps {
        let step = random_step(&mut rng);
        run.step(step);
        run.check(&format!("{step:?}"));
    }
    run.finish(match rng.below(3) {
        0 => Signal::Int,
        1 => Signal::Term,
        _ => Signal::Kill,
    });
    eprintln!(
        "lifecycle 15 -> {version:?} (seed {seed}), {} orders committed:\n{}",
        run.application.committed().len(),
        run.history()
    );
    assert!(run.cutovers_checked >= 1);
    run.application.stop();
}

#[test]
fn random_commands_and_signals_under_a_live_writer_15_to_15() {
    lifecycle(PgVersion::V15);
}

#[test]
fn random_commands_and_signals_under_a_live_writer_15_to_18() {
    lifecycle(PgVersion::V18);
}
