//! The data phase: `--jobs` workers, each with one source and one target
//! connection ([`crate::pool`]), take units off the plan (largest first) and pipe them with
//! binary COPY, each in its own source transaction on the shared snapshot and
//! checked against rewrites (see [`super::rewrites`]). Each unit's rows and
//! its journal row commit together on the target.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use pgferry_core::copy_plan::{CopyTable, CopyUnit};
use pgferry_core::names::MigrationName;
use pgferry_core::sql::Sql;
use pgferry_pg::copy_pipe::pipe;
use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use super::indexes::IndexQueue;
use super::journal::{self, ChunkRecord};
use super::rewrites::Rewrites;
use super::CopyEvent;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::{failpoint, pool};

/// A snapshot to read under, and the position it shows the database at.
pub(crate) struct Snapshot<'a> {
    pub(crate) name: &'a str,
    pub(crate) lsn: &'a str,
}

/// Where the pieces go and who hears that a table is complete.
pub(crate) struct DataJob<'a> {
    pub(crate) source: &'a ConnSpec,
    pub(crate) target: &'a ConnSpec,
    pub(crate) migration: &'a MigrationName,
    pub(crate) snapshot: Snapshot<'a>,
    pub(crate) tables: &'a [CopyTable],
    pub(crate) indexes: &'a IndexQueue,
    pub(crate) events: &'a Events,
    pub(crate) rewrites: &'a Rewrites,
}

/// Copies `units` with `jobs` workers; each table whose last piece commits is
/// handed to the index builders.
pub(crate) async fn copy_units(job: &DataJob<'_>, units: Vec<CopyUnit>, jobs: usize) -> Result<()> {
    let mut pieces_left = vec![0i32; job.tables.len()];
    for unit in &units {
        pieces_left[unit.table] += 1;
    }
    let pieces_left = Mutex::new(pieces_left);
    let open = async || {
        let src = pgferry_pg::connect(job.source).await?;
        let dst = pgferry_pg::connect(job.target).await?;
        dst.batch_execute("SET synchronous_commit = off")
            .await
            .map_err(|e| Error::server("configuring a target session", e))?;
        Ok((src, dst))
    };
    let copy = async |(src, dst): &(Client, Client), piece: CopyUnit| {
        if copy_piece(job, src, dst, &piece).await? {
            let table_done = {
                let mut left = pieces_left.lock().unwrap_or_else(PoisonError::into_inner);
                left[piece.table] -= 1;
                left[piece.table] == 0
            };
            if table_done {
                job.events.copy(CopyEvent::TableDone { table: job.tables[piece.table].name.to_string() });
                job.indexes.table_ready(&job.tables[piece.table].name);
            }
        }
        Ok(())
    };
    pool::each(units, jobs, open, copy).await?;
    Ok(())
}

/// Pipes one piece and commits it with its journal row; false (nothing kept)
/// when its table turns out rewritten since the snapshot (see [`super::rewrites`]).
async fn copy_piece(job: &DataJob<'_>, src: &Client, dst: &Client, unit: &CopyUnit) -> Result<bool> {
    let DataJob { migration, snapshot, tables, events, rewrites, .. } = job;
    let table = &tables[unit.table];
    let started = Instant::now();
    // One source transaction per piece: a worker holds at most the lock of the
    // table it reads, and never while it waits for another.
    let begin =
        Sql::new("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ").literal(snapshot.name);
    src.batch_execute(begin.as_str())
        .await
        .map_err(|e| Error::server("importing the copy's snapshot on the source", e))?;
    events.copy(CopyEvent::ChunkStarted { table: table.name.to_string(), chunk: unit.chunk, chunks: unit.chunks });
    // A table copied in one piece is emptied in the same transaction, which lets
    // COPY write its rows frozen: no hint-bit rewrite and no freeze vacuum later.
    let whole = unit.chunks == 1;
    let begin = if whole { Sql::new("BEGIN; TRUNCATE ONLY ").name(&table.name) } else { Sql::new("BEGIN") };
    dst.batch_execute(begin.as_str()).await.map_err(|e| Error::server("starting a target transaction", e))?;
    let table_name = table.name.to_string();
    let piped = pipe(src, copy_out(table, unit).as_str(), dst, copy_in(table, whole).as_str(), |bytes| {
        events.copy(CopyEvent::Bytes { table: table_name.clone(), bytes })
    })
    .await;
    let piped = match piped {
        Ok(piped) => piped,
        // The table, or a column the snapshot lists, is gone by that name now:
        // dropped (copied again under a later snapshot, which lacks it), or
        // renamed (stopped, named).
        Err(e) if gone_by_name(&e) => {
            for (side, client) in [("source", src), ("target", dst)] {
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(|e| Error::server(&format!("ending a failed piece on the {side}"), e))?;
            }
            rewrites.vanished(src, table, snapshot.name).await?;
            return Ok(false);
        }
        Err(e) => return Err(Error::server(&format!("copying {}", table.name), e)),
    };
    failpoint::pause("copy-piece-read").await;
    let sound = rewrites.piece_is_sound(src, &table.name).await?;
    src.batch_execute("COMMIT").await.map_err(|e| Error::server("ending a snapshot transaction on the source", e))?;
    if !sound {
        dst.batch_execute("ROLLBACK").await.map_err(|e| Error::server("discarding a rewritten piece", e))?;
        tracing::warn!(
            table = %table.name,
            "truncated or rewritten on the source after the copy's snapshot: it is copied again under a later one"
        );
        return Ok(false);
    }
    let record = ChunkRecord {
        table: &table.name,
        chunk: unit.chunk,
        chunks: unit.chunks,
        rows: piped.rows as i64,
        bytes: piped.bytes as i64,
        snapshot_lsn: snapshot.lsn,
    };
    journal::record_chunk(dst, migration, &record).await.map_err(|e| Error::server("journaling a copied chunk", e))?;
    dst.batch_execute("COMMIT").await.map_err(|e| Error::server(&format!("committing {}", table.name), e))?;
    failpoint::hit("copy-after-chunk");
    events.copy(CopyEvent::ChunkDone {
        table: table.name.to_string(),
        chunk: unit.chunk,
        rows: piped.rows,
        bytes: piped.bytes,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(true)
}

/// A table or column the COPY names no longer exists (42P01, 42703).
fn gone_by_name(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|code| *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN)
}

/// Copies whole tables again, each in one target transaction (emptied first,
/// its triggers and foreign keys silent as under change capture), from the
/// source as it is now: for the cutover's re-copy of tables without a replica
/// identity, once the fence has stopped every writer. Returns the rows copied.
pub(crate) async fn recopy(source: &ConnSpec, target: &ConnSpec, tables: &[CopyTable]) -> Result<u64> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let mut rows = 0;
    for table in tables {
        let begin = Sql::new("BEGIN; SET LOCAL session_replication_role = replica; TRUNCATE ONLY ").name(&table.name);
        dst.batch_execute(begin.as_str())
            .await
            .map_err(|e| Error::server(&format!("emptying {} on the target", table.name), e))?;
        let piped = pipe(&src, copy_out_whole(table).as_str(), &dst, copy_in(table, false).as_str(), |_| {})
            .await
            .map_err(|e| Error::server(&format!("copying {} again", table.name), e))?;
        dst.batch_execute("COMMIT").await.map_err(|e| Error::server(&format!("committing {}", table.name), e))?;
        rows += piped.rows;
    }
    Ok(rows)
}

