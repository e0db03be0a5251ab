//! Applying decoded changes to the target, inside the open batch.
//!
//! Each change must touch exactly one row: an UPDATE or DELETE that finds none
//! means the target no longer holds what the source held, and apply stops with
//! the table named rather than let the two drift apart silently (PostgreSQL's own
//! subscriber only logs such a miss). TRUNCATE names exactly the tables the source
//! truncated (its CASCADE already put the referencing tables in the message) with
//! RESTART IDENTITY when the source used it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use pgferry_core::sql::Sql;
use pgferry_pgoutput::{Column, Delete, Insert, Lsn, Message, Oid, OldTuple, Truncate, Update};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::batch::{already_copied, Batch};
use super::lanes::Ahead;
use super::net::{kept_key, key_of, Key, TableNet};
use super::relation::{map_relation, Folding, Mapped};
use super::statements::{matching, update_shape, Shape, Statements};
use super::{progress, touched, Stop};
use crate::error::{Error, ErrorKind};
use crate::failpoint;
use fold::with_key;
use pgferry_core::names::MigrationName;
use pgferry_core::sql::QualifiedName;

mod ddl;
mod fold;

pub(crate) use ddl::RefusedDdl;

/// A relation as the stream described it, mapped onto the target, or why it
/// cannot be: that stops change capture at its first change. (A partition
/// published through its root is described too, though its changes all come
/// by the root's name; the target need not have it.)
struct Relation {
    /// The stream's description, mapped again after a replayed DDL.
    described: pgferry_pgoutput::Relation,
    mapped: Result<Arc<Mapped>, Error>,
    /// Set for tables copied again under a later snapshot.
    copied_at: Option<Lsn>,
}

/// Statements sent and not yet answered, at most: the server works through them in
/// order while the next ones travel (pipelining), instead of one round trip each.
const MAX_IN_FLIGHT: usize = 256;
/// Memory held by statements sent and not yet answered, at most: each one
/// waiting for its answer holds its parameters and their encoding, so set
/// statements of [`fold`]'s (a large transaction sends one per 50,000 rows,
/// all of them in flight while the target works through the first) and rows
/// of large values are bounded by size as well as by count.
const MAX_IN_FLIGHT_BYTES: usize = 32 << 20;
/// What a parameter value costs beyond its text, as [`MAX_IN_FLIGHT_BYTES`]
/// counts it: its `String` and allocation, and its slot in the encoded
/// message (measured: about 14 MB held per set statement of 50,000 rows of
/// three short columns).
const VALUE_OVERHEAD: usize = 64;

/// The memory a statement's parameter values hold while in flight, as
/// [`MAX_IN_FLIGHT_BYTES`] counts it.
fn held_bytes<'v>(values: impl Iterator<Item = &'v Option<String>>) -> usize {
    values.map(|v| v.as_ref().map_or(0, String::len) + VALUE_OVERHEAD).sum()
}

/// The target's answer to a statement already sent: the rows it touched.
type Answer<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// A statement sent to the target whose answer is still to be checked.
struct InFlight<'a> {
    answer: Answer<'a>,
    expect: Expect,
    bytes: usize,
}

/// What a statement carries: the rows it must touch, and its parameters' bytes.
struct Sent {
    rows: u64,
    bytes: usize,
}

/// What a statement must do: touch `rows` rows of `table`.
struct Expect {
    table: QualifiedName,
    verb: &'static str,
    rows: u64,
    /// The source transaction being applied when it was sent.
    at: Option<Lsn>,
}

/// A batch whose commit finished on the target.
pub(crate) struct Committed {
    /// The end LSN and commit time of its last source transaction.
    pub(crate) end: Option<(Lsn, i64)>,
    pub(crate) transactions: u64,
    pub(crate) changes: u64,
    /// Its changes per table.
    pub(crate) stats: std::collections::BTreeMap<QualifiedName, progress::Counts>,
    /// From its first change to its commit's end.
    pub(crate) seconds: f64,
}

/// A batch's commit on its way: its statements' answers checked, its journal
/// rows written, COMMIT. It runs while the next batch is read and folded.
pub(crate) type Committing<'a> = Pin<Box<dyn Future<Output = Result<Committed, Stop>> + Send + 'a>>;

