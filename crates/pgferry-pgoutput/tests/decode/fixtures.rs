//! Loads the captured fixtures: `<lsn> <hex>` lines, `#` starts a comment.

use bytes::Bytes;
use pgferry_pgoutput::{Decoder, Lsn, Message};

pub(crate) const BASICS_TEXT: &str = include_str!("../fixtures/basics_v1_text.hex");
pub(crate) const BASICS_BINARY: &str = include_str!("../fixtures/basics_v1_binary.hex");
pub(crate) const STREAMING: &str = include_str!("../fixtures/streaming_v2.hex");
pub(crate) const TWO_PHASE: &str = include_str!("../fixtures/twophase_v3.hex");

pub(crate) const ALL: [(&str, &str); 4] = [
    ("basics_v1_text", BASICS_TEXT),
    ("basics_v1_binary", BASICS_BINARY),
    ("streaming_v2", STREAMING),
    ("twophase_v3", TWO_PHASE),
];

/// One row of `pg_logical_slot_peek_binary_changes`.
pub(crate) struct Captured {
    /// The `lsn` column: for a Commit, the end of the commit record.
    pub(crate) lsn: Lsn,
    pub(crate) bytes: Bytes,
}

pub(crate) fn load(fixture: &str) -> Vec<Captured> {
    fixture
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (lsn, hex) = line.split_once(' ').expect("<lsn> <hex>");
            Captured { lsn: lsn.parse().expect("fixture LSN"), bytes: Bytes::from(from_hex(hex)) }
        })
        .collect()
}

/// Decodes a whole fixture in order, as a replication client would.
pub(crate) fn decode_all(fixture: &str) -> Vec<(Lsn, Message)> {
    let mut decoder = Decoder::new();
    load(fixture)
        .into_iter()
        .map(|captured| {
            let message = decoder
                .decode(captured.bytes.clone())
                .unwrap_or_else(|error| panic!("message at {}: {error}", captured.lsn));
            (captured.lsn, message)
        })
        .collect()
}

pub(crate) fn from_hex(hex: &str) -> Vec<u8> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            assert_eq!(pair.len(), 2, "odd-length hex");
            let pair = std::str::from_utf8(pair).expect("ASCII hex");
            u8::from_str_radix(pair, 16).expect("hex digit")
        })
        .collect()
}

pub(crate) fn text(value: &str) -> pgferry_pgoutput::Column {
    pgferry_pgoutput::Column::Text(Bytes::copy_from_slice(value.as_bytes()))
}
