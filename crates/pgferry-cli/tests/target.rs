//! `pgferry target prepare | restore | validate-constraints` against real clusters:
//! a target prepared for a DMS load and restored ends with the catalog it started
//! with and the source's sequence positions; orphan rows fail loudly; the process
//! killed between any two steps and rerun ends where an uninterrupted run ends.

use std::process::{Command, Output};

use pgferry_core::inventory::{Inventory, TriggerState};
use pgferry_testkit::{q, Cluster, PgVersion, HOSTILE_NAMES};

fn pgferry(args: &[&str], failpoint: Option<&str>) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgferry"));
    command.args(args).env("HOME", home.path()).env_remove("PGFERRY_FAILPOINT");
    if let Some(f) = failpoint {
        command.env("PGFERRY_FAILPOINT", f);
    }
    command.output().expect("run pgferry")
}

fn text(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn ok(output: Output) -> Output {
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    output
}

fn inventory(cluster: &Cluster, db: &str) -> Inventory {
    let out = ok(pgferry(&["inventory", "--db", &cluster.url(db), "--format", "json"], None));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

const PARENT: &str = "\"Sales Ω\".\"Comp\"\"Parent\"";

/// Schema: several schemas (some named with every hostile name), self-referencing,
/// composite, deferrable and NOT VALID foreign keys, foreign keys from and to a
/// partitioned table, triggers in all four states (a constraint trigger, clones on
/// partitions), and serial, identity, standalone, shared, descending and cycling
/// sequences.
fn schema(hostile: &[&str]) -> String {
    let mut sql = format!(
        r#"CREATE SCHEMA app; CREATE SCHEMA "Sales Ω";
        CREATE TABLE app.parent (id bigserial PRIMARY KEY, code text UNIQUE NOT NULL);
        CREATE TABLE {PARENT} (a int, b int, PRIMARY KEY (a, b));
        CREATE TABLE app.child (
            id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            parent_id bigint CONSTRAINT "child→parent; drop" REFERENCES app.parent(id) ON DELETE CASCADE,
            code text, a int, b int, manager_id int,
            CONSTRAINT child_comp FOREIGN KEY (a, b) REFERENCES {PARENT} (a, b)
                MATCH FULL ON UPDATE CASCADE ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
            CONSTRAINT child_self FOREIGN KEY (manager_id) REFERENCES app.child(id) DEFERRABLE);
        CREATE TABLE app.events (id bigint NOT NULL, at date NOT NULL,
            parent_id bigint CONSTRAINT events_parent REFERENCES app.parent(id), PRIMARY KEY (id, at))
            PARTITION BY RANGE (at);
        CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE app.event_notes (id serial PRIMARY KEY, event_id bigint, event_at date,
            CONSTRAINT notes_event FOREIGN KEY (event_id, event_at) REFERENCES app.events (id, at));
        CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
        CREATE TRIGGER t_origin BEFORE INSERT ON app.child FOR EACH ROW EXECUTE FUNCTION app.touch();
        CREATE TRIGGER "was disabled" BEFORE UPDATE ON app.child FOR EACH ROW EXECUTE FUNCTION app.touch();
        ALTER TABLE app.child DISABLE TRIGGER "was disabled";
        CREATE TRIGGER t_replica BEFORE DELETE ON app.child FOR EACH ROW EXECUTE FUNCTION app.touch();
        ALTER TABLE app.child ENABLE REPLICA TRIGGER t_replica;
        CREATE TRIGGER t_always BEFORE INSERT ON {PARENT} FOR EACH ROW EXECUTE FUNCTION app.touch();
        ALTER TABLE {PARENT} ENABLE ALWAYS TRIGGER t_always;
        CREATE CONSTRAINT TRIGGER t_constraint AFTER INSERT ON app.parent DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION app.touch();
        CREATE TRIGGER t_part AFTER INSERT ON app.events FOR EACH ROW EXECUTE FUNCTION app.touch();
        ALTER TABLE app.events_2025 DISABLE TRIGGER t_part;
        CREATE SEQUENCE app.free_seq;
        CREATE SEQUENCE "Sales Ω"."desc seq" INCREMENT BY -3 MINVALUE -1000 MAXVALUE -1 START WITH -1;
        CREATE SEQUENCE app.cycle_seq AS smallint INCREMENT BY 2 MINVALUE 1 MAXVALUE 5 CYCLE;
        CREATE SEQUENCE app.shared_seq START 100;
        CREATE SEQUENCE app.never_called;
        CREATE TABLE app.s1 (id int PRIMARY KEY DEFAULT nextval('app.shared_seq'));
        CREATE TABLE app.s2 (id int PRIMARY KEY DEFAULT nextval('app.shared_seq'));
        INSERT INTO app.parent (code) SELECT 'c' || g FROM generate_series(1, 5) g;
        INSERT INTO {PARENT} VALUES (1, 1), (1, 2);
        INSERT INTO app.child (parent_id, code, a, b, manager_id) VALUES (1, 'c1', 1, 1, NULL), (2, 'c2', 1, 2, 1);
        SET CONSTRAINTS ALL IMMEDIATE;
        ALTER TABLE app.child ADD CONSTRAINT child_code_nv FOREIGN KEY (code) REFERENCES app.parent(code) NOT VALID;
        INSERT INTO app.events VALUES (1, '2024-05-01', 1), (2, '2025-05-01', 2);
        INSERT INTO app.event_notes (event_id, event_at) VALUES (1, '2024-05-01');
        INSERT INTO app.s1 DEFAULT VALUES; INSERT INTO app.s2 DEFAULT VALUES;
        SELECT nextval('app.free_seq'), nextval('"Sales Ω"."desc seq"'), nextval('"Sales Ω"."desc seq"');
        SELECT nextval('app.cycle_seq') FROM generate_series(1, 4);
        "#
    );
    for name in hostile {
        let n = q(name);
        sql.push_str(&format!(
            "CREATE SCHEMA {n}; CREATE TABLE {n}.{n} (id serial PRIMARY KEY, p bigint CONSTRAINT {n} REFERENCES app.parent(id));
             CREATE TRIGGER {n} BEFORE INSERT ON {n}.{n} FOR EACH ROW EXECUTE FUNCTION app.touch();
             INSERT INTO {n}.{n} (p) VALUES (1), (2);\n"
        ));
    }
    sql
}

/// What DMS does to the target in Truncate mode, in an order foreign keys would
/// refuse: empty every table, then load children before their parents.
fn dms_load(hostile: &[&str]) -> String {
    let mut sql = format!(
        r#"TRUNCATE app.child, app.event_notes, app.events, app.parent, {PARENT}, app.s1, app.s2;
        INSERT INTO app.child (id, parent_id, code, a, b, manager_id) OVERRIDING SYSTEM VALUE
            VALUES (2, 2, 'c2', 1, 2, 1), (1, 1, 'c1', 1, 1, NULL), (3, 4, 'c4', NULL, NULL, 2);
        INSERT INTO app.event_notes VALUES (1, 1, '2024-05-01');
        INSERT INTO app.events VALUES (1, '2024-05-01', 1), (2, '2025-05-01', 2);
        INSERT INTO app.parent SELECT g, 'c' || g FROM generate_series(1, 6) g;
        INSERT INTO {PARENT} VALUES (1, 1), (1, 2);
        INSERT INTO app.s1 VALUES (100); INSERT INTO app.s2 VALUES (101);
        "#
    );
    for name in hostile {
        let n = q(name);
        sql.push_str(&format!("TRUNCATE {n}.{n}; INSERT INTO {n}.{n} VALUES (1, 1), (2, 2);\n"));
    }
    sql
}

/// Writes on the source while DMS runs: every kind of sequence moves.
const SOURCE_WRITES: &str = r#"
    INSERT INTO app.parent (code) VALUES ('c6');
    INSERT INTO app.child (parent_id, code) VALUES (4, 'c4');
    SELECT nextval('app.free_seq') FROM generate_series(1, 41);
    SELECT nextval('"Sales Ω"."desc seq"') FROM generate_series(1, 5);
    SELECT nextval('app.cycle_seq');
    SELECT nextval('app.shared_seq') FROM generate_series(1, 7);"#;

fn hostile_writes(hostile: &[&str]) -> String {
    hostile.iter().map(|n| format!("INSERT INTO {0}.{0} (p) VALUES (3);", q(n))).collect()
}

struct Pair {
    source: Cluster,
    target: Cluster,
}

/// A source with writes after the snapshot, and a target restored from the snapshot.
fn pair(version: PgVersion, hostile: &[&str]) -> Pair {
    pair_on(Cluster::start(version), version, hostile)
}

fn pair_on(target: Cluster, version: PgVersion, hostile: &[&str]) -> Pair {
    let source = Cluster::start(version);
    source.create_database("app");
    target.create_database("app");
    source.psql("app", &schema(hostile));
    target.psql("app", &schema(hostile));
    if version == PgVersion::V18 {
        // New in 18: a foreign key declared but not enforced, which is never valid.
        let unenforced = "CREATE TABLE public.remarks (id int PRIMARY KEY, parent_id int,
             CONSTRAINT remarks_parent_unenforced FOREIGN KEY (parent_id) REFERENCES public.remarks NOT ENFORCED)";
        source.psql("app", unenforced);
        target.psql("app", unenforced);
    }
    source.psql("app", SOURCE_WRITES);
    source.psql("app", &hostile_writes(hostile));
    Pair { source, target }
}

fn positions(inventory: &Inventory) -> Vec<(String, i64, bool)> {
    inventory.sequences.iter().map(|s| (s.name.to_string(), s.position.last_value, s.position.is_called)).collect()
}

fn prepare(pair: &Pair, db: &str, failpoint: Option<&str>) -> Output {
    pgferry(&["target", "prepare", "--source", &pair.source.url("app"), "--target", &pair.target.url(db)], failpoint)
}

fn restore(pair: &Pair, db: &str, validate: &str, failpoint: Option<&str>) -> Output {
    pgferry(
        &[
            "target",
            "restore",
            "--source",
            &pair.source.url("app"),
            "--target",
            &pair.target.url(db),
            "--validate",
            validate,
        ],
        failpoint,
    )
}

#[test]
fn prepare_then_restore_leaves_the_catalog_as_it_was_and_sequences_as_the_source() {
    for version in [PgVersion::V15, PgVersion::V18] {
        let pair = pair(version, HOSTILE_NAMES);
        let before = inventory(&pair.target, "app");
        let unenforced = usize::from(version == PgVersion::V18);
        assert_eq!(before.foreign_keys.len(), 6 + HOSTILE_NAMES.len() + unenforced);
        assert!(before.foreign_keys.iter().any(|f| !f.validated));

        let out = ok(prepare(&pair, "app", None));
        assert!(text(&out).contains("dropped"), "{}", text(&out));
        let prepared = inventory(&pair.target, "app");
        assert!(prepared.foreign_keys.is_empty(), "{:?}", prepared.foreign_keys);
        assert!(prepared.triggers.iter().all(|t| t.state == TriggerState::Disabled), "{:?}", prepared.triggers);
        let again = ok(prepare(&pair, "app", None));
        assert!(text(&again).contains("0 object(s) done, 0 failure(s)"), "a rerun changes nothing: {}", text(&again));

        pair.target.psql("app", &dms_load(HOSTILE_NAMES));
        let out = ok(restore(&pair, "app", "now", None));
        let report = text(&out);
        assert!(report.contains("validated"), "{report}");
        if version == PgVersion::V15 {
            assert!(report.contains("added and validated (before PostgreSQL 18"), "{report}");
        }
        let after = inventory(&pair.target, "app");
        assert_eq!(after.clone().catalog_only(), before.clone().catalog_only(), "{version:?}");
        let source = inventory(&pair.source, "app");
        assert_eq!(positions(&after), positions(&source));
        assert_ne!(positions(&before), positions(&source), "the source moved on");

        // The state of the clone on a partition is its own.
        let clone = after.triggers.iter().find(|t| t.table.name.as_str() == "events_2025").unwrap();
        assert_eq!(clone.state, TriggerState::Disabled);
        // A rerun recognizes everything and changes nothing.
        ok(restore(&pair, "app", "now", None));
        assert_eq!(inventory(&pair.target, "app").catalog_only(), before.catalog_only());
    }
}

/// What the restore reports holds after a crash of the target: the steps
/// commit asynchronously, and a target whose default commits asynchronously
/// too (as every test cluster here, its WAL writer waking every 10 s) crashed
/// right after the restore keeps every object restored, validated or not, and
/// every sequence set; with the validations left for later (where nothing
/// after "writes may resume" commits synchronously) and done at once.
#[test]
fn a_target_crashed_right_after_the_restore_keeps_what_was_restored() {
    for validate in ["later", "now"] {
        let target = Cluster::builder(PgVersion::V15).setting("wal_writer_delay", "'10s'").start();
        let pair = pair_on(target, PgVersion::V15, &[]);
        ok(prepare(&pair, "app", None));
        pair.target.psql("app", &dms_load(&[]));
        ok(restore(&pair, "app", validate, None));
        let restored = inventory(&pair.target, "app");
        pair.target.crash();
        pair.target.resume();
        let after = inventory(&pair.target, "app");
        assert_eq!(after.clone().catalog_only(), restored.catalog_only(), "--validate {validate}");
        assert_eq!(positions(&after), positions(&inventory(&pair.source, "app")), "--validate {validate}");
    }
}

#[test]
fn orphan_rows_fail_loudly_and_validate_constraints_finishes_later() {
    let pair = pair(PgVersion::V15, &[]);
    let before = inventory(&pair.target, "app");
    ok(prepare(&pair, "app", None));
    pair.target.psql("app", "INSERT INTO app.child (parent_id, code) VALUES (999, 'c1')");
    let out = restore(&pair, "app", "later", None);
    assert_eq!(out.status.code(), Some(0), "later validates nothing: {}", text(&out));
    assert!(text(&out).contains("added NOT VALID"), "{}", text(&out));

    let out = pgferry(&["target", "validate-constraints", "--target", &pair.target.url("app")], None);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("FAILED   foreign key \"child→parent; drop\" on \"app\".\"child\""), "{report}");
    assert!(report.contains("Key (parent_id)=(999) is not present in table \"parent\""), "{report}");
    assert!(
        report.contains("foreign key \"child_self\" on \"app\".\"child\": validated"),
        "the others go on: {report}"
    );

    pair.target.psql("app", "DELETE FROM app.child WHERE parent_id = 999");
    let out =
        ok(pgferry(&["target", "validate-constraints", "--target", &pair.target.url("app"), "--format", "json"], None));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["objects"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["objects"][0]["action"], "validate_foreign_key");
    assert_eq!(inventory(&pair.target, "app").catalog_only(), before.catalog_only());
}

