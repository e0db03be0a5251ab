//! A whole instance (#18): `check --all-databases` checks every database of the
//! source server against the target server's database of the same name, names
//! what it leaves out and why (loudly where the operator chose it: those writes
//! are lost), and gives the statement that creates a database the target lacks
//! as the source has it.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn definition(c: &Cluster, db: &str) -> String {
    c.psql(
        "postgres",
        &format!(
            "SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype || ' ' || datlocprovider::text || ' ' || coalesce(daticulocale, '') || ' ' || pg_get_userbyid(datdba)
             FROM pg_database WHERE datname = '{db}'"
        ),
    )
}

#[test]
fn check_all_databases_covers_the_instance_names_what_it_leaves_out_and_how_to_create_what_is_missing() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    source.psql("postgres", "CREATE ROLE shop_owner");
    for db in ["shop", "reports", "empty"] {
        source.create_database(db);
    }
    for sql in [
        "CREATE DATABASE \"Intl db\" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LC_COLLATE 'C' LC_CTYPE 'C' OWNER shop_owner",
        "CREATE DATABASE closed",
        "ALTER DATABASE closed ALLOW_CONNECTIONS false",
    ] {
        source.psql("postgres", sql);
    }
    source.psql("shop", "CREATE TABLE orders (id int PRIMARY KEY)");
    for db in ["shop", "reports", "empty"] {
        target.create_database(db);
    }
    target.psql("postgres", "CREATE ROLE shop_owner");
    let (s, t) = (source.url("postgres"), target.url("postgres"));

    let out = pgferry(&["check", "--source", &s, "--target", &t, "--all-databases", "--exclude-database", "reports"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "a database missing on the target: not ready\n{stdout}");
    for db in ["Intl db", "empty", "postgres", "shop"] {
        assert!(stdout.contains(&format!("=== database {db}\n")), "{db} is checked:\n{stdout}");
    }
    assert!(stdout.contains("WARNING: left out: reports (excluded by --exclude-database: its writes after the copy will NOT reach the target)"), "{stdout}");
    assert!(stdout.contains("left out: closed (it allows no connections)"), "{stdout}");
    assert!(stdout.contains("left out: template1 (a template)"), "{stdout}");
    let create = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("CREATE DATABASE"))
        .unwrap_or_else(|| panic!("the statement is given:\n{stdout}"))
        .trim()
        .to_string();
    target.psql("postgres", &create);
    assert_eq!(definition(&target, "Intl db"), definition(&source, "Intl db"), "created as the source has it");

    let out = pgferry(&["check", "--source", &s, "--target", &t, "--all-databases", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["plan"]["databases"], serde_json::json!(["Intl db", "empty", "postgres", "reports", "shop"]));

    let out = pgferry(&["check", "--source", &s, "--target", &t, "--all-databases", "--database", "shpo"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the source server has no database \"shpo\"") && stderr.contains("hint: "), "{stderr}");
}
