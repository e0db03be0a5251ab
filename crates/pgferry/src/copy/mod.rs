//! `pgferry copy`: the first phase of a migration. It moves the schema and every
//! row from the source to an empty target under one consistent snapshot, the one
//! exported by the migration's replication slot, so change capture can start
//! exactly where the copy ends.
//!
//! Before it creates anything (the journal, publications, the slot, its work
//! directory's files) it refuses, with nothing changed: a source that is its own
//! target, the preflight's blocking problems (not journaled yet), an unfit
//! `pg_dump`/`pg_restore`.
//!
//! Phases (journaled in `pgferry.migration`, see [`MigrationPhase`]):
//! 1. `created`: publications (partitioned tables through their root) and the
//!    slot are made on the source; the copy reads under the slot's snapshot;
//! 2. `schema`: the pre-data part of a `pg_dump` of the snapshot is restored, and
//!    the large objects (metadata and contents) of the same snapshot;
//! 3. `data`: tables are piped with binary COPY by `--jobs` workers, largest first,
//!    big tables split into page ranges; each piece commits with its journal row,
//!    unless its table was truncated or rewritten after the snapshot: such a
//!    table is copied again under a later snapshot (see [`rewrites`]);
//!    meanwhile `--index-jobs` builders index each table as soon as its rows are in
//!    (see [`indexes`]);
//! 4. `post_data`: primary keys and unique constraints are attached to their
//!    indexes, the rest of post-data (triggers, rules, policies, ...) is restored
//!    by `pg_restore`, and the database's own owner, settings and privileges,
//!    which `pg_dump --schema-only` leaves out, are carried
//!    (`crate::parity::carry_database`); foreign keys are added NOT VALID, then validated without
//!    blocking writes (see [`foreign_keys`]); sequences are set; materialized
//!    views are refreshed in dependency order (see
//!    [`crate::materialized_views`]); statistics are written in parallel:
//!    carried from the source where the target is 18 or later, else gathered
//!    by ANALYZE (see [`statistics`]);
//! 5. `copied`.
//!
//! A run killed anywhere and rerun continues: before `data` it starts over (nothing
//! was copied yet); during `data` it keeps every table whose pieces all committed,
//! (a partition only with its whole hierarchy, which change capture names by
//! its root), and copies the others again, emptied first, under a fresh snapshot whose
//! position is journaled with those pieces (change capture skips, per table, what
//! the copy already holds, as PostgreSQL's table synchronization does).

mod data;
mod foreign_keys;
mod indexes;
pub(crate) mod journal;
mod lock_wait;
mod repair;
mod replica_identity;
mod rewrites;
mod schema;
mod source;
mod statistics;
mod workdir;

pub(crate) use data::recopy;
use data::{copy_in, copy_out_whole};
pub use repair::{repair_tables, Repaired};
pub(crate) use replica_identity::keyless_with_full_identity as keyless_tables_with_full_identity;
pub(crate) use replica_identity::restore as restore_replica_identity;
pub(crate) use source::{
    drop_publications, ensure_publications, ensure_slot_is_ours, list_tables, partition_roots, sync_sequences,
    Publishable,
};
pub use statistics::{AnalyzedTable, StatisticsReport};

use std::collections::HashSet;
use std::time::Instant;

use pgferry_core::copy_plan::{plan_copy, CopyTable};
use pgferry_core::names::{MigrationName, SnapshotSlot};
use pgferry_core::phase::MigrationPhase;
use pgferry_core::preflight::{tool_problems, CheckPlan};
use pgferry_core::sql::{QualifiedName, Sql};
use pgferry_pg::replication::create_slot_with_snapshot;
use pgferry_pg::tools::ClientPair;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::check;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events, Phase};
use crate::failpoint;
use data::Snapshot;
use indexes::IndexQueue;
use rewrites::Rewrites;
use schema::{Restore, Section};
use statistics::Statistics;
use workdir::WorkDir;

/// How many later snapshots a table rewritten again and again before a worker
/// reads it gets (see [`rewrites`]).
const RECOPY_ATTEMPTS: usize = 5;

