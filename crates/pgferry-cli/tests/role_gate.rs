//! The cutover's gate compares the server's roles, which nothing replicates, on
//! real clusters: a seeded target (a physical copy, as a snapshot restore makes)
//! matches its source; then on the source a login role is created, a membership
//! granted, a role's setting of every database set, a connection limit changed
//! and a password rotated. `cutover --dry-run` names each with its fix, in an
//! order that runs; the cutover refuses before the fence; the fixes, run as
//! given (the password copied as its hash), let it through. No password hash
//! is ever printed. A cutover killed inside its fence, then a dry run, does not
//! read the fence as the roles' differences, and after the rollback the roles
//! match again. The copy path: `pgferry roles` and a password set anew on the
//! target (a warning: its own salt), then the same later changes and fixes.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn said(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", said(&out));
    said(&out)
}

fn hash(c: &Cluster, role: &str) -> String {
    c.psql("postgres", &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"))
}

#[test]
fn roles_changed_on_the_source_after_the_snapshot_stop_the_cutover_until_the_target_has_them() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE ROLE app LOGIN PASSWORD 'app-pw' CONNECTION LIMIT 10; CREATE ROLE reporting LOGIN PASSWORD 'rep-pw';
         CREATE ROLE readers NOLOGIN;
         CREATE TABLE t (id int PRIMARY KEY, v text); GRANT ALL ON t TO app; GRANT SELECT ON t TO readers;
         INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g",
    );
    ok(pgferry(&["seed", "prepare", "--source", &source.url("app")]));
    let target = source.physical_copy();
    let (s, t) = (source.url("app"), target.url("app"));
    let log = target.log_path().display().to_string();
    ok(pgferry(&["start", "--source", &s, "--target", &t, "--seeded", "--seed-log", &log, "--until-caught-up"]));
    let pair = |command: &'static str| vec![command, "--source", &s, "--target", &t];
    let dry = |format: &'static str| pgferry(&[pair("cutover"), vec!["--dry-run", "--format", format]].concat());
    let planned = said(&dry("table"));
    assert!(planned.contains("catalog parity: the target's catalog matches the source's"), "{planned}");
    assert!(!planned.contains("password"), "a physical copy has the source's hashes: {planned}");

    // Changed on the source after the snapshot: roles are the server's, never replicated.
    source.psql(
        "app",
        "CREATE ROLE auditor LOGIN PASSWORD 'aud-pw'; GRANT readers TO reporting;
         ALTER ROLE app SET work_mem = '64MB'; ALTER ROLE app CONNECTION LIMIT 20;
         ALTER ROLE reporting PASSWORD 'rep-pw-2'",
    );
    let hashes = [hash(&source, "reporting"), hash(&source, "auditor"), hash(&target, "reporting")];
    let json = dry("json");
    assert_eq!(json.status.code(), Some(1), "{}", said(&json));
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("the plan in JSON");
    let differences = plan["parity"]["differences"].as_array().expect("differences").clone();
    let named: Vec<(&str, &str, Option<&str>)> = differences
        .iter()
        .map(|d| (d["object"].as_str().unwrap(), d["side"].as_str().unwrap(), d["ddl"].as_str()))
        .collect();
    assert_eq!(
        named,
        [
            (
                "role \"auditor\"",
                "missing_on_target",
                Some("CREATE ROLE \"auditor\" WITH LOGIN INHERIT NOCREATEDB NOCREATEROLE CONNECTION LIMIT -1")
            ),
            ("role \"app\"", "differs", Some("ALTER ROLE \"app\" WITH CONNECTION LIMIT 20")),
            (
                "the membership of role \"reporting\" in \"readers\"",
                "missing_on_target",
                Some("GRANT \"readers\" TO \"reporting\"")
            ),
            (
                "the setting work_mem of role \"app\"",
                "missing_on_target",
                Some("ALTER ROLE \"app\" SET \"work_mem\" = '64MB'")
            ),
            ("the password of role \"reporting\"", "differs", None),
        ],
        "{differences:#?}"
    );
    assert!(differences[0]["fix"].as_str().unwrap().contains("a login role: set its password"), "{differences:#?}");
    assert!(differences[4]["fix"].as_str().unwrap().contains("password changed on the source after the copy"));
    let text = said(&dry("table"));
    let refused = pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat());
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    let refusal = said(&refused);
    for (object, _, _) in &named {
        assert!(text.contains(object) && refusal.contains(object), "{object}:\n{text}\n{refusal}");
    }
    assert!(refusal.contains("nothing was changed"), "{refusal}");
    for shown in [&text, &refusal, &String::from_utf8_lossy(&json.stdout).into_owned()] {
        for h in &hashes {
            assert!(!shown.contains(h.as_str()), "a password hash was printed: {shown}");
        }
    }

    // The fixes as given; the password copied as the source's hash.
    for (_, _, ddl) in &named {
        if let Some(ddl) = ddl {
            target.psql("app", ddl);
        }
    }
    target.psql("app", &format!("ALTER ROLE reporting PASSWORD '{}'", hashes[0]));
    let json = dry("json");
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("the plan in JSON");
    let objects: Vec<&str> =
        plan["parity"]["differences"].as_array().unwrap().iter().map(|d| d["object"].as_str().unwrap()).collect();
    assert_eq!(objects, ["the password of role \"auditor\""], "the created login role has no password yet: {plan:#}");
    target.psql("app", &format!("ALTER ROLE auditor PASSWORD '{}'", hashes[1]));
    let planned = said(&dry("table"));
    assert!(planned.contains("catalog parity: the target's catalog matches the source's"), "{planned}");

    // Killed inside its fence: the dry run does not read the fence as roles'
    // differences (it is not compared while a fence is up), nor after the rollback.
    let killed = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args([pair("cutover"), vec!["--switch-command", "true"]].concat())
        .env("PGFERRY_FAILPOINT", "cutover-after-drained:1")
        .output()
        .expect("run pgferry");
    assert_eq!(killed.status.code(), Some(137), "{}", said(&killed));
    let plan: serde_json::Value = serde_json::from_slice(&dry("json").stdout).expect("the plan in JSON");
    assert!(plan["parity"].is_null(), "{plan:#}");
    assert!(!plan.to_string().contains("CONNECTION LIMIT"), "{plan:#}");
    let rolled_back = pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat());
    assert!(said(&rolled_back).contains("it has been rolled back"), "{}", said(&rolled_back));
    let planned = said(&dry("table"));
    assert!(planned.contains("catalog parity: the target's catalog matches the source's"), "{planned}");
    let done = ok(pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat()));
    assert!(done.contains("Downtime"), "{done}");
    assert_eq!(target.psql("app", "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app'"), "20");
}

