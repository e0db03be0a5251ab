use pgferry::ErrorKind;
use pgferry_aws::encrypt::{encrypt, EncryptPlan};
use pgferry_aws::journal::Event;
use pgferry_aws::sdk::Aws;
use pgferry_aws::testing::{create_key, create_source, RecordingSeed, Scripted};
use pgferry_core::instance::Selection;
use pgferry_pgoutput::Lsn;

use crate::{cloud, instance, journal, migration, pacing, snapshot_exists};

const OLD_LOG: &str = "\
2026-11-28 04:00:00 UTC::@:[300]:LOG:  redo done at 0/1000028 system usage: CPU: user: 0.00 s
2026-11-28 04:00:01 UTC::@:[300]:LOG:  database system is ready to accept connections
";
const RESTORE_LOG: &str = "\
2026-11-28 05:00:01 UTC::@:[401]:LOG:  database system was interrupted; last known up at 2026-11-28 04:58:00 UTC
2026-11-28 05:00:02 UTC::@:[401]:LOG:  redo starts at 0/2000028
2026-11-28 05:00:03 UTC::@:[401]:LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.01 s
2026-11-28 05:00:04 UTC::@:[401]:LOG:  database system is ready to accept connections
";
const REDO: Lsn = Lsn(0x300_0148);

fn plan(name: &str, key: Option<String>) -> EncryptPlan {
    EncryptPlan {
        migration: migration(&name.replace('-', "_")),
        source: name.to_owned(),
        target: format!("{name}-new"),
        kms_key: key,
        databases: Selection::default(),
        connected_database: "app".into(),
    }
}

/// The restored target's log, served in small pages so that paging is exercised.
fn with_logs(cloud: &Scripted<Aws>, target: &str) {
    cloud.logs(
        target,
        &[("error/postgresql.log.2026-11-28-04", OLD_LOG), ("error/postgresql.log.2026-11-28-05", RESTORE_LOG)],
        50,
    );
}

#[tokio::test]
async fn the_happy_path_encrypts_with_every_setting_and_hands_over_the_redo_position() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-happy", Some("1"), 0).await;
    let (_, arn) = create_key(&config, "alias/enc-happy").await;
    let plan = plan("enc-happy", Some("alias/enc-happy".into()));
    with_logs(&cloud, &plan.target);
    cloud
        .snapshot_states("pgferry-enc-happy-snapshot", &["creating"])
        .snapshot_states("pgferry-enc-happy-encrypted", &["copying", "copying"])
        .instance_states(&plan.target, &["creating", "backing-up"])
        .pending_reboot(&plan.target)
        .throttle("rds:CopyDBSnapshot", 2)
        .throttle("rds:DescribeDBInstances", 1);
    let seed = RecordingSeed::new(Lsn(0x200_0000));
    let dir = tempfile::tempdir().unwrap();

    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();

    assert_eq!(report.kms_key_arn, arn);
    assert_eq!(report.redo_lsn, "0/3000148");
    assert_eq!(*seed.started.borrow(), vec![("app".to_owned(), REDO)]);
    assert!(report.parity.iter().all(|row| row.source == row.target), "{:?}", report.parity);
    assert!(report.parity.iter().any(|row| row.setting == "IOPS" && row.target == "12000"));
    let target = instance(&config, &plan.target).await.unwrap();
    assert_eq!(target.storage_encrypted(), Some(true));
    assert_eq!(target.kms_key_id(), Some(arn.as_str()));
    assert_eq!(target.db_instance_class(), Some("db.r6g.large"));
    assert_eq!(target.availability_zone(), Some("us-east-1b"));
    assert_eq!(target.endpoint().and_then(|e| e.port()), Some(5433));
    assert_eq!(target.max_allocated_storage(), Some(1000), "set by the modify after the restore");
    assert_eq!(cloud.calls("rds:CopyDBSnapshot"), 3, "two throttled attempts, then the call");
    assert_eq!(cloud.calls("rds:RestoreDBInstanceFromDBSnapshot"), 1);
    assert_eq!(cloud.calls("rds:ModifyDBInstance"), 1);
    assert_eq!(cloud.calls("rds:RebootDBInstance"), 1, "the target's parameter group waited for a reboot");
    assert!(cloud.calls("rds:DownloadDBLogFilePortion") >= 4, "the log is read page by page");

    let steps: Vec<(String, Event)> = journal(&dir).entries().iter().map(|e| (e.step.clone(), e.event)).collect();
    for step in
        ["plan", "seed-prepare", "snapshot", "encrypted-copy", "restore", "modify", "reboot", "parity", "redo", "seed"]
    {
        assert!(steps.contains(&(step.to_owned(), Event::Outcome)), "no outcome for {step}: {steps:?}");
    }

    let stored = std::fs::read_to_string(dir.path().join("aws-journal.jsonl")).unwrap();
    for secret in ["not-a-secret", "AWS_SECRET", "secret_access_key"] {
        assert!(!stored.contains(secret), "the journal holds {secret}");
    }

    assert!(report.databases.iter().all(|d| d.caught_up_now), "{:?}", report.databases);
    // A rerun after success changes nothing, and does not claim to have caught up.
    let again = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    assert!(again.databases.iter().all(|d| !d.caught_up_now), "{:?}", again.databases);
    assert_eq!(cloud.calls("rds:RestoreDBInstanceFromDBSnapshot"), 1);
    assert_eq!((seed.prepared.borrow().len(), seed.started.borrow().len()), (1, 1));
}

