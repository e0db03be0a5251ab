//! Parallel apply (`--apply-lanes N`): a batch applied over N target
//! sessions, split by key, where order across keys cannot matter.
//!
//! Each source transaction is held in memory until its commit arrives. If all
//! its changes are to tables whose key is their only unique constraint (the
//! tables [`super::net`] folds: no other unique index, no exclusion
//! constraint, no trigger firing in replica mode) and keep their key, it is
//! split by (table, key) into the lanes ([`super::lanes::lane_of`]): changes
//! to different keys of such tables commute, and every change of one key goes
//! to one lane, in order. Each lane folds and sends its part on its own
//! session, inside its own target transaction, so the target works on N
//! statements at once.
//!
//! A table that does not fold (another unique index, a deferrable or
//! exclusion constraint, REPLICA IDENTITY FULL, no key: the order of its
//! changes across keys can be seen) has all its changes applied on lane 0,
//! in stream order, as one session would: no other lane touches it, and
//! under replica role no constraint or trigger relates two tables.
//!
//! Anything whose order across lanes can be seen is a barrier: an UPDATE
//! changing the key of a folding table (the old key and the new one may be in
//! two lanes), TRUNCATE (an exclusive lock, and rows of the table in every
//! lane), a replayed DDL command, a change to a table with a trigger or rule
//! firing in replica mode (it may read any table), a new description of a
//! table the held transaction changed, and a transaction too large to hold.
//! At a barrier the lanes commit what they hold (whole earlier transactions),
//! and the rest of the batch, from the barrier's transaction on, is applied
//! on lane 0 alone, in stream order, exactly as with one lane. The next batch
//! is split again.
//!
//! Foreign keys need no barrier: the apply sessions run with
//! `session_replication_role = replica`, where the target checks no foreign
//! key (its triggers do not fire), as for PostgreSQL's own subscriber; each
//! lane's rows are the source's committed rows, and once every lane has
//! committed a batch the target holds the source's state at its end, which
//! satisfied the keys. Between the lanes' commits a reader of the target may
//! see one lane's part before another's, as it may see a referencing row
//! before its parent under any apply in replica mode; the cutover reads the
//! target only after the drain has committed every lane.
//!
//! Progress ([`super::lanes`]): lanes 1 to N-1 commit first, each with its own
//! position; lane 0 commits last, with `pgferry.apply_progress`, so that row
//! is a position every lane has passed, and the source's slot is told a
//! position only after lane 0 committed it. A kill between the commits is
//! resolved by the next run, which skips per change what a lane ahead holds.

use std::time::{Duration, Instant};

use pgferry_pgoutput::{Lsn, Message, OldTuple};

use super::changes::{Applier, Committed, Committing, RefusedDdl};
use super::lanes::lane_of;
use super::net::{kept_key, key_of};
use super::relation::Folding;
use super::Stop;

/// A source transaction held for the lanes is applied on lane 0 alone past
/// this many changes, or [`MAX_HELD_BYTES`] of them: a large transaction is
/// one batch anyway, and holding it whole would cost its size in memory.
const MAX_HELD_CHANGES: usize = 20_000;
const MAX_HELD_BYTES: usize = 16 << 20;

/// Change capture's apply: one target session, or lanes.
pub(crate) enum Apply<'a> {
    Single(Box<Applier<'a>>),
    Lanes(Box<Lanes<'a>>),
}

/// N appliers, each on its own target session; lane 0's also applies what
/// cannot be split.
pub(crate) struct Lanes<'a> {
    lanes: Vec<Applier<'a>>,
    /// The batch goes on lane 0 alone, from a barrier to its end.
    serial: bool,
    held: Option<Held>,
    /// Complete transactions read while the previous batch commits (with
    /// their end and commit time): sent once it has committed, meanwhile the
    /// stream is read on.
    queued: Vec<(Held, Lsn, i64)>,
    tally: Tally,
    /// The lanes' commits of the last batch, lane 0's last.
    committing: Option<Committing<'a>>,
    committed: Vec<Committed>,
    rate: Option<f64>,
    /// Descriptions lane 0 took in a serial batch: the other lanes take them
    /// once that batch is committed. Not before: a lane reading a catalog
    /// would wait behind the locks of lane 0's TRUNCATE or DDL, while lane 0
    /// waits to commit (`pg_partition_tree` locks the partitions).
    deferred: Vec<pgferry_pgoutput::Relation>,
    /// What the committing batch leaves the other lanes to take once committed.
    after_commit: AfterCommit,
    /// What they take before their next statement.
    due: AfterCommit,
}

