//! Protocol version 3 with `two_phase = on` (and `streaming = on`), captured
//! from PostgreSQL 15: transactions prepared with PREPARE TRANSACTION arrive
//! at prepare time, and their COMMIT or ROLLBACK PREPARED later.

use pgferry_pgoutput::{Lsn, Message, MessageKind};

use crate::fixtures::{decode_all, text, TWO_PHASE};

const ITEMS: u32 = 16454;

fn decoded() -> Vec<(Lsn, Message)> {
    decode_all(TWO_PHASE)
}

#[test]
fn decodes_every_message_in_order() {
    use MessageKind::*;
    let kinds: Vec<MessageKind> = decoded().iter().map(|(_, message)| message.kind()).collect();
    #[rustfmt::skip]
    let mut expected = vec![
        BeginPrepare, Relation, Insert, Prepare, CommitPrepared, // 'gid-commit'
        BeginPrepare, Insert, Prepare, RollbackPrepared,         // 'gid-rollback'
        StreamStart, Relation, Insert, Insert, StreamStop,       // 'gid-streamed' …
    ];
    for _ in 0..5 {
        expected.extend([StreamStart, Insert, Insert, StreamStop]);
    }
    expected.extend([StreamPrepare, CommitPrepared]);
    assert_eq!(kinds, expected);
}

#[test]
fn prepared_then_committed() {
    let decoded = decoded();
    let Message::BeginPrepare(begin) = &decoded[0].1 else { panic!() };
    let Message::Insert(insert) = &decoded[2].1 else { panic!() };
    let (prepare_row, Message::Prepare(prepare)) = &decoded[3] else { panic!() };
    let (commit_row, Message::CommitPrepared(commit)) = &decoded[4] else { panic!() };

    assert_eq!(begin.gid, "gid-commit");
    assert_eq!(insert.relation_oid, ITEMS);
    assert_eq!(insert.new_tuple, [text("1"), text("kept")]);
    assert_eq!(prepare.gid, begin.gid);
    assert_eq!(prepare.xid, begin.xid);
    assert_eq!(prepare.prepare_lsn, begin.prepare_lsn);
    assert_eq!(prepare.end_lsn, begin.end_lsn);
    assert_eq!(prepare.prepare_time, begin.prepare_time);
    assert_eq!(prepare.end_lsn, *prepare_row);

    assert_eq!(commit.gid, "gid-commit");
    assert_eq!(commit.xid, begin.xid);
    assert_eq!(commit.end_lsn, *commit_row);
    assert!(commit.commit_lsn >= prepare.end_lsn);
    assert!(commit.commit_time >= prepare.prepare_time);
}

#[test]
fn prepared_then_rolled_back() {
    let decoded = decoded();
    let Message::BeginPrepare(begin) = &decoded[5].1 else { panic!() };
    let Message::Prepare(prepare) = &decoded[7].1 else { panic!() };
    let (rollback_row, Message::RollbackPrepared(rollback)) = &decoded[8] else { panic!() };

    assert_eq!(begin.gid, "gid-rollback");
    assert_eq!(rollback.gid, "gid-rollback");
    assert_eq!(rollback.xid, begin.xid);
    assert_eq!(rollback.prepare_end_lsn, prepare.end_lsn);
    assert_eq!(rollback.prepare_time, prepare.prepare_time);
    assert_eq!(rollback.rollback_end_lsn, *rollback_row);
    assert!(rollback.rollback_time >= rollback.prepare_time);
}

#[test]
fn streamed_then_prepared_then_committed() {
    let decoded = decoded();
    let Message::StreamStart(start) = &decoded[9].1 else { panic!() };
    assert!(start.first_segment);
    let Message::Relation(items) = &decoded[10].1 else { panic!() };
    assert_eq!(items.xid, Some(start.xid));

    let (prepare_row, Message::StreamPrepare(prepare)) = &decoded[decoded.len() - 2] else { panic!() };
    assert_eq!(prepare.gid, "gid-streamed");
    assert_eq!(prepare.xid, start.xid);
    assert_eq!(prepare.end_lsn, *prepare_row);

    let Message::CommitPrepared(commit) = &decoded[decoded.len() - 1].1 else { panic!() };
    assert_eq!(commit.gid, "gid-streamed");
    assert_eq!(commit.xid, start.xid);
}
