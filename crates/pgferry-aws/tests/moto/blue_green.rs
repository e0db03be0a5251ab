use pgferry::ErrorKind;
use pgferry_aws::blue_green::{deploy, BlueGreenPlan, STEPS};
use pgferry_aws::journal::Event;
use pgferry_aws::sdk::Aws;
use pgferry_aws::switchover::{clean_up, switchover, SwitchoverPlan};
use pgferry_aws::testing::{
    blue_green_statuses, create_foreign_blue_green, create_key, create_source, manage_master_password, Moto,
    RecordingGreen, Scripted, ScriptedProbe,
};

use crate::{cloud, instance, journal, migration, pacing};

fn plan(name: &str, key: Option<String>) -> BlueGreenPlan {
    BlueGreenPlan { migration: migration(&name.replace('-', "_")), source: name.to_owned(), kms_key: key }
}

async fn arn(config: &aws_config::SdkConfig, id: &str) -> String {
    instance(config, id).await.unwrap().db_instance_arn().unwrap().to_owned()
}

#[tokio::test]
async fn one_deployment_encrypts_the_instance_and_each_replica_and_stops_before_the_switchover() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-happy", Some("1"), 2).await;
    let (_, key) = create_key(&config, "alias/bg-happy").await;
    let name = "pgferry-bg-happy-blue-green";
    cloud.throttle("rds:CreateBlueGreenDeployment", 1).blue_green_states(name, &["PROVISIONING", "PROVISIONING"]);
    let green = RecordingGreen::default();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan("bg-happy", Some("alias/bg-happy".into()));

    let report = deploy(&cloud, &pacing(), &mut journal(&dir), &plan, &green).await.unwrap();

    let requests = cloud.blue_green_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let wanted = [arn(&config, "bg-happy").await, arn(&config, "bg-happy-r1").await, arn(&config, "bg-happy-r2").await];
    let asked: Vec<(&str, &str)> =
        requests[0].targets.iter().map(|t| (t.source_arn.as_str(), t.kms_key_id.as_str())).collect();
    assert_eq!(asked, wanted.iter().map(|a| (a.as_str(), key.as_str())).collect::<Vec<_>>());
    assert_eq!(report.kms_key_arn, key);
    assert_eq!(report.encrypted, wanted);
    assert_eq!(cloud.calls("rds:CreateBlueGreenDeployment"), 2, "one throttled attempt, then the call");

    let held = blue_green_statuses(&config, name).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0], "AVAILABLE", "stopped before the switchover");
    assert_eq!(cloud.calls("rds:SwitchoverBlueGreenDeployment"), 0);
    let blue = instance(&config, "bg-happy").await.expect("blue keeps its name");
    assert_eq!(blue.storage_encrypted(), Some(false));
    assert_eq!(report.green.len(), 1, "moto lists the primary's green only");
    assert!(report.green[0].green.starts_with("bg-happy-green-"), "{:?}", report.green);
    assert_eq!(report.green[0].kms_key_id.as_deref(), Some(key.as_str()));
    assert_eq!(*green.checked.borrow(), vec![report.green[0].green.clone()]);
    assert_eq!(report.database.len(), 1);

    let entries = journal(&dir);
    for step in STEPS {
        assert!(entries.outcome(step).is_some(), "no outcome for {step}");
    }
    assert!(entries.last("blue-green", Event::Intent).unwrap().detail["targets"][2]["kms_key_id"] == key.as_str());

    // A rerun after success asks for nothing new.
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan, &green).await.unwrap();
    assert_eq!(cloud.blue_green_requests().len(), 1);
    assert_eq!(blue_green_statuses(&config, name).await.len(), 1);
}

/// A failure scripted into the control plane or the database side.
type Inject = fn(&Scripted<Aws>, &RecordingGreen);

