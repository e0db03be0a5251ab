//! Partitions whose rows change capture cannot vouch for.
//!
//! Partitioned tables are published through their root, and PostgreSQL then
//! does not send a TRUNCATE of a single partition (only one of the root):
//! the target would keep rows the source no longer has. A TRUNCATE (like
//! VACUUM FULL or CLUSTER) gives the table a new file, so each partition's file
//! (`relfilenode`) is journaled as the copy locked it
//! (`pgferry.partition_file`), and a partition whose file changed since, or
//! that did not exist then (created or attached during change capture), is
//! named here. The cutover copies those again inside its fence, after the drain
//! ([`recopy_partitions`]), when nothing writes to the source.

use pgferry_core::names::MigrationName;
use pgferry_core::sql::QualifiedName;
use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use crate::copy::journal;
use crate::error::{Error, Result};

/// The partitions change capture cannot vouch for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UncoveredPartitions {
    /// Given a new file since the copy: truncated, or rewritten.
    pub rewritten: Vec<QualifiedName>,
    /// Not journaled by the copy: created or attached since.
    pub unrecorded: Vec<QualifiedName>,
}

impl UncoveredPartitions {
    pub fn all(&self) -> Vec<QualifiedName> {
        self.rewritten.iter().chain(&self.unrecorded).cloned().collect()
    }
}

/// Compares the source's partitions' files with those the copy journaled.
/// A migration whose publication lists the partitions themselves (made before
/// pgferry published through the root) receives their TRUNCATEs: nothing to
/// name.
pub async fn uncovered_partitions(src: &Client, dst: &Client, name: &MigrationName) -> Result<UncoveredPartitions> {
    let via_root: bool = src
        .query_one(
            "SELECT coalesce(bool_or(pubviaroot), false) FROM pg_publication WHERE pubname = $1",
            &[&name.publication().as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the migration's publication", e))?
        .get(0);
    if !via_root {
        return Ok(UncoveredPartitions::default());
    }
    journal::ensure(dst).await?;
    let recorded = journal::partition_files(dst, name).await?;
    let mut uncovered = UncoveredPartitions::default();
    for (partition, file) in current_files(src).await? {
        match recorded.iter().find(|(t, _)| *t == partition) {
            Some((_, copied)) if *copied == file => {}
            Some(_) => uncovered.rewritten.push(partition),
            None => uncovered.unrecorded.push(partition),
        }
    }
    Ok(uncovered)
}

/// Copies `partitions` again, each whole in one target transaction, from the
/// source as it is now (fenced), and journals their current files. Returns
/// the rows copied.
pub async fn recopy_partitions(
    source: &ConnSpec,
    target: &ConnSpec,
    name: &MigrationName,
    partitions: &[QualifiedName],
) -> Result<u64> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let tables: Vec<_> = crate::copy::list_tables(&src)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| partitions.contains(&t.name))
        .collect();
    let rows = crate::copy::recopy(source, target, &tables).await?;
    let files = current_files(&src).await?;
    let copied: Vec<(&QualifiedName, u32)> =
        files.iter().filter(|(t, _)| partitions.contains(t)).map(|(t, f)| (t, *f)).collect();
    journal::ensure(&dst).await?;
    journal::record_partition_files(&dst, name, &copied).await?;
    Ok(rows)
}

/// The source's partitions (leaf tables) and their current files.
async fn current_files(src: &Client) -> Result<Vec<(QualifiedName, u32)>> {
    let rows = src
        .query(
            "SELECT n.nspname::text, c.relname::text, pg_relation_filenode(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relispartition AND c.relkind = 'r' AND c.relpersistence = 'p'
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the source's partitions", e))?;
    Ok(rows
        .iter()
        .map(|r| (QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)), r.get(2)))
        .collect())
}