/// The apply state of one target session.
pub(crate) struct Applier<'a> {
    pub(crate) target: &'a Client,
    migration: &'a MigrationName,
    pub(crate) batch: Batch,
    /// A target transaction is open for the batch being filled.
    open_on_target: bool,
    /// The previous batch's commit, when still running.
    pub(crate) committing: Option<Committing<'a>>,
    /// Commits finished and not yet taken by [`Applier::take_committed`].
    committed: Vec<Committed>,
    skip_before: &'a HashMap<QualifiedName, Lsn>,
    relations: HashMap<Oid, Relation>,
    type_names: HashMap<Oid, (String, String)>,
    statements: Statements,
    /// The commit LSN of the source transaction being applied.
    current: Option<Lsn>,
    in_flight: VecDeque<InFlight<'a>>,
    /// The parameters' bytes of [`Applier::in_flight`].
    in_flight_bytes: usize,
    /// Net changes not sent yet, by relation ([`super::net`]), with the bytes
    /// of values folded into them.
    pending: HashMap<Oid, (Arc<Mapped>, TableNet, usize)>,
    pending_rows: usize,
    pending_bytes: usize,
    /// The client messages whose DDL text was replayed in the current source
    /// transaction ([`ddl`]).
    ddl_replayed: Vec<pgferry_core::ddl::ReplayKey>,
    /// The DDL change capture stopped at, for the journal.
    pub(crate) refused_ddl: Option<RefusedDdl>,
    /// In parallel apply, a lane other than lane 0: its index and the lane
    /// count, and its position goes to `pgferry.apply_lane` ([`super::lanes`]).
    lane: Option<(usize, usize)>,
    /// Lanes an earlier run committed past the start: their changes skipped.
    ahead: Option<Arc<Ahead>>,
}

impl<'a> Applier<'a> {
    pub(crate) fn new(
        target: &'a Client,
        migration: &'a MigrationName,
        skip_before: &'a HashMap<QualifiedName, Lsn>,
    ) -> Self {
        Applier {
            target,
            migration,
            batch: Batch::default(),
            open_on_target: false,
            committing: None,
            committed: Vec::new(),
            skip_before,
            relations: HashMap::new(),
            type_names: HashMap::new(),
            statements: Statements::default(),
            current: None,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            pending: HashMap::new(),
            pending_rows: 0,
            pending_bytes: 0,
            ddl_replayed: Vec::new(),
            refused_ddl: None,
            lane: None,
            ahead: None,
        }
    }

    /// The applier of lane `lane` of `lanes` in parallel apply ([`super::parallel`]).
    pub(crate) fn in_lane(mut self, lane: usize, lanes: usize, ahead: Option<Arc<Ahead>>) -> Self {
        self.lane = (lane > 0).then_some((lane, lanes));
        self.ahead = ahead;
        self
    }

    /// Whether the batch sent anything, or holds net changes to send.
    pub(crate) fn has_work(&self) -> bool {
        self.open_on_target || !self.pending.is_empty()
    }

    /// Ends a batch that sent nothing (a lane none of its changes reached):
    /// there is nothing to commit, and its position is lane 0's.
    pub(crate) fn discard_batch(&mut self) {
        self.batch = Batch::default();
    }

    /// The mapping of a described relation (`None`: the copy holds the
    /// transaction at `at`), as a change of it would be applied.
    pub(crate) fn mapped(&self, oid: Oid, at: Option<Lsn>) -> Result<Option<Arc<Mapped>>, Stop> {
        self.relation(oid, at)
    }

    /// Whether an earlier run's lane committed this change already: its key's
    /// lane is past the current source transaction ([`super::lanes`]).
    fn lane_holds(&self, table: &Mapped, key: impl FnOnce() -> Option<Key>) -> bool {
        match (&self.ahead, self.current) {
            (Some(ahead), Some(at)) => key().is_some_and(|key| ahead.holds(&table.table, &key, at)),
            _ => false,
        }
    }

    pub(crate) fn in_transaction(&self) -> bool {
        self.current.is_some()
    }

    /// A source transaction starts; the target transaction opens with the first
    /// statement sent ([`Applier::open_target`]).
    pub(crate) fn begin(&mut self, final_lsn: Lsn) {
        self.batch.opened.get_or_insert_with(std::time::Instant::now);
        self.current = Some(final_lsn);
        self.ddl_replayed.clear();
    }

