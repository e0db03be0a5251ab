//! Index builds that start as soon as a table's rows are in.
//!
//! Building indexes after all the data, as `pg_restore --section=post-data` does,
//! leaves the machine half idle at the end, waiting on the largest table's primary
//! key. Here each plain table's indexes are queued the moment its last piece
//! commits, and `--index-jobs` workers build them while other tables are still
//! being copied. Primary keys and unique constraints are built as unique indexes
//! first (which, unlike `ADD CONSTRAINT`, run side by side on one table) and
//! attached afterwards with `ADD CONSTRAINT ... USING INDEX`, which is instant
//! ([ALTER TABLE](https://www.postgresql.org/docs/current/sql-altertable.html)).
//!
//! The builder that finishes a table's last index attaches its constraints right
//! away, and the table's statistics (carried from the source or gathered by
//! ANALYZE, see [`super::statistics`]) are queued behind them (either would
//! otherwise take a lock the builds queue behind): builders write them while they
//! have nothing to build. Once every build is done, the statistics still queued
//! (the largest table's, typically, whose primary key finished last) are handed
//! back to be written beside the rest of post-data instead of before it.
//!
//! Builder sessions raise `maintenance_work_mem` within the target's shared
//! buffers, so that large indexes sort in memory ([`index_build_memory_kb`]).
//!
//! Definitions come from the server (`pg_get_indexdef`, read with an empty
//! `search_path` so every name is qualified). Everything else of post-data
//! (foreign keys, triggers, exclusion constraints, partitioned indexes, ...) is left
//! to `pg_restore`, with the entries built here removed from its list by OID.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use pgferry_core::copy_plan::index_build_memory_kb;
use pgferry_core::foreign_keys::is_foreign_key_entry;
use pgferry_core::names::STATE_SCHEMA;
use pgferry_core::sql::{Ident, QualifiedName, ServerSql, Sql};
use pgferry_pg::ConnSpec;
use tokio::sync::Notify;
use tokio_postgres::Client;

use super::statistics::Statistics;
use crate::error::{Error, Result};

/// A constraint attached to a built index.
#[derive(Clone, Debug)]
pub(crate) struct IndexConstraint {
    pub(crate) oid: u32,
    pub(crate) name: Ident,
    pub(crate) primary: bool,
    pub(crate) deferrable: bool,
    pub(crate) deferred: bool,
}

/// One index to build on the target.
#[derive(Clone, Debug)]
pub(crate) struct IndexBuild {
    pub(crate) table: QualifiedName,
    pub(crate) index: QualifiedName,
    pub(crate) oid: u32,
    pub(crate) definition: ServerSql,
    pub(crate) constraint: Option<IndexConstraint>,
}

/// Reads the indexes of plain tables (not partitioned, not partitions) whose
/// build this module takes over: plain indexes, and those of primary key and
/// unique constraints.
pub(crate) async fn plan(src: &Client) -> Result<Vec<IndexBuild>> {
    src.batch_execute("SET search_path = ''")
        .await
        .map_err(|e| Error::server("preparing to read index definitions", e))?;
    let rows = src
        .query(
            "SELECT n.nspname::text, t.relname::text, i.relname::text, i.oid, pg_get_indexdef(i.oid),
                    c.oid, c.conname::text, c.contype = 'p', c.condeferrable, c.condeferred
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.conrelid = t.oid AND c.contype IN ('p', 'u', 'x')
             WHERE t.relkind = 'r' AND NOT t.relispartition AND i.relkind = 'i' AND x.indisvalid
               AND coalesce(c.contype, 'u') <> 'x'
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = t.oid AND d.deptype = 'e')
             ORDER BY n.nspname, t.relname, i.relname",
            &[&STATE_SCHEMA],
        )
        .await;
    src.batch_execute("RESET search_path").await.map_err(|e| Error::server("reading index definitions", e))?;
    let rows = rows.map_err(|e| Error::server("reading the source's index definitions", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let schema: String = r.get(0);
            IndexBuild {
                table: QualifiedName::from_catalog(schema.clone(), r.get::<_, String>(1)),
                index: QualifiedName::from_catalog(schema, r.get::<_, String>(2)),
                oid: r.get(3),
                definition: ServerSql::from_catalog(r.get::<_, String>(4)),
                constraint: r.get::<_, Option<u32>>(5).map(|oid| IndexConstraint {
                    oid,
                    name: Ident::from_catalog(r.get::<_, String>(6)),
                    primary: r.get(7),
                    deferrable: r.get(8),
                    deferred: r.get(9),
                }),
            }
        })
        .collect())
}

