use pgferry_aws::fence::{fence, lift, FencePlan};
use pgferry_aws::model::Record;
use pgferry_aws::switch::{switch, SwitchPlan};
use pgferry_aws::testing::{create_source, create_zone, security_group_id};

use crate::{cloud, instance, journal, pacing};

async fn groups(config: &aws_config::SdkConfig, id: &str) -> Vec<String> {
    let db = instance(config, id).await.unwrap();
    db.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id().map(str::to_owned)).collect()
}

/// The source gets a second group so that lifting must restore a list, in order.
async fn with_two_groups(config: &aws_config::SdkConfig, id: &str) -> Vec<String> {
    let source = create_source(config, id, Some("1"), 0).await;
    let wanted = vec![security_group_id(&format!("{id}-extra")), source.security_group];
    aws_sdk_rds::Client::new(config)
        .modify_db_instance()
        .db_instance_identifier(id)
        .set_vpc_security_group_ids(Some(wanted.clone()))
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_eq!(groups(config, id).await, wanted);
    wanted
}

#[tokio::test]
async fn fence_then_lift_restores_the_exact_list() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-lift").await;
    let fence_group = security_group_id("fen-lift-fence");
    let plan = FencePlan { source: "fen-lift".into(), group: fence_group.clone() };
    let dir = tempfile::tempdir().unwrap();
    cloud.instance_states("fen-lift", &["modifying", "modifying"]);
    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert_eq!(fenced.previous, before);
    assert_eq!(groups(&config, "fen-lift").await, vec![fence_group.clone()]);

    // A second fence is a no-op: the recorded list is unchanged.
    let again = fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert_eq!(again.previous, before);
    assert_eq!(cloud.calls("rds:ModifyDBInstance"), 1);

    let lifted = lift(&cloud, &pacing(), &mut journal(&dir), "fen-lift").await.unwrap();
    assert_eq!(lifted.now, before);
    assert_eq!(groups(&config, "fen-lift").await, before);
    assert!(lift(&cloud, &pacing(), &mut journal(&dir), "fen-lift").await.is_err(), "nothing left to lift");
}

#[tokio::test]
async fn a_fence_killed_after_its_call_is_lifted_from_the_journal() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-killed").await;
    let fence_group = security_group_id("fen-killed-fence");
    let plan = FencePlan { source: "fen-killed".into(), group: fence_group.clone() };
    let dir = tempfile::tempdir().unwrap();
    cloud.fail_after("rds:ModifyDBInstance");
    fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap_err();
    assert_eq!(groups(&config, "fen-killed").await, vec![fence_group.clone()], "the call took effect");
    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert_eq!(fenced.previous, before, "the list recorded before the call, not the fenced one");
    lift(&cloud, &pacing(), &mut journal(&dir), "fen-killed").await.unwrap();
    assert_eq!(groups(&config, "fen-killed").await, before);
}

#[tokio::test]
async fn switch_upserts_the_cname_with_its_ttl_and_waits_for_insync() {
    let (cloud, config) = cloud().await;
    create_source(&config, "sw-old", Some("1"), 0).await;
    create_source(&config, "sw-new", Some("1"), 0).await;
    let zone = create_zone(&config, "sw.example.com").await;
    let dir = tempfile::tempdir().unwrap();
    let to = |instance: &str, ttl| SwitchPlan {
        zone: zone.clone(),
        record: "db.sw.example.com".into(),
        instance: instance.into(),
        ttl,
    };

    let first = switch(&cloud, &pacing(), &mut journal(&dir), &to("sw-old", 300)).await.unwrap();
    assert_eq!(first.previous, None);

    cloud.change_states(&["PENDING", "PENDING"]);
    let report = switch(&cloud, &pacing(), &mut journal(&dir), &to("sw-new", 60)).await.unwrap();
    let new_endpoint = instance(&config, "sw-new").await.unwrap().endpoint().unwrap().address().unwrap().to_owned();
    assert_eq!(report.now, Record { value: new_endpoint.clone(), ttl: 60 });
    assert_eq!(report.previous.as_ref().map(|r| r.ttl), Some(300));
    assert!(report.warnings[0].contains("TTL was 300 s"), "{:?}", report.warnings);
    assert!(cloud.calls("route53:GetChange") >= 4, "polled until INSYNC");

    let route53 = aws_sdk_route53::Client::new(&config);
    let sets = route53.list_resource_record_sets().hosted_zone_id(&zone).send().await.unwrap();
    let cname = sets.resource_record_sets().iter().find(|r| r.name().starts_with("db.sw.example.com")).unwrap();
    assert_eq!((cname.ttl(), cname.resource_records()[0].value()), (Some(60), new_endpoint.as_str()));
}
