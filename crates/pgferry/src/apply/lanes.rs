//! Parallel apply's lanes: which lane a row belongs to, and where each lane
//! stands in the journal.
//!
//! With `--apply-lanes N` a batch's changes to tables whose key is their only
//! unique constraint are split by (table, key) into N lanes, each applied and
//! committed by its own target session ([`super::parallel`]). A row's lane is
//! a fixed hash of its table's name and its key's values, the same in every
//! run, so every change of a row goes to the same lane in the same order.
//!
//! Each lane commits its part of a batch with its own position in its own
//! target transaction: lane 0 in `pgferry.apply_progress` (committed last, so
//! that row always holds a position every lane has passed: the one `status`,
//! validation and the cutover read), lanes 1 to N-1 in `pgferry.apply_lane`. A
//! kill between the lanes' commits leaves some lanes ahead of lane 0. The next
//! run starts the stream at lane 0's position and, for the source transactions
//! between it and the furthest lane ([`Ahead`]), skips a change when its lane
//! committed that transaction already: nothing is applied twice, nothing
//! lost. Which tables a lane committed changes of past lane 0 is journaled
//! with its position, so the skip never depends on how the next run maps a
//! table (its unique indexes may have changed by hand in between): a change
//! of another table was applied by lane 0, which committed none of it. Until every lane has passed the furthest one, the lane count of the
//! run that wrote the rows is kept whatever `--apply-lanes` says, since the
//! rows say which keys each lane holds only under that count.

use std::collections::BTreeSet;

use bytes::Bytes;
use pgferry_core::names::MigrationName;
use pgferry_core::sql::QualifiedName;
use pgferry_pgoutput::Lsn;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::progress::parse_lsn;
use crate::error::{Error, ErrorKind, Result};

/// The lane of a row of `table` with key `key` among `lanes`: FNV-1a, then
/// MurmurHash3's 64-bit finalizer (FNV's low bits depend only on the inputs'
/// low bits: keys ending in even digits would share two lanes of four). Fixed
/// across runs and releases: the journal's rows depend on it.
pub(crate) fn lane_of(table: &QualifiedName, key: &[Bytes], lanes: usize) -> usize {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash = (hash ^ u64::from(*b)).wrapping_mul(PRIME);
        }
    };
    eat(table.schema.as_str().as_bytes());
    eat(&[0]);
    eat(table.name.as_str().as_bytes());
    for value in key {
        eat(&(value.len() as u32).to_le_bytes());
        eat(value);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash % lanes.max(1) as u64) as usize
}

/// Lanes an earlier run committed past lane 0: the source transactions each
/// of them holds already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ahead {
    /// The lane count those rows were written under.
    pub(crate) lanes: usize,
    /// Per lane, the end of the last source transaction it committed.
    pub(crate) applied: Vec<Lsn>,
    /// Per lane, the tables it committed changes of past lane 0 (as
    /// `QualifiedName` displays them).
    pub(crate) tables: Vec<BTreeSet<String>>,
}

impl Ahead {
    /// Whether the lane of (`table`, `key`) committed the source transaction
    /// whose commit record starts at `final_lsn` (it ends at or before the
    /// lane's position exactly when it starts before it, positions being
    /// transactions' ends: the rule of [`super::batch::already_copied`]).
    pub(crate) fn holds(&self, table: &QualifiedName, key: &[Bytes], final_lsn: Lsn) -> bool {
        let lane = lane_of(table, key, self.lanes);
        final_lsn < self.applied[lane] && self.tables[lane].contains(&table.to_string())
    }

    /// The furthest lane's position: past it, no change is skipped.
    pub(crate) fn furthest(&self) -> Lsn {
        self.applied.iter().copied().max().unwrap_or_default()
    }
}

/// The lanes past `start` (lane 0's position), or `None` when every lane
/// stands at it (the usual case: no kill between the lanes' commits).
pub(crate) async fn ahead(target: &Client, name: &MigrationName, start: Lsn) -> Result<Option<Ahead>> {
    let rows = target
        .query(
            "SELECT lane, lanes, applied_lsn::text, tables FROM pgferry.apply_lane
             WHERE migration = $1 AND applied_lsn > $2::text::pg_lsn ORDER BY lane",
            &[&name.as_str(), &start.to_string()],
        )
        .await
        .map_err(|e| Error::server("reading the lanes' applied positions", e))?;
    let Some(first) = rows.first() else { return Ok(None) };
    let lanes = first.get::<_, i32>(1) as usize;
    let mut applied = vec![start; lanes];
    let mut tables = vec![BTreeSet::new(); lanes];
    for row in &rows {
        let (lane, written_under) = (row.get::<_, i32>(0) as usize, row.get::<_, i32>(1) as usize);
        if written_under != lanes || lane == 0 || lane >= lanes {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!("the journal's lanes disagree (lane {lane} of {written_under} beside rows written under {lanes} lanes) in pgferry.apply_lane for migration {name}"),
            )
            .with_hint("the journal was changed by hand: copy the migration again"));
        }
        applied[lane] = parse_lsn(&row.get::<_, String>(2))?;
        tables[lane] = row.get::<_, Vec<String>>(3).into_iter().collect();
    }
    Ok(Some(Ahead { lanes, applied, tables }))
}