/// Which of the tables not yet copied a data phase copies: partitions always
/// with their whole hierarchy (change capture names their rows by the root,
/// so they share one snapshot position).
#[derive(Clone, Copy)]
enum Selection<'s> {
    Except(&'s HashSet<QualifiedName>),
    Only(&'s HashSet<QualifiedName>),
}

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    pub migration: MigrationName,
    pub jobs: usize,
    pub index_jobs: usize,
    /// Tables larger than this many bytes are split; 0 never splits.
    pub split_larger_than: i64,
    /// The operator consents to REPLICA IDENTITY FULL on the source's tables
    /// without one ([`replica_identity`]).
    pub replica_identity_full: bool,
}

/// Progress, for whoever draws it (the CLI).
#[derive(Clone, Debug)]
pub enum CopyEvent {
    Phase {
        phase: &'static str,
    },
    Planned {
        tables: usize,
        units: usize,
        bytes: i64,
    },
    ChunkStarted {
        table: String,
        chunk: i32,
        chunks: i32,
    },
    Bytes {
        table: String,
        bytes: u64,
    },
    ChunkDone {
        table: String,
        chunk: i32,
        rows: u64,
        bytes: u64,
        seconds: f64,
    },
    /// Every piece of the table this run copied is in.
    TableDone {
        table: String,
    },
    Kept {
        table: String,
    },
}

/// The copy's outcome, for the summary.
#[derive(Debug, Serialize)]
pub struct CopyReport {
    pub migration: String,
    pub slot_lsn: String,
    pub tables: Vec<TableSummary>,
    /// Seconds per phase, in order.
    pub phases: Vec<(&'static str, f64)>,
    /// Set when ownership and grants were skipped, with the roles missing on the target.
    pub missing_roles: Vec<String>,
    /// The source's tables given REPLICA IDENTITY FULL (`--replica-identity-full`).
    pub replica_identity_full: Vec<String>,
    /// The materialized views refreshed (or left unpopulated, as on the source)
    /// after the rows were in; empty when this run did not reach that step.
    pub materialized_views: Vec<crate::materialized_views::RefreshedView>,
    /// The tables this run gave the source's statistics, and those it analyzed.
    pub statistics: StatisticsReport,
}

#[derive(Debug, Serialize)]
pub struct TableSummary {
    pub table: String,
    pub rows: i64,
    pub bytes: i64,
    pub chunks: i32,
    /// From its first piece's start to its last piece's commit (pieces of other
    /// tables may have run in between).
    pub seconds: f64,
}

/// Runs (or resumes) the copy.
pub async fn copy(source: &ConnSpec, target: &ConnSpec, options: &CopyOptions, events: &Events) -> Result<CopyReport> {
    // Every step may wait for an application's lock (the listing, pg_dump, the
    // reads): a wait is named while it lasts.
    lock_wait::watching(source, Box::pin(copy_steps(source, target, options, events))).await
}

async fn copy_steps(
    source: &ConnSpec,
    target: &ConnSpec,
    options: &CopyOptions,
    events: &Events,
) -> Result<CopyReport> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let name = &options.migration;
    // Every refusal before the journal is created: a refused copy leaves both servers as they were.
    let pair = crate::lifecycle::guard(&src, &dst, name, pgferry_core::lifecycle::Command::Copy).await?;
    events.emit(Event::Phase(Phase::Copy));
    let slot_name = crate::slot::resolve(&src, &dst, name).await?;
    source::ensure_slot_is_ours(&src, name, &slot_name).await?;
    let phase = journal::phase_if_journaled(&dst, name).await?;
    if phase.as_ref().is_none_or(|(current, _)| *current < MigrationPhase::Copied) {
        crate::fence::refuse_copy_from_fenced(&src).await?;
    }
    let findings = match phase {
        // Tables without a replica identity are published for inserts only: the
        // cutover, not the copy, decides what that means for them.
        None => Some(check::refuse_unless_ready(source, target, &CheckPlan::default(), true).await?),
        Some(_) => None,
    };
    let ClientPair { pg_dump, pg_restore } = require_client(&src, &dst).await?;
    let workdir = WorkDir::create(target, name)?;
    journal::ensure(&dst).await?;
    let missing_roles = check::missing_roles(&src, &dst).await?;
    let keep_owners = missing_roles.is_empty();
    let mut laps = Laps::start();
    let (current, stored_lsn) = phase.unwrap_or((MigrationPhase::Created, None));
    let builds = indexes::plan(&src).await?;
    let statistics = Statistics::new(source, &src, &dst).await?;
    let data = DataPhase {
        source,
        target,
        src: &src,
        dst: &dst,
        options,
        slot: &slot_name,
        builds: &builds,
        statistics: &statistics,
        events,
    };

