//! `--replica-identity-full`: the operator's consent to give the source's tables
//! that have no primary key and no usable replica identity `REPLICA IDENTITY
//! FULL`, so that their UPDATEs and DELETEs are published and replicated too
//! ([REPLICA IDENTITY](https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-REPLICA-IDENTITY)).
//! Without it such a table is published for inserts and truncates only, since a
//! publication that covers it would make the application's UPDATEs and DELETEs
//! fail. What FULL costs (named by `pgferry check`): each UPDATE and DELETE on the
//! table logs the whole old row on the source, and finds its row on the target
//! by scanning the table.
//!
//! Each table's setting before is journaled on the target (`pgferry.replica_identity`)
//! before the source is changed, so a kill anywhere leaves a row that names what
//! to put back; a rerun keeps the first row. `abort` and `cleanup` restore every
//! such table still FULL, on the source and on the target (whose schema dump
//! carried FULL over): DEFAULT, or NOTHING for a table that had NOTHING (or an
//! identity index that no longer exists, which behaves as NOTHING). The ALTER
//! takes a brief ACCESS EXCLUSIVE lock: it waits at most [`LOCK_TIMEOUT`] so that
//! a long transaction on the table never queues the application behind it.

use pgferry_core::names::{MigrationName, STATE_SCHEMA};
use pgferry_core::sql::{QualifiedName, Sql};
use pgferry_pg::facts::{USER_RELATION, WITHOUT_REPLICA_IDENTITY};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;

/// How long the ALTER waits for its lock on a table the application uses.
const LOCK_TIMEOUT: &str = "3s";

/// Gives every table of the source without a usable replica identity
/// REPLICA IDENTITY FULL, journaling each first.
pub(crate) async fn set_full(src: &Client, dst: &Client, name: &MigrationName) -> Result<()> {
    crate::state::ensure(dst, pgferry_core::state::Side::Target).await?;
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relreplident::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND {USER_RELATION} AND {WITHOUT_REPLICA_IDENTITY}
         ORDER BY 1, 2"
    );
    let rows = src
        .query(&sql, &[&STATE_SCHEMA])
        .await
        .map_err(|e| Error::server("listing the tables without a replica identity", e))?;
    for row in rows {
        let (schema, table, original): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let kept = if original == "d" { "d" } else { "n" };
        dst.execute(
            "INSERT INTO pgferry.replica_identity (migration, table_schema, table_name, original)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&name.as_str(), &schema, &table, &kept],
        )
        .await
        .map_err(|e| Error::server("journaling a replica identity change", e))?;
        failpoint::hit("copy-after-replica-identity-journaled");
        let table = QualifiedName::from_catalog(schema, table);
        alter(src, &table, "FULL").await?;
    }
    Ok(())
}

/// The source's tables with REPLICA IDENTITY FULL and no primary key: what
/// `--replica-identity-full` sets, read from the catalog alone (for an abort
/// whose target, and with it the journal, is lost).
pub(crate) async fn keyless_with_full_identity(src: &Client) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.relreplident = 'f' AND {USER_RELATION}
           AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
         ORDER BY 1, 2"
    );
    let rows = src
        .query(&sql, &[&STATE_SCHEMA])
        .await
        .map_err(|e| Error::server("listing the tables with REPLICA IDENTITY FULL", e))?;
    Ok(rows
        .iter()
        .map(|r| QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)).to_string())
        .collect())
}

/// The tables this migration set FULL, as the journal holds them.
pub(crate) async fn set_by(dst: &Client, name: &MigrationName) -> Result<Vec<String>> {
    let rows = journal_rows(dst, name).await?;
    Ok(rows.into_iter().map(|(schema, table, _)| QualifiedName::from_catalog(schema, table).to_string()).collect())
}

/// The journal's rows for this migration: schema, table and original identity
/// (`d` or `n`), in name order; none when the journal does not exist.
async fn journal_rows(dst: &Client, name: &MigrationName) -> Result<Vec<(String, String, String)>> {
    if !journaled(dst).await? {
        return Ok(Vec::new());
    }
    let rows = dst
        .query(
            "SELECT table_schema, table_name, original FROM pgferry.replica_identity WHERE migration = $1 ORDER BY 1, 2",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the replica identity journal", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

async fn journaled(dst: &Client) -> Result<bool> {
    dst.query_one("SELECT to_regclass('pgferry.replica_identity') IS NOT NULL", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking for the replica identity journal", e))
}

/// Puts back the replica identity of every table this migration set FULL (and
/// still FULL); the tables restored.
pub(crate) async fn restore(src: &Client, dst: &Client, name: &MigrationName) -> Result<Vec<String>> {
    let mut restored = Vec::new();
    for (schema, table, original) in journal_rows(dst, name).await? {
        let identity = if original == "d" { "DEFAULT" } else { "NOTHING" };
        let mut put_back = false;
        for side in [src, dst] {
            put_back |= restore_on(side, &schema, &table, identity).await?;
        }
        if put_back {
            restored.push(QualifiedName::from_catalog(schema.clone(), table.clone()).to_string());
        }
        dst.execute(
            "DELETE FROM pgferry.replica_identity WHERE migration = $1 AND table_schema = $2 AND table_name = $3",
            &[&name.as_str(), &schema, &table],
        )
        .await
        .map_err(|e| Error::server("forgetting a restored replica identity", e))?;
    }
    Ok(restored)
}

/// Sets `identity` on one side's table when it is still FULL (the target got
/// FULL from the source's schema dump); whether it did.
async fn restore_on(client: &Client, schema: &str, table: &str, identity: &'static str) -> Result<bool> {
    let current: Option<String> = client
        .query_opt(
            "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .map_err(|e| Error::server("reading a table's replica identity", e))?
        .map(|r| r.get(0));
    if current.as_deref() != Some("f") {
        return Ok(false);
    }
    alter(client, &QualifiedName::from_catalog(schema.to_string(), table.to_string()), identity).await?;
    Ok(true)
}

/// `ALTER TABLE ONLY t REPLICA IDENTITY <identity>` under [`LOCK_TIMEOUT`].
async fn alter(client: &Client, table: &QualifiedName, identity: &'static str) -> Result<()> {
    let sql = Sql::new("BEGIN; SET LOCAL lock_timeout = ")
        .literal(LOCK_TIMEOUT)
        .push("; ALTER TABLE ONLY ")
        .name(table)
        .push(" REPLICA IDENTITY ")
        .push(identity)
        .push("; COMMIT");
    if let Err(e) = client.batch_execute(sql.as_str()).await {
        let _ = client.batch_execute("ROLLBACK").await;
        let locked = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
        return Err(if locked {
            Error::new(
                ErrorKind::Precondition,
                format!(
                    "{table} stayed locked for {LOCK_TIMEOUT}, so its REPLICA IDENTITY could not be set to {identity}"
                ),
            )
            .with_hint(
                "a long transaction holds the table (see pg_locks and pg_stat_activity); rerun when it has ended",
            )
        } else {
            Error::server(&format!("setting REPLICA IDENTITY {identity} on {table}"), e)
        });
    }
    Ok(())
}