/// The copy path (15 -> 18): `pgferry roles` makes the source's roles on the
/// target without passwords, so the gate first asks for the login role's
/// password; one typed anew there has a salt of its own, which after a logical
/// copy is a warning, not a refusal. Roles changed on the source after the copy
/// stop the cutover as on the seeded path, and their fixes let it through.
#[test]
fn roles_changed_on_the_source_after_a_copy_stop_the_cutover_and_a_password_set_anew_is_a_warning() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V18);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE ROLE app LOGIN PASSWORD 'app-pw'; CREATE ROLE readers NOLOGIN;
         CREATE TABLE t (id int PRIMARY KEY, v text); GRANT ALL ON t TO app; GRANT SELECT ON t TO readers;
         INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g",
    );
    let (s, t) = (source.url("app"), target.url("app"));
    let pair = |command: &'static str| vec![command, "--source", &s, "--target", &t];
    ok(pgferry(&pair("roles")));
    ok(pgferry(&pair("copy")));
    ok(pgferry(&[pair("follow"), vec!["--until-caught-up"]].concat()));
    let objects = || {
        let out = pgferry(&[pair("cutover"), vec!["--dry-run", "--format", "json"]].concat());
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the plan in JSON");
        let differences = plan["parity"]["differences"].as_array().expect("differences").clone();
        (differences, plan["parity"]["warnings"].to_string())
    };
    let (differences, _) = objects();
    let named: Vec<&str> = differences.iter().map(|d| d["object"].as_str().unwrap()).collect();
    assert_eq!(named, ["the password of role \"app\""], "pgferry roles copies no password: {differences:#?}");
    target.psql("app", "ALTER ROLE app PASSWORD 'app-pw'");
    let (differences, warnings) = objects();
    assert!(differences.is_empty(), "{differences:#?}");
    assert!(warnings.contains("password hashes of \\\"app\\\" differ"), "{warnings}");

    source.psql(
        "app",
        "CREATE ROLE auditor NOLOGIN; GRANT readers TO app; ALTER ROLE app SET work_mem = '64MB';
         ALTER ROLE app CONNECTION LIMIT 5 VALID UNTIL '2031-01-01 00:00:00+00'; ALTER ROLE app PASSWORD 'app-pw-2'",
    );
    let (differences, warnings) = objects();
    let fixes: Vec<&str> = differences.iter().map(|d| d["ddl"].as_str().unwrap()).collect();
    assert_eq!(
        fixes,
        [
            "CREATE ROLE \"auditor\" WITH NOLOGIN INHERIT NOCREATEDB NOCREATEROLE CONNECTION LIMIT -1",
            "ALTER ROLE \"app\" WITH CONNECTION LIMIT 5 VALID UNTIL '2031-01-01 00:00:00+00'",
            "GRANT \"readers\" TO \"app\"",
            "ALTER ROLE \"app\" SET \"work_mem\" = '64MB'",
        ],
        "{differences:#?}"
    );
    assert!(warnings.contains("password hashes of \\\"app\\\" differ"), "{warnings}");
    let refused = pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat());
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    assert!(!said(&refused).contains(&hash(&source, "app")), "no hash printed");
    for fix in &fixes {
        target.psql("app", fix);
    }
    let done = ok(pgferry(&[pair("cutover"), vec!["--switch-command", "true"]].concat()));
    assert!(done.contains("Downtime"), "{done}");
    assert_eq!(
        target.psql(
            "app",
            "SELECT rolconnlimit || ' ' || pg_has_role('app', 'readers', 'MEMBER') FROM pg_roles WHERE rolname = 'app'"
        ),
        "5 true"
    );
}

