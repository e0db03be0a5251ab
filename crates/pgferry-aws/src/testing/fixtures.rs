//! Resources the tests start from, created in moto with the SDK directly.

use std::io::{Read, Write};
use std::net::TcpStream;

use aws_config::SdkConfig;
use aws_sdk_rds::types::{ApplyMethod, Parameter, Tag};

use crate::xml::{self, Node};

/// A source instance with every setting pgferry copies set to a non-default value.
pub struct Source {
    pub id: String,
    pub parameter_group: String,
    pub security_group: String,
    pub vpc: String,
}

/// Creates `id` with a custom parameter group and option group (`rds.logical_replication` as given),
/// a subnet group of the default VPC, its own security group, and `replicas` read replicas.
pub async fn create_source(config: &SdkConfig, id: &str, logical_replication: Option<&str>, replicas: usize) -> Source {
    let rds = aws_sdk_rds::Client::new(config);
    let (vpc, subnet_ids) = default_subnets(config.endpoint_url().expect("moto's endpoint"));
    let subnet_group = format!("{id}-subnets");
    rds.create_db_subnet_group()
        .db_subnet_group_name(&subnet_group)
        .db_subnet_group_description("pgferry test")
        .set_subnet_ids(Some(subnet_ids))
        .send()
        .await
        .expect("create subnet group");
    // moto does not check that security groups exist: a made-up id per instance.
    let security_group = security_group_id(id);
    let parameter_group = format!("{id}-params");
    rds.create_db_parameter_group()
        .db_parameter_group_name(&parameter_group)
        .db_parameter_group_family("postgres16")
        .description("pgferry test")
        .send()
        .await
        .expect("create parameter group");
    if let Some(value) = logical_replication {
        rds.modify_db_parameter_group()
            .db_parameter_group_name(&parameter_group)
            .parameters(
                Parameter::builder()
                    .parameter_name("rds.logical_replication")
                    .parameter_value(value)
                    .apply_method(ApplyMethod::PendingReboot)
                    .build(),
            )
            .send()
            .await
            .expect("set rds.logical_replication");
    }
    // moto knows option groups up to PostgreSQL 13 only, and attaches one to a 16 instance.
    let option_group = format!("{id}-options");
    rds.create_option_group()
        .option_group_name(&option_group)
        .engine_name("postgres")
        .major_engine_version("13")
        .option_group_description("pgferry test")
        .send()
        .await
        .expect("create option group");
    rds.create_db_instance()
        .db_instance_identifier(id)
        .option_group_name(&option_group)
        .engine("postgres")
        .engine_version("16.3")
        .db_instance_class("db.r6g.large")
        .master_username("postgres")
        .master_user_password("not-a-secret")
        .storage_type("gp3")
        .allocated_storage(400)
        .max_allocated_storage(1000)
        .iops(12000)
        .storage_throughput(500)
        .db_subnet_group_name(&subnet_group)
        .vpc_security_group_ids(&security_group)
        .db_parameter_group_name(&parameter_group)
        .availability_zone("us-east-1b")
        .port(5433)
        .enable_iam_database_authentication(true)
        .deletion_protection(true)
        .copy_tags_to_snapshot(true)
        .tags(Tag::builder().key("team").value("data").build())
        .ca_certificate_identifier("rds-ca-rsa2048-g1")
        .backup_retention_period(7)
        .preferred_backup_window("03:00-03:30")
        .preferred_maintenance_window("sun:05:00-sun:05:30")
        .enable_cloudwatch_logs_exports("postgresql")
        .send()
        .await
        .expect("create the source instance");
    for n in 1..=replicas {
        rds.create_db_instance_read_replica()
            .db_instance_identifier(format!("{id}-r{n}"))
            .source_db_instance_identifier(id)
            .db_instance_class("db.r6g.large")
            .availability_zone("us-east-1c")
            .send()
            .await
            .expect("create a read replica");
    }
    Source { id: id.to_owned(), parameter_group, security_group, vpc }
}

