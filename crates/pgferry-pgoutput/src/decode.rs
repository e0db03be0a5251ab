//! Turning one message's bytes into a [`Message`].
//!
//! The layout of each message is in
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.
//! It barely depends on the protocol version, which is why the decoder does
//! not ask for one:
//!
//! * Version 2 added streaming: inside a stream block (between Stream Start
//!   and Stream Stop) the change messages carry a leading xid. Nothing in the
//!   message itself says so, only its position in the stream, hence the
//!   explicit `in_stream_block` flag and [`Decoder`], which tracks it.
//! * Version 3 added the two-phase messages, which have tags of their own.
//! * Version 4 added an abort LSN and time to Stream Abort, but only with
//!   `streaming = parallel`, so they are recognised by the message's length.
//!
//! Each message arrives whole (one CopyData payload), so a message that ends
//! before its last field, or goes on after it, is an error rather than a
//! reason to wait for more bytes.

use bytes::Bytes;

use crate::error::{DecodeError, Problem};
use crate::kind::MessageKind;
use crate::message::{
    Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage, Message, Origin, ParallelAbort,
    Prepare, Relation, RelationColumn, ReplicaIdentity, RollbackPrepared, StreamAbort, StreamCommit, StreamStart,
    Truncate, Type, Update, Xid,
};
use crate::reader::Reader;
use crate::tuple::{read_delete_tuple, read_new_tuple, read_update_tuples};

/// Flag bits the server defines; any other bit is refused (see [`Reader::flags`]).
const NO_FLAGS: u8 = 0;
const TRUNCATE_CASCADE: u8 = 1;
const TRUNCATE_RESTART_IDENTITY: u8 = 2;
const MESSAGE_TRANSACTIONAL: u8 = 1;
const COLUMN_IS_KEY: u8 = 1;

/// Bytes of the fields Stream Abort has only under parallel streaming.
const PARALLEL_ABORT_LEN: usize = 16;

/// Decodes one pgoutput message: the payload of one XLogData message of the
/// replication stream, or one `data` value of
/// `pg_logical_slot_get_binary_changes`.
///
/// `in_stream_block` says whether the message arrived between a Stream Start
/// and its Stream Stop, which changes the layout of change messages. Unless
/// the caller tracks that itself, [`Decoder`] is the safer entry point.
pub fn decode(bytes: Bytes, in_stream_block: bool) -> Result<Message, DecodeError> {
    let Some(&tag) = bytes.first() else {
        return Err(DecodeError::Empty);
    };
    let kind = MessageKind::from_tag(tag).ok_or(DecodeError::UnknownTag { tag })?;
    let mut reader = Reader::new(bytes.slice(1..), kind);
    let message = read_body(&mut reader, kind, in_stream_block)?;
    reader.finish()?;
    Ok(message)
}

