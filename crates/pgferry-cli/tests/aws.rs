//! `pgferry aws ...` against a local moto server: the commands, their exit codes
//! and their output, with the AWS settings taken from the environment.

use std::process::{Command, Output};

use pgferry_aws::testing::{
    blue_green_statuses, create_key, create_plain_security_group, create_source, create_zone, instance_security_groups,
    security_group_id, security_groups_named, snapshot_exists, Moto,
};
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
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(output), String::from_utf8_lossy(&output.stderr)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn findings(report: &serde_json::Value) -> Vec<(String, String)> {
    let each = report["findings"].as_array().unwrap().iter();
    each.map(|f| (f["severity"].as_str().unwrap().to_owned(), f["what"].as_str().unwrap().to_owned())).collect()
}

#[test]
fn check_runs_pgferry_checks_database_checks_in_every_database_when_given_the_source() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-db", Some("1"), 0).await;
    });
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("app");
    cluster.create_database("billing");
    cluster.psql("app", "CREATE TABLE keyed (id int PRIMARY KEY);");
    cluster.psql("billing", "CREATE TABLE loose (v int);");
    // The URL's database is only the one connected to first: billing is checked too.
    let url = cluster.url("app");
    let args = ["aws", "check", "--source-instance", "cli-db", "--source", url.as_str(), "--format", "json"];
    let blocked = pgferry(moto, &args);
    assert_eq!(blocked.status.code(), Some(1), "{}", stdout(&blocked));
    let report = json(&blocked);
    let keyless = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["what"].as_str().unwrap().starts_with("database \"billing\": ")
                && f["what"].as_str().unwrap().contains("loose")
        })
        .unwrap_or_else(|| panic!("the keyless table is not named with its database: {report:#}"));
    assert_eq!(keyless["severity"], "blocker");
    assert!(!keyless["fix"].as_str().unwrap().is_empty());
    assert!(findings(&report)
        .iter()
        .all(|(_, what)| !what.starts_with("database \"app\": ") || !what.contains("loose")));

    // Narrowed: billing left out is said loudly, and its blocker is not checked.
    for narrowing in [["--exclude-database", "billing"], ["--database", "app"]] {
        let narrowed = pgferry(moto, &[&args[..], &narrowing[..]].concat());
        assert_eq!(narrowed.status.code(), Some(0), "{narrowing:?}: {}", stdout(&narrowed));
        let said = findings(&json(&narrowed));
        let left_out = said
            .iter()
            .find(|(_, what)| what.starts_with("database \"billing\" is left out"))
            .unwrap_or_else(|| panic!("{narrowing:?}: billing is not named as left out: {said:?}"));
        assert_eq!(left_out.0, "warning");
        assert!(left_out.1.contains("its writes after the snapshot will NOT reach the target"), "{}", left_out.1);
    }
    let typo = pgferry(moto, &[&args[..], &["--database", "biling"][..]].concat());
    assert_eq!(typo.status.code(), Some(2), "{}", stdout(&typo));
    // Narrowed to nothing (a template is never followed): not ready, saying so.
    for nothing in [
        &["--database", "template1"][..],
        &["--exclude-database", "app", "--exclude-database", "billing", "--exclude-database", "postgres"][..],
    ] {
        let none = pgferry(moto, &[&args[..], nothing].concat());
        assert_eq!(none.status.code(), Some(1), "{nothing:?}: {}", stdout(&none));
        let said = findings(&json(&none));
        assert!(
            said.iter()
                .any(|(severity, what)| severity == "blocker" && what.contains("no database of the instance is left")),
            "{nothing:?}: {said:?}"
        );
    }

    cluster.psql("billing", "ALTER TABLE loose ADD PRIMARY KEY (v);");
    let ready = pgferry(moto, &args);
    assert_eq!(ready.status.code(), Some(0), "{}", stdout(&ready));
    assert!(!stdout(&ready).contains("were not run"), "{}", stdout(&ready));

    let unchecked = pgferry(moto, &["aws", "check", "--source-instance", "cli-db"]);
    assert_eq!(unchecked.status.code(), Some(0), "not running them is a warning: {}", stdout(&unchecked));
    assert!(
        stdout(&unchecked).contains("database-level checks of pgferry check were not run"),
        "{}",
        stdout(&unchecked)
    );
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
    assert!(stdout(&good).starts_with("cli-good: ready\n"), "{}", stdout(&good));
    let text = stdout(&good);
    assert!(
        text.contains("Blue/Green deployment (TargetKmsKeyId for each green instance): can encrypt this instance"),
        "{text}"
    );
    assert!(text.contains("recommended: pgferry (aws encrypt)\n  because both paths can encrypt it"), "{text}");
    assert!(!text.contains("cannot change encryption"), "{text}");

    let off = pgferry(moto, &["aws", "check", "--source-instance", "cli-off", "--format", "json"]);
    assert_eq!(off.status.code(), Some(1));
    let report = json(&off);
    assert_eq!(report["ready"], false);
    assert_eq!(report["findings"][0]["severity"], "blocker");
    assert_eq!(report["paths"]["blue_green"]["can_encrypt"], true);
    assert_eq!(report["paths"]["pgferry"]["blockers"], 1);
    assert_eq!(report["paths"]["recommendation"]["method"], "blue-green", "{report:#}");

    let missing = pgferry(moto, &["aws", "check", "--source-instance", "cli-missing"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("there is no RDS instance cli-missing"));
}