#[tokio::test]
async fn the_key_may_be_an_alias_an_arn_a_key_id_or_the_default() {
    let (cloud, config) = cloud().await;
    let (key_id, arn) = create_key(&config, "alias/enc-keys").await;
    for (name, key) in [("enc-arn", Some(arn.clone())), ("enc-keyid", Some(key_id.clone())), ("enc-default", None)] {
        create_source(&config, name, Some("1"), 0).await;
        let plan = plan(name, key);
        with_logs(&cloud, &plan.target);
        let seed = RecordingSeed::new(Lsn(1));
        let dir = tempfile::tempdir().unwrap();
        let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
        let target = instance(&config, &plan.target).await.unwrap();
        assert_eq!(target.kms_key_id(), Some(report.kms_key_arn.as_str()), "{name}");
        if name != "enc-default" {
            assert_eq!(report.kms_key_arn, arn, "{name}");
        }
    }
}

#[tokio::test]
async fn a_setting_that_differs_stops_the_run_before_replication() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-parity", Some("1"), 0).await;
    let plan = plan("enc-parity", None);
    with_logs(&cloud, &plan.target);
    cloud.tweak(&plan.target, |t| t.iam_auth = false);
    let seed = RecordingSeed::new(Lsn(1));
    let dir = tempfile::tempdir().unwrap();
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("IAM authentication: source true, target false"), "{}", err.message);
    assert!(seed.started.borrow().is_empty());
    assert_eq!(cloud.calls("rds:DownloadDBLogFilePortion"), 0);
}

#[tokio::test]
async fn a_source_that_fails_the_check_is_refused_before_any_change() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-nolr", None, 0).await;
    let seed = RecordingSeed::new(Lsn(1));
    let dir = tempfile::tempdir().unwrap();
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan("enc-nolr", None), &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("rds.logical_replication"), "{}", err.message);
    assert_eq!((seed.prepared.borrow().len(), cloud.calls("rds:CreateDBSnapshot")), (0, 0));
}

#[tokio::test]
async fn an_existing_target_that_pgferry_did_not_create_is_refused() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-taken", Some("1"), 0).await;
    create_source(&config, "enc-taken-new", Some("1"), 0).await;
    let seed = RecordingSeed::new(Lsn(1));
    let dir = tempfile::tempdir().unwrap();
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan("enc-taken", None), &seed).await.unwrap_err();
    assert!(
        err.message.contains("enc-taken-new already exists and this migration did not create it"),
        "{}",
        err.message
    );
    assert_eq!(cloud.calls("rds:RestoreDBInstanceFromDBSnapshot"), 0);
}