#[test]
fn sql_only_prints_a_script_with_the_same_effect_and_changes_nothing() {
    let pair = pair(PgVersion::V15, &HOSTILE_NAMES[..3]);
    pair.target.psql("postgres", "CREATE DATABASE copy TEMPLATE app");
    let before = inventory(&pair.target, "app");
    let out = ok(pgferry(
        &["target", "prepare", "--sql-only", "--source", &pair.source.url("app"), "--target", &pair.target.url("app")],
        None,
    ));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("BEGIN;\nALTER TABLE \"app\".\"child\" DROP CONSTRAINT IF EXISTS \"child_self\";"),
        "{script}"
    );
    assert_eq!(inventory(&pair.target, "app"), before, "--sql-only changed the target");
    assert_eq!(pair.target.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &script).unwrap();
    std::fs::set_permissions(file.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    pair.target.psql("app", &format!("\\i {}", file.path().display()));
    ok(prepare(&pair, "copy", None));
    assert_eq!(inventory(&pair.target, "app").catalog_only(), inventory(&pair.target, "copy").catalog_only());
    assert_eq!(journal(&pair.target, "app"), journal(&pair.target, "copy"));
}

fn journal(cluster: &Cluster, db: &str) -> String {
    cluster.psql(
        db,
        "SELECT coalesce(string_agg(f::text, E'\\n' ORDER BY f::text), '') FROM
           (SELECT table_schema, table_name, constraint_name, definition, validated, partitioned_table, state FROM pgferry.saved_foreign_key
            UNION ALL SELECT table_schema, table_name, trigger_name, definition, cloned_from_parent, false, saved_state || '/' || state FROM pgferry.saved_trigger) f",
    )
}

