//! `pgferry follow`: change capture. After the copy, the target is kept current by
//! reading the source's changes from the migration's logical replication slot
//! (plugin pgoutput) and applying them in commit order until the cutover
//! ([Logical Decoding](https://www.postgresql.org/docs/current/logicaldecoding.html)).
//!
//! Guarantees, and where each comes from:
//! - **Nothing lost, nothing twice.** Changes are applied in batches of whole
//!   source transactions; each batch commits on the target together with the end
//!   LSN of its last transaction ([`progress`]). Only after that commit is the
//!   position reported to the source as flushed, so the slot keeps everything the
//!   target does not hold. A restart (after a crash, a kill, a server restart)
//!   resumes from the journaled position: the server sends only transactions that
//!   commit after it.
//! - **Large transactions in bounded memory.** From a source of PostgreSQL 14 or
//!   later, a transaction larger than its `logical_decoding_work_mem` arrives
//!   streamed before it commits; it is spooled to a temporary file and applied
//!   at its commit as one transaction like any other ([`streamed`]).
//! - **Exact values.** Values travel as text under pinned settings and are cast to
//!   the target column's type ([`stream`], [`statements`]).
//! - **The target's own logic stays out.** The apply session runs with
//!   `session_replication_role = replica`: foreign keys and user triggers do not
//!   fire, as for PostgreSQL's own subscriber.
//! - **Fast where it is safe.** Within a batch, a table's changes fold into net
//!   set statements when only its key's unique index could see their order
//!   ([`net`]), and a batch commits while the next one is read ([`batch`]).
//! - **Parallel where order cannot be seen** (`--apply-lanes N`): a batch is
//!   split by key over N target sessions, with barriers where order across
//!   keys matters, and each lane's position is journaled in its own commit
//!   ([`parallel`], [`lanes`]).
//! - **Schema changes stop apply** before the changed table is touched, naming the
//!   table and column ([`relation`]); with DDL capture ([`crate::ddl`]) the
//!   source's commands arrive in the stream and are replayed in order instead.
//! - **New relations are named**: tables the source has that the publication or
//!   the target lacks are reported at the start and every [`RELATIONS_EVERY`].
//! - **The copy's resumed tables** skip what their later snapshot already holds
//!   ([`batch::already_copied`]).
//!
//! Lost connections to either server (a restart, a network cut) are retried with
//! a backoff, reported once per episode with its cause; the open batch is rolled
//! back by the server and applied again from the stream. A connection that
//! stops answering without closing (half-open) is found dead by the deadlines
//! of [`liveness`]: silence from the source for twice its `wal_sender_timeout`,
//! or a target that does not answer a probe ([`watchdog`]).

mod batch;
mod changes;
mod lanes;
mod liveness;
mod net;
mod parallel;
mod progress;
mod relation;
mod samples;
mod statements;
mod stream;
mod streamed;
pub(crate) mod touched;
mod watchdog;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgferry_core::names::MigrationName;
use pgferry_pg::replication::ReplicationError;
use pgferry_pg::{sqlstate, ConnSpec};
use pgferry_pgoutput::{Decoder, Lsn, Message, StreamCommit};
use serde::Serialize;
use tokio_postgres::Client;

pub use batch::BatchLimits;
pub use progress::Counts as TableChanges;
pub(crate) use stream::DURABLE_COMMITS;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events, Phase};
use changes::Applier;
use liveness::Liveness;
use parallel::{Apply, Lanes};

/// The prefix of the logical message that marks "caught up" in the stream.
const CAUGHT_UP_PREFIX: &str = "pgferry_caught_up";
/// How long an episode of connection failures is retried before giving up (the
/// cutover drains inside its fence with this same limit).
const RETRY_FOR: Duration = Duration::from_secs(120);
/// How often, at most, a keepalive's position is recorded while quiet.
const IDLE_RECORD_EVERY: Duration = Duration::from_secs(1);
/// How often a status is emitted and sampled into the journal ([`samples`]).
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// The longest a status waits for its sample to be journaled.
const SAMPLE_WITHIN: Duration = Duration::from_secs(1);
/// How often the source's relations are compared with the publication and the target.
const RELATIONS_EVERY: Duration = Duration::from_secs(30);
/// The tag of pgoutput's Stream Stop, the one message of a stream block that
/// is not spooled ([`streamed`]).
const STREAM_STOP: u8 = b'E';
/// A streamed transaction's spool larger than this is applied with the stream
/// closed ([`Run::apply_streamed`]): a smaller one is applied well within any
/// `wal_sender_timeout`.
const REOPEN_ABOVE: u64 = 4 * 1024 * 1024;
/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    pub migration: MigrationName,
    pub until: Until,
    pub batch: BatchLimits,
    /// Set to `true` to stop after the current source transaction (a service's
    /// SIGTERM): the open batch is committed, the position acknowledged.
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// The cutover's drain (or a rehearsal of it): inside the fence, where the
    /// gate compared the catalogs already, only the stream runs (no catalog
    /// read to lengthen the downtime).
    pub drain: bool,
    /// Target sessions a batch is split over by key ([`parallel`]); 1 applies
    /// every batch on one session. A run after a kill keeps the lane count of
    /// the killed run until its lanes agree again ([`lanes`]).
    pub lanes: usize,
}

/// When `follow` returns.
#[derive(Clone, Debug)]
pub enum Until {
    /// Runs until stopped.
    Stopped,
    /// Once every transaction committed before this position is applied.
    Lsn(Lsn),
    /// Once every transaction committed on the source before the start is applied.
    CaughtUp,
    /// The cutover's drain, started before its fence ([`FencedDrain`]).
    Fenced(FencedDrain),
}

