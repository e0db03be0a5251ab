//! `Decoder` follows Stream Start and Stream Stop so that change messages are
//! read with the right layout without the caller tracking anything.

use bytes::Bytes;
use pgferry_pgoutput::{DecodeError, Decoder, Message};

use crate::wire::Wire;

fn stream_start(xid: u32) -> Bytes {
    Wire::tag(b'S').u32(xid).u8(1).build()
}

fn stream_stop() -> Bytes {
    Wire::tag(b'E').build()
}

/// An Insert of one NULL column into relation 16384, streamed or not.
fn insert(streamed_xid: Option<u32>) -> Bytes {
    let wire = Wire::tag(b'I');
    let wire = match streamed_xid {
        Some(xid) => wire.u32(xid),
        None => wire,
    };
    wire.u32(16384).u8(b'N').u16(1).u8(b'n').build()
}

#[test]
fn reads_the_xid_only_inside_a_stream_block() {
    let mut decoder = Decoder::new();
    assert!(!decoder.in_stream_block());

    let Ok(Message::Insert(outside)) = decoder.decode(insert(None)) else { panic!() };
    assert_eq!((outside.xid, outside.relation_oid), (None, 16384));

    assert!(matches!(decoder.decode(stream_start(900)), Ok(Message::StreamStart(_))));
    assert!(decoder.in_stream_block());
    let Ok(Message::Insert(inside)) = decoder.decode(insert(Some(900))) else { panic!() };
    assert_eq!((inside.xid, inside.relation_oid), (Some(900), 16384));

    assert_eq!(decoder.decode(stream_stop()), Ok(Message::StreamStop));
    assert!(!decoder.in_stream_block());
    let Ok(Message::Insert(after)) = decoder.decode(insert(None)) else { panic!() };
    assert_eq!(after.xid, None);
}

#[test]
fn refuses_a_stream_start_inside_a_block() {
    let mut decoder = Decoder::new();
    decoder.decode(stream_start(1)).unwrap();
    assert_eq!(decoder.decode(stream_start(2)), Err(DecodeError::NestedStreamStart));
    // Still inside the first block.
    assert!(decoder.in_stream_block());
    assert!(decoder.decode(insert(Some(1))).is_ok());
}

#[test]
fn refuses_a_stream_stop_outside_a_block() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(stream_stop()), Err(DecodeError::StreamStopOutsideStream));
    assert!(!decoder.in_stream_block());
}

#[test]
fn a_malformed_message_leaves_the_state_alone() {
    let mut decoder = Decoder::new();
    decoder.decode(stream_start(1)).unwrap();
    assert!(decoder.decode(Wire::tag(b'E').u8(0).build()).is_err());
    assert!(decoder.in_stream_block());
}
