//! The copy's journal on the target, in pgferry's schema.
//!
//! `pgferry.migration` holds each migration's phase, its slot's name and consistent point,
//! and its source's identity (`source_system_identifier`, `source_database_oid`: the
//! pairing check's record, [`crate::pairing`]);
//! `pgferry.copied_chunk` holds one row per finished piece of a table (`copied_at`
//! is its transaction's start, `finished_at` the moment its rows were in), inserted in
//! the same transaction as that piece's rows, so after any crash the journal says
//! exactly which data is on the target. `snapshot_lsn` is the position of the
//! snapshot the piece was read under: change capture skips, for that table, every
//! change the copy already holds. `pgferry.partition_file` holds the source file
//! (`relfilenode`) each partition was copied from, locked (see
//! [`crate::partitions`]).

use pgferry_core::names::MigrationName;
use pgferry_core::phase::MigrationPhase;
use pgferry_core::preflight::{DatabaseIdentity, Finding};
use pgferry_core::sql::QualifiedName;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};

/// Creates the journal's tables when missing.
pub(crate) async fn ensure(target: &Client) -> Result<()> {
    crate::state::ensure(target, pgferry_core::state::Side::Target).await
}

/// The migration's phase and slot position, if it was started before.
pub(crate) async fn phase(target: &Client, name: &MigrationName) -> Result<Option<(MigrationPhase, Option<String>)>> {
    let row = target
        .query_opt("SELECT phase, slot_lsn::text FROM pgferry.migration WHERE name = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the journal", e))?;
    row.map(|r| {
        let stored: String = r.get(0);
        let phase = MigrationPhase::parse(&stored).ok_or_else(|| {
            Error::new(
                crate::ErrorKind::Precondition,
                format!("the journal holds phase {stored:?}, which this version of pgferry does not know"),
            )
            .with_hint("run the pgferry version that started this migration")
        })?;
        Ok((phase, r.get(1)))
    })
    .transpose()
}

/// [`phase`], on a target that may not hold the journal at all (nothing is created).
pub(crate) async fn phase_if_journaled(
    target: &Client,
    name: &MigrationName,
) -> Result<Option<(MigrationPhase, Option<String>)>> {
    let exists: bool = target
        .query_one("SELECT to_regclass('pgferry.migration') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::server("reading the journal", e))?
        .get(0);
    if exists {
        phase(target, name).await
    } else {
        Ok(None)
    }
}

/// Journals a migration that starts now with its slot's name (see [`crate::slot`])
/// and its source's identity (see [`crate::pairing`]); a migration journaled
/// already keeps the slot's name it has (none: an earlier release's, which keeps
/// its legacy slot), and gets the source's identity when an earlier release's
/// row lacks it (the pairing check passed before this).
pub(crate) async fn begin(
    target: &impl GenericClient,
    name: &MigrationName,
    slot: &str,
    source: &DatabaseIdentity,
) -> Result<()> {
    target
        .execute(
            "INSERT INTO pgferry.migration (name, phase, slot_name, source_system_identifier, source_database_oid)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET
                 source_system_identifier = coalesce(pgferry.migration.source_system_identifier, excluded.source_system_identifier),
                 source_database_oid = coalesce(pgferry.migration.source_database_oid, excluded.source_database_oid)",
            &[&name.as_str(), &MigrationPhase::Created.as_str(), &slot, &source.system_identifier, &source.database_oid],
        )
        .await
        .map_err(|e| Error::server("writing the journal", e))?;
    Ok(())
}

/// Records what the preflight found when the migration began (warnings and
/// notes: a blocking finding refuses the copy before the journal exists).
pub(crate) async fn record_preflight(target: &Client, name: &MigrationName, findings: &[Finding]) -> Result<()> {
    let detail = serde_json::to_value(findings).map_err(|e| Error::new(crate::ErrorKind::Server, e.to_string()))?;
    crate::timeline::record(target, name, crate::timeline::Kind::Preflight, "findings", Some(detail))
        .await
        .map_err(|e| Error::server("writing the preflight's findings to the journal", e))
}

/// Records the migration's phase (and slot position, when known).
pub(crate) async fn set_phase(
    target: &impl GenericClient,
    name: &MigrationName,
    phase: MigrationPhase,
    slot_lsn: Option<&str>,
) -> Result<()> {
    // One statement: the history row and the phase are written together.
    target
        .execute(
            "WITH history AS (INSERT INTO pgferry.timeline (migration, kind, name) VALUES ($1, 'phase', $2))
             INSERT INTO pgferry.migration (name, phase, slot_lsn) VALUES ($1, $2, $3::text::pg_lsn)
             ON CONFLICT (name) DO UPDATE
             SET phase = excluded.phase, slot_lsn = coalesce(excluded.slot_lsn, pgferry.migration.slot_lsn), updated_at = now()",
            &[&name.as_str(), &phase.as_str(), &slot_lsn],
        )
        .await
        .map_err(|e| Error::server("writing the journal", e))?;
    Ok(())
}

/// A finished piece, recorded inside the transaction that holds its rows.
pub(crate) struct ChunkRecord<'a> {
    pub(crate) table: &'a QualifiedName,
    pub(crate) chunk: i32,
    pub(crate) chunks: i32,
    pub(crate) rows: i64,
    pub(crate) bytes: i64,
    pub(crate) snapshot_lsn: &'a str,
}

