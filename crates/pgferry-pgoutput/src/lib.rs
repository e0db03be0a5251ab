//! pgferry's decoder of pgoutput, the logical replication output plugin that
//! ships with PostgreSQL.
//!
//! pgferry keeps a target in sync by consuming a logical replication slot, so
//! it reads the same messages a built-in subscriber reads, described in
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>
//! (protocol versions 1 to 4; see
//! <https://www.postgresql.org/docs/current/protocol-logical-replication.html>
//! for what each version adds). This crate only turns bytes into values: it
//! does no I/O and keeps no state beyond whether a stream block is open, so
//! every rule can be pinned down by tests on captured bytes.
//!
//! The bytes come from the network, so decoding never panics: anything
//! malformed is a [`DecodeError`] saying which message and field were wrong.
//!
//! ```
//! use bytes::Bytes;
//! use pgferry_pgoutput::{Decoder, Lsn, Message};
//!
//! // A Begin message as PostgreSQL 15 sent it.
//! let begin = Bytes::from_static(
//!     b"B\x00\x00\x00\x00\x01\x93\x4a\xa8\x00\x03\x04\x4b\xde\x01\x92\x24\x00\x00\x02\xde",
//! );
//! let mut decoder = Decoder::new();
//! let Message::Begin(begin) = decoder.decode(begin)? else { unreachable!() };
//! assert_eq!(begin.final_lsn, "0/1934AA8".parse::<Lsn>()?);
//! assert_eq!(begin.xid, 734);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod error;
mod kind;
mod lsn;
mod message;
mod reader;
mod timestamp;
mod tuple;

pub use decode::{decode, Decoder};
pub use error::{DecodeError, Problem};
pub use kind::MessageKind;
pub use lsn::{Lsn, ParseLsnError};
pub use message::{
    Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage, Message, Oid, Origin, ParallelAbort,
    Prepare, Relation, RelationColumn, ReplicaIdentity, RollbackPrepared, StreamAbort, StreamCommit, StreamStart,
    Truncate, Type, Update, Xid,
};
pub use timestamp::Timestamp;
pub use tuple::{Column, OldTuple};