#[test]
fn fence_lift_and_switch_through_the_command_line() {
    let moto = Moto::shared();
    let (group, zone) = runtime().block_on(async {
        let config = moto.config().await;
        let source = create_source(&config, "cli-fence", Some("1"), 0).await;
        (source.security_group, create_zone(&config, "cli.example.com").await)
    });
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let common = ["--name", "cli_fence", "--state-dir", state_dir];

    let fence_group = security_group_id("cli-fence-fence");
    let fence_args =
        [&["aws", "fence", "--source-instance", "cli-fence", "--fence-group", &fence_group][..], &common].concat();
    // Killed once the swap is done, then run again: the groups recorded before the swap win.
    let killed = pgferry_with(moto, &fence_args, &[("PGFERRY_FAILPOINT", "aws-after-fence:1")]);
    assert_eq!(killed.status.code(), Some(137));
    let fenced = pgferry(moto, &fence_args);
    assert_eq!(fenced.status.code(), Some(0), "{}", String::from_utf8_lossy(&fenced.stderr));
    assert_eq!(json(&fenced)["previous"], serde_json::json!([group]));
    assert_eq!(json(&fenced)["now"], serde_json::json!([fence_group]));

    let lifted = pgferry(moto, &[&["aws", "fence", "--lift", "--source-instance", "cli-fence"][..], &common].concat());
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
    assert_eq!(switched.status.code(), Some(0), "{}", String::from_utf8_lossy(&switched.stderr));
    assert_eq!(json(&switched)["now"]["ttl"], 30);
    assert!(state.path().join("aws-journal.jsonl").exists());
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The source's security groups, as RDS reports them.
fn instance_groups(moto: &Moto, id: &str) -> Vec<String> {
    runtime().block_on(async { instance_security_groups(&moto.config().await, id).await })
}

#[test]
fn fence_creates_its_own_group_survives_a_kill_before_the_swap_and_lift_deletes_it() {
    let moto = Moto::shared();
    let source = runtime().block_on(async { create_source(&moto.config().await, "cli-own", Some("1"), 0).await });
    let before = vec![source.security_group.clone()];
    let config = runtime().block_on(moto.config());
    let state = tempfile::tempdir().unwrap();
    let common = ["--name", "cli_own", "--state-dir", state.path().to_str().unwrap()];
    let fence_args =
        [&["aws", "fence", "--source-instance", "cli-own", "--allow-cidr", "10.0.3.17/32"][..], &common].concat();

    let unopened = pgferry(moto, &[&["aws", "fence", "--source-instance", "cli-own"][..], &common].concat());
    assert_eq!(unopened.status.code(), Some(2), "{}", stderr(&unopened));
    assert!(stderr(&unopened).contains("needs --allow-cidr"), "{}", stderr(&unopened));
    let everyone = pgferry(
        moto,
        &[&["aws", "fence", "--source-instance", "cli-own", "--allow-cidr", "0.0.0.0/0"][..], &common].concat(),
    );
    assert_eq!(everyone.status.code(), Some(2), "{}", stderr(&everyone));
    assert!(security_groups_named(&config, "pgferry-cli-own-fence").is_empty(), "nothing created");

    // Killed once the group and its rule exist, before the swap.
    let killed = pgferry_with(moto, &fence_args, &[("PGFERRY_FAILPOINT", "aws-after-fence-group:1")]);
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    assert_eq!(security_groups_named(&config, "pgferry-cli-own-fence").len(), 1);
    assert_eq!(instance_groups(moto, "cli-own"), before, "not swapped yet");

    let fenced = pgferry(moto, &fence_args);
    assert_eq!(fenced.status.code(), Some(0), "{}", stderr(&fenced));
    let report = json(&fenced);
    let seen = security_groups_named(&config, "pgferry-cli-own-fence");
    assert_eq!(seen.len(), 1, "still exactly one group: {seen:?}");
    assert_eq!(seen[0].vpc, source.vpc);
    assert_eq!(seen[0].ingress, ["tcp 5433 10.0.3.17/32"]);
    assert_eq!(report["fence_group"], seen[0].id.as_str());
    assert_eq!(report["own_group"], true);
    assert_eq!(report["previous"], serde_json::json!([source.security_group]));
    assert_eq!(instance_groups(moto, "cli-own"), [seen[0].id.clone()]);
    let journal = std::fs::read_to_string(state.path().join("aws-journal.jsonl")).unwrap();
    for wanted in [r#""step":"fence-group","event":"intent""#, r#""step":"fence","event":"outcome""#] {
        assert!(journal.contains(wanted), "{wanted} not in {journal}");
    }

    let lifted = pgferry(moto, &[&["aws", "fence", "--lift", "--source-instance", "cli-own"][..], &common].concat());
    assert_eq!(lifted.status.code(), Some(0), "{}", stderr(&lifted));
    assert_eq!(json(&lifted)["deleted"], seen[0].id.as_str());
    assert_eq!(instance_groups(moto, "cli-own"), before);
    assert!(security_groups_named(&config, "pgferry-cli-own-fence").is_empty(), "the group is deleted");

    // Under another migration's name, an operator's group of the fence's name is refused.
    let theirs = create_plain_security_group(&config, "pgferry-cli-other-fence", &source.vpc);
    let other_state = tempfile::tempdir().unwrap();
    let other = ["--name", "cli_other", "--state-dir", other_state.path().to_str().unwrap()];
    let refused = pgferry(moto, &[&fence_args[..6], &other].concat());
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&theirs) && stderr(&refused).contains("pgferry did not create it"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("hint:"), "{}", stderr(&refused));
    assert_eq!(instance_groups(moto, "cli-own"), before, "nothing changed");
    assert_eq!(security_groups_named(&config, "pgferry-cli-other-fence")[0].ingress, Vec::<String>::new());
}