/// A role renamed on the source after the snapshot: the gate asks for it on
/// the target and offers the rename of the target's role with its OID instead
/// of a new role; that one statement (which keeps its privileges and its
/// password) makes the gate pass.
#[test]
fn a_role_renamed_on_the_source_after_the_snapshot_is_renamed_back_into_parity() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE ROLE \"Report ing\" LOGIN PASSWORD 'rep-pw';
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO \"Report ing\"; INSERT INTO t VALUES (1)",
    );
    ok(pgferry(&["seed", "prepare", "--source", &source.url("app")]));
    let target = source.physical_copy();
    let (s, t) = (source.url("app"), target.url("app"));
    let log = target.log_path().display().to_string();
    ok(pgferry(&["start", "--source", &s, "--target", &t, "--seeded", "--seed-log", &log, "--until-caught-up"]));
    source.psql("app", "ALTER ROLE \"Report ing\" RENAME TO \"reporter é\"");
    let dry =
        |format: &'static str| pgferry(&["cutover", "--source", &s, "--target", &t, "--dry-run", "--format", format]);
    let json = dry("json");
    assert_eq!(json.status.code(), Some(1), "{}", said(&json));
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("the plan in JSON");
    let created = plan["parity"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["object"] == "role \"reporter é\"")
        .unwrap_or_else(|| panic!("the renamed role is missing on the target: {plan:#}"))
        .clone();
    let fix = created["fix"].as_str().unwrap();
    let rename = "ALTER ROLE \"Report ing\" RENAME TO \"reporter é\"";
    assert!(fix.contains(&format!("run instead: {rename}")), "{fix}");
    target.psql("app", rename);
    let planned = said(&dry("table"));
    assert!(planned.contains("catalog parity: the target's catalog matches the source's"), "{planned}");
}

/// From PostgreSQL 16 a membership is one grant per grantor, and a `REVOKE`
/// takes back only the revoker's: a membership granted on the target by
/// another role is taken back by the gate's fix as given (`GRANTED BY` each
/// grantor), and the gate passes (was: a plain `REVOKE`, a mere warning, and
/// the same refusal again).
#[test]
fn a_membership_another_role_granted_on_the_target_is_taken_back_by_the_fix_as_given() {
    let source = Cluster::start(PgVersion::V18);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE ROLE team; CREATE ROLE owner LOGIN; CREATE ROLE admin CREATEROLE; GRANT team TO admin WITH ADMIN OPTION;
         CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)",
    );
    ok(pgferry(&["seed", "prepare", "--source", &source.url("app")]));
    let target = source.physical_copy();
    let (s, t) = (source.url("app"), target.url("app"));
    let log = target.log_path().display().to_string();
    ok(pgferry(&["start", "--source", &s, "--target", &t, "--seeded", "--seed-log", &log, "--until-caught-up"]));
    target.psql("app", "SET ROLE admin; GRANT team TO owner");
    let dry =
        |format: &'static str| pgferry(&["cutover", "--source", &s, "--target", &t, "--dry-run", "--format", format]);
    let json = dry("json");
    assert_eq!(json.status.code(), Some(1), "{}", said(&json));
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("the plan in JSON");
    let ddl: Vec<&str> =
        plan["parity"]["differences"].as_array().unwrap().iter().filter_map(|d| d["ddl"].as_str()).collect();
    assert_eq!(ddl, ["REVOKE \"team\" FROM \"owner\" GRANTED BY \"admin\""], "{plan:#}");
    target.psql("app", ddl[0]);
    let planned = said(&dry("table"));
    assert!(planned.contains("catalog parity: the target's catalog matches the source's"), "{planned}");
}
