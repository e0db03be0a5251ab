//! `pgferry aws ...` against a local moto server: the commands, their exit codes
//! and their output, with the AWS settings taken from the environment.

use std::process::{Command, Output};

use pgferry_aws::testing::{create_source, create_zone, security_group_id, Moto};
use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(moto: &Moto, args: &[&str]) -> Output {
    pgferry_with(moto, args, &[])
}

fn pgferry_with(moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .envs(env.iter().copied())
        .args(args)
        .env("HOME", home.path())
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run pgferry")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            stdout(output),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn check_runs_pgferry_checks_database_checks_when_given_the_source() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-db", Some("1"), 0).await;
    });
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("app");
    cluster.psql("app", "CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE loose (v int);");
    let url = cluster.url("app");
    let args = ["aws", "check", "--source-instance", "cli-db", "--source", url.as_str(), "--format", "json"];
    let blocked = pgferry(moto, &args);
    assert_eq!(blocked.status.code(), Some(1), "{}", stdout(&blocked));
    let findings = json(&blocked);
    let keyless = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["what"].as_str().unwrap().starts_with("database:") && f["what"].as_str().unwrap().contains("loose"))
        .unwrap_or_else(|| panic!("the keyless table is not named: {findings:#}"));
    assert_eq!(keyless["severity"], "blocker");
    assert!(!keyless["fix"].as_str().unwrap().is_empty());

    cluster.psql("app", "ALTER TABLE loose ADD PRIMARY KEY (v);");
    let ready = pgferry(moto, &args);
    assert_eq!(ready.status.code(), Some(0), "{}", stdout(&ready));
    assert!(!stdout(&ready).contains("were not run"), "{}", stdout(&ready));

    let unchecked = pgferry(moto, &["aws", "check", "--source-instance", "cli-db"]);
    assert_eq!(unchecked.status.code(), Some(0), "not running them is a warning: {}", stdout(&unchecked));
    assert!(stdout(&unchecked).contains("database-level checks of pgferry check were not run"), "{}", stdout(&unchecked));
}

#[test]
fn check_reports_ready_and_not_ready_with_exit_codes() {
    let moto = Moto::shared();
    runtime().block_on(async {
        let config = moto.config().await;
        create_source(&config, "cli-good", Some("1"), 0).await;
        create_source(&config, "cli-off", None, 0).await;
    });
    let good = pgferry(moto, &["aws", "check", "--source-instance", "cli-good"]);
    assert_eq!(good.status.code(), Some(0), "{}", stdout(&good));
    assert!(
        stdout(&good).starts_with("cli-good: ready\n"),
        "{}",
        stdout(&good)
    );
    assert!(stdout(&good).contains("Blue/Green"));

    let off = pgferry(
        moto,
        &[
            "aws",
            "check",
            "--source-instance",
            "cli-off",
            "--format",
            "json",
        ],
    );
    assert_eq!(off.status.code(), Some(1));
    assert_eq!(json(&off)[0]["severity"], "blocker");

    let missing = pgferry(moto, &["aws", "check", "--source-instance", "cli-missing"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("there is no RDS instance cli-missing")
    );
}

#[test]
fn fence_lift_and_switch_through_the_command_line() {
    let moto = Moto::shared();
    let (group, zone) = runtime().block_on(async {
        let config = moto.config().await;
        let source = create_source(&config, "cli-fence", Some("1"), 0).await;
        (
            source.security_group,
            create_zone(&config, "cli.example.com").await,
        )
    });
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let common = ["--name", "cli_fence", "--state-dir", state_dir];

    let fence_group = security_group_id("cli-fence-fence");
    let fence_args = [
        &[
            "aws",
            "fence",
            "--source-instance",
            "cli-fence",
            "--fence-group",
            &fence_group,
        ][..],
        &common,
    ]
    .concat();
    // Killed once the swap is done, then run again: the groups recorded before the swap win.
    let killed = pgferry_with(
        moto,
        &fence_args,
        &[("PGFERRY_FAILPOINT", "aws-after-fence:1")],
    );
    assert_eq!(killed.status.code(), Some(137));
    let fenced = pgferry(moto, &fence_args);
    assert_eq!(
        fenced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fenced.stderr)
    );
    assert_eq!(json(&fenced)["previous"], serde_json::json!([group]));
    assert_eq!(json(&fenced)["now"], serde_json::json!([fence_group]));

    let lifted = pgferry(
        moto,
        &[
            &["aws", "fence", "--lift", "--source-instance", "cli-fence"][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(json(&lifted)["now"], serde_json::json!([group]));

    let switched = pgferry(
        moto,
        &[
            &[
                "aws",
                "switch",
                "--zone",
                &zone,
                "--record",
                "db.cli.example.com",
                "--to-instance",
                "cli-fence",
                "--ttl",
                "30",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(
        switched.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&switched.stderr)
    );
    assert_eq!(json(&switched)["now"]["ttl"], 30);
    assert!(state.path().join("aws-journal.jsonl").exists());
}

#[test]
fn deleting_the_source_needs_yes() {
    let moto = Moto::shared();
    let out = pgferry(
        moto,
        &[
            "aws",
            "finish",
            "--source-instance",
            "a",
            "--target-instance",
            "b",
            "--delete-source",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("add --yes"));
}
