//! [`ControlPlane`] over the AWS SDK for Rust.
//!
//! The SDK's own retries are turned off: pgferry retries throttled calls itself
//! ([`crate::retry`]) so that every attempt is logged and the policy is the same
//! against AWS, moto and the scripted tests. Credentials and region come from the
//! usual chain (environment, profile, instance role); `AWS_ENDPOINT_URL` points
//! every client elsewhere, which is how the tests reach moto. The few EC2 calls
//! (the fence's security group) go through [`crate::ec2`], signed by hand.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_rds::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_rds::types::{CloudwatchLogsExportConfiguration, DbInstance, DbSnapshot};

use crate::control::{CloudError, CloudResult, ControlPlane};
use crate::ec2::Ec2;
use crate::model::{
    BlueGreen, BlueGreenRequest, GroupRequest, Ingress, Instance, Key, LogFile, LogPortion, Modification, Parameter,
    ParameterGroupMembership, Record, ReplicaRequest, RestoreRequest, SecurityGroup, SecurityGroupMembership, Snapshot,
    Tag,
};

/// The AWS clients pgferry uses.
pub struct Aws {
    rds: aws_sdk_rds::Client,
    kms: aws_sdk_kms::Client,
    route53: aws_sdk_route53::Client,
    ec2: Ec2,
}

impl Aws {
    /// Clients from the default credential and region chain, SDK retries off.
    pub async fn from_env() -> Aws {
        let config = aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled()).load().await;
        Aws::from_config(&config)
    }

    pub fn from_config(config: &SdkConfig) -> Aws {
        Aws {
            rds: aws_sdk_rds::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            route53: aws_sdk_route53::Client::new(config),
            ec2: Ec2::from_config(config),
        }
    }
}

/// Turns an SDK error into a [`CloudError`] that names the IAM action.
pub(crate) fn cloud<E, R>(action: &'static str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().map(str::to_owned);
    let message = err.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    CloudError { action, code, message }
}

/// `Ok(None)` for the not-found codes, the error otherwise.
pub(crate) fn absent<T>(err: CloudError, not_found: &[&str]) -> CloudResult<Option<T>> {
    match err.code.as_deref() {
        Some(code) if not_found.contains(&code) => Ok(None),
        _ => Err(err),
    }
}

