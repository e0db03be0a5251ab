//! The DNS switch: the application's CNAME pointed at an instance.
//!
//! An UPSERT of the record with the given TTL, then a wait until Route53 reports
//! the change `INSYNC` on all its servers
//! (<https://docs.aws.amazon.com/Route53/latest/APIReference/API_GetChange.html>).
//! Resolvers may keep the old answer for the old TTL, so the TTL is lowered
//! ahead of time: the same command, run days before with the source as the
//! instance and a low `--ttl`.

use pgferry::{Error, ErrorKind, Result};
use serde::Serialize;
use serde_json::json;

use crate::control::ControlPlane;
use crate::journal::{Event, Journal};
use crate::model::Record;
use crate::retry::{call, Pacing};
use crate::wait;

#[derive(Clone, Debug)]
pub struct SwitchPlan {
    /// The hosted zone id.
    pub zone: String,
    /// The record's name, e.g. `db.example.com`.
    pub record: String,
    /// The instance whose endpoint the record should name.
    pub instance: String,
    pub ttl: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwitchReport {
    pub record: String,
    pub previous: Option<Record>,
    pub now: Record,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// UPSERTs the CNAME and waits for it to be in sync.
pub async fn switch<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    journal: &mut Journal,
    plan: &SwitchPlan,
) -> Result<SwitchReport> {
    let endpoint =
        call(pacing, || cloud.describe_instance(&plan.instance)).await?.and_then(|i| i.endpoint).ok_or_else(|| {
            Error::new(
                ErrorKind::Precondition,
                format!("{} has no endpoint (does it exist and is it available?)", plan.instance),
            )
        })?;
    let previous = call(pacing, || cloud.get_record(&plan.zone, &plan.record)).await?;
    let mut warnings = Vec::new();
    if let Some(old) = previous.as_ref().filter(|old| old.ttl > plan.ttl && old.value != endpoint) {
        warnings.push(format!(
            "the record's TTL was {} s: resolvers may answer {} for that long; lower the TTL ahead of time next time",
            old.ttl, old.value
        ));
    }
    let now = Record { value: endpoint, ttl: plan.ttl };
    journal.record(
        "switch",
        Event::Intent,
        &plan.record,
        json!({"zone": plan.zone, "previous": previous, "now": now}),
    )?;
    let change = call(pacing, || cloud.upsert_cname(&plan.zone, &plan.record, &now)).await?;
    journal.record("switch", Event::Call, &plan.record, json!({"change": change}))?;
    wait::change_insync(cloud, pacing, &change).await?;
    journal.record("switch", Event::Outcome, &plan.record, json!({"value": now.value}))?;
    Ok(SwitchReport { record: plan.record.clone(), previous, now, warnings })
}