    /// Before anything is sent for the batch: the previous batch's commit is
    /// waited for (a statement sent behind a commit that then failed would
    /// apply this batch without the previous one), then BEGIN.
    async fn open_target(&mut self) -> Result<(), Stop> {
        if self.open_on_target {
            return Ok(());
        }
        self.wait_committed().await?;
        // Answered before anything follows: a BEGIN that failed (a cancel, say)
        // would leave the batch's statements each committing on its own.
        self.target.batch_execute("BEGIN").await.map_err(|e| Stop::target("opening a transaction on the target", e))?;
        self.open_on_target = true;
        Ok(())
    }

    /// Waits for the previous batch's commit, if one is running.
    pub(crate) async fn wait_committed(&mut self) -> Result<(), Stop> {
        if let Some(committing) = self.committing.take() {
            self.committed.push(committing.await?);
        }
        Ok(())
    }

    /// Whether no commit is running, looking (without waiting) whether the
    /// running one just finished.
    pub(crate) fn commit_finished(&mut self) -> Result<bool, Stop> {
        let Some(committing) = self.committing.as_mut() else { return Ok(true) };
        match futures_util::FutureExt::now_or_never(committing.as_mut()) {
            Some(done) => self.committed_now(done).map(|()| true),
            None => Ok(false),
        }
    }

    /// A commit that finished (see [`Applier::committing`]).
    pub(crate) fn committed_now(&mut self, done: Result<Committed, Stop>) -> Result<(), Stop> {
        self.committing = None;
        self.committed.push(done?);
        Ok(())
    }

    /// The batches committed since the last call, oldest first.
    pub(crate) fn take_committed(&mut self) -> Vec<Committed> {
        std::mem::take(&mut self.committed)
    }

    /// Ends the batch: its net changes are sent, then its commit starts and
    /// runs on ([`Applier::committing`]) while the next batch is read.
    pub(crate) async fn commit_batch(&mut self, rate: Option<f64>) -> Result<(), Stop> {
        self.open_target().await?;
        self.send_all_pending().await?;
        let batch = std::mem::take(&mut self.batch);
        let in_flight = std::mem::take(&mut self.in_flight);
        self.in_flight_bytes = 0;
        let (target, migration, lane) = (self.target, self.migration, self.lane);
        self.open_on_target = false;
        self.committing = Some(Box::pin(async move {
            // The journal's rows go out right behind the batch's statements,
            // before their answers are read; COMMIT only once every answer is
            // checked (a statement that failed aborted the transaction, and one
            // that touched other rows than it should is never committed).
            {
                let mut journal = std::pin::pin!(journal(target, migration, lane, &batch, rate));
                let journal_sent = futures_util::poll!(journal.as_mut());
                for mut sent in in_flight {
                    let answer = sent.answer.as_mut().await;
                    check(&sent.expect, answer)?;
                }
                let commit = || async {
                    match journal_sent {
                        Poll::Ready(journaled) => journaled?,
                        Poll::Pending => journal.await?,
                    }
                    failpoint::hit("apply-before-commit");
                    target.batch_execute("COMMIT").await
                };
                commit().await.map_err(|e| Stop::target("committing applied changes on the target", e))?;
            }
            failpoint::hit("apply-after-commit");
            if lane.is_some() {
                // A lane committed, lane 0 not yet ([`super::lanes`]).
                failpoint::hit("apply-lane-after-commit");
            }
            let seconds = batch.age().as_secs_f64();
            Ok(Committed {
                end: batch.end,
                transactions: batch.transactions,
                changes: batch.changes as u64,
                stats: batch.stats,
                seconds,
            })
        }));
        Ok(())
    }

    /// A source transaction ended at `end_lsn`.
    pub(crate) fn end_transaction(&mut self, end_lsn: Lsn, commit_time: i64) {
        self.current = None;
        self.batch.transactions += 1;
        self.batch.end = Some((end_lsn, commit_time));
    }

