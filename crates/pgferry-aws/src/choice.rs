//! Which path encrypts this instance: pgferry's (snapshot, encrypted copy,
//! restore, change capture, fenced cutover) or an RDS Blue/Green deployment.
//!
//! `CreateBlueGreenDeployment` takes one `TargetResourceConfiguration` per blue
//! instance (the primary and each read replica) whose `TargetKmsKeyId` encrypts
//! the green one, also when the blue one is unencrypted
//! (<https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_TargetResourceConfiguration.html>).
//! So Blue/Green can encrypt, within its limits
//! (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/blue-green-deployments-considerations.html>):
//! each is checked here against the instance ([`blue_green_checks`]). The two
//! paths cost different downtimes: a switchover AWS bounds at about a minute
//! ("typically under a minute"), against pgferry's cutover, measured by
//! `pgferry rehearse`; and Blue/Green offers no proof that green holds what
//! blue held and no way back once it switched. [`paths`] weighs them and
//! recommends one, with the reason. Everything here is a pure function of the
//! check's facts.

use serde::Serialize;

use crate::check::Facts;
use crate::model::Arn;

/// The tag CloudFormation puts on the resources of a stack.
pub const CLOUDFORMATION_TAG: &str = "aws:cloudformation:stack-name";

/// What AWS says a switchover typically stays under, in seconds.
pub const SWITCHOVER_BOUND_SECONDS: u32 = 60;

/// What the operator wants beyond the instance: where the encrypted instance
/// must live, and the downtime `pgferry rehearse` measured.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    pub region: Option<String>,
    pub account: Option<String>,
    pub rehearsed_downtime_seconds: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The instance is within this limit.
    Clear,
    /// This limit rules Blue/Green out for the instance.
    RulesOut,
    /// pgferry could not tell; the operator must look.
    Unknown,
}

/// One Blue/Green limit, checked against the instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitCheck {
    /// A stable name: `primary`, `rds-proxy`, `cascading-replicas`,
    /// `cross-region-replicas`, `secrets-manager-password`, `cloudformation`,
    /// `same-region`, `same-account`.
    pub limit: &'static str,
    pub outcome: Outcome,
    /// What was found, and for a limit that rules it out, why it does.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// pgferry's snapshot, encrypted copy, restore and change capture.
    Snapshot,
    /// An RDS Blue/Green deployment with a KMS key for each green instance.
    BlueGreen,
}

