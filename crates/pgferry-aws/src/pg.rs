//! The database side of `pgferry aws encrypt` ([`SeedSide`]): the seeded
//! migration of `pgferry::seed` over the source instance and the restored one.
//!
//! Step 1 is `seed prepare` (slot, then marker, before the snapshot); step 5
//! attaches the restored instance from the `redo done at` position the AWS side
//! read from its log, then runs change capture until it has caught up. From
//! there the operator keeps it running with `pgferry start --seeded` (the attach
//! is journaled and kept) and cuts over with `pgferry cutover`.

use pgferry::apply::{follow, BatchLimits, FollowOptions, Until};
use pgferry::seed::{attach, prepare, SeedPosition};
use pgferry::apply::FollowProgress;
use pgferry::{Error, ErrorKind, Result};
use pgferry_core::names::MigrationName;
use pgferry_pg::{ConnSpec, Host};
use pgferry_pgoutput::Lsn;

use crate::encrypt::{SeedMark, SeedSide};

pub struct PgSeed {
    pub source: ConnSpec,
    pub target: ConnSpec,
    pub migration: MigrationName,
    /// Change capture's progress while it catches up.
    pub progress: FollowProgress,
}

impl SeedSide for PgSeed {
    async fn prepare(&self) -> Result<SeedMark> {
        let report = prepare(&self.source, &self.migration, &|_| {}).await?;
        let consistent_point = report
            .consistent_lsn
            .parse()
            .map_err(|e| Error::new(ErrorKind::Server, format!("the slot's position: {e}")))?;
        Ok(SeedMark { slot: report.slot, consistent_point })
    }

    async fn start_from(&self, _mark: &SeedMark, redo: Lsn) -> Result<()> {
        attach(&self.source, &self.target, &self.migration, &SeedPosition::Lsn(redo)).await?;
        let options = FollowOptions { migration: self.migration.clone(), until: Until::CaughtUp, batch: BatchLimits::default(), shutdown: None };
        follow(&self.source, &self.target, &options, &self.progress).await?;
        Ok(())
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
        let source = ConnSpec::parse("postgresql://mover@old-db.abc123.eu-west-1.rds.amazonaws.com/app?sslmode=verify-full").unwrap();
        let target = derived_target(&source, "old-db", "new-db").unwrap();
        assert_eq!(target.host, Host::Tcp("new-db.abc123.eu-west-1.rds.amazonaws.com".into()));
        assert_eq!(target.dbname, source.dbname);
        let elsewhere = ConnSpec::parse("postgresql://mover@db.example.com/app").unwrap();
        assert_eq!(derived_target(&elsewhere, "old-db", "new-db").unwrap_err().kind, ErrorKind::Usage);
    }
}