    /// Applies one decoded message of the current transaction.
    pub(crate) async fn apply(&mut self, message: Message, bytes: usize) -> Result<(), Stop> {
        let at = self.current;
        match message {
            Message::Relation(relation) => {
                self.send_pending(relation.oid).await?;
                self.open_target().await?;
                return self.describe(relation).await;
            }
            Message::Type(t) => {
                self.type_names.insert(t.oid, (t.namespace, t.name));
                return Ok(());
            }
            Message::Insert(insert) => self.insert(insert, at).await?,
            Message::Update(update) => self.update(update, at).await?,
            Message::Delete(delete) => self.delete(delete, at).await?,
            Message::Truncate(truncate) => self.truncate(truncate, at).await?,
            Message::Origin(_) | Message::LogicalMessage(_) => return Ok(()),
            other => {
                return Err(Stop::Fatal(Error::new(
                    ErrorKind::Server,
                    format!(
                        "the source sent a {:?} message inside a transaction, where change capture does not expect one",
                        other.kind()
                    ),
                )))
            }
        }
        self.batch.changes += 1;
        self.batch.bytes += bytes;
        Ok(())
    }

    /// Takes a relation's description: maps it onto the target, inside the
    /// open target transaction if there is one (parallel apply describes
    /// every relation to every lane, idle ones outside a transaction).
    pub(crate) async fn describe(&mut self, relation: pgferry_pgoutput::Relation) -> Result<(), Stop> {
        self.send_pending(relation.oid).await?;
        self.statements.forget(relation.oid);
        // The catalog reads below would only report an aborted
        // transaction if a statement sent before them failed: its own
        // error is the one to stop with.
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        let mapped = self.map(&relation).await?;
        let table = QualifiedName::from_catalog(&relation.namespace, &relation.name);
        let copied_at = self.skip_before.get(&table).copied();
        self.relations.insert(relation.oid, Relation { described: relation, mapped, copied_at });
        Ok(())
    }

    /// Maps a description onto the target: a mismatch is kept, to stop change
    /// capture at the relation's first change.
    async fn map(&self, relation: &pgferry_pgoutput::Relation) -> Result<Result<Arc<Mapped>, Error>, Stop> {
        // The mapping's reads use savepoints: a lane without an open batch
        // ([`super::parallel`]) reads in a transaction of their own.
        let own = !self.open_on_target;
        if own {
            self.target.batch_execute("BEGIN").await.map_err(|e| Stop::target("reading the target's catalog", e))?;
        }
        let mapped = map_relation(self.target, relation, &self.type_names).await;
        if own {
            self.target.batch_execute("COMMIT").await.map_err(|e| Stop::target("reading the target's catalog", e))?;
        }
        match mapped {
            Ok(mapped) => Ok(Ok(Arc::new(mapped))),
            Err(Stop::Fatal(e)) => Ok(Err(e)),
            Err(transient) => Err(transient),
        }
    }

    /// The relation of a change, or `None` when the copy already holds the change.
    fn relation(&self, oid: Oid, at: Option<Lsn>) -> Result<Option<Arc<Mapped>>, Stop> {
        let relation = self.relations.get(&oid).ok_or_else(|| {
            Stop::Fatal(Error::new(
                ErrorKind::Server,
                format!("the source sent a change for relation OID {oid} before describing it"),
            ))
        })?;
        let skip = at.is_some_and(|at| already_copied(at, relation.copied_at));
        if skip {
            return Ok(None);
        }
        match &relation.mapped {
            Ok(mapped) => Ok(Some(mapped.clone())),
            Err(e) => {
                let error = Error::new(e.kind, e.message.clone());
                Err(Stop::Fatal(match &e.hint {
                    Some(hint) => error.with_hint(hint.clone()),
                    None => error,
                }))
            }
        }
    }

    async fn insert(&mut self, insert: Insert, at: Option<Lsn>) -> Result<(), Stop> {
        let Some(table) = self.relation(insert.relation_oid, at)? else { return Ok(()) };
        if self.lane_holds(&table, || key_of(&insert.new_tuple, |i| table.columns[i].is_key)) {
            return Ok(());
        }
        let oid = insert.relation_oid;
        self.batch.touched.row(&table, &insert.new_tuple);
        self.batch.counts(&table.table).inserts += 1;
        let row = insert.new_tuple;
        check_width(&row, &table)?;
        let size = row_bytes(&row);
        match table.folding {
            Folding::Append => {
                self.fold(oid, &table, size, |net| {
                    net.append(row);
                    Ok(())
                })
                .await?;
                return Ok(());
            }
            Folding::ByKey => {
                if let Some(key) = key_of(&row, |i| table.columns[i].is_key) {
                    let folded = row.clone();
                    if self.fold(oid, &table, size, |net| net.insert(key, folded)).await? {
                        return Ok(());
                    }
                }
            }
            Folding::InOrder => {}
        }
        let values = values(&row, &table, |_| true)?;
        self.run(oid, &table, &Shape::Insert, &values, "insert into").await
    }