#[derive(Clone, Debug, Serialize)]
pub struct BlueGreenPath {
    /// No limit rules it out (some may be unknown: see `checks`).
    pub can_encrypt: bool,
    pub checks: Vec<LimitCheck>,
    pub switchover_bound_seconds: u32,
    pub costs: Vec<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PgferryPath {
    /// No blocker in the check's findings.
    pub ready: bool,
    pub blockers: usize,
    /// What `pgferry rehearse` measured, when the operator gave it.
    pub rehearsed_downtime_seconds: Option<f64>,
    pub costs: Vec<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Recommendation {
    pub method: Method,
    pub reason: String,
}

/// Both paths for one instance, and the one to take.
#[derive(Clone, Debug, Serialize)]
pub struct Paths {
    pub blue_green: BlueGreenPath,
    pub pgferry: PgferryPath,
    pub recommendation: Recommendation,
}

fn check(limit: &'static str, rules_out: bool, clear: &str, why: String) -> LimitCheck {
    LimitCheck {
        limit,
        outcome: if rules_out { Outcome::RulesOut } else { Outcome::Clear },
        detail: if rules_out { why } else { clear.to_owned() },
    }
}

/// Every Blue/Green limit, checked against the instance.
pub fn blue_green_checks(facts: &Facts, wanted: &Wanted) -> Vec<LimitCheck> {
    let i = &facts.instance;
    let arn = i.arn.as_deref().and_then(Arn::parse);
    let mut checks = vec![check(
        "primary",
        i.replica_of.is_some(),
        "the instance is a primary",
        format!(
            "the instance is a read replica of {}: a deployment is made from the primary, and covers its replicas",
            i.replica_of.as_deref().unwrap_or("another instance")
        ),
    )];
    checks.push(match &facts.proxies {
        None => LimitCheck {
            limit: "rds-proxy",
            outcome: Outcome::Unknown,
            detail: "the RDS Proxies could not be read (allow rds:DescribeDBProxies and rds:DescribeDBProxyTargets); Blue/Green does not support an instance behind RDS Proxy".into(),
        },
        Some(proxies) => check(
            "rds-proxy",
            !proxies.is_empty(),
            "no RDS Proxy targets the instance",
            format!("RDS Proxy {} targets the instance: Blue/Green does not support RDS Proxy", proxies.join(", ")),
        ),
    });
    let cascading: Vec<String> = facts
        .replicas
        .iter()
        .filter(|r| !r.read_replicas.is_empty())
        .map(|r| format!("{} (replicas: {})", r.identifier, r.read_replicas.join(", ")))
        .collect();
    checks.push(check(
        "cascading-replicas",
        !cascading.is_empty(),
        "no read replica has replicas of its own",
        format!("cascading read replicas: {}; Blue/Green does not support them", cascading.join("; ")),
    ));
    let home = arn.as_ref().map(|a| a.region);
    let abroad: Vec<&str> = i
        .read_replicas
        .iter()
        .filter(|r| Arn::parse(r).is_some_and(|a| Some(a.region) != home))
        .map(String::as_str)
        .collect();
    checks.push(check(
        "cross-region-replicas",
        !abroad.is_empty(),
        "every read replica is in the instance's region",
        format!("cross-region read replicas: {}; Blue/Green does not support them", abroad.join(", ")),
    ));
    checks.push(check(
        "secrets-manager-password",
        i.master_user_secret,
        "the master password is not managed by Secrets Manager",
        "the master password is managed by Secrets Manager (MasterUserSecret): Blue/Green does not support that".into(),
    ));
    let stack = i.tag(CLOUDFORMATION_TAG);
    checks.push(check(
        "cloudformation",
        stack.is_some(),
        "the instance is not managed by CloudFormation",
        format!(
            "the instance belongs to CloudFormation stack {} (tag {CLOUDFORMATION_TAG}): Blue/Green does not support CloudFormation-managed instances",
            stack.unwrap_or_default()
        ),
    ));
    for (limit, wanted, actual) in [
        ("same-region", &wanted.region, arn.as_ref().map(|a| a.region)),
        ("same-account", &wanted.account, arn.as_ref().map(|a| a.account)),
    ] {
        let what = if limit == "same-region" { "region" } else { "account" };
        checks.push(match (wanted, actual) {
            (Some(want), Some(have)) => check(
                limit,
                want != have,
                &format!("the encrypted instance stays in {what} {have}"),
                format!("the encrypted instance must be in {what} {want}, the instance is in {have}: blue and green share their {what}"),
            ),
            (Some(want), None) => LimitCheck {
                limit,
                outcome: Outcome::Unknown,
                detail: format!("the instance's {what} is unknown (no ARN); the encrypted instance must be in {want}"),
            },
            (None, _) => LimitCheck {
                limit,
                outcome: Outcome::Clear,
                detail: format!("the encrypted instance stays in the instance's {what} (blue and green share it)"),
            },
        });
    }
    checks
}

const BLUE_GREEN_COSTS: &[&str] = &[
    "switchover: writes stop for up to about a minute (AWS: typically under a minute; the switchover timeout bounds it, default 300 s)",
    "AWS copies and keeps green in sync; the endpoints keep their names after the switchover",
    "no proof that green holds what blue held",
    "no rollback after the switchover: blue stays, renamed, but takes no more writes",
];

const PGFERRY_COSTS: &[&str] = &[
    "cutover: writes stop for the fence, drain, sequences and exact check (pgferry rehearse measures it; seconds or less)",
    "validation proves both sides hold the same rows; the cutover rolls back by itself if anything fails before the switch",
    "needs rds.logical_replication=1 (a reboot) and change capture running until the cutover",
    "applications move by the CNAME switch (pgferry aws switch) or a new endpoint",
];

/// Both paths, and the recommendation with its reason.
pub fn paths(facts: &Facts, pgferry_blockers: usize, wanted: &Wanted) -> Paths {
    let checks = blue_green_checks(facts, wanted);
    let ruled_out: Vec<&str> =
        checks.iter().filter(|c| c.outcome == Outcome::RulesOut).map(|c| c.detail.as_str()).collect();
    let unknown: Vec<&str> =
        checks.iter().filter(|c| c.outcome == Outcome::Unknown).map(|c| c.detail.as_str()).collect();
    let can_encrypt = ruled_out.is_empty();
    let ready = pgferry_blockers == 0;
    let downtime = match wanted.rehearsed_downtime_seconds {
        Some(s) => format!("{s:.2} s as rehearsed"),
        None => "seconds or less (run pgferry rehearse to measure it)".to_owned(),
    };
    let verify = if unknown.is_empty() { String::new() } else { format!("; verify first: {}", unknown.join("; ")) };
    let recommendation = if !can_encrypt {
        Recommendation {
            method: Method::Snapshot,
            reason: format!(
                "Blue/Green cannot encrypt this instance: {}{}",
                ruled_out.join("; "),
                if ready { "" } else { "; fix pgferry's blockers above first" }
            ),
        }
    } else if !ready {
        Recommendation {
            method: Method::BlueGreen,
            reason: format!(
                "pgferry's path has {pgferry_blockers} blocker(s) above and a Blue/Green deployment can encrypt the instance as it is (pgferry aws encrypt --method blue-green); it costs up to about a minute of write downtime at the switchover, with no proof and no way back{verify}"
            ),
        }
    } else if wanted.rehearsed_downtime_seconds.is_some_and(|s| s >= f64::from(SWITCHOVER_BOUND_SECONDS)) {
        Recommendation {
            method: Method::BlueGreen,
            reason: format!(
                "both paths can encrypt it, and pgferry's cutover ({downtime}) saves no downtime over Blue/Green's switchover (up to about {SWITCHOVER_BOUND_SECONDS} s), which AWS manages{verify}"
            ),
        }
    } else {
        Recommendation {
            method: Method::Snapshot,
            reason: format!(
                "both paths can encrypt it; pgferry's cutover stops writes for {downtime} against up to about {SWITCHOVER_BOUND_SECONDS} s for Blue/Green's switchover, proves the target holds the source's rows and rolls back if anything fails before the switch; choose Blue/Green (--method blue-green) if a minute of write downtime is acceptable and AWS should run the copy"
            ),
        }
    };
    Paths {
        blue_green: BlueGreenPath {
            can_encrypt,
            checks,
            switchover_bound_seconds: SWITCHOVER_BOUND_SECONDS,
            costs: BLUE_GREEN_COSTS.to_vec(),
        },
        pgferry: PgferryPath {
            ready,
            blockers: pgferry_blockers,
            rehearsed_downtime_seconds: wanted.rehearsed_downtime_seconds,
            costs: PGFERRY_COSTS.to_vec(),
        },
        recommendation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests::good;
    use crate::model::{Instance, Tag};

    const ARN: &str = "arn:aws:rds:eu-west-1:123456789012:db:db";

    fn encryptable() -> Facts {
        let mut facts = good();
        facts.instance.arn = Some(ARN.into());
        facts.instance.read_replicas = vec!["db-r1".into()];
        facts.replicas =
            vec![Instance { identifier: "db-r1".into(), replica_of: Some("db".into()), ..Instance::default() }];
        facts
    }

    fn ruled_out(facts: &Facts, wanted: &Wanted) -> Vec<(&'static str, String)> {
        blue_green_checks(facts, wanted)
            .into_iter()
            .filter(|c| c.outcome == Outcome::RulesOut)
            .map(|c| (c.limit, c.detail))
            .collect()
    }

    #[test]
    fn an_instance_within_every_limit_can_be_encrypted_by_blue_green() {
        let wanted = Wanted {
            region: Some("eu-west-1".into()),
            account: Some("123456789012".into()),
            rehearsed_downtime_seconds: None,
        };
        let checks = blue_green_checks(&encryptable(), &wanted);
        assert_eq!(checks.len(), 8, "{checks:?}");
        assert!(checks.iter().all(|c| c.outcome == Outcome::Clear), "{checks:?}");
        let paths = paths(&encryptable(), 0, &wanted);
        assert!(paths.blue_green.can_encrypt);
        assert!(paths.pgferry.ready);
        assert_eq!(paths.recommendation.method, Method::Snapshot);
        assert!(
            paths.recommendation.reason.starts_with("both paths can encrypt it"),
            "{}",
            paths.recommendation.reason
        );
        assert!(paths.recommendation.reason.contains("--method blue-green"));
    }

    #[test]
    fn each_limit_rules_blue_green_out_with_its_reason() {
        type Break = fn(&mut Facts, &mut Wanted);
        let cases: [(&str, Break, &str); 8] = [
            ("primary", |f, _| f.instance.replica_of = Some("main-db".into()), "read replica of main-db"),
            (
                "rds-proxy",
                |f, _| f.proxies = Some(vec!["app-proxy".into()]),
                "RDS Proxy app-proxy targets the instance",
            ),
            (
                "cascading-replicas",
                |f, _| f.replicas[0].read_replicas = vec!["db-r1-r1".into()],
                "cascading read replicas: db-r1 (replicas: db-r1-r1)",
            ),
            (
                "cross-region-replicas",
                |f, _| f.instance.read_replicas.push("arn:aws:rds:us-east-1:123456789012:db:db-dr".into()),
                "cross-region read replicas: arn:aws:rds:us-east-1:123456789012:db:db-dr",
            ),
            ("secrets-manager-password", |f, _| f.instance.master_user_secret = true, "managed by Secrets Manager"),
            (
                "cloudformation",
                |f, _| f.instance.tags.push(Tag { key: CLOUDFORMATION_TAG.into(), value: "prod-stack".into() }),
                "CloudFormation stack prod-stack",
            ),
            (
                "same-region",
                |_, w| w.region = Some("us-west-2".into()),
                "must be in region us-west-2, the instance is in eu-west-1",
            ),
            ("same-account", |_, w| w.account = Some("999999999999".into()), "must be in account 999999999999"),
        ];
        for (limit, break_it, why) in cases {
            let mut facts = encryptable();
            let mut wanted = Wanted::default();
            break_it(&mut facts, &mut wanted);
            let out = ruled_out(&facts, &wanted);
            assert_eq!(out.len(), 1, "{limit}: {out:?}");
            assert_eq!(out[0].0, limit);
            assert!(out[0].1.contains(why), "{limit}: {}", out[0].1);
            let paths = paths(&facts, 0, &wanted);
            assert!(!paths.blue_green.can_encrypt, "{limit}");
            assert_eq!(paths.recommendation.method, Method::Snapshot, "{limit}");
            assert!(paths.recommendation.reason.starts_with("Blue/Green cannot encrypt this instance: "), "{limit}");
            assert!(paths.recommendation.reason.contains(why), "{limit}: {}", paths.recommendation.reason);
        }
    }

    #[test]
    fn unreadable_proxies_are_unknown_not_a_verdict() {
        let mut facts = encryptable();
        facts.proxies = None;
        let paths = paths(&facts, 2, &Wanted::default());
        let proxy = paths.blue_green.checks.iter().find(|c| c.limit == "rds-proxy").unwrap();
        assert_eq!(proxy.outcome, Outcome::Unknown);
        assert!(paths.blue_green.can_encrypt);
        assert_eq!(paths.recommendation.method, Method::BlueGreen, "pgferry is blocked");
        assert!(paths.recommendation.reason.contains("2 blocker(s)"));
        assert!(paths.recommendation.reason.contains("verify first: the RDS Proxies could not be read"));
    }

    #[test]
    fn the_rehearsed_downtime_weighs_in() {
        let quick = Wanted { rehearsed_downtime_seconds: Some(0.42), ..Wanted::default() };
        let chosen = paths(&encryptable(), 0, &quick).recommendation;
        assert_eq!(chosen.method, Method::Snapshot);
        assert!(chosen.reason.contains("0.42 s as rehearsed"), "{}", chosen.reason);
        let slow = Wanted { rehearsed_downtime_seconds: Some(75.0), ..Wanted::default() };
        assert_eq!(paths(&encryptable(), 0, &slow).recommendation.method, Method::BlueGreen);
    }

    #[test]
    fn nothing_says_blue_green_cannot_change_encryption() {
        let mut facts = encryptable();
        facts.instance.master_user_secret = true;
        let text = serde_json::to_string(&paths(&facts, 1, &Wanted::default())).unwrap();
        assert!(!text.contains("cannot change encryption"), "{text}");
        assert!(!text.contains("not an option"), "{text}");
    }
}
