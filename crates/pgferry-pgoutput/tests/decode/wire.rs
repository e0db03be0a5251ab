//! Writes pgoutput's wire format by hand, for messages a PostgreSQL 15 server
//! cannot produce (protocol version 4) and for deliberately malformed ones.

use bytes::Bytes;

pub(crate) struct Wire(Vec<u8>);

impl Wire {
    pub(crate) fn tag(tag: u8) -> Self {
        Self(vec![tag])
    }

    pub(crate) fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }

    pub(crate) fn u16(mut self, value: u16) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u32(mut self, value: u32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn i32(mut self, value: i32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn i64(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A NUL-terminated string.
    pub(crate) fn string(self, value: &[u8]) -> Self {
        self.raw(value).u8(0)
    }

    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A `'t'` tuple column.
    pub(crate) fn text_column(self, value: &[u8]) -> Self {
        let length = i32::try_from(value.len()).expect("small test value");
        self.u8(b't').i32(length).raw(value)
    }

    pub(crate) fn build(self) -> Bytes {
        Bytes::from(self.0)
    }
}
