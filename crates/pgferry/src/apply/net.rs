//! Net changes: many row changes to a table folded into the few set statements
//! that have the same effect.
//!
//! Inside one target transaction the order of changes matters only where it can
//! be seen. For a table whose rows are found by a key that is also the only
//! unique constraint on the target (no other unique index, no exclusion
//! constraint, no trigger that fires in replica mode), the end state of a batch
//! depends only on the last image of each key: a row updated 500 times in a batch
//! needs one UPDATE, a row inserted then deleted needs nothing. Folding does more
//! than save statements: a row updated many times inside one open transaction
//! leaves a chain of versions no one can prune yet, and every further update
//! walks it, so applying hot rows change by change slows down with the batch.
//!
//! A table's net changes are applied as three set statements fed by arrays: the
//! keys to delete, then the rows to update (one statement per set of columns
//! sent, since an unchanged TOASTed value is not sent and must be left alone),
//! then the rows to insert. Deleting first keeps the key's unique index true at
//! every row the statements touch; foreign keys do not fire in replica mode
//! ([session_replication_role](https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SESSION-REPLICATION-ROLE)).
//! Tables with no key (published for inserts only) keep their inserts in order.
//!
//! Anything folding cannot express exactly (a key that changes, an update of a
//! row this batch deleted, a second insert of a key) is a [`Conflict`]: the
//! table's net changes are applied first, then that change on its own, in order,
//! where the usual checks report it.

use std::collections::HashMap;

use bytes::Bytes;
use pgferry_pgoutput::Column;

/// A key's column values, as the source sent them.
pub(crate) type Key = Vec<Bytes>;

/// The change cannot be folded into the pending ones.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Conflict;

/// What the batch did to one key so far.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// The row existed before the batch (its first change was not an INSERT).
    existed: bool,
    /// It existed, was deleted, and was inserted again: the old row goes first.
    delete_first: bool,
    /// The row now: `None` when deleted. A row that existed may lack the
    /// unchanged TOASTed values (`Column::UnchangedToast`).
    row: Option<Vec<Column>>,
}

/// The pending net changes of one table.
#[derive(Debug, Default)]
pub(crate) struct TableNet {
    keyed: HashMap<Key, Entry>,
    /// Inserts into a table without a key, in stream order.
    appended: Vec<Vec<Column>>,
}

/// A table's net changes as statements' rows, in the order they must run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NetRows {
    pub(crate) deletes: Vec<Key>,
    /// Rows updated in place, by which columns they carry (`true` = sent).
    pub(crate) updates: HashMap<Vec<bool>, Vec<(Key, Vec<Column>)>>,
    pub(crate) inserts: Vec<Vec<Column>>,
}

impl TableNet {
    /// How many rows are pending.
    pub(crate) fn len(&self) -> usize {
        self.keyed.len() + self.appended.len()
    }

    pub(crate) fn insert(&mut self, key: Key, row: Vec<Column>) -> Result<(), Conflict> {
        match self.keyed.get_mut(&key) {
            None => {
                self.keyed.insert(key, Entry { existed: false, delete_first: false, row: Some(row) });
            }
            Some(entry @ Entry { row: None, .. }) => {
                entry.delete_first = entry.existed;
                entry.row = Some(row);
            }
            Some(_) => return Err(Conflict),
        }
        Ok(())
    }

    /// An update that kept the key; `new` may carry unchanged TOASTed values.
    pub(crate) fn update(&mut self, key: Key, new: Vec<Column>) -> Result<(), Conflict> {
        match self.keyed.get_mut(&key) {
            None => {
                self.keyed.insert(key, Entry { existed: true, delete_first: false, row: Some(new) });
            }
            Some(Entry { row: Some(row), .. }) if row.len() == new.len() => {
                for (now, sent) in row.iter_mut().zip(new) {
                    if !matches!(sent, Column::UnchangedToast) {
                        *now = sent;
                    }
                }
            }
            Some(_) => return Err(Conflict),
        }
        Ok(())
    }