    let (slot_lsn, dump, leftover_statistics) = if current < MigrationPhase::Data {
        events.copy(CopyEvent::Phase { phase: "schema" });
        journal::begin(&dst, name, &slot_name, pair.source()).await?;
        if let Some(findings) = &findings {
            journal::record_preflight(&dst, name, findings).await?;
        }
        journal::set_phase(&dst, name, MigrationPhase::Created, None).await?;
        failpoint::hit("copy-after-created");
        source::drop_stale_slot(&src, &slot_name).await?;
        if options.replica_identity_full {
            replica_identity::set_full(&src, &dst, name).await?;
        }
        failpoint::pause("copy-before-publications").await;
        source::drop_publications(&src, name).await?;
        source::ensure_publications(&src, name).await?;
        failpoint::pause("copy-before-slot").await;
        let slot = create_slot_with_snapshot(source, &slot_name, false).await.map_err(Error::from)?;
        journal::set_phase(&dst, name, MigrationPhase::Schema, Some(&slot.consistent_point)).await?;
        failpoint::hit("copy-after-slot");
        let dump = schema::dump(&pg_dump, source, Some(&slot.snapshot_name), &workdir).await?;
        let rerun = current == MigrationPhase::Schema;
        let pre_data = Restore { section: Some(Section::PreData), jobs: 1, clean: rerun, keep_owners, list: None };
        schema::restore(&pg_restore, target, &dump, &pre_data).await?;
        if has_large_objects(&src).await? {
            let objects = schema::dump_large_objects(&pg_dump, source, &slot.snapshot_name, &workdir).await?;
            let list_file = workdir.private_file("large-objects.list")?;
            std::fs::write(&list_file, schema::large_objects_only(&schema::list(&pg_restore, &objects).await?))
                .map_err(|e| Error::new(ErrorKind::Server, format!("writing {}: {e}", list_file.display())))?;
            let all = Restore { section: None, list: Some(&list_file), ..pre_data };
            schema::restore(&pg_restore, target, &objects, &all).await?;
        }
        journal::set_phase(&dst, name, MigrationPhase::Data, None).await?;
        laps.lap("schema");
        let unlisted = source::unlisted_at(&src, &slot.snapshot_name, name).await?.into_iter().collect();
        let leftover = data.run_all(&slot.snapshot_name, &slot.consistent_point, unlisted).await?;
        (slot.consistent_point, dump, leftover)
    } else {
        let leftover = if current == MigrationPhase::Data {
            let temp = create_slot_with_snapshot(source, &SnapshotSlot::Resume.beside(&slot_name), true)
                .await
                .map_err(Error::from)?;
            data.run_all(&temp.snapshot_name, &temp.consistent_point, HashSet::new()).await?
        } else {
            Vec::new()
        };
        (stored_lsn.unwrap_or_default(), schema::dump(&pg_dump, source, None, &workdir).await?, leftover)
    };
    laps.lap("data and indexes");

