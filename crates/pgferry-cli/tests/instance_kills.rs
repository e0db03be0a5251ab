//! One cutover for a whole instance (#18), killed at every step boundary while
//! every database is written to: a source with four databases (one large, two
//! small written by two application roles, one empty), moved by a logical copy
//! and by a physical copy (the seeded path). A kill before the switch is rolled
//! back in every database by the rerun, never half of them; a kill while the
//! switch runs leaves the word to the operator for all of them at once, and
//! one past it is finished in every database; at the end every database is
//! identical on both sides.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, LiveWriter, PgVersion};

/// The databases of the instance, besides `postgres`.
const DATABASES: [&str; 4] = ["big", "shop", "crm", "empty"];

fn pgferry(args: &[&str], failpoint: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgferry"));
    command.args(args);
    if let Some(failpoint) = failpoint {
        command.env("PGFERRY_FAILPOINT", failpoint);
    }
    command.output().expect("run pgferry")
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The source server: roles, four databases, rows.
fn source_instance() -> Cluster {
    let source = Cluster::start(PgVersion::V15);
    source.psql(
        "postgres",
        "CREATE ROLE big_app LOGIN PASSWORD 'big-pw'; CREATE ROLE shop_app LOGIN PASSWORD 'shop-pw';
         CREATE ROLE crm_app LOGIN PASSWORD 'crm-pw' CONNECTION LIMIT 10",
    );
    for db in DATABASES {
        source.create_database(db);
    }
    source.psql(
        "big",
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, n bigint NOT NULL, pad text);
         INSERT INTO accounts (n, pad) SELECT g, repeat('x', 80) FROM generate_series(1, 100000) g;
         GRANT ALL ON accounts, accounts_id_seq TO big_app",
    );
    for (db, role) in [("shop", "shop_app"), ("crm", "crm_app")] {
        source.psql(
            db,
            &format!(
                "CREATE TABLE items (id bigserial PRIMARY KEY, note text NOT NULL);
                 ALTER TABLE items OWNER TO {role};
                 INSERT INTO items (note) SELECT 'before ' || g FROM generate_series(1, 300) g"
            ),
        );
    }
    source
}

/// Every database written to by its own application role (the empty one has
/// nothing to write), reconnecting through fences and rollbacks.
fn writers(source: &Cluster) -> Vec<LiveWriter> {
    let big = LiveWriter::start(source.url_as("big_app", "big-pw", "big"), |n| {
        format!(
            "UPDATE accounts SET n = n + 1 WHERE id = {}; INSERT INTO accounts (n) VALUES ({n})",
            n * 7919 % 100_000 + 1
        )
    });
    let small = ["shop", "crm"].map(|db| {
        let (role, password) = (format!("{db}_app"), format!("{db}-pw"));
        LiveWriter::start(source.url_as(&role, &password, db), |n| {
            format!(
                "INSERT INTO items (note) VALUES ('w{n}'); UPDATE items SET note = note || '+' WHERE id = {}",
                n % 300 + 1
            )
        })
    });
    let mut all = vec![big];
    all.extend(small);
    all
}

/// Who may connect to each database, and its settings: what a fence changes.
fn fences(c: &Cluster) -> Vec<String> {
    ["postgres"]
        .iter()
        .chain(DATABASES.iter())
        .map(|db| {
            c.psql(
                "postgres",
                &format!(
                    "SELECT array_to_string(ARRAY(SELECT a::text FROM unnest(coalesce(datacl, acldefault('d', datdba))) a ORDER BY 1), ',')
                            || ' ' || coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0), '')
                            || ' ' || (SELECT string_agg(rolname || ':' || rolconnlimit, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE '%_app')
                     FROM pg_database d WHERE datname = '{db}'"
                ),
            )
        })
        .collect()
}

/// Where the last cutover is killed, past the point of no return.
enum PastTheSwitch {
    WhileItRuns,
    OnceOneFinished,
}

struct Instance {
    source: Cluster,
    target: Cluster,
    name: Option<&'static str>,
    switched: tempfile::NamedTempFile,
}

impl Instance {
    fn run(&self, command: &str, extra: &[&str], failpoint: Option<&str>) -> Output {
        let (s, t) = (self.source.url("postgres"), self.target.url("postgres"));
        let mut args = vec![command, "--source", &s, "--target", &t, "--all-databases"];
        if let Some(name) = self.name {
            args.extend(["--name", name]);
        }
        args.extend(extra);
        pgferry(&args, failpoint)
    }

    fn catch_up(&self) {
        ok(self.run("start", &["--until-caught-up"], None));
    }

    fn cutover(&self, extra: &[&str], failpoint: Option<&str>) -> Output {
        let switch = format!("echo switched >> {}", self.switched.path().display());
        self.run("cutover", &[&["--switch-command", switch.as_str()], extra].concat(), failpoint)
    }

