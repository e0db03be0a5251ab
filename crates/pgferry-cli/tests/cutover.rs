//! `pgferry cutover` against real clusters: the target ends equal to the fenced
//! source, sequences continue without collision, the downtime is reported, and a
//! cutover that fails or is killed before the switch rolls back exactly.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).envs(envs.iter().copied()).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Pair {
    source: Cluster,
    target: Cluster,
}

impl Pair {
    fn args<'a>(&'a self, command: &'a str, urls: &'a [String; 2]) -> Vec<&'a str> {
        let _ = self;
        vec![command, "--source", &urls[0], "--target", &urls[1]]
    }
    fn urls(&self) -> [String; 2] {
        [self.source.url("app"), self.target.url("app")]
    }
}

/// Copied and caught up, with an application role writing.
fn migrated() -> Pair {
    migrated_with(|_| String::new())
}

/// The same, with extra set-up on the source before the copy.
fn migrated_with(extra: impl Fn(&Cluster) -> String) -> Pair {
    migrated_onto(Cluster::start(PgVersion::V15), extra)
}

/// The same, onto `target`.
fn migrated_onto(target: Cluster, extra: impl Fn(&Cluster) -> String) -> Pair {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    // Roles are the server's: the operator makes them on the target (the cutover's gate compares them).
    target.psql("app", "CREATE ROLE app LOGIN PASSWORD 'app-pw' CONNECTION LIMIT 20");
    source.psql(
        "app",
        "CREATE ROLE app LOGIN PASSWORD 'app-pw' CONNECTION LIMIT 20;
         CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
         GRANT ALL ON orders, orders_id_seq TO app;
         INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 1000) g;",
    );
    extra(&source);
    let pair = Pair { source, target };
    let urls = pair.urls();
    ok(pgferry(&pair.args("copy", &urls), &[]));
    pair.source.psql("app", "INSERT INTO orders (note) SELECT 'after copy ' || g FROM generate_series(1, 500) g");
    let mut follow = pair.args("follow", &urls);
    follow.push("--until-caught-up");
    ok(pgferry(&follow, &[]));
    pair.source.psql("app", "INSERT INTO orders (note) SELECT 'before cutover ' || g FROM generate_series(1, 200) g");
    pair
}

fn content(c: &Cluster) -> String {
    c.psql("app", "SELECT count(*) || ':' || md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o")
}

/// What the fence changes: whether the application's role may connect, the
/// database's settings, and its ACL as a sorted set.
fn app_role(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT has_database_privilege('app', 'app', 'CONNECT') || ',' || rolconnlimit || ',' ||
                coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting WHERE setrole = 0), 'none') || ',' ||
                (SELECT array_to_string(ARRAY(SELECT a::text FROM unnest(coalesce(datacl, acldefault('d', datdba))) a ORDER BY 1), ',')
                 FROM pg_database WHERE datname = 'app')
         FROM pg_roles WHERE rolname = 'app'",
    )
}

/// Whether the application's role may connect to the source database.
fn app_may_connect(c: &Cluster) -> bool {
    c.psql("app", "SELECT has_database_privilege('app', 'app', 'CONNECT')") == "t"
}