    let mut materialized_views = Vec::new();
    if current < MigrationPhase::Copied {
        events.copy(CopyEvent::Phase { phase: "constraints, triggers and the rest of post-data" });
        journal::set_phase(&dst, name, MigrationPhase::PostData, None).await?;
        failpoint::hit("copy-after-data");
        if current == MigrationPhase::PostData {
            // A rerun: indexes from the killed run are kept, missing ones built,
            // constraints attached where they are not.
            let queue = IndexQueue::new(&builds);
            queue.data_finished();
            indexes::build_all(target, &queue, &statistics, options.index_jobs).await?;
        }
        let source_keys = foreign_keys::of_source(source).await?;
        if current == MigrationPhase::PostData {
            foreign_keys::drop_added(&dst, &source_keys).await?;
        }
        let list = indexes::filter_restore_list(&schema::list(&pg_restore, &dump).await?, &builds);
        let list_file = workdir.private_file("post-data.list")?;
        std::fs::write(&list_file, list)
            .map_err(|e| Error::new(ErrorKind::Server, format!("writing {}: {e}", list_file.display())))?;
        let clean = current == MigrationPhase::PostData;
        let post_data = Restore {
            section: Some(Section::PostData),
            jobs: options.index_jobs,
            clean,
            keep_owners,
            list: Some(&list_file),
        };
        schema::restore(&pg_restore, target, &dump, &post_data).await?;
        // What `pg_dump --schema-only` leaves out: the database's own settings and privileges.
        crate::parity::carry_database(&src, &dst).await?;
        laps.lap("constraints and the rest");
        events
            .copy(CopyEvent::Phase { phase: "foreign keys (added NOT VALID, then validated), sequences, statistics" });
        // Plain tables got their statistics as their data landed, but for those
        // left when the last index was built (see [`indexes`]) and those with
        // extended statistics, whose objects post-data just made; partitioned parents
        // and materialized views (refreshed first, see [`crate::materialized_views`])
        // are analyzed now; everything after a rerun (see [`statistics`]).
        // Side by side with the foreign keys' validation: ANALYZE (and writing
        // statistics) takes SHARE UPDATE EXCLUSIVE on a table and ANALYZE ACCESS
        // SHARE on a parent's partitions, which a foreign key's locks at most wait
        // for, never in a cycle.
        let kinds: &[i8] = if current == MigrationPhase::PostData {
            &[b'r' as i8, b'p' as i8, b'm' as i8]
        } else {
            &[b'p' as i8, b'm' as i8]
        };
        let sequences_views_and_statistics = async {
            source::sync_sequences(&src, &dst).await?;
            // Sessions of their own: the foreign keys' validation runs on `dst` side by side.
            let (view_src, view_dst) = tokio::try_join!(pgferry_pg::connect(source), pgferry_pg::connect(target))?;
            let views =
                crate::materialized_views::refresh_materialized_views(&view_src, &view_dst, name, "copy").await?;
            let mut relations: Vec<(QualifiedName, i8)> =
                leftover_statistics.into_iter().chain(statistics.deferred()).map(|t| (t, b'r' as i8)).collect();
            relations.extend(relations_of_kinds(&dst, kinds).await?);
            all_statistics(target, &statistics, relations, options.index_jobs).await.map(|()| views.views)
        };
        let (_, views) = tokio::try_join!(
            foreign_keys::add_and_validate(target, &dst, &source_keys, options.index_jobs),
            sequences_views_and_statistics
        )?;
        materialized_views = views;
        journal::set_phase(&dst, name, MigrationPhase::Copied, None).await?;
        laps.lap("foreign keys, sequences and statistics");
    }
    Ok(CopyReport {
        migration: name.to_string(),
        slot_lsn,
        tables: summaries(&dst, name).await?,
        phases: laps.done(),
        missing_roles,
        replica_identity_full: replica_identity::set_by(&dst, name).await?,
        materialized_views,
        statistics: statistics.report(),
    })
}

