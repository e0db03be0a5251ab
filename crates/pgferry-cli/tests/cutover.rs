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
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
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

fn app_role(c: &Cluster) -> String {
    c.psql("app", "SELECT rolconnlimit || ',' || coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting WHERE setrole = 0), 'none') FROM pg_roles WHERE rolname = 'app'")
}

#[test]
fn a_cutover_leaves_an_equal_target_with_sequences_ahead_and_reports_the_downtime() {
    let pair = migrated();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("switched");
    let switch = format!("touch {}", flag.display());
    let urls = pair.urls();
    let mut args = pair.args("cutover", &urls);
    args.extend(["--switch-command", &switch]);
    let stdout = ok(pgferry(&args, &[]));
    assert!(stdout.contains("Downtime (fence to switch):"), "{stdout}");
    assert!(stdout.contains("validate changed rows"), "{stdout}");
    assert!(stdout.contains("700 changed row(s) checked equal"), "the rows written after the copy: {stdout}");
    assert!(stdout.contains("fenced roles: app"), "{stdout}");
    assert!(flag.exists(), "the switch command ran");
    assert_eq!(content(&pair.source), content(&pair.target));
    assert_eq!(pair.source.psql("app", "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app'"), "0", "the old source stays fenced");
    // New rows on the target continue the sequence without a collision.
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
    assert!(stdout.contains("cut over"), "{stdout}");
    assert_eq!(pair.target.psql("app", "SELECT step FROM pgferry.cutover"), "reported");
    assert_eq!(content(&pair.source), content(&pair.target));
    assert_eq!(pair.source.psql("app", "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app'"), "0", "past the switch the old source stays fenced");
}

#[test]
fn keyless_tables_stop_the_cutover_until_the_operator_vouches_for_them() {
    let pair = migrated_with(|c| c.psql("app", "CREATE TABLE history (at timestamptz DEFAULT now(), what text); INSERT INTO history (what) VALUES ('x')"));
    let urls = pair.urls();
    let out = pgferry(&pair.args("cutover", &urls), &[]);
    assert_eq!(out.status.code(), Some(3));
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
    pair.source.psql("app", "UPDATE history SET what = 'changed' WHERE what = 'h7'; DELETE FROM history WHERE what = 'h8';");
    let urls = pair.urls();
    let mut args = pair.args("cutover", &urls);
    args.push("--recopy-keyless-tables");
    let mut dry = args.clone();
    dry.push("--dry-run");
    let plan = ok(pgferry(&dry, &[]));
    assert!(plan.contains("the cutover would start now") && plan.contains("copy the keyless tables again"), "{plan}");
    assert!(plan.contains("roles fenced: app (limit 20 restored after)"), "{plan}");
    assert!(plan.contains("keyless tables (recopy): public.audit, public.history"), "{plan}");
    assert_eq!(pair.source.psql("app", "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app'"), "20", "a dry run changes nothing");
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
    let out = Command::new("psql").args([app.as_str(), "-Xqc", "INSERT INTO orders (note) VALUES ('the application still writes')"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
