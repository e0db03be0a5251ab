//! The copy's snapshot, held with every table it copies locked.
//!
//! TRUNCATE, and every command that rewrites a table (VACUUM FULL, CLUSTER,
//! ALTER TABLE ... SET TYPE), is not MVCC-safe: a snapshot taken before it
//! reads the table as the rewrite left it, empty after a TRUNCATE
//! ([MVCC caveats](https://www.postgresql.org/docs/current/mvcc-caveats.html)),
//! while the stream still sends the changes made before it. pg_dump locks each
//! table it dumps for this reason. Right after the slot's snapshot is imported,
//! one session locks every table the copy will copy (ACCESS SHARE, which only
//! such commands conflict with) and holds the locks until the rows are in.
//!
//! A rewrite that committed between the slot's creation and the lock is found
//! exactly: the table's `relfilenode` as the snapshot sees `pg_class` differs from
//! the current one (`pg_relation_filenode`, read through the catalog cache,
//! which taking the lock brought up to date). Such a table is copied again under
//! a later snapshot whose position is journaled with its rows, and change capture
//! skips its changes before that position (`apply::batch::already_copied`): the
//! stream's changes from before the rewrite are void for it.

use std::collections::{HashMap, HashSet};

use pgferry_core::sql::{QualifiedName, Sql};
use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use super::source;
use crate::error::{Error, Result};
use crate::failpoint;

/// A session holding the snapshot's transaction and its locks; they are
/// released when it is dropped.
pub(crate) struct HeldSnapshot {
    _session: Client,
    /// Tables rewritten (truncated, ...) after the snapshot and before the lock,
    /// with the other partitions of their hierarchy.
    pub(crate) rewritten: HashSet<QualifiedName>,
    /// The locked partitions' files (`relfilenode`): PostgreSQL does not send a
    /// TRUNCATE of a single partition published through its root, so a later
    /// change of file is how one is found (see [`crate::partitions`]).
    pub(crate) partition_files: HashMap<QualifiedName, u32>,
}

/// Imports `snapshot`, locks the tables it shows (only those in the partition
/// hierarchies of `only`, when given) and finds those rewritten since the
/// snapshot, each with its whole hierarchy: change capture names a partition's
/// rows by its root, so a hierarchy is copied under one snapshot.
pub(crate) async fn lock(
    source: &ConnSpec,
    snapshot: &str,
    only: Option<&HashSet<QualifiedName>>,
) -> Result<HeldSnapshot> {
    failpoint::pause("copy-before-lock").await;
    let session = pgferry_pg::connect(source).await?;
    let begin =
        Sql::new("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ").literal(snapshot);
    session
        .batch_execute(begin.as_str())
        .await
        .map_err(|e| Error::server("importing the copy's snapshot to lock its tables", e))?;
    let roots = source::partition_roots(&session).await?;
    let root = |t: &QualifiedName| roots.get(t).cloned().unwrap_or_else(|| t.clone());
    let wanted: Option<HashSet<QualifiedName>> = only.map(|o| o.iter().map(root).collect());
    let tables: Vec<QualifiedName> = source::list_tables(&session)
        .await?
        .into_iter()
        .map(|(t, _)| t.name)
        .filter(|t| wanted.as_ref().is_none_or(|w| w.contains(&root(t))))
        .collect();
    if tables.is_empty() {
        return Ok(HeldSnapshot { _session: session, rewritten: HashSet::new(), partition_files: HashMap::new() });
    }
    let mut sql = Sql::new("LOCK TABLE ");
    for (i, table) in tables.iter().enumerate() {
        sql = sql.push(if i == 0 { "ONLY " } else { ", ONLY " }).name(table);
    }
    let sql = sql.push(" IN ACCESS SHARE MODE");
    session.batch_execute(sql.as_str()).await.map_err(|e| Error::server("locking the tables the copy reads", e))?;
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = session
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relfilenode IS DISTINCT FROM pg_relation_filenode(c.oid),
                    c.relispartition, pg_relation_filenode(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            &[&schemas, &names],
        )
        .await
        .map_err(|e| Error::server("looking for tables rewritten since the copy's snapshot", e))?;
    let name = |r: &tokio_postgres::Row| QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1));
    let hit: HashSet<QualifiedName> = rows.iter().filter(|r| r.get::<_, bool>(2)).map(|r| root(&name(r))).collect();
    let rewritten = tables.into_iter().filter(|t| hit.contains(&root(t))).collect();
    let partition_files = rows
        .iter()
        .filter(|r| r.get::<_, bool>(3))
        .filter_map(|r| Some((name(r), r.get::<_, Option<u32>>(4)?)))
        .collect();
    Ok(HeldSnapshot { _session: session, rewritten, partition_files })
}
