//! What the copy reads and creates on the source: the table list under the
//! snapshot, the publications, and a stale slot of this migration's name.

use std::collections::HashMap;

use pgferry_core::copy_plan::{CopyTable, PAGE_BYTES};
use pgferry_core::names::{MigrationName, STATE_SCHEMA};
use pgferry_core::sql::{Ident, QualifiedName, Sql};
use pgferry_pg::facts::{USER_RELATION, WITHOUT_REPLICA_IDENTITY};
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, ErrorKind, Result};

/// How a table can be published.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Publishable {
    /// It has a replica identity: every change can be replicated.
    Fully,
    /// No replica identity: only inserts and truncates can be published without
    /// making the source's UPDATE and DELETE fail.
    InsertsOnly,
    /// Unlogged: nothing reaches the WAL, so it is copied, never published.
    Never,
}

/// Leaf tables of user schemas (partitions included, partitioned parents and
/// extension-owned tables left out), with the columns that hold data.
pub(crate) async fn list_tables(source: &impl GenericClient) -> Result<Vec<(CopyTable, Publishable)>> {
    let rows = source
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text,
                    array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = ''),
                    coalesce(pg_relation_size(c.oid), 0) + coalesce(pg_relation_size(c.reltoastrelid), 0),
                    coalesce(pg_relation_size(c.oid), 0) / $2,
                    CASE WHEN c.relpersistence <> 'p' THEN 'never'
                    WHEN {WITHOUT_REPLICA_IDENTITY} THEN 'inserts_only' ELSE 'fully' END
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE c.relkind = 'r'
               AND {USER_RELATION}
             GROUP BY c.oid, n.nspname, c.relname
             ORDER BY 1, 2"
            ),
            &[&STATE_SCHEMA, &PAGE_BYTES],
        )
        .await
        .map_err(|e| Error::server("listing the source's tables", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let columns: Vec<String> = r.get::<_, Option<Vec<String>>>(2).unwrap_or_default();
            let table = CopyTable {
                name: QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)),
                columns: columns.into_iter().map(Ident::from_catalog).collect(),
                bytes: r.get(3),
                pages: r.get(4),
            };
            let publishable = match r.get::<_, &str>(5) {
                "fully" => Publishable::Fully,
                "inserts_only" => Publishable::InsertsOnly,
                _ => Publishable::Never,
            };
            (table, publishable)
        })
        .collect())
}

/// Creates the migration's publications when missing: one for the tables with a
/// replica identity, and an inserts-and-truncates-only one for the others, so that
/// no UPDATE or DELETE on the source starts failing because of pgferry. Unlogged
/// tables cannot be published at all.
///
/// A partitioned table is published through its root
/// (`publish_via_partition_root`): its partitions' changes arrive named by the
/// root, and the target's own partitions route them, so a partition created or
/// attached on the source after the copy is covered without changing the
/// publication. (PostgreSQL does not send a TRUNCATE of a single partition
/// under this option; a TRUNCATE of the root is sent.)
pub(crate) async fn ensure_publications(source: &Client, name: &MigrationName) -> Result<()> {
    let tables = publication_members(source).await?;
    let members = |kind: Publishable| -> Vec<&QualifiedName> {
        tables.iter().filter(|(_, p)| *p == kind).map(|(t, _)| t).collect()
    };
    let (full, insert_only) = (members(Publishable::Fully), members(Publishable::InsertsOnly));
    for (publication, members, options) in [
        (name.publication(), full, Sql::new(" WITH (publish_via_partition_root = true)")),
        (
            name.insert_only_publication(),
            insert_only,
            Sql::new(" WITH (publish = 'insert, truncate', publish_via_partition_root = true)"),
        ),
    ] {
        let exists = source
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication.as_str()])
            .await
            .map_err(|e| Error::server("reading the source's publications", e))?
            .is_some();
        if exists {
            continue;
        }
        let mut sql = Sql::new("CREATE PUBLICATION ").ident(&publication);
        for (i, table) in members.iter().enumerate() {
            sql = sql.push(if i == 0 { " FOR TABLE " } else { ", " }).name(table);
        }
        let sql = sql.append(options);
        source
            .batch_execute(sql.as_str())
            .await
            .map_err(|e| Error::server(&format!("creating the publication {publication} on the source"), e))?;
    }
    Ok(())
}

