//! No split brain through a wrong `--target` (issue #16): every command that acts on
//! both sides checks first that its target is the database this source is migrated
//! into (`pgferry_core::pairing`). A target that is the source itself, however it is
//! spelled, or another database (another migration's target, an empty one) is
//! refused with exit 1 before anything changes on either side: no fence, no slot or
//! publication dropped, no journal touched.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 1, the refusal's words in the message, a hint, and "nothing was changed".
fn assert_refused(out: &Output, needle: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: exit 1 expected\n{err}");
    assert!(err.contains(needle), "{what}: expected {needle:?} in:\n{err}");
    assert!(err.contains("hint: "), "{what}: says how to fix it:\n{err}");
    assert!(err.contains("nothing was changed"), "{what}:\n{err}");
}

struct Servers {
    source: Cluster,
    target: Cluster,
}

impl Servers {
    /// Each database copied from the source into the target's database of the same
    /// name under the default migration name, and caught up.
    fn migrated(databases: &[&str]) -> Servers {
        let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
        // Roles are the server's: made on both (the cutover's gate compares them).
        for c in [&source, &target] {
            c.psql("postgres", "CREATE ROLE app LOGIN PASSWORD 'app-pw' CONNECTION LIMIT 20");
        }
        for db in databases {
            source.create_database(db);
            target.create_database(db);
            source.psql(
                db,
                "CREATE TABLE orders (id bigserial PRIMARY KEY, note text); GRANT ALL ON orders, orders_id_seq TO app;
                 INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 100) g;",
            );
        }
        let s = Servers { source, target };
        for db in databases {
            ok(s.run("copy", &s.source.url(db), &s.target.url(db), &[]));
            s.source.psql(db, "INSERT INTO orders (note) SELECT 'after copy ' || g FROM generate_series(1, 50) g");
            ok(s.run("follow", &s.source.url(db), &s.target.url(db), &["--until-caught-up"]));
        }
        s
    }

    fn run(&self, command: &str, source: &str, target: &str, extra: &[&str]) -> Output {
        let mut args = vec![command, "--source", source, "--target", target];
        args.extend(extra);
        pgferry(&args)
    }

    /// What any of the refused commands could change, on both sides: the source
    /// server's slots (with their positions), and per database its publications,
    /// pgferry's objects, who may connect, the connection limits and the database
    /// settings (the fence's changes); the target's journals.
    fn state(&self, source_dbs: &[&str], target_dbs: &[&str]) -> String {
        let mut state = self.source.psql(
            "postgres",
            "SELECT coalesce(string_agg(slot_name || '@' || database || ':' || confirmed_flush_lsn || ':' || active, ',' ORDER BY slot_name), '')
             FROM pg_replication_slots",
        );
        state.push_str(&self.source.psql(
            "postgres",
            "SELECT string_agg(rolname || ':' || rolconnlimit, ',' ORDER BY rolname) FROM pg_roles;
             SELECT coalesce(string_agg(array_to_string(setconfig, ','), ';'), 'none') FROM pg_db_role_setting",
        ));
        for db in source_dbs {
            state.push_str(&format!("\n[source {db}] "));
            state.push_str(&self.source.psql(
                db,
                &format!(
                    "SELECT coalesce(string_agg(pubname, ',' ORDER BY pubname), '') FROM pg_publication;
                     SELECT has_database_privilege('app', '{db}', 'CONNECT');
                     SELECT (SELECT array_to_string(ARRAY(SELECT a::text FROM unnest(coalesce(datacl, acldefault('d', datdba))) a ORDER BY 1), ',') FROM pg_database WHERE datname = '{db}');
                     SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), 'none') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgferry';
                     SELECT count(*) FROM orders"
                ),
            ));
        }
        for db in target_dbs {
            state.push_str(&format!("\n[target {db}] "));
            state.push_str(&self.target.psql(
                db,
                "SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), 'none')
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgferry' AND c.relkind = 'r'",
            ));
            if self.target.psql(db, "SELECT to_regclass('pgferry.migration') IS NOT NULL") == "t" {
                state.push_str(&self.target.psql(
                    db,
                    "SELECT coalesce(string_agg(to_jsonb(m)::text, ',' ORDER BY name), '') FROM pgferry.migration m;
                     SELECT coalesce(string_agg(to_jsonb(p)::text, ','), '') FROM pgferry.apply_progress p",
                ));
            }
            if self.target.psql(db, "SELECT to_regclass('pgferry.cutover') IS NOT NULL") == "t" {
                state.push_str(
                    &self
                        .target
                        .psql(db, "SELECT coalesce(string_agg(to_jsonb(c)::text, ','), '') FROM pgferry.cutover c"),
                );
            }
        }
        state
    }
}