#[tokio::test]
async fn a_failure_at_each_step_then_a_rerun_makes_no_second_deployment() {
    let (_, config) = cloud().await;
    let cases: [(&str, Inject); 5] = [
        ("bg-f1", |c, _| {
            c.fail_before("kms:DescribeKey", "InternalFailure");
        }),
        ("bg-f2", |c, _| {
            c.fail_after("rds:CreateBlueGreenDeployment");
        }),
        ("bg-f3", |c, _| {
            // The describe before the create goes through; the wait's first look fails.
            c.pass("rds:DescribeBlueGreenDeployments", 1);
            c.fail_before("rds:DescribeBlueGreenDeployments", "InternalFailure");
        }),
        ("bg-f4", |c, _| {
            c.fail_before("rds:CreateBlueGreenDeployment", "InternalFailure");
        }),
        ("bg-f5", |_, g| g.fail.set(true)),
    ];
    for (name, inject) in cases {
        let cloud = Scripted::new(Moto::shared().aws().await);
        create_source(&config, name, Some("1"), 1).await;
        let plan = plan(name, None);
        let green = RecordingGreen::default();
        let dir = tempfile::tempdir().unwrap();
        inject(&cloud, &green);
        deploy(&cloud, &pacing(), &mut journal(&dir), &plan, &green).await.expect_err(name);
        let report = deploy(&cloud, &pacing(), &mut journal(&dir), &plan, &green)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(report.status, "AVAILABLE", "{name}");
        assert_eq!(cloud.blue_green_requests().len(), 1, "{name}");
        assert_eq!(blue_green_statuses(&config, &format!("pgferry-{name}-blue-green")).await.len(), 1, "{name}");
        assert_eq!(green.checked.borrow().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn an_instance_blue_green_cannot_encrypt_is_refused_before_any_deployment() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-secret", Some("1"), 0).await;
    manage_master_password(&config, "bg-secret").await;
    let dir = tempfile::tempdir().unwrap();
    let err = deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-secret", None), &RecordingGreen::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("managed by Secrets Manager"), "{}", err.message);
    assert!(err.hint.unwrap().contains("without --method"));
    assert_eq!(cloud.calls("rds:CreateBlueGreenDeployment"), 0);
}

#[tokio::test]
async fn a_deployment_aws_cannot_provision_stops_the_wait_with_its_state() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-invalid", Some("1"), 0).await;
    cloud
        .blue_green_states("pgferry-bg-invalid-blue-green", &["PROVISIONING", "PROVISIONING", "INVALID_CONFIGURATION"]);
    let dir = tempfile::tempdir().unwrap();
    let err = deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-invalid", None), &RecordingGreen::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert!(
        err.message.starts_with("the Blue/Green deployment pgferry-bg-invalid-blue-green is INVALID_CONFIGURATION"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_migration_keeps_its_method() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-method", Some("1"), 0).await;
    let dir = tempfile::tempdir().unwrap();
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-method", None), &RecordingGreen::default()).await.unwrap();
    let snapshot = pgferry_aws::encrypt::EncryptPlan {
        migration: migration("bg_method"),
        source: "bg-method".into(),
        target: "bg-method-new".into(),
        kms_key: None,
        databases: Default::default(),
        connected_database: "app".into(),
    };
    let seed = pgferry_aws::testing::RecordingSeed::new(pgferry_pgoutput::Lsn(1));
    let err = pgferry_aws::encrypt::encrypt(&cloud, &pacing(), &mut journal(&dir), &snapshot, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage);
    assert!(err.message.contains("--method blue-green"), "{}", err.message);
    assert_eq!(cloud.calls("rds:CreateDBSnapshot"), 0);

    // The snapshot path's finish would delete blue (--delete-source) and build replicas of a target it never made.
    let finish_plan = pgferry_aws::finish::FinishPlan {
        migration: migration("bg_method"),
        source: "bg-method".into(),
        target: "bg-method-new".into(),
        delete_source: true,
    };
    let err = pgferry_aws::finish::finish(&cloud, &pacing(), &mut journal(&dir), &finish_plan).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage);
    assert!(err.hint.unwrap().contains("pgferry aws finish --blue-green --name bg_method"));
    assert_eq!(cloud.calls("rds:CreateDBSnapshot") + cloud.calls("rds:DeleteDBInstance"), 0);
    assert!(instance(&config, "bg-method").await.is_some(), "blue stays");
}

#[tokio::test]
async fn an_unknown_instance_is_named_with_a_hint_and_nothing_is_recorded() {
    let (cloud, _) = cloud().await;
    let dir = tempfile::tempdir().unwrap();
    let err = deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-nowhere", None), &RecordingGreen::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert_eq!(err.message, "there is no RDS instance bg-nowhere");
    assert!(err.hint.unwrap().contains("AWS_REGION"));
    let fence_plan = pgferry_aws::fence::FencePlan {
        migration: migration("bg_nowhere"),
        source: "bg-nowhere".into(),
        group: pgferry_aws::fence::FenceGroup::Own { allow: vec!["10.0.3.17/32".into()] },
        prepare_only: false,
    };
    let err = pgferry_aws::fence::fence(&cloud, &pacing(), &mut journal(&dir), &fence_plan).await.unwrap_err();
    assert_eq!(err.message, "there is no RDS instance bg-nowhere");
    assert!(err.hint.unwrap().contains("AWS_REGION"));
    assert!(journal(&dir).entries().is_empty());
    assert_eq!(cloud.calls("ec2:CreateSecurityGroup") + cloud.calls("rds:CreateBlueGreenDeployment"), 0);
}

fn switch_plan(name: &str) -> SwitchoverPlan {
    SwitchoverPlan {
        migration: migration(&name.replace('-', "_")),
        timeout_seconds: 300,
        probe_interval: std::time::Duration::from_millis(1),
    }
}

#[tokio::test]
async fn the_switchover_measures_the_write_downtime_and_finish_removes_the_deployment() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-switch", Some("1"), 0).await;
    let dir = tempfile::tempdir().unwrap();
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-switch", None), &RecordingGreen::default()).await.unwrap();
    let name = "pgferry-bg-switch-blue-green";
    let err = clean_up(&cloud, &pacing(), &mut journal(&dir), &migration("bg_switch")).await.unwrap_err();
    assert!(err.message.contains("has not switched over"), "{}", err.message);

    // The first write, before the switchover, commits; writes 2 to 4 fail: the endpoint is read-only while it switches.
    cloud.blue_green_states(name, &["AVAILABLE", "SWITCHOVER_IN_PROGRESS", "SWITCHOVER_IN_PROGRESS"]);
    let probe = ScriptedProbe::failing(2, 4);
    let report = switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-switch"), &probe).await.unwrap();
    assert_eq!(report.status, "SWITCHOVER_COMPLETED");
    assert_eq!(report.writes_failed, 3);
    assert!(report.writes_committed >= 1, "{report:?}");
    assert_eq!(cloud.calls("rds:SwitchoverBlueGreenDeployment"), 1);
    let renamed = instance(&config, "bg-switch").await.unwrap();
    assert!(renamed.db_instance_arn().unwrap().ends_with(":db:bg-switch"), "green took blue's name");
    assert!(instance(&config, "bg-switch-old1").await.is_some(), "blue stays, renamed");

    // A rerun reports the journaled switchover and asks for no second one.
    let again = switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-switch"), &probe).await.unwrap();
    assert_eq!((again.writes_failed, cloud.calls("rds:SwitchoverBlueGreenDeployment")), (3, 1));

    let cleaned = clean_up(&cloud, &pacing(), &mut journal(&dir), &migration("bg_switch")).await.unwrap();
    assert!(blue_green_statuses(&config, name).await.is_empty());
    assert!(cleaned.left.iter().any(|l| l.ends_with(":db:bg-switch-old1")), "{cleaned:?}");
    assert!(instance(&config, "bg-switch-old1").await.is_some(), "finish deletes the deployment only");
}

