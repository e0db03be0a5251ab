//! Messages a PostgreSQL 15 server does not send (protocol version 4) or that
//! need particular catalog states, written by hand from the manual's layout.

use bytes::Bytes;
use pgferry_pgoutput::{
    decode, Column, Lsn, Message, OldTuple, ParallelAbort, ReplicaIdentity, StreamAbort, Timestamp,
};

use crate::wire::Wire;

#[test]
fn stream_abort_with_parallel_streaming_fields() {
    // Protocol version 4 with `streaming = parallel` appends the abort LSN
    // and time to Stream Abort.
    let abort = Wire::tag(b'A').u32(1000).u32(1001).u64(0x1_0000_0ABC).i64(757_479_845_678_901).build();
    assert_eq!(
        decode(abort, false),
        Ok(Message::StreamAbort(StreamAbort {
            xid: 1000,
            subxid: 1001,
            parallel: Some(ParallelAbort { abort_lsn: Lsn(0x1_0000_0ABC), abort_time: Timestamp(757_479_845_678_901) }),
        }))
    );
}

#[test]
fn stream_abort_without_parallel_streaming_fields() {
    let abort = Wire::tag(b'A').u32(1000).u32(1000).build();
    assert_eq!(decode(abort, false), Ok(Message::StreamAbort(StreamAbort { xid: 1000, subxid: 1000, parallel: None })));
}

#[test]
fn empty_namespace_means_pg_catalog() {
    let relation = Wire::tag(b'R').u32(1259).string(b"").string(b"pg_class").u8(b'n').u16(0).build();
    let Ok(Message::Relation(relation)) = decode(relation, false) else { panic!() };
    assert_eq!(relation.namespace, "pg_catalog");
    assert_eq!(relation.replica_identity, ReplicaIdentity::Nothing);
    assert!(relation.columns.is_empty());

    let type_ = Wire::tag(b'Y').u32(16).string(b"").string(b"bool").build();
    let Ok(Message::Type(type_)) = decode(type_, false) else { panic!() };
    assert_eq!(type_.namespace, "pg_catalog");
}

#[test]
fn replica_identity_using_index() {
    let relation = Wire::tag(b'R')
        .u32(16500)
        .string(b"app")
        .string(b"users")
        .u8(b'i')
        .u16(2)
        .u8(1)
        .string(b"email")
        .u32(1043)
        .i32(254 + 4)
        .u8(0)
        .string(b"name")
        .u32(25)
        .i32(-1)
        .build();
    let Ok(Message::Relation(relation)) = decode(relation, false) else { panic!() };
    assert_eq!(relation.replica_identity, ReplicaIdentity::Index);
    let keys: Vec<(&str, bool, i32)> =
        relation.columns.iter().map(|column| (column.name.as_str(), column.is_key, column.type_modifier)).collect();
    assert_eq!(keys, [("email", true, 258), ("name", false, -1)]);
}

#[test]
fn non_ascii_names_and_binary_content_survive() {
    let message = Wire::tag(b'M').u8(0).u64(42).string("préfixe".as_bytes()).i32(3).raw(&[0, 0xFF, 0x80]).build();
    let Ok(Message::LogicalMessage(message)) = decode(message, false) else { panic!() };
    assert_eq!(message.prefix, "préfixe");
    assert_eq!(message.content, Bytes::from_static(&[0, 0xFF, 0x80]));
    assert_eq!(message.lsn, Lsn(42));
}

#[test]
fn empty_values_and_empty_tuples() {
    let update = Wire::tag(b'U').u32(7).u8(b'O').u16(0).u8(b'N').u16(2).text_column(b"").u8(b'b').i32(0).build();
    let Ok(Message::Update(update)) = decode(update, false) else { panic!() };
    assert_eq!(update.old_tuple, Some(OldTuple::Full(vec![])));
    assert_eq!(update.new_tuple, [Column::Text(Bytes::new()), Column::Binary(Bytes::new())]);
}

#[test]
fn stream_stop_is_just_a_tag() {
    assert_eq!(decode(Wire::tag(b'E').build(), true), Ok(Message::StreamStop));
}