#[test]
fn deleting_the_source_needs_yes() {
    let moto = Moto::shared();
    let out = pgferry(moto, &["aws", "finish", "--source-instance", "a", "--target-instance", "b", "--delete-source"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("add --yes"));
}

#[test]
fn check_weighs_the_rehearsed_downtime_and_a_target_in_another_region() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-paths", Some("1"), 0).await;
    });
    let args = ["aws", "check", "--source-instance", "cli-paths", "--format", "json"];
    let rehearsed = json(&pgferry(moto, &[&args[..], &["--rehearsed-downtime", "0.4"]].concat()));
    assert_eq!(rehearsed["paths"]["recommendation"]["method"], "snapshot");
    assert!(rehearsed["paths"]["recommendation"]["reason"].as_str().unwrap().contains("0.40 s as rehearsed"));
    for bad in ["-5", "NaN", "inf", "soon"] {
        let flag = format!("--rehearsed-downtime={bad}");
        let refused = pgferry(moto, &[&args[..], &[flag.as_str()]].concat());
        assert_eq!(refused.status.code(), Some(2), "{bad}: {}", stdout(&refused));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("0 or more"), "{bad}");
    }
    let abroad = json(&pgferry(moto, &[&args[..], &["--target-region", "eu-west-1"]].concat()));
    let region = abroad["paths"]["blue_green"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["limit"] == "same-region")
        .unwrap()
        .clone();
    assert_eq!(region["outcome"], "rules_out", "{region:#}");
    assert_eq!(abroad["paths"]["blue_green"]["can_encrypt"], false);
}

