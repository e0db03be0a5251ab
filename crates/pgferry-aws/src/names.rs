//! The names of the AWS resources pgferry creates, derived from the migration's
//! name so that a rerun finds what an earlier run made and cleanup touches
//! nothing else.
//!
//! RDS identifiers allow letters, digits and single hyphens
//! (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.Constraints>),
//! so the migration name's `_` become `-`.

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::names::MigrationName;

/// Every AWS name of one migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsNames {
    stem: String,
}

impl AwsNames {
    pub fn new(migration: &MigrationName) -> Result<AwsNames> {
        let stem = format!("pgferry-{}", migration.as_str().replace('_', "-"));
        if stem.ends_with('-') {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("--name {}: an AWS migration name cannot end with _", migration.as_str()),
            ));
        }
        Ok(AwsNames { stem })
    }

    /// The manual snapshot of the source.
    pub fn snapshot(&self) -> String {
        format!("{}-snapshot", self.stem)
    }

    /// The encrypted copy of [`Self::snapshot`].
    pub fn encrypted_snapshot(&self) -> String {
        format!("{}-encrypted", self.stem)
    }

    /// The source's snapshot taken by `pgferry aws finish`.
    pub fn final_snapshot(&self) -> String {
        format!("{}-final", self.stem)
    }

    /// The target's `n`-th read replica (1-based), matching the source's `n`-th.
    pub fn replica(&self, n: usize) -> String {
        format!("{}-replica-{n}", self.stem)
    }

    /// The Blue/Green deployment of `pgferry aws encrypt --method blue-green`
    /// (1 to 60 letters, digits and hyphens).
    pub fn blue_green(&self) -> String {
        format!("{}-blue-green", self.stem)
    }

    /// The security group of `pgferry aws fence` (EC2 names allow 255 characters).
    pub fn fence_group(&self) -> String {
        format!("{}-fence", self.stem)
    }

    /// The intermediate snapshots `finish` removes.
    pub fn intermediate_snapshots(&self) -> [String; 2] {
        [self.snapshot(), self.encrypted_snapshot()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_rds_identifiers() {
        let names = AwsNames::new(&MigrationName::new("orders_2026").unwrap()).unwrap();
        assert_eq!(names.snapshot(), "pgferry-orders-2026-snapshot");
        assert_eq!(names.encrypted_snapshot(), "pgferry-orders-2026-encrypted");
        assert_eq!(names.replica(2), "pgferry-orders-2026-replica-2");
        assert_eq!(names.blue_green(), "pgferry-orders-2026-blue-green");
        assert_eq!(names.fence_group(), "pgferry-orders-2026-fence");
        let longest = AwsNames::new(&MigrationName::new("a".repeat(40)).unwrap()).unwrap();
        assert!(longest.replica(99).len() <= 63);
        assert!(longest.blue_green().len() <= 60);
        assert!(AwsNames::new(&MigrationName::new("orders_").unwrap()).is_err());
    }
}