/// The whole table's `COPY ... TO STDOUT`.
pub(crate) fn copy_out_whole(table: &CopyTable) -> Sql {
    copy_out(table, &CopyUnit { table: 0, chunk: 0, chunks: 1, range: None, bytes: table.bytes })
}

/// `COPY (SELECT cols FROM ONLY t [WHERE ctid range]) TO STDOUT (FORMAT binary)`.
fn copy_out(table: &CopyTable, unit: &CopyUnit) -> Sql {
    let select = Sql::new("SELECT ").ident_list(&table.columns).push(" FROM ONLY ").name(&table.name);
    let select = match unit.range {
        None => select,
        Some(range) => {
            let select = select.push(" WHERE ctid >= ").literal(&tid(range.first));
            match range.end {
                Some(end) => select.push("::tid AND ctid < ").literal(&tid(end)).push("::tid"),
                None => select.push("::tid"),
            }
        }
    };
    Sql::new("COPY (").append(select).push(") TO STDOUT (FORMAT binary)")
}

fn tid(page: i64) -> String {
    format!("({page},0)")
}

/// `COPY t (cols) FROM STDIN (FORMAT binary[, FREEZE])`.
pub(crate) fn copy_in(table: &CopyTable, freeze: bool) -> Sql {
    Sql::new("COPY ").name(&table.name).push(" (").ident_list(&table.columns).push(if freeze {
        ") FROM STDIN (FORMAT binary, FREEZE)"
    } else {
        ") FROM STDIN (FORMAT binary)"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgferry_core::copy_plan::PageRange;
    use pgferry_core::sql::{Ident, QualifiedName};

    fn table() -> CopyTable {
        CopyTable {
            name: QualifiedName::from_catalog("s\"x", "T"),
            columns: vec![Ident::from_catalog("id"), Ident::from_catalog("a b")],
            bytes: 0,
            pages: 0,
        }
    }

    #[test]
    fn copy_statements_quote_every_name_and_bound_ranges() {
        let unit =
            CopyUnit { table: 0, chunk: 1, chunks: 3, range: Some(PageRange { first: 10, end: Some(20) }), bytes: 0 };
        assert_eq!(
            copy_out(&table(), &unit).as_str(),
            "COPY (SELECT \"id\", \"a b\" FROM ONLY \"s\"\"x\".\"T\" WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid) TO STDOUT (FORMAT binary)"
        );
        let last = CopyUnit { range: Some(PageRange { first: 20, end: None }), ..unit };
        assert!(copy_out(&table(), &last).as_str().ends_with("WHERE ctid >= '(20,0)'::tid) TO STDOUT (FORMAT binary)"));
        assert_eq!(
            copy_in(&table(), false).as_str(),
            "COPY \"s\"\"x\".\"T\" (\"id\", \"a b\") FROM STDIN (FORMAT binary)"
        );
        assert!(copy_in(&table(), true).as_str().ends_with("(FORMAT binary, FREEZE)"));
    }
}