/// Adds to the migration's publications the tables neither of them lists: a
/// table made after they were (one that replaced a table the copy was about to
/// read: created, the old one dropped, renamed into its place). Called before a
/// re-copy's snapshot, so that its changes after that snapshot are streamed.
/// Returns the tables added.
pub(crate) async fn publish_unlisted(source: &Client, name: &MigrationName) -> Result<Vec<QualifiedName>> {
    let mut added = Vec::new();
    for (table, publication) in unlisted(source, name).await? {
        let sql = Sql::new("ALTER PUBLICATION ").ident(&publication).push(" ADD TABLE ").name(&table);
        source
            .batch_execute(sql.as_str())
            .await
            .map_err(|e| Error::server(&format!("adding {table} to the publication {publication}"), e))?;
        added.push(table);
    }
    Ok(added)
}

/// The tables the snapshot `snapshot_name` holds that neither of the migration's
/// publications lists as of that snapshot: their changes after it would not be
/// streamed. One made while the publications were being made (before DDL
/// capture could publish it, or between them and the slot) is such a table:
/// the copy publishes it and reads it under a later snapshot.
pub(crate) async fn unlisted_at(
    source: &Client,
    snapshot_name: &str,
    name: &MigrationName,
) -> Result<Vec<QualifiedName>> {
    let begin =
        Sql::new("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ").literal(snapshot_name);
    source.batch_execute(begin.as_str()).await.map_err(|e| Error::server("importing the snapshot", e))?;
    let found = unlisted(source, name).await;
    source.batch_execute("COMMIT").await.map_err(|e| Error::server("ending the snapshot's transaction", e))?;
    Ok(found?.into_iter().map(|(table, _)| table).collect())
}

/// The publishable tables neither publication lists, each with the publication
/// it belongs in, as `source`'s transaction sees them.
async fn unlisted(source: &Client, name: &MigrationName) -> Result<Vec<(QualifiedName, Ident)>> {
    let listed: Vec<(String, String)> = source
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_publication_rel pr
             JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname IN ($1, $2)",
            &[&name.publication().as_str(), &name.insert_only_publication().as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the migration's publications", e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut out = Vec::new();
    for (table, publishable) in publication_members(source).await? {
        let publication = match publishable {
            Publishable::Fully => name.publication(),
            Publishable::InsertsOnly => name.insert_only_publication(),
            Publishable::Never => continue,
        };
        if !listed.iter().any(|(schema, relation)| table.schema.as_str() == schema && table.name.as_str() == relation) {
            out.push((table, publication));
        }
    }
    Ok(out)
}

/// What the publications list: plain tables, and partitioned tables by their
/// root (never a partition itself), each with how it can be published.
async fn publication_members(source: &Client) -> Result<Vec<(QualifiedName, Publishable)>> {
    let rows = source
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text,
                        CASE WHEN c.relpersistence <> 'p' THEN 'never'
                        WHEN {WITHOUT_REPLICA_IDENTITY} THEN 'inserts_only' ELSE 'fully' END
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {USER_RELATION}
                 ORDER BY 1, 2"
            ),
            &[&STATE_SCHEMA],
        )
        .await
        .map_err(|e| Error::server("listing the source's tables to publish", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let publishable = match r.get::<_, &str>(2) {
                "fully" => Publishable::Fully,
                "inserts_only" => Publishable::InsertsOnly,
                _ => Publishable::Never,
            };
            (QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)), publishable)
        })
        .collect())
}