/// Seconds per phase.
struct Laps {
    clock: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Laps {
    fn start() -> Self {
        Laps { clock: Instant::now(), laps: Vec::new() }
    }

    fn lap(&mut self, what: &'static str) {
        self.laps.push((what, self.clock.elapsed().as_secs_f64()));
        self.clock = Instant::now();
    }

    fn done(self) -> Vec<(&'static str, f64)> {
        self.laps
    }
}

/// The data phase: rows piped by `--jobs` workers while `--index-jobs` builders
/// index every table whose rows are complete.
struct DataPhase<'a> {
    source: &'a ConnSpec,
    target: &'a ConnSpec,
    src: &'a Client,
    dst: &'a Client,
    options: &'a CopyOptions,
    /// The migration's slot ([`crate::slot`]).
    slot: &'a str,
    builds: &'a [indexes::IndexBuild],
    statistics: &'a Statistics,
    events: &'a Events,
}

impl DataPhase<'_> {
    /// Copies every table not yet finished under the snapshot, but those found
    /// rewritten after it and the `unlisted` ones (in the snapshot, in no
    /// publication: [`source::unlisted_at`]): those are copied under later
    /// snapshots, after they are published. Returns the tables still to be given
    /// statistics.
    async fn run_all(
        &self,
        snapshot_name: &str,
        snapshot_lsn: &str,
        unlisted: HashSet<QualifiedName>,
    ) -> Result<Vec<QualifiedName>> {
        failpoint::pause("copy-before-lock").await;
        // Every label the snapshot's rows may carry exists by now (a label
        // commits before any row can hold it).
        crate::parity::carry_enum_labels(self.src, self.dst, &self.options.migration).await?;
        let (mut leftover, mut again) = self.run(snapshot_name, snapshot_lsn, Selection::Except(&unlisted)).await?;
        again.extend(unlisted);
        for _ in 0..RECOPY_ATTEMPTS {
            if again.is_empty() {
                return Ok(leftover);
            }
            // A table that replaced one of the same name since the publications
            // were made, or was made while they were, is not in them: published
            // first, so that its changes after the re-copy's snapshot arrive.
            for table in source::publish_unlisted(self.src, &self.options.migration).await? {
                tracing::info!(
                    "{table} was made while the copy began or replaced a table of that name during it: it was added to the publication and is copied under a later snapshot"
                );
            }
            let slot = SnapshotSlot::Resume.beside(self.slot);
            let temp = create_slot_with_snapshot(self.source, &slot, true).await.map_err(Error::from)?;
            crate::parity::carry_enum_labels(self.src, self.dst, &self.options.migration).await?;
            let (more, rewritten) =
                self.run(&temp.snapshot_name, &temp.consistent_point, Selection::Only(&again)).await?;
            leftover.extend(more);
            again = rewritten;
        }
        if again.is_empty() {
            return Ok(leftover);
        }
        let names: Vec<String> = again.iter().map(ToString::to_string).collect();
        Err(Error::new(
            ErrorKind::Precondition,
            format!("{} kept being truncated or rewritten on the source while the copy tried to read it", names.join(", ")),
        )
        .with_hint("stop what truncates or rewrites it (a TRUNCATE, VACUUM FULL or CLUSTER job) and rerun pgferry copy: it resumes"))
    }

    /// Copies the selected tables not yet finished, under the given snapshot,
    /// builds their indexes and journals the partitions' files. Returns the
    /// tables still to be given statistics, and those found rewritten since the snapshot.
    async fn run(
        &self,
        snapshot_name: &str,
        snapshot_lsn: &str,
        selection: Selection<'_>,
    ) -> Result<(Vec<QualifiedName>, HashSet<QualifiedName>)> {
        self.events.copy(CopyEvent::Phase { phase: "data" });
        let name = &self.options.migration;
        let finished = journal::finished_tables(self.dst, name).await?;
        let tx_sql = Sql::new("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ")
            .literal(snapshot_name);
        self.src.batch_execute(tx_sql.as_str()).await.map_err(|e| Error::server("importing the snapshot", e))?;
        let listing = source::list_tables(self.src).await;
        let roots = source::partition_roots(self.src).await;
        self.src.batch_execute("COMMIT").await.map_err(|e| Error::server("ending the listing transaction", e))?;
        let (listing, roots) = (listing?, roots?);
        let hierarchy = |t: &QualifiedName| roots.get(t).cloned().unwrap_or_else(|| t.clone());
        let (only, selected): (bool, HashSet<QualifiedName>) = match selection {
            Selection::Except(tables) => (false, tables.iter().map(hierarchy).collect()),
            Selection::Only(tables) => (true, tables.iter().map(hierarchy).collect()),
        };
        let wanted = |t: &QualifiedName| selected.contains(&hierarchy(t)) == only;
        let is_finished =
            |t: &QualifiedName| finished.contains(&(t.schema.as_str().to_string(), t.name.as_str().to_string()));
        let unfinished: HashSet<QualifiedName> =
            listing.iter().filter(|(t, _)| !is_finished(&t.name)).map(|(t, _)| hierarchy(&t.name)).collect();
        let builds: Vec<indexes::IndexBuild> = self.builds.iter().filter(|b| wanted(&b.table)).cloned().collect();
        let queue = IndexQueue::new(&builds);
        let mut todo: Vec<CopyTable> = Vec::new();
        for (table, _) in listing {
            if !wanted(&table.name) {
                continue;
            }
            if is_finished(&table.name) && !unfinished.contains(&hierarchy(&table.name)) {
                self.events.copy(CopyEvent::Kept { table: table.name.to_string() });
                queue.table_ready(&table.name);
                continue;
            }
            empty_table(self.dst, name, &table).await?;
            todo.push(table);
        }
        if only {
            // Copied again under a later snapshot, into tables made from the first one's schema.
            for table in &todo {
                same_columns(self.src, self.dst, &table.name).await?;
            }
        }
        let units = plan_copy(&todo, self.options.split_larger_than);
        self.events.copy(CopyEvent::Planned {
            tables: todo.len(),
            units: units.len(),
            bytes: todo.iter().map(|t| t.bytes).sum(),
        });
        let rewrites = Rewrites::default();
        let job = data::DataJob {
            source: self.source,
            target: self.target,
            migration: name,
            snapshot: Snapshot { name: snapshot_name, lsn: snapshot_lsn },
            tables: &todo,
            indexes: &queue,
            events: self.events,
            rewrites: &rewrites,
        };
        let copying = async {
            let result = data::copy_units(&job, units, self.options.jobs).await;
            queue.data_finished();
            result
        };
        let building = indexes::build_all(self.target, &queue, self.statistics, self.options.index_jobs);
        tokio::try_join!(copying, building)?;
        let (rewritten, files) = rewrites.take();
        let files: Vec<(&QualifiedName, u32)> = files.iter().map(|(t, f)| (t, *f)).collect();
        journal::record_partition_files(self.dst, name, &files).await?;
        Ok((queue.leftover_statistics(), rewritten))
    }
}

