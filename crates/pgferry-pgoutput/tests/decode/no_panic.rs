//! Fuzz-style checks that no input makes the decoder panic: every prefix of
//! every captured message, and many random mutations of them. A tiny
//! xorshift generator with fixed seeds keeps the runs reproducible without a
//! fuzzing dependency.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use pgferry_pgoutput::{decode, DecodeError, Decoder, Message, Problem};

use crate::fixtures::{load, ALL};
use crate::wire::Wire;

/// Every captured message with the stream-block flag it was decoded with.
fn captured_messages() -> Vec<(Vec<u8>, bool)> {
    let mut all = Vec::new();
    for (_, fixture) in ALL {
        let mut decoder = Decoder::new();
        for captured in load(fixture) {
            let in_stream_block = decoder.in_stream_block();
            decoder.decode(captured.bytes.clone()).unwrap();
            all.push((captured.bytes.to_vec(), in_stream_block));
        }
    }
    all
}

/// Hand-built messages covering what the captures lack.
fn hand_built_messages() -> Vec<(Vec<u8>, bool)> {
    let parallel_abort = Wire::tag(b'A').u32(1).u32(2).u64(3).i64(4).build();
    let index_relation =
        Wire::tag(b'R').u32(1).string(b"").string(b"t").u8(b'i').u16(1).u8(1).string(b"id").u32(23).i32(-1).build();
    vec![(parallel_abort.to_vec(), false), (index_relation.to_vec(), false)]
}

fn decode_without_panic(bytes: &[u8], in_stream_block: bool) -> Result<Message, DecodeError> {
    let input = Bytes::copy_from_slice(bytes);
    catch_unwind(AssertUnwindSafe(|| decode(input, in_stream_block)))
        .unwrap_or_else(|_| panic!("decoder panicked on {} (in_stream_block = {in_stream_block})", hex(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let mut prefixes = 0;
    for (message, in_stream_block) in captured_messages() {
        for length in 0..message.len() {
            let prefix = &message[..length];
            let result = decode_without_panic(prefix, in_stream_block);
            // No strict prefix of a captured message is a whole message.
            let is_truncation = matches!(
                result,
                Err(DecodeError::Empty)
                    | Err(DecodeError::Malformed {
                        problem: Problem::Truncated { .. } | Problem::MissingNul { .. },
                        ..
                    })
            );
            assert!(is_truncation, "{} gave {result:?}", hex(prefix));
            decode_without_panic(prefix, !in_stream_block).ok();
            prefixes += 1;
        }
    }
    for (message, in_stream_block) in hand_built_messages() {
        for length in 0..message.len() {
            decode_without_panic(&message[..length], in_stream_block).ok();
            decode_without_panic(&message[..length], !in_stream_block).ok();
        }
    }
    assert!(prefixes > 10_000, "only {prefixes} prefixes");
}

/// Marsaglia's xorshift64: plenty for picking mutations.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// Bytes that mean something to the decoder, so mutations hit its branches
/// more often than uniformly random bytes would.
const INTERESTING: &[u8] = &[0, 1, 2, 3, 0x7F, 0x80, 0xFF, b'n', b'u', b't', b'b', b'N', b'K', b'O', b'd', b'f', b'i'];

fn mutate(rng: &mut XorShift, message: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(message.len().max(1));
        match rng.below(6) {
            0 if !message.is_empty() => message[at] = rng.byte(),
            1 if !message.is_empty() => message[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => message.insert(at.min(message.len()), rng.byte()),
            3 if !message.is_empty() => {
                message.remove(at);
            }
            4 => message.truncate(at),
            _ if !message.is_empty() => {
                // Overwrite a 4-byte window, where lengths and counts live.
                let value = match rng.below(3) {
                    0 => u32::MAX,
                    1 => 0x7FFF_FFFF,
                    _ => rng.next() as u32,
                };
                for (offset, byte) in value.to_be_bytes().into_iter().enumerate() {
                    if let Some(slot) = message.get_mut(at + offset) {
                        *slot = byte;
                    }
                }
            }
            _ => message.push(rng.byte()),
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut messages = captured_messages();
    messages.extend(hand_built_messages());
    let mut decoded_ok = 0;
    for (original, in_stream_block) in &messages {
        for _ in 0..200 {
            let mut mutated = original.clone();
            mutate(&mut rng, &mut mutated);
            if decode_without_panic(&mutated, *in_stream_block).is_ok() {
                decoded_ok += 1;
            }
            decode_without_panic(&mutated, !*in_stream_block).ok();
        }
    }
    // Some mutations only change values; those must still decode.
    assert!(decoded_ok > 0);
}

#[test]
fn random_bytes_after_every_tag_never_panic() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    for tag in 0..=u8::MAX {
        for _ in 0..200 {
            let length = rng.below(48);
            let mut message = vec![tag];
            message.extend((0..length).map(|_| rng.byte()));
            decode_without_panic(&message, false).ok();
            decode_without_panic(&message, true).ok();
        }
    }
}
