//! The source's change stream: the migration's slot read with pgoutput over a
//! replication connection
//! ([Streaming Replication Protocol](https://www.postgresql.org/docs/current/protocol-replication.html)).
//!
//! pgoutput renders each value with its type's output function in the walsender's
//! session, so the settings that shape text output are pinned at connection
//! start: ISO dates, `postgres` intervals, UTC, shortest-exact floats, hex bytea,
//! and the C locale's money format. The apply sessions on the target set the same
//! values ([`TARGET_SESSION_SQL`]) so each value is read back by the matching
//! input function under the same settings.
//!
//! The stream starts at the last applied position (or the slot's consistent
//! point), and the server is told the same position as flushed until a later one
//! is committed on the target, so the slot never releases a change the target
//! does not hold.
//!
//! A source of PostgreSQL 14 or later is asked for pgoutput protocol version 2
//! with `streaming 'on'`
//! ([Logical Streaming Replication Protocol](https://www.postgresql.org/docs/current/protocol-logical-replication.html)):
//! a transaction larger than its `logical_decoding_work_mem` then arrives in
//! blocks while it runs, instead of being held on the source's disk until it
//! commits ([`super::streamed`] spools them). Older sources speak version 1,
//! and so does a session after the source's walsender failed decoding a
//! transaction streamed in progress ([`super::Stop::Decoder`]).
//! The transport is `pgwire-replication`, vendored with these two additions
//! (`vendor/pgwire-replication/README.pgferry.md`).
//!
//! The transport has an LSN type of its own: [`Stream`] converts its positions
//! to pgferry's [`Lsn`] here, at the edge, and nowhere else.

use bytes::Bytes;
use pgferry_core::names::MigrationName;
use pgferry_pg::connect::within_connect_timeout;
use pgferry_pg::replication::{open_gated, replication_config};
use pgferry_pg::ConnSpec;
use pgferry_pgoutput::Lsn;
use pgwire_replication::{PgWireError, ReplicationClient, ReplicationEvent};

use super::liveness::Liveness;

/// Startup options of the replication connection.
const OUTPUT_SETTINGS: &str =
    "-c datestyle=ISO -c intervalstyle=postgres -c timezone=UTC -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C";

/// The same settings for the target's apply session, plus what apply needs:
/// replica mode (user triggers and foreign-key triggers do not fire, as for
/// PostgreSQL's own subscriber, see
/// [session_replication_role](https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SESSION-REPLICATION-ROLE)),
/// an empty search_path (type names are read schema-qualified), and generic
/// plans from 12 on ([plan_cache_mode](https://www.postgresql.org/docs/current/runtime-config-query.html#GUC-PLAN-CACHE-MODE)):
/// a custom plan of a set statement sees its 50,000 keys and hashes the whole
/// table to join them (a 5-million-row table hashed for each of the first five
/// statements), where the generic plan looks each key up in its index, which a
/// folding table always has. With [`DURABLE_COMMITS`]; its timeouts come
/// from [`Liveness::target_session_sql`].
pub(crate) const TARGET_SESSION_SQL: &str = "SET datestyle = ISO; SET intervalstyle = postgres; SET timezone = UTC;
    SET extra_float_digits = 3; SET bytea_output = hex; SET lc_monetary = 'C';
    SET session_replication_role = replica; SET search_path = '';
    SELECT set_config('plan_cache_mode', 'force_generic_plan', false) WHERE current_setting('server_version_num')::int >= 120000";

/// A target session whose commits are flushed to the target's own disk before
/// they are answered
/// ([synchronous_commit](https://www.postgresql.org/docs/current/runtime-config-wal.html#GUC-SYNCHRONOUS-COMMIT)
/// `local` where the target's default is `off`; any other default, which
/// flushes as much or more, is kept), pinned in the session so that a reload
/// of the target's configuration does not change it under a long run. The
/// source is told a transaction is applied once its batch commits, and
/// releases it for good: a commit that a crash of the target could still undo
/// would be lost (the last transactions were, in `tests/follow.rs`, on a target
/// crashed right after the source was told). Whether a commit also waits for
/// the target's own synchronous standbys stays the target's setting: forcing
/// it would stall change capture on a standby that is down. The cutover's
/// session too: its last commit before the switch makes everything before it
/// durable (the sequences set, the re-copies).
pub(crate) const DURABLE_COMMITS: &str = "SELECT set_config('synchronous_commit',
    CASE current_setting('synchronous_commit') WHEN 'off' THEN 'local' ELSE current_setting('synchronous_commit') END, false)";

/// The first source version whose pgoutput streams in-progress transactions
/// (protocol version 2).
pub(crate) const STREAMING_SINCE: i32 = 140_000;