/// How many Blue/Green deployments moto holds with this name.
fn deployments(moto: &Moto, name: &str) -> usize {
    runtime().block_on(async { blue_green_statuses(&moto.config().await, name).await.len() })
}

#[test]
fn encrypt_blue_green_killed_after_each_step_then_rerun_makes_one_deployment_and_stops_before_the_switchover() {
    let moto = Moto::shared();
    let key = runtime().block_on(async {
        let config = moto.config().await;
        create_source(&config, "cli-bg", Some("1"), 1).await;
        create_key(&config, "alias/cli-bg").await.1
    });
    // Green's database: a local cluster stands in for it (moto's endpoints lead nowhere).
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("app");
    cluster.psql("app", "CREATE TABLE orders (id int PRIMARY KEY);");
    // pgferry's checks on green run in every database of it, each finding naming its own.
    cluster.create_database("billing");
    cluster.psql("billing", "CREATE TABLE loose (v int);");
    let url = cluster.url("app");
    let state = tempfile::tempdir().unwrap();
    let args = [
        "aws",
        "encrypt",
        "--method",
        "blue-green",
        "--source-instance",
        "cli-bg",
        "--kms-key",
        "alias/cli-bg",
        "--source",
        url.as_str(),
        "--green",
        url.as_str(),
        "--name",
        "cli_bg",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--format",
        "json",
    ];
    for step in pgferry_aws::blue_green::STEPS {
        let failpoint = format!("aws-after-{step}:1");
        let killed = pgferry_with(moto, &args, &[("PGFERRY_FAILPOINT", failpoint.as_str())]);
        assert_eq!(killed.status.code(), Some(137), "{step}: {}", String::from_utf8_lossy(&killed.stderr));
        assert!(deployments(moto, "pgferry-cli-bg-blue-green") <= 1, "{step}");
    }
    let done = pgferry(moto, &args);
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    let report = json(&done);
    assert_eq!(deployments(moto, "pgferry-cli-bg-blue-green"), 1);
    assert_eq!(report["status"], "AVAILABLE", "stopped before the switchover");
    assert_eq!(report["kms_key_arn"], key.as_str());
    assert_eq!(report["encrypted"].as_array().unwrap().len(), 2, "the instance and its replica");
    assert_eq!(report["green"][0]["kms_key_id"], key.as_str());
    assert!(report["next"].as_str().unwrap().contains("pgferry aws switchover"));
    let on_green: Vec<&str> =
        report["database"].as_array().unwrap().iter().map(|f| f["what"].as_str().unwrap()).collect();
    assert!(
        on_green.iter().any(|what| what.starts_with("database \"billing\": ") && what.contains("loose")),
        "{on_green:?}"
    );

    // The switchover, its probe committing through the (local) endpoint, then the cleanup.
    let common = ["--name", "cli_bg", "--state-dir", state.path().to_str().unwrap()];
    let early = pgferry(moto, &[&["aws", "finish", "--blue-green"][..], &common].concat());
    assert_eq!(early.status.code(), Some(3), "not switched over yet");
    // A probe that cannot write (a read-only role, its password in the URL) stops the switchover before it is asked.
    cluster.psql(
        "app",
        "CREATE ROLE reader LOGIN PASSWORD 'hunter2-secret'; ALTER ROLE reader SET default_transaction_read_only = on;",
    );
    let reader = cluster.url_as("reader", "hunter2-secret", "app");
    let refused = pgferry(moto, &[&["aws", "switchover", "--source", reader.as_str()][..], &common].concat());
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    let said = format!("{}{}", stdout(&refused), String::from_utf8_lossy(&refused.stderr));
    assert!(said.contains("cannot commit through --source"), "{said}");
    assert!(!said.contains("hunter2"), "no password in the output: {said}");
    assert_eq!(
        runtime().block_on(async { blue_green_statuses(&moto.config().await, "pgferry-cli-bg-blue-green").await }),
        ["AVAILABLE"]
    );
    let switch_args = [&["aws", "switchover", "--source", url.as_str(), "--timeout", "60"][..], &common].concat();
    let killed = pgferry_with(moto, &switch_args, &[("PGFERRY_FAILPOINT", "aws-after-switchover:1")]);
    assert_eq!(killed.status.code(), Some(137), "{}", String::from_utf8_lossy(&killed.stderr));
    let switched = pgferry(moto, &switch_args);
    assert_eq!(switched.status.code(), Some(0), "{}", String::from_utf8_lossy(&switched.stderr));
    let twice = pgferry(moto, &switch_args);
    assert_eq!(json(&twice), json(&switched), "run again, it reports the recorded switchover");
    let report = json(&switched);
    assert_eq!(report["status"], "SWITCHOVER_COMPLETED");
    assert!(report["writes_committed"].as_u64().unwrap() >= 1, "{report:#}");
    assert_eq!(report["writes_failed"], 0, "the endpoint stayed writable: {report:#}");
    let finish_args = [&["aws", "finish", "--blue-green"][..], &common].concat();
    let killed = pgferry_with(moto, &finish_args, &[("PGFERRY_FAILPOINT", "aws-after-delete-blue-green:1")]);
    assert_eq!(killed.status.code(), Some(137), "{}", String::from_utf8_lossy(&killed.stderr));
    let finished = pgferry(moto, &finish_args);
    assert_eq!(finished.status.code(), Some(0), "{}", String::from_utf8_lossy(&finished.stderr));
    assert!(json(&finished)["left"].as_array().is_some_and(|l| !l.is_empty()), "{}", stdout(&finished));
    assert_eq!(deployments(moto, "pgferry-cli-bg-blue-green"), 0);
    let journal = std::fs::read_to_string(state.path().join("aws-journal.jsonl")).unwrap();
    assert!(journal.contains("\"switchover\""), "{journal}");
    assert!(!journal.contains("hunter2") && !journal.contains("postgresql://"), "no connection string in the journal");

    let snapshot_args = ["aws", "encrypt", "--source-instance", "cli-bg", "--source", url.as_str(), "--name", "cli_bg"];
    let refused = pgferry(moto, &snapshot_args);
    assert_eq!(refused.status.code(), Some(2), "no --target-instance");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--target-instance is required"));
}