pub(crate) fn text(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

fn instance(db: &DbInstance) -> Instance {
    let pending = db
        .pending_modified_values()
        .is_some_and(|p| *p != aws_sdk_rds::types::PendingModifiedValues::builder().build());
    Instance {
        identifier: db.db_instance_identifier().unwrap_or_default().to_owned(),
        arn: text(db.db_instance_arn()),
        status: db.db_instance_status().unwrap_or_default().to_owned(),
        engine: db.engine().unwrap_or_default().to_owned(),
        engine_version: db.engine_version().unwrap_or_default().to_owned(),
        endpoint: text(db.endpoint().and_then(|e| e.address())),
        port: db.endpoint().and_then(|e| e.port()).or(db.db_instance_port()),
        master_username: text(db.master_username()),
        master_user_secret: db.master_user_secret().is_some(),
        instance_class: db.db_instance_class().unwrap_or_default().to_owned(),
        storage_type: text(db.storage_type()),
        allocated_storage: db.allocated_storage().unwrap_or_default(),
        max_allocated_storage: db.max_allocated_storage(),
        iops: db.iops(),
        storage_throughput: db.storage_throughput(),
        subnet_group: text(db.db_subnet_group().and_then(|g| g.db_subnet_group_name())),
        vpc_id: text(db.db_subnet_group().and_then(|g| g.vpc_id())),
        security_groups: db
            .vpc_security_groups()
            .iter()
            .map(|g| SecurityGroupMembership {
                id: g.vpc_security_group_id().unwrap_or_default().to_owned(),
                status: g.status().unwrap_or_default().to_owned(),
            })
            .collect(),
        parameter_group: db.db_parameter_groups().first().map(|g| ParameterGroupMembership {
            name: g.db_parameter_group_name().unwrap_or_default().to_owned(),
            apply_status: g.parameter_apply_status().unwrap_or_default().to_owned(),
        }),
        option_group: text(db.option_group_memberships().first().and_then(|g| g.option_group_name())),
        multi_az: db.multi_az().unwrap_or_default(),
        availability_zone: text(db.availability_zone()),
        publicly_accessible: db.publicly_accessible().unwrap_or_default(),
        auto_minor_version_upgrade: db.auto_minor_version_upgrade().unwrap_or_default(),
        iam_auth: db.iam_database_authentication_enabled().unwrap_or_default(),
        deletion_protection: db.deletion_protection().unwrap_or_default(),
        copy_tags_to_snapshot: db.copy_tags_to_snapshot().unwrap_or_default(),
        tags: tags(db.tag_list()),
        ca_certificate: text(db.ca_certificate_identifier()),
        backup_retention_days: db.backup_retention_period().unwrap_or_default(),
        backup_window: text(db.preferred_backup_window()),
        maintenance_window: text(db.preferred_maintenance_window()),
        monitoring_interval: db.monitoring_interval(),
        monitoring_role_arn: text(db.monitoring_role_arn()),
        performance_insights: db.performance_insights_enabled().unwrap_or_default(),
        performance_insights_kms_key: text(db.performance_insights_kms_key_id()),
        performance_insights_retention_days: db.performance_insights_retention_period(),
        log_exports: db.enabled_cloudwatch_logs_exports().to_vec(),
        storage_encrypted: db.storage_encrypted().unwrap_or_default(),
        kms_key_id: text(db.kms_key_id()),
        read_replicas: db.read_replica_db_instance_identifiers().to_vec(),
        replica_of: text(db.read_replica_source_db_instance_identifier()),
        pending_modifications: pending,
    }
}

fn snapshot(s: &DbSnapshot) -> Snapshot {
    Snapshot {
        identifier: s.db_snapshot_identifier().unwrap_or_default().to_owned(),
        instance: s.db_instance_identifier().unwrap_or_default().to_owned(),
        status: s.status().unwrap_or_default().to_owned(),
        encrypted: s.encrypted().unwrap_or_default(),
        kms_key_id: text(s.kms_key_id()),
        percent_progress: s.percent_progress(),
    }
}

/// Tags as RDS lists them.
pub(crate) fn tags(list: &[aws_sdk_rds::types::Tag]) -> Vec<Tag> {
    list.iter()
        .map(|t| Tag { key: t.key().unwrap_or_default().to_owned(), value: t.value().unwrap_or_default().to_owned() })
        .collect()
}

pub(crate) fn rds_tags(tags: &[Tag]) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter().map(|t| aws_sdk_rds::types::Tag::builder().key(&t.key).value(&t.value).build()).collect()
}

pub(crate) fn missing(action: &'static str, what: &str) -> CloudError {
    CloudError::new(action, None, format!("the answer has no {what}"))
}

impl ControlPlane for Aws {
    async fn describe_instance(&self, id: &str) -> CloudResult<Option<Instance>> {
        const ACTION: &str = "rds:DescribeDBInstances";
        match self.rds.describe_db_instances().db_instance_identifier(id).send().await {
            Ok(out) => Ok(out.db_instances().first().map(instance)),
            Err(err) => absent(cloud(ACTION, err), &["DBInstanceNotFound", "DBInstanceNotFoundFault"]),
        }
    }