/// The cutover's drain, started while the application still writes: its
/// connections, the slot's decoding start and the tables' descriptions then
/// cost nothing of the downtime, and inside the fence only the tail is applied.
/// It follows as change capture always does until the fenced source's end
/// position is given ([`Self::read`]'s sender); once every transaction
/// committed before it is applied, it returns. It opens no session on the
/// source but its change stream, which the fence spares: the fence ends every
/// other session on the database, so what the drain needs of the source is
/// read on the caller's session.
#[derive(Clone, Debug)]
pub struct FencedDrain {
    liveness: Liveness,
    source_version: i32,
    end: tokio::sync::watch::Receiver<Option<Lsn>>,
}

impl FencedDrain {
    /// Reads what the drain needs of the source on `src`; returns the drain and
    /// the sender of its end position.
    pub(crate) async fn read(src: &Client) -> Result<(FencedDrain, tokio::sync::watch::Sender<Option<Lsn>>)> {
        let row = src
            .query_one("SELECT current_setting('wal_sender_timeout'), current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| Error::server("reading the source's wal_sender_timeout and version", e))?;
        let shown: String = row.get(0);
        let liveness = Liveness::from_shown(&shown).ok_or_else(|| {
            Error::new(ErrorKind::Server, format!("the source shows an unreadable wal_sender_timeout: {shown}"))
        })?;
        let (sender, end) = tokio::sync::watch::channel(None);
        Ok((FencedDrain { liveness, source_version: row.get(1), end }, sender))
    }
}

/// Where a run stops: a position known at its start, or one given later
/// ([`Until::Fenced`]).
#[derive(Clone, Default)]
struct StopAt {
    known: Option<Lsn>,
    later: Option<tokio::sync::watch::Receiver<Option<Lsn>>>,
}

impl StopAt {
    /// The position as far as it is known now.
    fn now(&self) -> Option<Lsn> {
        self.known.or_else(|| self.later.as_ref().and_then(|end| *end.borrow()))
    }
}

/// Progress, for whoever draws it.
#[derive(Clone, Debug)]
pub enum FollowEvent {
    Started {
        from: Lsn,
    },
    Status {
        applied: Lsn,
        lag_bytes: u64,
        lag_seconds: f64,
        changes_per_second: f64,
        /// WAL the source keeps for the slot (`None`: it could not be read).
        slot_retained_bytes: Option<u64>,
    },
    /// A batch committed on the target.
    Applied {
        transactions: u64,
        /// Per table (`schema.table`, unquoted, as `status` shows it): inserts,
        /// updates, deletes, truncates.
        tables: Vec<(String, TableChanges)>,
        /// From its first change to its commit's end.
        seconds: f64,
    },
    /// A connection was lost or found dead: reported once per episode of
    /// failures, with the cause that began it; the episode ends with a session
    /// that hears from the source again.
    Reconnecting {
        cause: String,
    },
    /// The source's walsender failed decoding a transaction streamed in
    /// progress (`cause`): change capture goes on with each transaction sent
    /// whole at its commit ([`Stop::Decoder`]).
    StreamingOff {
        cause: String,
    },
    /// Relations of the source that change capture does not carry (named when
    /// the list changes).
    Unreplicated {
        relations: Vec<crate::ddl::Unreplicated>,
    },
}

/// The outcome of a run that reached its end position.
#[derive(Debug, Serialize)]
pub struct FollowReport {
    pub migration: String,
    pub applied_lsn: String,
    pub transactions: u64,
    pub changes: u64,
}

/// Why a session ended: retry it, or give up.
pub(crate) enum Stop {
    Transient(Error),
    Fatal(Error),
    /// Nothing failed: the session ends so that a new one starts from what the
    /// target committed ([`Run::apply_streamed`]).
    Reopen,
    /// The source's walsender failed while decoding with an internal error
    /// (`XX000`): a PostgreSQL bug. The decoding of transactions streamed in
    /// progress has been seen to hit one (`could not open relation with OID`
    /// for a TRUNCATE in a streamed transaction, on 15.18) where decoding each
    /// transaction whole at its commit does not: the next session asks for
    /// that ([`Attempt::stream_in_progress`]); without streaming it is fatal.
    Decoder {
        error: Error,
        streamed: bool,
    },
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fatal(e)
    }
}

impl Stop {
    /// A failed statement on the target: transient when the connection went away,
    /// or when a wait ran into the session's time limits
    /// ([`sqlstate::Class::retried_by_apply`]).
    pub(crate) fn target(doing: &str, e: tokio_postgres::Error) -> Stop {
        let retried = sqlstate::of_statement(&e).retried_by_apply();
        let error = Error::server(doing, e);
        if retried {
            Stop::Transient(error)
        } else {
            Stop::Fatal(error)
        }
    }

    /// A failure of the stream; `streamed`: the session received a block of a
    /// transaction streamed in progress (the walsender sends a block's start
    /// before it decodes the block's changes).
    fn stream(e: pgwire_replication::PgWireError, streamed: bool) -> Stop {
        let reopens = sqlstate::of_transport(&e).reopens_stream();
        let code = sqlstate::code_of_transport(&e);
        let internal = code.as_ref() == Some(&tokio_postgres::error::SqlState::INTERNAL_ERROR);
        let error = Error::from(ReplicationError {
            doing: "reading the source's change stream".into(),
            cause: e.to_string(),
            code,
        });
        if reopens {
            Stop::Transient(error)
        } else if internal {
            Stop::Decoder { error, streamed }
        } else {
            Stop::Fatal(error)
        }
    }
}

/// Whether a position from the server is recorded at once (the caught-up
/// mark) or only when apply is quiet (a keepalive's).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Advance {
    Now,
    WhenQuiet,
}

