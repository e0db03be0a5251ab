//! The whole encrypt flow joined to real PostgreSQL: the AWS calls against moto
//! (with the log download scripted, which moto lacks), the database work
//! against two clusters, where a physical copy of the source taken right after
//! `seed prepare` in every database (while applications keep committing in two
//! of them) plays the restored snapshot, and its server log is what the RDS log
//! download serves. A restore brings every database over: each must be followed.

use std::cell::RefCell;

use pgferry::apply::{BatchLimits, FollowOptions, Until};
use pgferry::copy::CopyOptions;
use pgferry::events::Events;
use pgferry::seed::SeedPosition;
use pgferry::start::{start, StartOptions};
use pgferry::Result;
use pgferry_aws::encrypt::{encrypt, EncryptPlan, EncryptReport, SeedMark, SeedSide};
use pgferry_aws::pg::PgSeed;
use pgferry_aws::sdk::Aws;
use pgferry_aws::testing::{create_key, create_source, Scripted};
use pgferry_core::instance::{InstancePlan, Selection};
use pgferry_pg::ConnSpec;
use pgferry_pgoutput::Lsn;
use pgferry_testkit::{Cluster, PgVersion, Writer};

use crate::{cloud, instance, journal, migration, pacing};

/// `PgSeed` over the whole instance, with the snapshot taken as soon as the
/// last database's slot is ready.
struct CopyAfterPrepare<'a> {
    source: &'a Cluster,
    cloud: &'a Scripted<Aws>,
    target_instance: String,
    migration: String,
    planned: RefCell<Vec<String>>,
    copy: RefCell<Option<Cluster>>,
    /// Run on the source (database, SQL) after the last prepare, before the copy.
    before_copy: Option<(&'static str, &'static str)>,
    /// Run on the source (database, SQL), in order, after the copy: changes after the snapshot.
    after_copy: &'static [(&'static str, &'static str)],
}

impl<'a> CopyAfterPrepare<'a> {
    fn new(source: &'a Cluster, cloud: &'a Scripted<Aws>, plan: &EncryptPlan) -> Self {
        CopyAfterPrepare {
            source,
            cloud,
            target_instance: plan.target.clone(),
            migration: plan.migration.to_string(),
            planned: RefCell::default(),
            copy: RefCell::default(),
            before_copy: None,
            after_copy: &[],
        }
    }

    fn seed(&self, target: &str) -> PgSeed {
        pg_seed(self.source, target, &self.migration)
    }
}

/// The seed side between the source and `target` (the servers; their database
/// is only the first connected to).
fn pg_seed(source: &Cluster, target: &str, name: &str) -> PgSeed {
    PgSeed {
        source: ConnSpec::parse(&source.url("postgres")).unwrap(),
        target: ConnSpec::parse(target).unwrap(),
        migration: migration(name),
        events: Events::silent(),
    }
}

impl SeedSide for CopyAfterPrepare<'_> {
    async fn databases(&self, selection: &Selection) -> Result<InstancePlan> {
        let plan = self.seed(&self.source.url("postgres")).databases(selection).await?;
        *self.planned.borrow_mut() = plan.databases.clone();
        Ok(plan)
    }

    async fn prepare(&self, database: &str) -> Result<SeedMark> {
        let mark = self.seed(&self.source.url("postgres")).prepare(database).await?;
        if self.planned.borrow().last().map(String::as_str) == Some(database) {
            if let Some((database, sql)) = self.before_copy {
                self.source.psql(database, sql);
            }
            let copy = self.source.physical_copy();
            for (database, sql) in self.after_copy {
                self.source.psql(database, sql);
            }
            let log = std::fs::read_to_string(copy.log_path()).unwrap();
            self.cloud.logs(&self.target_instance, &[("error/postgresql.log.2026-11-28-06", &log)], 1000);
            *self.copy.borrow_mut() = Some(copy);
        }
        Ok(mark)
    }

    async fn start_from(&self, database: &str, mark: &SeedMark, redo: Lsn) -> Result<()> {
        let target = self.copy.borrow().as_ref().expect("copied in prepare").url("postgres");
        self.seed(&target).start_from(database, mark, redo).await
    }

    async fn existing(&self) -> Result<Vec<String>> {
        self.seed(&self.source.url("postgres")).existing().await
    }

    async fn restored(&self) -> Result<Vec<String>> {
        let target = self.copy.borrow().as_ref().expect("copied in prepare").url("postgres");
        self.seed(&target).restored().await
    }
}