    fn switches(&self) -> usize {
        std::fs::read_to_string(self.switched.path()).unwrap().lines().count()
    }

    /// What a kill between two databases' journal writes at the switch leaves:
    /// one database journaled that its switch starts, the others not yet (the
    /// failpoint stops the process at the first, but the others' writes may
    /// land in the same moment, so the test puts them back). Its name.
    fn only_one_journaled_its_switch(&self) -> &'static str {
        // The killed process's last statements reach the servers first.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let all = ["postgres"].into_iter().chain(DATABASES);
        let switching: Vec<&str> =
            all.clone().filter(|db| self.target.psql(db, "SELECT step FROM pgferry.cutover") == "switching").collect();
        let kept = *switching.first().expect("the failpoint stops the first database to journal its switch");
        for db in all.filter(|db| *db != kept) {
            self.target.psql(db, "UPDATE pgferry.cutover SET step = 'validated' WHERE step = 'switching'");
            self.source.psql(db, "BEGIN READ WRITE; DELETE FROM pgferry.source_fence WHERE kind = 'switch'; COMMIT");
        }
        kept
    }

    /// Killed at each step boundary before the switch, each rerun rolls every
    /// database back (the fences lifted exactly, the application writing
    /// again); killed while the switch command runs, the rerun asks the
    /// operator once for every database, and `--switch-ran` finishes them all;
    /// killed once one database finished, the rerun finishes the others with
    /// no question and leaves that one as it is.
    fn cut_over_killed_at_every_step(&self, writers: Vec<LiveWriter>, past_the_switch: PastTheSwitch) {
        let before = fences(&self.source);
        for failpoint in [
            "fence-after-raise:1",
            "cutover-after-fenced:1",
            "cutover-after-drained:1",
            "cutover-before-switch:1",
            "cutover-after-switching:1",
        ] {
            self.catch_up();
            let killed = self.cutover(&[], Some(failpoint));
            assert_eq!(killed.status.code(), Some(137), "{failpoint}: {}", text(&killed));
            let killed_with = fences(&self.source);
            let contradicted = if failpoint.starts_with("cutover-after-switching") {
                let kept = self.only_one_journaled_its_switch();
                // One database's word alone could switch it and roll the others back: refused.
                let (s, t) = (self.source.url(kept), self.target.url(kept));
                let mut alone = vec!["cutover", "--source", &s, "--target", &t, "--switch-did-not-run"];
                if let Some(name) = self.name {
                    alone.extend(["--name", name]);
                }
                let refused = pgferry(&alone, None);
                let said = text(&refused);
                assert_eq!(refused.status.code(), Some(1), "{said}");
                assert!(said.contains("stopped at the one switch of an instance cutover"), "{said}");
                Some((self.cutover(&["--switch-ran"], None), format!("database {kept:?}"), "never ran".to_string()))
            } else if failpoint.starts_with("cutover-before-switch") {
                let word = "no database stopped at its switch".to_string();
                Some((self.cutover(&["--switch-ran"], None), String::new(), word))
            } else {
                None
            };
            if let Some((refused, database, why)) = contradicted {
                let said = text(&refused);
                assert_eq!(refused.status.code(), Some(2), "{failpoint}: {said}");
                assert!(said.contains(&why) && said.contains(&database), "{failpoint}: {said}");
                assert_eq!(fences(&self.source), killed_with, "{failpoint}: nothing lifted");
            }
            let rerun = self.cutover(&[], None);
            let said = text(&rerun);
            assert_eq!(rerun.status.code(), Some(3), "{failpoint}: {said}");
            assert!(said.contains("rolled back"), "{failpoint}: {said}");
            assert!(!said.contains("--switch-ran"), "{failpoint}: the switch never ran, nobody is asked: {said}");
            assert_eq!(fences(&self.source), before, "{failpoint}: every database unfenced exactly: {said}");
            assert_eq!(self.switches(), 0, "{failpoint}: no switch ran");
            for w in &writers {
                w.wait_for_rounds(10);
            }
        }
        self.catch_up();
        match past_the_switch {
            PastTheSwitch::WhileItRuns => {
                let killed = self.cutover(&[], Some("cutover-during-switch:1"));
                assert_eq!(killed.status.code(), Some(137), "{}", text(&killed));
                let asked = self.cutover(&[], None);
                let said = text(&asked);
                assert!(!asked.status.success() && said.contains("--switch-ran"), "{said}");
                assert!(
                    !said.contains("has been rolled back"),
                    "nothing rolled back while the switch may have run: {said}"
                );
                assert!(
                    fences(&self.source).iter().zip(&before).all(|(now, was)| now != was),
                    "every database still fenced"
                );
                let finished = ok(self.cutover(&["--switch-ran"], None));
                assert!(finished.contains("cut over"), "{finished}");
            }
            PastTheSwitch::OnceOneFinished => {
                let killed = self.cutover(&[], Some("cutover-after-opened:1"));
                assert_eq!(killed.status.code(), Some(137), "{}", text(&killed));
                // A kill between two databases' journal writes after the
                // switch: one finished (reported), the others still at it.
                std::thread::sleep(std::time::Duration::from_millis(300));
                let all = || ["postgres"].into_iter().chain(DATABASES);
                let step = |db: &str| self.target.psql(db, "SELECT step FROM pgferry.cutover");
                let kept = all().find(|db| step(db) == "opened").expect("the failpoint stops the first to open");
                self.target.psql(kept, "UPDATE pgferry.cutover SET step = 'reported'");
                for db in all().filter(|db| *db != kept) {
                    self.target.psql(db, "UPDATE pgferry.cutover SET step = 'switching'");
                }
                let steps = || all().map(step).collect::<Vec<_>>();
                let journaled = steps();
                let contradicted = self.cutover(&["--switch-did-not-run"], None);
                let said = text(&contradicted);
                assert_eq!(contradicted.status.code(), Some(2), "{said}");
                assert!(said.contains("the switch went through"), "{said}");
                assert_eq!(steps(), journaled, "nothing changed: {said}");
                let planned = text(&self.cutover(&["--dry-run"], None));
                assert!(
                    planned.contains(&format!("== database {kept:?} ==\ncut over already, by the earlier run")),
                    "{planned}"
                );
                // In JSON, one document: the finished database said so, the others' reports.
                let finished = self.cutover(&["--format", "json"], None);
                let said = text(&finished);
                assert!(finished.status.success() && !said.contains("--switch-ran"), "{said}");
                let report: serde_json::Value =
                    serde_json::from_slice(&finished.stdout).unwrap_or_else(|e| panic!("{e}: {said}"));
                let databases = report["databases"].as_array().expect("every database");
                assert_eq!(databases.len(), 1 + DATABASES.len(), "{said}");
                for db in databases {
                    assert!(db["error"].is_null(), "{said}");
                    match db["database"] == kept {
                        true => assert!(
                            db["note"].as_str().is_some_and(|n| n.contains("cut over already, by the earlier run")),
                            "{said}"
                        ),
                        // (Its downtime is null where the killed run did not record it: unknown.)
                        false => assert!(db["report"]["migration"].is_string(), "{said}"),
                    }
                }
                assert!(steps().iter().all(|s| s == "reported"), "{said}");
            }
        }
        assert_eq!(self.switches(), 1, "the switch ran once");
        assert!(fences(&self.source).iter().zip(&before).all(|(now, was)| now != was), "every old database fenced");
        let written: u64 = writers.into_iter().map(LiveWriter::stop).sum();
        assert!(written > 100, "the application wrote throughout");
        for db in ["postgres"].iter().chain(DATABASES.iter()) {
            assert_eq!(self.target.fingerprints(db), self.source.fingerprints(db), "{db}: the target differs");
        }
        for (db, table) in [("big", "accounts (n) VALUES (0)"), ("shop", "items (note) VALUES ('on the target')")] {
            self.target.psql(db, &format!("INSERT INTO {table}"));
        }
    }
}

