use pgferry_aws::check::{gather, ready, verdicts, Severity};
use pgferry_aws::choice::{paths, Method, Outcome, Wanted};
use pgferry_aws::testing::{create_proxy, create_source, manage_master_password};

use crate::{cloud, pacing};

fn blockers(findings: &[pgferry_aws::check::Finding]) -> Vec<String> {
    findings.iter().filter(|f| f.severity == Severity::Blocker).map(|f| f.what.clone()).collect()
}

#[tokio::test]
async fn a_good_instance_is_ready_and_its_replicas_are_listed() {
    let (cloud, config) = cloud().await;
    create_source(&config, "chk-good", Some("1"), 1).await;
    let facts = gather(&cloud, &pacing(), "chk-good").await.unwrap();
    let found = verdicts(&facts);
    assert!(ready(&found), "{found:?}");
    assert!(found.iter().any(|f| f.what == "read replicas: chk-good-r1"), "{found:?}");
    let paths = paths(&facts, 0, &Wanted::default());
    assert!(paths.blue_green.can_encrypt, "{:?}", paths.blue_green.checks);
    assert_eq!(facts.replicas.len(), 1, "the replica is described, for cascading replicas");
    assert_eq!(facts.proxies, Some(vec![]));
}

#[tokio::test]
async fn a_proxy_and_a_managed_password_read_from_rds_rule_blue_green_out() {
    let (cloud, config) = cloud().await;
    create_source(&config, "chk-bg-limits", Some("1"), 0).await;
    create_proxy(&config, "chk-proxy", "chk-bg-limits").await;
    manage_master_password(&config, "chk-bg-limits").await;
    let facts = gather(&cloud, &pacing(), "chk-bg-limits").await.unwrap();
    let paths = paths(&facts, 0, &Wanted::default());
    let out: Vec<&str> =
        paths.blue_green.checks.iter().filter(|c| c.outcome == Outcome::RulesOut).map(|c| c.limit).collect();
    assert_eq!(out, ["rds-proxy", "secrets-manager-password"]);
    assert!(!paths.blue_green.can_encrypt);
    assert_eq!(paths.recommendation.method, Method::Snapshot);
    assert!(
        paths.recommendation.reason.contains("RDS Proxy chk-proxy targets the instance"),
        "{}",
        paths.recommendation.reason
    );
}

#[tokio::test]
async fn logical_replication_not_set_is_a_blocker_with_the_steps() {
    let (cloud, config) = cloud().await;
    create_source(&config, "chk-nolr", None, 0).await;
    let found = verdicts(&gather(&cloud, &pacing(), "chk-nolr").await.unwrap());
    assert_eq!(blockers(&found), vec!["rds.logical_replication is not 1 in parameter group chk-nolr-params"]);
    assert!(found[0].fix.as_deref().unwrap().contains("short outage"));
}

#[tokio::test]
async fn a_parameter_group_pending_reboot_is_not_in_effect() {
    let (cloud, config) = cloud().await;
    create_source(&config, "chk-pending", Some("1"), 0).await;
    cloud.parameter_states("chk-pending", &["pending-reboot"]);
    let found = verdicts(&gather(&cloud, &pacing(), "chk-pending").await.unwrap());
    assert_eq!(
        blockers(&found),
        vec!["rds.logical_replication=1 is set in chk-pending-params but not in effect: the parameter group is pending-reboot"]
    );
    assert!(found[0]
        .fix
        .as_deref()
        .unwrap()
        .contains("aws rds reboot-db-instance --db-instance-identifier chk-pending"));
}

#[tokio::test]
async fn no_automated_backups_and_a_busy_instance_are_blockers() {
    let (cloud, config) = cloud().await;
    create_source(&config, "chk-nobackup", Some("1"), 0).await;
    aws_sdk_rds::Client::new(&config)
        .modify_db_instance()
        .db_instance_identifier("chk-nobackup")
        .backup_retention_period(0)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    cloud.instance_states("chk-nobackup", &["backing-up"]);
    let found = verdicts(&gather(&cloud, &pacing(), "chk-nobackup").await.unwrap());
    assert_eq!(
        blockers(&found),
        vec!["the instance is backing-up, not available", "automated backups are off (retention 0 days)"]
    );
}

#[tokio::test]
async fn a_missing_instance_is_named() {
    let (cloud, _) = cloud().await;
    let err = gather(&cloud, &pacing(), "chk-missing").await.unwrap_err();
    assert_eq!(err.kind, pgferry::ErrorKind::Precondition);
    assert!(err.message.contains("chk-missing"));
}