    async fn update(&mut self, update: Update, at: Option<Lsn>) -> Result<(), Stop> {
        let Some(table) = self.relation(update.relation_oid, at)? else { return Ok(()) };
        require_identity(&table, "UPDATE")?;
        let old = update.old_tuple.as_ref().map(OldTuple::columns);
        if self.lane_holds(&table, || kept_key(old, &update.new_tuple, |i| table.columns[i].is_key)) {
            return Ok(());
        }
        if let Some(old) = old {
            self.batch.touched.row(&table, old);
        }
        self.batch.touched.row(&table, &update.new_tuple);
        self.batch.counts(&table.table).updates += 1;
        check_width(&update.new_tuple, &table)?;
        if table.folding == Folding::ByKey {
            if let Some(key) = kept_key(old, &update.new_tuple, |i| table.columns[i].is_key) {
                let row = with_key(&table, &key, update.new_tuple.clone());
                let size = row_bytes(&row);
                if self.fold(update.relation_oid, &table, size, |net| net.update(key, row)).await? {
                    return Ok(());
                }
            }
        }
        let shape = update_shape(&table.columns, table.full, old, &update.new_tuple);
        let Shape::Update { set, matching, guard } = &shape else { unreachable!("update_shape builds updates") };
        if set.iter().any(|s| *s) {
            let mut params = values(&update.new_tuple, &table, |i| set[i])?;
            params.extend(match_values(&table, matching, old, &update.new_tuple)?);
            params.extend(values(&update.new_tuple, &table, |i| guard[i])?);
            self.run(update.relation_oid, &table, &shape, &params, "update").await?;
        }
        Ok(())
    }

    async fn delete(&mut self, delete: Delete, at: Option<Lsn>) -> Result<(), Stop> {
        let Some(table) = self.relation(delete.relation_oid, at)? else { return Ok(()) };
        require_identity(&table, "DELETE")?;
        let old = delete.old_tuple.columns();
        if self.lane_holds(&table, || key_of(old, |i| table.columns[i].is_key)) {
            return Ok(());
        }
        self.batch.touched.row(&table, old);
        self.batch.counts(&table.table).deletes += 1;
        if table.folding == Folding::ByKey {
            if let Some(key) = key_of(old, |i| table.columns[i].is_key) {
                let size = key.iter().map(bytes::Bytes::len).sum();
                if self.fold(delete.relation_oid, &table, size, |net| net.delete(key)).await? {
                    return Ok(());
                }
            }
        }
        let shape = Shape::Delete { matching: matching(table.full, Some(old)) };
        let Shape::Delete { matching } = &shape else { unreachable!() };
        let params = match_values(&table, matching, Some(old), old)?;
        self.run(delete.relation_oid, &table, &shape, &params, "delete from").await
    }

    async fn truncate(&mut self, truncate: Truncate, at: Option<Lsn>) -> Result<(), Stop> {
        let mut tables = Vec::new();
        for oid in &truncate.relation_oids {
            if let Some(table) = self.relation(*oid, at)? {
                tables.push(table);
            }
        }
        if tables.is_empty() {
            return Ok(());
        }
        self.send_all_pending().await?;
        self.open_target().await?;
        // A partitioned table published through its root arrives by that name;
        // its truncation on the source reached every partition, and PostgreSQL
        // refuses ONLY on a partitioned table.
        let mut sql = Sql::new("TRUNCATE ");
        for (i, table) in tables.iter().enumerate() {
            sql = sql.push(if i == 0 { "" } else { ", " }).push(table.only()).name(&table.table);
        }
        if truncate.restart_identity {
            sql = sql.push(" RESTART IDENTITY");
        }
        self.target
            .batch_execute(sql.as_str())
            .await
            .map_err(|e| Stop::target("applying a TRUNCATE on the target", e))?;
        for table in &tables {
            self.batch.touched.whole(&table.table);
            self.batch.counts(&table.table).truncates += 1;
        }
        Ok(())
    }

