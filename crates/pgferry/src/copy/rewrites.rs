//! Tables rewritten between the copy's snapshot and the moment a worker reads them.
//!
//! TRUNCATE, and every command that rewrites a table (VACUUM FULL, CLUSTER,
//! ALTER TABLE ... SET TYPE), is not MVCC-safe: a snapshot taken before it
//! reads the table as the rewrite left it, empty after a TRUNCATE
//! ([MVCC caveats](https://www.postgresql.org/docs/current/mvcc-caveats.html)),
//! while the stream still sends the changes made before it.
//!
//! pg_dump locks every table it dumps up front and holds the locks to the end.
//! pgferry does not: a TRUNCATE queued behind such a lock would stop every
//! reader and writer of that table for the rest of the copy (they queue behind
//! it), and a worker that then reaches the table would queue behind it too,
//! waiting on the very session that holds the lock: a deadlock PostgreSQL
//! cannot see, since that session waits on pgferry, not on a lock.
//!
//! Instead each piece is checked after it is read, in the worker's own
//! transaction, which took ACCESS SHARE on the table when its COPY started
//! (only rewrites conflict with it) and keeps it until the worker ends. Taking
//! the lock brought the catalog cache up to date, so a rewrite committed
//! after the snapshot shows exactly: the table's `relfilenode` as the snapshot
//! sees `pg_class` differs from the current one (`pg_relation_filenode`), or the
//! name now resolves to another table (renamed or dropped and made again: the
//! COPY read the table the name resolves to now, `to_regclass`). Such a
//! piece is rolled back on the target, and its table (with its partition
//! hierarchy) is copied again under a later snapshot whose position is
//! journaled with its rows; change capture skips its changes before that
//! position (`apply::batch::already_copied`): the stream's changes from before
//! the rewrite are void for it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use pgferry_core::copy_plan::CopyTable;
use pgferry_core::sql::{QualifiedName, Sql};
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// What the workers of one data phase found, shared between them.
#[derive(Default)]
pub(crate) struct Rewrites {
    found: Mutex<Found>,
}

#[derive(Default)]
struct Found {
    /// Tables rewritten after the snapshot, before a worker read them.
    rewritten: HashSet<QualifiedName>,
    /// The files of the partitions read: PostgreSQL does not send a TRUNCATE of a
    /// single partition published through its root, so a later change of file is
    /// how one is found (see [`crate::partitions`]).
    partition_files: HashMap<QualifiedName, u32>,
}

impl Rewrites {
    /// Checks, in the worker's source transaction right after it read a piece
    /// of `table`, that the piece shows the table as the snapshot does. False
    /// when the table was rewritten: the piece must not be kept.
    pub(crate) async fn piece_is_sound(&self, src: &Client, table: &QualifiedName) -> Result<bool> {
        let row = src
            .query_one(
                "SELECT c.relfilenode IS DISTINCT FROM pg_relation_filenode(c.oid)
                        OR c.oid IS DISTINCT FROM to_regclass(format('%I.%I', $1::text, $2::text))::oid,
                        c.relispartition, pg_relation_filenode(c.oid)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.schema.as_str(), &table.name.as_str()],
            )
            .await
            .map_err(|e| Error::server(&format!("checking that {table} was not rewritten since the snapshot"), e))?;
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if row.get::<_, bool>(0) {
            found.rewritten.insert(table.clone());
            return Ok(false);
        }
        if let (true, Some(file)) = (row.get::<_, bool>(1), row.get::<_, Option<u32>>(2)) {
            found.partition_files.insert(table.clone(), file);
        }
        Ok(true)
    }

    /// After a piece's COPY found `table` or one of its columns gone by name
    /// since the snapshot: a table dropped is counted as rewritten (the re-copy's
    /// later snapshot lacks it, so nothing of it is copied); a table renamed, or
    /// a column dropped or renamed, stops the copy, naming both sides, since the
    /// target's schema is the snapshot's and its rows cannot be read into it.
    pub(crate) async fn vanished(&self, src: &Client, table: &CopyTable, snapshot: &str) -> Result<()> {
        let fail = |e| Error::server(&format!("looking up {} on the source", table.name), e);
        let begin =
            Sql::new("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ").literal(snapshot);
        src.batch_execute(begin.as_str()).await.map_err(fail)?;
        let then: Option<u32> = src
            .query_opt(
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.name.schema.as_str(), &table.name.name.as_str()],
            )
            .await
            .map_err(fail)?
            .map(|r| r.get(0));
        src.batch_execute("COMMIT").await.map_err(fail)?;
        let now = match then {
            Some(oid) => src
                .query_opt(
                    "SELECT c.oid::regclass::text, coalesce((SELECT string_agg(attname, ', ' ORDER BY attnum)
                         FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), ''),
                            to_regclass(format('%I.%I', $2::text, $3::text))::oid IS NOT DISTINCT FROM c.oid
                     FROM pg_class c WHERE c.oid = $1",
                    &[&oid, &table.name.schema.as_str(), &table.name.name.as_str()],
                )
                .await
                .map_err(fail)?
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, bool>(2))),
            None => None,
        };
        let Some((name_now, columns_now, same_name)) = now else {
            self.found.lock().unwrap_or_else(|e| e.into_inner()).rewritten.insert(table.name.clone());
            return Ok(());
        };
        let columns_then: Vec<&str> = table.columns.iter().map(|c| c.as_str()).collect();
        let what = match same_name {
            true if columns_now == columns_then.join(", ") => format!(
                "{} on the target lacks a column the source's has ({columns_now}): the target's schema was changed since the copy made it",
                table.name
            ),
            true => format!("{}'s columns changed on the source after the copy's snapshot (a column dropped or renamed): it now has ({columns_now}), the copy's snapshot has ({})", table.name, columns_then.join(", ")),
            false => format!("{} was renamed to {name_now} on the source after the copy's snapshot, before its rows were read: the target's schema is the snapshot's", table.name),
        };
        Err(Error::new(ErrorKind::Precondition, what).with_hint(
            "pgferry abort, then copy again (the new snapshot has the change); or run the same change on the target (psql) and rerun pgferry copy: it resumes",
        ))
    }

    /// The tables found rewritten, and the files of the partitions read whole
    /// (those of rewritten tables left out).
    pub(crate) fn take(self) -> (HashSet<QualifiedName>, Vec<(QualifiedName, u32)>) {
        let found = self.found.into_inner().unwrap_or_else(|e| e.into_inner());
        let files = found.partition_files.into_iter().filter(|(table, _)| !found.rewritten.contains(table)).collect();
        (found.rewritten, files)
    }
}
