//! Row images: the TupleData of Insert, Update and Delete messages.
//!
//! A tuple is a column count followed by one entry per column, each starting
//! with a kind byte. Values stay as the raw bytes the server sent (text output
//! or binary send format, depending on the subscription's `binary` option):
//! turning them into typed values needs the column types from the Relation
//! message, which is the caller's business, and keeping them as `Bytes`
//! slices of the input costs no copy. See "TupleData" in
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

use bytes::Bytes;

use crate::error::{DecodeError, Problem};
use crate::reader::Reader;

/// One column of a row image, in the order of the Relation message's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// `'n'`: the value is NULL.
    Null,
    /// `'u'`: a TOASTed value the change did not touch, so the server did not
    /// send it. The subscriber keeps whatever value it already has.
    UnchangedToast,
    /// `'t'`: the value in the type's text output format.
    Text(Bytes),
    /// `'b'`: the value in the type's binary send format.
    Binary(Bytes),
}

/// The row as it was before an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `'K'`: only the replica identity key columns carry values; every other
    /// column is [`Column::Null`]. Sent for REPLICA IDENTITY DEFAULT or USING
    /// INDEX, and by an Update only when it changed a key column.
    Key(Vec<Column>),
    /// `'O'`: the whole old row, sent for REPLICA IDENTITY FULL.
    Full(Vec<Column>),
}

impl OldTuple {
    pub fn columns(&self) -> &[Column] {
        match self {
            Self::Key(columns) | Self::Full(columns) => columns,
        }
    }
}

/// Reads the `'N'` marker and the new tuple of an Insert.
pub(crate) fn read_new_tuple(reader: &mut Reader) -> Result<Vec<Column>, DecodeError> {
    expect_new_tuple_marker(reader)?;
    read_tuple(reader)
}

/// Reads an Update's optional old tuple and its new tuple.
pub(crate) fn read_update_tuples(reader: &mut Reader) -> Result<(Option<OldTuple>, Vec<Column>), DecodeError> {
    let marker = reader.u8("tuple marker")?;
    let old = match marker {
        b'K' => Some(OldTuple::Key(read_tuple(reader)?)),
        b'O' => Some(OldTuple::Full(read_tuple(reader)?)),
        b'N' => None,
        found => return Err(reader.error(Problem::UnexpectedTupleMarker { expected: "'K', 'O' or 'N'", found })),
    };
    if old.is_some() {
        expect_new_tuple_marker(reader)?;
    }
    Ok((old, read_tuple(reader)?))
}

/// Reads the `'K'` or `'O'` marker and the old tuple of a Delete.
pub(crate) fn read_delete_tuple(reader: &mut Reader) -> Result<OldTuple, DecodeError> {
    match reader.u8("tuple marker")? {
        b'K' => Ok(OldTuple::Key(read_tuple(reader)?)),
        b'O' => Ok(OldTuple::Full(read_tuple(reader)?)),
        found => Err(reader.error(Problem::UnexpectedTupleMarker { expected: "'K' or 'O'", found })),
    }
}

fn expect_new_tuple_marker(reader: &mut Reader) -> Result<(), DecodeError> {
    match reader.u8("tuple marker")? {
        b'N' => Ok(()),
        found => Err(reader.error(Problem::UnexpectedTupleMarker { expected: "'N'", found })),
    }
}

fn read_tuple(reader: &mut Reader) -> Result<Vec<Column>, DecodeError> {
    let count = reader.u16("tuple column count")?;
    // Every column takes at least its kind byte, so a count larger than the
    // bytes left is a lie that must not size an allocation.
    let mut columns = Vec::with_capacity(usize::from(count).min(reader.remaining()));
    for _ in 0..count {
        columns.push(read_column(reader)?);
    }
    Ok(columns)
}

fn read_column(reader: &mut Reader) -> Result<Column, DecodeError> {
    match reader.u8("tuple column kind")? {
        b'n' => Ok(Column::Null),
        b'u' => Ok(Column::UnchangedToast),
        b't' => Ok(Column::Text(reader.length_prefixed("text column value")?)),
        b'b' => Ok(Column::Binary(reader.length_prefixed("binary column value")?)),
        kind => Err(reader.error(Problem::UnknownColumnKind { kind })),
    }
}