    /// Sends one change's statement, after the table's net changes.
    async fn run(
        &mut self,
        oid: Oid,
        table: &Mapped,
        shape: &Shape,
        params: &[Option<&str>],
        verb: &'static str,
    ) -> Result<(), Stop> {
        self.send_pending(oid).await?;
        let owned: Vec<Option<String>> = params.iter().map(|p| p.map(str::to_string)).collect();
        let bytes = held_bytes(owned.iter());
        self.send(oid, table, shape, owned, Sent { rows: 1, bytes }, verb).await
    }

    /// Sends a statement; its answer (exactly `sent.rows` rows touched) is
    /// checked when the batch commits ([`Applier::commit_batch`]), or earlier
    /// when [`MAX_IN_FLIGHT`] statements or [`MAX_IN_FLIGHT_BYTES`] are waiting.
    async fn send<P>(
        &mut self,
        oid: Oid,
        table: &Mapped,
        shape: &Shape,
        params: Vec<P>,
        sent: Sent,
        verb: &'static str,
    ) -> Result<(), Stop>
    where
        P: tokio_postgres::types::ToSql + Sync + Send + 'a,
    {
        self.open_target().await?;
        let statement = self
            .statements
            .get(self.target, oid, table, shape)
            .await
            .map_err(|e| Stop::target(&format!("applying a change ({verb} {}) on the target", table.table), e))?;
        let client = self.target;
        let mut answer: Answer<'a> = Box::pin(async move { client.execute_raw(&statement, params.iter()).await });
        // The first poll sends the request, so requests leave in stream order.
        let expect = Expect { table: table.table.clone(), verb, rows: sent.rows, at: self.current };
        match futures_util::poll!(answer.as_mut()) {
            Poll::Ready(touched) => check(&expect, touched)?,
            Poll::Pending => {
                self.in_flight_bytes += sent.bytes;
                self.in_flight.push_back(InFlight { answer, expect, bytes: sent.bytes });
            }
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT || self.in_flight_bytes > MAX_IN_FLIGHT_BYTES {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), Stop> {
        if let Some(mut sent) = self.in_flight.pop_front() {
            self.in_flight_bytes -= sent.bytes;
            let touched = sent.answer.as_mut().await;
            check(&sent.expect, touched)?;
        }
        Ok(())
    }
}

/// A batch's journal rows, in its transaction: the applied position (lane
/// 0), or the lane's position and tables; per-table counts; touched keys.
/// Sent together: one round trip.
async fn journal(
    target: &Client,
    migration: &MigrationName,
    lane: Option<(usize, usize)>,
    batch: &Batch,
    rate: Option<f64>,
) -> Result<(), tokio_postgres::Error> {
    match (batch.end, lane) {
        (Some((end, commit_time)), None) => {
            tokio::try_join!(
                progress::record(target, migration, end, Some(commit_time), &batch.stats, rate),
                touched::record(target, migration, end, &batch.touched),
            )?;
        }
        (Some((end, _)), Some((lane, lanes))) => {
            let tables: Vec<String> = batch.stats.keys().map(ToString::to_string).collect();
            tokio::try_join!(
                super::lanes::record(target, migration, lane, lanes, end, &tables),
                progress::record_stats(target, migration, &batch.stats),
                touched::record(target, migration, end, &batch.touched),
            )?;
        }
        (None, _) => {}
    }
    Ok(())
}

/// A row the source routed to a partition the target lacks: change capture
/// stops before anything of its batch is committed, with the partition key's
/// values the server reported.
fn missing_partition(table: &QualifiedName, e: &tokio_postgres::Error, at: &str) -> Option<Stop> {
    let db = e.as_db_error()?;
    if *db.code() != SqlState::CHECK_VIOLATION || !db.message().starts_with("no partition of relation") {
        return None;
    }
    let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
    Some(Stop::Fatal(
        Error::new(
            ErrorKind::Precondition,
            format!("change capture stopped: the source holds a partition of {table} for a row that no partition of it on the target accepts{detail}, in the source transaction committing at {at}"),
        )
        .with_hint(format!("a partition was created or attached on the source after the copy: create the same partition of {table} on the target, then rerun pgferry follow: every change since the last applied position is still in the slot")),
    ))
}

/// Each statement must touch exactly the rows it was sent for.
fn check(sent: &Expect, touched: Result<u64, tokio_postgres::Error>) -> Result<(), Stop> {
    let (table, verb) = (&sent.table, sent.verb);
    let at = sent.at.map(|l| l.to_string()).unwrap_or_default();
    let touched = touched.map_err(|e| {
        missing_partition(table, &e, &at)
            .unwrap_or_else(|| Stop::target(&format!("applying a change ({verb} {table}) on the target"), e))
    })?;
    if touched == sent.rows {
        return Ok(());
    }
    let what = if sent.rows == 1 {
        format!("the row to {verb} {table} was not found on the target")
    } else {
        format!(
            "{} of the {} rows to {verb} {table} were not found on the target",
            sent.rows.abs_diff(touched),
            sent.rows
        )
    };
    Err(Stop::Fatal(
        Error::new(ErrorKind::Precondition, format!("{what} (source transaction committing at {at})"))
        .with_hint("the target no longer holds what the source held (a write on the target, or a table changed by hand); pgferry stops rather than let them drift apart: find the cause, then copy this table again"),
    ))
}

fn check_width(tuple: &[Column], table: &Mapped) -> Result<(), Stop> {
    if tuple.len() == table.columns.len() {
        return Ok(());
    }
    Err(Stop::Fatal(Error::new(
        ErrorKind::Server,
        format!(
            "a change to {} has {} columns where its description has {}",
            table.table,
            tuple.len(),
            table.columns.len()
        ),
    )))
}

fn require_identity(table: &Mapped, what: &str) -> Result<(), Stop> {
    if table.has_key() {
        return Ok(());
    }
    Err(Stop::Fatal(
        Error::new(
            ErrorKind::Precondition,
            format!("the source sent an {what} for {}, which has no replica identity", table.table),
        )
        .with_hint(
            "give the table a primary key or REPLICA IDENTITY FULL on the source and the target, then copy it again",
        ),
    ))
}

/// The values of the columns `pick` selects, as text (`None` for NULL).
fn values<'t>(tuple: &'t [Column], table: &Mapped, pick: impl Fn(usize) -> bool) -> Result<Vec<Option<&'t str>>, Stop> {
    check_width(tuple, table)?;
    tuple.iter().enumerate().filter(|(i, _)| pick(*i)).map(|(i, column)| text(column, table, i)).collect()
}

