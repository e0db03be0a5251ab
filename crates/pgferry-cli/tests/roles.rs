//! `pgferry roles` against real clusters (15 -> 18, the target's user a
//! non-superuser with CREATEROLE, as on RDS): the source's roles the target
//! lacks are created with the same attributes, memberships and settings; an
//! existing role is left exactly as it is; attributes the target's user cannot
//! give are named; no password is read or shown; `--dry-run` and a rerun change
//! nothing.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

const CREATED: &str = "('app_owner', 'App Reader', 'app_rw', 'strong')";

/// Attributes of the roles `pgferry roles` creates (not the ones it cannot give).
fn attributes(c: &Cluster) -> String {
    c.psql(
        "app",
        &format!(
            "SELECT string_agg(format('%s:%s,%s,%s,%s,%s,%s', rolname, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
                                      rolconnlimit, extract(epoch FROM rolvaliduntil)), ' ' ORDER BY rolname)
             FROM pg_roles WHERE rolname IN {CREATED}"
        ),
    )
}

/// Their memberships (as members), with the admin option.
fn memberships(c: &Cluster) -> String {
    c.psql(
        "app",
        &format!(
            "SELECT string_agg(DISTINCT g.rolname || '>' || m.rolname || ':' || a.admin_option, ' ')
             FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
             WHERE m.rolname IN {CREATED} AND g.rolname IN {CREATED}"
        ),
    )
}

/// Their settings, per database (by name).
fn settings(c: &Cluster) -> String {
    c.psql(
        "app",
        &format!(
            "SELECT string_agg(r.rolname || '@' || coalesce(d.datname, '*') || ':' || array_to_string(s.setconfig, '|'), ' '
                               ORDER BY r.rolname, d.datname)
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
             WHERE r.rolname IN {CREATED}"
        ),
    )
}

/// Everything about every role of a server.
fn every_role(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT (SELECT string_agg(r::text, ' ' ORDER BY rolname) FROM pg_roles r) || ' / ' ||
                (SELECT coalesce(string_agg(a::text, ' ' ORDER BY a::text), '') FROM pg_auth_members a) || ' / ' ||
                (SELECT coalesce(string_agg(s::text, ' ' ORDER BY s::text), '') FROM pg_db_role_setting s)",
    )
}

#[test]
fn the_sources_roles_are_created_on_the_target_as_they_are_and_nothing_else_changes() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V18);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        r#"CREATE ROLE app_owner NOLOGIN CREATEDB;
           CREATE ROLE "App Reader" LOGIN PASSWORD 'secret-pw-1' NOINHERIT CONNECTION LIMIT 7 VALID UNTIL '2031-01-01 00:00:00+00';
           CREATE ROLE app_rw LOGIN PASSWORD 'secret-pw-2' CREATEROLE;
           CREATE ROLE strong SUPERUSER REPLICATION BYPASSRLS;
           CREATE ROLE existing LOGIN CONNECTION LIMIT 9;
           GRANT app_owner TO app_rw WITH ADMIN OPTION;
           GRANT app_owner TO "App Reader";
           GRANT "App Reader" TO existing;
           ALTER ROLE app_rw SET work_mem = '64MB';
           ALTER ROLE app_rw SET search_path = app, "$user", "my schema";
           ALTER ROLE "App Reader" IN DATABASE app SET statement_timeout = '5s';
           ALTER ROLE app_owner SET myapp.tenant = 'a''b';"#,
    );
    target.psql(
        "app",
        "CREATE ROLE mover LOGIN PASSWORD 'mover-pw' CREATEROLE CREATEDB; CREATE ROLE existing LOGIN CONNECTION LIMIT 3",
    );
    let (s, t) = (source.url("app"), target.url_as("mover", "mover-pw", "app"));
    let before = every_role(&target);

    let out = ok(pgferry(&["roles", "--source", &s, "--target", &t, "--dry-run"]));
    assert!(out.contains(r#"CREATE ROLE "App Reader" WITH LOGIN NOINHERIT"#), "{out}");
    assert_eq!(every_role(&target), before, "a dry run changes nothing");

    let out = ok(pgferry(&["roles", "--source", &s, "--target", &t]));
    assert!(out.contains("strong: created without SUPERUSER, REPLICATION, BYPASSRLS"), "{out}");
    assert!(out.contains("set one on the target for App Reader, app_rw"), "{out}");
    assert!(out.contains("on the target already, left as they are: existing"), "{out}");
    assert!(out.contains("existing is a member of App Reader on the source"), "{out}");
    assert!(!out.contains("secret-pw") && !out.contains("SCRAM") && !out.contains("md5"), "no password: {out}");
    // A custom parameter only a superuser may set: named with the target's reason, the rest carried.
    assert!(out.contains(r#"SET "myapp"."tenant" = 'a''b': refused by the target (permission denied"#), "{out}");
    assert_eq!(attributes(&target), attributes(&source));
    assert_eq!(memberships(&target), memberships(&source));
    let without_tenant = |c: &Cluster| settings(c).replace(" app_owner@*:myapp.tenant=a'b", "");
    assert_eq!(settings(&target), without_tenant(&source));
    assert!(settings(&target).contains("App Reader@app:statement_timeout=5s"), "{}", settings(&target));
    assert_eq!(
        target.psql(
            "app",
            "SELECT rolsuper || ',' || rolreplication || ',' || rolbypassrls FROM pg_roles WHERE rolname = 'strong'"
        ),
        "false,false,false"
    );
    assert_eq!(
        target.psql(
            "app",
            "SELECT rolconnlimit || ',' || pg_has_role('existing', 'App Reader', 'MEMBER') FROM pg_roles WHERE rolname = 'existing'"
        ),
        "3,false",
        "the existing role is untouched"
    );
    assert_eq!(
        target.psql("app", "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'app_rw'"),
        "t",
        "no password set"
    );

    let after = every_role(&target);
    let out = ok(pgferry(&["roles", "--source", &s, "--target", &t]));
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(every_role(&target), after, "a rerun changes nothing");
}

/// `start --roles` creates the roles only once the preflight passed: a refused
/// start (here a target that is not empty) creates none; the run that goes
/// through creates them before the copy restores their ownership, and its JSON
/// report lists what it ran.
#[test]
fn start_with_roles_creates_none_when_refused_and_reports_them_in_json() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    source.create_database("app");
    target.create_database("app");
    source.psql("app", "CREATE ROLE app_owner; CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO app_owner");
    target.psql("app", "CREATE TABLE leftover (id int)");
    let (s, t) = (source.url("app"), target.url("app"));
    let start =
        || pgferry(&["start", "--source", &s, "--target", &t, "--roles", "--until-caught-up", "--format", "json"]);
    let refused = start();
    let said = format!("{}{}", String::from_utf8_lossy(&refused.stdout), String::from_utf8_lossy(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert_eq!(target.psql("app", "SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner'"), "0", "{said}");

    target.psql("app", "DROP TABLE leftover");
    let out = start();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    let statements = report["roles"]["statements"].as_array().expect("the roles ran, listed");
    assert!(statements.iter().any(|s| s.as_str().unwrap().starts_with("CREATE ROLE \"app_owner\"")), "{report}");
    assert_eq!(target.psql("app", "SELECT tableowner FROM pg_tables WHERE tablename = 't'"), "app_owner");
}