/// The builds, released table by table as their data lands, and each table's
/// statistics, written when no index build is ready and the table's own builds
/// and constraints are all done: the SHARE UPDATE EXCLUSIVE lock of ANALYZE (and
/// of the functions that write statistics) conflicts with CREATE INDEX's SHARE lock, and a build queued behind it would hold back the
/// largest table's primary key, the copy's critical path.
pub(crate) struct IndexQueue {
    state: Mutex<QueueState>,
    changed: Notify,
}

struct QueueState {
    waiting: HashMap<QualifiedName, Vec<IndexBuild>>,
    ready: VecDeque<IndexBuild>,
    statistics_due: VecDeque<QualifiedName>,
    /// Builds handed out and not yet finished, per table.
    in_flight: HashMap<QualifiedName, usize>,
    /// Each table's builds that carry a constraint, attached after its last build.
    constraints: HashMap<QualifiedName, Vec<IndexBuild>>,
    /// Tables whose constraints are being attached.
    attaching: HashSet<QualifiedName>,
    data_done: bool,
}

impl QueueState {
    /// Whether `table` has an index build waiting, ready or running, or
    /// constraints being attached.
    fn has_builds(&self, table: &QualifiedName) -> bool {
        self.waiting.contains_key(table)
            || self.in_flight.get(table).is_some_and(|n| *n > 0)
            || self.attaching.contains(table)
            || self.ready.iter().any(|b| &b.table == table)
    }

    /// Whether every build is done: no more will come, none is left.
    fn builds_done(&self) -> bool {
        self.data_done && self.ready.is_empty() && self.attaching.is_empty() && self.in_flight.values().all(|n| *n == 0)
    }
}

/// One piece of work for a builder.
enum Work {
    Build(IndexBuild),
    Statistics(QualifiedName),
}

impl IndexQueue {
    pub(crate) fn new(builds: &[IndexBuild]) -> Self {
        let mut waiting: HashMap<QualifiedName, Vec<IndexBuild>> = HashMap::new();
        let mut constraints: HashMap<QualifiedName, Vec<IndexBuild>> = HashMap::new();
        for build in builds {
            waiting.entry(build.table.clone()).or_default().push(build.clone());
            if build.constraint.is_some() {
                constraints.entry(build.table.clone()).or_default().push(build.clone());
            }
        }
        IndexQueue {
            state: Mutex::new(QueueState {
                waiting,
                ready: VecDeque::new(),
                statistics_due: VecDeque::new(),
                in_flight: HashMap::new(),
                constraints,
                attaching: HashSet::new(),
                data_done: false,
            }),
            changed: Notify::new(),
        }
    }

    /// All of `table`'s rows are on the target: its indexes may be built, then
    /// its statistics written.
    pub(crate) fn table_ready(&self, table: &QualifiedName) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(builds) = state.waiting.remove(table) {
            state.ready.extend(builds);
        }
        state.statistics_due.push_back(table.clone());
        drop(state);
        self.changed.notify_waiters();
    }

    /// No more data will land: every remaining build may start.
    pub(crate) fn data_finished(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.data_done = true;
        let rest: Vec<IndexBuild> = state.waiting.drain().flat_map(|(_, b)| b).collect();
        state.ready.extend(rest);
        drop(state);
        self.changed.notify_waiters();
    }

    /// The next piece of work, waiting for one; `None` once every build is done
    /// (the statistics still queued are then [`IndexQueue::leftover_statistics`]).
    async fn next(&self) -> Option<Work> {
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(build) = state.ready.pop_front() {
                    *state.in_flight.entry(build.table.clone()).or_default() += 1;
                    return Some(Work::Build(build));
                }
                if state.builds_done() {
                    return None;
                }
                if let Some(at) = state.statistics_due.iter().position(|t| !state.has_builds(t)) {
                    return state.statistics_due.remove(at).map(Work::Statistics);
                }
            }
            notified.await;
        }
    }

    /// A build handed out by [`IndexQueue::next`] is done. When it was its table's
    /// last, returns the table's builds whose constraints are now to be attached
    /// (then [`IndexQueue::attached`]).
    fn built(&self, table: &QualifiedName) -> Option<Vec<IndexBuild>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = state.in_flight.get_mut(table) {
            *n = n.saturating_sub(1);
        }
        let to_attach = if state.has_builds(table) { None } else { state.constraints.remove(table) };
        if to_attach.is_some() {
            state.attaching.insert(table.clone());
        }
        drop(state);
        self.changed.notify_waiters();
        to_attach
    }

    /// `table`'s constraints are attached.
    fn attached(&self, table: &QualifiedName) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).attaching.remove(table);
        self.changed.notify_waiters();
    }

    /// The tables whose statistics the builders did not write, for after them.
    pub(crate) fn leftover_statistics(&self) -> Vec<QualifiedName> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).statistics_due.drain(..).collect()
    }
}

