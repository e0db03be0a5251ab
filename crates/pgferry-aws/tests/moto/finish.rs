use pgferry::ErrorKind;
use pgferry_aws::finish::{finish, FinishPlan};
use pgferry_aws::journal::Event;
use pgferry_aws::testing::create_source;

use crate::{cloud, instance, journal, migration, pacing, snapshot_exists};

/// A source with a read replica, a target, and the two intermediate snapshots.
async fn migrated(config: &aws_config::SdkConfig, name: &str) -> FinishPlan {
    create_source(config, name, Some("1"), 1).await;
    create_source(config, &format!("{name}-new"), Some("1"), 0).await;
    let rds = aws_sdk_rds::Client::new(config);
    for suffix in ["snapshot", "encrypted"] {
        rds.create_db_snapshot()
            .db_instance_identifier(name)
            .db_snapshot_identifier(format!("pgferry-{name}-{suffix}"))
            .send()
            .await
            .unwrap();
    }
    FinishPlan {
        migration: migration(&name.replace('-', "_")),
        source: name.into(),
        target: format!("{name}-new"),
        delete_source: false,
    }
}

/// A state directory in which pgferry aws encrypt recorded its plan for `plan`'s instances.
fn encrypted(plan: &FinishPlan) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let detail = serde_json::json!({"source": plan.source, "target": plan.target, "kms_key": "alias/aws/rds"});
    journal(&dir).record("plan", Event::Intent, &plan.target, detail).unwrap();
    dir
}

#[tokio::test]
async fn finish_keeps_the_source_unless_told_twice() {
    let (cloud, config) = cloud().await;
    let plan = migrated(&config, "fin-keep").await;
    let dir = encrypted(&plan);
    cloud.instance_states("pgferry-fin-keep-replica-1", &["creating"]);
    let report = finish(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();

    let replica = instance(&config, "pgferry-fin-keep-replica-1").await.unwrap();
    assert_eq!(replica.read_replica_source_db_instance_identifier(), Some("fin-keep-new"));
    assert_eq!(replica.db_instance_class(), Some("db.r6g.large"));
    assert_eq!(replica.availability_zone(), Some("us-east-1c"), "the zone of the source's replica");
    assert!(instance(&config, "fin-keep").await.is_some());
    assert!(snapshot_exists(&config, "pgferry-fin-keep-final").await);
    assert!(!snapshot_exists(&config, "pgferry-fin-keep-snapshot").await);
    assert!(!snapshot_exists(&config, "pgferry-fin-keep-encrypted").await);
    assert_eq!(report.created, vec!["pgferry-fin-keep-replica-1", "pgferry-fin-keep-final"]);
    assert_eq!(report.deleted, vec!["pgferry-fin-keep-snapshot", "pgferry-fin-keep-encrypted"]);
    assert!(report.left.iter().any(|l| l.contains("--delete-source --yes")), "{:?}", report.left);

    // Again: nothing new is created.
    finish(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert_eq!(cloud.calls("rds:CreateDBInstanceReadReplica"), 1);
    assert_eq!(cloud.calls("rds:CreateDBSnapshot"), 1);
}

#[tokio::test]
async fn finish_deletes_the_protected_source_after_its_final_snapshot() {
    let (cloud, config) = cloud().await;
    let plan = FinishPlan { delete_source: true, ..migrated(&config, "fin-delete").await };
    let dir = encrypted(&plan);
    cloud.fail_after("rds:DeleteDBInstance");
    finish(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap_err();
    let report = finish(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert!(instance(&config, "fin-delete").await.is_none());
    assert!(snapshot_exists(&config, "pgferry-fin-delete-final").await);
    assert_eq!(report.deleted, vec!["fin-delete", "pgferry-fin-delete-snapshot", "pgferry-fin-delete-encrypted"]);
    assert!(report.left.iter().any(|l| l.contains("fin-delete-r1")), "{:?}", report.left);
    assert_eq!(cloud.calls("rds:DeleteDBInstance"), 1);
}

#[tokio::test]
async fn finish_naming_instances_the_migration_did_not_encrypt_deletes_nothing() {
    let (cloud, config) = cloud().await;
    let plan = migrated(&config, "fin-typo").await;
    create_source(&config, "fin-typo-other", Some("1"), 0).await;
    let dir = encrypted(&plan);
    // A mistyped --source-instance that names another instance, with --delete-source --yes.
    let typo = FinishPlan { source: "fin-typo-other".into(), delete_source: true, ..plan.clone() };
    let err = finish(&cloud, &pacing(), &mut journal(&dir), &typo).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage);
    assert_eq!(
        err.message,
        "this migration encrypted fin-typo into fin-typo-new, not fin-typo-other into fin-typo-new"
    );
    assert!(err.hint.unwrap().contains("--source-instance fin-typo --target-instance fin-typo-new"));
    // No record of an encrypt at all (another --state-dir): nothing either.
    let elsewhere = tempfile::tempdir().unwrap();
    let err = finish(&cloud, &pacing(), &mut journal(&elsewhere), &typo).await.unwrap_err();
    assert!(err.message.contains("records no pgferry aws encrypt"), "{}", err.message);
    assert!(instance(&config, "fin-typo-other").await.is_some());
    assert!(!snapshot_exists(&config, "pgferry-fin-typo-final").await);
    assert_eq!(cloud.calls("rds:DeleteDBInstance") + cloud.calls("rds:CreateDBSnapshot"), 0);
}
