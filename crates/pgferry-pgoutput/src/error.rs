//! Why a pgoutput message could not be decoded.
//!
//! The bytes come from a server over the network, so the decoder treats them
//! as untrusted: every way they can be wrong is an error value, never a panic.
//! Each error names the message (in the manual's words) and the field that was
//! being read, so a log line is enough to find the offending byte against
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

use std::fmt;

use crate::kind::MessageKind;

/// A pgoutput message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message: there is no tag byte")]
    Empty,
    #[error("unknown pgoutput message tag {}", DisplayByte(*tag))]
    UnknownTag { tag: u8 },
    #[error("malformed {message} message: {problem}")]
    Malformed { message: MessageKind, problem: Problem },
    /// Stream blocks do not nest: the server sends Stream Stop before the next
    /// Stream Start. Reported by [`crate::Decoder`], which tracks the blocks.
    #[error("Stream Start arrived inside a stream block: the previous block has no Stream Stop")]
    NestedStreamStart,
    /// Reported by [`crate::Decoder`], which tracks the blocks.
    #[error("Stream Stop arrived outside a stream block: there was no Stream Start")]
    StreamStopOutsideStream,
}

/// What was wrong inside a message whose tag was recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("truncated while reading {field}: it needs {needed} bytes but only {remaining} remain")]
    Truncated { field: &'static str, needed: usize, remaining: usize },
    #[error("{field} has no NUL terminator")]
    MissingNul { field: &'static str },
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{field} is negative ({value})")]
    Negative { field: &'static str, value: i32 },
    #[error("{field} has unknown bits set ({}); a newer server may mean something this decoder does not know", DisplayByte(*flags))]
    UnknownFlags { field: &'static str, flags: u8 },
    #[error("{field} must be 0 or 1, not {value}")]
    InvalidBoolean { field: &'static str, value: u8 },
    #[error("unknown replica identity setting {}", DisplayByte(*setting))]
    UnknownReplicaIdentity { setting: u8 },
    #[error("unknown tuple column kind {} (expected 'n', 'u', 't' or 'b')", DisplayByte(*kind))]
    UnknownColumnKind { kind: u8 },
    #[error("expected {expected} before a tuple, found {}", DisplayByte(*found))]
    UnexpectedTupleMarker { expected: &'static str, found: u8 },
    #[error("{count} unexpected bytes after the last field")]
    TrailingBytes { count: usize },
}

/// Shows a protocol byte both as the character the manual writes and in hex,
/// e.g. `'N' (0x4e)`, or just `0x00` when it is not printable.
struct DisplayByte(u8);

impl fmt::Display for DisplayByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let byte = self.0;
        if byte.is_ascii_graphic() {
            write!(f, "'{}' ({byte:#04x})", char::from(byte))
        } else {
            write!(f, "{byte:#04x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_message_and_the_field() {
        let error = DecodeError::Malformed {
            message: MessageKind::Insert,
            problem: Problem::Truncated { field: "column value", needed: 5, remaining: 2 },
        };
        assert_eq!(
            error.to_string(),
            "malformed Insert message: truncated while reading column value: \
             it needs 5 bytes but only 2 remain"
        );
    }

    #[test]
    fn shows_bytes_as_characters_when_printable() {
        assert_eq!(DecodeError::UnknownTag { tag: b'Z' }.to_string(), "unknown pgoutput message tag 'Z' (0x5a)");
        assert_eq!(DecodeError::UnknownTag { tag: 0 }.to_string(), "unknown pgoutput message tag 0x00");
    }
}