    pub(crate) fn delete(&mut self, key: Key) -> Result<(), Conflict> {
        match self.keyed.get_mut(&key) {
            None => {
                self.keyed.insert(key, Entry { existed: true, delete_first: false, row: None });
            }
            Some(Entry { existed: false, row: Some(_), .. }) => {
                self.keyed.remove(&key);
            }
            Some(entry @ Entry { row: Some(_), .. }) => {
                entry.row = None;
                entry.delete_first = false;
            }
            Some(Entry { row: None, .. }) => return Err(Conflict),
        }
        Ok(())
    }

    /// An insert into a table without a key.
    pub(crate) fn append(&mut self, row: Vec<Column>) {
        self.appended.push(row);
    }

    /// The statements' rows, leaving the table empty.
    pub(crate) fn take(&mut self) -> NetRows {
        let mut rows = NetRows { inserts: std::mem::take(&mut self.appended), ..NetRows::default() };
        for (key, entry) in self.keyed.drain() {
            match (entry.existed, entry.delete_first, entry.row) {
                (true, _, None) => rows.deletes.push(key),
                (false, _, None) => {}
                (true, false, Some(row)) => {
                    let sent = row.iter().map(|c| !matches!(c, Column::UnchangedToast)).collect();
                    rows.updates.entry(sent).or_default().push((key, row));
                }
                (_, delete_first, Some(row)) => {
                    if delete_first {
                        rows.deletes.push(key);
                    }
                    rows.inserts.push(row);
                }
            }
        }
        rows
    }
}

/// The key of a row image: the values of the key columns, or `None` when one
/// was not sent (an unchanged TOASTed key) or is NULL.
pub(crate) fn key_of(tuple: &[Column], is_key: impl Fn(usize) -> bool) -> Option<Key> {
    tuple
        .iter()
        .enumerate()
        .filter(|(i, _)| is_key(*i))
        .map(|(_, c)| match c {
            Column::Text(b) | Column::Binary(b) => Some(b.clone()),
            Column::Null | Column::UnchangedToast => None,
        })
        .collect()
}