#[tokio::test]
async fn a_rerun_with_another_key_is_refused() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-final", Some("1"), 0).await;
    let seed = RecordingSeed::new(Lsn(1));
    let dir = tempfile::tempdir().unwrap();
    let plan = plan("enc-final", None);
    cloud.fail_before("rds:CreateDBSnapshot", "InternalFailure");
    encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    let other = EncryptPlan { kms_key: Some("alias/other".into()), ..plan };
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &other, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage);
    assert!(err.hint.unwrap().contains("final"));
}

#[tokio::test]
async fn a_key_that_cannot_work_is_refused_with_nothing_recorded_and_binds_nothing() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-typo", Some("1"), 0).await;
    let (_, key) = create_key(&config, "alias/enc-typo").await;
    let seed = RecordingSeed::new(Lsn(1));
    let dir = tempfile::tempdir().unwrap();
    let abroad = key.replace(":us-east-1:", ":eu-west-1:");
    for (bad, says) in [("alias/enc-typo-typo", "KMS has no such key here"), (abroad.as_str(), "in region eu-west-1")] {
        let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan("enc-typo", Some(bad.into())), &seed)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage, "{bad}: {err:?}");
        assert!(err.message.contains(says), "{bad}: {}", err.message);
        assert!(journal(&dir).entries().is_empty(), "{bad}: nothing recorded");
    }
    assert_eq!(seed.prepared.borrow().len(), 0);
    assert_eq!(cloud.calls("rds:CreateDBSnapshot"), 0);
    // The right key is taken afterwards: the typo did not become the migration's.
    cloud.fail_before("rds:CreateDBSnapshot", "InternalFailure");
    encrypt(&cloud, &pacing(), &mut journal(&dir), &plan("enc-typo", Some("alias/enc-typo".into())), &seed)
        .await
        .unwrap_err();
    assert_eq!(journal(&dir).outcome("plan").unwrap()["kms_key_arn"], key.as_str());
}

/// A failure scripted into the control plane.
type Inject = fn(&Scripted<Aws>);

/// The instance of the resume tests: three databases (and RDS's own beside them).
const DATABASES: [&str; 3] = ["app", "billing", "reports"];

fn every_database(lsn: Lsn) -> Vec<(String, Lsn)> {
    DATABASES.iter().map(|d| ((*d).to_owned(), lsn)).collect()
}

