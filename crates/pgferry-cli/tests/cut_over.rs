//! After a completed cutover, on real clusters: every command that would move
//! data from the old, fenced source again, or write the target from it, exits 1
//! naming the migration and when it was cut over, with a hint, and changes
//! nothing on either side; `status`, `validate` and `check` keep working and
//! `status` says it was cut over.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every table of pgferry's schema on one side, each with a digest of its rows.
const JOURNAL: &str = "
SELECT coalesce(string_agg(c.relname || '=' || (xpath('/row/d/text()', query_to_xml(
           format('SELECT count(*) || '':'' || coalesce(md5(string_agg(t::text, '','' ORDER BY t::text)), '''') AS d FROM %s t', c.oid::regclass),
           false, true, '')))[1]::text, ' ' ORDER BY c.relname), 'none')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'pgferry' AND c.relkind = 'r'";

/// What a refused command must leave as it was: the source's slots (with their
/// positions), publications, event triggers, the fence (the application role's
/// CONNECT, the database's settings and ACL) and pgferry's journal there; the
/// target's journal, slots and rows.
fn both_sides(source: &Cluster, target: &Cluster) -> String {
    let slots = "SELECT coalesce(string_agg(slot_name || ':' || coalesce(confirmed_flush_lsn::text, '-') || ':' || active, ',' ORDER BY slot_name), 'none') FROM pg_replication_slots";
    let source_side = [
        source.psql("app", slots),
        source.psql("app", "SELECT coalesce(string_agg(pubname, ',' ORDER BY pubname), 'none') FROM pg_publication"),
        source.psql("app", "SELECT coalesce(string_agg(evtname, ',' ORDER BY evtname), 'none') FROM pg_event_trigger"),
        source.psql(
            "app",
            "SELECT has_database_privilege('app', 'app', 'CONNECT') || ',' ||
                coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting WHERE setrole = 0), 'none') || ',' ||
                (SELECT array_to_string(ARRAY(SELECT a::text FROM unnest(coalesce(datacl, acldefault('d', datdba))) a ORDER BY 1), ',')
                 FROM pg_database WHERE datname = 'app')",
        ),
        source.psql("app", JOURNAL),
    ];
    let target_side = [
        target.psql("app", JOURNAL),
        target.psql("app", slots),
        target.psql("app", "SELECT count(*) || ':' || md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o"),
    ];
    format!("source {}\ntarget {}", source_side.join(" | "), target_side.join(" | "))
}

#[test]
fn after_the_cutover_commands_that_move_data_refuse_and_change_nothing() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    // Roles are the server's: the operator makes them on the target (the cutover's gate compares them).
    target.psql("app", "CREATE ROLE app LOGIN PASSWORD 'app-pw'");
    source.psql(
        "app",
        "CREATE ROLE app LOGIN PASSWORD 'app-pw';
         CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
         GRANT ALL ON orders, orders_id_seq TO app;
         INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 500) g;",
    );
    let (src, dst) = (source.url("app"), target.url("app"));
    let pair = |command: &'static str| vec![command, "--source", &src, "--target", &dst];
    ok(pgferry(&pair("copy")));
    source.psql("app", "INSERT INTO orders (note) SELECT 'after copy ' || g FROM generate_series(1, 100) g");
    ok(pgferry(&[pair("follow"), vec!["--until-caught-up"]].concat()));
    let dir = tempfile::tempdir().unwrap();
    let switched = dir.path().join("switched");
    let switch = format!("touch {}", switched.display());
    ok(pgferry(&[pair("cutover"), vec!["--switch-command", &switch]].concat()));
    assert!(switched.exists(), "the switch command ran");
    let before = both_sides(&source, &target);

    let refused: Vec<Vec<&str>> = vec![
        pair("start"),
        [pair("start"), vec!["--seeded", "--seed-lsn", "0/1"]].concat(),
        pair("copy"),
        pair("follow"),
        [pair("follow"), vec!["--until-caught-up"]].concat(),
        [pair("follow"), vec!["--apply-ddl", "CREATE TABLE should_not_exist (id int)"]].concat(),
        [pair("rehearse"), vec!["--switch-command", "true"]].concat(),
        [pair("validate"), vec!["--repair"]].concat(),
        vec!["seed", "prepare", "--source", &src],
        vec!["seed", "prepare", "--source", &src, "--capture-ddl"],
    ];
    for args in &refused {
        let out = pgferry(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{stderr}");
        let message = stderr.lines().find(|l| l.contains("migration main")).unwrap_or_default();
        if args[..2] == ["seed", "prepare"] {
            // The source alone records that the switch ran, not that it ended.
            assert!(message.contains("ran its switch command (switched at "), "{args:?}\n{stderr}");
        } else {
            assert!(message.contains("migration main was cut over (switched at "), "{args:?}\n{stderr}");
            assert!(message.contains("downtime"), "{args:?}\n{stderr}");
        }
        assert!(message.contains("nothing was changed"), "{args:?}\n{stderr}");
        let hint = stderr.lines().find(|l| l.starts_with("hint: ")).unwrap_or_default();
        assert!(hint.contains("pgferry cleanup") && hint.contains("--name"), "{args:?}\n{stderr}");
        assert_eq!(both_sides(&source, &target), before, "{args:?} changed something\n{stderr}");
    }
    let out = pgferry(&[pair("cutover"), vec!["--switch-command", &switch]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("migration main was already cut over (switched at "));

    // The read-only commands keep working and say where the migration stands.
    let status = ok(pgferry(&pair("status")));
    assert!(status.contains("cutover        DONE: migration main was cut over (switched at "), "{status}");
    let json = ok(pgferry(&[pair("status"), vec!["--format", "json"]].concat()));
    assert!(json.contains("\"cut_over\": \"migration main was cut over"), "{json}");
    let check = pgferry(&pair("check"));
    assert!(matches!(check.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(both_sides(&source, &target), before, "status and check change nothing");
    let validation = ok(pgferry(&pair("validate")));
    assert!(validation.contains("EQUAL"), "{validation}");
    assert_eq!(target.try_psql("app", "SELECT to_regclass('should_not_exist') IS NULL"), Ok("t".into()));
}