/// `aws encrypt` prepares every database of the instance before the snapshot:
/// killed after each database's `seed prepare` and run again, each is prepared
/// once (one slot, one journaled intent) and the snapshot waits for the last;
/// the database left out gets no slot, and the run says its writes are lost.
#[test]
fn encrypt_prepares_every_database_once_when_killed_after_each_and_rerun() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-enc", Some("1"), 0).await;
    });
    let cluster = Cluster::start(PgVersion::V15);
    for database in ["app", "billing", "reports"] {
        cluster.create_database(database);
        cluster.psql(database, "CREATE TABLE t (id int PRIMARY KEY);");
    }
    // A password in the URL (the test server trusts every connection) must stay
    // out of the output and the journal.
    let url = cluster.url_as("postgres", "Pw-kept-out-3", "app");
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let common = [
        "aws",
        "encrypt",
        "--source-instance",
        "cli-enc",
        "--target-instance",
        "cli-enc-new",
        "--source",
        url.as_str(),
        "--target",
        url.as_str(),
        "--name",
        "cli_enc",
        "--state-dir",
        state_dir,
    ];
    let args = [&common[..], &["--exclude-database", "reports"][..]].concat();
    let slots = || {
        cluster.psql(
            "postgres",
            "SELECT string_agg(database, ',' ORDER BY database) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_cli_enc%'",
        )
    };
    let mut said = String::new();
    for prepared in ["app", "app,billing", "app,billing,postgres"] {
        let killed = pgferry_with(moto, &args, &[("PGFERRY_FAILPOINT", "aws-after-seed-prepare:1")]);
        assert_eq!(killed.status.code(), Some(137), "{prepared}: {}", stderr(&killed));
        assert_eq!(slots().trim(), prepared);
        said.push_str(&stderr(&killed));
    }
    assert!(said.contains("reports") && said.contains("will NOT reach the target"), "{said}");
    let snapshot =
        || runtime().block_on(async { snapshot_exists(&moto.config().await, "pgferry-cli-enc-snapshot").await });
    assert!(!snapshot(), "no snapshot before every database is prepared");
    let killed = pgferry_with(moto, &args, &[("PGFERRY_FAILPOINT", "aws-after-snapshot:1")]);
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    assert!(snapshot());
    assert_eq!(slots().trim(), "app,billing,postgres", "none prepared twice, reports not at all");
    let journal = std::fs::read_to_string(state.path().join("aws-journal.jsonl")).unwrap();
    let intents: Vec<&str> = journal
        .lines()
        .filter(|l| l.contains("\"step\":\"seed-prepare\"") && l.contains("\"event\":\"intent\""))
        .collect();
    assert_eq!(intents.len(), 3, "{journal}");
    assert!(!journal.contains("Pw-kept-out-3") && !said.contains("Pw-kept-out-3"), "{journal}\n{said}");

    // The databases are final: a rerun that would follow reports too is refused.
    let widened = pgferry(moto, &common);
    assert_eq!(widened.status.code(), Some(2), "{}", stderr(&widened));
    assert!(stderr(&widened).contains("this migration was started as"), "{}", stderr(&widened));
    assert!(!stderr(&widened).contains("Pw-kept-out-3"), "{}", stderr(&widened));
}

