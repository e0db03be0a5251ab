//! The security-group calls of [`crate::sdk::Aws`], over the signed EC2 client
//! ([`crate::ec2`]): the parameters of each call and the reading of its answer.

use crate::control::{CloudError, CloudResult};
use crate::ec2::Ec2;
use crate::model::{GroupRequest, Ingress, SecurityGroup, Tag};
use crate::sdk::absent;
use crate::xml::Node;

const DESCRIBE: &str = "ec2:DescribeSecurityGroups";

fn param(name: impl Into<String>, value: impl Into<String>) -> (String, String) {
    (name.into(), value.into())
}

fn number(node: &Node, name: &str) -> Option<i32> {
    node.text_of(name).and_then(|t| t.trim().parse().ok())
}

/// Every rule of one `ipPermissions` item, one per address range or group.
fn rules(permission: &Node) -> impl Iterator<Item = Ingress> + '_ {
    let protocol = permission.text_of("ipProtocol").unwrap_or_default().to_owned();
    let (from_port, to_port) = (number(permission, "fromPort"), number(permission, "toPort"));
    let sources = permission
        .items("ipRanges")
        .filter_map(|r| r.text_of("cidrIp"))
        .chain(permission.items("ipv6Ranges").filter_map(|r| r.text_of("cidrIpv6")))
        .chain(permission.items("groups").filter_map(|g| g.text_of("groupId")));
    sources.map(move |source| Ingress { protocol: protocol.clone(), from_port, to_port, source: source.to_owned() })
}

fn group(item: &Node) -> SecurityGroup {
    SecurityGroup {
        id: item.text_of("groupId").unwrap_or_default().to_owned(),
        name: item.text_of("groupName").unwrap_or_default().to_owned(),
        vpc_id: item.text_of("vpcId").unwrap_or_default().to_owned(),
        tags: item
            .items("tagSet")
            .map(|t| Tag {
                key: t.text_of("key").unwrap_or_default().to_owned(),
                value: t.text_of("value").unwrap_or_default().to_owned(),
            })
            .collect(),
        ingress: item.items("ipPermissions").flat_map(rules).collect(),
    }
}

async fn describe(ec2: &Ec2, params: &[(String, String)]) -> CloudResult<Option<SecurityGroup>> {
    match ec2.call(DESCRIBE, params).await {
        Ok(answer) => Ok(answer.items("securityGroupInfo").next().map(group)),
        Err(err) => absent(err, &["InvalidGroup.NotFound", "InvalidGroupId.NotFound"]),
    }
}

pub(crate) async fn find(ec2: &Ec2, vpc_id: &str, name: &str) -> CloudResult<Option<SecurityGroup>> {
    let params = [
        param("Filter.1.Name", "vpc-id"),
        param("Filter.1.Value.1", vpc_id),
        param("Filter.2.Name", "group-name"),
        param("Filter.2.Value.1", name),
    ];
    describe(ec2, &params).await
}

pub(crate) async fn describe_by_id(ec2: &Ec2, id: &str) -> CloudResult<Option<SecurityGroup>> {
    describe(ec2, &[param("GroupId.1", id)]).await
}

pub(crate) async fn create(ec2: &Ec2, request: &GroupRequest) -> CloudResult<String> {
    const ACTION: &str = "ec2:CreateSecurityGroup";
    let mut params = vec![
        param("GroupName", &request.name),
        param("GroupDescription", &request.description),
        param("VpcId", &request.vpc_id),
        param("TagSpecification.1.ResourceType", "security-group"),
    ];
    for (n, tag) in request.tags.iter().enumerate() {
        params.push(param(format!("TagSpecification.1.Tag.{}.Key", n + 1), &tag.key));
        params.push(param(format!("TagSpecification.1.Tag.{}.Value", n + 1), &tag.value));
    }
    let answer = ec2.call(ACTION, &params).await?;
    answer
        .text_of("groupId")
        .map(str::to_owned)
        .ok_or_else(|| CloudError::new(ACTION, None, "the answer has no groupId"))
}

/// One rule per call: AWS refuses a whole call when one of its rules exists already.
pub(crate) async fn allow(ec2: &Ec2, group_id: &str, rule: &Ingress) -> CloudResult<()> {
    const ACTION: &str = "ec2:AuthorizeSecurityGroupIngress";
    let mut params = vec![param("GroupId", group_id), param("IpPermissions.1.IpProtocol", &rule.protocol)];
    params.extend(rule.from_port.map(|p| param("IpPermissions.1.FromPort", p.to_string())));
    params.extend(rule.to_port.map(|p| param("IpPermissions.1.ToPort", p.to_string())));
    params.push(match &rule.source {
        s if s.starts_with("sg-") => param("IpPermissions.1.Groups.1.GroupId", s),
        s if s.contains(':') => param("IpPermissions.1.Ipv6Ranges.1.CidrIpv6", s),
        s => param("IpPermissions.1.IpRanges.1.CidrIp", s),
    });
    match ec2.call(ACTION, &params).await {
        // An earlier run's call took effect after all.
        Err(err) if err.code.as_deref() == Some("InvalidPermission.Duplicate") => Ok(()),
        other => other.map(drop),
    }
}

pub(crate) async fn delete(ec2: &Ec2, id: &str) -> CloudResult<()> {
    ec2.call("ec2:DeleteSecurityGroup", &[param("GroupId", id)]).await.map(drop)
}