/// A failure after each step, then a rerun: it resumes from the cloud's state
/// and asks for no resource twice, and prepares and starts each database once.
#[tokio::test]
async fn a_failure_after_each_step_is_resumed_without_duplicates() {
    let (cloud, config) = cloud().await;
    let cases: [(&str, Inject); 7] = [
        ("enc-f1", |c| {
            c.fail_after("rds:CreateDBSnapshot");
        }),
        ("enc-f2", |c| {
            c.fail_after("rds:CopyDBSnapshot");
        }),
        ("enc-f3", |c| {
            c.fail_after("rds:RestoreDBInstanceFromDBSnapshot");
        }),
        ("enc-f4", |c| {
            c.fail_after("rds:ModifyDBInstance");
        }),
        ("enc-f5", |c| {
            c.fail_before("rds:DescribeDBLogFiles", "InternalFailure");
        }),
        ("enc-f6", |c| {
            c.fail_before("rds:DownloadDBLogFilePortion", "InternalFailure");
        }),
        ("enc-f7", |c| {
            c.fail_before("kms:DescribeKey", "AccessDeniedException");
        }),
    ];
    for (name, inject) in cases {
        let cloud = Scripted::new(pgferry_aws::testing::Moto::shared().aws().await);
        create_source(&config, name, Some("1"), 0).await;
        let plan = plan(name, None);
        with_logs(&cloud, &plan.target);
        let seed = RecordingSeed::of(Lsn(1), &DATABASES);
        let dir = tempfile::tempdir().unwrap();
        inject(&cloud);
        encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.expect_err(name);
        let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(report.redo_lsn, "0/3000148", "{name}");
        assert_eq!(cloud.calls("rds:CreateDBSnapshot"), 1, "{name}");
        assert!(cloud.calls("rds:CopyDBSnapshot") <= 1, "{name}");
        assert!(cloud.calls("rds:RestoreDBInstanceFromDBSnapshot") <= 1, "{name}");
        assert_eq!(*seed.prepared.borrow(), DATABASES, "{name}");
        assert_eq!(*seed.started.borrow(), every_database(REDO), "{name}");
        assert!(snapshot_exists(&config, &format!("pgferry-{name}-encrypted")).await, "{name}");
    }
    // The database side failing in the second database, while preparing
    // (before the snapshot) or starting (after the restore): the rerun goes on
    // from that database.
    for (name, fails_in_prepare) in [("enc-f8", true), ("enc-f9", false)] {
        create_source(&config, name, Some("1"), 0).await;
        let plan = plan(name, None);
        with_logs(&cloud, &plan.target);
        let seed = RecordingSeed::of(Lsn(1), &DATABASES);
        let armed = if fails_in_prepare { &seed.fail_prepare } else { &seed.fail_start };
        *armed.borrow_mut() = Some("billing".into());
        let dir = tempfile::tempdir().unwrap();
        let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connection, "{name}");
        assert!(err.message.starts_with("database \"billing\": "), "{name}: {}", err.message);
        let snapshots = cloud.calls("rds:CreateDBSnapshot");
        if fails_in_prepare {
            assert_eq!(snapshots, 0, "{name}: no snapshot before every database is prepared");
        }
        encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(*seed.prepared.borrow(), DATABASES, "{name}");
        assert_eq!(*seed.started.borrow(), every_database(REDO), "{name}");
    }
}

/// `--exclude-database` leaves one out: not prepared, not started, and the
/// report says that its writes after the snapshot do not reach the target;
/// `--database` narrows to the named ones. The choice is final.
#[tokio::test]
async fn a_database_left_out_is_neither_prepared_nor_followed_and_the_report_says_so() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-excl", Some("1"), 0).await;
    let excluding = EncryptPlan {
        databases: Selection { only: vec![], excluded: vec!["reports".into()] },
        ..plan("enc-excl", None)
    };
    with_logs(&cloud, &excluding.target);
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);
    let dir = tempfile::tempdir().unwrap();
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &excluding, &seed).await.unwrap();
    assert_eq!(*seed.prepared.borrow(), ["app", "billing"]);
    assert_eq!(*seed.started.borrow(), [("app".to_owned(), REDO), ("billing".to_owned(), REDO)]);
    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, ["app", "billing"]);
    let losing: Vec<_> = report.left_out.iter().filter(|l| l.loses_writes).collect();
    assert_eq!(losing.len(), 1, "{:?}", report.left_out);
    assert_eq!(losing[0].database, "reports");
    assert!(losing[0].why.contains("writes after the snapshot will NOT reach the target"), "{}", losing[0].why);
    let quiet: Vec<&str> = report.left_out.iter().filter(|l| !l.loses_writes).map(|l| l.database.as_str()).collect();
    assert_eq!(quiet, ["rdsadmin", "template0", "template1"]);

    let everything = EncryptPlan { databases: Selection::default(), ..excluding.clone() };
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &everything, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage, "the databases are final: {}", err.message);

    create_source(&config, "enc-only", Some("1"), 0).await;
    let only = EncryptPlan {
        databases: Selection { only: vec!["billing".into()], excluded: vec![] },
        ..plan("enc-only", None)
    };
    with_logs(&cloud, &only.target);
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);
    let dir = tempfile::tempdir().unwrap();
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &only, &seed).await.unwrap();
    assert_eq!(*seed.prepared.borrow(), ["billing"]);
    let losing: Vec<&str> = report.left_out.iter().filter(|l| l.loses_writes).map(|l| l.database.as_str()).collect();
    assert_eq!(losing, ["app", "reports"]);
}

