//! The fence: stop every writer on the source database, prove it, and lift it
//! exactly as it was set.
//!
//! What it changes is decided by [`pgferry_core::fence::plan_fence`]: `CONNECT` on
//! the database revoked from everyone but pgferry's role and the administrators,
//! new sessions read-only. Those changes commit in one transaction on the source
//! together with the rows that save them (`pgferry.source_fence`, in the source
//! database itself), so the fence and its journal can never disagree, and lifting
//! it needs nothing but the source: not the target, which may be the server that
//! failed. Then every session on the database but pgferry's own (by backend pid,
//! whatever its role: a transaction of pgferry's role opened before the fence
//! cannot commit after it; replication connections to the database too, which
//! run SQL like any other, but not another migration's change capture) is terminated, and the fence is verified: a new
//! session's write fails, no role but the spared ones may connect, and no other
//! session is left. Lowering undoes each change in one transaction with the
//! deletion of its rows; a crash at any point leaves the journal naming exactly
//! what is still fenced. The fence touches only this database: the applications of
//! other databases on the server never notice it.
//! See [GRANT](https://www.postgresql.org/docs/current/sql-grant.html),
//! [pg_terminate_backend](https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADMIN-SIGNAL).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgferry_core::fence::{
    lift_statements, plan_fence, raise_statements, ConnectGrant, FenceChange, SparedRole, StoredChange,
};
use pgferry_core::names::MigrationName;
use pgferry_core::sql::{Ident, Sql};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;

/// How long terminated sessions may take to go away.
const TERMINATE_WAIT: Duration = Duration::from_secs(10);
/// How often the ended sessions are looked for: a terminated backend is gone
/// within a millisecond or two, and every wait here is downtime.
const TERMINATE_POLL: Duration = Duration::from_millis(5);

/// What the fence did.
#[derive(Debug, Serialize)]
pub struct FenceReport {
    pub database: String,
    /// The roles (`PUBLIC` included) that lost `CONNECT` on the database.
    pub connect_revoked_from: Vec<String>,
    pub terminated_sessions: i64,
    /// Login superusers outside the spared roles: see [`unfenced_superusers`].
    pub unfenced_superusers: Vec<String>,
}

/// A recorded fence, as the source's journal holds it.
#[derive(Clone, Debug)]
pub struct RecordedFence {
    pub database: Ident,
    pub changes: Vec<FenceChange>,
}

impl RecordedFence {
    /// The statements that lift it: what pgferry runs, and what it prints when it cannot.
    pub fn lift_statements(&self) -> Vec<String> {
        lift_statements(&self.database, &self.changes).into_iter().map(Sql::into_string).collect()
    }
}

/// Raises the planned fence on the source database (`src` is pgferry's session there).
pub async fn raise(
    source: &ConnSpec,
    src: &Client,
    migration: &MigrationName,
    plan: &RecordedFence,
    administrators: &[String],
) -> Result<FenceReport> {
    allow_writes(src).await?;
    crate::state::ensure(src, pgferry_core::state::Side::Source).await?;
    refuse_another_fence(src, migration).await?;
    if !recorded(src, migration).await?.changes.is_empty() {
        return Err(Error::new(ErrorKind::Precondition, format!("migration {migration} already fences the source"))
            .with_hint("rerun pgferry cutover: it rolls back or finishes the earlier attempt first"));
    }
    let RecordedFence { database, changes } = plan;
    let statements: Vec<String> = raise_statements(database, changes).into_iter().map(Sql::into_string).collect();
    in_transaction(src, "raising the fence on the source", async {
        src.batch_execute(&statements.join(";\n"))
            .await
            .map_err(|e| Error::server("raising the fence on the source", e))?;
        for row in changes.iter().map(FenceChange::to_stored) {
            save(src, migration, &row).await?;
        }
        Ok(())
    })
    .await?;
    failpoint::hit("fence-after-raise");
    let own_pid: i32 = query_one(src, "SELECT pg_backend_pid()").await?;
    let terminated = terminate_sessions(src, &[own_pid]).await?;
    let spared: Vec<String> = spared_roles(src, administrators).await?.into_iter().map(|r| r.name).collect();
    verify(source, src, own_pid, &spared).await?;
    // The last commits of the sessions just ended reach the drain even when made
    // with synchronous_commit off.
    flush_wal(src, migration).await?;
    let connect_revoked_from = changes
        .iter()
        .filter_map(|c| match c {
            FenceChange::RevokedConnect { grantee, .. } => Some(grantee.clone().unwrap_or_else(|| "PUBLIC".into())),
            _ => None,
        })
        .collect();
    Ok(FenceReport {
        database: database.as_str().to_string(),
        connect_revoked_from,
        terminated_sessions: terminated,
        unfenced_superusers: unfenced_superusers(src, administrators).await?,
    })
}