#[test]
fn a_copied_instance_cut_over_under_writes_and_killed_at_every_step_ends_identical() {
    let source = source_instance();
    // The target server has none of the databases: start creates them.
    let target = Cluster::start(PgVersion::V18);
    let instance = Instance { source, target, name: None, switched: tempfile::NamedTempFile::new().unwrap() };
    // The roles first (the databases' owners among them), then every database created and copied.
    let made = ok(instance.run("start", &["--roles", "--until-caught-up"], None));
    assert!(made.contains("CREATE ROLE \"big_app\"") && made.contains("set one on the target for"), "{made}");
    // pgferry never reads or copies passwords: the operator sets them.
    instance.target.psql(
        "postgres",
        "ALTER ROLE big_app PASSWORD 'big-pw'; ALTER ROLE shop_app PASSWORD 'shop-pw'; ALTER ROLE crm_app PASSWORD 'crm-pw'",
    );
    let writers = writers(&instance.source);
    instance.cut_over_killed_at_every_step(writers, PastTheSwitch::WhileItRuns);
}

#[test]
fn a_seeded_instance_cut_over_under_writes_and_killed_at_every_step_ends_identical() {
    let source = source_instance();
    let s = source.url("postgres");
    ok(pgferry(&["seed", "prepare", "--source", &s, "--all-databases", "--name", "inst"], None));
    let writers = writers(&source);
    let copy = source.physical_copy();
    let log = copy.log_path().display().to_string();
    let instance =
        Instance { source, target: copy, name: Some("inst"), switched: tempfile::NamedTempFile::new().unwrap() };
    ok(instance.run("start", &["--seeded", "--seed-log", &log, "--until-caught-up"], None));
    instance.cut_over_killed_at_every_step(writers, PastTheSwitch::OnceOneFinished);
}