#[tokio::test]
async fn a_restore_that_rds_cannot_complete_stops_the_wait_with_its_state() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-stuck", Some("1"), 0).await;
    let plan = plan("enc-stuck", None);
    cloud.instance_states(&plan.target, &["creating", "incompatible-parameters"]);
    let seed = RecordingSeed::new(Lsn(1));
    let dir = tempfile::tempdir().unwrap();
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert_eq!(err.message, "instance enc-stuck-new is incompatible-parameters");
}

#[tokio::test]
async fn a_snapshot_older_than_the_slot_is_refused() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-late", Some("1"), 0).await;
    let plan = plan("enc-late", None);
    with_logs(&cloud, &plan.target);
    let seed = RecordingSeed::new(Lsn(0x400_0000));
    let dir = tempfile::tempdir().unwrap();
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert!(err.message.contains("before the slot"), "{}", err.message);
    assert!(seed.started.borrow().is_empty());
}

/// A database name the source lacks (a typo in `--exclude-database` or
/// `--database`), or a selection that leaves nothing to follow, is refused with
/// nothing recorded: the corrected rerun is taken, not refused as another plan.
/// The names' order does not make another plan.
#[tokio::test]
async fn a_database_name_the_source_lacks_is_refused_and_binds_nothing() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-dbtypo", Some("1"), 0).await;
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);
    let dir = tempfile::tempdir().unwrap();
    let selecting = |only: &[&str], excluded: &[&str]| EncryptPlan {
        databases: Selection {
            only: only.iter().map(|d| (*d).to_owned()).collect(),
            excluded: excluded.iter().map(|d| (*d).to_owned()).collect(),
        },
        ..plan("enc-dbtypo", None)
    };
    for (typo, says) in [
        (selecting(&[], &["report"]), "\"report\""),
        (selecting(&["billing", "app"], &["rdsadmn"]), "\"rdsadmn\""),
        (selecting(&[], &DATABASES), "no database of enc-dbtypo is left to follow"),
    ] {
        let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &typo, &seed).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage, "{typo:?}: {err:?}");
        assert!(err.message.contains(says), "{}", err.message);
        assert!(journal(&dir).entries().is_empty(), "{typo:?}: nothing recorded");
    }
    let fixed = selecting(&["billing", "app"], &[]);
    with_logs(&cloud, &fixed.target);
    cloud.fail_before("rds:CreateDBSnapshot", "InternalFailure");
    encrypt(&cloud, &pacing(), &mut journal(&dir), &fixed, &seed).await.unwrap_err();
    let reordered = selecting(&["app", "billing", "app"], &[]);
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &reordered, &seed).await.unwrap();
    assert_eq!(*seed.prepared.borrow(), ["app", "billing"]);
    let losing: Vec<&str> = report.left_out.iter().filter(|l| l.loses_writes).map(|l| l.database.as_str()).collect();
    assert_eq!(losing, ["reports"]);
}