/// A database the checking role may not connect to (CONNECT revoked, common on
/// RDS) is a blocker naming it and why, not an error that hides every other
/// finding: the report is drawn, the exit code says not ready (1), and the
/// password in --source appears nowhere in the output.
#[test]
fn check_names_a_database_it_cannot_connect_to_as_a_blocker_and_reports_the_rest() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-noconn", Some("1"), 0).await;
    });
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("app");
    cluster.create_database("Locked Db");
    cluster.psql("app", "CREATE TABLE loose (v int);");
    cluster.psql(
        "postgres",
        "CREATE ROLE mover LOGIN REPLICATION PASSWORD 'Pw-not-shown-7';
         REVOKE CONNECT ON DATABASE \"Locked Db\" FROM PUBLIC;",
    );
    let url = cluster.url_as("mover", "Pw-not-shown-7", "app");
    let args = ["aws", "check", "--source-instance", "cli-noconn", "--source", url.as_str(), "--format", "json"];
    let out = pgferry(moto, &args);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!printed.contains("Pw-not-shown-7"), "the password is printed: {printed}");
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let said = findings(&json(&out));
    let locked = said
        .iter()
        .find(|(_, what)| what.starts_with("database \"Locked Db\": "))
        .unwrap_or_else(|| panic!("the database it cannot connect to is not named: {said:?}"));
    assert_eq!(locked.0, "blocker", "{locked:?}");
    assert!(locked.1.contains("cannot be checked"), "{locked:?}");
    assert!(
        said.iter().any(|(_, what)| what.starts_with("database \"app\": ") && what.contains("loose")),
        "the other databases' findings are still reported: {said:?}"
    );
    let table = pgferry(moto, &args[..6]);
    assert_eq!(table.status.code(), Some(1), "{}", stdout(&table));
    assert!(stdout(&table).contains("BLOCKER: database \"Locked Db\": cannot be checked"), "{}", stdout(&table));
}

