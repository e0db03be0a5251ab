//! pgferry-aws against a local moto server, through the real SDK client, with a
//! scripted layer for what moto does not model. One server serves every test of
//! this binary; each test keeps to its own resource names.

// The flows' futures hold the SDK's (about 20 kB); tests await them in place.
#![allow(clippy::large_futures)]

mod blue_green;
mod check;
mod cutover;
mod e2e;
mod encrypt;
mod finish;

use aws_config::SdkConfig;
use pgferry_aws::journal::Journal;
use pgferry_aws::retry::Pacing;
use pgferry_aws::sdk::Aws;
pub(crate) use pgferry_aws::testing::snapshot_exists;
use pgferry_aws::testing::{Moto, Scripted};
use pgferry_core::names::MigrationName;

/// A scripted control plane over moto, and the SDK configuration for fixtures.
pub(crate) async fn cloud() -> (Scripted<Aws>, SdkConfig) {
    let moto = Moto::shared();
    (Scripted::new(moto.aws().await), moto.config().await)
}

pub(crate) fn pacing() -> Pacing {
    Pacing::quick()
}

pub(crate) fn migration(name: &str) -> MigrationName {
    MigrationName::new(name).unwrap()
}

pub(crate) fn journal(dir: &tempfile::TempDir) -> Journal {
    Journal::open(dir.path()).unwrap()
}

/// The instance, `None` when moto does not know it. A call that fails otherwise
/// (moto slow to answer on a loaded machine) is asked again before the test
/// concludes anything from it.
pub(crate) async fn instance(config: &SdkConfig, id: &str) -> Option<aws_sdk_rds::types::DbInstance> {
    let rds = aws_sdk_rds::Client::new(config);
    let mut attempts = 0;
    loop {
        match rds.describe_db_instances().db_instance_identifier(id).send().await {
            Ok(out) => return out.db_instances().first().cloned(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => return None,
            Err(e) if attempts == 10 => panic!("describing {id} in moto: {e:?}"),
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    }
}