/// Reads the fields after the tag byte.
fn read_body(reader: &mut Reader, kind: MessageKind, in_stream_block: bool) -> Result<Message, DecodeError> {
    Ok(match kind {
        MessageKind::Begin => Message::Begin(Begin {
            final_lsn: reader.lsn("final LSN")?,
            commit_time: reader.timestamp("commit timestamp")?,
            xid: reader.u32("xid")?,
        }),
        MessageKind::Commit => {
            reader.flags(NO_FLAGS, "flags")?;
            Message::Commit(Commit {
                commit_lsn: reader.lsn("commit LSN")?,
                end_lsn: reader.lsn("end LSN")?,
                commit_time: reader.timestamp("commit timestamp")?,
            })
        }
        MessageKind::Origin => Message::Origin(Origin {
            commit_lsn: reader.lsn("origin commit LSN")?,
            name: reader.string("origin name")?,
        }),
        MessageKind::Relation => Message::Relation(read_relation(reader, in_stream_block)?),
        MessageKind::Type => Message::Type(Type {
            xid: read_streamed_xid(reader, in_stream_block)?,
            oid: reader.u32("type OID")?,
            namespace: read_namespace(reader)?,
            name: reader.string("type name")?,
        }),
        MessageKind::Insert => Message::Insert(Insert {
            xid: read_streamed_xid(reader, in_stream_block)?,
            relation_oid: reader.u32("relation OID")?,
            new_tuple: read_new_tuple(reader)?,
        }),
        MessageKind::Update => {
            let xid = read_streamed_xid(reader, in_stream_block)?;
            let relation_oid = reader.u32("relation OID")?;
            let (old_tuple, new_tuple) = read_update_tuples(reader)?;
            Message::Update(Update { xid, relation_oid, old_tuple, new_tuple })
        }
        MessageKind::Delete => Message::Delete(Delete {
            xid: read_streamed_xid(reader, in_stream_block)?,
            relation_oid: reader.u32("relation OID")?,
            old_tuple: read_delete_tuple(reader)?,
        }),
        MessageKind::Truncate => Message::Truncate(read_truncate(reader, in_stream_block)?),
        MessageKind::LogicalMessage => {
            let xid = read_streamed_xid(reader, in_stream_block)?;
            let flags = reader.flags(MESSAGE_TRANSACTIONAL, "flags")?;
            Message::LogicalMessage(LogicalMessage {
                xid,
                transactional: flags & MESSAGE_TRANSACTIONAL != 0,
                lsn: reader.lsn("message LSN")?,
                prefix: reader.string("prefix")?,
                content: reader.length_prefixed("content")?,
            })
        }
        MessageKind::StreamStart => Message::StreamStart(StreamStart {
            xid: reader.u32("xid")?,
            first_segment: reader.boolean("first segment flag")?,
        }),
        MessageKind::StreamStop => Message::StreamStop,
        MessageKind::StreamCommit => {
            let xid = reader.u32("xid")?;
            reader.flags(NO_FLAGS, "flags")?;
            Message::StreamCommit(StreamCommit {
                xid,
                commit_lsn: reader.lsn("commit LSN")?,
                end_lsn: reader.lsn("end LSN")?,
                commit_time: reader.timestamp("commit timestamp")?,
            })
        }
        MessageKind::StreamAbort => Message::StreamAbort(read_stream_abort(reader)?),
        MessageKind::BeginPrepare => Message::BeginPrepare(BeginPrepare {
            prepare_lsn: reader.lsn("prepare LSN")?,
            end_lsn: reader.lsn("end LSN")?,
            prepare_time: reader.timestamp("prepare timestamp")?,
            xid: reader.u32("xid")?,
            gid: reader.string("gid")?,
        }),
        MessageKind::Prepare => Message::Prepare(read_prepare(reader)?),
        MessageKind::StreamPrepare => Message::StreamPrepare(read_prepare(reader)?),
        MessageKind::CommitPrepared => {
            reader.flags(NO_FLAGS, "flags")?;
            Message::CommitPrepared(CommitPrepared {
                commit_lsn: reader.lsn("commit LSN")?,
                end_lsn: reader.lsn("end LSN")?,
                commit_time: reader.timestamp("commit timestamp")?,
                xid: reader.u32("xid")?,
                gid: reader.string("gid")?,
            })
        }
        MessageKind::RollbackPrepared => {
            reader.flags(NO_FLAGS, "flags")?;
            Message::RollbackPrepared(RollbackPrepared {
                prepare_end_lsn: reader.lsn("prepare end LSN")?,
                rollback_end_lsn: reader.lsn("rollback end LSN")?,
                prepare_time: reader.timestamp("prepare timestamp")?,
                rollback_time: reader.timestamp("rollback timestamp")?,
                xid: reader.u32("xid")?,
                gid: reader.string("gid")?,
            })
        }
    })
}

/// The xid that change messages carry only inside a stream block.
fn read_streamed_xid(reader: &mut Reader, in_stream_block: bool) -> Result<Option<Xid>, DecodeError> {
    if in_stream_block {
        Ok(Some(reader.u32("streamed transaction xid")?))
    } else {
        Ok(None)
    }
}

/// A schema name, where the server abbreviates `pg_catalog` to "".
fn read_namespace(reader: &mut Reader) -> Result<String, DecodeError> {
    let namespace = reader.string("namespace")?;
    Ok(if namespace.is_empty() { "pg_catalog".to_owned() } else { namespace })
}