/// Runs `jobs` builders until every build is done and its constraints attached;
/// while none is ready to build, they give the finished tables statistics.
pub(crate) async fn build_all(
    target: &ConnSpec,
    queue: &IndexQueue,
    statistics: &Statistics,
    jobs: usize,
) -> Result<()> {
    let open = async || {
        let client = pgferry_pg::connect(target).await?;
        give_memory(&client, jobs).await?;
        Ok(client)
    };
    let run = async |client: &Client, work: Work| match work {
        Work::Build(build) => {
            build_one(client, &build).await?;
            if let Some(to_attach) = queue.built(&build.table) {
                attach_constraints(client, &to_attach).await?;
                queue.attached(&build.table);
            }
            Ok(())
        }
        Work::Statistics(table) => statistics.table(client, &table).await,
    };
    crate::pool::drain(async || queue.next().await, jobs, open, run).await.map(|_| ())
}

/// Raises the session's `maintenance_work_mem` for its builds
/// ([`index_build_memory_kb`]).
async fn give_memory(client: &Client, jobs: usize) -> Result<()> {
    let row = client
        .query_one(
            "SELECT pg_size_bytes(current_setting('maintenance_work_mem')) / 1024,
                    pg_size_bytes(current_setting('shared_buffers')) / 1024",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the target's memory settings", e))?;
    let Some(kb) = index_build_memory_kb(row.get(0), row.get(1), jobs) else { return Ok(()) };
    let sql = Sql::new("SET maintenance_work_mem = ").literal(&format!("{kb}kB"));
    client
        .batch_execute(sql.as_str())
        .await
        .map_err(|e| Error::server("setting maintenance_work_mem for the index builds", e))
}

/// Builds one index unless a previous run already did.
async fn build_one(client: &Client, build: &IndexBuild) -> Result<()> {
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&build.index.to_string()])
        .await
        .map_err(|e| Error::server("looking up an index on the target", e))?
        .get::<_, bool>(0);
    if exists {
        return Ok(());
    }
    let sql = Sql::new("").server_sql(&build.definition);
    client
        .batch_execute(sql.as_str())
        .await
        .map_err(|e| Error::server(&format!("building the index {} on the target", build.index), e))?;
    crate::failpoint::hit("copy-after-index");
    Ok(())
}

/// Attaches primary keys and unique constraints to their built indexes; skips
/// those already attached.
async fn attach_constraints(client: &Client, builds: &[IndexBuild]) -> Result<()> {
    for build in builds {
        let Some(c) = &build.constraint else { continue };
        let exists = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::text::regclass AND conname = $2)",
                &[&build.table.to_string(), &c.name.as_str()],
            )
            .await
            .map_err(|e| Error::server("looking up a constraint on the target", e))?
            .get::<_, bool>(0);
        if !exists {
            client
                .batch_execute(attach_sql(build, c).as_str())
                .await
                .map_err(|e| Error::server(&format!("adding the constraint {} on {}", c.name, build.table), e))?;
        }
    }
    Ok(())
}

fn attach_sql(build: &IndexBuild, c: &IndexConstraint) -> Sql {
    Sql::new("ALTER TABLE ONLY ")
        .name(&build.table)
        .push(" ADD CONSTRAINT ")
        .ident(&c.name)
        .push(if c.primary { " PRIMARY KEY USING INDEX " } else { " UNIQUE USING INDEX " })
        .ident(&build.index.name)
        .push(match (c.deferrable, c.deferred) {
            (true, true) => " DEFERRABLE INITIALLY DEFERRED",
            (true, false) => " DEFERRABLE",
            (false, _) => "",
        })
}