#[tokio::test]
async fn a_switchover_rolled_back_or_stopped_by_its_guardrails_is_an_error() {
    let (cloud, config) = cloud().await;
    for (name, states, says) in [
        (
            "bg-rollback",
            ["AVAILABLE", "SWITCHOVER_IN_PROGRESS", "AVAILABLE"],
            "did not complete within 300 s and was rolled back",
        ),
        ("bg-guard", ["AVAILABLE", "SWITCHOVER_IN_PROGRESS", "SWITCHOVER_FAILED"], "is SWITCHOVER_FAILED"),
    ] {
        create_source(&config, name, Some("1"), 0).await;
        let dir = tempfile::tempdir().unwrap();
        deploy(&cloud, &pacing(), &mut journal(&dir), &plan(name, None), &RecordingGreen::default()).await.unwrap();
        cloud.blue_green_states(&format!("pgferry-{name}-blue-green"), &states);
        let err = switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan(name), &ScriptedProbe::failing(0, 0))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Server, "{name}");
        assert!(err.message.contains(says), "{name}: {}", err.message);
        assert!(journal(&dir).outcome("switchover").is_none(), "{name}");
    }
}

#[tokio::test]
async fn a_deployment_of_that_name_not_made_by_pgferry_is_neither_adopted_switched_nor_deleted() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-foreign", Some("1"), 0).await;
    let name = "pgferry-bg-foreign-blue-green";
    let theirs = create_foreign_blue_green(&config, name, "bg-foreign").await;
    let dir = tempfile::tempdir().unwrap();

    let err = deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-foreign", None), &RecordingGreen::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("not this migration's"), "{}", err.message);
    assert!(err.message.contains("not tagged pgferry:migration"), "{}", err.message);
    assert_eq!(cloud.calls("rds:CreateBlueGreenDeployment"), 0);

    // Even a journal that records it as pgferry's (copied, or forged) does not make it so.
    let mut forged = journal(&dir);
    forged.record("blue-green", Event::Intent, name, serde_json::Value::Null).unwrap();
    forged.record("blue-green", Event::Outcome, name, serde_json::json!({"identifier": theirs})).unwrap();
    forged.record("green-checks", Event::Outcome, name, serde_json::Value::Null).unwrap();
    let probe = ScriptedProbe::failing(0, 0);
    let err = switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-foreign"), &probe).await.unwrap_err();
    assert!(err.message.contains("not this migration's"), "{}", err.message);
    let err = clean_up(&cloud, &pacing(), &mut journal(&dir), &migration("bg_foreign")).await.unwrap_err();
    assert!(err.message.contains("not this migration's"), "{}", err.message);
    assert_eq!(cloud.calls("rds:SwitchoverBlueGreenDeployment"), 0);
    assert_eq!(cloud.calls("rds:DeleteBlueGreenDeployment"), 0);
    assert_eq!(blue_green_statuses(&config, name).await, ["AVAILABLE"], "theirs is untouched");
}