    async fn describe_parameter(&self, group: &str, name: &str) -> CloudResult<Option<Parameter>> {
        const ACTION: &str = "rds:DescribeDBParameters";
        let mut marker = None;
        loop {
            let out = self
                .rds
                .describe_db_parameters()
                .db_parameter_group_name(group)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| cloud(ACTION, e))?;
            if let Some(p) = out.parameters().iter().find(|p| p.parameter_name() == Some(name)) {
                return Ok(Some(Parameter {
                    value: text(p.parameter_value()),
                    apply_method: p.apply_method().map(|m| m.as_str().to_owned()),
                }));
            }
            match out.marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    async fn describe_snapshot(&self, id: &str) -> CloudResult<Option<Snapshot>> {
        const ACTION: &str = "rds:DescribeDBSnapshots";
        match self.rds.describe_db_snapshots().db_snapshot_identifier(id).send().await {
            Ok(out) => Ok(out.db_snapshots().first().map(snapshot)),
            Err(err) => absent(cloud(ACTION, err), &["DBSnapshotNotFound", "DBSnapshotNotFoundFault"]),
        }
    }

    async fn create_snapshot(&self, instance: &str, id: &str) -> CloudResult<Snapshot> {
        const ACTION: &str = "rds:CreateDBSnapshot";
        let out = self
            .rds
            .create_db_snapshot()
            .db_instance_identifier(instance)
            .db_snapshot_identifier(id)
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        out.db_snapshot().map(snapshot).ok_or_else(|| missing(ACTION, "snapshot"))
    }

    async fn copy_snapshot(&self, source: &str, copy: &str, kms_key_arn: &str) -> CloudResult<Snapshot> {
        const ACTION: &str = "rds:CopyDBSnapshot";
        let out = self
            .rds
            .copy_db_snapshot()
            .source_db_snapshot_identifier(source)
            .target_db_snapshot_identifier(copy)
            .kms_key_id(kms_key_arn)
            .copy_tags(true)
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        out.db_snapshot().map(snapshot).ok_or_else(|| missing(ACTION, "snapshot"))
    }

    async fn delete_snapshot(&self, id: &str) -> CloudResult<()> {
        const ACTION: &str = "rds:DeleteDBSnapshot";
        self.rds.delete_db_snapshot().db_snapshot_identifier(id).send().await.map_err(|e| cloud(ACTION, e))?;
        Ok(())
    }

    async fn restore_instance(&self, request: &RestoreRequest) -> CloudResult<Instance> {
        const ACTION: &str = "rds:RestoreDBInstanceFromDBSnapshot";
        let s = &request.settings;
        let (iops, throughput) = s.provisioned_performance();
        let out = self
            .rds
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(&request.target)
            .db_snapshot_identifier(&request.snapshot)
            .db_instance_class(&s.instance_class)
            .set_storage_type(s.storage_type.clone())
            .allocated_storage(s.allocated_storage)
            .set_iops(iops)
            .set_storage_throughput(throughput)
            .set_db_subnet_group_name(s.subnet_group.clone())
            .set_vpc_security_group_ids(Some(s.security_group_ids()))
            .set_db_parameter_group_name(s.parameter_group.as_ref().map(|g| g.name.clone()))
            .set_option_group_name(s.option_group.clone())
            .multi_az(s.multi_az)
            // AWS refuses an availability zone for a Multi-AZ instance: it picks the zones.
            .set_availability_zone(if s.multi_az { None } else { s.availability_zone.clone() })
            .set_port(s.port)
            .publicly_accessible(s.publicly_accessible)
            .auto_minor_version_upgrade(s.auto_minor_version_upgrade)
            .enable_iam_database_authentication(s.iam_auth)
            .deletion_protection(s.deletion_protection)
            .copy_tags_to_snapshot(s.copy_tags_to_snapshot)
            .set_tags(Some(rds_tags(&s.tags)))
            .set_enable_cloudwatch_logs_exports(Some(s.log_exports.clone()))
            .set_ca_certificate_identifier(s.ca_certificate.clone())
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        out.db_instance().map(instance).ok_or_else(|| missing(ACTION, "instance"))
    }

    async fn modify_instance(&self, id: &str, change: &Modification) -> CloudResult<Instance> {
        const ACTION: &str = "rds:ModifyDBInstance";
        let mut call = self
            .rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .apply_immediately(true)
            .set_backup_retention_period(change.backup_retention_days)
            .set_preferred_backup_window(change.backup_window.clone())
            .set_preferred_maintenance_window(change.maintenance_window.clone())
            .set_max_allocated_storage(change.max_allocated_storage)
            .set_vpc_security_group_ids(change.security_groups.clone())
            .set_deletion_protection(change.deletion_protection);
        if let Some((interval, role)) = &change.monitoring {
            call = call.monitoring_interval(*interval).set_monitoring_role_arn(role.clone());
        }
        if let Some((enabled, key, retention)) = &change.performance_insights {
            call = call
                .enable_performance_insights(*enabled)
                .set_performance_insights_kms_key_id(key.clone())
                .set_performance_insights_retention_period(*retention);
        }
        if let Some((enable, disable)) = &change.log_exports {
            call = call.cloudwatch_logs_export_configuration(
                CloudwatchLogsExportConfiguration::builder()
                    .set_enable_log_types(Some(enable.clone()))
                    .set_disable_log_types(Some(disable.clone()))
                    .build(),
            );
        }
        let out = call.send().await.map_err(|e| cloud(ACTION, e))?;
        out.db_instance().map(instance).ok_or_else(|| missing(ACTION, "instance"))
    }

    async fn reboot_instance(&self, id: &str) -> CloudResult<Instance> {
        const ACTION: &str = "rds:RebootDBInstance";
        let out =
            self.rds.reboot_db_instance().db_instance_identifier(id).send().await.map_err(|e| cloud(ACTION, e))?;
        out.db_instance().map(instance).ok_or_else(|| missing(ACTION, "instance"))
    }

    async fn create_read_replica(&self, request: &ReplicaRequest) -> CloudResult<Instance> {
        const ACTION: &str = "rds:CreateDBInstanceReadReplica";
        let s = &request.settings;
        let (iops, throughput) = s.provisioned_performance();
        let out = self
            .rds
            .create_db_instance_read_replica()
            .db_instance_identifier(&request.replica)
            .source_db_instance_identifier(&request.primary)
            .db_instance_class(&s.instance_class)
            .set_availability_zone(if s.multi_az { None } else { s.availability_zone.clone() })
            .multi_az(s.multi_az)
            .set_port(s.port)
            .set_storage_type(s.storage_type.clone())
            .set_iops(iops)
            .set_storage_throughput(throughput)
            .set_max_allocated_storage(s.max_allocated_storage)
            .set_vpc_security_group_ids(Some(s.security_group_ids()))
            .set_db_parameter_group_name(s.parameter_group.as_ref().map(|g| g.name.clone()))
            .set_option_group_name(s.option_group.clone())
            .publicly_accessible(s.publicly_accessible)
            .auto_minor_version_upgrade(s.auto_minor_version_upgrade)
            .enable_iam_database_authentication(s.iam_auth)
            .deletion_protection(s.deletion_protection)
            .copy_tags_to_snapshot(s.copy_tags_to_snapshot)
            .set_tags(Some(rds_tags(&s.tags)))
            .set_enable_cloudwatch_logs_exports(Some(s.log_exports.clone()))
            .set_ca_certificate_identifier(s.ca_certificate.clone())
            .set_monitoring_interval(s.monitoring_interval)
            .set_monitoring_role_arn(s.monitoring_role_arn.clone())
            .enable_performance_insights(s.performance_insights)
            .set_performance_insights_kms_key_id(s.performance_insights_kms_key.clone())
            .set_performance_insights_retention_period(s.performance_insights_retention_days)
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        out.db_instance().map(instance).ok_or_else(|| missing(ACTION, "instance"))
    }

    async fn delete_instance(&self, id: &str) -> CloudResult<()> {
        const ACTION: &str = "rds:DeleteDBInstance";
        self.rds
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        Ok(())
    }

    async fn list_log_files(&self, instance: &str) -> CloudResult<Vec<LogFile>> {
        const ACTION: &str = "rds:DescribeDBLogFiles";
        let mut files = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .rds
                .describe_db_log_files()
                .db_instance_identifier(instance)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| cloud(ACTION, e))?;
            files.extend(out.describe_db_log_files().iter().map(|f| LogFile {
                name: f.log_file_name().unwrap_or_default().to_owned(),
                last_written: f.last_written().unwrap_or_default(),
                size: f.size().unwrap_or_default(),
            }));
            match out.marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => return Ok(files),
            }
        }
    }

    async fn download_log_portion(&self, instance: &str, file: &str, marker: &str) -> CloudResult<LogPortion> {
        const ACTION: &str = "rds:DownloadDBLogFilePortion";
        let out = self
            .rds
            .download_db_log_file_portion()
            .db_instance_identifier(instance)
            .log_file_name(file)
            .marker(marker)
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        Ok(LogPortion {
            data: out.log_file_data().unwrap_or_default().to_owned(),
            marker: text(out.marker()),
            pending: out.additional_data_pending().unwrap_or_default(),
        })
    }

    async fn describe_key(&self, key: &str) -> CloudResult<Key> {
        const ACTION: &str = "kms:DescribeKey";
        let out = self.kms.describe_key().key_id(key).send().await.map_err(|e| cloud(ACTION, e))?;
        let meta = out.key_metadata().ok_or_else(|| missing(ACTION, "key metadata"))?;
        Ok(Key { arn: meta.arn().unwrap_or_default().to_owned(), enabled: meta.enabled() })
    }

    async fn get_record(&self, zone: &str, name: &str) -> CloudResult<Option<Record>> {
        use aws_sdk_route53::types::RrType;
        const ACTION: &str = "route53:ListResourceRecordSets";
        let out = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(name)
            .start_record_type(RrType::Cname)
            .max_items(1)
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        let wanted = name.trim_end_matches('.');
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|r| r.name().trim_end_matches('.') == wanted && *r.r#type() == RrType::Cname)
            .and_then(|r| {
                let value = r.resource_records().first()?.value().to_owned();
                Some(Record { value, ttl: r.ttl().unwrap_or_default() })
            }))
    }

    async fn upsert_cname(&self, zone: &str, name: &str, record: &Record) -> CloudResult<String> {
        use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
        const ACTION: &str = "route53:ChangeResourceRecordSets";
        let invalid = |e: aws_sdk_route53::error::BuildError| CloudError::new(ACTION, None, e.to_string());
        let set = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::Cname)
            .ttl(record.ttl)
            .resource_records(ResourceRecord::builder().value(&record.value).build().map_err(invalid)?)
            .build()
            .map_err(invalid)?;
        let change =
            Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().map_err(invalid)?;
        let batch = ChangeBatch::builder().comment("pgferry aws switch").changes(change).build().map_err(invalid)?;
        let out = self
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| cloud(ACTION, e))?;
        out.change_info().map(|c| c.id().to_owned()).ok_or_else(|| missing(ACTION, "change info"))
    }

    async fn change_status(&self, change: &str) -> CloudResult<String> {
        const ACTION: &str = "route53:GetChange";
        let out = self.route53.get_change().id(change).send().await.map_err(|e| cloud(ACTION, e))?;
        out.change_info().map(|c| c.status().as_str().to_owned()).ok_or_else(|| missing(ACTION, "change info"))
    }

    async fn proxies_targeting(&self, instance: &str) -> CloudResult<Vec<String>> {
        crate::sdk_blue_green::proxies_targeting(&self.rds, instance).await
    }

    async fn describe_blue_green(&self, name: &str) -> CloudResult<Option<BlueGreen>> {
        crate::sdk_blue_green::describe(&self.rds, name).await
    }

    async fn create_blue_green(&self, request: &BlueGreenRequest) -> CloudResult<BlueGreen> {
        crate::sdk_blue_green::create(&self.rds, request).await
    }

    async fn switchover_blue_green(&self, id: &str, timeout_seconds: i32) -> CloudResult<BlueGreen> {
        crate::sdk_blue_green::switchover(&self.rds, id, timeout_seconds).await
    }

    async fn delete_blue_green(&self, id: &str) -> CloudResult<()> {
        crate::sdk_blue_green::delete(&self.rds, id).await
    }

    async fn find_security_group(&self, vpc_id: &str, name: &str) -> CloudResult<Option<SecurityGroup>> {
        crate::sdk_ec2::find(&self.ec2, vpc_id, name).await
    }

    async fn describe_security_group(&self, id: &str) -> CloudResult<Option<SecurityGroup>> {
        crate::sdk_ec2::describe_by_id(&self.ec2, id).await
    }

    async fn create_security_group(&self, request: &GroupRequest) -> CloudResult<String> {
        crate::sdk_ec2::create(&self.ec2, request).await
    }

    async fn allow_ingress(&self, group_id: &str, rule: &Ingress) -> CloudResult<()> {
        crate::sdk_ec2::allow(&self.ec2, group_id, rule).await
    }

    async fn delete_security_group(&self, id: &str) -> CloudResult<()> {
        crate::sdk_ec2::delete(&self.ec2, id).await
    }
}