/// What the loop of a session handles next.
enum Next {
    Event(stream::Event),
    /// The previous batch's commit finished.
    Committed,
    /// Nothing arrived before a status was due.
    StatusDue,
    /// Nothing arrived in time, or a shutdown was requested.
    Idle,
}

/// The warning of [`FollowEvent::StreamingOff`].
const STREAMING_OFF: &str = "the source's walsender failed decoding a transaction streamed in progress (an internal error, possibly a PostgreSQL bug in that decoding); change capture goes on with each transaction sent whole at its commit until it restarts (a large one then waits on the source's disk until it commits)";

/// What a session is told by those before it.
#[derive(Clone, Copy)]
struct Attempt {
    /// No session ran before it: a refusal is final ([`watchdog::connect_stop`]).
    first: bool,
    /// Ask a source of 14 or later to stream transactions in progress: on,
    /// until its walsender failed decoding them ([`Stop::Decoder`]).
    stream_in_progress: bool,
}

/// Totals across sessions.
#[derive(Default)]
struct Totals {
    transactions: u64,
    changes: u64,
    applied: Lsn,
    /// Sessions that heard from the source's stream: one that did ends an
    /// episode of connection failures.
    heard_sessions: u64,
}

/// Runs change capture until `options.until` (or an error).
pub async fn follow(
    source: &ConnSpec,
    target: &ConnSpec,
    options: &FollowOptions,
    events: &Events,
) -> Result<FollowReport> {
    let stop_at = match &options.until {
        Until::Stopped => StopAt::default(),
        Until::Lsn(lsn) => StopAt { known: Some(*lsn), later: None },
        Until::CaughtUp => StopAt { known: Some(caught_up_mark(source).await?), later: None },
        Until::Fenced(drain) => StopAt { known: None, later: Some(drain.end.clone()) },
    };
    events.emit(Event::Phase(Phase::Follow));
    if !options.drain {
        if let Err(e) = Box::pin(enum_labels(source, target, &options.migration)).await {
            // Not fatal: the sessions below retry what is transient, and say what is not.
            tracing::warn!("could not compare the enums' labels before following: {}", e.message);
        }
    }
    let mut totals = Totals::default();
    // The current episode of failures: when it began, and the attempts since.
    let mut episode: Option<(Instant, u32)> = None;
    let mut attempt = Attempt { first: true, stream_in_progress: true };
    let mut previous: Vec<watchdog::ApplySession> = Vec::new();
    loop {
        let heard_before = totals.heard_sessions;
        let ended = session(source, target, options, &stop_at, events, &mut totals, attempt, &mut previous).await;
        // A session that heard from the source ends the episode of failures,
        // however it ended itself.
        if totals.heard_sessions != heard_before {
            episode = None;
        }
        match ended {
            Ok(()) => break,
            // A row holding a label the source added while change capture ran
            // (`invalid input value for enum`): the labels are added, and the
            // session starts again where the target stands (not in the
            // cutover's drain, which reads no catalog inside the fence).
            Err(Stop::Fatal(e))
                if !options.drain
                    && matches!(Box::pin(enum_labels(source, target, &options.migration)).await, Ok(n) if n > 0) =>
            {
                tracing::info!("change capture continues with the enum labels the source added: {}", e.message);
            }
            Err(Stop::Reopen) => {}
            Err(Stop::Decoder { error, streamed: true }) => {
                attempt.stream_in_progress = false;
                // Said here too: the cutover's drain and a rehearsal show no
                // change capture events.
                tracing::warn!(cause = %error.message, "{STREAMING_OFF}");
                events.follow(FollowEvent::StreamingOff { cause: error.message });
            }
            Err(Stop::Fatal(e) | Stop::Decoder { error: e, streamed: false }) => {
                return Err(slot_lost(source, target, &options.migration).await.unwrap_or(e))
            }
            Err(Stop::Transient(e)) => {
                let (since, attempts) = episode.get_or_insert_with(|| {
                    events.follow(FollowEvent::Reconnecting { cause: e.message.clone() });
                    (Instant::now(), 0)
                });
                if since.elapsed() > RETRY_FOR {
                    return Err(slot_lost(source, target, &options.migration).await.unwrap_or(e));
                }
                *attempts += 1;
                tracing::debug!(cause = %e.message, attempt = *attempts, "reconnection attempt failed");
                tokio::time::sleep(liveness::backoff(*attempts)).await;
            }
        }
        attempt.first = false;
    }
    Ok(FollowReport {
        migration: options.migration.to_string(),
        applied_lsn: totals.applied.to_string(),
        transactions: totals.transactions,
        changes: totals.changes,
    })
}

/// The labels the source added to its enums since the copy, added on the target
/// before rows carrying them arrive (see [`crate::parity::carry_enum_labels`]);
/// how many statements that took.
async fn enum_labels(source: &ConnSpec, target: &ConnSpec, name: &MigrationName) -> Result<usize> {
    let (src, dst) = tokio::try_join!(pgferry_pg::connect(source), pgferry_pg::connect(target))?;
    crate::parity::carry_enum_labels(&src, &dst, name).await
}

/// Writes a non-transactional logical message on the source and returns its
/// position. Decoding is in WAL order, so once the stream delivers this message,
/// every transaction that committed before it has been delivered too.
async fn caught_up_mark(source: &ConnSpec) -> Result<Lsn> {
    let client = pgferry_pg::connect(source).await?;
    let marking = mark(&client);
    watchdog::within(watchdog::connect_limit(source), "the source", "marking its current position", marking)
        .await
        .map_err(|stop| match stop {
            Stop::Transient(e) | Stop::Fatal(e) | Stop::Decoder { error: e, .. } => e,
            // A time limit ends in one of the above; no stream is read here.
            Stop::Reopen => Error::new(ErrorKind::Server, "marking the source's current position was cut short"),
        })?
}