#[tokio::test]
async fn the_switchover_and_finish_refuse_a_deployment_encrypt_did_not_verify_to_the_end() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-unverified", Some("1"), 0).await;
    let green = RecordingGreen::default();
    green.fail.set(true);
    let dir = tempfile::tempdir().unwrap();
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-unverified", None), &green).await.unwrap_err();
    assert_eq!(blue_green_statuses(&config, "pgferry-bg-unverified-blue-green").await, ["AVAILABLE"]);

    let probe = ScriptedProbe::failing(0, 0);
    let err =
        switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-unverified"), &probe).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("created and verified"), "{}", err.message);
    assert!(err.hint.unwrap().contains("pgferry aws encrypt --method blue-green --name bg_unverified"));
    assert_eq!(probe.writes.get(), 0);
    // Another state directory knows nothing of it either.
    let other = tempfile::tempdir().unwrap();
    switchover(&cloud, &pacing(), &mut journal(&other), &switch_plan("bg-unverified"), &probe).await.unwrap_err();
    clean_up(&cloud, &pacing(), &mut journal(&other), &migration("bg_unverified")).await.unwrap_err();
    assert_eq!(cloud.calls("rds:SwitchoverBlueGreenDeployment"), 0);
    assert_eq!(cloud.calls("rds:DeleteBlueGreenDeployment"), 0);
    assert_eq!(blue_green_statuses(&config, "pgferry-bg-unverified-blue-green").await, ["AVAILABLE"]);
}