/// What the other lanes catch up with once a serial batch is committed: its
/// descriptions, and a new mapping of every relation after a replayed DDL
/// command (lane 0 mapped them again already).
#[derive(Default)]
struct AfterCommit {
    describe: Vec<pgferry_pgoutput::Relation>,
    remap: bool,
}

/// The source transaction being read, with each change's lane.
struct Held {
    final_lsn: Lsn,
    messages: Vec<(Message, usize, usize)>,
    changes: usize,
    bytes: usize,
}

/// The open batch, as the stream loop sees it.
#[derive(Default)]
struct Tally {
    opened: Option<Instant>,
    changes: usize,
    bytes: usize,
}

fn relation_of(message: &Message) -> Option<pgferry_pgoutput::Oid> {
    match message {
        Message::Insert(i) => Some(i.relation_oid),
        Message::Update(u) => Some(u.relation_oid),
        Message::Delete(d) => Some(d.relation_oid),
        _ => None,
    }
}

fn is_change(message: &Message) -> bool {
    matches!(message, Message::Insert(_) | Message::Update(_) | Message::Delete(_) | Message::Truncate(_))
}

impl<'a> Lanes<'a> {
    /// `lanes`: one applier per lane, lane 0 first ([`Applier::in_lane`]).
    pub(crate) fn new(lanes: Vec<Applier<'a>>) -> Self {
        Lanes {
            lanes,
            serial: false,
            held: None,
            queued: Vec::new(),
            tally: Tally::default(),
            committing: None,
            committed: Vec::new(),
            rate: None,
            deferred: Vec::new(),
            after_commit: AfterCommit::default(),
            due: AfterCommit::default(),
        }
    }

    fn begin(&mut self, final_lsn: Lsn) {
        self.tally.opened.get_or_insert_with(Instant::now);
        match self.serial {
            true => self.lanes[0].begin(final_lsn),
            false => self.held = Some(Held { final_lsn, messages: Vec::new(), changes: 0, bytes: 0 }),
        }
    }

    fn in_transaction(&self) -> bool {
        self.held.is_some() || self.lanes[0].in_transaction()
    }

    async fn apply(&mut self, message: Message, bytes: usize) -> Result<(), Stop> {
        if is_change(&message) {
            self.tally.changes += 1;
            self.tally.bytes += bytes;
        }
        match message {
            // Every lane needs every description, taken once the running
            // commit is over (nothing is sent on a lane while it commits).
            Message::Relation(relation) => {
                // Changes held before a new description are applied under the
                // old one, on lane 0 in order.
                let oid = Some(relation.oid);
                if !self.serial
                    && self.held.as_ref().is_some_and(|h| h.messages.iter().any(|m| relation_of(&m.0) == oid))
                {
                    self.barrier().await?;
                }
                self.dispatch_queued().await?;
                self.lanes[0].describe(relation.clone()).await?;
                if self.serial {
                    self.deferred.push(relation);
                    return Ok(());
                }
                for lane in self.lanes.iter_mut().skip(1) {
                    lane.describe(relation.clone()).await?;
                }
                Ok(())
            }
            Message::Type(t) => {
                for lane in &mut self.lanes {
                    lane.apply(Message::Type(t.clone()), bytes).await?;
                }
                Ok(())
            }
            message if self.serial || self.held.is_none() => self.lanes[0].apply(message, bytes).await,
            message => {
                let held = self.held.as_ref().expect("checked above");
                let lane = self.route(&message, held.final_lsn);
                let held = self.held.as_mut().expect("checked above");
                held.changes += usize::from(is_change(&message));
                held.bytes += bytes;
                held.messages.push((message, bytes, lane.unwrap_or(0)));
                if lane.is_none() || held.changes > MAX_HELD_CHANGES || held.bytes > MAX_HELD_BYTES {
                    self.barrier().await?;
                }
                Ok(())
            }
        }
    }