fn read_relation(reader: &mut Reader, in_stream_block: bool) -> Result<Relation, DecodeError> {
    let xid = read_streamed_xid(reader, in_stream_block)?;
    let oid = reader.u32("relation OID")?;
    let namespace = read_namespace(reader)?;
    let name = reader.string("relation name")?;
    let replica_identity = match reader.u8("replica identity setting")? {
        b'd' => ReplicaIdentity::Default,
        b'n' => ReplicaIdentity::Nothing,
        b'f' => ReplicaIdentity::Full,
        b'i' => ReplicaIdentity::Index,
        setting => return Err(reader.error(Problem::UnknownReplicaIdentity { setting })),
    };
    let count = reader.u16("column count")?;
    // Bounded by the bytes left, so a bogus count cannot size an allocation.
    let mut columns = Vec::with_capacity(usize::from(count).min(reader.remaining()));
    for _ in 0..count {
        let flags = reader.flags(COLUMN_IS_KEY, "column flags")?;
        columns.push(RelationColumn {
            is_key: flags & COLUMN_IS_KEY != 0,
            name: reader.string("column name")?,
            type_oid: reader.u32("column type OID")?,
            type_modifier: reader.i32("column type modifier")?,
        });
    }
    Ok(Relation { xid, oid, namespace, name, replica_identity, columns })
}

fn read_truncate(reader: &mut Reader, in_stream_block: bool) -> Result<Truncate, DecodeError> {
    let xid = read_streamed_xid(reader, in_stream_block)?;
    let count = reader.non_negative_i32("relation count")?;
    let flags = reader.flags(TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY, "flags")?;
    // Bounded by the bytes left, so a bogus count cannot size an allocation.
    let mut relation_oids = Vec::with_capacity(count.min(reader.remaining() / 4));
    for _ in 0..count {
        relation_oids.push(reader.u32("relation OID")?);
    }
    Ok(Truncate {
        xid,
        cascade: flags & TRUNCATE_CASCADE != 0,
        restart_identity: flags & TRUNCATE_RESTART_IDENTITY != 0,
        relation_oids,
    })
}

fn read_stream_abort(reader: &mut Reader) -> Result<StreamAbort, DecodeError> {
    let xid = reader.u32("xid")?;
    let subxid = reader.u32("subtransaction xid")?;
    // Nothing in the message says whether the parallel-streaming fields are
    // present; the server sends them exactly when the subscriber asked for
    // `streaming = parallel`. Any other length is left to `finish` to refuse.
    let parallel = if reader.remaining() == PARALLEL_ABORT_LEN {
        Some(ParallelAbort { abort_lsn: reader.lsn("abort LSN")?, abort_time: reader.timestamp("abort timestamp")? })
    } else {
        None
    };
    Ok(StreamAbort { xid, subxid, parallel })
}

/// Prepare and Stream Prepare share one layout.
fn read_prepare(reader: &mut Reader) -> Result<Prepare, DecodeError> {
    reader.flags(NO_FLAGS, "flags")?;
    Ok(Prepare {
        prepare_lsn: reader.lsn("prepare LSN")?,
        end_lsn: reader.lsn("end LSN")?,
        prepare_time: reader.timestamp("prepare timestamp")?,
        xid: reader.u32("xid")?,
        gid: reader.string("gid")?,
    })
}

/// Decodes a replication stream's messages in order, tracking whether they
/// are inside a stream block so that the caller cannot get it wrong.
///
/// A new replication connection always starts outside a stream block (the
/// server never resumes half way through one), so start a new `Decoder` for
/// each connection.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    in_stream_block: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the last message decoded opened a stream block that is still open.
    pub fn in_stream_block(&self) -> bool {
        self.in_stream_block
    }

    /// Decodes the next message of the stream; see [`decode`].
    ///
    /// Besides malformed bytes, refuses a Stream Start inside a stream block
    /// and a Stream Stop outside one. After an error the state is as it was
    /// before the call.
    pub fn decode(&mut self, bytes: Bytes) -> Result<Message, DecodeError> {
        let message = decode(bytes, self.in_stream_block)?;
        match (&message, self.in_stream_block) {
            (Message::StreamStart(_), true) => return Err(DecodeError::NestedStreamStart),
            (Message::StreamStart(_), false) => self.in_stream_block = true,
            (Message::StreamStop, true) => self.in_stream_block = false,
            (Message::StreamStop, false) => return Err(DecodeError::StreamStopOutsideStream),
            _ => {}
        }
        Ok(message)
    }
}