#[tokio::test]
async fn a_switchover_whose_probe_cannot_write_asks_for_nothing() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-noprobe", Some("1"), 0).await;
    let dir = tempfile::tempdir().unwrap();
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-noprobe", None), &RecordingGreen::default()).await.unwrap();
    let err =
        switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-noprobe"), &ScriptedProbe::failing(1, 1))
            .await
            .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connection);
    assert!(err.message.contains("cannot commit through --source"), "{}", err.message);
    assert!(err.hint.unwrap().contains("nothing was switched"));
    assert_eq!(cloud.calls("rds:SwitchoverBlueGreenDeployment"), 0);
    assert!(!journal(&dir).intended("switchover", "pgferry-bg-noprobe-blue-green"));
    assert_eq!(blue_green_statuses(&config, "pgferry-bg-noprobe-blue-green").await, ["AVAILABLE"]);
}

#[tokio::test]
async fn finish_killed_after_its_delete_call_completes_when_run_again() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-redelete", Some("1"), 0).await;
    let dir = tempfile::tempdir().unwrap();
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-redelete", None), &RecordingGreen::default())
        .await
        .unwrap();
    let probe = ScriptedProbe::failing(0, 0);
    switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-redelete"), &probe).await.unwrap();

    cloud.fail_after("rds:DeleteBlueGreenDeployment");
    clean_up(&cloud, &pacing(), &mut journal(&dir), &migration("bg_redelete")).await.unwrap_err();
    assert!(blue_green_statuses(&config, "pgferry-bg-redelete-blue-green").await.is_empty(), "the call took effect");
    let cleaned = clean_up(&cloud, &pacing(), &mut journal(&dir), &migration("bg_redelete")).await.unwrap();
    assert!(cleaned.left.iter().any(|l| l.ends_with(":db:bg-redelete-old1")), "{cleaned:?}");
    assert_eq!(cloud.calls("rds:DeleteBlueGreenDeployment"), 1);
    let again = clean_up(&cloud, &pacing(), &mut journal(&dir), &migration("bg_redelete")).await.unwrap();
    assert_eq!(again.left, cleaned.left);
}

#[tokio::test]
async fn encrypt_run_again_during_or_after_the_switchover_says_its_part_is_over() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-after", Some("1"), 0).await;
    let dir = tempfile::tempdir().unwrap();
    let green = RecordingGreen::default();
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-after", None), &green).await.unwrap();
    for state in ["SWITCHOVER_IN_PROGRESS", "SWITCHOVER_COMPLETED"] {
        cloud.blue_green_states("pgferry-bg-after-blue-green", &[state, state]);
        let err = deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-after", None), &green).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Precondition, "{state}");
        assert!(err.message.contains(&format!("is {state}: past what pgferry aws encrypt does")), "{}", err.message);
        let hint = err.hint.unwrap();
        assert!(hint.contains("pgferry aws switchover --name bg_after"), "{hint}");
        assert!(!hint.contains("--delete-target"), "{hint}");
    }
    assert_eq!(cloud.blue_green_requests().len(), 1);
}