/// Refuses to copy a table again when its columns changed on the source since
/// the snapshot the target's schema came from (ALTER ... TYPE, ADD or DROP
/// COLUMN): binary COPY would fail, or read one type's bytes as another's.
async fn same_columns(src: &Client, dst: &Client, table: &QualifiedName) -> Result<()> {
    let (on_source, on_target) = tokio::try_join!(columns(src, table, "source"), columns(dst, table, "target"))?;
    if on_source == on_target {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Precondition,
        format!(
            "{table} was rewritten on the source after the copy's snapshot and its columns changed: the source has ({on_source}), the target's copy of the snapshot's schema has ({on_target})"
        ),
    )
    .with_hint("run the same schema change on the target (psql), then rerun pgferry copy: it resumes; or pgferry abort and copy again"))
}

/// A table's columns with their types, as one text.
async fn columns(client: &Client, table: &QualifiedName, side: &str) -> Result<String> {
    client
        .query_one(
            "SELECT coalesce(string_agg(format('%I %s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attnum), '')
             FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&table.to_string()],
        )
        .await
        .map(|r| r.get::<_, String>(0))
        .map_err(|e| Error::server(&format!("reading the columns of {table} on the {side}"), e))
}

/// Empties a table that is about to be copied (again), with its journal rows.
async fn empty_table(dst: &Client, name: &MigrationName, table: &CopyTable) -> Result<()> {
    let truncate = Sql::new("TRUNCATE ONLY ").name(&table.name);
    let conn_tx = || async {
        dst.batch_execute("BEGIN").await?;
        dst.batch_execute(truncate.as_str()).await?;
        journal::forget_table(dst, name, &table.name).await?;
        dst.batch_execute("COMMIT").await
    };
    conn_tx().await.map_err(|e| Error::server(&format!("emptying {} on the target", table.name), e))
}