/// The key an update kept, or `None` when it changed the key (or a key value
/// is unknown). The old image is sent when the key changed, and by newer
/// servers also when a key value is TOASTed; the new image leaves an unchanged
/// TOASTed key out.
pub(crate) fn kept_key(old: Option<&[Column]>, new: &[Column], is_key: impl Fn(usize) -> bool) -> Option<Key> {
    let Some(old) = old else { return key_of(new, is_key) };
    let key = key_of(old, &is_key)?;
    let same = old.iter().zip(new).enumerate().filter(|(i, _)| is_key(*i)).all(|(_, (before, after))| match after {
        Column::UnchangedToast => true,
        after => after == before,
    });
    same.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str) -> Column {
        Column::Text(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn k(v: &str) -> Key {
        vec![Bytes::copy_from_slice(v.as_bytes())]
    }

    fn sorted(mut rows: NetRows) -> NetRows {
        rows.deletes.sort();
        rows.inserts.sort_by_key(|r| format!("{r:?}"));
        rows
    }

    #[test]
    fn many_updates_of_a_row_become_one_with_the_last_values() {
        let mut net = TableNet::default();
        for v in ["a", "b", "c"] {
            net.update(k("1"), vec![t("1"), t(v), Column::UnchangedToast]).unwrap();
        }
        net.update(k("1"), vec![t("1"), t("d"), t("big")]).unwrap();
        net.update(k("1"), vec![t("1"), t("e"), Column::UnchangedToast]).unwrap();
        let rows = net.take();
        assert_eq!(rows.updates.len(), 1);
        assert_eq!(
            rows.updates[&vec![true, true, true]],
            vec![(k("1"), vec![t("1"), t("e"), t("big")])],
            "the last sent value of each column"
        );
        assert!(rows.deletes.is_empty() && rows.inserts.is_empty());
        assert_eq!(net.len(), 0);
    }

    #[test]
    fn an_unchanged_toasted_value_never_sent_stays_out_of_the_update() {
        let mut net = TableNet::default();
        net.update(k("1"), vec![t("1"), t("a"), Column::UnchangedToast]).unwrap();
        net.update(k("2"), vec![t("2"), t("b"), t("new")]).unwrap();
        let rows = net.take();
        assert_eq!(
            rows.updates[&vec![true, true, false]],
            vec![(k("1"), vec![t("1"), t("a"), Column::UnchangedToast])]
        );
        assert_eq!(rows.updates[&vec![true, true, true]].len(), 1, "one statement per set of columns sent");
    }

    #[test]
    fn a_row_inserted_then_deleted_needs_nothing_and_one_deleted_then_inserted_is_replaced() {
        let mut net = TableNet::default();
        net.insert(k("new"), vec![t("new"), t("x")]).unwrap();
        net.update(k("new"), vec![t("new"), t("y")]).unwrap();
        net.delete(k("new")).unwrap();
        net.delete(k("old")).unwrap();
        net.insert(k("old"), vec![t("old"), t("again")]).unwrap();
        net.update(k("old"), vec![t("old"), Column::UnchangedToast]).unwrap();
        net.delete(k("gone")).unwrap();
        net.insert(k("fresh"), vec![t("fresh"), t("1")]).unwrap();
        net.update(k("fresh"), vec![t("fresh"), t("2")]).unwrap();
        let rows = sorted(net.take());
        assert_eq!(rows.deletes, vec![k("gone"), k("old")]);
        assert_eq!(rows.inserts, vec![vec![t("fresh"), t("2")], vec![t("old"), t("again")]]);
        assert!(rows.updates.is_empty());
    }

    #[test]
    fn an_existing_row_updated_then_deleted_is_deleted() {
        let mut net = TableNet::default();
        net.update(k("1"), vec![t("1"), t("a")]).unwrap();
        net.delete(k("1")).unwrap();
        assert_eq!(net.take().deletes, vec![k("1")]);
    }

    #[test]
    fn a_deleted_reinserted_then_deleted_row_is_only_deleted() {
        let mut net = TableNet::default();
        net.delete(k("1")).unwrap();
        net.insert(k("1"), vec![t("1")]).unwrap();
        net.delete(k("1")).unwrap();
        let rows = net.take();
        assert_eq!(rows.deletes, vec![k("1")]);
        assert!(rows.inserts.is_empty());
    }

    #[test]
    fn what_cannot_happen_on_the_source_is_a_conflict_and_changes_nothing() {
        let mut net = TableNet::default();
        net.insert(k("1"), vec![t("1")]).unwrap();
        assert_eq!(net.insert(k("1"), vec![t("1")]), Err(Conflict));
        net.delete(k("2")).unwrap();
        assert_eq!(net.update(k("2"), vec![t("2")]), Err(Conflict));
        assert_eq!(net.delete(k("2")), Err(Conflict));
        let rows = net.take();
        assert_eq!((rows.deletes, rows.inserts), (vec![k("2")], vec![vec![t("1")]]));
    }

    #[test]
    fn keyless_inserts_keep_their_order() {
        let mut net = TableNet::default();
        for v in ["3", "1", "2", "1"] {
            net.append(vec![t(v)]);
        }
        assert_eq!(net.len(), 4);
        assert_eq!(net.take().inserts, vec![vec![t("3")], vec![t("1")], vec![t("2")], vec![t("1")]]);
    }

    #[test]
    fn an_update_keeps_its_key_unless_a_sent_key_value_differs() {
        let is_key = |i| i == 0;
        assert_eq!(kept_key(None, &[t("1"), t("x")], is_key), Some(k("1")));
        assert_eq!(kept_key(Some(&[t("1"), Column::Null]), &[t("2"), t("x")], is_key), None, "the key changed");
        assert_eq!(kept_key(Some(&[t("1"), Column::Null]), &[t("1"), t("x")], is_key), Some(k("1")));
        assert_eq!(
            kept_key(Some(&[t("1"), Column::Null]), &[Column::UnchangedToast, t("x")], is_key),
            Some(k("1")),
            "a TOASTed key left unchanged"
        );
        assert_eq!(kept_key(None, &[Column::UnchangedToast, t("x")], is_key), None, "a key value not known");
    }

    #[test]
    fn a_key_is_its_key_columns_and_none_when_one_is_missing() {
        let row = [t("a"), t("b"), t("c")];
        assert_eq!(key_of(&row, |i| i != 1), Some(vec![Bytes::from_static(b"a"), Bytes::from_static(b"c")]));
        assert_eq!(key_of(&[Column::UnchangedToast, t("b")], |i| i == 0), None);
        assert_eq!(key_of(&[Column::Null, t("b")], |i| i == 0), None);
    }
}