/// Bug 1 of #16: `abort` (and every other command) given the source as its target,
/// under any spelling, took the source's objects for the target's: abort dropped
/// the live migration's slot and publications.
#[test]
fn every_command_given_the_source_as_its_target_is_refused_and_changes_nothing() {
    let s = Servers::migrated(&["app"]);
    let source = s.source.url("app");
    let spellings = [
        source.clone(),
        format!("host={} port={} user=postgres dbname=app", s.source.socket_dir().display(), s.source.port()),
        format!("host=127.0.0.1 port={} user=postgres dbname=app sslmode=disable", s.source.port()),
    ];
    let before = s.state(&["app"], &["app"]);
    assert!(before.contains("pgferry_main__"), "the migration's slot: {before}");
    for target in &spellings {
        for force in [&[][..], &["--force"][..]] {
            let out = s.run("abort", &source, target, force);
            assert_refused(&out, "the target is the source itself", &format!("abort {force:?} --target {target}"));
            assert_eq!(s.state(&["app"], &["app"]), before, "abort --target {target} changed something");
        }
    }
    let socket = &spellings[1];
    let commands: [(&str, &[&str]); 8] = [
        ("cleanup", &[]),
        ("cleanup", &["--force"]),
        ("cutover", &["--switch-command", "true"]),
        ("cutover", &["--dry-run"]),
        ("rehearse", &["--switch-command", "true"]),
        ("follow", &["--until-caught-up"]),
        ("validate", &[]),
        ("status", &[]),
    ];
    for (command, extra) in commands {
        let out = s.run(command, &source, socket, extra);
        assert_refused(&out, "the target is the source itself", &format!("{command} {extra:?}"));
        assert_eq!(s.state(&["app"], &["app"]), before, "{command} {extra:?} changed something");
    }
    for command in ["copy", "start"] {
        let out = s.run(command, &source, socket, &[]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        assert_eq!(s.state(&["app"], &["app"]), before, "{command} changed something");
    }
    // The real pair still works: the migration was left whole.
    s.source.psql("app", "INSERT INTO orders (note) VALUES ('after the refusals')");
    let out = ok(s.run("cutover", &source, &s.target.url("app"), &["--switch-command", "true"]));
    assert!(out.contains("cut over"), "{out}");
    assert_eq!(
        s.source.psql("app", "SELECT count(*) FROM orders"),
        s.target.psql("app", "SELECT count(*) FROM orders")
    );
}

/// Bug 2 of #16: a cutover given another database as its target (another
/// migration's target, or an empty one) fenced the source before it found out;
/// abort and cleanup acted on the wrong migration's word. Each now checks the
/// pairing first: the target's journal must name this source.
#[test]
fn commands_given_another_database_as_their_target_refuse_before_touching_the_source() {
    let s = Servers::migrated(&["one", "two"]);
    s.target.create_database("fresh");
    let one = s.source.url("one");
    let (two, fresh) = (s.target.url("two"), s.target.url("fresh"));
    let (sources, targets) = (["one", "two"], ["one", "two", "fresh"]);
    let before = s.state(&sources, &targets);
    let commands: [(&str, &[&str]); 7] = [
        ("cutover", &["--switch-command", "true"]),
        ("cutover", &["--switch-command", "true", "--switch-did-not-run"]),
        ("abort", &[]),
        ("abort", &["--force"]),
        ("cleanup", &["--force"]),
        ("rehearse", &["--switch-command", "true"]),
        ("follow", &["--until-caught-up"]),
    ];
    for (command, extra) in commands {
        let out = s.run(command, &one, &two, extra);
        assert_refused(&out, "names another source", &format!("{command} {extra:?} --target two"));
        assert!(stderr(&out).contains("database OID"), "names what it found: {}", stderr(&out));
        assert_eq!(s.state(&sources, &targets), before, "{command} {extra:?} --target two changed something");
        let out = s.run(command, &one, &fresh, extra);
        assert_refused(&out, "holds no journal of migration main", &format!("{command} {extra:?} --target fresh"));
        assert_eq!(s.state(&sources, &targets), before, "{command} {extra:?} --target fresh changed something");
    }
    // Starting a migration into another migration's target is refused too; into an
    // empty database it is a new migration's start, which validate may compare.
    assert_refused(&s.run("copy", &one, &two, &[]), "names another source", "copy --target two");
    assert_eq!(s.state(&sources, &targets), before);
    // Both migrations are whole: each cuts over with its own target.
    for db in sources {
        s.source.psql(db, "INSERT INTO orders (note) VALUES ('after the refusals')");
        ok(s.run("cutover", &s.source.url(db), &s.target.url(db), &["--switch-command", "true"]));
        assert_eq!(
            s.source.psql(db, "SELECT count(*) FROM orders"),
            s.target.psql(db, "SELECT count(*) FROM orders"),
            "{db}"
        );
    }
}

/// The journal records its source's identity when the migration starts, and the
/// cutover's row again (it outlives cleanup): their stored format is pinned here.
/// A journal of an earlier release (no such columns) is migrated and still works.
#[test]
fn the_journal_records_the_source_identity_in_a_pinned_format() {
    let s = Servers::migrated(&["app"]);
    let identity = s.source.psql(
        "app",
        "SELECT (SELECT system_identifier::text FROM pg_control_system()) || '/' || oid FROM pg_database WHERE datname = 'app'",
    );
    let columns = |table: &str| {
        s.target.psql(
            "app",
            &format!(
                "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attname) FROM pg_attribute
                 WHERE attrelid = 'pgferry.{table}'::regclass AND attname LIKE 'source\\_%'"
            ),
        )
    };
    assert_eq!(columns("migration"), "source_database_oid oid, source_system_identifier text");
    assert_eq!(
        s.target.psql("app", "SELECT source_system_identifier || '/' || source_database_oid FROM pgferry.migration"),
        identity
    );
    ok(s.run("cutover", &s.source.url("app"), &s.target.url("app"), &["--switch-command", "true"]));
    assert_eq!(columns("cutover"), "source_database_oid oid, source_system_identifier text");
    assert_eq!(
        s.target.psql("app", "SELECT source_system_identifier || '/' || source_database_oid FROM pgferry.cutover"),
        identity
    );
    // cleanup keeps the cutover's row: abort --force (the source given back) still
    // finds its pair through it.
    ok(s.run("cleanup", &s.source.url("app"), &s.target.url("app"), &[]));
    assert_eq!(s.target.psql("app", "SELECT count(*) FROM pgferry.migration"), "0");
    let out = s.run("abort", &s.source.url("app"), &s.target.url("app"), &["--force"]);
    ok(out);
    assert_eq!(s.source.psql("app", "SELECT has_database_privilege('app', 'app', 'CONNECT')"), "t", "unfenced");
}

/// An earlier release's journal records no identity: it is migrated (the columns
/// added, empty) and keeps working; its recorded slot's name, which carries the
/// source database's OID, still tells another source's journal apart.
#[test]
fn an_earlier_releases_journal_keeps_working_and_is_checked_by_its_slot_name() {
    let s = Servers::migrated(&["one", "two"]);
    for db in ["one", "two"] {
        s.target.psql(
            db,
            "ALTER TABLE pgferry.migration DROP COLUMN source_system_identifier, DROP COLUMN source_database_oid",
        );
    }
    let before = s.state(&["one", "two"], &["one", "two"]);
    let out = s.run("abort", &s.source.url("one"), &s.target.url("two"), &[]);
    assert_refused(&out, "records the slot pgferry_main__", "abort --target two (an earlier release's journal)");
    assert_eq!(s.state(&["one", "two"], &["one", "two"]), before);
    s.source.psql("one", "INSERT INTO orders (note) VALUES ('after')");
    ok(s.run("follow", &s.source.url("one"), &s.target.url("one"), &["--until-caught-up"]));
    ok(s.run("cutover", &s.source.url("one"), &s.target.url("one"), &["--switch-command", "true"]));
    ok(s.run("abort", &s.source.url("two"), &s.target.url("two"), &[]));
    assert_eq!(
        s.source.psql("two", "SELECT count(*) FROM pg_replication_slots WHERE database = 'two'"),
        "0",
        "abort of the earlier release's migration dropped its slot"
    );
}

/// The part of [`Servers::state`] from one source database's section on (the
/// server-wide slot positions move while a migration streams).
fn from_section(state: String, section: &str) -> String {
    state[state.find(section).expect("section")..].to_string()
}

fn pgferry_with_failpoint(args: &[&str], failpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).env("PGFERRY_FAILPOINT", failpoint).output().unwrap()
}

