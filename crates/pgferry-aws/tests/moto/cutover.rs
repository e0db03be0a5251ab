use pgferry_aws::fence::{fence, lift, FenceGroup, FencePlan, FENCED_TAG, MIGRATION_TAG};
use pgferry_aws::journal::Event;
use pgferry_aws::model::Record;
use pgferry_aws::switch::{switch, SwitchPlan};
use pgferry_aws::testing::{
    create_plain_security_group, create_source, create_zone, security_group_id, security_groups_named,
};

use crate::{cloud, instance, journal, migration, pacing};

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

/// A fence with the operator's own group.
fn given(name: &str, source: &str, group: &str) -> FencePlan {
    FencePlan {
        migration: migration(name),
        source: source.into(),
        group: FenceGroup::Given(group.into()),
        prepare_only: false,
    }
}

/// A fence with pgferry's own group, open to one range.
fn own(name: &str, source: &str) -> FencePlan {
    FencePlan {
        migration: migration(name),
        source: source.into(),
        group: FenceGroup::Own { allow: vec!["10.0.3.17/32".into()] },
        prepare_only: false,
    }
}

/// The events journaled for `step`, in order.
fn events(dir: &tempfile::TempDir, step: &str) -> Vec<Event> {
    journal(dir).entries().iter().filter(|e| e.step == step).map(|e| e.event).collect()
}

#[tokio::test]
async fn fence_creates_its_own_group_in_the_vpc_and_lift_restores_the_list_and_deletes_it() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-own").await;
    let vpc = instance(&config, "fen-own").await.unwrap().db_subnet_group().unwrap().vpc_id().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_own", "fen-own")).await.unwrap();

    let seen = security_groups_named(&config, "pgferry-fen-own-fence");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].id, fenced.fence_group);
    assert_eq!(seen[0].vpc, vpc, "in the instance's VPC");
    assert!(seen[0].tags.contains(&(MIGRATION_TAG.into(), "fen_own".into())), "{:?}", seen[0].tags);
    assert!(seen[0].tags.contains(&(FENCED_TAG.into(), "fen-own".into())), "{:?}", seen[0].tags);
    assert_eq!(seen[0].ingress, ["tcp 5433 10.0.3.17/32"], "only the allowed range, to the instance's port");
    assert!(fenced.own_group);
    assert_eq!(fenced.previous, before);
    assert_eq!(groups(&config, "fen-own").await, vec![fenced.fence_group.clone()]);
    assert_eq!(events(&dir, "fence-group"), [Event::Intent, Event::Call, Event::Outcome]);
    assert_eq!(events(&dir, "fence-rule"), [Event::Intent, Event::Call]);
    assert_eq!(events(&dir, "fence"), [Event::Intent, Event::Call, Event::Outcome]);

    // A rerun changes nothing and creates nothing.
    fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_own", "fen-own")).await.unwrap();
    assert_eq!(cloud.calls("ec2:CreateSecurityGroup"), 1);
    assert_eq!(security_groups_named(&config, "pgferry-fen-own-fence").len(), 1);

    // EC2 refuses the deletion while the instance still holds the group: pgferry waits.
    cloud.fail_before("ec2:DeleteSecurityGroup", "DependencyViolation");
    let lifted = lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_own"), "fen-own").await.unwrap();
    assert_eq!(lifted.now, before);
    assert_eq!(groups(&config, "fen-own").await, before, "exactly the list before, in order");
    assert_eq!(lifted.deleted.as_deref(), Some(fenced.fence_group.as_str()));
    assert_eq!(cloud.calls("ec2:DeleteSecurityGroup"), 2);
    assert!(security_groups_named(&config, "pgferry-fen-own-fence").is_empty(), "the group is deleted");
    assert_eq!(events(&dir, "delete-fence-group"), [Event::Intent, Event::Call, Event::Outcome]);
    let again = lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_own"), "fen-own").await.unwrap();
    assert_eq!(again.notes, ["lifted already: nothing was changed"], "nothing left to lift");
    assert_eq!(cloud.calls("ec2:DeleteSecurityGroup"), 2);
}

#[tokio::test]
async fn a_fence_killed_after_creating_its_group_finds_it_again_and_creates_no_second() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-rerun").await;
    let dir = tempfile::tempdir().unwrap();
    // The group is created, then the answer is lost, as if pgferry died before journaling it.
    cloud.fail_after("ec2:CreateSecurityGroup");
    fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_rerun", "fen-rerun")).await.unwrap_err();
    assert_eq!(security_groups_named(&config, "pgferry-fen-rerun-fence").len(), 1);
    assert_eq!(groups(&config, "fen-rerun").await, before, "not swapped yet");
    assert_eq!(events(&dir, "fence-group"), [Event::Intent]);

    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_rerun", "fen-rerun")).await.unwrap();
    let seen = security_groups_named(&config, "pgferry-fen-rerun-fence");
    assert_eq!(seen.len(), 1, "still exactly one group: {seen:?}");
    assert_eq!(seen[0].id, fenced.fence_group);
    assert_eq!(seen[0].ingress, ["tcp 5433 10.0.3.17/32"]);
    assert_eq!(cloud.calls("ec2:CreateSecurityGroup"), 1);
    assert_eq!(fenced.previous, before);
    let found = journal(&dir).last("fence-group", Event::Call).unwrap().detail.clone();
    assert_eq!(found["found"], true, "{found}");

    lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_rerun"), "fen-rerun").await.unwrap();
    assert_eq!(groups(&config, "fen-rerun").await, before);
    assert!(security_groups_named(&config, "pgferry-fen-rerun-fence").is_empty());
}