#[test]
fn a_cutover_leaves_an_equal_target_with_sequences_ahead_and_reports_the_downtime() {
    let pair = migrated();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("switched");
    let switch = format!("touch {}; echo said on stdout; echo said on stderr >&2", flag.display());
    let urls = pair.urls();
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    let out = pgferry(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = ok(out);
    // What the switch command prints goes to stderr as it wrote it, never among the report's lines.
    assert!(!stdout.contains("said on"), "{stdout}");
    assert!(stderr.lines().any(|l| l == "said on stdout") && stderr.lines().any(|l| l == "said on stderr"), "{stderr}");
    assert!(stdout.contains("Downtime (fence to switch):"), "{stdout}");
    assert!(stdout.contains("validate changed rows"), "{stdout}");
    assert!(stdout.contains("700 changed row(s) checked equal"), "the rows written after the copy: {stdout}");
    assert!(stdout.contains("CONNECT on the old source revoked from: PUBLIC"), "{stdout}");
    assert!(flag.exists(), "the switch command ran");
    assert_eq!(content(&pair.source), content(&pair.target));
    assert!(!app_may_connect(&pair.source), "the old source stays fenced");
    // A second cutover says what happened instead of reporting a new one.
    let out = pgferry(&args, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already cut over") && stderr.contains("downtime"), "{stderr}");
    assert!(!app_may_connect(&pair.source));
    // abort after the switch would unfence the old source: refused.
    let out = pgferry(&pair.args("abort", &urls), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was cut over"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!app_may_connect(&pair.source));
    // New rows on the target continue the sequence without a collision.
    pair.target.psql("app", "INSERT INTO orders (note) VALUES ('first on the target')");
    assert_eq!(pair.target.psql("app", "SELECT max(id) FROM orders"), "1701");
}

/// A target that commits asynchronously (`synchronous_commit = off`, as every
/// test cluster here, its WAL writer waking every 10 s) crashes right after the
/// cutover: the rows drained inside the fence and the sequences set before the
/// switch are still there after its recovery.
#[test]
fn a_target_crashed_right_after_the_cutover_keeps_the_drained_rows_and_the_sequences() {
    let target = Cluster::builder(PgVersion::V15).setting("wal_writer_delay", "'10s'").start();
    let pair = migrated_onto(target, |_| String::new());
    let urls = pair.urls();
    ok(pgferry(&pair.args("cutover", &urls), &[]));
    pair.target.crash();
    pair.target.resume();
    assert_eq!(content(&pair.source), content(&pair.target));
    pair.target.psql("app", "INSERT INTO orders (note) VALUES ('first on the target')");
    assert_eq!(pair.target.psql("app", "SELECT max(id) FROM orders"), "1701");
}

#[test]
fn a_failing_switch_rolls_back_exactly_and_replication_can_go_on() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", "exit 3"]);
    let out = pgferry(&args, &[]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rolled back"), "{stderr}");
    assert_eq!(app_role(&pair.source), before);
    pair.source.psql("app", "INSERT INTO orders (note) VALUES ('after the rollback')");
    let mut follow = pair.args("follow", &urls);
    follow.push("--until-caught-up");
    ok(pgferry(&follow, &[]));
    assert_eq!(content(&pair.source), content(&pair.target));
}

#[test]
fn a_difference_in_a_changed_row_rolls_the_cutover_back_before_the_switch() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("switched");
    let switch = format!("touch {}", flag.display());
    // A write on the target to a row change capture touched: the target drifted.
    pair.target.psql("app", "UPDATE orders SET note = 'written on the target' WHERE id = 1200");
    let urls = pair.urls();
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    let out = pgferry(&args, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rolled back") && stderr.contains("\"orders\" (keys (1200))"), "{stderr}");
    assert!(!flag.exists(), "the switch never ran");
    assert_eq!(app_role(&pair.source), before, "the fence is lifted exactly");
}

#[test]
fn a_cutover_killed_before_the_switch_is_rolled_back_by_the_rerun_then_completes() {
    for failpoint in ["cutover-after-fenced:1", "cutover-after-drained:1", "cutover-before-switch:1"] {
        let pair = migrated();
        let before = app_role(&pair.source);
        let urls = pair.urls();
        let out = pgferry(&pair.args("cutover", &urls), &[("PGFERRY_FAILPOINT", failpoint)]);
        assert_eq!(out.status.code(), Some(137), "{failpoint}: {}", String::from_utf8_lossy(&out.stderr));
        assert_ne!(app_role(&pair.source), before, "{failpoint}: killed while fenced");
        let out = pgferry(&pair.args("cutover", &urls), &[]);
        assert_eq!(out.status.code(), Some(3), "{failpoint}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"), "{failpoint}");
        assert_eq!(app_role(&pair.source), before, "{failpoint}: every setting back");
        ok(pgferry(&pair.args("cutover", &urls), &[]));
        assert_eq!(content(&pair.source), content(&pair.target), "{failpoint}");
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn the_outside_fence_is_raised_after_pgferrys_and_lifted_on_every_rollback() {
    let pair = migrated();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("outside-fence-up");
    let (raise, lift) = (format!("touch {}", flag.display()), format!("rm {}", flag.display()));
    let urls = pair.urls();
    let with_fence = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = pair.args("cutover", &urls).into_iter().map(String::from).collect();
        args.extend(["--fence-command".into(), raise.clone(), "--unfence-command".into(), lift.clone()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    // Killed while fenced: the rerun lifts both fences.
    let out = pgferry(&strs(&with_fence(&[])), &[("PGFERRY_FAILPOINT", "cutover-after-fenced:1")]);
    assert_eq!(out.status.code(), Some(137));
    assert!(flag.exists(), "raised after pgferry's own fence");
    // A rerun that forgets the hooks is told to give them (not to rerun as it did).
    let out = pgferry(&pair.args("cutover", &urls), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("rerun with the same --fence-command and --unfence-command"),
        "{stderr}"
    );
    assert!(flag.exists(), "nothing lifted it");
    let out = pgferry(&strs(&with_fence(&[])), &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!flag.exists(), "lifted by the rollback");
    // A failing switch: lifted again.
    let out = pgferry(&strs(&with_fence(&["--switch-command", "exit 4"])), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!flag.exists());
    // A cutover that completes keeps it up, like pgferry's own fence.
    ok(pgferry(&strs(&with_fence(&[])), &[]));
    assert!(flag.exists());
}

#[test]
fn a_cutover_killed_after_the_switch_is_finished_by_the_rerun() {
    let pair = migrated();
    let urls = pair.urls();
    let out = pgferry(&pair.args("cutover", &urls), &[("PGFERRY_FAILPOINT", "cutover-after-opened:1")]);
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = ok(pgferry(&pair.args("cutover", &urls), &[]));
    assert!(stdout.contains("cut over. An earlier run switched"), "{stdout}");
    assert_eq!(pair.target.psql("app", "SELECT step FROM pgferry.cutover"), "reported");
    assert_eq!(content(&pair.source), content(&pair.target));
    assert!(!app_may_connect(&pair.source), "past the switch the old source stays fenced");
}

#[test]
fn keyless_tables_stop_the_cutover_until_the_operator_vouches_for_them() {
    let pair = migrated_with(|c| {
        c.psql(
            "app",
            "CREATE TABLE history (at timestamptz DEFAULT now(), what text); INSERT INTO history (what) VALUES ('x')",
        )
    });
    let urls = pair.urls();
    let out = pgferry(&pair.args("cutover", &urls), &[]);
    assert_eq!(out.status.code(), Some(1), "a refusal that changed nothing");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("public.history have no replica identity"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(pair.source.psql("app", "SELECT count(*) FROM pg_db_role_setting"), "0", "no fence was raised");
    let mut args = pair.args("cutover", &urls);
    args.push("--keyless-tables-are-insert-only");
    ok(pgferry(&args, &[]));
    assert_eq!(content(&pair.source), content(&pair.target));
}

#[test]
fn keyless_tables_updated_and_deleted_since_the_copy_are_copied_again_inside_the_fence() {
    let pair = migrated_with(|c| {
        c.psql(
            "app",
            "CREATE TABLE history (at timestamptz DEFAULT now(), what text);
             INSERT INTO history (what) SELECT 'h' || g FROM generate_series(1, 300) g;
             CREATE TABLE audit (n int); CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN INSERT INTO audit VALUES (1); RETURN NULL; END$$;
             CREATE TRIGGER history_audit AFTER INSERT ON history FOR EACH ROW EXECUTE FUNCTION audit();",
        )
    });
    // Changes change capture cannot carry for a keyless table.
    pair.source
        .psql("app", "UPDATE history SET what = 'changed' WHERE what = 'h7'; DELETE FROM history WHERE what = 'h8';");
    let urls = pair.urls();
    let mut args = pair.args("cutover", &urls);
    args.push("--recopy-keyless-tables");
    let mut dry = args.clone();
    dry.push("--dry-run");
    let plan = ok(pgferry(&dry, &[]));
    assert!(plan.contains("the cutover would start now") && plan.contains("copy the keyless tables again"), "{plan}");
    assert!(plan.contains("CONNECT revoked from PUBLIC"), "{plan}");
    assert!(plan.contains("keyless tables (recopy): public.audit, public.history"), "{plan}");
    assert!(app_may_connect(&pair.source), "a dry run changes nothing");
    // Killed right after the re-copy: the rerun rolls back, the next one completes.
    let out = pgferry(&args, &[("PGFERRY_FAILPOINT", "cutover-after-recopy:1")]);
    assert_eq!(out.status.code(), Some(137));
    let out = pgferry(&args, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = ok(pgferry(&args, &[]));
    assert!(stdout.contains("re-copy keyless tables"), "{stdout}");
    assert_eq!(pair.target.fingerprints("app"), pair.source.fingerprints("app"));
    assert_eq!(pair.target.psql("app", "SELECT count(*) FROM history WHERE what = 'changed'"), "1");
}

#[test]
fn a_rehearsal_changes_nothing_the_application_sees_and_predicts_the_downtime() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let mut args = pair.args("rehearse", &urls);
    args.extend(["--switch-command", "echo switched > /dev/null", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(pgferry(&args, &[]))).unwrap();
    assert_eq!(report["decision"]["decision"], "go", "{report:#}");
    assert_eq!(report["validation_equal"], true);
    assert_eq!(report["changes_drained"], 200, "the rows written after the last follow");
    assert_eq!(report["switch_command"], "echo switched > /dev/null");
    assert!(report["expected_downtime_seconds"].as_f64().unwrap() < 5.0);
    assert_eq!(app_role(&pair.source), before, "no fence");
    let app = format!("postgresql://app:app-pw@127.0.0.1:{}/app?sslmode=disable", pair.source.port());
    let out = Command::new("psql")
        .args([app.as_str(), "-Xqc", "INSERT INTO orders (note) VALUES ('the application still writes')"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The reader of pgferry's stderr goes away while the switch command runs (a
/// `| tee` stopped by Ctrl-C, an SSH session dropped): the command, which
/// writes after that, still runs to its end (it writes to a file of its own,
/// not through that pipe, where SIGPIPE would end it midway), and the cutover
/// completes.
#[test]
fn a_switch_command_outlives_the_reader_of_pgferrys_stderr() {
    let pair = migrated();
    let dir = tempfile::tempdir().unwrap();
    let (started, flag) = (dir.path().join("started"), dir.path().join("switched"));
    let switch = format!(
        "touch {}; sleep 2; for i in $(seq 1 2000); do echo line $i; echo err $i >&2; done; touch {}",
        started.display(),
        flag.display()
    );
    let urls = pair.urls();
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    let mut child = spawn(&args, &[]);
    wait_for(&started);
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(flag.exists(), "the switch command ran to its end: {stdout}");
    assert!(out.status.success() && stdout.contains("Downtime (fence to switch):"), "{stdout}");
    assert_eq!(content(&pair.source), content(&pair.target));
}

fn wait_for(path: &std::path::Path) {
    let started = std::time::Instant::now();
    while !path.exists() {
        assert!(started.elapsed().as_secs() < 60, "{} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_cutover_killed_while_its_switch_ran_never_rolls_back_by_itself() {
    let pair = migrated();
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let (started, done) = (dir.path().join("started"), dir.path().join("done"));
    let switch = format!("touch {}; sleep 3; touch {}", started.display(), done.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    // Killed right after the switch command started: the command goes on by itself
    // (its output not captured, or waiting for the pipes would wait for it).
    let status = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(&args)
        .env("PGFERRY_FAILPOINT", "cutover-during-switch:1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(137));
    wait_for(&started);
    // While it runs, even the operator's word cannot roll back.
    let mut rerun = pair.args("cutover", &urls);
    rerun.push("--switch-did-not-run");
    let out = pgferry(&rerun, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("still running"), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(&done);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // It ended: nobody but the operator knows where the application points.
    let out = pgferry(&pair.args("cutover", &urls), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("may already point at the target") && stderr.contains("--switch-ran"), "{stderr}");
    assert!(!app_may_connect(&pair.source), "nothing rolled back by itself");
    for removal in ["abort", "cleanup"] {
        let out = pgferry(&pair.args(removal, &urls), &[]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("--switch-ran or --switch-did-not-run"), "{removal}");
    }
    let mut ran = pair.args("cutover", &urls);
    ran.push("--switch-ran");
    let stdout = ok(pgferry(&ran, &[]));
    assert!(stdout.contains("cut over"), "{stdout}");
    assert!(!app_may_connect(&pair.source), "the old source stays fenced");
    assert_eq!(content(&pair.source), content(&pair.target));
}

#[test]
fn a_cutover_killed_before_its_switch_started_rolls_back_on_the_operators_word() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("switched");
    let switch = format!("touch {}", flag.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    let out = pgferry(&args, &[("PGFERRY_FAILPOINT", "cutover-after-switching:1")]);
    assert_eq!(out.status.code(), Some(137));
    let out = pgferry(&args, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--switch-did-not-run"));
    assert!(!app_may_connect(&pair.source));
    let mut did_not = args.clone();
    did_not.push("--switch-did-not-run");
    let out = pgferry(&did_not, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(app_role(&pair.source), before, "unfenced exactly");
    assert!(!flag.exists());
    // The word is refused where it does not apply.
    let out = pgferry(&did_not, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    ok(pgferry(&args, &[]));
    assert!(flag.exists());
}

#[test]
fn a_switch_command_that_hangs_is_stopped_at_its_time_limit_and_rolled_back() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("switched");
    let switch = format!("sleep 4 && touch {}", flag.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch, "--switch-timeout", "1"]);
    let out = pgferry(&args, &[]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not finish within 1 s") && stderr.contains("rolled back"), "{stderr}");
    assert_eq!(app_role(&pair.source), before);
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(!flag.exists(), "the whole process group was stopped: nothing switches after the rollback");
}

#[test]
fn sigint_while_fenced_rolls_back_before_exiting_and_during_the_switch_waits_for_it() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let (fence_started, fence_up, switched) =
        (dir.path().join("fence-started"), dir.path().join("fence-up"), dir.path().join("switched"));
    let raise = format!("touch {} {}; sleep 30", fence_started.display(), fence_up.display());
    let lift = format!("rm -f {}", fence_up.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--fence-command", &raise, "--unfence-command", &lift, "--switch-command", "true"]);
    let child = spawn(&args, &[]);
    wait_for(&fence_started);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("rolled back") && stderr.contains("stopped by a signal"), "{stderr}");
    assert_eq!(app_role(&pair.source), before, "unfenced before exiting");
    assert!(!fence_up.exists(), "the outside fence lifted too");

    // During the switch: the signal waits for the command, which completes the cutover.
    let switch_started = dir.path().join("switch-started");
    let switch = format!("touch {}; sleep 2; touch {}", switch_started.display(), switched.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    let child = spawn(&args, &[]);
    wait_for(&switch_started);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(switched.exists(), "the switch command ran to its end");
    assert!(!app_may_connect(&pair.source));
    assert_eq!(pair.target.psql("app", "SELECT step FROM pgferry.cutover"), "reported");
}

#[test]
fn a_target_lost_inside_the_cutover_leaves_the_source_unfenced_without_a_rerun() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("fence-started");
    let raise = format!("touch {}; sleep 2", started.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--fence-command", &raise, "--unfence-command", "true"]);
    let child = spawn(&args, &[]);
    wait_for(&started);
    pair.target.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("rolled back, the source is unfenced") && stderr.contains("Connection refused"),
        "the first cause: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "no terminal escapes when stderr is not a terminal: {stderr}");
    assert_eq!(app_role(&pair.source), before, "unfenced without the target");
    pair.target.resume();
    // The next cutover finds nothing to undo and completes.
    ok(pgferry(&pair.args("cutover", &urls), &[]));
    assert_eq!(content(&pair.source), content(&pair.target));
}

#[test]
fn the_cutover_carries_large_objects_and_materialized_views_changed_since_the_copy() {
    let pair = migrated_with(|c| {
        c.psql(
            "app",
            "CREATE MATERIALIZED VIEW order_count AS SELECT count(*) AS n FROM orders;
             CREATE TABLE docs (id int PRIMARY KEY, body oid);
             INSERT INTO docs VALUES (1, lo_from_bytea(0, 'first version')), (2, lo_from_bytea(0, 'to be removed'));",
        )
    });
    // After the copy: a large object changed, one unlinked, one created; the view refreshed.
    pair.source.psql(
        "app",
        "SELECT lo_put((SELECT body FROM docs WHERE id = 1), 0, 'FIRST');
         SELECT lo_unlink((SELECT body FROM docs WHERE id = 2));
         INSERT INTO docs VALUES (3, lo_from_bytea(0, 'new after the copy'));
         REFRESH MATERIALIZED VIEW order_count;",
    );
    let urls = pair.urls();
    let stdout = ok(pgferry(&pair.args("cutover", &urls), &[]));
    assert!(stdout.contains("materialized views refreshed: 1"), "{stdout}");
    let objects = |c: &Cluster| {
        c.psql("app", "SELECT string_agg(encode(lo_get(oid), 'escape'), ',' ORDER BY oid) FROM pg_largeobject_metadata")
    };
    assert_eq!(objects(&pair.target), objects(&pair.source));
    assert_eq!(
        pair.target.psql("app", "SELECT n FROM order_count"),
        pair.source.psql("app", "SELECT n FROM order_count")
    );
    assert_eq!(pair.target.psql("app", "SELECT n FROM order_count"), "1700");
}

#[test]
fn materialized_views_are_timed_by_the_rehearsal_shown_by_the_dry_run_and_can_wait_for_after_the_switch() {
    let pair =
        migrated_with(|c| c.psql("app", "CREATE MATERIALIZED VIEW order_count AS SELECT count(*) AS n FROM orders"));
    pair.source.psql("app", "REFRESH MATERIALIZED VIEW order_count");
    let urls = pair.urls();
    let after = |command| {
        let mut args = pair.args(command, &urls);
        args.extend(["--refresh-materialized-views", "after"]);
        args
    };

    // Not measured since the copy's refresh; the rehearsal measures and journals it.
    let planned = ok(pgferry(&pair.args("cutover", &urls).into_iter().chain(["--dry-run"]).collect::<Vec<_>>(), &[]));
    assert!(planned.contains("\"public\".\"order_count\": ") && planned.contains("(by copy)"), "{planned}");
    assert!(planned.contains("refreshed before the switch (inside the downtime)"), "{planned}");
    let rehearsed = ok(pgferry(&after("rehearse"), &[]));
    assert!(rehearsed.contains("1 refreshed; after the switch: not downtime"), "{rehearsed}");
    assert!(rehearsed.contains("\"public\".\"order_count\" "), "{rehearsed}");
    let planned = ok(pgferry(&after("cutover").into_iter().chain(["--dry-run"]).collect::<Vec<_>>(), &[]));
    assert!(planned.contains("(by rehearse)"), "the rehearsal's time is shown: {planned}");
    assert!(planned.contains("refreshed after the switch"), "{planned}");
    assert!(planned.contains("refresh the materialized views (after the switch)"), "{planned}");

    // The switch command reads the view on the target: still as the rehearsal
    // left it (1700 rows counted), since the refresh waits for after the switch.
    pair.source.psql("app", "INSERT INTO orders (note) SELECT 'late ' || g FROM generate_series(1, 50) g; REFRESH MATERIALIZED VIEW order_count");
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let psql = pair.target.version().bin_dir().join("psql");
    let switch = format!(
        "{} '{}' -Atc 'SELECT n FROM order_count' > {}",
        psql.display(),
        pair.target.url("app"),
        seen.display()
    );
    let mut args = after("cutover");
    args.extend(["--switch-command", &switch]);
    // Stopped right after the switch: the rerun finishes and refreshes the views.
    let out = pgferry(&args, &[("PGFERRY_FAILPOINT", "cutover-after-opened:1")]);
    assert!(!out.status.success(), "the failpoint stops it");
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "1700", "stale at the switch");
    assert_eq!(pair.target.psql("app", "SELECT n FROM order_count"), "1700", "not refreshed before the stop");
    let finished = ok(pgferry(&after("cutover"), &[]));
    assert!(finished.contains("materialized views refreshed after the switch: 1"), "{finished}");
    assert_eq!(pair.target.psql("app", "SELECT n FROM order_count"), "1750");
    assert_eq!(
        pair.target.psql("app", "SELECT n FROM order_count"),
        pair.source.psql("app", "SELECT n FROM order_count")
    );
}

#[test]
fn nothing_unfences_the_old_source_behind_the_cutovers_back() {
    let pair = migrated();
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("switch-started");
    // Longer than the runner lock's grace for a holder that has just ended.
    let switch = format!("touch {}; sleep 4", started.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    let child = spawn(&args, &[]);
    wait_for(&started);
    // abort while the cutover runs: refused by the runner lock, the fence stays.
    let out = pgferry(&pair.args("abort", &urls), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another pgferry process"));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!app_may_connect(&pair.source));
    // cleanup keeps the record that the application was switched: neither a
    // second cutover nor abort unfences the old source afterwards.
    ok(pgferry(&pair.args("cleanup", &urls), &[]));
    let out = pgferry(&pair.args("cutover", &urls), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already cut over"));
    let out = pgferry(&pair.args("abort", &urls), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!app_may_connect(&pair.source), "the old source stays fenced");
    // Even with the target's journal gone, the source's own record of the switch stands.
    pair.target.psql("app", "DROP SCHEMA pgferry CASCADE");
    let out = pgferry(&pair.args("cutover", &urls), &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--switch-ran"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!app_may_connect(&pair.source), "the old source stays fenced");
}

#[test]
fn validate_cutover_or_rehearse_before_the_copy_change_nothing_and_refuse_the_cutover() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql("app", "CREATE TABLE orders (id bigserial PRIMARY KEY, note text)");
    let urls = [source.url("app"), target.url("app")];
    // A validation of the target not copied yet finds it different and records
    // nothing: such a verdict would stop the cutover after the copy.
    let out = pgferry(&["validate", "--source", &urls[0], "--target", &urls[1]], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(target.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");
    // Nothing journaled, then the journal of a copy that has not finished (no change capture yet).
    for journal in ["", "CREATE SCHEMA pgferry; CREATE TABLE pgferry.migration (name text PRIMARY KEY, phase text NOT NULL, slot_lsn pg_lsn, updated_at timestamptz NOT NULL DEFAULT now()); INSERT INTO pgferry.migration VALUES ('main', 'data')"] {
        if !journal.is_empty() {
            // An earlier release's journal, and its slot (named without the database).
            target.psql("app", journal);
            source.psql("app", "SELECT pg_create_logical_replication_slot('pgferry_main', 'pgoutput')");
        }
        let out = pgferry(&["validate", "--source", &urls[0], "--target", &urls[1]], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        for command in ["cutover", "rehearse"] {
            let out = pgferry(&[command, "--source", &urls[0], "--target", &urls[1]], &[]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
            assert!(stderr.contains("change capture is not running yet") || stderr.contains("pgferry copy"), "{command}: {stderr}");
        }
        assert_eq!(source.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0", "no fence journal");
    }
    assert_eq!(target.psql("app", "SELECT to_regclass('pgferry.validation') IS NULL"), "t", "no verdict recorded");
}

/// The application writing, as its own role and with `synchronous_commit`
/// off, for as long as it may: one session at a time, reconnecting whenever
/// the fence ends it (and failing to while fenced). Every row it commits on the source must reach the target once.
struct LiveApplication {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl LiveApplication {
    fn start(source: &Cluster) -> LiveApplication {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let url = format!("postgresql://app:app-pw@127.0.0.1:{}/app?sslmode=disable", source.port());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let mut psql = Command::new("psql")
                    .args([url.as_str(), "-Xq", "-v", "ON_ERROR_STOP=1"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let mut input = psql.stdin.take().unwrap();
                // Its last commits may not be flushed when the fence ends it.
                let _ = writeln!(input, "SET synchronous_commit = off;");
                while !stopping.load(Ordering::Relaxed)
                    && writeln!(input, "INSERT INTO orders (note) VALUES ('live');").is_ok()
                    && input.flush().is_ok()
                {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                drop(input);
                let _ = psql.wait();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        LiveApplication { stop, handle }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap();
    }
}

/// The drain runs across the fence (#18): the application writes up to the
/// moment its session is ended, and a cutover killed inside the fence is rolled
/// back by the rerun while it writes again. Whatever the source committed
/// reaches the target exactly once.
#[test]
fn a_cutover_under_live_writes_loses_and_doubles_nothing_even_when_killed_inside_the_fence() {
    for failpoint in [None, Some("fence-after-raise:1"), Some("cutover-after-fenced:1")] {
        let pair = migrated();
        let before = app_role(&pair.source);
        let urls = pair.urls();
        let live = LiveApplication::start(&pair.source);
        let count = || pair.source.psql("app", "SELECT count(*) FROM orders WHERE note = 'live'");
        let started = std::time::Instant::now();
        while count().parse::<u64>().unwrap() < 50 {
            assert!(started.elapsed().as_secs() < 30, "the application never wrote");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if let Some(failpoint) = failpoint {
            let out = pgferry(&pair.args("cutover", &urls), &[("PGFERRY_FAILPOINT", failpoint)]);
            assert_eq!(out.status.code(), Some(137), "{failpoint}: {}", String::from_utf8_lossy(&out.stderr));
            let out = pgferry(&pair.args("cutover", &urls), &[]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.code() == Some(3) && stderr.contains("rolled back"), "{failpoint}: {stderr}");
            assert_eq!(app_role(&pair.source), before, "{failpoint}: unfenced exactly");
            let written = count().parse::<u64>().unwrap();
            let started = std::time::Instant::now();
            while count().parse::<u64>().unwrap() < written + 50 {
                assert!(started.elapsed().as_secs() < 30, "{failpoint}: the application never wrote again");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let report = ok(pgferry(&pair.args("cutover", &urls), &[]));
        assert!(report.contains("cut over"), "{failpoint:?}: {report}");
        let written = count();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(count(), written, "{failpoint:?}: the fenced source took no write after the cutover");
        live.stop();
        assert_eq!(content(&pair.source), content(&pair.target), "{failpoint:?}: {report}");
    }
}

/// The drain's stream, open across the fence (#18), ended while fenced (here
/// by the outside fence's command, as an administrator might): the drain
/// opens it again (pgferry's role keeps CONNECT) and the cutover completes
/// with nothing lost.
#[test]
fn the_drains_stream_ended_inside_the_fence_is_opened_again() {
    let pair = migrated();
    let urls = pair.urls();
    pair.source.psql("app", "INSERT INTO orders (note) SELECT 'inside ' || g FROM generate_series(1, 50) g");
    let dir = tempfile::tempdir().unwrap();
    let ended = dir.path().join("ended");
    let end_stream = format!(
        "psql '{}' -XAtc \"SELECT count(*) FILTER (WHERE pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE active\" > {}",
        urls[0],
        ended.display()
    );
    let mut args = pair.args("cutover", &urls);
    args.extend(["--fence-command", &end_stream, "--unfence-command", "true", "--switch-command", "true"]);
    let report = ok(pgferry(&args, &[]));
    assert!(report.contains("cut over") && report.contains("0 session(s) ended"), "{report}");
    assert_eq!(std::fs::read_to_string(&ended).unwrap().trim(), "1", "the drain's stream was ended while fenced");
    assert_eq!(content(&pair.source), content(&pair.target));
}

/// The fence goes up only once the drain's walsender holds the slot (#18):
/// a slot held for a moment by another session when the drain opens its
/// stream (here pg_recvlogical, as a lingering walsender would) is waited for
/// before the fence, not inside it, and the fence ends none of pgferry's own.
#[test]
fn the_fence_waits_until_the_drain_holds_the_slot() {
    let pair = migrated();
    let urls = pair.urls();
    ok(pgferry(&[pair.args("follow", &urls), vec!["--until-caught-up"]].concat(), &[]));
    let slot = pair.source.psql("app", "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'");
    let dir = tempfile::tempdir().unwrap();
    let pause = format!("cutover-before-drain:{}", dir.path().display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", "true"]);
    let cutover = spawn(&args, &[("PGFERRY_PAUSE", &pause)]);
    wait_for(&dir.path().join("cutover-before-drain.reached"));
    let conninfo =
        format!("host={} port={} user=postgres dbname=app", pair.source.socket_dir().display(), pair.source.port());
    let mut holder = pair
        .source
        .version()
        .client_command("pg_recvlogical")
        .args(["-d", &conninfo, "--slot", &slot, "--start", "--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o", "publication_names=pgferry_main"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while pair.source.psql("app", &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'")) != "t"
    {
        assert!(started.elapsed().as_secs() < 20, "pg_recvlogical never held the slot");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(dir.path().join("cutover-before-drain.go"), b"").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = cutover.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("; 0 session(s) ended."), "{report}");
    let downtime: f64 =
        report.split("Downtime (fence to switch): ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(downtime < 1.5, "the wait for the slot was inside the fence: {report}");
    assert_eq!(content(&pair.source), content(&pair.target));
}

/// The drain failing for good inside the fence (#18: it runs across it): here
/// its slot is dropped once the source is fenced. The cutover rolls back both
/// fences exactly and says why.
#[test]
fn a_slot_dropped_inside_the_fence_rolls_the_cutover_back_exactly() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("outside-fence-up");
    let drop_slot = format!(
        "touch {}; psql '{}' -Xq -c \"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active\" \
         -c \"SELECT pg_sleep(0.5)\" -c \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots\"",
        flag.display(),
        urls[0]
    );
    let lift = format!("rm {}", flag.display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--fence-command", &drop_slot, "--unfence-command", &lift, "--switch-command", "true"]);
    let out = pgferry(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the cutover was rolled back, the source is unfenced")
            && stderr.contains("no longer exists on the source"),
        "{stderr}"
    );
    assert_eq!(pair.source.psql("app", "SELECT count(*) FROM pg_replication_slots"), "0", "the slot was dropped");
    assert_eq!(app_role(&pair.source), before, "unfenced exactly");
    assert!(!flag.exists(), "the outside fence lifted too");
}

/// SIGINT while fenced with the drain still following (#18: the fence is up,
/// its end not yet marked): the drain is stopped, the fence lifted exactly,
/// and the rerun cuts over with every row once.
#[test]
fn sigint_while_the_drain_follows_inside_the_fence_rolls_back_and_the_rerun_completes() {
    let pair = migrated();
    let before = app_role(&pair.source);
    let urls = pair.urls();
    let dir = tempfile::tempdir().unwrap();
    let pause = format!("cutover-before-mark:{}", dir.path().display());
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", "true"]);
    let child = spawn(&args, &[("PGFERRY_PAUSE", &pause)]);
    wait_for(&dir.path().join("cutover-before-mark.reached"));
    assert!(!app_may_connect(&pair.source), "fenced");
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("rolled back") && stderr.contains("stopped by a signal"), "{stderr}");
    assert_eq!(app_role(&pair.source), before, "unfenced exactly");
    pair.source.psql("app", "INSERT INTO orders (note) VALUES ('after the interrupted cutover')");
    let report = ok(pgferry(&args, &[]));
    assert!(report.contains("cut over"), "{report}");
    assert_eq!(content(&pair.source), content(&pair.target));
}