/// Opens the stream at `start`, with the status updates [`Liveness`] needs;
/// `streaming`: ask for transactions streamed in progress (a source of
/// [`STREAMING_SINCE`] or later).
pub(crate) async fn open(
    source: &ConnSpec,
    name: &MigrationName,
    slot: &str,
    start: Lsn,
    liveness: Liveness,
    streaming: bool,
) -> Result<Stream, PgWireError> {
    let publications =
        vec![name.publication().as_str().to_string(), name.insert_only_publication().as_str().to_string()];
    let mut config = replication_config(source, slot, publications);
    let settings = match liveness.startup_option() {
        Some(timeout) => format!("{OUTPUT_SETTINGS} {timeout}"),
        None => OUTPUT_SETTINGS.to_string(),
    };
    config.options = Some(match &config.options {
        Some(user) => format!("{user} {settings}"),
        None => settings,
    });
    let start = wire(start);
    config = config
        .with_protocol(if streaming { 2 } else { 1 }, streaming)
        .with_start_lsn(start)
        .with_ack_lsn(start)
        // Acknowledgements reach the source within this: a drain that ends with one
        // (follow --until-caught-up, the cutover) waits for it.
        .with_status_interval(std::time::Duration::from_millis(100))
        // Unsolicited updates only after a whole wal_sender_timeout of silence:
        // the server asks for a reply first, so a live one is heard regularly.
        .with_wakeup_interval(liveness.status_wakeup())
        .with_buffer_size(BUFFERED_MESSAGES);
    let mut stream = open_gated(source, config).await?;
    stream.start().await?;
    Ok(Stream(stream))
}

/// Messages the transport reads ahead of apply. The buffer is counted in
/// messages, and a row of wide values is one message of its size: the
/// transport's default (8,192) let a starved apply hold 270 MB of 100 kB rows
/// read ahead (a streamed transaction's blocks, on their way to the spool).
/// 512 messages keep apply fed (each is at least one row change), and bound
/// the read-ahead to 50 MB of such rows.
const BUFFERED_MESSAGES: usize = 512;

/// What the source's stream delivers that change capture acts on.
pub(crate) enum Event {
    /// A transaction begins; it commits at `final_lsn`.
    Begin { final_lsn: Lsn },
    /// One pgoutput message (any message of a stream block included); the
    /// server's WAL reaches `wal_end`.
    Data { data: Bytes, wal_end: Lsn },
    /// The transaction ends at `end_lsn`.
    Commit { end_lsn: Lsn, commit_time_micros: i64 },
    /// The server is alive; its WAL reaches `wal_end`.
    KeepAlive { wal_end: Lsn },
    /// A logical message (`pg_logical_emit_message`).
    Message { transactional: bool, lsn: Lsn, prefix: String, content: Bytes },
    /// Anything else the transport reports.
    Other,
}

/// The migration slot's change stream.
pub(crate) struct Stream(ReplicationClient);

impl Stream {
    /// Waits until the server accepted START_REPLICATION ([`open`] returns
    /// once it is sent): the slot is then this session's. The cutover raises
    /// its fence only once its drain holds the slot, which is what the fence
    /// spares. The server's refusal (a slot another session holds) is the
    /// error the first read would have returned.
    pub(crate) async fn started(&mut self, source: &ConnSpec) -> Result<(), PgWireError> {
        within_connect_timeout(source, self.0.wait_started())
            .await
            .map_err(|timeout| PgWireError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, timeout)))?
    }

    /// How many events have arrived and wait to be received: none means
    /// apply is at the head of the stream.
    pub(crate) fn buffered(&self) -> usize {
        self.0.buffered()
    }

    /// The next event; `None` when the server ended the stream.
    pub(crate) async fn recv(&mut self) -> Result<Option<Event>, PgWireError> {
        Ok(self.0.recv().await?.map(|event| match event {
            ReplicationEvent::Begin { final_lsn, .. } => Event::Begin { final_lsn: lsn(final_lsn) },
            ReplicationEvent::XLogData { data, wal_end, .. } => Event::Data { data, wal_end: lsn(wal_end) },
            ReplicationEvent::Commit { end_lsn, commit_time_micros, .. } => {
                Event::Commit { end_lsn: lsn(end_lsn), commit_time_micros }
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => Event::KeepAlive { wal_end: lsn(wal_end) },
            ReplicationEvent::Message { transactional, lsn: at, prefix, content } => {
                Event::Message { transactional, lsn: lsn(at), prefix, content }
            }
            _ => Event::Other,
        }))
    }

    /// Tells the server everything up to `position` is applied (sent with the
    /// next status update).
    pub(crate) fn acknowledge(&mut self, position: Lsn) {
        self.0.update_applied_lsn(wire(position));
    }

    /// The applied position the server was last told (by a status update).
    pub(crate) fn acknowledged(&self) -> Lsn {
        lsn(self.0.metrics().last_applied_lsn())
    }

    /// Ends the stream politely.
    pub(crate) async fn shutdown(&mut self) -> Result<(), PgWireError> {
        self.0.shutdown().await
    }

    /// Ends the stream at once.
    pub(crate) fn abort(&mut self) {
        self.0.abort();
    }
}

fn lsn(wire: pgwire_replication::Lsn) -> Lsn {
    Lsn(wire.0)
}

fn wire(lsn: Lsn) -> pgwire_replication::Lsn {
    pgwire_replication::Lsn(lsn.0)
}