#[tokio::test]
async fn a_group_of_that_name_not_made_by_pgferry_is_refused_and_nothing_changes() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-foreign").await;
    let vpc = instance(&config, "fen-foreign").await.unwrap().db_subnet_group().unwrap().vpc_id().unwrap().to_owned();
    let theirs = create_plain_security_group(&config, "pgferry-fen-foreign-fence", &vpc);
    let dir = tempfile::tempdir().unwrap();
    let err = fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_foreign", "fen-foreign")).await.unwrap_err();
    assert_eq!(err.kind, pgferry::ErrorKind::Precondition);
    assert!(err.message.contains(&theirs) && err.message.contains("pgferry did not create it"), "{}", err.message);
    assert!(err.hint.as_deref().unwrap_or_default().contains("choose another --name"), "{:?}", err.hint);
    assert_eq!(groups(&config, "fen-foreign").await, before);
    let seen = security_groups_named(&config, "pgferry-fen-foreign-fence");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].ingress.is_empty(), "no rule added to the operator's group");
    assert!(journal(&dir).entries().is_empty(), "nothing journaled");
    assert_eq!(cloud.calls("ec2:CreateSecurityGroup") + cloud.calls("ec2:AuthorizeSecurityGroupIngress"), 0);
}

#[tokio::test]
async fn a_prepared_group_is_used_by_the_fence_and_the_source_is_untouched_until_then() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-prep").await;
    let dir = tempfile::tempdir().unwrap();
    let prepare = FencePlan { prepare_only: true, ..own("fen_prep", "fen-prep") };
    let prepared = fence(&cloud, &pacing(), &mut journal(&dir), &prepare).await.unwrap();
    assert_eq!(groups(&config, "fen-prep").await, before);
    assert_eq!(prepared.now, before);
    assert!(events(&dir, "fence").is_empty());
    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_prep", "fen-prep")).await.unwrap();
    assert_eq!(fenced.fence_group, prepared.fence_group);
    assert_eq!(groups(&config, "fen-prep").await, vec![prepared.fence_group.clone()]);
    assert_eq!(cloud.calls("ec2:CreateSecurityGroup"), 1);
    assert_eq!(cloud.calls("ec2:AuthorizeSecurityGroupIngress"), 1);
}

#[tokio::test]
async fn fence_then_lift_restores_the_exact_list_and_a_second_lift_changes_nothing() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-lift").await;
    let fence_group = security_group_id("fen-lift-fence");
    let plan = given("fen_lift", "fen-lift", &fence_group);
    let dir = tempfile::tempdir().unwrap();
    cloud.instance_states("fen-lift", &["modifying", "modifying"]);
    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert_eq!(fenced.previous, before);
    assert_eq!(groups(&config, "fen-lift").await, vec![fence_group.clone()]);

    // A second fence is a no-op: the recorded list is unchanged.
    let again = fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert_eq!(again.previous, before);
    assert_eq!(cloud.calls("rds:ModifyDBInstance"), 1);

    let lifted = lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_lift"), "fen-lift").await.unwrap();
    assert_eq!(lifted.now, before);
    assert_eq!(groups(&config, "fen-lift").await, before);
    // A second lift (another database's rollback in an instance's cutover) changes nothing.
    let calls = cloud.calls("rds:ModifyDBInstance");
    let again = lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_lift"), "fen-lift").await.unwrap();
    assert_eq!((again.now, again.notes), (before.clone(), vec!["lifted already: nothing was changed".to_string()]));
    assert_eq!(cloud.calls("rds:ModifyDBInstance"), calls);
    assert_eq!(groups(&config, "fen-lift").await, before);
}

#[tokio::test]
async fn a_fence_killed_after_its_call_is_lifted_from_the_journal() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-killed").await;
    let fence_group = security_group_id("fen-killed-fence");
    let plan = given("fen_killed", "fen-killed", &fence_group);
    let dir = tempfile::tempdir().unwrap();
    cloud.fail_after("rds:ModifyDBInstance");
    fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap_err();
    assert_eq!(groups(&config, "fen-killed").await, vec![fence_group.clone()], "the call took effect");
    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &plan).await.unwrap();
    assert_eq!(fenced.previous, before, "the list recorded before the call, not the fenced one");
    lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_killed"), "fen-killed").await.unwrap();
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