/// Writes the caught-up mark on `src` and returns its position (see
/// [`caught_up_mark`]); a [`FencedDrain`]'s end, written on the fence's session.
pub(crate) async fn mark(src: &Client) -> Result<Lsn> {
    let row = src
        .query_one("SELECT pg_logical_emit_message(false, $1, '')::text", &[&CAUGHT_UP_PREFIX])
        .await
        .map_err(|e| Error::server("marking the source's current position", e))?;
    row.get::<_, String>(0)
        .parse()
        .map_err(|e| Error::new(ErrorKind::Server, format!("the source returned an invalid position: {e}")))
}

/// One connection to each side (and a probe of the target), until the end
/// position or an error. `previous`: the last session's apply sessions, ended
/// before this one reads where to start.
#[allow(clippy::too_many_arguments)]
async fn session(
    source: &ConnSpec,
    target: &ConnSpec,
    options: &FollowOptions,
    stop_at: &StopAt,
    events: &Events,
    totals: &mut Totals,
    attempt: Attempt,
    previous: &mut Vec<watchdog::ApplySession>,
) -> Result<(), Stop> {
    let first = attempt.first;
    let liveness = match &options.until {
        Until::Fenced(drain) => drain.liveness,
        _ => watchdog::read_liveness(source, first).await?,
    };
    let dst = pgferry_pg::connect(target).await.map_err(|e| watchdog::connect_stop(e, first))?;
    let probe = pgferry_pg::connect(target).await.map_err(|e| watchdog::connect_stop(e, first))?;
    let limit = liveness.probe_answer_within();
    let this = watchdog::identify(&dst, limit).await?;
    for before in previous.iter() {
        watchdog::retire(&dst, before, liveness.silence_limit()).await?;
    }
    *previous = vec![this];
    let count = lane_count(&dst, options).await?;
    let mut lanes = Vec::with_capacity(count - 1);
    for _ in 1..count {
        let lane = pgferry_pg::connect(target).await.map_err(|e| watchdog::connect_stop(e, first))?;
        previous.push(watchdog::identify(&lane, limit).await?);
        lanes.push(lane);
    }
    let pids: Vec<i32> = previous.iter().map(|s| s.pid).collect();
    tokio::select! {
        result = stream_session(source, target, &dst, &lanes, options, stop_at, events, totals, attempt, liveness) => result,
        dead = watchdog::watch_target(&probe, &pids, liveness) => Err(dead),
    }
}

/// How many lanes this session applies with: the requested count, or the
/// count of a killed run whose lanes do not agree yet ([`lanes`]).
async fn lane_count(dst: &Client, options: &FollowOptions) -> Result<usize, Stop> {
    let journaled = dst
        .query_opt(
            "SELECT a.lanes FROM pgferry.apply_lane a LEFT JOIN pgferry.apply_progress p USING (migration)
             WHERE to_regclass('pgferry.apply_lane') IS NOT NULL AND a.migration = $1
               AND a.applied_lsn > coalesce(p.applied_lsn, '0/0') LIMIT 1",
            &[&options.migration.as_str()],
        )
        .await;
    match journaled {
        Ok(row) => Ok(row.map_or(options.lanes, |r| r.get::<_, i32>(0) as usize).max(1)),
        // Before the state's upgrade 4 (a journal of an earlier release): no lanes ran.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(options.lanes.max(1)),
        Err(e) => Err(Stop::target("reading the lanes' applied positions", e)),
    }
}

/// The apply session's set-up, then the stream, until the end position or an
/// error.
#[allow(clippy::too_many_arguments)]
async fn stream_session(
    source: &ConnSpec,
    target: &ConnSpec,
    dst: &Client,
    lanes: &[Client],
    options: &FollowOptions,
    stop_at: &StopAt,
    events: &Events,
    totals: &mut Totals,
    attempt: Attempt,
    liveness: Liveness,
) -> Result<(), Stop> {
    let first = attempt.first;
    let session_sql =
        format!("{}; {}; {}", stream::TARGET_SESSION_SQL, stream::DURABLE_COMMITS, liveness.target_session_sql());
    for client in std::iter::once(dst).chain(lanes) {
        client
            .batch_execute(&session_sql)
            .await
            .map_err(|e| Stop::target("setting up the apply session on the target", e))?;
    }
    let state = progress::start_state(dst, &options.migration).await?;
    let applier = appliers(dst, lanes, &options.migration, &state).await?;
    let (src, source_version) = match &options.until {
        Until::Fenced(drain) => (None, drain.source_version),
        _ => {
            let src = pgferry_pg::connect(source).await.map_err(|e| watchdog::connect_stop(e, first))?;
            let version: i32 = src
                .query_one("SELECT current_setting('server_version_num')::int", &[])
                .await
                .map_err(|e| Stop::target("reading the source's version", e))?
                .get(0);
            (Some(src), version)
        }
    };
    let dst_catalog = pgferry_pg::connect(target).await.map_err(|e| watchdog::connect_stop(e, first))?;
    totals.applied = state.start;
    if stop_at.now().is_some_and(|s| state.start >= s) {
        return Ok(());
    }
    let slot =
        crate::slot::on_target(dst, &options.migration).await?.unwrap_or_else(|| options.migration.legacy_slot());
    let streams = attempt.stream_in_progress && source_version >= stream::STREAMING_SINCE;
    let opening = stream::open(source, &options.migration, &slot, state.start, liveness, streams);
    let mut source_stream = opening.await.map_err(|e| match e {
        e if first && !sqlstate::of_transport(&e).reopens_stream() => {
            Stop::Fatal(Error::new(ErrorKind::Connection, format!("opening the change stream on the source: {e}")))
        }
        e => Stop::stream(e, false),
    })?;
    if let Err(e) = source_stream.started(source).await {
        // At once, as below: a worker still waiting would hold the slot.
        source_stream.abort();
        return Err(Stop::stream(e, false));
    }
    events.follow(FollowEvent::Started { from: state.start });
    let mut run = Run {
        applier,
        stream: &mut source_stream,
        target: dst,
        options,
        totals,
        server_end: state.start,
        last_commit_micros: None,
        status: (Instant::now(), 0),
        events,
        shutdown: options.shutdown.clone(),
        end: stop_at.later.clone(),
        rate: None,
        idle_recorded: Instant::now(),
        liveness,
        heard: None,
        heard_anything: false,
        relations: Relations { source: src, target: dst_catalog, checked: None, last: Vec::new() },
        slot: &slot,
        streamed: streamed::Streamed::default(),
    };
    run.check_relations().await?;
    let result = run.stream_until(stop_at).await;
    if let (Err(Stop::Fatal(_)), Some(refused)) = (&result, run.applier.take_refused_ddl()) {
        crate::ddl::record_pending(target, &options.migration, refused.at, &refused.command, &refused.reason).await?;
    }
    drop(run);
    if result.is_err() {
        // At once: a worker left on a half-open socket would hold the slot
        // when the network heals.
        source_stream.abort();
    }
    result
}