/// The target could not be reached: when this migration's fence is still up on
/// the source, the operator must hear it, and the way out if the target is gone.
pub(crate) async fn unreachable_target(src: &Client, migration: &MigrationName, error: Error) -> Error {
    match is_recorded(src, migration).await {
        Ok(true) => {
            let hint = format!(
                "{}; if the target is lost for good, pgferry abort --source ... --target-lost --name {migration} lifts the fence",
                error.hint.clone().unwrap_or_else(|| "make the target reachable and rerun".into())
            );
            Error {
                message: format!("{}; the source is still fenced by migration {migration}", error.message),
                ..error
            }
            .with_hint(hint)
        }
        _ => error,
    }
}

/// Makes every commit on the source so far decodable: decoding reads only
/// flushed WAL, and a commit made with `synchronous_commit` off may not be
/// flushed yet. A commit of our own that wrote WAL, flushed, flushes all WAL
/// before it: it writes a row into pgferry's own journal and removes it (no
/// publication lists the journal, so pgoutput sends nothing of it).
pub(crate) async fn flush_wal(src: &Client, migration: &MigrationName) -> Result<()> {
    let flush = async {
        src.batch_execute("BEGIN; SET LOCAL synchronous_commit = on").await?;
        src.execute(
            "INSERT INTO pgferry.source_fence (migration, kind, name) VALUES ($1, 'flush', '')",
            &[&migration.as_str()],
        )
        .await?;
        src.execute("DELETE FROM pgferry.source_fence WHERE migration = $1 AND kind = 'flush'", &[&migration.as_str()])
            .await?;
        src.batch_execute("COMMIT").await
    };
    match flush.await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = src.batch_execute("ROLLBACK").await;
            Err(Error::server("flushing the source's WAL", e))
        }
    }
}