    /// The lane of a change, or `None` for a barrier.
    fn route(&self, message: &Message, at: Lsn) -> Option<usize> {
        let oid = match (message, relation_of(message)) {
            (_, Some(oid)) => oid,
            (Message::Truncate(_), None) => return None,
            // Nothing to apply (an origin, a logical message).
            (_, None) => return Some(0),
        };
        // A relation that cannot be mapped stops apply on lane 0, which says why.
        let table = match self.lanes[0].mapped(oid, Some(at)) {
            Ok(Some(table)) => table,
            Ok(None) => return Some(0),
            Err(_) => return None,
        };
        if table.replica_logic {
            return None;
        }
        if table.folding != Folding::ByKey {
            // Every change of the table on lane 0, in stream order.
            return Some(0);
        }
        let is_key = |i: usize| table.columns[i].is_key;
        let key = match message {
            Message::Insert(i) => key_of(&i.new_tuple, is_key),
            Message::Update(u) => kept_key(u.old_tuple.as_ref().map(OldTuple::columns), &u.new_tuple, is_key),
            Message::Delete(d) => key_of(d.old_tuple.columns(), is_key),
            _ => None,
        };
        key.map(|key| lane_of(&table.table, &key, self.lanes.len()))
    }

    /// A barrier in the held transaction: the lanes commit the batch's
    /// earlier transactions, then lane 0 applies this one from its start, and
    /// the rest of the batch.
    async fn barrier(&mut self) -> Result<(), Stop> {
        let held = self.held.take();
        self.dispatch_queued().await?;
        if self.lanes.iter().any(|l| l.has_work() || l.batch.transactions > 0) {
            self.commit_lanes(self.rate).await?;
        }
        self.settle().await?;
        self.serial = true;
        if let Some(held) = held {
            self.lanes[0].begin(held.final_lsn);
            for (message, bytes, _) in held.messages {
                self.lanes[0].apply(message, bytes).await?;
            }
        }
        Ok(())
    }

    async fn ddl(&mut self, at: Lsn, content: &[u8]) -> Result<(), Stop> {
        if !self.serial {
            self.barrier().await?;
        }
        self.lanes[0].ddl(at, content).await
    }

    /// The held transaction is complete: each lane applies its part, once
    /// the previous batch has committed.
    async fn end_transaction(&mut self, end: Lsn, commit_time: i64) -> Result<(), Stop> {
        let Some(held) = self.held.take() else {
            self.lanes[0].end_transaction(end, commit_time);
            return Ok(());
        };
        self.queued.push((held, end, commit_time));
        if self.commit_running()? {
            return Ok(());
        }
        self.dispatch_queued().await
    }

    /// Whether the previous batch's commit still runs (looking, without
    /// waiting, whether it just finished).
    fn commit_running(&mut self) -> Result<bool, Stop> {
        let Some(committing) = self.committing.as_mut() else { return Ok(false) };
        match futures_util::FutureExt::now_or_never(committing.as_mut()) {
            Some(done) => self.committed_now(done).map(|()| false),
            None => Ok(true),
        }
    }

    /// Sends the queued transactions, after the previous batch's commit:
    /// nothing of a batch is sent before the previous one committed.
    async fn dispatch_queued(&mut self) -> Result<(), Stop> {
        self.settle().await?;
        for (held, end, commit_time) in std::mem::take(&mut self.queued) {
            self.dispatch(held, end, commit_time).await?;
        }
        Ok(())
    }

