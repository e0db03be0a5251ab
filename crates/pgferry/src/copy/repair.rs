//! `pgferry validate --repair`: tables found different are copied again from
//! the source, and change capture stays exact for them.
//!
//! It is the copy's own resume rule: a temporary slot exports a snapshot at a
//! known position L; each table is emptied and filled from that snapshot in one
//! target transaction, together with its `pgferry.copied_chunk` row (position
//! L) and a `pgferry.repair` row. Change capture then skips, for that table,
//! every transaction that committed before L (the snapshot holds it) and applies
//! the rest ([`crate::apply`]'s `already_copied`). Rows are deleted rather than
//! truncated so that foreign keys pointing at the table do not stand in the way
//! (with `session_replication_role = replica`, as under change capture, they are
//! not checked). The runner lock keeps change capture stopped meanwhile.

use pgferry_core::names::{MigrationName, SnapshotSlot};
use pgferry_core::sql::{QualifiedName, Sql};
use pgferry_pg::copy_pipe::pipe;
use pgferry_pg::replication::create_slot_with_snapshot;
use pgferry_pg::ConnSpec;
use serde::Serialize;

use super::journal::{self, ChunkRecord};
use super::{copy_in, copy_out_whole, list_tables, partition_roots};
use crate::error::{Error, ErrorKind, Result};
use crate::start::RunnerLock;

/// One table copied again.
#[derive(Debug, Serialize)]
pub struct Repaired {
    pub table: String,
    pub rows: u64,
    pub snapshot_lsn: String,
}

/// Copies `tables` again from a fresh snapshot of the source.
pub async fn repair_tables(
    source: &ConnSpec,
    target: &ConnSpec,
    name: &MigrationName,
    tables: &[QualifiedName],
) -> Result<Vec<Repaired>> {
    let _runner = RunnerLock::take(target, name).await.map_err(|e| {
        Error::new(ErrorKind::Refused, format!("repair needs change capture stopped: {}", e.message)).with_hint(
            "stop pgferry start or follow (Ctrl-C or SIGTERM), rerun with --repair, then start change capture again",
        )
    })?;
    let dst = pgferry_pg::connect(target).await?;
    let src = pgferry_pg::connect(source).await?;
    crate::lifecycle::guard(&src, &dst, name, pgferry_core::lifecycle::Command::Repair).await?;
    journal::ensure(&dst).await?;
    let slot = crate::slot::resolve(&src, &dst, name).await?;
    let slot =
        create_slot_with_snapshot(source, &SnapshotSlot::Repair.beside(&slot), true).await.map_err(Error::from)?;
    let snapshot = Sql::new("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ")
        .literal(&slot.snapshot_name);
    src.batch_execute(snapshot.as_str()).await.map_err(|e| Error::server("importing the repair snapshot", e))?;
    let listed = list_tables(&src).await?;
    // Change capture names a partition's rows by its root, and skips a root's
    // changes only when all its partitions share one snapshot: a partition is
    // repaired with its whole hierarchy.
    let roots = partition_roots(&src).await?;
    let hierarchy = |t: &QualifiedName| roots.get(t).cloned().unwrap_or_else(|| t.clone());
    let asked: Vec<QualifiedName> = tables.iter().map(hierarchy).collect();
    let mut tables: Vec<QualifiedName> = tables.to_vec();
    let siblings: Vec<QualifiedName> = listed
        .iter()
        .map(|(t, _)| &t.name)
        .filter(|t| roots.contains_key(*t) && asked.contains(&hierarchy(t)) && !tables.contains(*t))
        .cloned()
        .collect();
    tables.extend(siblings);
    let mut repaired = Vec::new();
    for name_of in &tables {
        let Some((table, _)) = listed.iter().find(|(t, _)| &t.name == name_of) else {
            return Err(Error::new(ErrorKind::Precondition, format!("{name_of} is not a table of the source")));
        };
        let begin =
            Sql::new("BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM ONLY ").name(&table.name);
        dst.batch_execute(begin.as_str())
            .await
            .map_err(|e| Error::server(&format!("emptying {} on the target", table.name), e))?;
        let piped = pipe(&src, copy_out_whole(table).as_str(), &dst, copy_in(table, false).as_str(), |_| {})
            .await
            .map_err(|e| Error::server(&format!("copying {} again", table.name), e))?;
        let record = || async {
            journal::forget_table(&dst, name, &table.name).await?;
            let chunk = ChunkRecord {
                table: &table.name,
                chunk: 0,
                chunks: 1,
                rows: piped.rows as i64,
                bytes: piped.bytes as i64,
                snapshot_lsn: &slot.consistent_point,
            };
            journal::record_chunk(&dst, name, &chunk).await?;
            dst.execute(
                "INSERT INTO pgferry.repair (migration, table_schema, table_name, snapshot_lsn, rows) VALUES ($1, $2, $3, $4::text::pg_lsn, $5)",
                &[&name.as_str(), &table.name.schema.as_str(), &table.name.name.as_str(), &slot.consistent_point, &(piped.rows as i64)],
            )
            .await?;
            dst.batch_execute("COMMIT").await
        };
        record().await.map_err(|e| Error::server(&format!("journaling the repair of {}", table.name), e))?;
        repaired.push(Repaired {
            table: table.name.to_string(),
            rows: piped.rows,
            snapshot_lsn: slot.consistent_point.clone(),
        });
    }
    Ok(repaired)
}