/// Proves that nothing was written on the fenced source since the drain: the
/// slot's changes are peeked at without being consumed
/// ([pg_logical_slot_peek_binary_changes](https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION))
/// up to the flushed end of the WAL, and those of the transactions committed
/// after the drained position (`applied`, durable on the target) are kept,
/// with the logical messages written outside a transaction after it. A row
/// change, a TRUNCATE or a DDL capture message there was written by a session
/// the fence could not stop (a superuser's): the switch would leave it on the
/// old source, so the cutover must roll back instead.
///
/// One decoding pass: the slot is not moved to `applied` first (which would
/// decode the same WAL once more); a commit's record ends at its LSN, so the
/// transactions the drain applied, still after the slot's confirmed position
/// when the drain's last acknowledgement did not reach it, are left out by
/// their commit's LSN. Decoding reads the whole server's WAL (every database's),
/// so on an instance of many databases each pass costs in proportion to all of
/// their writes.
pub(crate) async fn verify_no_write_since(
    src: &Client,
    slot: &str,
    migration: &MigrationName,
    applied: &str,
    administrators: &[String],
) -> Result<()> {
    let fail = |e| Error::server("checking that nothing was written on the fenced source since the drain", e);
    let publications = format!("{},{}", migration.publication().as_str(), migration.insert_only_publication().as_str());
    flush_wal(src, migration).await?;
    // The drain's walsender may take a moment to let the slot go.
    let mut attempts = 0;
    // Each message's kind, and a logical message's prefix (pgoutput 'M': flags,
    // LSN, then the prefix up to its NUL; flags 0 is a message written outside
    // any transaction). 'C' (67) is a commit.
    let kinds: Vec<(String, Option<String>)> = loop {
        let peeked = src
            .query(
                "WITH c AS MATERIALIZED (
                     SELECT lsn, xid, data FROM pg_logical_slot_peek_binary_changes($1, pg_current_wal_flush_lsn(), NULL,
                         'proto_version', '1', 'publication_names', $2, 'messages', 'true')
                 ), later AS (
                     SELECT xid FROM c WHERE get_byte(data, 0) = 67 AND lsn > $3::text::pg_lsn
                 )
                 SELECT chr(get_byte(data, 0)),
                        CASE WHEN get_byte(data, 0) = 77 THEN convert_from(
                            substring(data FROM 11 FOR position('\\x00'::bytea IN substring(data FROM 11)) - 1), 'UTF8') END
                 FROM c
                 WHERE xid IN (SELECT xid FROM later)
                    OR (get_byte(data, 0) = 77 AND get_byte(data, 1) = 0 AND lsn > $3::text::pg_lsn)",
                &[&slot, &publications, &applied],
            )
            .await;
        match peeked {
            Ok(rows) => break rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(fail(e)),
        }
    };
    tracing::debug!(slot, applied, messages = ?kinds, "the fenced source's stream since the drain");
    let changes = kinds.iter().filter(|(k, _)| matches!(k.as_str(), "I" | "U" | "D" | "T")).count();
    // Logical messages are not filtered by publication: DDL capture's are
    // schema changes the target would miss; another tool's in this database
    // carry nothing change capture applies, and are only said.
    let ddl_prefix = migration.ddl_message_prefix();
    let (messages, foreign): (Vec<_>, Vec<_>) = kinds
        .iter()
        .filter(|(k, _)| k.as_str() == "M")
        .partition(|(_, prefix)| prefix.as_deref() == Some(ddl_prefix.as_str()));
    if !foreign.is_empty() {
        let prefixes: std::collections::BTreeSet<&str> = foreign.iter().filter_map(|(_, p)| p.as_deref()).collect();
        tracing::warn!(
            "{} logical message(s) of another tool (prefix {}) were written on the fenced source after the drain; change capture does not carry them",
            foreign.len(),
            prefixes.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let messages = messages.len();
    if changes + messages == 0 {
        return Ok(());
    }
    let superusers = unfenced_superusers(src, administrators).await?;
    Err(Error::new(
        ErrorKind::Precondition,
        format!(
            "{changes} row change(s) and {messages} captured DDL command(s) were written on the fenced source after the drain, by a session the fence cannot stop{}: switching now would leave them on the old source only",
            match superusers.as_slice() {
                [] => String::new(),
                names => format!(" (a superuser's: {})", names.join(", ")),
            }
        ),
    )
    .with_hint("stop whatever writes to the source as a superuser (an application must never log in as one), then rerun pgferry cutover; nothing written there is lost"))
}

/// The superusers that can log in, other than pgferry's role and the
/// administrators: the fence ends their sessions, but a superuser passes every
/// privilege check, `CONNECT` included, and may turn `default_transaction_read_only`
/// off, so a new session of theirs can still write on the fenced source. pgferry
/// cannot close the database to them without acting on the whole server
/// (`NOLOGIN`), so it names them: no application may log in as one.
pub async fn unfenced_superusers(src: &Client, administrators: &[String]) -> Result<Vec<String>> {
    let rows = src
        .query(
            "SELECT rolname::text FROM pg_roles
             WHERE rolsuper AND rolcanlogin AND rolname <> current_user AND NOT rolname = ANY($1) ORDER BY 1",
            &[&administrators],
        )
        .await
        .map_err(|e| Error::server("listing the source's superusers", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The journal row that says a switch command may have run (kind `switch`).
const SWITCH_KIND: &str = "switch";

/// Records on the source, before the switch command starts, that it may run: the
/// source's own word, which survives the target's journal (and `cleanup`).
pub(crate) async fn record_switch(src: &Client, migration: &MigrationName) -> Result<()> {
    src.execute(
        "INSERT INTO pgferry.source_fence (migration, kind, name, previous) VALUES ($1, $2, '', 'started') ON CONFLICT DO NOTHING",
        &[&migration.as_str(), &SWITCH_KIND],
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::server("journaling the switch on the source", e))
}

/// Whether the source records that this migration's switch command may have run.
pub async fn switch_recorded(src: &Client, migration: &MigrationName) -> Result<bool> {
    Ok(switch_started_at(src, migration).await?.is_some())
}

/// When this migration's switch command started, as the source records it
/// (`None`: no switch recorded).
pub async fn switch_started_at(src: &Client, migration: &MigrationName) -> Result<Option<String>> {
    if !journal_exists(src).await? {
        return Ok(None);
    }
    src.query_opt(
        "SELECT date_trunc('second', raised_at)::text FROM pgferry.source_fence WHERE migration = $1 AND kind = $2",
        &[&migration.as_str(), &SWITCH_KIND],
    )
    .await
    .map(|r| r.map(|r| r.get(0)))
    .map_err(|e| Error::server("reading the fence journal on the source", e))
}

/// Forgets the switch's record (a rollback on the operator's word that it did not run, `abort --force`).
pub(crate) async fn forget_switch(src: &Client, migration: &MigrationName) -> Result<()> {
    if !journal_exists(src).await? {
        return Ok(());
    }
    src.execute(
        "DELETE FROM pgferry.source_fence WHERE migration = $1 AND kind = $2",
        &[&migration.as_str(), &SWITCH_KIND],
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::server("clearing the switch's record on the source", e))
}

/// The prepared transactions of the current database, by name.
pub(crate) async fn prepared_transactions(src: &Client) -> Result<Vec<String>> {
    Ok(src
        .query("SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY gid", &[])
        .await
        .map_err(|e| Error::server("reading the source's prepared transactions", e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The last look before the switch: this migration's fence is still recorded, and
/// it still holds (nothing lifted it, no writer slipped in since it was raised).
pub(crate) async fn verify_still_raised(
    source: &ConnSpec,
    src: &Client,
    migration: &MigrationName,
    administrators: &[String],
) -> Result<()> {
    if !is_recorded(src, migration).await? {
        return Err(Error::new(
            ErrorKind::Precondition,
            "the fence was lifted during the cutover (by another pgferry command?)",
        )
        .with_hint(
            "see who lifted it; the source took writes again, so change capture must catch up before another cutover",
        ));
    }
    let own_pid: i32 = query_one(src, "SELECT pg_backend_pid()").await?;
    let spared: Vec<String> = spared_roles(src, administrators).await?.into_iter().map(|r| r.name).collect();
    verify(source, src, own_pid, &spared).await
}

/// The fence raised now would make (also for `cutover --dry-run`); reads only.
pub async fn planned(src: &Client, administrators: &[String]) -> Result<RecordedFence> {
    let grants = connect_grants(src).await?;
    let spared = spared_roles(src, administrators).await?;
    let read_only = database_read_only_setting(src).await?;
    Ok(RecordedFence {
        database: current_database(src).await?,
        changes: plan_fence(&grants, &spared, read_only.as_deref()),
    })
}

/// Lets a session of pgferry's write on a fenced source: sessions opened during
/// the fence start read-only like everyone else's.
pub async fn allow_writes(src: &Client) -> Result<()> {
    src.batch_execute("SET default_transaction_read_only = off")
        .await
        .map_err(|e| Error::server("preparing a session on the source", e))
}

/// Lowers the fence: every saved change undone and its rows deleted, in one
/// transaction. Returns how many changes were undone (0: nothing was recorded).
pub async fn lower(src: &Client, migration: &MigrationName) -> Result<usize> {
    allow_writes(src).await?;
    let fence = recorded(src, migration).await?;
    if fence.changes.is_empty() {
        return Ok(0);
    }
    in_transaction(src, "lifting the fence on the source", async {
        src.batch_execute(&fence.lift_statements().join(";\n"))
            .await
            .map_err(|e| Error::server("lifting the fence on the source", e))?;
        for row in fence.changes.iter().map(FenceChange::to_stored) {
            src.execute(
                "DELETE FROM pgferry.source_fence WHERE migration = $1 AND kind = $2 AND name = $3",
                &[&migration.as_str(), &row.0, &row.1],
            )
            .await
            .map_err(|e| Error::server("updating the fence journal on the source", e))?;
        }
        Ok(())
    })
    .await?;
    Ok(fence.changes.len())
}

/// The fence this migration recorded on the source (no changes: none).
pub async fn recorded(src: &Client, migration: &MigrationName) -> Result<RecordedFence> {
    let database = current_database(src).await?;
    if !journal_exists(src).await? {
        return Ok(RecordedFence { database, changes: Vec::new() });
    }
    let rows = src
        .query(
            "SELECT kind, name, previous FROM pgferry.source_fence WHERE migration = $1 ORDER BY kind, name",
            &[&migration.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the fence journal on the source", e))?;
    let mut changes = Vec::new();
    for row in &rows {
        let stored: StoredChange = (row.get(0), row.get(1), row.get(2));
        if stored.0 == crate::outside_fence::KIND || stored.0 == SWITCH_KIND {
            continue;
        }
        let change = FenceChange::from_stored(&stored).ok_or_else(|| {
            Error::new(
                ErrorKind::Precondition,
                format!("the fence journal on the source holds a change this pgferry does not know: {}", stored.0),
            )
            .with_hint("lift the fence with the pgferry version that raised it")
        })?;
        changes.push(change);
    }
    let mut ordered: Vec<FenceChange> =
        changes.iter().filter(|c| !matches!(c, FenceChange::ReadOnly { .. })).cloned().collect();
    ordered.extend(changes.into_iter().filter(|c| matches!(c, FenceChange::ReadOnly { .. })));
    Ok(RecordedFence { database, changes: ordered })
}

/// Whether a fence is recorded for this migration (raised, not yet lowered).
pub async fn is_recorded(src: &Client, migration: &MigrationName) -> Result<bool> {
    Ok(!recorded(src, migration).await?.changes.is_empty())
}

pub(crate) async fn journal_exists(src: &Client) -> Result<bool> {
    query_one(src, "SELECT to_regclass('pgferry.source_fence') IS NOT NULL").await
}

/// Another migration's fence on this database would be saved as "the previous
/// setting" by this one: refused, naming it.
pub(crate) async fn refuse_another_fence(src: &Client, migration: &MigrationName) -> Result<()> {
    if !journal_exists(src).await? {
        return Ok(());
    }
    let others: Vec<String> = src
        .query(
            "SELECT DISTINCT migration FROM pgferry.source_fence WHERE migration <> $1 ORDER BY 1",
            &[&migration.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the fence journal on the source", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Refused,
        format!("the source database is fenced by another migration: {}; nothing was changed", others.join(", ")),
    )
    .with_hint("finish or abort that migration first (pgferry abort --name NAME lifts its fence)"))
}

/// A copy from a fenced database is refused before it changes anything: its
/// application is stopped there by a cutover (one that was interrupted, or one
/// that completed and keeps the old source fenced), so the copy would start a
/// migration from a database that is being, or was, cut over.
pub(crate) async fn refuse_copy_from_fenced(src: &Client) -> Result<()> {
    if !journal_exists(src).await? {
        return Ok(());
    }
    let fencing: Vec<String> = src
        .query("SELECT DISTINCT migration FROM pgferry.source_fence WHERE kind <> $1 ORDER BY 1", &[&SWITCH_KIND])
        .await
        .map_err(|e| Error::server("reading the fence journal on the source", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if fencing.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Refused,
        format!(
            "the source database is fenced by the cutover of migration {}: its application cannot write to it, and a copy would start from a database that is being cut over; nothing was changed",
            fencing.join(", ")
        ),
    )
    .with_hint("a cutover that was interrupted before its switch: rerun pgferry cutover --name NAME with that migration's target (it rolls back), or, if that target is gone, pgferry abort --source URL --target-lost --name NAME; then copy again"))
}

async fn save(src: &Client, migration: &MigrationName, (kind, name, previous): &StoredChange) -> Result<()> {
    src.execute(
        "INSERT INTO pgferry.source_fence (migration, kind, name, previous) VALUES ($1, $2, $3, $4)",
        &[&migration.as_str(), kind, name, previous],
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::server("saving the settings the fence changes", e))
}

/// Every direct holder of `CONNECT` on the current database, one entry per grantee.
async fn connect_grants(src: &Client) -> Result<Vec<ConnectGrant>> {
    let rows = src
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END, bool_or(a.is_grantable)
             FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
             WHERE d.datname = current_database() AND a.privilege_type = 'CONNECT'
             GROUP BY 1 ORDER BY 1 NULLS FIRST",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading who may connect to the source database", e))?;
    Ok(rows.iter().map(|r| ConnectGrant { grantee: r.get(0), grantable: r.get(1) }).collect())
}

/// pgferry's own role and the administrators that exist.
async fn spared_roles(src: &Client, administrators: &[String]) -> Result<Vec<SparedRole>> {
    let rows = src
        .query(
            "SELECT rolname::text, rolsuper FROM pg_roles WHERE rolname = current_user OR rolname = ANY($1) ORDER BY 1",
            &[&administrators],
        )
        .await
        .map_err(|e| Error::server("listing the source's roles", e))?;
    Ok(rows.iter().map(|r| SparedRole { name: r.get(0), superuser: r.get(1) }).collect())
}

/// The database-level `default_transaction_read_only`, if one is set.
async fn database_read_only_setting(src: &Client) -> Result<Option<String>> {
    let row = src
        .query_opt(
            "SELECT substr(c, length('default_transaction_read_only=') + 1)
             FROM pg_db_role_setting s, unnest(s.setconfig) c
             WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND c LIKE 'default\\_transaction\\_read\\_only=%'",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the source database's settings", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// The sessions of this database the fence ends and then allows none of: client
/// backends, and walsenders (a `replication=database` connection runs SQL too, so
/// one opened before the fence could write after it), but not the walsenders
/// streaming a pgferry slot (`$1`: the slots' name pattern), another migration's
/// change capture, which runs no SQL.
const FENCED_SESSIONS: &str = "datname = current_database()
    AND (backend_type = 'client backend'
         OR (backend_type = 'walsender' AND NOT EXISTS (
             SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = a.pid AND s.slot_name LIKE $1)))";

/// `pgferry_%`, its `_` escaped: the name of every slot pgferry creates.
fn slot_pattern() -> String {
    format!("{}%", pgferry_core::names::PREFIX.replace('_', "\\_"))
}

/// Terminates every session on this database ([`FENCED_SESSIONS`]) but `own`
/// (superusers' and administrators' included), and waits until those sessions are gone.
async fn terminate_sessions(src: &Client, own: &[i32]) -> Result<i64> {
    // Two statements, not one: a call to pg_terminate_backend in the WHERE clause
    // may be evaluated before the database filter, ending other databases' sessions.
    let pids: Vec<i32> = src
        .query(
            &format!("SELECT pid FROM pg_stat_activity a WHERE {FENCED_SESSIONS} AND pid <> ALL($2)"),
            &[&slot_pattern(), &own],
        )
        .await
        .map_err(|e| Error::server("listing the application's sessions on the source", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    src.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", &[&pids])
        .await
        .map_err(|e| Error::server("terminating the application's sessions on the source", e))?;
    let started = Instant::now();
    loop {
        let left: i64 = src
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", &[&pids])
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::server("watching the source's sessions", e))?;
        if left == 0 {
            return Ok(pids.len() as i64);
        }
        if started.elapsed() > TERMINATE_WAIT {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!("{left} session(s) on the source did not end within {} s", TERMINATE_WAIT.as_secs()),
            ));
        }
        tokio::time::sleep(TERMINATE_POLL).await;
    }
}

/// A new session must start read-only, no role but the spared ones may connect,
/// and no session may be left but pgferry's and the spared roles' new ones (which
/// start read-only). A superuser bypasses privileges: an application connecting as
/// one shows up here.
async fn verify(source: &ConnSpec, src: &Client, own_pid: i32, spared: &[String]) -> Result<()> {
    let probe = pgferry_pg::connect_as_application(source).await?;
    match probe.batch_execute("CREATE TEMPORARY TABLE pgferry_fence_probe (x int)").await {
        Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {}
        Err(e) => return Err(Error::server("verifying the fence with a write attempt", e)),
        Ok(()) => {
            return Err(Error::new(ErrorKind::Precondition, "the fence did not hold: a new session on the source could still write")
                .with_hint("a setting overrides default_transaction_read_only for pgferry's role (ALTER ROLE ... SET); remove it and retry"))
        }
    }
    let can_connect = role_names(
        src,
        "SELECT rolname::text FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND NOT (rolname = ANY($1))
         AND has_database_privilege(oid, current_database(), 'CONNECT') ORDER BY 1",
        spared,
    )
    .await?;
    if !can_connect.is_empty() {
        return Err(Error::new(ErrorKind::Precondition, format!("the fence did not hold: these roles may still connect: {}", can_connect.join(", ")))
            .with_hint("CONNECT on the database was granted to them by a role other than its owner; revoke that grant, or run pgferry as the database's owner"));
    }
    let overriding = role_names(
        src,
        "SELECT DISTINCT r.rolname::text FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c
         WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
           AND c ILIKE 'default\\_transaction\\_read\\_only=%' AND c NOT ILIKE '%=on' AND c NOT ILIKE '%=true'
           AND r.rolcanlogin AND (r.rolsuper OR r.rolname = ANY($1)) ORDER BY 1",
        spared,
    )
    .await?;
    if !overriding.is_empty() {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("the fence would not hold: these roles, which may still connect, start their sessions writable (ALTER ROLE ... SET default_transaction_read_only): {}", overriding.join(", ")),
        )
        .with_hint("reset that setting for them (ALTER ROLE name RESET default_transaction_read_only), or give the application a role of its own"));
    }
    let sessions: BTreeMap<String, i64> = src
        .query(
            &format!(
                "SELECT usename::text, count(*) FROM pg_stat_activity a WHERE {FENCED_SESSIONS}
                 AND pid <> $2 AND pid <> $3 AND NOT (usename = ANY($4)) GROUP BY 1"
            ),
            &[&slot_pattern(), &own_pid, &probe_pid(&probe).await?, &spared],
        )
        .await
        .map_err(|e| Error::server("verifying the fence", e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if !sessions.is_empty() {
        let who: Vec<String> = sessions.iter().map(|(role, n)| format!("{role} ({n})")).collect();
        return Err(Error::new(ErrorKind::Precondition, format!("sessions reconnected to the source during the fence: {}", who.join(", ")))
            .with_hint("a superuser is not stopped by privileges: stop that application, or give it a role of its own that is not a superuser"));
    }
    Ok(())
}

/// Runs `body` inside one transaction on `client`: committed when it succeeds,
/// rolled back when it fails (the session stays usable).
async fn in_transaction(
    client: &Client,
    doing: &str,
    body: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    exec(client, "BEGIN", doing).await?;
    match body.await {
        Ok(()) => exec(client, "COMMIT", doing).await,
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

/// The role names a verification query finds, given the spared roles as `$1`.
async fn role_names(src: &Client, sql: &str, spared: &[String]) -> Result<Vec<String>> {
    Ok(src
        .query(sql, &[&spared])
        .await
        .map_err(|e| Error::server("verifying the fence", e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn probe_pid(probe: &Client) -> Result<i32> {
    query_one(probe, "SELECT pg_backend_pid()").await
}

async fn current_database(src: &Client) -> Result<Ident> {
    Ok(Ident::from_catalog(query_one::<String>(src, "SELECT current_database()::text").await?))
}

async fn exec(client: &Client, sql: &str, doing: &str) -> Result<()> {
    client.batch_execute(sql).await.map_err(|e| Error::server(doing, e))
}

async fn query_one<T: for<'a> tokio_postgres::types::FromSql<'a>>(client: &Client, sql: &str) -> Result<T> {
    client.query_one(sql, &[]).await.map(|r| r.get(0)).map_err(|e| Error::server("reading the source", e))
}
