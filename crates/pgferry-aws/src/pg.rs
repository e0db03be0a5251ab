//! The database side of `pgferry aws encrypt` ([`SeedSide`]): the seeded
//! migration of `pgferry::seed` over the source instance and the restored one.
//!
//! Step 1 is `seed prepare` (slot, then marker, before the snapshot) in every
//! database of the instance, each its own migration under the one name, as
//! `pgferry seed prepare --all-databases` makes them; step 5 attaches each of the
//! restored instance's databases from the `redo done at` position the AWS side
//! read from its log, then runs its change capture until it has caught up. From
//! there the operator keeps them running with `pgferry start --seeded
//! --all-databases` (each attach is journaled and kept) and cuts over with
//! `pgferry cutover --all-databases`. `--source` and `--target` name the
//! instances; their database is only the one connected to first.
//!
//! For a Blue/Green deployment: [`PgGreen`] runs `pgferry check`'s source
//! checks on every database of green (what the applications will use after the
//! switchover), and [`PgProbe`] is the switchover's write probe.

use pgferry::apply::{follow, BatchLimits, FollowOptions, Until};
use pgferry::events::Events;
use pgferry::seed::{attach, prepare, SeedPosition};
use pgferry::{Error, ErrorKind, Result};
use pgferry_core::instance::{InstancePlan, Selection};
use pgferry_core::names::MigrationName;
use pgferry_pg::{ConnSpec, Host};
use pgferry_pgoutput::Lsn;

use std::cell::RefCell;
use std::time::Duration;

use crate::blue_green::GreenSide;
use crate::check::{database_verdicts, left_out, not_checked, nothing_to_follow, Finding};
use crate::encrypt::{in_database, SeedMark, SeedSide};
use crate::switchover::WriteProbe;

pub struct PgSeed {
    pub source: ConnSpec,
    pub target: ConnSpec,
    pub migration: MigrationName,
    /// Change capture's progress while it catches up.
    pub events: Events,
}

impl SeedSide for PgSeed {
    async fn databases(&self, selection: &Selection) -> Result<InstancePlan> {
        let plan = pgferry::instance::planned(&self.source, selection).await?;
        // Every database's slot before the snapshot: all of them must fit.
        pgferry::instance::refuse_without_room(&self.source, &self.migration, &plan.databases, false, 0).await?;
        Ok(plan)
    }

    async fn prepare(&self, database: &str) -> Result<SeedMark> {
        let report = prepare(&self.source.with_dbname(database), &self.migration, &Events::silent()).await?;
        let consistent_point = report
            .consistent_lsn
            .parse()
            .map_err(|e| Error::new(ErrorKind::Server, format!("the slot's position: {e}")))?;
        Ok(SeedMark { slot: report.slot, consistent_point })
    }

    async fn start_from(&self, database: &str, _mark: &SeedMark, redo: Lsn) -> Result<()> {
        let (source, target) = (self.source.with_dbname(database), self.target.with_dbname(database));
        attach(&source, &target, &self.migration, &SeedPosition::Lsn(redo)).await?;
        let options = FollowOptions {
            migration: self.migration.clone(),
            until: Until::CaughtUp,
            batch: BatchLimits::default(),
            shutdown: None,
            drain: false,
            lanes: 1,
        };
        follow(&source, &target, &options, &self.events).await?;
        Ok(())
    }

    async fn existing(&self) -> Result<Vec<String>> {
        let plan = pgferry::instance::planned(&self.source, &Selection::default()).await?;
        Ok(plan.databases.into_iter().chain(plan.left_out.into_iter().map(|(database, _)| database)).collect())
    }

    async fn restored(&self) -> Result<Vec<String>> {
        Ok(pgferry::instance::planned(&self.target, &Selection::default()).await?.databases)
    }
}

/// pgferry's database checks (those of `pgferry check` on a source) on every
/// database of the plan read from `instance`, each run on `checked`'s server;
/// each finding names its database, and a database the operator left out is a
/// warning saying that its later writes are not moved. A database that cannot
/// be checked stops them with its error, named: Blue/Green's switchover waits
/// for checks that ran ([`instance_report`] goes on past it instead).
pub async fn instance_findings(instance: &ConnSpec, checked: &ConnSpec, selection: &Selection) -> Result<Vec<Finding>> {
    findings_in_each(instance, checked, selection, |database, e| Err(in_database(database, e))).await
}

/// [`instance_findings`] for `aws check`: a database that cannot be checked
/// (the role may not connect to it, say) is a blocker naming it and why,
/// beside every other database's findings, since encrypting would fail in it.
pub async fn instance_report(instance: &ConnSpec, checked: &ConnSpec, selection: &Selection) -> Result<Vec<Finding>> {
    findings_in_each(instance, checked, selection, |database, e| Ok(not_checked(database, e))).await
}

async fn findings_in_each(
    instance: &ConnSpec,
    checked: &ConnSpec,
    selection: &Selection,
    unchecked: impl Fn(&str, Error) -> Result<Finding>,
) -> Result<Vec<Finding>> {
    let plan = pgferry::instance::planned(instance, selection).await?;
    let checks = pgferry_core::preflight::CheckPlan { full_copy: false, ..Default::default() };
    let mut findings = Vec::new();
    if plan.databases.is_empty() {
        findings.push(nothing_to_follow());
    }
    for database in &plan.databases {
        match pgferry::check::check_source(&checked.with_dbname(database), &checks).await {
            Ok(found) => findings.extend(database_verdicts(database, &found)),
            Err(e) => findings.push(unchecked(database, e)?),
        }
    }
    findings.extend(
        plan.left_out.iter().filter(|(_, why)| why.loses_writes()).map(|(database, why)| left_out(database, *why)),
    );
    Ok(findings)
}

