//! The Blue/Green and RDS Proxy calls of [`crate::sdk::Aws`], kept apart from
//! the instance and snapshot calls.

use aws_sdk_rds::types::{BlueGreenDeployment, Filter, TargetResourceConfiguration};
use aws_sdk_rds::Client;

use crate::control::{CloudError, CloudResult};
use crate::model::{BlueGreen, BlueGreenRequest, Member};
use crate::sdk::{absent, cloud, missing, rds_tags, tags, text};

fn blue_green(d: &BlueGreenDeployment) -> BlueGreen {
    BlueGreen {
        identifier: d.blue_green_deployment_identifier().unwrap_or_default().to_owned(),
        name: d.blue_green_deployment_name().unwrap_or_default().to_owned(),
        source: d.source().unwrap_or_default().to_owned(),
        target: text(d.target()),
        status: d.status().unwrap_or_default().to_owned(),
        status_details: text(d.status_details()),
        members: d
            .switchover_details()
            .iter()
            .map(|m| Member {
                source: m.source_member().unwrap_or_default().to_owned(),
                target: text(m.target_member()),
                status: text(m.status()),
            })
            .collect(),
        tags: tags(d.tag_list()),
    }
}

pub(crate) async fn proxies_targeting(rds: &Client, instance: &str) -> CloudResult<Vec<String>> {
    const LIST: &str = "rds:DescribeDBProxies";
    const TARGETS: &str = "rds:DescribeDBProxyTargets";
    let mut proxies = Vec::new();
    let mut marker = None;
    loop {
        let out = rds.describe_db_proxies().set_marker(marker).send().await.map_err(|e| cloud(LIST, e))?;
        proxies.extend(out.db_proxies().iter().filter_map(|p| p.db_proxy_name().map(str::to_owned)));
        match out.marker() {
            Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    let mut targeting = Vec::new();
    for proxy in proxies {
        let mut marker = None;
        loop {
            let out = rds
                .describe_db_proxy_targets()
                .db_proxy_name(&proxy)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| cloud(TARGETS, e))?;
            if out.targets().iter().any(|t| t.rds_resource_id() == Some(instance)) && !targeting.contains(&proxy) {
                targeting.push(proxy.clone());
            }
            match out.marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
    }
    Ok(targeting)
}

pub(crate) async fn describe(rds: &Client, name: &str) -> CloudResult<Option<BlueGreen>> {
    const ACTION: &str = "rds:DescribeBlueGreenDeployments";
    let filter = Filter::builder().name("blue-green-deployment-name").values(name).build();
    match rds.describe_blue_green_deployments().filters(filter).send().await {
        Ok(out) => Ok(out.blue_green_deployments().iter().map(blue_green).find(|d| d.name == name)),
        Err(err) => absent(cloud(ACTION, err), &["BlueGreenDeploymentNotFoundFault", "BlueGreenDeploymentNotFound"]),
    }
}

pub(crate) async fn create(rds: &Client, request: &BlueGreenRequest) -> CloudResult<BlueGreen> {
    const ACTION: &str = "rds:CreateBlueGreenDeployment";
    let targets = request
        .targets
        .iter()
        .map(|t| {
            TargetResourceConfiguration::builder()
                .source_arn(&t.source_arn)
                .target_kms_key_id(&t.kms_key_id)
                .build()
                .map_err(|e| CloudError::new(ACTION, None, e.to_string()))
        })
        .collect::<CloudResult<Vec<_>>>()?;
    let out = rds
        .create_blue_green_deployment()
        .blue_green_deployment_name(&request.name)
        .source(&request.source_arn)
        .set_target_resource_configurations(Some(targets))
        .set_tags(Some(rds_tags(&request.tags)))
        .send()
        .await
        .map_err(|e| cloud(ACTION, e))?;
    out.blue_green_deployment().map(blue_green).ok_or_else(|| missing(ACTION, "deployment"))
}

pub(crate) async fn switchover(rds: &Client, id: &str, timeout_seconds: i32) -> CloudResult<BlueGreen> {
    const ACTION: &str = "rds:SwitchoverBlueGreenDeployment";
    let out = rds
        .switchover_blue_green_deployment()
        .blue_green_deployment_identifier(id)
        .switchover_timeout(timeout_seconds)
        .send()
        .await
        .map_err(|e| cloud(ACTION, e))?;
    out.blue_green_deployment().map(blue_green).ok_or_else(|| missing(ACTION, "deployment"))
}

pub(crate) async fn delete(rds: &Client, id: &str) -> CloudResult<()> {
    const ACTION: &str = "rds:DeleteBlueGreenDeployment";
    rds.delete_blue_green_deployment()
        .blue_green_deployment_identifier(id)
        .delete_target(false)
        .send()
        .await
        .map_err(|e| cloud(ACTION, e))?;
    Ok(())
}