    async fn dispatch(&mut self, held: Held, end: Lsn, commit_time: i64) -> Result<(), Stop> {
        for lane in &mut self.lanes {
            lane.begin(held.final_lsn);
        }
        for (message, bytes, lane) in held.messages {
            self.lanes[lane].apply(message, bytes).await?;
        }
        for lane in &mut self.lanes {
            lane.end_transaction(end, commit_time);
        }
        Ok(())
    }

    async fn commit_batch(&mut self, rate: Option<f64>) -> Result<(), Stop> {
        self.dispatch_queued().await?;
        self.rate = rate;
        self.tally = Tally::default();
        if std::mem::take(&mut self.serial) {
            self.after_commit =
                AfterCommit { describe: std::mem::take(&mut self.deferred), remap: self.lanes[0].batch.replayed_ddl };
            self.lanes[0].commit_batch(rate).await?;
            self.committing = self.lanes[0].committing.take();
            return Ok(());
        }
        self.commit_lanes(rate).await
    }

    /// Starts the lanes' commits: lanes 1 to N-1 together (those that sent
    /// nothing have nothing to commit), then lane 0 with the applied position.
    async fn commit_lanes(&mut self, rate: Option<f64>) -> Result<(), Stop> {
        let mut others = Vec::new();
        for lane in self.lanes.iter_mut().skip(1) {
            if lane.has_work() {
                lane.commit_batch(None).await?;
                others.extend(lane.committing.take());
            } else {
                lane.discard_batch();
            }
        }
        self.lanes[0].commit_batch(rate).await?;
        let first = self.lanes[0].committing.take().expect("commit_batch starts the commit");
        self.committing = Some(Box::pin(async move {
            let mut changes = 0;
            let mut stats = std::collections::BTreeMap::new();
            let mut seconds = 0f64;
            for done in futures_util::future::join_all(others).await {
                let done = done?;
                changes += done.changes;
                seconds = seconds.max(done.seconds);
                merge(&mut stats, done.stats);
            }
            let mut zero = first.await?;
            zero.changes += changes;
            zero.seconds = zero.seconds.max(seconds);
            merge(&mut zero.stats, stats);
            Ok(zero)
        }));
        Ok(())
    }

    /// Waits for the running commit; then the other lanes take what lane 0
    /// took in it ([`AfterCommit`]).
    async fn settle(&mut self) -> Result<(), Stop> {
        if let Some(committing) = self.committing.take() {
            let done = committing.await;
            self.committed_now(done)?;
        }
        let due = std::mem::take(&mut self.due);
        for lane in self.lanes.iter_mut().skip(1) {
            for relation in &due.describe {
                lane.describe(relation.clone()).await?;
            }
            if due.remap {
                lane.remap_relations().await?;
            }
        }
        Ok(())
    }

    fn committed_now(&mut self, done: Result<Committed, Stop>) -> Result<(), Stop> {
        self.committing = None;
        self.committed.push(done?);
        let after = std::mem::take(&mut self.after_commit);
        self.due.describe.extend(after.describe);
        self.due.remap |= after.remap;
        Ok(())
    }
}

fn merge(
    into: &mut std::collections::BTreeMap<pgferry_core::sql::QualifiedName, super::progress::Counts>,
    from: std::collections::BTreeMap<pgferry_core::sql::QualifiedName, super::progress::Counts>,
) {
    for (table, c) in from {
        let sum = into.entry(table).or_default();
        sum.inserts += c.inserts;
        sum.updates += c.updates;
        sum.deletes += c.deletes;
        sum.truncates += c.truncates;
    }
}

impl<'a> Apply<'a> {
    pub(crate) fn begin(&mut self, final_lsn: Lsn) {
        match self {
            Apply::Single(a) => a.begin(final_lsn),
            Apply::Lanes(l) => l.begin(final_lsn),
        }
    }