/// pgferry's database checks on a green instance.
pub struct PgGreen {
    pub source: ConnSpec,
    pub source_instance: String,
    /// The green database when given (`--green`), else `source` at green's endpoint.
    pub green: Option<ConnSpec>,
    /// Which of the instance's databases are checked (default: every one).
    pub databases: Selection,
}

impl GreenSide for PgGreen {
    async fn check(&self, green_instance: &str) -> Result<Vec<Finding>> {
        let green = match &self.green {
            Some(green) => green.clone(),
            None => derived_target(&self.source, &self.source_instance, green_instance).map_err(|_| {
                Error::new(ErrorKind::Usage, "cannot tell green's address from --source (its host is not the instance's endpoint)")
                    .with_hint(format!(
                        "rerun with --green and the database URL of {green_instance}'s endpoint (aws rds describe-db-instances \
                         --db-instance-identifier {green_instance}); the run resumes at pgferry's checks on green"
                    ))
            })?,
        };
        // Green is a copy of blue: blue's databases are green's.
        instance_findings(&self.source, &green, &self.databases).await
    }
}

/// Commits a transaction that takes a transaction id on a writable primary:
/// the applications' write, without a table of pgferry's in their database.
/// It counts only where the session is not read-only and not in recovery, as
/// blue is during the switchover.
const PROBE: &str = "SELECT pg_catalog.txid_current()::text, pg_catalog.current_setting('transaction_read_only'), pg_catalog.pg_is_in_recovery()::text";

/// The switchover's write probe, through the applications' endpoint.
pub struct PgProbe {
    pub endpoint: ConnSpec,
    /// The longest one write may take before it counts as failed.
    pub timeout: Duration,
    client: RefCell<Option<tokio_postgres::Client>>,
}

impl PgProbe {
    pub fn new(endpoint: ConnSpec, timeout: Duration) -> PgProbe {
        PgProbe { endpoint, timeout, client: RefCell::new(None) }
    }

    async fn attempt(&self) -> Result<()> {
        // Taken out of the cell before any await: no borrow is held across one.
        let cached = self.client.borrow_mut().take();
        let client = match cached {
            Some(client) => client,
            None => pgferry_pg::connect_as_application(&self.endpoint).await.map_err(Error::from)?,
        };
        let rows = client.simple_query(PROBE).await.map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))?;
        let row = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((row.get(1).map(str::to_owned), row.get(2).map(str::to_owned)))
            }
            _ => None,
        });
        match row {
            Some((Some(read_only), Some(recovery))) if read_only == "off" && recovery == "false" => {
                *self.client.borrow_mut() = Some(client);
                Ok(())
            }
            _ => Err(Error::new(ErrorKind::Server, "the endpoint is read-only")),
        }
    }
}

impl WriteProbe for PgProbe {
    async fn write(&self) -> Result<()> {
        match tokio::time::timeout(self.timeout, self.attempt()).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(ErrorKind::Connection, format!("no answer within {:?}", self.timeout))),
        }
    }
}

/// The restored instance's database: the source's connection with the host
/// swapped for the new instance's endpoint. RDS endpoints are
/// `<instance>.<account and region part>`, the same part for both instances.
pub fn derived_target(source: &ConnSpec, source_instance: &str, target_instance: &str) -> Result<ConnSpec> {
    let cannot = || {
        Error::new(ErrorKind::Usage, "cannot tell the restored instance's address from --source")
            .with_hint("give --target with the new instance's endpoint (its database URL)")
    };
    let Host::Tcp(host) = &source.host else { return Err(cannot()) };
    let rest = host.strip_prefix(source_instance).and_then(|r| r.strip_prefix('.')).ok_or_else(cannot)?;
    let mut target = source.clone();
    target.host = Host::Tcp(format!("{target_instance}.{rest}"));
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_endpoint_follows_the_source_endpoint() {
        let source =
            ConnSpec::parse("postgresql://mover@old-db.abc123.eu-west-1.rds.amazonaws.com/app?sslmode=verify-full")
                .unwrap();
        let target = derived_target(&source, "old-db", "new-db").unwrap();
        assert_eq!(target.host, Host::Tcp("new-db.abc123.eu-west-1.rds.amazonaws.com".into()));
        assert_eq!(target.dbname, source.dbname);
        let elsewhere = ConnSpec::parse("postgresql://mover@db.example.com/app").unwrap();
        assert_eq!(derived_target(&elsewhere, "old-db", "new-db").unwrap_err().kind, ErrorKind::Usage);
    }

    #[tokio::test]
    async fn green_behind_a_cname_asks_for_green_not_target() {
        // --target is refused with --method blue-green: the hint must name --green.
        let side = PgGreen {
            source: ConnSpec::parse("postgresql://mover@db.example.com/app").unwrap(),
            source_instance: "old-db".into(),
            green: None,
            databases: Selection::default(),
        };
        let err = side.check("old-db-green-abc123").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        let hint = err.hint.unwrap();
        assert!(hint.contains("--green") && hint.contains("old-db-green-abc123"), "{hint}");
        assert!(!hint.contains("--target"), "{hint}");
    }
}