/// A database created on the source while the run was down before the snapshot
/// is prepared by the rerun and followed; one created after the last prepare,
/// which the snapshot brings over without a slot keeping its changes, stops the
/// run before replication, naming it, until it is dropped on the target.
#[tokio::test]
async fn a_database_created_after_the_prepare_is_prepared_or_refused_never_left_frozen() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-newdb", Some("1"), 0).await;
    let plan = plan("enc-newdb", None);
    with_logs(&cloud, &plan.target);
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);
    *seed.fail_prepare.borrow_mut() = Some("reports".into());
    let dir = tempfile::tempdir().unwrap();
    encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(*seed.prepared.borrow(), ["app", "billing"]);
    let grown = RecordingSeed::of(Lsn(1), &["app", "billing", "new db", "reports"]);
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &grown).await.unwrap();
    assert_eq!(*grown.prepared.borrow(), ["new db", "reports"]);
    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, ["app", "billing", "new db", "reports"]);
    assert_eq!(grown.started.borrow().len(), 4);

    create_source(&config, "enc-latedb", Some("1"), 0).await;
    let plan = crate::encrypt::plan("enc-latedb", None);
    with_logs(&cloud, &plan.target);
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);
    seed.only_on_target.borrow_mut().push("Late \"one\"".into());
    let dir = tempfile::tempdir().unwrap();
    let restores = cloud.calls("rds:RestoreDBInstanceFromDBSnapshot");
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains(r#""Late \"one\"" that this migration does not follow"#), "{}", err.message);
    assert!(err.hint.as_deref().unwrap_or_default().contains("drop it on the target"), "{err:?}");
    assert!(seed.started.borrow().is_empty(), "nothing replicates into an instance with a frozen database");
    // Dropped on the target: the rerun goes on.
    seed.only_on_target.borrow_mut().clear();
    encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    assert_eq!(*seed.started.borrow(), every_database(REDO));
    assert_eq!(cloud.calls("rds:RestoreDBInstanceFromDBSnapshot"), restores + 1, "restored once");
}

/// A migration journaled by the release that followed only the database of
/// `--source`'s URL: a rerun asking for every database is refused, saying why
/// and how to go on, with nothing recorded; `--database` naming that database
/// continues it (prepared again in that database, whose side reuses the
/// earlier slot) and reports the others as left out.
#[tokio::test]
async fn a_single_database_migration_from_an_earlier_release_continues_only_as_it_was_started() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-legacy", Some("1"), 0).await;
    let (_, arn) = create_key(&config, "alias/enc-legacy").await;
    let plan = EncryptPlan { kms_key: Some("alias/enc-legacy".into()), ..plan("enc-legacy", None) };
    with_logs(&cloud, &plan.target);
    let dir = tempfile::tempdir().unwrap();
    let earlier = [
        r#"{"at":1,"step":"plan","event":"intent","resource":"enc-legacy-new","detail":{"source":"enc-legacy","target":"enc-legacy-new","kms_key":"alias/enc-legacy"}}"#.to_owned(),
        format!(r#"{{"at":1,"step":"plan","event":"outcome","resource":"enc-legacy-new","detail":{{"kms_key_arn":"{arn}"}}}}"#),
        r#"{"at":1,"step":"seed-prepare","event":"intent","resource":"enc-legacy"}"#.to_owned(),
        r#"{"at":1,"step":"seed-prepare","event":"outcome","resource":"enc-legacy","detail":{"slot":"pgferry_enc_legacy","consistent_point":"0/1"}}"#.to_owned(),
    ];
    std::fs::write(dir.path().join("aws-journal.jsonl"), earlier.join("\n") + "\n").unwrap();
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);

    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage);
    assert!(err.message.contains("earlier pgferry") && err.message.contains("\"app\""), "{}", err.message);
    let hint = err.hint.unwrap();
    assert!(hint.contains("--database \"app\"") && hint.contains("new --name"), "{hint}");
    assert!(hint.contains("pgferry abort of migration enc_legacy"), "the old slot is named: {hint}");
    assert_eq!(journal(&dir).entries().len(), 4, "nothing recorded");

    let as_started = EncryptPlan { databases: Selection { only: vec!["app".into()], excluded: vec![] }, ..plan };
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &as_started, &seed).await.unwrap();
    assert_eq!(*seed.prepared.borrow(), ["app"], "prepared again: the database side reuses its slot");
    assert_eq!(*seed.started.borrow(), [("app".to_owned(), REDO)]);
    let losing: Vec<&str> = report.left_out.iter().filter(|l| l.loses_writes).map(|l| l.database.as_str()).collect();
    assert_eq!(losing, ["billing", "reports"]);
    // Journaled as this release does: a rerun is an ordinary one.
    encrypt(&cloud, &pacing(), &mut journal(&dir), &as_started, &seed).await.unwrap();
    assert_eq!(seed.started.borrow().len(), 1);
}