/// Hands the master password of `id` to Secrets Manager (`ManageMasterUserPassword`).
pub async fn manage_master_password(config: &SdkConfig, id: &str) {
    aws_sdk_rds::Client::new(config)
        .modify_db_instance()
        .db_instance_identifier(id)
        .manage_master_user_password(true)
        .apply_immediately(true)
        .send()
        .await
        .expect("manage the master password");
}

/// An RDS Proxy named `name` with instance `id` as its target.
pub async fn create_proxy(config: &SdkConfig, name: &str, id: &str) {
    use aws_sdk_rds::types::{EngineFamily, UserAuthConfig};
    let rds = aws_sdk_rds::Client::new(config);
    let (_, subnets) = default_subnets(config.endpoint_url().expect("moto's endpoint"));
    rds.create_db_proxy()
        .db_proxy_name(name)
        .engine_family(EngineFamily::Postgresql)
        .auth(UserAuthConfig::builder().secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:x").build())
        .role_arn("arn:aws:iam::123456789012:role/proxy")
        .set_vpc_subnet_ids(Some(subnets))
        .send()
        .await
        .expect("create a proxy");
    rds.register_db_proxy_targets()
        .db_proxy_name(name)
        .db_instance_identifiers(id)
        .send()
        .await
        .expect("register the proxy's target");
}

/// Whether moto holds the DB snapshot `id`.
pub async fn snapshot_exists(config: &SdkConfig, id: &str) -> bool {
    let rds = aws_sdk_rds::Client::new(config);
    rds.describe_db_snapshots().db_snapshot_identifier(id).send().await.is_ok_and(|o| !o.db_snapshots().is_empty())
}

/// The statuses of the Blue/Green deployments moto holds with this name.
pub async fn blue_green_statuses(config: &SdkConfig, name: &str) -> Vec<String> {
    aws_sdk_rds::Client::new(config)
        .describe_blue_green_deployments()
        .send()
        .await
        .expect("list the Blue/Green deployments")
        .blue_green_deployments()
        .iter()
        .filter(|d| d.blue_green_deployment_name() == Some(name))
        .map(|d| d.status().unwrap_or_default().to_owned())
        .collect()
}

/// A Blue/Green deployment of instance `id` named `name` made outside pgferry (no
/// pgferry tag, moto's default green); its identifier.
pub async fn create_foreign_blue_green(config: &SdkConfig, name: &str, id: &str) -> String {
    let rds = aws_sdk_rds::Client::new(config);
    let source = rds.describe_db_instances().db_instance_identifier(id).send().await.expect("describe the source");
    let arn = source.db_instances()[0].db_instance_arn().expect("an ARN").to_owned();
    let out = rds
        .create_blue_green_deployment()
        .blue_green_deployment_name(name)
        .source(arn)
        .tags(Tag::builder().key("team").value("someone-else").build())
        .send()
        .await
        .expect("create a Blue/Green deployment");
    out.blue_green_deployment().and_then(|d| d.blue_green_deployment_identifier()).expect("an identifier").to_owned()
}

/// The security groups of instance `id`, in order.
pub async fn instance_security_groups(config: &SdkConfig, id: &str) -> Vec<String> {
    let out = aws_sdk_rds::Client::new(config)
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .expect("describe the instance");
    let db = out.db_instances().first().expect("the instance");
    db.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id().map(str::to_owned)).collect()
}

/// A made-up security group id for `name` (moto accepts any).
pub fn security_group_id(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("sg-{hash:016x}")
}

/// One call of moto's EC2 API, made directly (pgferry's own EC2 client is what
/// the tests check): moto routes by the credential scope and does not check
/// signatures. The answer's root element.
fn moto_ec2(endpoint: &str, params: &[(&str, &str)]) -> Node {
    let address = endpoint.trim_start_matches("http://");
    let mut body = String::from("Version=2016-11-15");
    for (name, value) in params {
        body.push_str(&format!("&{name}={value}"));
    }
    let mut stream = TcpStream::connect(address).expect("connect to moto");
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("ask moto");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read moto's answer");
    let xml = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    xml::parse(xml).unwrap_or_else(|e| panic!("moto's answer: {e}: {answer}"))
}