#[tokio::test]
async fn a_prepared_group_never_swapped_in_is_deleted_by_lift_and_the_source_is_untouched() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-unused").await;
    let dir = tempfile::tempdir().unwrap();
    let prepare = FencePlan { prepare_only: true, ..own("fen_unused", "fen-unused") };
    let prepared = fence(&cloud, &pacing(), &mut journal(&dir), &prepare).await.unwrap();
    assert_eq!(security_groups_named(&config, "pgferry-fen-unused-fence").len(), 1);

    // The cutover was abandoned before its fence: lift removes what pgferry made, and only that.
    let lifted = lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_unused"), "fen-unused").await.unwrap();
    assert_eq!(lifted.deleted.as_deref(), Some(prepared.fence_group.as_str()));
    assert!(security_groups_named(&config, "pgferry-fen-unused-fence").is_empty());
    assert_eq!(groups(&config, "fen-unused").await, before);
    assert_eq!(cloud.calls("rds:ModifyDBInstance"), 0);
    assert_eq!(events(&dir, "delete-fence-group"), [Event::Intent, Event::Call, Event::Outcome]);
    assert!(
        lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_unused"), "fen-unused").await.is_err(),
        "nothing left to lift"
    );
}

#[tokio::test]
async fn a_fence_killed_after_opening_its_rule_opens_no_second() {
    let (cloud, config) = cloud().await;
    let before = with_two_groups(&config, "fen-rule").await;
    let dir = tempfile::tempdir().unwrap();
    // The rule is added, then the answer is lost, as if pgferry died before journaling it.
    cloud.fail_after("ec2:AuthorizeSecurityGroupIngress");
    fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_rule", "fen-rule")).await.unwrap_err();
    assert_eq!(security_groups_named(&config, "pgferry-fen-rule-fence")[0].ingress, ["tcp 5433 10.0.3.17/32"]);
    assert_eq!(groups(&config, "fen-rule").await, before, "not swapped yet");

    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_rule", "fen-rule")).await.unwrap();
    assert_eq!(cloud.calls("ec2:AuthorizeSecurityGroupIngress"), 1, "the rule read back, not asked for again");
    assert_eq!(security_groups_named(&config, "pgferry-fen-rule-fence")[0].ingress, ["tcp 5433 10.0.3.17/32"]);
    assert_eq!(groups(&config, "fen-rule").await, vec![fenced.fence_group.clone()]);
    lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_rule"), "fen-rule").await.unwrap();
    assert_eq!(groups(&config, "fen-rule").await, before);
}

#[tokio::test]
async fn a_fence_or_lift_naming_another_instance_changes_nothing() {
    let (cloud, config) = cloud().await;
    let before_a = with_two_groups(&config, "fen-a").await;
    let before_b = with_two_groups(&config, "fen-b").await;
    let dir = tempfile::tempdir().unwrap();
    let fenced = fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_ab", "fen-a")).await.unwrap();
    let modified = cloud.calls("rds:ModifyDBInstance");

    // The wrong --source-instance, by a typo or a copied command: fen-b must keep its groups.
    let err = fence(&cloud, &pacing(), &mut journal(&dir), &own("fen_ab", "fen-b")).await.unwrap_err();
    assert_eq!(err.kind, pgferry::ErrorKind::Usage);
    assert_eq!(err.message, "this state directory's fence is of fen-a, not fen-b");
    let err = lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_ab"), "fen-b").await.unwrap_err();
    assert_eq!(err.kind, pgferry::ErrorKind::Usage);
    assert!(err.hint.unwrap().contains("--source-instance fen-a"));
    assert_eq!(groups(&config, "fen-b").await, before_b);
    assert_eq!(groups(&config, "fen-a").await, vec![fenced.fence_group.clone()], "fen-a stays fenced");
    assert_eq!(cloud.calls("rds:ModifyDBInstance"), modified);

    lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_ab"), "fen-a").await.unwrap();
    assert_eq!(groups(&config, "fen-a").await, before_a);

    // A prepared group, lifted with the wrong instance, is not deleted.
    let prepare = FencePlan { prepare_only: true, ..own("fen_ab", "fen-a") };
    let prepared = fence(&cloud, &pacing(), &mut journal(&dir), &prepare).await.unwrap();
    let err = lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_ab"), "fen-b").await.unwrap_err();
    assert!(err.message.contains("prepared to fence fen-a, not fen-b"), "{}", err.message);
    assert_eq!(security_groups_named(&config, "pgferry-fen-ab-fence")[0].id, prepared.fence_group);
    lift(&cloud, &pacing(), &mut journal(&dir), &migration("fen_ab"), "fen-a").await.unwrap();
    assert!(security_groups_named(&config, "pgferry-fen-ab-fence").is_empty());
}