/// A database left out because it allowed no connections (`datallowconn`
/// false), opened on the source before the snapshot: the snapshot holds it
/// followable, with writes no slot kept. The run stops before replicating,
/// naming it, as for a database created after the prepare.
#[tokio::test]
async fn a_database_opened_to_connections_after_the_plan_is_not_left_frozen() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-opened", Some("1"), 0).await;
    let plan = plan("enc-opened", None);
    with_logs(&cloud, &plan.target);
    let seed = RecordingSeed::of(Lsn(1), &["app", "archive"]);
    seed.closed.borrow_mut().push("archive".into());
    let dir = tempfile::tempdir().unwrap();
    cloud.fail_after("rds:CreateDBSnapshot");
    encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(*seed.prepared.borrow(), ["app"]);
    seed.closed.borrow_mut().clear();
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition, "{err:?}");
    assert!(err.message.contains("\"archive\" that this migration does not follow"), "{}", err.message);
    assert!(seed.started.borrow().is_empty());
}

/// A database prepared by a run that was then stopped, and closed to
/// connections on the source before the rerun: it stays in the plan (its slot
/// keeps the source's WAL until attached), not dropped from it with the slot
/// left behind.
#[tokio::test]
async fn a_prepared_database_closed_to_connections_before_the_rerun_stays_followed() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-closed", Some("1"), 0).await;
    let plan = plan("enc-closed", None);
    with_logs(&cloud, &plan.target);
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);
    *seed.fail_prepare.borrow_mut() = Some("reports".into());
    let dir = tempfile::tempdir().unwrap();
    encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    seed.closed.borrow_mut().push("billing".into());
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    assert_eq!(*seed.prepared.borrow(), DATABASES, "each prepared once");
    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, DATABASES);
    assert!(report.left_out.iter().all(|l| l.database != "billing"), "{:?}", report.left_out);
}

/// A followed database dropped on the source between the snapshot and its
/// attach (its slot dropped first, as PostgreSQL requires): the run stops,
/// naming it, while the target still holds it; once it is dropped there too,
/// the rerun attaches the others and reports it as dropped, not followed.
#[tokio::test]
async fn a_database_dropped_on_the_source_before_its_attach_is_dropped_on_the_target_then_passed_over() {
    let (cloud, config) = cloud().await;
    create_source(&config, "enc-dropped", Some("1"), 0).await;
    let plan = plan("enc-dropped", None);
    with_logs(&cloud, &plan.target);
    let seed = RecordingSeed::of(Lsn(1), &DATABASES);
    *seed.fail_start.borrow_mut() = Some("billing".into());
    let dir = tempfile::tempdir().unwrap();
    encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(*seed.started.borrow(), [("app".to_owned(), REDO)]);

    let dropped = RecordingSeed::of(Lsn(1), &["app", "reports"]);
    dropped.only_on_target.borrow_mut().push("billing".into());
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &dropped).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition, "{err:?}");
    assert!(err.message.contains("\"billing\" was dropped on the source"), "{}", err.message);
    assert!(err.hint.unwrap().contains("DROP DATABASE"));
    assert!(dropped.started.borrow().is_empty());

    dropped.only_on_target.borrow_mut().clear();
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &dropped).await.unwrap();
    assert_eq!(*dropped.started.borrow(), [("reports".to_owned(), REDO)]);
    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, ["app", "reports"]);
    let billing = report.left_out.iter().find(|l| l.database == "billing").expect("billing is reported");
    assert!(billing.why.contains("dropped on the source") && !billing.loses_writes, "{billing:?}");
    // Run again: the same report, nothing started.
    let again = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &dropped).await.unwrap();
    assert_eq!(again.databases.len(), 2);
    assert_eq!(dropped.started.borrow().len(), 1);
}
