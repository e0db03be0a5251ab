//! Every way a message can be malformed is an error naming the message and
//! the field, never a panic or a silently wrong value.

use bytes::Bytes;
use pgferry_pgoutput::{decode, DecodeError, MessageKind, Problem};

use crate::wire::Wire;

fn problem_in(message: MessageKind, bytes: Bytes) -> Problem {
    match decode(bytes, false) {
        Err(DecodeError::Malformed { message: actual, problem }) if actual == message => problem,
        other => panic!("expected a malformed {message} message, got {other:?}"),
    }
}

fn begin() -> Wire {
    Wire::tag(b'B').u64(0x100).i64(0).u32(5)
}

#[test]
fn empty_input() {
    assert_eq!(decode(Bytes::new(), false), Err(DecodeError::Empty));
}

#[test]
fn unknown_tag() {
    assert_eq!(decode(Wire::tag(b'Z').u32(1).build(), false), Err(DecodeError::UnknownTag { tag: b'Z' }));
}

#[test]
fn truncated_fixed_field() {
    let begin = Wire::tag(b'B').raw(&[0; 5]).build();
    assert_eq!(
        problem_in(MessageKind::Begin, begin),
        Problem::Truncated { field: "final LSN", needed: 8, remaining: 5 }
    );
}

#[test]
fn truncated_column_value() {
    let insert = Wire::tag(b'I').u32(1).u8(b'N').u16(1).u8(b't').i32(10).raw(b"short").build();
    assert_eq!(
        problem_in(MessageKind::Insert, insert),
        Problem::Truncated { field: "text column value", needed: 10, remaining: 5 }
    );
}

#[test]
fn trailing_bytes() {
    let begin = begin().u8(0).build();
    assert_eq!(problem_in(MessageKind::Begin, begin), Problem::TrailingBytes { count: 1 });
    // Only exactly the parallel-streaming fields may follow a Stream Abort.
    let abort = Wire::tag(b'A').u32(1).u32(1).u64(0).build();
    assert_eq!(problem_in(MessageKind::StreamAbort, abort), Problem::TrailingBytes { count: 8 });
    assert_eq!(problem_in(MessageKind::StreamStop, Wire::tag(b'E').u8(0).build()), Problem::TrailingBytes { count: 1 });
}

#[test]
fn unknown_tuple_column_kind() {
    let insert = Wire::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'x').build();
    assert_eq!(problem_in(MessageKind::Insert, insert), Problem::UnknownColumnKind { kind: b'x' });
}

#[test]
fn negative_value_length() {
    let insert = Wire::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'b').i32(-1).build();
    assert_eq!(problem_in(MessageKind::Insert, insert), Problem::Negative { field: "binary column value", value: -1 });
}

#[test]
fn non_utf8_name() {
    let relation = Wire::tag(b'R').u32(1).string(b"public").string(b"caf\xE9").u8(b'd').u16(0).build();
    assert_eq!(problem_in(MessageKind::Relation, relation), Problem::InvalidUtf8 { field: "relation name" });
}

#[test]
fn missing_nul_terminator() {
    let origin = Wire::tag(b'O').u64(1).raw(b"upstream").build();
    assert_eq!(problem_in(MessageKind::Origin, origin), Problem::MissingNul { field: "origin name" });
}

#[test]
fn unknown_replica_identity() {
    let relation = Wire::tag(b'R').u32(1).string(b"public").string(b"t").u8(b'x').u16(0).build();
    assert_eq!(problem_in(MessageKind::Relation, relation), Problem::UnknownReplicaIdentity { setting: b'x' });
}

#[test]
fn unknown_flag_bits() {
    let commit = Wire::tag(b'C').u8(1).u64(1).u64(2).i64(3).build();
    assert_eq!(problem_in(MessageKind::Commit, commit), Problem::UnknownFlags { field: "flags", flags: 1 });
    let truncate = Wire::tag(b'T').i32(1).u8(4).u32(16384).build();
    assert_eq!(problem_in(MessageKind::Truncate, truncate), Problem::UnknownFlags { field: "flags", flags: 4 });
    let message = Wire::tag(b'M').u8(2).u64(1).string(b"p").i32(0).build();
    assert_eq!(problem_in(MessageKind::LogicalMessage, message), Problem::UnknownFlags { field: "flags", flags: 2 });
    let relation = Wire::tag(b'R')
        .u32(1)
        .string(b"public")
        .string(b"t")
        .u8(b'd')
        .u16(1)
        .u8(3)
        .string(b"id")
        .u32(23)
        .i32(-1)
        .build();
    assert_eq!(problem_in(MessageKind::Relation, relation), Problem::UnknownFlags { field: "column flags", flags: 3 });
}

#[test]
fn first_segment_flag_is_a_boolean() {
    let start = Wire::tag(b'S').u32(1).u8(2).build();
    assert_eq!(
        problem_in(MessageKind::StreamStart, start),
        Problem::InvalidBoolean { field: "first segment flag", value: 2 }
    );
}

#[test]
fn unexpected_tuple_markers() {
    let update = Wire::tag(b'U').u32(1).u8(b'X').build();
    assert_eq!(
        problem_in(MessageKind::Update, update),
        Problem::UnexpectedTupleMarker { expected: "'K', 'O' or 'N'", found: b'X' }
    );
    // An old tuple must be followed by the new one.
    let update = Wire::tag(b'U').u32(1).u8(b'K').u16(0).u8(b'K').u16(0).build();
    assert_eq!(
        problem_in(MessageKind::Update, update),
        Problem::UnexpectedTupleMarker { expected: "'N'", found: b'K' }
    );
    let delete = Wire::tag(b'D').u32(1).u8(b'N').u16(0).build();
    assert_eq!(
        problem_in(MessageKind::Delete, delete),
        Problem::UnexpectedTupleMarker { expected: "'K' or 'O'", found: b'N' }
    );
    let insert = Wire::tag(b'I').u32(1).u8(b'O').u16(0).build();
    assert_eq!(
        problem_in(MessageKind::Insert, insert),
        Problem::UnexpectedTupleMarker { expected: "'N'", found: b'O' }
    );
}

#[test]
fn counts_that_the_bytes_cannot_back() {
    // Claims are checked against the bytes that are there, not trusted to
    // size allocations.
    let truncate = Wire::tag(b'T').i32(i32::MAX).u8(0).u32(1).build();
    assert_eq!(
        problem_in(MessageKind::Truncate, truncate),
        Problem::Truncated { field: "relation OID", needed: 4, remaining: 0 }
    );
    let truncate = Wire::tag(b'T').i32(-1).u8(0).build();
    assert_eq!(problem_in(MessageKind::Truncate, truncate), Problem::Negative { field: "relation count", value: -1 });
    let insert = Wire::tag(b'I').u32(1).u8(b'N').u16(u16::MAX).u8(b'n').build();
    assert_eq!(
        problem_in(MessageKind::Insert, insert),
        Problem::Truncated { field: "tuple column kind", needed: 1, remaining: 0 }
    );
}

#[test]
fn errors_read_as_sentences() {
    let error = decode(Wire::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'?').build(), false).unwrap_err();
    assert_eq!(
        error.to_string(),
        "malformed Insert message: unknown tuple column kind '?' (0x3f) \
         (expected 'n', 'u', 't' or 'b')"
    );
    let error = decode(Wire::tag(b'p').u8(0).build(), false).unwrap_err();
    assert_eq!(
        error.to_string(),
        "malformed Stream Prepare message: truncated while reading prepare LSN: \
         it needs 8 bytes but only 0 remain"
    );
}
