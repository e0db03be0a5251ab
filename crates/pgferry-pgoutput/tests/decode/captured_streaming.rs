//! Protocol version 2 with `streaming = on`, captured from PostgreSQL 15 with
//! `logical_decoding_work_mem = 64kB`: transactions too big to keep in memory
//! arrive in stream blocks before they end.

use bytes::Bytes;
use pgferry_pgoutput::{decode, Column, DecodeError, Lsn, Message, MessageKind, OldTuple, Problem, StreamAbort, Xid};

use crate::fixtures::{decode_all, load, text, STREAMING};

/// The committed transaction, the rolled back one, and the one whose
/// subtransaction was rolled back.
const COMMITTED: Xid = 0x2F0;
const ROLLED_BACK: Xid = 0x2F1;
const WITH_SUBTRANSACTION: Xid = 0x2F2;
const SUBTRANSACTION: Xid = 0x2F3;
const BULK: u32 = 16441;
const SCRATCH: u32 = 16448;

/// The xid a message describing a change carries, if it is such a message.
fn change_xid(message: &Message) -> Option<Option<Xid>> {
    match message {
        Message::Relation(relation) => Some(relation.xid),
        Message::Type(type_) => Some(type_.xid),
        Message::Insert(insert) => Some(insert.xid),
        Message::Update(update) => Some(update.xid),
        Message::Delete(delete) => Some(delete.xid),
        Message::Truncate(truncate) => Some(truncate.xid),
        Message::LogicalMessage(message) => Some(message.xid),
        _ => None,
    }
}

#[test]
fn changes_inside_stream_blocks_carry_their_transaction() {
    let mut block_xid = None;
    let mut changes = 0;
    for (lsn, message) in decode_all(STREAMING) {
        match &message {
            Message::StreamStart(start) => block_xid = Some(start.xid),
            Message::StreamStop => block_xid = None,
            Message::StreamCommit(_) | Message::StreamAbort(_) => {
                assert_eq!(block_xid, None, "{} at {lsn} is sent between blocks", message.kind());
            }
            other => {
                let xid = change_xid(other)
                    .unwrap_or_else(|| panic!("{} at {lsn} inside a stream", other.kind()))
                    .expect("a streamed change carries an xid");
                let block_xid = block_xid.expect("every change here is streamed");
                assert!(
                    xid == block_xid || (block_xid, xid) == (WITH_SUBTRANSACTION, SUBTRANSACTION),
                    "xid {xid} in the block of {block_xid}"
                );
                changes += 1;
            }
        }
    }
    assert!(changes > 20);
}

#[test]
fn first_segment_is_flagged_once_per_transaction() {
    let starts: Vec<(Xid, bool)> = decode_all(STREAMING)
        .into_iter()
        .filter_map(|(_, message)| match message {
            Message::StreamStart(start) => Some((start.xid, start.first_segment)),
            _ => None,
        })
        .collect();
    let firsts: Vec<Xid> = starts.iter().filter(|(_, first)| *first).map(|(xid, _)| *xid).collect();
    assert_eq!(firsts, [COMMITTED, ROLLED_BACK, WITH_SUBTRANSACTION]);
    // Each transaction's first block comes before its others.
    for (index, (xid, first)) in starts.iter().enumerate() {
        let earlier_block = starts[..index].iter().any(|(earlier, _)| earlier == xid);
        assert_eq!(*first, !earlier_block, "block {index} of xid {xid}");
    }
}

#[test]
fn streamed_changes_of_every_kind_decode() {
    let messages: Vec<Message> = decode_all(STREAMING).into_iter().map(|(_, message)| message).collect();
    let find = |kind: MessageKind| {
        messages.iter().find(|message| message.kind() == kind).unwrap_or_else(|| panic!("no {kind}"))
    };

    let Message::Type(mood) = find(MessageKind::Type) else { panic!() };
    assert_eq!((mood.xid, mood.name.as_str()), (Some(COMMITTED), "mood"));
    let Message::Relation(bulk) = find(MessageKind::Relation) else { panic!() };
    assert_eq!((bulk.xid, bulk.oid, bulk.name.as_str()), (Some(COMMITTED), BULK, "bulk"));

    let Message::Insert(first) = find(MessageKind::Insert) else { panic!() };
    assert_eq!(first.xid, Some(COMMITTED));
    assert_eq!(first.relation_oid, BULK);
    assert_eq!(first.new_tuple, [text("1"), text(&"x".repeat(200)), text("ok")]);

    let Message::Update(update) = find(MessageKind::Update) else { panic!() };
    assert_eq!(update.xid, Some(COMMITTED));
    assert_eq!(update.new_tuple, [text("1"), text("updated"), text("ok")]);

    let Message::Delete(delete) = find(MessageKind::Delete) else { panic!() };
    assert_eq!(delete.xid, Some(COMMITTED));
    assert_eq!(delete.old_tuple, OldTuple::Key(vec![text("2"), Column::Null, Column::Null]));

    let Message::Truncate(truncate) = find(MessageKind::Truncate) else { panic!() };
    assert_eq!(truncate.xid, Some(COMMITTED));
    assert_eq!(truncate.relation_oids, [SCRATCH]);
    assert!(!truncate.cascade && !truncate.restart_identity);

    let Message::LogicalMessage(note) = find(MessageKind::LogicalMessage) else { panic!() };
    assert_eq!(note.xid, Some(COMMITTED));
    assert!(note.transactional);
    assert_eq!(note.content, Bytes::from_static(b"inside a stream"));
}

#[test]
fn stream_commit_ends_the_streamed_transaction() {
    let decoded = decode_all(STREAMING);
    let (row_lsn, Message::StreamCommit(commit)) =
        decoded.iter().find(|(_, message)| message.kind() == MessageKind::StreamCommit).unwrap()
    else {
        panic!()
    };
    assert_eq!(commit.xid, COMMITTED);
    assert_eq!(commit.end_lsn, *row_lsn);
    assert_eq!(commit.commit_lsn, "0/1DB0670".parse::<Lsn>().unwrap());
    assert!(commit.commit_lsn < commit.end_lsn);
}

#[test]
fn stream_abort_names_the_transaction_or_subtransaction() {
    let aborts: Vec<StreamAbort> = decode_all(STREAMING)
        .into_iter()
        .filter_map(|(_, message)| match message {
            Message::StreamAbort(abort) => Some(abort),
            _ => None,
        })
        .collect();
    assert_eq!(
        aborts,
        [
            // ROLLBACK of the whole transaction: xid and subxid are the same.
            StreamAbort { xid: ROLLED_BACK, subxid: ROLLED_BACK, parallel: None },
            // ROLLBACK TO SAVEPOINT: only the subtransaction's changes go.
            StreamAbort { xid: WITH_SUBTRANSACTION, subxid: SUBTRANSACTION, parallel: None },
        ]
    );
}

#[test]
fn the_stream_block_flag_changes_the_layout() {
    let captured = load(STREAMING);
    // A streamed Insert read as if outside a block: its xid is taken for the
    // relation OID and the relation OID's first byte for the tuple marker.
    let streamed_insert = captured[3].bytes.clone();
    assert!(matches!(decode(streamed_insert.clone(), true), Ok(Message::Insert(_))));
    assert_eq!(
        decode(streamed_insert, false),
        Err(DecodeError::Malformed {
            message: MessageKind::Insert,
            problem: Problem::UnexpectedTupleMarker { expected: "'N'", found: 0 },
        })
    );
}
