//! Folding changes into net changes ([`crate::apply::net`]) and sending them as
//! set statements, one text array per column.

use std::sync::Arc;

use pgferry_pgoutput::{Column, Oid};

use super::{held_bytes, text, Applier, Sent};
use crate::apply::net::{Conflict, Key, TableNet};
use crate::apply::relation::Mapped;
use crate::apply::statements::{row_arrays, update_rows_shape, Shape};
use crate::apply::Stop;

/// Net changes pending, at most, across tables, before they are sent.
const MAX_PENDING_ROWS: usize = 50_000;
/// Bytes of values pending, at most, across tables, before they are sent: a
/// transaction of large values (a streamed one of any size) would otherwise
/// hold up to [`MAX_PENDING_ROWS`] of them in memory, and their arrays again.
const MAX_PENDING_BYTES: usize = 8 << 20;

impl Applier<'_> {
    /// Folds a change carrying `bytes` of values into the table's net
    /// changes; `false` when it cannot be (a [`Conflict`]): the caller applies
    /// the change on its own, after the table's net changes ([`Applier::run`]
    /// sends them first).
    pub(super) async fn fold(
        &mut self,
        oid: Oid,
        table: &Arc<Mapped>,
        bytes: usize,
        change: impl FnOnce(&mut TableNet) -> Result<(), Conflict>,
    ) -> Result<bool, Stop> {
        let (_, net, held) = self.pending.entry(oid).or_insert_with(|| (table.clone(), TableNet::default(), 0));
        let before = net.len();
        if change(net).is_err() {
            return Ok(false);
        }
        // A row folded over an earlier image of its key counts again: an
        // overestimate, which only sends sooner.
        *held += bytes;
        self.pending_bytes += bytes;
        self.pending_rows = self.pending_rows + net.len() - before;
        if self.pending_rows >= MAX_PENDING_ROWS || self.pending_bytes >= MAX_PENDING_BYTES {
            self.send_all_pending().await?;
        }
        Ok(true)
    }

    pub(super) async fn send_all_pending(&mut self) -> Result<(), Stop> {
        let oids: Vec<Oid> = self.pending.keys().copied().collect();
        for oid in oids {
            self.send_pending(oid).await?;
        }
        Ok(())
    }

    /// Sends a table's net changes: deletes, then updates, then inserts.
    pub(super) async fn send_pending(&mut self, oid: Oid) -> Result<(), Stop> {
        let Some((table, mut net, held)) = self.pending.remove(&oid) else { return Ok(()) };
        self.pending_rows -= net.len();
        self.pending_bytes -= held;
        let rows = net.take();
        if !rows.deletes.is_empty() {
            let keyed: Vec<Vec<Column>> =
                rows.deletes.iter().map(|k| with_key(&table, k, vec![Column::Null; table.columns.len()])).collect();
            self.send_rows(oid, &table, Shape::DeleteRows, &keyed, "delete from").await?;
        }
        for (sent, updated) in rows.updates {
            let shape = update_rows_shape(&table.columns, &sent);
            let updated: Vec<Vec<Column>> = updated.into_iter().map(|(_, row)| row).collect();
            self.send_rows(oid, &table, shape, &updated, "update").await?;
        }
        if !rows.inserts.is_empty() {
            self.send_rows(oid, &table, Shape::InsertRows, &rows.inserts, "insert into").await?;
        }
        Ok(())
    }

    /// Sends a set statement over `rows`, one text array per column it uses.
    async fn send_rows(
        &mut self,
        oid: Oid,
        table: &Mapped,
        shape: Shape,
        rows: &[Vec<Column>],
        verb: &'static str,
    ) -> Result<(), Stop> {
        let arrays = row_arrays(table, &shape)
            .into_iter()
            .map(|i| {
                rows.iter()
                    .map(|row| Ok(text(&row[i], table, i)?.map(str::to_string)))
                    .collect::<Result<Vec<_>, Stop>>()
            })
            .collect::<Result<Vec<_>, Stop>>()?;
        let bytes = held_bytes(arrays.iter().flatten());
        self.send(oid, table, &shape, arrays, Sent { rows: rows.len() as u64, bytes }, verb).await
    }
}

/// A row image that carries the key's values in its key columns (an unchanged
/// TOASTed key is not sent in the new image).
pub(super) fn with_key(table: &Mapped, key: &Key, mut row: Vec<Column>) -> Vec<Column> {
    let key_columns = (0..table.columns.len()).filter(|i| table.columns[*i].is_key);
    for (i, value) in key_columns.zip(key) {
        row[i] = Column::Text(value.clone());
    }
    row
}