/// The target's relations of the given kinds (`pg_class.relkind`), with their
/// kind, largest first.
async fn relations_of_kinds(dst: &Client, kinds: &[i8]) -> Result<Vec<(QualifiedName, i8)>> {
    let rows = dst
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind::\"char\" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind::\"char\" = ANY($1) AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY pg_relation_size(c.oid) DESC",
            &[&kinds],
        )
        .await
        .map_err(|e| Error::server("listing the target's tables", e))?;
    Ok(rows
        .iter()
        .map(|r| (QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)), r.get::<_, i8>(2)))
        .collect())
}

/// Statistics for each relation, in order, `jobs` at a time: plain tables
/// carried or analyzed ([`Statistics::table_after_post_data`]), partitioned
/// tables and materialized views analyzed.
async fn all_statistics(
    target: &ConnSpec,
    statistics: &Statistics,
    relations: Vec<(QualifiedName, i8)>,
    jobs: usize,
) -> Result<()> {
    let open = async || Ok(pgferry_pg::connect(target).await?);
    let one = async |client: &Client, (relation, kind): (QualifiedName, i8)| match kind as u8 {
        b'p' => statistics.partitioned(client, &relation).await,
        b'm' => statistics.analyze(client, &relation, statistics::MATERIALIZED_VIEW).await,
        _ => statistics.table_after_post_data(client, &relation).await,
    };
    crate::pool::each(relations, jobs, open, one).await.map(|_| ())
}

async fn has_large_objects(src: &Client) -> Result<bool> {
    src.query_one("SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata)", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking for large objects on the source", e))
}

/// The pg_dump and pg_restore to use: at least as new as the source, and a
/// pg_restore the target accepts (`crate::check::client_for`); checked before
/// anything is changed on either side.
async fn require_client(src: &Client, dst: &Client) -> Result<ClientPair> {
    let (source_version_num, target_version_num) =
        (server_version_num(src, "source").await?, server_version_num(dst, "target").await?);
    let client = check::client_for(source_version_num, target_version_num).await;
    let problems = tool_problems(source_version_num, target_version_num, &check::tool_facts(client.as_ref()));
    match (client, problems.first()) {
        (Some(client), None) => Ok(client),
        (found, first) => {
            let whats: Vec<&str> = problems.iter().map(|p| p.what.as_str()).collect();
            let where_found = found.map(|c| format!(" (found: {})", c.pg_dump.path.display())).unwrap_or_default();
            let fix = first.map(|p| p.fix.as_str()).unwrap_or_default();
            Err(Error::new(ErrorKind::Refused, format!("{}{where_found}", whats.join("; ")))
                .with_hint(format!("{fix}; nothing was changed")))
        }
    }
}

async fn server_version_num(client: &Client, side: &str) -> Result<i32> {
    client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server(&format!("reading the {side}'s version"), e))
}

async fn summaries(dst: &Client, name: &MigrationName) -> Result<Vec<TableSummary>> {
    let rows = dst
        .query(
            "SELECT table_schema, table_name, sum(rows)::bigint, sum(bytes)::bigint, max(chunks),
                    extract(epoch FROM max(finished_at) - min(copied_at))::float8
             FROM pgferry.copied_chunk WHERE migration = $1 GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the journal", e))?;
    Ok(rows
        .iter()
        .map(|r| TableSummary {
            table: QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)).to_string(),
            rows: r.get(2),
            bytes: r.get(3),
            chunks: r.get(4),
            seconds: r.get(5),
        })
        .collect())
}