/// The session's apply: one applier, or one per lane ([`parallel`]).
async fn appliers<'a>(
    dst: &'a Client,
    lanes: &'a [Client],
    migration: &'a MigrationName,
    state: &'a progress::StartState,
) -> Result<Apply<'a>, Stop> {
    let single = Applier::new(dst, migration, &state.skip_before);
    if lanes.is_empty() && state.ahead.is_none() {
        return Ok(Apply::Single(Box::new(single)));
    }
    let count = lanes.len() + 1;
    let ahead = match &state.ahead {
        Some(ahead) if ahead.lanes != count => {
            // The journal changed between the two reads (another run): read again.
            return Err(Stop::Transient(Error::new(
                ErrorKind::Precondition,
                format!("the lanes' journal holds {} lanes, this session opened {count}", ahead.lanes),
            )));
        }
        Some(ahead) => {
            tracing::info!(lanes = count, up_to = %ahead.furthest(), "lanes of an earlier run are ahead of lane 0: their changes up to there are skipped");
            Some(std::sync::Arc::new(ahead.clone()))
        }
        None => {
            lanes::forget_passed(dst, migration, state.start).await?;
            None
        }
    };
    let mut all = vec![single.in_lane(0, count, ahead.clone())];
    for (i, lane) in lanes.iter().enumerate() {
        all.push(Applier::new(lane, migration, &state.skip_before).in_lane(i + 1, count, ahead.clone()));
    }
    Ok(Apply::Lanes(Box::new(Lanes::new(all))))
}

fn undecodable(e: pgferry_pgoutput::DecodeError) -> Stop {
    Stop::Fatal(Error::new(ErrorKind::Server, format!("decoding the change stream: {e}")))
}

/// After a session failed for good: the reason when the slot is lost (dropped
/// or invalidated), since change capture cannot resume from it whatever the
/// retries. `None` when the slot is there, or it cannot be told (the session's
/// own error then stands).
async fn slot_lost(source: &ConnSpec, target: &ConnSpec, migration: &MigrationName) -> Option<Error> {
    let src = pgferry_pg::connect(source).await.ok()?;
    let dst = pgferry_pg::connect(target).await.ok()?;
    let verdict = crate::slot::verdict(&src, &dst, migration).await.ok()?;
    let slot = crate::slot::resolve(&src, &dst, migration).await.ok()?;
    crate::slot::lost_error(&verdict, &slot, "change capture cannot resume from it, and no rerun can")
}

/// The source's relations last found unreplicated, and when.
struct Relations {
    /// `None` in a [`FencedDrain`], which opens no session on the source.
    source: Option<Client>,
    /// Not the apply session's: its batch may be open.
    target: Client,
    checked: Option<Instant>,
    last: Vec<crate::ddl::Unreplicated>,
}

/// The state of one session's loop.
struct Run<'a> {
    applier: Apply<'a>,
    stream: &'a mut stream::Stream,
    target: &'a Client,
    options: &'a FollowOptions,
    totals: &'a mut Totals,
    /// The source's latest WAL position seen in the stream.
    server_end: Lsn,
    /// Commit time (unix microseconds) of the last applied transaction.
    last_commit_micros: Option<i64>,
    /// When the last status line was emitted, and the change count then.
    status: (Instant, u64),
    events: &'a Events,
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// A [`FencedDrain`]'s end position, until it is given.
    end: Option<tokio::sync::watch::Receiver<Option<Lsn>>>,
    /// Changes per second over the last status interval, journaled for `status`.
    rate: Option<f64>,
    /// When a keepalive's position was last recorded.
    idle_recorded: Instant,
    liveness: Liveness,
    /// When the stream last delivered anything (at first: when the loop first
    /// waited for it); silence from then on for [`Liveness::silence_limit`] is
    /// a dead source.
    heard: Option<Instant>,
    /// Whether the stream delivered anything in this session: `heard` alone
    /// cannot tell, it is set when the loop first waits.
    heard_anything: bool,
    relations: Relations,
    /// The migration's slot, whose retained WAL each status reads.
    slot: &'a str,
    /// Transactions the source is streaming before their commit.
    streamed: streamed::Streamed,
}

