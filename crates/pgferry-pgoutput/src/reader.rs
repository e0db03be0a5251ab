//! A bounds-checked cursor over one message's bytes.
//!
//! All the wire primitives pgoutput uses (big-endian integers, NUL-terminated
//! strings, length-prefixed byte strings; see
//! <https://www.postgresql.org/docs/current/protocol-message-types.html>) are
//! read here and nowhere else, so there is exactly one place that checks
//! lengths before touching bytes. Reads hand out `Bytes` slices of the input
//! rather than copies, so column values cost no allocation.
//!
//! Every read takes the name of the field it reads, which ends up in the
//! error if the bytes are not there.

use bytes::{Buf, Bytes};

use crate::error::{DecodeError, Problem};
use crate::kind::MessageKind;
use crate::lsn::Lsn;
use crate::timestamp::Timestamp;

pub(crate) struct Reader {
    rest: Bytes,
    message: MessageKind,
}

impl Reader {
    /// A reader over `body`, the bytes of a `message` after its tag byte.
    pub(crate) fn new(body: Bytes, message: MessageKind) -> Self {
        Self { rest: body, message }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// An error about the message being read.
    pub(crate) fn error(&self, problem: Problem) -> DecodeError {
        DecodeError::Malformed { message: self.message, problem }
    }

    fn ensure(&self, needed: usize, field: &'static str) -> Result<(), DecodeError> {
        let remaining = self.rest.len();
        if remaining < needed {
            return Err(self.error(Problem::Truncated { field, needed, remaining }));
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.ensure(1, field)?;
        Ok(self.rest.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.ensure(2, field)?;
        Ok(self.rest.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.ensure(4, field)?;
        Ok(self.rest.get_u32())
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.ensure(4, field)?;
        Ok(self.rest.get_i32())
    }

    pub(crate) fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        self.ensure(8, field)?;
        Ok(Lsn(self.rest.get_u64()))
    }

    pub(crate) fn timestamp(&mut self, field: &'static str) -> Result<Timestamp, DecodeError> {
        self.ensure(8, field)?;
        Ok(Timestamp(self.rest.get_i64()))
    }

    /// A byte that PostgreSQL writes as 0 or 1.
    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(self.error(Problem::InvalidBoolean { field, value })),
        }
    }

    /// A flags byte, refused if any bit outside `known` is set: a bit this
    /// decoder does not know could change what the message means.
    pub(crate) fn flags(&mut self, known: u8, field: &'static str) -> Result<u8, DecodeError> {
        let flags = self.u8(field)?;
        if flags & !known != 0 {
            return Err(self.error(Problem::UnknownFlags { field, flags }));
        }
        Ok(flags)
    }

    /// A non-negative Int32 count or length, as a `usize`.
    pub(crate) fn non_negative_i32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let value = self.i32(field)?;
        usize::try_from(value).map_err(|_| self.error(Problem::Negative { field, value }))
    }

    /// A NUL-terminated string, which must be UTF-8.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let length =
            self.rest.iter().position(|&byte| byte == 0).ok_or_else(|| self.error(Problem::MissingNul { field }))?;
        let text = std::str::from_utf8(&self.rest[..length])
            .map_err(|_| self.error(Problem::InvalidUtf8 { field }))?
            .to_owned();
        self.rest.advance(length + 1);
        Ok(text)
    }

    /// The next `length` bytes, shared with the input rather than copied.
    pub(crate) fn bytes(&mut self, length: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.ensure(length, field)?;
        Ok(self.rest.split_to(length))
    }

    /// An Int32 length followed by that many bytes.
    pub(crate) fn length_prefixed(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let length = self.non_negative_i32(field)?;
        self.bytes(length, field)
    }

    /// Ends the message, refusing bytes that no field accounted for: they
    /// would mean this decoder and the server disagree about the layout.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error(Problem::TrailingBytes { count: self.rest.len() }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8]) -> Reader {
        Reader::new(Bytes::from_static(bytes), MessageKind::Relation)
    }

    fn problem(error: DecodeError) -> Problem {
        match error {
            DecodeError::Malformed { message: MessageKind::Relation, problem } => problem,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn reads_big_endian_integers() {
        let mut reader =
            reader(&[0x01, 0x02, 0x03, 0xFF, 0xFF, 0xFF, 0xFE, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02]);
        assert_eq!(reader.u8("a"), Ok(1));
        assert_eq!(reader.u16("b"), Ok(0x0203));
        assert_eq!(reader.i32("c"), Ok(-2));
        assert_eq!(reader.lsn("d"), Ok(Lsn(0x1_0000_0002)));
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn reports_truncation_with_the_field_and_sizes() {
        let mut reader = reader(&[0, 0, 1]);
        assert_eq!(
            problem(reader.u32("relation OID").unwrap_err()),
            Problem::Truncated { field: "relation OID", needed: 4, remaining: 3 }
        );
        // A failed read consumes nothing.
        assert_eq!(reader.remaining(), 3);
    }

    #[test]
    fn reads_strings_up_to_the_nul() {
        let mut reader = reader(b"public\0accounts\0");
        assert_eq!(reader.string("namespace").as_deref(), Ok("public"));
        assert_eq!(reader.string("name").as_deref(), Ok("accounts"));
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn refuses_strings_without_nul_or_not_utf8() {
        assert_eq!(
            problem(reader(b"public").string("namespace").unwrap_err()),
            Problem::MissingNul { field: "namespace" }
        );
        assert_eq!(problem(reader(b"caf\xE9\0").string("name").unwrap_err()), Problem::InvalidUtf8 { field: "name" });
    }

    #[test]
    fn length_prefixed_bytes_share_the_input() {
        let input = Bytes::from_static(b"\x00\x00\x00\x03abcz");
        let mut reader = Reader::new(input.clone(), MessageKind::Insert);
        let value = reader.length_prefixed("column value").unwrap();
        assert_eq!(&value[..], b"abc");
        assert_eq!(value.as_ptr(), input[4..].as_ptr());
        assert_eq!(reader.remaining(), 1);
    }

    #[test]
    fn refuses_negative_lengths() {
        assert_eq!(
            problem(reader(b"\xFF\xFF\xFF\xFF").length_prefixed("column value").unwrap_err()),
            Problem::Negative { field: "column value", value: -1 }
        );
    }

    #[test]
    fn refuses_unknown_flag_bits_and_non_boolean_bytes() {
        assert_eq!(reader(&[3]).flags(0b11, "flags"), Ok(3));
        assert_eq!(
            problem(reader(&[4]).flags(0b11, "flags").unwrap_err()),
            Problem::UnknownFlags { field: "flags", flags: 4 }
        );
        assert_eq!(
            problem(reader(&[2]).boolean("first segment").unwrap_err()),
            Problem::InvalidBoolean { field: "first segment", value: 2 }
        );
    }

    #[test]
    fn finish_counts_trailing_bytes() {
        assert_eq!(problem(reader(b"xy").finish().unwrap_err()), Problem::TrailingBytes { count: 2 });
    }
}