/// Each partition's root partitioned table (`pg_partition_root`), for the
/// source's partitions: change capture names their rows by the root, so a
/// hierarchy is copied under one snapshot, never partition by partition.
pub(crate) async fn partition_roots(source: &impl GenericClient) -> Result<HashMap<QualifiedName, QualifiedName>> {
    let rows = source
        .query(
            "SELECT n.nspname::text, c.relname::text, rn.nspname::text, r.relname::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_class r ON r.oid = pg_partition_root(c.oid) JOIN pg_namespace rn ON rn.oid = r.relnamespace
             WHERE c.relispartition AND c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the source's partitions", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)),
                QualifiedName::from_catalog(r.get::<_, String>(2), r.get::<_, String>(3)),
            )
        })
        .collect())
}

/// Drops the migration's publications; the ones that existed. Before the copy's
/// slot exists nothing reads them, so a rerun makes them again over the tables
/// as they are now.
pub(crate) async fn drop_publications(source: &Client, name: &MigrationName) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for publication in [name.publication(), name.insert_only_publication()] {
        let exists: bool = source
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", &[&publication.as_str()])
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::server("reading the publications", e))?;
        if exists {
            let sql = Sql::new("DROP PUBLICATION IF EXISTS ").ident(&publication);
            source.batch_execute(sql.as_str()).await.map_err(|e| Error::server("dropping a publication", e))?;
            dropped.push(publication.as_str().to_string());
        }
    }
    Ok(dropped)
}

/// Refuses a slot of this migration's name that another database on the server
/// made: slots are server-wide, so a migration of another database under the same
/// name (the default, `main`) would otherwise drop or take over this one's.
pub(crate) async fn ensure_slot_is_ours(source: &Client, name: &MigrationName, slot: &str) -> Result<()> {
    let other: Option<String> = source
        .query_opt(
            "SELECT database::text FROM pg_replication_slots WHERE slot_name = $1 AND database IS DISTINCT FROM current_database()",
            &[&slot],
        )
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_else(|| "(a physical slot)".into()));
    match other {
        None => Ok(()),
        Some(database) => Err(Error::new(
            ErrorKind::Refused,
            format!("the replication slot {slot} on the source belongs to database {database}, not to this one: another migration uses the name {name}; nothing was changed"),
        )
        .with_hint("give this migration a name of its own with --name (for example the database's name)")),
    }
}

/// Drops this migration's slot when a previous attempt left it behind before any
/// data was copied. A slot in use by a running process is never touched.
pub(crate) async fn drop_stale_slot(source: &Client, slot: &str) -> Result<()> {
    let row = source
        .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?;
    match row.map(|r| r.get::<_, bool>(0)) {
        None => Ok(()),
        Some(true) => Err(Error::new(
            ErrorKind::Precondition,
            format!("the replication slot {slot} is in use by another process"),
        )
        .with_hint("another pgferry run of this migration is active: stop it first")),
        Some(false) => source
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map(|_| ())
            .map_err(|e| Error::server(&format!("dropping the stale slot {slot}"), e)),
    }
}

/// Sets every sequence on the target to the source's `last_value`/`is_called`.
/// Sequences are not transactional, so this reads current values; the cutover sets
/// them again once writes have stopped.
pub(crate) async fn sync_sequences(source: &Client, target: &Client) -> Result<usize> {
    let rows = source
        .query(
            "SELECT schemaname::text, sequencename::text FROM pg_sequences
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema', $1) ORDER BY 1, 2",
            &[&STATE_SCHEMA],
        )
        .await
        .map_err(|e| Error::server("listing the source's sequences", e))?;
    for row in &rows {
        let name = QualifiedName::from_catalog(row.get::<_, String>(0), row.get::<_, String>(1));
        let read = Sql::new("SELECT last_value, is_called FROM ").name(&name);
        let values = source
            .query_one(read.as_str(), &[])
            .await
            .map_err(|e| Error::server(&format!("reading the sequence {name}"), e))?;
        let (last, called): (i64, bool) = (values.get(0), values.get(1));
        target
            .execute("SELECT setval($1::text::regclass, $2, $3)", &[&name.to_string(), &last, &called])
            .await
            .map_err(|e| Error::server(&format!("setting the sequence {name} on the target"), e))?;
    }
    Ok(rows.len())
}