/// The values that find the row: key columns from the old key (or from the new
/// tuple when the key did not change), or every sent old value under FULL.
fn match_values<'t>(
    table: &Mapped,
    matching: &super::statements::Matching,
    old: Option<&'t [Column]>,
    new: &'t [Column],
) -> Result<Vec<Option<&'t str>>, Stop> {
    match matching {
        super::statements::Matching::Key => values(old.unwrap_or(new), table, |i| table.columns[i].is_key),
        super::statements::Matching::Full(mask) => values(old.unwrap_or(new), table, |i| mask[i]),
    }
}

/// The bytes of a row image's values.
fn row_bytes(row: &[Column]) -> usize {
    row.iter()
        .map(|c| match c {
            Column::Text(b) | Column::Binary(b) => b.len(),
            Column::Null | Column::UnchangedToast => 0,
        })
        .sum()
}

fn text<'t>(column: &'t Column, table: &Mapped, i: usize) -> Result<Option<&'t str>, Stop> {
    let name = || table.columns[i].name.as_str().to_string();
    match column {
        Column::Null => Ok(None),
        Column::Text(bytes) => std::str::from_utf8(bytes).map(Some).map_err(|_| {
            Stop::Fatal(
                Error::new(
                    ErrorKind::Precondition,
                    format!("a value of {}.{} is not valid UTF-8", table.table, name()),
                )
                .with_hint("pgferry needs UTF8 databases for change capture"),
            )
        }),
        Column::UnchangedToast => Err(Stop::Fatal(Error::new(
            ErrorKind::Server,
            format!("the source sent no value for the key column {}.{}", table.table, name()),
        ))),
        Column::Binary(_) => Err(Stop::Fatal(Error::new(
            ErrorKind::Server,
            format!("the source sent a binary value for {}.{} though text was asked for", table.table, name()),
        ))),
    }
}
