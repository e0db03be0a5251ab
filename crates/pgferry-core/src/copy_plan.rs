//! Planning the data copy: which pieces of which tables, in what order.
//!
//! Wall time is set by the largest table, so the plan starts with the largest
//! pieces (longest processing time first), and splits a table larger than the
//! threshold into ranges of heap pages read with TID range scans
//! (`WHERE ctid >= '(a,0)' AND ctid < '(b,0)'`, efficient since PostgreSQL 14), so
//! that one big table keeps every worker busy. The last range of a table is open
//! ended, so pages added after the size was read are still copied.

use serde::{Deserialize, Serialize};

use crate::sql::{Ident, QualifiedName};

/// A table to copy, as observed on the source under the copy's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyTable {
    pub name: QualifiedName,
    /// Columns that hold data: generated columns are left out (the target
    /// computes them).
    pub columns: Vec<Ident>,
    pub bytes: i64,
    pub pages: i64,
}

/// A heap page range `[first, end)`; `end = None` reads to the end of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRange {
    pub first: i64,
    pub end: Option<i64>,
}

/// One unit of work: a whole table, or one page range of a split table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyUnit {
    /// Index into the planned tables.
    pub table: usize,
    /// 0-based chunk number within the table.
    pub chunk: i32,
    pub chunks: i32,
    pub range: Option<PageRange>,
    /// Estimated bytes, for ordering and progress.
    pub bytes: i64,
}

/// The heap page size PostgreSQL is almost always built with.
pub const PAGE_BYTES: i64 = 8192;

/// Splits and orders the work. `split_larger_than` of 0 disables splitting.
pub fn plan_copy(tables: &[CopyTable], split_larger_than: i64) -> Vec<CopyUnit> {
    let mut units = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let chunks = chunk_count(table.bytes, split_larger_than, table.pages);
        if chunks == 1 {
            units.push(CopyUnit { table: index, chunk: 0, chunks: 1, range: None, bytes: table.bytes });
            continue;
        }
        let pages_per_chunk = ceil_div(table.pages, chunks as i64);
        for chunk in 0..chunks {
            let first = chunk as i64 * pages_per_chunk;
            let end = (chunk + 1 < chunks).then_some(first + pages_per_chunk);
            units.push(CopyUnit {
                table: index,
                chunk,
                chunks,
                range: Some(PageRange { first, end }),
                bytes: table.bytes / chunks as i64,
            });
        }
    }
    // Largest first; ties keep table and chunk order, so the plan is deterministic.
    units.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.table.cmp(&b.table)).then(a.chunk.cmp(&b.chunk)));
    units
}

fn chunk_count(bytes: i64, split_larger_than: i64, pages: i64) -> i32 {
    if split_larger_than <= 0 || bytes <= split_larger_than || pages < 2 {
        return 1;
    }
    let wanted = ceil_div(bytes, split_larger_than);
    wanted.min(pages).min(i32::MAX as i64) as i32
}

/// Ceiling division of positive numbers (`i64::div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// The `maintenance_work_mem` (in kB) for the sessions that build indexes during
/// the copy, when it is to be raised above the server's: big enough that a large
/// table's primary key sorts in memory instead of spilling to temporary files, as
/// PostgreSQL advises for bulk loads
/// ([populating a database](https://www.postgresql.org/docs/current/populate.html#POPULATE-WORK-MEM)).
/// At most 1 GB a builder, and all builders together at most `shared_buffers`,
/// which managed services size at about a quarter of the machine's memory.
pub fn index_build_memory_kb(server_kb: i64, shared_buffers_kb: i64, index_jobs: usize) -> Option<i64> {
    const CAP_KB: i64 = 1024 * 1024;
    let budget = CAP_KB.min(shared_buffers_kb / index_jobs.max(1) as i64);
    (budget > server_kb).then_some(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_get_more_memory_within_shared_buffers_and_a_gigabyte() {
        // 256 MB on the server, 1 GB of shared buffers, 2 builders: 512 MB each.
        assert_eq!(index_build_memory_kb(256 * 1024, 1024 * 1024, 2), Some(512 * 1024));
        // A large server: capped at 1 GB.
        assert_eq!(index_build_memory_kb(64 * 1024, 32 * 1024 * 1024, 4), Some(1024 * 1024));
        // A small one: never above its shared buffers, never below its own setting.
        assert_eq!(index_build_memory_kb(64 * 1024, 128 * 1024, 4), None);
        assert_eq!(index_build_memory_kb(2 * 1024 * 1024, 32 * 1024 * 1024, 1), None);
        assert_eq!(index_build_memory_kb(0, 1024, 0), Some(1024));
    }

    fn table(name: &str, bytes: i64) -> CopyTable {
        CopyTable {
            name: QualifiedName::from_catalog("public", name),
            columns: vec![Ident::from_catalog("id")],
            bytes,
            pages: bytes / PAGE_BYTES,
        }
    }

    #[test]
    fn small_tables_are_copied_whole_largest_first() {
        let units = plan_copy(&[table("a", 10 * PAGE_BYTES), table("b", 30 * PAGE_BYTES)], 0);
        assert_eq!(units.iter().map(|u| u.table).collect::<Vec<_>>(), [1, 0]);
        assert!(units.iter().all(|u| u.range.is_none() && u.chunks == 1));
    }

    #[test]
    fn a_large_table_is_split_into_contiguous_ranges_with_an_open_end() {
        let units = plan_copy(&[table("big", 100 * PAGE_BYTES)], 30 * PAGE_BYTES);
        assert_eq!(units.len(), 4);
        let mut ranges: Vec<_> = units.iter().map(|u| u.range.unwrap()).collect();
        ranges.sort_by_key(|r| r.first);
        assert_eq!(ranges[0].first, 0);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, Some(pair[1].first), "ranges must not gap or overlap");
        }
        assert_eq!(ranges.last().unwrap().end, None);
        assert!(units.iter().all(|u| u.chunks == 4));
    }

    #[test]
    fn split_pieces_interleave_with_other_tables_by_size() {
        let units = plan_copy(&[table("big", 100 * PAGE_BYTES), table("mid", 40 * PAGE_BYTES)], 50 * PAGE_BYTES);
        let order: Vec<_> = units.iter().map(|u| (u.table, u.chunk)).collect();
        assert_eq!(order, [(0, 0), (0, 1), (1, 0)]);
    }

    #[test]
    fn a_one_page_table_is_never_split() {
        let mut t = table("tiny_but_toasted", 10 * PAGE_BYTES);
        t.pages = 1;
        assert_eq!(plan_copy(&[t], PAGE_BYTES).len(), 1);
    }
}