impl Run<'_> {
    async fn stream_until(&mut self, end: &StopAt) -> Result<(), Stop> {
        let mut decoder = Decoder::new();
        loop {
            let event = self.next_event().await?;
            let stop_at = end.now();
            match event {
                Next::Committed | Next::StatusDue => {}
                Next::Idle if self.applier.in_transaction() => {}
                Next::Idle => self.flush().await?,
                Next::Event(stream::Event::Begin { final_lsn }) => self.applier.begin(final_lsn),
                Next::Event(stream::Event::Data { data, wal_end }) => {
                    self.server_end = self.server_end.max(wal_end);
                    self.data(&mut decoder, data, stop_at).await?;
                }
                Next::Event(stream::Event::Commit { end_lsn: end, commit_time_micros }) => {
                    self.end_transaction(end, commit_time_micros, stop_at).await?
                }
                Next::Event(stream::Event::KeepAlive { wal_end }) => {
                    self.server_end = self.server_end.max(wal_end);
                    self.advance_idle(wal_end, Advance::WhenQuiet).await?;
                }
                Next::Event(stream::Event::Message { transactional: true, lsn, prefix, content })
                    if prefix == self.options.migration.ddl_message_prefix() =>
                {
                    self.applier.ddl(lsn, &content).await?
                }
                Next::Event(stream::Event::Message { transactional: false, lsn, .. }) => {
                    self.advance_idle(lsn, Advance::Now).await?
                }
                Next::Event(_) => {}
            }
            self.acknowledge_committed();
            let stopping = end.now().is_some_and(|s| self.totals.applied >= s) || self.shutdown_requested();
            if stopping && !self.applier.in_transaction() {
                self.flush().await?;
                self.applier.wait_committed().await?;
                self.acknowledge_committed();
                self.finish().await;
                return Ok(());
            }
            self.report_status().await;
            if !self.applier.in_transaction() {
                self.check_relations().await?;
            }
        }
    }

    /// One pgoutput message other than Begin, Commit and a logical message
    /// outside a stream block (the transport reports those itself): a change
    /// of the current transaction, or one of a streamed transaction
    /// ([`streamed`]).
    async fn data(&mut self, decoder: &mut Decoder, data: bytes::Bytes, stop_at: Option<Lsn>) -> Result<(), Stop> {
        if decoder.in_stream_block() && data.first() != Some(&STREAM_STOP) {
            return self.streamed.spool(&data);
        }
        let bytes = data.len();
        match decoder.decode(data).map_err(undecodable)? {
            Message::StreamStart(start) => self.streamed.start(&start),
            Message::StreamStop => {
                self.streamed.stop();
                crate::failpoint::hit("streamed-block-spooled");
                if crate::failpoint::fault("stream-decoding-fails") {
                    return Err(Stop::stream(
                        pgwire_replication::PgWireError::Server(
                            "could not open relation (injected by PGFERRY_FAULT) (SQLSTATE XX000)".into(),
                        ),
                        self.streamed.seen_block(),
                    ));
                }
                Ok(())
            }
            Message::StreamAbort(abort) => self.streamed.abort(&abort),
            Message::StreamCommit(commit) => self.apply_streamed(commit, stop_at).await,
            message => self.applier.apply(message, bytes).await,
        }
    }

    /// A streamed transaction committed: its spooled messages are applied as
    /// one source transaction, exactly as a whole one would be.
    ///
    /// The stream is not read while a spool is applied, and a large one takes
    /// longer than the source waits for a silent receiver (`wal_sender_timeout`):
    /// the source would end the session, the retry receive the transaction again,
    /// and so on for ever. So before a large spool the stream is closed; once the
    /// transaction is committed on the target, the session ends ([`Stop::Reopen`])
    /// and the next one starts from its end (the source sends again whatever
    /// followed, open streamed transactions from their first block).
    async fn apply_streamed(&mut self, commit: StreamCommit, stop_at: Option<Lsn>) -> Result<(), Stop> {
        let mut replay = self.streamed.commit(commit.xid)?;
        let reopen = replay.bytes > REOPEN_ABOVE;
        if reopen {
            self.stream.abort();
        }
        self.applier.begin(commit.commit_lsn);
        let ddl_prefix = self.options.migration.ddl_message_prefix();
        while let Some(data) = replay.next_message()? {
            let bytes = data.len();
            match pgferry_pgoutput::decode(data, true).map_err(undecodable)? {
                Message::LogicalMessage(m) if m.transactional && m.prefix == ddl_prefix => {
                    self.applier.ddl(m.lsn, &m.content).await?
                }
                message => self.applier.apply(message, bytes).await?,
            }
            // The operator watches a large transaction's rate while it is applied.
            self.report_status().await;
        }
        if !reopen {
            return self.end_transaction(commit.end_lsn, commit.commit_time.0, stop_at).await;
        }
        self.applier.end_transaction(commit.end_lsn, commit.commit_time.0).await?;
        self.flush().await?;
        self.applier.wait_committed().await?;
        self.acknowledge_committed();
        Err(Stop::Reopen)
    }

    /// A source transaction ended at `end`: its batch commits when it is due.
    async fn end_transaction(&mut self, end: Lsn, commit_time_micros: i64, stop_at: Option<Lsn>) -> Result<(), Stop> {
        self.applier.end_transaction(end, commit_time_micros).await?;
        let target_idle = self.applier.commit_finished()?;
        let at_head = self.stream.buffered() == 0;
        let batch = &self.applier;
        if stop_at.is_some_and(|s| end >= s)
            || batch.replayed_ddl()
            || batch::should_flush(
                &self.options.batch,
                batch.batch_changes(),
                batch.batch_bytes(),
                batch.batch_age(),
                target_idle,
                at_head,
            )
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// Names the source's relations change capture misses, when that list
    /// changed since last said (at most every [`RELATIONS_EVERY`]). With DDL
    /// capture a table the target lacks is on its way in the stream: only
    /// unpublished ones count.
    async fn check_relations(&mut self) -> Result<(), Stop> {
        // The drain reads no catalog: the gate compared them already.
        if self.options.drain || self.relations.checked.is_some_and(|at| at.elapsed() < RELATIONS_EVERY) {
            return Ok(());
        }
        let Some(source) = &self.relations.source else { return Ok(()) };
        self.relations.checked = Some(Instant::now());
        let name = &self.options.migration;
        let target = &self.relations.target;
        let reading = async {
            let mut found = crate::ddl::unreplicated(source, target, name).await?;
            if crate::ddl::installed(source, name).await? {
                found.retain(|u| !u.published);
            }
            Ok::<_, Error>(found)
        };
        let limit = self.liveness.probe_answer_within();
        let found = match tokio::time::timeout(limit, reading).await {
            Ok(read) => read.map_err(Stop::Transient)?,
            Err(_) => {
                return Err(Stop::Transient(Error::new(
                    ErrorKind::Connection,
                    format!(
                        "the source or the target did not answer within {} s while listing the relations: the connection is dead (a network partition or a half-open connection)",
                        limit.as_secs_f64()
                    ),
                )))
            }
        };
        if found != self.relations.last {
            self.relations.last = found.clone();
            if !found.is_empty() {
                self.events.follow(FollowEvent::Unreplicated { relations: found });
            }
        }
        Ok(())
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|s| *s.borrow())
    }

    /// The next event from the stream, or the end of the previous batch's
    /// commit; `Idle` when an open batch has waited long enough, a status is
    /// due, or a shutdown was just requested.
    async fn next_event(&mut self) -> Result<Next, Stop> {
        let waiting = self.applier.batch_open() && !self.applier.in_transaction();
        // A batch between transactions commits when it is old enough; at once
        // when the target is free and nothing more has arrived (the previous
        // commit just ended, say, or a keepalive was the last message): the
        // runtime is yielded to once (a transport task already woken passes on
        // what it read), and the stream is then looked at, not waited for
        // ([`batch::should_flush`]).
        // A timer of zero would wait for the timer's next tick, up to 1 ms
        // (measured: 0.44 ms at the median for each such batch under a steady
        // load, a tenth of its lag).
        if waiting && self.applier.committing().is_none() && self.stream.buffered() == 0 {
            tokio::task::yield_now().await;
            if self.stream.buffered() == 0 {
                return Ok(Next::Idle);
            }
        }
        let left = match waiting {
            true => self.options.batch.max_age.saturating_sub(self.applier.batch_age()),
            false => Duration::MAX,
        };
        let shutdown = async {
            match self.shutdown.as_mut() {
                Some(s) if !*s.borrow() => {
                    let _ = s.changed().await;
                }
                _ => std::future::pending().await,
            }
        };
        // The end given wakes a loop waiting on a quiet (fenced) source.
        let end_given = async {
            match self.end.as_mut() {
                Some(end) if end.borrow().is_none() => {
                    if end.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                _ => std::future::pending().await,
            }
        };
        let committing = async {
            match self.applier.committing() {
                Some(committing) => committing.await,
                None => std::future::pending().await,
            }
        };
        let heard = *self.heard.get_or_insert_with(Instant::now);
        let silence_limit = self.liveness.silence_limit();
        let dead_in = silence_limit.saturating_sub(heard.elapsed());
        // A quiet source sends a keepalive only every half wal_sender_timeout:
        // the loop wakes for each status (and its sample) all the same.
        let status_due = STATUS_EVERY.saturating_sub(self.status.0.elapsed());
        let wait = left.min(dead_in);
        let received = tokio::select! {
            received = tokio::time::timeout(wait.min(status_due), self.stream.recv()) => match received {
                Ok(received) => received,
                Err(_) if heard.elapsed() >= silence_limit => return Err(self.silent_source(heard)),
                Err(_) if status_due < wait => return Ok(Next::StatusDue),
                Err(_) => return Ok(Next::Idle),
            },
            () = shutdown => return Ok(Next::Idle),
            () = end_given => return Ok(Next::Idle),
            done = committing => {
                self.applier.committed_now(done)?;
                return Ok(Next::Committed);
            }
        };
        match received.map_err(|e| Stop::stream(e, self.streamed.seen_block()))? {
            Some(event) => {
                self.heard = Some(Instant::now());
                if !std::mem::replace(&mut self.heard_anything, true) {
                    self.totals.heard_sessions += 1;
                }
                Ok(Next::Event(event))
            }
            None => Err(Stop::Transient(Error::new(ErrorKind::Server, "the source ended the change stream"))),
        }
    }

    /// The source sent nothing, not even the keepalive it owes a live connection.
    fn silent_source(&self, heard: Instant) -> Stop {
        Stop::Transient(Error::new(
            ErrorKind::Connection,
            format!(
                "the source sent nothing for {:.1} s (twice its wal_sender_timeout of {} s, within which a live server answers): the replication connection is dead (a network partition or a half-open connection)",
                heard.elapsed().as_secs_f64(),
                self.liveness.wal_sender_timeout.as_secs_f64()
            ),
        ))
    }

    /// Ends the open batch: its commit runs on while the stream is read.
    async fn flush(&mut self) -> Result<(), Stop> {
        if !self.applier.batch_open() {
            return Ok(());
        }
        self.applier.commit_batch(self.rate).await
    }

    /// Tells the source about the batches the target committed.
    fn acknowledge_committed(&mut self) {
        for batch in self.applier.take_committed() {
            if let Some((end, commit_time)) = batch.end {
                self.acknowledge(end);
                self.last_commit_micros = Some(commit_time.saturating_add(PG_EPOCH_UNIX_MICROS));
            }
            self.totals.transactions += batch.transactions;
            self.totals.changes += batch.changes;
            self.events.follow(FollowEvent::Applied {
                transactions: batch.transactions,
                tables: batch
                    .stats
                    .into_iter()
                    .map(|(table, counts)| (format!("{}.{}", table.schema.as_str(), table.name.as_str()), counts))
                    .collect(),
                seconds: batch.seconds,
            });
        }
    }

    /// Between transactions, a position from the server (a keepalive's, or a
    /// non-transactional message's) is past every transaction the stream has
    /// delivered: it becomes the applied position, so the slot releases WAL that
    /// holds no published change. The server sends a keepalive whenever it
    /// waits for WAL, which under a steady load is after nearly every
    /// transaction: those are recorded only when no batch is open or
    /// committing, at most every [`IDLE_RECORD_EVERY`], or apply would commit
    /// twice per source transaction and fall behind.
    async fn advance_idle(&mut self, position: Lsn, when: Advance) -> Result<(), Stop> {
        if self.applier.in_transaction() || position <= self.totals.applied {
            return Ok(());
        }
        let busy = self.applier.batch_open() || self.applier.committing().is_some();
        if when == Advance::WhenQuiet && (busy || self.idle_recorded.elapsed() < IDLE_RECORD_EVERY) {
            return Ok(());
        }
        self.idle_recorded = Instant::now();
        self.flush().await?;
        self.applier.wait_committed().await?;
        self.acknowledge_committed();
        let record = || async {
            self.target.batch_execute("BEGIN").await?;
            progress::record(self.target, &self.options.migration, position, None, &Default::default(), None).await?;
            self.target.batch_execute("COMMIT").await
        };
        record().await.map_err(|e| Stop::target("recording the applied position on the target", e))?;
        self.acknowledge(position);
        Ok(())
    }

    /// Ends the stream. The transport tells the server the applied position
    /// it has not heard yet before it ends the stream (the vendored
    /// transport's `end_stream`), so the slot releases what was applied
    /// without waiting for the next status update (up to its interval, 100 ms,
    /// at the end of every `follow --until-caught-up`).
    async fn finish(&mut self) {
        if tokio::time::timeout(Duration::from_secs(5), self.stream.shutdown()).await.is_err() {
            self.stream.abort();
        }
        if self.stream.acknowledged() < self.totals.applied {
            tracing::debug!(applied = %self.totals.applied, "the source was not told the last applied position: the next session tells it");
        }
    }

    fn acknowledge(&mut self, position: Lsn) {
        self.totals.applied = position;
        self.stream.acknowledge(position);
    }

    /// Every [`STATUS_EVERY`]: the status event, and its sample in the journal
    /// ([`samples`]), written on the catalog connection (the apply session's
    /// batch may be open).
    async fn report_status(&mut self) {
        let (since, changes_then) = self.status;
        if since.elapsed() < STATUS_EVERY {
            return;
        }
        let lag_bytes = self.server_end.0.saturating_sub(self.totals.applied.0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default();
        let lag_seconds = match self.last_commit_micros {
            Some(at) if lag_bytes > 0 => (now - at).max(0) as f64 / 1e6,
            _ => 0.0,
        };
        // The open batch's changes count too: a large transaction applies for
        // minutes before its commit, and its rate is what the operator watches.
        let changes = self.totals.changes + self.applier.batch_changes() as u64;
        let changes_per_second = changes.saturating_sub(changes_then) as f64 / since.elapsed().as_secs_f64();
        self.rate = Some(changes_per_second);
        self.status = (Instant::now(), changes);
        let sample = samples::Sample {
            applied: self.totals.applied,
            lag_bytes,
            lag_seconds,
            changes_per_second,
            transactions: self.totals.transactions,
            changes,
        };
        // Best effort, briefly: a lost sample loses a point of a plot, never a
        // change, and a dead connection is the stream's and the watchdog's to
        // find, with their own causes.
        let limit = self.liveness.probe_answer_within().min(SAMPLE_WITHIN);
        let migration = &self.options.migration;
        let (source, target) = (&self.relations.source, &self.relations.target);
        let sampling = async {
            let retained = match source {
                Some(source) => samples::slot_retained_bytes(source, self.slot).await?,
                None => None,
            };
            samples::record(target, migration, &sample, retained).await?;
            Ok::<_, Error>(retained)
        };
        let slot_retained_bytes = match tokio::time::timeout(limit, sampling).await {
            Ok(Ok(retained)) => retained,
            Ok(Err(e)) => {
                tracing::debug!(cause = %e.message, "change capture's sample was not journaled");
                None
            }
            Err(_) => {
                tracing::debug!("change capture's sample was not journaled within {limit:?}");
                None
            }
        };
        self.events.follow(FollowEvent::Status {
            applied: self.totals.applied,
            lag_bytes,
            lag_seconds,
            changes_per_second,
            slot_retained_bytes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> pgwire_replication::PgWireError {
        pgwire_replication::PgWireError::Server(format!("it failed (SQLSTATE {code})"))
    }

    #[test]
    fn only_an_internal_error_of_the_walsender_is_the_decoders() {
        assert!(matches!(Stop::stream(server("XX000"), true), Stop::Decoder { streamed: true, .. }));
        assert!(matches!(Stop::stream(server("XX000"), false), Stop::Decoder { streamed: false, .. }));
        assert!(matches!(Stop::stream(server("57P01"), true), Stop::Transient(_)));
        assert!(matches!(Stop::stream(server("42704"), true), Stop::Fatal(_)));
        // Corrupted data is not a decoding bug that another protocol avoids.
        assert!(matches!(Stop::stream(server("XX001"), true), Stop::Fatal(_)));
    }
}