/// Who may connect to the source database, its settings, and the app role's reach.
fn fence_state(s: &Servers, db: &str) -> String {
    s.source.psql(
        db,
        &format!(
            "SELECT (SELECT array_to_string(ARRAY(SELECT a::text FROM unnest(coalesce(datacl, acldefault('d', datdba))) a ORDER BY 1), ',') FROM pg_database WHERE datname = '{db}');
             SELECT coalesce(string_agg(array_to_string(setconfig, ','), ';'), 'none') FROM pg_db_role_setting;
             SELECT has_database_privilege('app', '{db}', 'CONNECT')"
        ),
    )
}

/// The operator's way out when the target is gone (#16): `abort` cannot pair a
/// source with a lost target and refuses; `abort --target-lost` lifts the fence of
/// a cutover killed while fenced exactly as it was set, removes this migration's
/// slot and publications on the source, leaves another database's migration of
/// the same name untouched, and a rerun finds nothing left. The fence's warning
/// names a superuser that could still write (F10).
#[test]
fn abort_with_the_target_lost_lifts_the_fence_and_removes_only_this_migrations_objects() {
    let s = Servers::migrated(&["app", "other"]);
    for c in [&s.source, &s.target] {
        c.psql("postgres", "CREATE ROLE dba LOGIN SUPERUSER");
    }
    let (source, target) = (s.source.url("app"), s.target.url("app"));
    let plan = ok(s.run("cutover", &source, &target, &["--dry-run", "--switch-command", "true"]));
    assert!(plan.contains("superusers can still log in") && plan.contains("dba"), "{plan}");
    let plan = ok(s.run("cutover", &source, &target, &["--dry-run", "--admin-role", "dba"]));
    assert!(!plan.contains("superusers can still log in"), "an administrator is kept on purpose: {plan}");

    let unfenced = fence_state(&s, "app");
    let other = from_section(s.state(&["other"], &["other"]), "\n[source other]");
    let other_slot =
        "SELECT slot_name || ' ' || confirmed_flush_lsn FROM pg_replication_slots WHERE database = 'other'";
    let other_slot_before = s.source.psql("postgres", other_slot);
    let out = pgferry_with_failpoint(
        &["cutover", "--source", &source, "--target", &target, "--switch-command", "true"],
        "cutover-after-fenced:1",
    );
    assert_eq!(out.status.code(), Some(137), "killed while fenced: {}", stderr(&out));
    assert!(s.source.psql("app", "SELECT has_database_privilege('app', 'app', 'CONNECT')") == "f", "fenced");
    s.target.psql("postgres", "DROP DATABASE app WITH (FORCE)");

    for command in ["abort", "cutover"] {
        let out = s.run(command, &source, &target, &[]);
        assert!(!out.status.success(), "no target to pair with: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("the source is still fenced by migration main") && err.contains("--target-lost"),
            "{command}: {err}"
        );
    }
    assert_eq!(s.source.psql("app", "SELECT has_database_privilege('app', 'app', 'CONNECT')"), "f", "still fenced");
    let both = pgferry(&["abort", "--source", &source, "--target", &target, "--target-lost"]);
    assert_eq!(both.status.code(), Some(2), "--target-lost with a target is a usage error: {}", stderr(&both));

    let misspelt = pgferry(&["abort", "--source", &source, "--target-lost", "--name", "mian"]);
    assert!(misspelt.status.success(), "nothing of mian: {}", stderr(&misspelt));
    assert!(stderr(&misspelt).contains("holds the fence of migration(s) main"), "named: {}", stderr(&misspelt));
    assert_eq!(s.source.psql("app", "SELECT has_database_privilege('app', 'app', 'CONNECT')"), "f", "still fenced");
    let report = ok(pgferry(&["abort", "--source", &source, "--target-lost"]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(report["fence_settings_restored"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["dropped_slot"], true, "{report}");
    assert_eq!(report["dropped_publications"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(fence_state(&s, "app"), unfenced, "the fence lifted exactly as it was set");
    s.source.psql("app", "SET ROLE app; INSERT INTO orders (note) VALUES ('after the abort')");
    assert_eq!(
        s.source.psql(
            "app",
            "SELECT count(*) FROM pg_replication_slots WHERE database = 'app'; SELECT count(*) FROM pg_publication"
        ),
        "0\n0"
    );
    assert_eq!(
        from_section(s.state(&["other"], &["other"]), "\n[source other]"),
        other,
        "the other migration is untouched"
    );
    assert_eq!(s.source.psql("postgres", other_slot), other_slot_before, "its slot too");

    let again = ok(pgferry(&["abort", "--source", &source, "--target-lost"]));
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        (again["fence_settings_restored"].as_u64(), &again["dropped_slot"]),
        (Some(0), &serde_json::json!(false))
    );
}

/// A source that records its switch started may have the application on the lost
/// target: `abort --target-lost` refuses and changes nothing until the operator's
/// `--force`; a slot still streamed (its target is not lost) is never dropped.
#[test]
fn abort_with_the_target_lost_needs_the_operators_word_once_the_switch_started() {
    let s = Servers::migrated(&["app"]);
    let (source, target) = (s.source.url("app"), s.target.url("app"));
    let mut follow = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &source, "--target", &target])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let streaming = "SELECT count(*) FROM pg_replication_slots WHERE database = 'app' AND active";
    for _ in 0..100 {
        if s.source.psql("app", streaming) == "1" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let before = from_section(s.state(&["app"], &[]), "\n[source app]");
    let out = pgferry(&["abort", "--source", &source, "--target-lost"]);
    assert_refused(&out, "other pgferry sessions are connected", "abort --target-lost while follow streams");
    follow.kill().unwrap();
    follow.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(from_section(s.state(&["app"], &[]), "\n[source app]"), before, "nothing changed");
    assert_eq!(s.source.psql("app", "SELECT count(*) FROM pg_replication_slots WHERE database = 'app'"), "1");

    let status = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["cutover", "--source", &source, "--target", &target, "--switch-command", "sleep 1"])
        .env("PGFERRY_FAILPOINT", "cutover-during-switch:1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(137));
    s.target.psql("postgres", "DROP DATABASE app WITH (FORCE)");
    let fenced = s.state(&["app"], &[]);
    let out = pgferry(&["abort", "--source", &source, "--target-lost"]);
    assert_refused(&out, "started its switch command", "abort --target-lost after the switch started");
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(s.state(&["app"], &[]), fenced, "nothing changed");
    ok(pgferry(&["abort", "--source", &source, "--target-lost", "--force"]));
    assert_eq!(s.source.psql("app", "SELECT has_database_privilege('app', 'app', 'CONNECT')"), "t", "unfenced");
    assert_eq!(s.source.psql("app", "SELECT count(*) FROM pg_replication_slots"), "0");
}