/// A source instance of three databases beside `postgres`: `app` and `billing`
/// each with a table an application writes to, `reports` written to once.
fn source_instance() -> Cluster {
    let source = Cluster::start(PgVersion::V15);
    for database in ["app", "billing", "reports"] {
        source.create_database(database);
        source.psql(
            database,
            "CREATE TABLE accounts (id bigint PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 1000) g;",
        );
    }
    source
}

fn writer(source: &Cluster, database: &str) -> Writer {
    Writer::start(source.url(database), |n| {
        format!(
            "UPDATE accounts SET n = n + 1 WHERE id = {}; INSERT INTO accounts VALUES ({}, {n});",
            n % 1000 + 1,
            10_000 + n
        )
    })
}

async fn encrypted(name: &str, selection: Selection, source: &Cluster) -> (EncryptReport, Cluster) {
    let (cloud, config) = cloud().await;
    create_source(&config, name, Some("1"), 0).await;
    create_key(&config, &format!("alias/{name}")).await;
    let plan = EncryptPlan {
        migration: migration(&name.replace('-', "_")),
        source: name.into(),
        target: format!("{name}-new"),
        kms_key: Some(format!("alias/{name}")),
        databases: selection,
        connected_database: "postgres".into(),
    };
    let seed = CopyAfterPrepare::new(source, &cloud, &plan);
    let dir = tempfile::tempdir().unwrap();
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    assert!(instance(&config, &plan.target).await.unwrap().storage_encrypted().unwrap_or(false));
    let copy = seed.copy.borrow_mut().take().unwrap();
    let log = std::fs::read_to_string(copy.log_path()).unwrap();
    assert!(log.contains(&format!("redo done at {}", report.redo_lsn)), "the position came from the copy's own log");
    (report, copy)
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_seeds_every_database_of_a_physical_copy_from_the_log_with_nothing_lost() {
    let source = source_instance();
    let writers = [writer(&source, "app"), writer(&source, "billing")];
    let (report, copy) = encrypted("e2e-src", Selection::default(), &source).await;
    // encrypt itself attached every database and followed it past the snapshot.
    let past_redo =
        format!("SELECT applied_lsn > '{}' FROM pgferry.apply_progress WHERE migration = 'e2e_src'", report.redo_lsn);
    for (database, written) in [("app", true), ("billing", true), ("postgres", false), ("reports", false)] {
        let followed = copy.psql(database, &past_redo);
        assert!(!followed.trim().is_empty(), "{database} was not attached");
        if written {
            assert_eq!(followed.trim(), "t", "{database} was not followed past the snapshot");
        }
    }
    source.psql("reports", "UPDATE accounts SET n = 7 WHERE id = 1;");
    for w in writers {
        assert!(w.stop() > 0, "the application committed during the run");
    }

    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, ["app", "billing", "postgres", "reports"]);
    let slots: std::collections::BTreeSet<&str> = report.databases.iter().map(|d| d.slot.as_str()).collect();
    assert_eq!(slots.len(), 4, "one slot per database: {slots:?}");
    assert!(report.left_out.iter().all(|l| !l.loses_writes), "{:?}", report.left_out);
    // Everything the applications committed, through the boundary and after the
    // run, reaches the copy once, in every database: each continued as `pgferry
    // start --seeded --all-databases --seed-lsn <redo>` continues it.
    for db in &report.databases {
        let name = migration("e2e_src");
        let options = StartOptions {
            copy: CopyOptions {
                migration: name.clone(),
                jobs: 1,
                index_jobs: 1,
                split_larger_than: 0,
                replica_identity_full: false,
            },
            seed: Some(SeedPosition::Lsn(report.redo_lsn.parse().unwrap())),
            follow: FollowOptions {
                migration: name,
                until: Until::CaughtUp,
                batch: BatchLimits::default(),
                shutdown: None,
                drain: false,
                lanes: 1,
            },
            keyless_tables_are_insert_only: false,
            capture_ddl: false,
            roles: false,
        };
        let (from, to) = (source.url(&db.database), copy.url(&db.database));
        let started =
            start(&ConnSpec::parse(&from).unwrap(), &ConnSpec::parse(&to).unwrap(), &options, &Events::silent())
                .await
                .unwrap_or_else(|e| panic!("{}: {e:?}", db.database));
        assert!(started.follow.is_some(), "{}: change capture ran", db.database);
    }
    for database in ["app", "billing", "reports"] {
        assert_eq!(copy.fingerprints(database), source.fingerprints(database), "{database}");
    }
    assert_eq!(copy.psql("reports", "SELECT n FROM accounts WHERE id = 1").trim(), "7");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_excluded_is_not_prepared_and_the_report_says_its_writes_are_lost() {
    let source = source_instance();
    let excluded = Selection { only: vec![], excluded: vec!["reports".into()] };
    let (report, copy) = encrypted("e2e-excl", excluded, &source).await;

    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, ["app", "billing", "postgres"]);
    let reports = report.left_out.iter().find(|l| l.database == "reports").expect("reports is named as left out");
    assert!(reports.loses_writes);
    assert!(reports.why.contains("its writes after the snapshot will NOT reach the target"), "{}", reports.why);
    let slots = source.psql(
        "postgres",
        "SELECT string_agg(database, ',' ORDER BY database) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_e2e_excl%'",
    );
    assert_eq!(slots.trim(), "app,billing,postgres", "no slot in the excluded database");
    // The excluded database is restored with the others, then stays as the snapshot had it.
    source.psql("reports", "UPDATE accounts SET n = 7 WHERE id = 1;");
    assert_eq!(copy.psql("reports", "SELECT n FROM accounts WHERE id = 1").trim(), "0");
}