/// Two migrations of one instance under different names given the same
/// --state-dir: the second is refused, naming the first, instead of adopting
/// its journal (its prepared slots, snapshot and target).
#[test]
fn a_state_dir_holding_another_migrations_journal_is_refused() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-shared", Some("1"), 0).await;
    });
    let cluster = Cluster::start(PgVersion::V15);
    let url = cluster.url("postgres");
    let state = tempfile::tempdir().unwrap();
    let args = |name: &'static str| {
        let state_dir = state.path().to_str().unwrap().to_owned();
        [
            "aws",
            "encrypt",
            "--source-instance",
            "cli-shared",
            "--target-instance",
            "cli-shared-new",
            "--source",
            url.as_str(),
            "--target",
            url.as_str(),
            "--name",
            name,
            "--state-dir",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([state_dir])
        .collect::<Vec<String>>()
    };
    let first = args("first");
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let killed = pgferry_with(moto, &first, &[("PGFERRY_FAILPOINT", "aws-after-seed-prepare:1")]);
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    let second = args("second");
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let refused = pgferry(moto, &second);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("holds the journal of migration first, not second"), "{}", stderr(&refused));
    let slots =
        cluster.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_second%'");
    assert_eq!(slots.trim(), "0", "the second migration prepared nothing");
}

/// `encrypt --method blue-green` with a database name blue lacks (a typo in
/// --exclude-database) is refused before the deployment is asked for, not at
/// the checks on green after it was made.
#[test]
fn encrypt_blue_green_refuses_a_database_name_the_source_lacks_before_any_deployment() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-bgt", Some("1"), 0).await;
    });
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("billing");
    let url = cluster.url("postgres");
    let state = tempfile::tempdir().unwrap();
    let args = [
        "aws",
        "encrypt",
        "--method",
        "blue-green",
        "--source-instance",
        "cli-bgt",
        "--source",
        url.as_str(),
        "--green",
        url.as_str(),
        "--exclude-database",
        "biling",
        "--name",
        "cli_bgt",
        "--state-dir",
        state.path().to_str().unwrap(),
    ];
    let refused = pgferry(moto, &args);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("no database \"biling\""), "{}", stderr(&refused));
    assert_eq!(deployments(moto, "pgferry-cli-bgt-blue-green"), 0, "no deployment for a typo");
    // Nothing left to check on green (a template is never checked): refused alike.
    let nothing = [&args[..10], &["--database", "template1"][..], &args[12..]].concat();
    let refused = pgferry(moto, &nothing);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("left to check on green"), "{}", stderr(&refused));
    assert_eq!(deployments(moto, "pgferry-cli-bgt-blue-green"), 0);
}

/// `encrypt --method blue-green` whose checks cannot run in a database of
/// green: the run fails naming it, and the switchover stays refused (it waits
/// for checks that ran), rather than journaling the checks as done with a
/// "cannot be checked" finding.
#[test]
fn encrypt_blue_green_whose_checks_cannot_run_on_green_does_not_open_the_switchover() {
    let moto = Moto::shared();
    runtime().block_on(async {
        create_source(&moto.config().await, "cli-bgl", Some("1"), 0).await;
    });
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("Locked Db");
    cluster
        .psql("postgres", "CREATE ROLE mover LOGIN REPLICATION; REVOKE CONNECT ON DATABASE \"Locked Db\" FROM PUBLIC;");
    let blue = cluster.url("postgres");
    let green = cluster.url_as("mover", "x", "postgres");
    let state = tempfile::tempdir().unwrap();
    let common = ["--name", "cli_bgl", "--state-dir", state.path().to_str().unwrap()];
    let args = [
        "aws",
        "encrypt",
        "--method",
        "blue-green",
        "--source-instance",
        "cli-bgl",
        "--source",
        blue.as_str(),
        "--green",
        green.as_str(),
    ];
    let failed = pgferry(moto, &[&args[..], &common].concat());
    assert_ne!(failed.status.code(), Some(0), "{}", stdout(&failed));
    assert!(stderr(&failed).contains("database \"Locked Db\""), "{}", stderr(&failed));
    let early = pgferry(moto, &[&["aws", "switchover", "--source", blue.as_str()][..], &common].concat());
    assert_ne!(early.status.code(), Some(0), "the switchover waits for checks that ran: {}", stdout(&early));
}