#[tokio::test]
async fn a_kms_key_that_cannot_work_is_refused_before_the_plan_is_recorded() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-badkey", Some("1"), 0).await;
    let (_, key) = create_key(&config, "alias/bg-badkey").await;
    let id = key.rsplit('/').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (bad, says) in [
        ("alias/bg-no-such-key".to_owned(), "KMS has no such key here"),
        ("arn:aws:kms:nowhere".to_owned(), "KMS has no such key here"),
        (
            format!("arn:aws:kms:eu-west-1:123456789012:key/{id}"),
            "the key is in region eu-west-1, the instance in us-east-1",
        ),
    ] {
        let err = deploy(
            &cloud,
            &pacing(),
            &mut journal(&dir),
            &plan("bg-badkey", Some(bad.clone())),
            &RecordingGreen::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage, "{bad}: {err:?}");
        assert!(err.message.starts_with(&format!("--kms-key {bad}: {says}")), "{bad}: {}", err.message);
        assert!(err.hint.unwrap().contains("nothing was created or recorded"), "{bad}");
        assert!(journal(&dir).entries().is_empty(), "{bad}: {:?}", journal(&dir).entries());
    }
    assert_eq!(cloud.calls("rds:CreateBlueGreenDeployment"), 0);
    // The name is not locked to the typo: the right key goes through.
    let report = deploy(
        &cloud,
        &pacing(),
        &mut journal(&dir),
        &plan("bg-badkey", Some("alias/bg-badkey".into())),
        &RecordingGreen::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.kms_key_arn, key);
}

#[tokio::test]
async fn a_switchover_killed_after_its_call_is_waited_for_and_never_asked_twice() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-killed", Some("1"), 0).await;
    let dir = tempfile::tempdir().unwrap();
    deploy(&cloud, &pacing(), &mut journal(&dir), &plan("bg-killed", None), &RecordingGreen::default()).await.unwrap();
    let probe = ScriptedProbe::failing(0, 0);
    cloud.fail_after("rds:SwitchoverBlueGreenDeployment");
    switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-killed"), &probe).await.unwrap_err();
    assert!(journal(&dir).outcome("switchover").is_none());

    let name = "pgferry-bg-killed-blue-green";
    cloud.blue_green_states(name, &["SWITCHOVER_IN_PROGRESS", "SWITCHOVER_IN_PROGRESS", "SWITCHOVER_IN_PROGRESS"]);
    let report = switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-killed"), &probe).await.unwrap();
    assert_eq!(report.status, "SWITCHOVER_COMPLETED");
    assert_eq!(report.write_downtime_seconds, None, "not watched: not measured");
    assert_eq!(cloud.calls("rds:SwitchoverBlueGreenDeployment"), 1);
    let twice = switchover(&cloud, &pacing(), &mut journal(&dir), &switch_plan("bg-killed"), &probe).await.unwrap();
    assert_eq!((twice.status.as_str(), cloud.calls("rds:SwitchoverBlueGreenDeployment")), ("SWITCHOVER_COMPLETED", 1));
}

#[tokio::test]
async fn another_state_directory_adopts_nothing_and_is_told_which_to_use() {
    let (cloud, config) = cloud().await;
    create_source(&config, "bg-twodirs", Some("1"), 0).await;
    let first = tempfile::tempdir().unwrap();
    deploy(&cloud, &pacing(), &mut journal(&first), &plan("bg-twodirs", None), &RecordingGreen::default())
        .await
        .unwrap();
    let second = tempfile::tempdir().unwrap();
    let err = deploy(&cloud, &pacing(), &mut journal(&second), &plan("bg-twodirs", None), &RecordingGreen::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("already exists and this migration did not create it"), "{}", err.message);
    assert!(err.hint.unwrap().contains("that run's --state-dir"));
    assert_eq!(cloud.blue_green_requests().len(), 1);
    assert_eq!(blue_green_statuses(&config, "pgferry-bg-twodirs-blue-green").await, ["AVAILABLE"]);
}