pub(crate) async fn record_chunk(
    tx: &impl GenericClient,
    name: &MigrationName,
    record: &ChunkRecord<'_>,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO pgferry.copied_chunk (migration, table_schema, table_name, chunk, chunks, rows, bytes, snapshot_lsn)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::pg_lsn)",
        &[
            &name.as_str(),
            &record.table.schema.as_str(),
            &record.table.name.as_str(),
            &record.chunk,
            &record.chunks,
            &record.rows,
            &record.bytes,
            &record.snapshot_lsn,
        ],
    )
    .await?;
    Ok(())
}

/// Tables whose every chunk is recorded: (schema, name) pairs.
pub(crate) async fn finished_tables(target: &Client, name: &MigrationName) -> Result<Vec<(String, String)>> {
    let rows = target
        .query(
            "SELECT table_schema, table_name FROM pgferry.copied_chunk WHERE migration = $1
             GROUP BY 1, 2 HAVING count(*) = max(chunks)",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the journal", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Forgets a table's recorded chunks, inside the transaction that empties it.
pub(crate) async fn forget_table(
    tx: &impl GenericClient,
    name: &MigrationName,
    table: &QualifiedName,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM pgferry.copied_chunk WHERE migration = $1 AND table_schema = $2 AND table_name = $3",
        &[&name.as_str(), &table.schema.as_str(), &table.name.as_str()],
    )
    .await?;
    Ok(())
}

/// Records the source files the partitions were copied from.
pub(crate) async fn record_partition_files(
    target: &Client,
    name: &MigrationName,
    files: &[(&QualifiedName, u32)],
) -> Result<()> {
    let schemas: Vec<&str> = files.iter().map(|(t, _)| t.schema.as_str()).collect();
    let tables: Vec<&str> = files.iter().map(|(t, _)| t.name.as_str()).collect();
    let nodes: Vec<u32> = files.iter().map(|(_, f)| *f).collect();
    target
        .execute(
            "INSERT INTO pgferry.partition_file (migration, table_schema, table_name, relfilenode)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::oid[])
             ON CONFLICT (migration, table_schema, table_name) DO UPDATE SET relfilenode = excluded.relfilenode",
            &[&name.as_str(), &schemas, &tables, &nodes],
        )
        .await
        .map(|_| ())
        .map_err(|e| Error::server("journaling the partitions' source files", e))
}

/// The source files the partitions were copied from.
pub(crate) async fn partition_files(target: &Client, name: &MigrationName) -> Result<Vec<(QualifiedName, u32)>> {
    let rows = target
        .query(
            "SELECT table_schema, table_name, relfilenode FROM pgferry.partition_file WHERE migration = $1",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the partitions' source files", e))?;
    Ok(rows
        .iter()
        .map(|r| (QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)), r.get(2)))
        .collect())
}