/// Drops the lanes' rows every lane has passed (all at or before lane 0's
/// position `start`): a run may then choose its own lane count.
pub(crate) async fn forget_passed(target: &Client, name: &MigrationName, start: Lsn) -> Result<()> {
    target
        .execute(
            "DELETE FROM pgferry.apply_lane WHERE migration = $1 AND applied_lsn <= $2::text::pg_lsn",
            &[&name.as_str(), &start.to_string()],
        )
        .await
        .map_err(|e| Error::server("clearing the lanes' applied positions", e))?;
    Ok(())
}

/// Records lane `lane`'s position and the tables of its batch; runs inside
/// the lane's batch transaction. A position never goes back: after a kill a
/// lane ahead of lane 0 commits batches whose changes it skipped, ending
/// before its recorded position. The tables add to those it holds past lane
/// 0's position (read as lane 0 last committed it), and replace them once
/// lane 0 has passed them.
pub(crate) async fn record(
    target: &Client,
    name: &MigrationName,
    lane: usize,
    lanes: usize,
    end_lsn: Lsn,
    tables: &[String],
) -> Result<(), tokio_postgres::Error> {
    target
        .query_typed(
            "INSERT INTO pgferry.apply_lane AS l (migration, lane, lanes, applied_lsn, tables)
             VALUES ($1, $2, $3, $4::text::pg_lsn, $5)
             ON CONFLICT (migration, lane) DO UPDATE SET lanes = excluded.lanes,
                 applied_lsn = greatest(l.applied_lsn, excluded.applied_lsn),
                 tables = CASE WHEN l.applied_lsn > coalesce(
                         (SELECT p.applied_lsn FROM pgferry.apply_progress p WHERE p.migration = l.migration), '0/0')
                     THEN ARRAY(SELECT DISTINCT t FROM unnest(l.tables || excluded.tables) t ORDER BY t)
                     ELSE excluded.tables END",
            &[
                (&name.as_str(), Type::TEXT),
                (&(lane as i32), Type::INT4),
                (&(lanes as i32), Type::INT4),
                (&end_lsn.to_string(), Type::TEXT),
                (&tables, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> Vec<Bytes> {
        vec![Bytes::copy_from_slice(v.as_bytes())]
    }

    #[test]
    fn a_rows_lane_is_fixed_and_rows_spread_over_the_lanes() {
        let table = QualifiedName::from_catalog("public", "accounts");
        let other = QualifiedName::from_catalog("public", "branches");
        assert_eq!(lane_of(&table, &key("42"), 4), lane_of(&table, &key("42"), 4), "the same in every run");
        assert_eq!(lane_of(&table, &key("42"), 1), 0);
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            seen[lane_of(&table, &key(&i.to_string()), 4)] += 1;
            seen[lane_of(&other, &key(&i.to_string()), 4)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 400), "spread evenly enough: {seen:?}");
        let mut even = [0usize; 4];
        for i in 0..1000 {
            even[lane_of(&table, &key(&(i * 10).to_string()), 4)] += 1;
        }
        assert!(even.iter().all(|n| *n > 180), "keys sharing their last digits spread too: {even:?}");
        // Pinned: a killed run's journal is read by the next run, maybe of a later release.
        assert_eq!((0..8).map(|i| lane_of(&table, &key(&i.to_string()), 4)).collect::<Vec<_>>(), PINNED);
        assert_ne!(
            (0..16).map(|i| lane_of(&table, &key(&i.to_string()), 4)).collect::<Vec<_>>(),
            (0..16).map(|i| lane_of(&other, &key(&i.to_string()), 4)).collect::<Vec<_>>(),
            "the table's name is part of the hash"
        );
    }

    /// The lanes of keys 0 to 7 of `public.accounts` among 4.
    const PINNED: [usize; 8] = [1, 3, 2, 3, 3, 2, 3, 1];

    #[test]
    fn a_lane_ahead_holds_exactly_the_transactions_before_its_position() {
        let table = QualifiedName::from_catalog("public", "t");
        let k = key("7");
        let lane = lane_of(&table, &k, 2);
        let mut applied = vec![Lsn(100); 2];
        applied[lane] = Lsn(200);
        let mut tables = vec![BTreeSet::new(); 2];
        tables[lane].insert(table.to_string());
        let ahead = Ahead { lanes: 2, applied, tables };
        assert!(ahead.holds(&table, &k, Lsn(150)));
        assert!(!ahead.holds(&table, &k, Lsn(200)), "a commit record starting at the position is after it");
        let other_key = (0..).map(|i| key(&i.to_string())).find(|k| lane_of(&table, k, 2) != lane).unwrap();
        assert!(!ahead.holds(&table, &other_key, Lsn(150)), "the other lane stands at lane 0's position");
        let elsewhere = QualifiedName::from_catalog("public", "u");
        let k = (0..).map(|i| key(&i.to_string())).find(|k| lane_of(&elsewhere, k, 2) == lane).unwrap();
        assert!(!ahead.holds(&elsewhere, &k, Lsn(150)), "the lane committed no change of that table: lane 0's");
        assert_eq!(ahead.furthest(), Lsn(200));
    }
}