/// The `pg_restore` list without the entries built here (matched by catalog and
/// OID: `1259` is pg_class for indexes, `2606` pg_constraint for constraints)
/// and without the foreign keys, which are added NOT VALID and validated after
/// it ([`super::foreign_keys`]), nor DDL capture's event triggers (their
/// functions live in pgferry's schema, which is not copied).
pub(crate) fn filter_restore_list(list: &str, builds: &[IndexBuild]) -> String {
    let mut skip: HashSet<(u32, u32)> = HashSet::new();
    for build in builds {
        skip.insert((1259, build.oid));
        if let Some(c) = &build.constraint {
            skip.insert((2606, c.oid));
        }
    }
    list.lines()
        .filter(|line| {
            entry_key(line).is_none_or(|key| !skip.contains(&key))
                && !is_foreign_key_entry(line)
                && !line.contains(" EVENT TRIGGER - pgferry_")
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// `3337; 1259 16385 INDEX public i owner` -> (1259, 16385).
fn entry_key(line: &str) -> Option<(u32, u32)> {
    let (_, rest) = line.split_once("; ")?;
    let mut fields = rest.split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(oid: u32, constraint: Option<u32>) -> IndexBuild {
        IndexBuild {
            table: QualifiedName::from_catalog("s", "t"),
            index: QualifiedName::from_catalog("s", "t_pkey"),
            oid,
            definition: ServerSql::from_catalog("CREATE UNIQUE INDEX t_pkey ON s.t USING btree (id)"),
            constraint: constraint.map(|oid| IndexConstraint {
                oid,
                name: Ident::from_catalog("t pkey"),
                primary: true,
                deferrable: false,
                deferred: false,
            }),
        }
    }

    #[test]
    fn restore_lists_lose_exactly_the_built_entries_and_the_foreign_keys() {
        let list = ";\n; Archive created\n3001; 1259 500 INDEX s i owner\n3002; 2606 600 CONSTRAINT s t t_pkey owner\n3003; 2606 700 FK CONSTRAINT s t t_fk owner\n3004; 2620 800 TRIGGER s t tr owner\n3005; 3466 900 EVENT TRIGGER - pgferry_main__ddl owner\n";
        let kept = filter_restore_list(list, &[build(500, Some(600))]);
        assert_eq!(kept, ";\n; Archive created\n3004; 2620 800 TRIGGER s t tr owner\n");
    }

    #[test]
    fn constraints_attach_with_quoted_names_and_deferral() {
        let b = build(1, Some(2));
        let mut c = b.constraint.clone().unwrap();
        assert_eq!(
            attach_sql(&b, &c).as_str(),
            "ALTER TABLE ONLY \"s\".\"t\" ADD CONSTRAINT \"t pkey\" PRIMARY KEY USING INDEX \"t_pkey\""
        );
        c.primary = false;
        c.deferrable = true;
        c.deferred = true;
        assert!(attach_sql(&b, &c).as_str().ends_with("UNIQUE USING INDEX \"t_pkey\" DEFERRABLE INITIALLY DEFERRED"));
    }

    #[tokio::test]
    async fn builds_are_released_when_their_table_is_ready() {
        let queue = IndexQueue::new(&[build(1, Some(2))]);
        let other = QualifiedName::from_catalog("s", "other");
        let t = QualifiedName::from_catalog("s", "t");
        let pending = |queue: &IndexQueue| futures_util::FutureExt::now_or_never(queue.next()).is_none();
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), queue.next()).await.is_err());
        queue.table_ready(&other);
        queue.table_ready(&t);
        assert!(matches!(queue.next().await, Some(Work::Build(b)) if b.oid == 1), "builds come before statistics");
        assert!(matches!(queue.next().await, Some(Work::Statistics(a)) if a == other));
        queue.data_finished();
        assert!(pending(&queue), "t's statistics wait for t's build, which would queue behind its lock");
        let to_attach = queue.built(&t).expect("the last build hands over its table's constraints");
        assert_eq!(to_attach.len(), 1);
        assert!(pending(&queue), "and for the constraints to be attached");
        queue.attached(&t);
        assert!(queue.next().await.is_none(), "every build done: the builders stop");
        assert_eq!(queue.leftover_statistics(), vec![t], "t's statistics are left for after them");
    }

    #[tokio::test]
    async fn only_a_tables_last_build_attaches_its_constraints() {
        let mut second = build(3, None);
        second.index = QualifiedName::from_catalog("s", "t_other");
        let queue = IndexQueue::new(&[build(1, Some(2)), second]);
        let t = QualifiedName::from_catalog("s", "t");
        queue.table_ready(&t);
        queue.data_finished();
        assert!(matches!(queue.next().await, Some(Work::Build(_))));
        assert!(matches!(queue.next().await, Some(Work::Build(_))));
        assert!(queue.built(&t).is_none(), "one build of t still runs");
        assert!(queue.built(&t).is_some());
        assert!(queue.built(&t).is_none(), "constraints are handed over once");
    }
}