/// Kills the command after each step n = 1, 2, ... (until a run completes without
/// reaching its failpoint), reruns it, and compares the outcome with an
/// uninterrupted run's: catalog, sequence positions and journal.
fn kill_at_every_step(pair: &Pair, template: &str, failpoint: &str, run: &dyn Fn(&str, Option<&str>) -> Output) {
    pair.target.psql("postgres", &format!("CREATE DATABASE reference TEMPLATE {template}"));
    ok(run("reference", None));
    let expected = (
        inventory(&pair.target, "reference").catalog_only(),
        positions(&inventory(&pair.target, "reference")),
        journal(&pair.target, "reference"),
    );
    for n in 1.. {
        let db = format!("{failpoint}_{n}").replace([':', '-'], "_");
        pair.target.psql("postgres", &format!("CREATE DATABASE {db} TEMPLATE {template}"));
        let killed = run(&db, Some(&format!("{failpoint}:{n}")));
        if killed.status.code() == Some(0) {
            assert!(n > 2, "the failpoint {failpoint} was never reached");
            break;
        }
        assert_eq!(killed.status.code(), Some(137), "{}", text(&killed));
        ok(run(&db, None));
        let got = (
            inventory(&pair.target, &db).catalog_only(),
            positions(&inventory(&pair.target, &db)),
            journal(&pair.target, &db),
        );
        assert_eq!(got, expected, "killed after step {n} of {failpoint}");
        pair.target.psql("postgres", &format!("DROP DATABASE {db}"));
    }
}

#[test]
fn prepare_and_restore_killed_after_any_step_then_rerun_end_as_an_uninterrupted_run() {
    let pair = pair(PgVersion::V15, &HOSTILE_NAMES[..2]);
    pair.target.psql("postgres", "CREATE DATABASE fresh TEMPLATE app");
    kill_at_every_step(&pair, "fresh", "target-prepare:after-step", &|db, f| prepare(&pair, db, f));

    pair.target.psql("postgres", "CREATE DATABASE prepared TEMPLATE fresh");
    ok(prepare(&pair, "prepared", None));
    pair.target.psql("prepared", &dms_load(&HOSTILE_NAMES[..2]));
    pair.target.psql("postgres", "DROP DATABASE reference");
    kill_at_every_step(&pair, "prepared", "target-restore:after-step", &|db, f| restore(&pair, db, "now", f));
}