/// The default VPC's id and subnets.
fn default_subnets(endpoint: &str) -> (String, Vec<String>) {
    let answer = moto_ec2(endpoint, &[("Action", "DescribeSubnets")]);
    let subnets: Vec<(String, String)> = answer
        .items("subnetSet")
        .filter_map(|s| Some((s.text_of("vpcId")?.to_owned(), s.text_of("subnetId")?.to_owned())))
        .collect();
    let vpc = subnets.first().expect("moto's default subnets").0.clone();
    let ids = subnets.into_iter().filter(|(v, _)| *v == vpc).map(|(_, s)| s).collect();
    (vpc, ids)
}

/// A security group as moto holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSeen {
    pub id: String,
    pub vpc: String,
    pub tags: Vec<(String, String)>,
    /// `<protocol> <from port> <source>` for each inbound rule.
    pub ingress: Vec<String>,
}

/// Every security group moto holds with this name, in any VPC.
pub fn security_groups_named(config: &SdkConfig, name: &str) -> Vec<GroupSeen> {
    let endpoint = config.endpoint_url().expect("moto's endpoint");
    let answer = moto_ec2(
        endpoint,
        &[("Action", "DescribeSecurityGroups"), ("Filter.1.Name", "group-name"), ("Filter.1.Value.1", name)],
    );
    answer
        .items("securityGroupInfo")
        .map(|g| GroupSeen {
            id: g.text_of("groupId").unwrap_or_default().to_owned(),
            vpc: g.text_of("vpcId").unwrap_or_default().to_owned(),
            tags: g
                .items("tagSet")
                .map(|t| {
                    (t.text_of("key").unwrap_or_default().to_owned(), t.text_of("value").unwrap_or_default().to_owned())
                })
                .collect(),
            ingress: g
                .items("ipPermissions")
                .flat_map(|p| {
                    let rule = format!(
                        "{} {}",
                        p.text_of("ipProtocol").unwrap_or_default(),
                        p.text_of("fromPort").unwrap_or_default()
                    );
                    p.items("ipRanges").filter_map(move |r| Some(format!("{rule} {}", r.text_of("cidrIp")?)))
                })
                .collect(),
        })
        .collect()
}

/// A security group named `name` in `vpc`, without pgferry's tags (an operator's); returns its id.
pub fn create_plain_security_group(config: &SdkConfig, name: &str, vpc: &str) -> String {
    let endpoint = config.endpoint_url().expect("moto's endpoint");
    let answer = moto_ec2(
        endpoint,
        &[("Action", "CreateSecurityGroup"), ("GroupName", name), ("GroupDescription", "operator"), ("VpcId", vpc)],
    );
    answer.text_of("groupId").unwrap_or_else(|| panic!("no groupId: {answer:?}")).to_owned()
}

/// A customer-managed KMS key with an alias; returns its (key id, ARN).
pub async fn create_key(config: &SdkConfig, alias: &str) -> (String, String) {
    let kms = aws_sdk_kms::Client::new(config);
    let key = kms.create_key().description("pgferry test").send().await.expect("create key");
    let meta = key.key_metadata().expect("key metadata");
    kms.create_alias().alias_name(alias).target_key_id(meta.key_id()).send().await.expect("create alias");
    (meta.key_id().to_owned(), meta.arn().expect("key arn").to_owned())
}

/// A public hosted zone; returns its id.
pub async fn create_zone(config: &SdkConfig, name: &str) -> String {
    let route53 = aws_sdk_route53::Client::new(config);
    let zone = route53.create_hosted_zone().name(name).caller_reference(name).send().await.expect("create zone");
    zone.hosted_zone().expect("zone").id().trim_start_matches("/hostedzone/").to_owned()
}