    pub(crate) async fn apply(&mut self, message: Message, bytes: usize) -> Result<(), Stop> {
        match self {
            Apply::Single(a) => a.apply(message, bytes).await,
            Apply::Lanes(l) => Box::pin(l.apply(message, bytes)).await,
        }
    }

    pub(crate) async fn ddl(&mut self, at: Lsn, content: &[u8]) -> Result<(), Stop> {
        match self {
            Apply::Single(a) => a.ddl(at, content).await,
            Apply::Lanes(l) => Box::pin(l.ddl(at, content)).await,
        }
    }

    pub(crate) async fn end_transaction(&mut self, end: Lsn, commit_time: i64) -> Result<(), Stop> {
        match self {
            Apply::Single(a) => {
                a.end_transaction(end, commit_time);
                Ok(())
            }
            Apply::Lanes(l) => Box::pin(l.end_transaction(end, commit_time)).await,
        }
    }

    pub(crate) fn in_transaction(&self) -> bool {
        match self {
            Apply::Single(a) => a.in_transaction(),
            Apply::Lanes(l) => l.in_transaction(),
        }
    }

    /// Whether a batch is open (a source transaction began since the last commit).
    pub(crate) fn batch_open(&self) -> bool {
        match self {
            Apply::Single(a) => a.batch.opened.is_some(),
            Apply::Lanes(l) => l.tally.opened.is_some(),
        }
    }

    pub(crate) fn batch_age(&self) -> Duration {
        match self {
            Apply::Single(a) => a.batch.age(),
            Apply::Lanes(l) => l.tally.opened.map(|o| o.elapsed()).unwrap_or_default(),
        }
    }

    pub(crate) fn batch_changes(&self) -> usize {
        match self {
            Apply::Single(a) => a.batch.changes,
            Apply::Lanes(l) => l.tally.changes,
        }
    }

    pub(crate) fn batch_bytes(&self) -> usize {
        match self {
            Apply::Single(a) => a.batch.bytes,
            Apply::Lanes(l) => l.tally.bytes,
        }
    }

    pub(crate) fn replayed_ddl(&self) -> bool {
        match self {
            Apply::Single(a) => a.batch.replayed_ddl,
            Apply::Lanes(l) => l.serial && l.lanes[0].batch.replayed_ddl,
        }
    }

    /// The previous batch's commit, while it runs.
    pub(crate) fn committing(&mut self) -> Option<&mut Committing<'a>> {
        match self {
            Apply::Single(a) => a.committing.as_mut(),
            Apply::Lanes(l) => l.committing.as_mut(),
        }
    }

    pub(crate) fn commit_finished(&mut self) -> Result<bool, Stop> {
        match self {
            Apply::Single(a) => a.commit_finished(),
            Apply::Lanes(l) => l.commit_running().map(|running| !running),
        }
    }

    pub(crate) fn committed_now(&mut self, done: Result<Committed, Stop>) -> Result<(), Stop> {
        match self {
            Apply::Single(a) => a.committed_now(done),
            Apply::Lanes(l) => l.committed_now(done),
        }
    }

    pub(crate) async fn wait_committed(&mut self) -> Result<(), Stop> {
        match self {
            Apply::Single(a) => a.wait_committed().await,
            Apply::Lanes(l) => Box::pin(l.settle()).await,
        }
    }

    pub(crate) fn take_committed(&mut self) -> Vec<Committed> {
        match self {
            Apply::Single(a) => a.take_committed(),
            Apply::Lanes(l) => std::mem::take(&mut l.committed),
        }
    }

    pub(crate) async fn commit_batch(&mut self, rate: Option<f64>) -> Result<(), Stop> {
        match self {
            Apply::Single(a) => a.commit_batch(rate).await,
            Apply::Lanes(l) => Box::pin(l.commit_batch(rate)).await,
        }
    }

    pub(crate) fn take_refused_ddl(&mut self) -> Option<RefusedDdl> {
        match self {
            Apply::Single(a) => a.refused_ddl.take(),
            Apply::Lanes(l) => l.lanes[0].refused_ddl.take(),
        }
    }
}
