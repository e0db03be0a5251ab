//! The decoded messages, one type per message in
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.
//!
//! Field names follow the manual's descriptions. Two rules shape the types:
//!
//! * Messages that describe changes (Relation, Type, Insert, Update, Delete,
//!   Truncate and Message) carry an `xid` only when they are sent inside a
//!   stream block (protocol version 2 and later), so that field is an
//!   `Option`. It is the xid of the (sub)transaction that made the change,
//!   which for a subtransaction is not the xid of the Stream Start.
//! * Flag bytes become named `bool`s. The decoder refuses flag bits it does
//!   not know rather than dropping them, so no information is lost by this.

use bytes::Bytes;

use crate::kind::MessageKind;
use crate::lsn::Lsn;
use crate::timestamp::Timestamp;
use crate::tuple::{Column, OldTuple};

/// A transaction ID.
pub type Xid = u32;
/// An object identifier: of a relation, a type, …
pub type Oid = u32;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(Type),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    /// A message written with `pg_logical_emit_message`.
    LogicalMessage(LogicalMessage),
    StreamStart(StreamStart),
    StreamStop,
    StreamCommit(StreamCommit),
    StreamAbort(StreamAbort),
    BeginPrepare(BeginPrepare),
    Prepare(Prepare),
    CommitPrepared(CommitPrepared),
    RollbackPrepared(RollbackPrepared),
    /// Like [`Message::Prepare`], for a transaction that was streamed.
    StreamPrepare(Prepare),
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Begin(_) => MessageKind::Begin,
            Self::Commit(_) => MessageKind::Commit,
            Self::Origin(_) => MessageKind::Origin,
            Self::Relation(_) => MessageKind::Relation,
            Self::Type(_) => MessageKind::Type,
            Self::Insert(_) => MessageKind::Insert,
            Self::Update(_) => MessageKind::Update,
            Self::Delete(_) => MessageKind::Delete,
            Self::Truncate(_) => MessageKind::Truncate,
            Self::LogicalMessage(_) => MessageKind::LogicalMessage,
            Self::StreamStart(_) => MessageKind::StreamStart,
            Self::StreamStop => MessageKind::StreamStop,
            Self::StreamCommit(_) => MessageKind::StreamCommit,
            Self::StreamAbort(_) => MessageKind::StreamAbort,
            Self::BeginPrepare(_) => MessageKind::BeginPrepare,
            Self::Prepare(_) => MessageKind::Prepare,
            Self::CommitPrepared(_) => MessageKind::CommitPrepared,
            Self::RollbackPrepared(_) => MessageKind::RollbackPrepared,
            Self::StreamPrepare(_) => MessageKind::StreamPrepare,
        }
    }
}

/// `'B'`: a transaction starts; its changes follow, then a Commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    pub commit_time: Timestamp,
    pub xid: Xid,
}

/// `'C'`: the transaction started by the last Begin committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record: the position to confirm as flushed
    /// once the transaction is applied.
    pub end_lsn: Lsn,
    pub commit_time: Timestamp,
}

/// `'O'`: the transaction was replayed from another node (a replication origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server.
    pub commit_lsn: Lsn,
    pub name: String,
}

/// `'R'`: describes a table before the first change to it is sent, and again
/// whenever its definition may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub xid: Option<Xid>,
    pub oid: Oid,
    /// The schema. The server sends an empty string for `pg_catalog`; the
    /// decoder spells it out.
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    /// The published columns in tuple order (dropped and generated columns
    /// are never sent).
    pub columns: Vec<RelationColumn>,
}

/// The table's REPLICA IDENTITY setting (`pg_class.relreplident`), which
/// decides what old tuple Update and Delete carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `'d'`: the primary key, if any.
    Default,
    /// `'n'`: nothing; updates and deletes cannot be published.
    Nothing,
    /// `'f'`: all columns.
    Full,
    /// `'i'`: the columns of a chosen unique index.
    Index,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Whether the column is part of the replica identity (flag bit 1).
    pub is_key: bool,
    pub name: String,
    pub type_oid: Oid,
    /// `atttypmod`: type-specific precision, e.g. `varchar(n)`; -1 when none.
    pub type_modifier: i32,
}

/// `'Y'`: names a non-built-in type used by a column, before the Relation
/// message that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub xid: Option<Xid>,
    pub oid: Oid,
    /// The schema. The server sends an empty string for `pg_catalog`; the
    /// decoder spells it out.
    pub namespace: String,
    pub name: String,
}

/// `'I'`: a row was inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub xid: Option<Xid>,
    pub relation_oid: Oid,
    pub new_tuple: Vec<Column>,
}

/// `'U'`: a row was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub xid: Option<Xid>,
    pub relation_oid: Oid,
    /// Absent when the replica identity is not FULL and no key column changed.
    pub old_tuple: Option<OldTuple>,
    pub new_tuple: Vec<Column>,
}

/// `'D'`: a row was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub xid: Option<Xid>,
    pub relation_oid: Oid,
    pub old_tuple: OldTuple,
}

/// `'T'`: tables were truncated by one TRUNCATE statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    pub xid: Option<Xid>,
    /// `TRUNCATE … CASCADE` (flag bit 1).
    pub cascade: bool,
    /// `TRUNCATE … RESTART IDENTITY` (flag bit 2).
    pub restart_identity: bool,
    pub relation_oids: Vec<Oid>,
}

/// `'M'`: a logical decoding message from `pg_logical_emit_message`, sent
/// when the subscriber asked for `messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    pub xid: Option<Xid>,
    /// Part of a transaction (flag bit 1), as opposed to sent immediately.
    pub transactional: bool,
    /// The LSN of the message.
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Bytes,
}

/// `'S'`: a block of changes from an in-progress transaction follows, up to
/// the next Stream Stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub xid: Xid,
    /// True for the first block streamed for this transaction.
    pub first_segment: bool,
}

/// `'c'`: a streamed transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: Xid,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time: Timestamp,
}

/// `'A'`: a streamed transaction, or one of its subtransactions, aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    pub xid: Xid,
    /// Equal to `xid` when the whole transaction aborted.
    pub subxid: Xid,
    /// Sent only with protocol version 4 and `streaming = parallel`.
    pub parallel: Option<ParallelAbort>,
}

/// Where and when a transaction streamed for parallel apply aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParallelAbort {
    pub abort_lsn: Lsn,
    pub abort_time: Timestamp,
}

/// `'b'`: a transaction to be prepared (two-phase commit) starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    pub prepare_lsn: Lsn,
    /// The LSN just past the prepared transaction.
    pub end_lsn: Lsn,
    pub prepare_time: Timestamp,
    pub xid: Xid,
    /// The transaction's global identifier from `PREPARE TRANSACTION`.
    pub gid: String,
}

/// `'P'` (and `'p'` for a streamed transaction): the transaction was prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    pub prepare_lsn: Lsn,
    /// The LSN just past the prepared transaction.
    pub end_lsn: Lsn,
    pub prepare_time: Timestamp,
    pub xid: Xid,
    pub gid: String,
}

/// `'K'`: a prepared transaction was committed (`COMMIT PREPARED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record.
    pub end_lsn: Lsn,
    pub commit_time: Timestamp,
    pub xid: Xid,
    pub gid: String,
}

/// `'r'`: a prepared transaction was rolled back (`ROLLBACK PREPARED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// The end LSN of the prepared transaction.
    pub prepare_end_lsn: Lsn,
    /// The LSN just past the rollback record.
    pub rollback_end_lsn: Lsn,
    pub prepare_time: Timestamp,
    pub rollback_time: Timestamp,
    pub xid: Xid,
    pub gid: String,
}
