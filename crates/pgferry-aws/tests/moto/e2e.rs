//! The whole encrypt flow joined to real PostgreSQL: the AWS calls against moto
//! (with the log download scripted, which moto lacks), the database work
//! against two clusters, where a physical copy of the source taken right after
//! `seed prepare` (while an application keeps committing) plays the restored
//! snapshot, and its server log is what the RDS log download serves.

use std::cell::RefCell;

use pgferry::Result;
use pgferry_aws::encrypt::{encrypt, EncryptPlan, SeedMark, SeedSide};
use pgferry_aws::pg::PgSeed;
use pgferry_aws::sdk::Aws;
use pgferry_aws::testing::{create_key, create_source, Scripted};
use pgferry_pg::ConnSpec;
use pgferry_pgoutput::Lsn;
use pgferry_testkit::{Cluster, PgVersion, Writer};

use crate::{cloud, instance, journal, migration, pacing};

/// `PgSeed`, with the snapshot taken as soon as the slot is ready.
struct CopyAfterPrepare<'a> {
    source: &'a Cluster,
    cloud: &'a Scripted<Aws>,
    target_instance: String,
    copy: RefCell<Option<Cluster>>,
}

impl CopyAfterPrepare<'_> {
    fn seed(&self, target: &str) -> PgSeed {
        PgSeed {
            source: ConnSpec::parse(&self.source.url("app")).unwrap(),
            target: ConnSpec::parse(target).unwrap(),
            migration: migration("e2e"),
            events: pgferry::events::Events::silent(),
        }
    }
}

impl SeedSide for CopyAfterPrepare<'_> {
    async fn prepare(&self) -> Result<SeedMark> {
        let mark = self.seed(&self.source.url("app")).prepare().await?;
        let copy = self.source.physical_copy();
        let log = std::fs::read_to_string(copy.log_path()).unwrap();
        self.cloud.logs(&self.target_instance, &[("error/postgresql.log.2026-11-28-06", &log)], 1000);
        *self.copy.borrow_mut() = Some(copy);
        Ok(mark)
    }

    async fn start_from(&self, mark: &SeedMark, redo: Lsn) -> Result<()> {
        let target = self.copy.borrow().as_ref().expect("copied in prepare").url("app");
        self.seed(&target).start_from(mark, redo).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_seeds_a_physical_copy_from_the_log_and_replicates_with_nothing_lost() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 1000) g;",
    );
    let (cloud, config) = cloud().await;
    create_source(&config, "e2e-src", Some("1"), 0).await;
    create_key(&config, "alias/e2e").await;
    let plan = EncryptPlan {
        migration: migration("e2e"),
        source: "e2e-src".into(),
        target: "e2e-src-new".into(),
        kms_key: Some("alias/e2e".into()),
    };
    let writer = Writer::start(source.url("app"), |n| {
        format!(
            "UPDATE accounts SET n = n + 1 WHERE id = {}; INSERT INTO accounts VALUES ({}, {n});",
            n % 1000 + 1,
            10_000 + n
        )
    });
    let seed = CopyAfterPrepare {
        source: &source,
        cloud: &cloud,
        target_instance: plan.target.clone(),
        copy: RefCell::new(None),
    };
    let dir = tempfile::tempdir().unwrap();

    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    writer.stop();

    assert!(instance(&config, &plan.target).await.unwrap().storage_encrypted().unwrap_or(false));
    let copy = seed.copy.borrow_mut().take().unwrap();
    let log = std::fs::read_to_string(copy.log_path()).unwrap();
    assert!(log.contains(&format!("redo done at {}", report.redo_lsn)), "the position came from the copy's own log");
    // Everything the application committed, through the boundary, reaches the copy once.
    let catch_up = PgSeed {
        source: ConnSpec::parse(&source.url("app")).unwrap(),
        target: ConnSpec::parse(&copy.url("app")).unwrap(),
        migration: migration("e2e"),
        events: pgferry::events::Events::silent(),
    };
    let mark = SeedMark { slot: "pgferry_e2e".into(), consistent_point: Lsn(0) };
    catch_up.start_from(&mark, report.redo_lsn.parse().unwrap()).await.unwrap();
    assert_eq!(copy.fingerprints("app"), source.fingerprints("app"));
}