/// A database created on the source after the last database's seed was
/// prepared, before the snapshot: the restore brings it over, and no slot kept
/// its changes. encrypt stops before replicating anything, naming it (quoted as
/// the catalog has it); once the operator drops it on the target, the rerun
/// follows every other database, one with a name that needs quoting among them,
/// past the snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_created_between_the_prepare_and_the_snapshot_stops_the_run_naming_it() {
    const ODD: &str = "Ünï \"Q\" x";
    let source = source_instance();
    source.create_database(ODD);
    source.psql(ODD, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);");
    let (cloud, config) = cloud().await;
    create_source(&config, "e2e-late", Some("1"), 0).await;
    let plan = EncryptPlan {
        migration: migration("e2e_late"),
        source: "e2e-late".into(),
        target: "e2e-late-new".into(),
        kms_key: None,
        databases: Selection::default(),
        connected_database: "postgres".into(),
    };
    let mut seed = CopyAfterPrepare::new(&source, &cloud, &plan);
    seed.before_copy = Some(("postgres", "CREATE DATABASE \"Late \"\"db\"\"\""));
    seed.after_copy = &[(ODD, "INSERT INTO t VALUES (2)")];
    let dir = tempfile::tempdir().unwrap();

    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(err.kind, pgferry::ErrorKind::Precondition, "{err:?}");
    assert!(err.message.contains(r#"holds "Late \"db\"" that this migration does not follow"#), "{}", err.message);
    let copy = seed.copy.borrow_mut().take().unwrap();
    assert_eq!(copy.psql(ODD, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t").trim(), "1", "nothing replicated");

    copy.psql("postgres", "DROP DATABASE \"Late \"\"db\"\"\"");
    *seed.copy.borrow_mut() = Some(copy);
    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, ["app", "billing", "postgres", "reports", ODD]);
    let copy = seed.copy.borrow_mut().take().unwrap();
    assert_eq!(
        copy.psql(ODD, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t").trim(),
        "1,2",
        "followed past the snapshot"
    );
}

/// The slot of one database lost between the snapshot and the attach (dropped
/// by hand, or invalidated): the run stops in that database, naming it, before
/// attaching it, and says how to go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_lost_before_the_attach_stops_the_run_in_its_database() {
    let source = source_instance();
    let (cloud, config) = cloud().await;
    create_source(&config, "e2e-lost", Some("1"), 0).await;
    let plan = EncryptPlan {
        migration: migration("e2e_lost"),
        source: "e2e-lost".into(),
        target: "e2e-lost-new".into(),
        kms_key: None,
        databases: Selection::default(),
        connected_database: "postgres".into(),
    };
    let mut seed = CopyAfterPrepare::new(&source, &cloud, &plan);
    seed.after_copy = &[(
        "postgres",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_e2e_lost%' AND database = 'billing'",
    )];
    let dir = tempfile::tempdir().unwrap();
    for run in ["first", "rerun"] {
        let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
        assert_eq!(err.kind, pgferry::ErrorKind::Refused, "{run}: {err:?}");
        assert!(err.message.starts_with("database \"billing\": "), "{run}: {}", err.message);
        assert!(err.message.contains("slot is missing"), "{run}: {}", err.message);
    }
    let journal = journal(&dir);
    assert!(journal.outcome_of("seed", "app").is_some(), "the database before it was attached");
    assert!(journal.outcome_of("seed", "billing").is_none());
}

/// A migration journaled by the earlier single-database release, stopped after
/// its `seed prepare` in the database of `--source`'s URL: continued with
/// `--database` naming that database, the slot that release made is reused
/// (no second one) and the database is followed past the snapshot; the
/// instance's other databases are reported as losing their later writes.
#[tokio::test(flavor = "multi_thread")]
async fn a_journal_of_the_single_database_release_continues_in_its_database() {
    let source = source_instance();
    let (cloud, config) = cloud().await;
    create_source(&config, "e2e-legacy", Some("1"), 0).await;
    let plan = EncryptPlan {
        migration: migration("e2e_legacy"),
        source: "e2e-legacy".into(),
        target: "e2e-legacy-new".into(),
        kms_key: None,
        databases: Selection { only: vec!["app".into()], excluded: vec![] },
        connected_database: "app".into(),
    };
    // The earlier release: seed prepare in the URL's database, journaled under the instance.
    let mark = pg_seed(&source, &source.url("postgres"), "e2e_legacy").prepare("app").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let earlier = [
        r#"{"at":1,"step":"plan","event":"intent","resource":"e2e-legacy-new","detail":{"source":"e2e-legacy","target":"e2e-legacy-new","kms_key":"alias/aws/rds"}}"#.to_owned(),
        r#"{"at":1,"step":"seed-prepare","event":"intent","resource":"e2e-legacy"}"#.to_owned(),
        format!(
            r#"{{"at":1,"step":"seed-prepare","event":"outcome","resource":"e2e-legacy","detail":{{"slot":"{}","consistent_point":"{}"}}}}"#,
            mark.slot, mark.consistent_point
        ),
    ];
    std::fs::write(dir.path().join("aws-journal.jsonl"), earlier.join("\n") + "\n").unwrap();
    let mut seed = CopyAfterPrepare::new(&source, &cloud, &plan);
    seed.after_copy = &[("app", "UPDATE accounts SET n = 42 WHERE id = 1")];

    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    let followed: Vec<(&str, &str)> = report.databases.iter().map(|d| (d.database.as_str(), d.slot.as_str())).collect();
    assert_eq!(followed, [("app", mark.slot.as_str())]);
    assert_eq!(report.databases[0].consistent_point, mark.consistent_point.to_string(), "the same slot, unconsumed");
    let slots = source.psql(
        "postgres",
        "SELECT string_agg(database, ',') FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_e2e_legacy%'",
    );
    assert_eq!(slots.trim(), "app", "no second slot");
    let copy = seed.copy.borrow_mut().take().unwrap();
    assert_eq!(copy.psql("app", "SELECT n FROM accounts WHERE id = 1").trim(), "42", "followed past the snapshot");
    let losing: Vec<&str> = report.left_out.iter().filter(|l| l.loses_writes).map(|l| l.database.as_str()).collect();
    assert_eq!(losing, ["billing", "postgres", "reports"]);
}

/// A followed database dropped on the source after the snapshot (its slot
/// first, as PostgreSQL requires): the run stops before attaching anything,
/// saying to drop it on the target too; once dropped there, the rerun follows
/// the others and reports it as dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_dropped_on_the_source_after_the_snapshot_is_passed_over_once_dropped_on_the_target() {
    let source = source_instance();
    let (cloud, config) = cloud().await;
    create_source(&config, "e2e-drop", Some("1"), 0).await;
    let plan = EncryptPlan {
        migration: migration("e2e_drop"),
        source: "e2e-drop".into(),
        target: "e2e-drop-new".into(),
        kms_key: None,
        databases: Selection::default(),
        connected_database: "postgres".into(),
    };
    let mut seed = CopyAfterPrepare::new(&source, &cloud, &plan);
    seed.after_copy = &[
        (
            "postgres",
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_e2e_drop%' AND database = 'reports'",
        ),
        ("postgres", "DROP DATABASE reports"),
        ("app", "UPDATE accounts SET n = 5 WHERE id = 1"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let err = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap_err();
    assert_eq!(err.kind, pgferry::ErrorKind::Precondition, "{err:?}");
    assert!(err.message.contains("\"reports\" was dropped on the source after the snapshot"), "{}", err.message);
    seed.copy.borrow().as_ref().unwrap().psql("postgres", "DROP DATABASE reports");

    let report = encrypt(&cloud, &pacing(), &mut journal(&dir), &plan, &seed).await.unwrap();
    let followed: Vec<&str> = report.databases.iter().map(|d| d.database.as_str()).collect();
    assert_eq!(followed, ["app", "billing", "postgres"]);
    assert!(
        report.left_out.iter().any(|l| l.database == "reports" && l.why.contains("dropped")),
        "{:?}",
        report.left_out
    );
    let copy = seed.copy.borrow_mut().take().unwrap();
    assert_eq!(copy.psql("app", "SELECT n FROM accounts WHERE id = 1").trim(), "5", "the others are followed");
}
