//! Folding changes into net changes ([`crate::apply::net`]) and sending them as
//! set statements, one text array per column.

use std::sync::Arc;

use pgferry_pgoutput::{Column, Oid};

use super::{text, Applier};
use crate::apply::net::{Conflict, Key, TableNet};
use crate::apply::relation::Mapped;
use crate::apply::statements::{row_arrays, update_rows_shape, Shape};
use crate::apply::Stop;

/// Net changes pending, at most, across tables, before they are sent.
const MAX_PENDING_ROWS: usize = 50_000;

impl Applier<'_> {
    /// Folds a change into the table's net changes; `false` when it cannot be
    /// (a [`Conflict`]): the caller applies the change on its own,
    /// after the table's net changes ([`Applier::run`] sends them first).
    pub(super) async fn fold(
        &mut self,
        oid: Oid,
        table: &Arc<Mapped>,
        change: impl FnOnce(&mut TableNet) -> Result<(), Conflict>,
    ) -> Result<bool, Stop> {
        let (_, net) = self.pending.entry(oid).or_insert_with(|| (table.clone(), TableNet::default()));
        let before = net.len();
        if change(net).is_err() {
            return Ok(false);
        }
        self.pending_rows = self.pending_rows + net.len() - before;
        if self.pending_rows >= MAX_PENDING_ROWS {
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
        let Some((table, mut net)) = self.pending.remove(&oid) else { return Ok(()) };
        self.pending_rows -= net.len();
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
        self.send(oid, table, &shape, arrays, rows.len() as u64, verb).await
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
