//! The fence: stop every writer on the source database, prove it, and lift it
//! exactly as it was set.
//!
//! Raising it, in order: the journal on the target saves each setting about to
//! change (intent, before the change, never overwritten by a rerun); application
//! roles get `CONNECTION LIMIT 0`; the database's new sessions start read-only;
//! every open client session but pgferry's and the administrators' is terminated
//! (superusers' too); then a fresh session's write must fail and no other session
//! may remain. Lowering puts each saved setting back and
//! deletes its journal row, so a crash at any point leaves the journal naming what
//! is still fenced, and lowering again finishes the job.
//! See [ALTER ROLE](https://www.postgresql.org/docs/current/sql-alterrole.html) and
//! [ALTER DATABASE](https://www.postgresql.org/docs/current/sql-alterdatabase.html).

use std::time::{Duration, Instant};

use pgferry_core::fence::{roles_to_fence, FencedRole, LoginRole};
use pgferry_core::names::MigrationName;
use pgferry_core::sql::{Ident, Sql};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;

const JOURNAL_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS pgferry;
CREATE TABLE IF NOT EXISTS pgferry.fence (
    migration text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('role', 'database')),
    name text NOT NULL,
    previous text,
    PRIMARY KEY (migration, kind, name)
);";

/// How long terminated sessions may take to go away.
const TERMINATE_WAIT: Duration = Duration::from_secs(10);

/// What the fence did.
#[derive(Debug, Serialize)]
pub struct FenceReport {
    pub fenced_roles: Vec<String>,
    pub terminated_sessions: i64,
}

/// Raises the fence on the source database, with the journal on the target.
pub async fn raise(
    source: &ConnSpec,
    src: &Client,
    dst: &Client,
    migration: &MigrationName,
    administrators: &[String],
) -> Result<FenceReport> {
    dst.batch_execute(JOURNAL_SQL).await.map_err(|e| Error::server("creating the fence journal", e))?;
    allow_writes(src).await?;
    let own_role: String = query_one(src, "SELECT current_user::text").await?;
    let roles = login_roles(src).await?;
    let fenced = roles_to_fence(&roles, &own_role, administrators);
    let previous_read_only = database_read_only_setting(src).await?;
    let database = Ident::from_catalog(query_one::<String>(src, "SELECT current_database()::text").await?);
    save_intent(dst, migration, &fenced, &database, previous_read_only.as_deref()).await?;
    failpoint::hit("fence-after-intent");
    for role in &fenced {
        let sql = Sql::new("ALTER ROLE ").ident(&Ident::from_catalog(role.name.as_str())).push(" CONNECTION LIMIT 0");
        exec(src, sql, "limiting a role's connections on the source").await?;
    }
    exec(src, Sql::new("ALTER DATABASE ").ident(&database).push(" SET default_transaction_read_only = on"), "making the source read-only").await?;
    let names: Vec<String> = fenced.iter().map(|r| r.name.clone()).collect();
    let mut spared = administrators.to_vec();
    spared.push(own_role);
    let terminated = terminate_sessions(src, &spared).await?;
    failpoint::hit("fence-after-raise");
    verify(source, src, &spared).await?;
    Ok(FenceReport { fenced_roles: names, terminated_sessions: terminated })
}

/// The roles a fence raised now would limit (for `cutover --dry-run`); reads only.
pub async fn planned(src: &Client, administrators: &[String]) -> Result<Vec<pgferry_core::fence::FencedRole>> {
    let own_role: String = query_one(src, "SELECT current_user::text").await?;
    Ok(roles_to_fence(&login_roles(src).await?, &own_role, administrators))
}

/// Lets a session of pgferry's write on a fenced source: sessions opened during
/// the fence start read-only like everyone else's.
pub async fn allow_writes(src: &Client) -> Result<()> {
    src.batch_execute("SET default_transaction_read_only = off")
        .await
        .map_err(|e| Error::server("preparing a session on the source", e))
}

/// Lowers the fence: every saved setting back as it was, journal rows deleted.
/// Does nothing when no fence is recorded.
pub async fn lower(src: &Client, dst: &Client, migration: &MigrationName) -> Result<usize> {
    dst.batch_execute(JOURNAL_SQL).await.map_err(|e| Error::server("creating the fence journal", e))?;
    allow_writes(src).await?;
    let rows = dst
        .query("SELECT kind, name, previous FROM pgferry.fence WHERE migration = $1 ORDER BY kind, name", &[&migration.as_str()])
        .await
        .map_err(|e| Error::server("reading the fence journal", e))?;
    for row in &rows {
        let (kind, name, previous): (String, String, Option<String>) = (row.get(0), row.get(1), row.get(2));
        let sql = if kind == "role" {
            let limit: i64 = previous.as_deref().unwrap_or("-1").parse().unwrap_or(-1);
            Sql::new("ALTER ROLE ").ident(&Ident::from_catalog(name.as_str())).push(" CONNECTION LIMIT ").int(limit)
        } else {
            let db = Ident::from_catalog(name.as_str());
            match &previous {
                None => Sql::new("ALTER DATABASE ").ident(&db).push(" RESET default_transaction_read_only"),
                Some(value) => Sql::new("ALTER DATABASE ").ident(&db).push(" SET default_transaction_read_only = ").literal(value),
            }
        };
        exec(src, sql, "lifting the fence on the source").await?;
        dst.execute(
            "DELETE FROM pgferry.fence WHERE migration = $1 AND kind = $2 AND name = $3",
            &[&migration.as_str(), &kind, &name],
        )
        .await
        .map_err(|e| Error::server("updating the fence journal", e))?;
        failpoint::hit("fence-after-lower-step");
    }
    Ok(rows.len())
}

/// Whether a fence is recorded for this migration (raised, or half raised).
pub async fn is_recorded(dst: &Client, migration: &MigrationName) -> Result<bool> {
    dst.batch_execute(JOURNAL_SQL).await.map_err(|e| Error::server("creating the fence journal", e))?;
    dst.query_one("SELECT EXISTS (SELECT 1 FROM pgferry.fence WHERE migration = $1)", &[&migration.as_str()])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the fence journal", e))
}

async fn login_roles(src: &Client) -> Result<Vec<LoginRole>> {
    let rows = src
        .query("SELECT rolname::text, rolsuper, rolconnlimit FROM pg_roles WHERE rolcanlogin AND rolname !~ '^pg_'", &[])
        .await
        .map_err(|e| Error::server("listing the source's roles", e))?;
    Ok(rows.iter().map(|r| LoginRole { name: r.get(0), superuser: r.get(1), connection_limit: r.get(2) }).collect())
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

/// Saves what the fence is about to change; a row saved by an earlier, crashed
/// attempt is kept, since it holds the setting from before any fence.
async fn save_intent(
    dst: &Client,
    migration: &MigrationName,
    fenced: &[FencedRole],
    database: &Ident,
    read_only: Option<&str>,
) -> Result<()> {
    let rows = fenced
        .iter()
        .map(|r| ("role", r.name.clone(), Some(r.previous_connection_limit.to_string())))
        .chain(std::iter::once(("database", database.as_str().to_string(), read_only.map(str::to_string))));
    for (kind, name, previous) in rows {
        dst.execute(
            "INSERT INTO pgferry.fence (migration, kind, name, previous) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&migration.as_str(), &kind, &name, &previous],
        )
        .await
        .map_err(|e| Error::server("saving the settings the fence changes", e))?;
    }
    Ok(())
}

/// Terminates every client session on this database except those of the spared
/// roles (pgferry's own and the administrators), superusers' included, and waits
/// until they are gone.
async fn terminate_sessions(src: &Client, spared: &[String]) -> Result<i64> {
    macro_rules! other_sessions {
        () => {
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND backend_type = 'client backend' AND NOT (usename = ANY($1))"
        };
    }
    let terminated: i64 = src
        .query_one(concat!("SELECT count(pg_terminate_backend(pid)) ", other_sessions!()), &[&spared])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("terminating the application's sessions on the source", e))?;
    let started = Instant::now();
    loop {
        let left: i64 = src
            .query_one(concat!("SELECT count(*) ", other_sessions!()), &[&spared])
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::server("watching the source's sessions", e))?;
        if left == 0 {
            return Ok(terminated);
        }
        if started.elapsed() > TERMINATE_WAIT {
            return Err(Error::new(ErrorKind::Precondition, format!("{left} session(s) on the source did not end within {} s", TERMINATE_WAIT.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new session must start read-only, and no session but the spared ones may
/// remain (a superuser application could reconnect: its sessions start read-only
/// too, but a superuser can override that, so applications should not run as one).
async fn verify(source: &ConnSpec, src: &Client, spared: &[String]) -> Result<()> {
    let probe = pgferry_pg::connect(source).await?;
    match probe.batch_execute("CREATE TEMPORARY TABLE pgferry_fence_probe (x int)").await {
        Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "25006") => {}
        Err(e) => return Err(Error::server("verifying the fence with a write attempt", e)),
        Ok(()) => {
            return Err(Error::new(ErrorKind::Precondition, "the fence did not hold: a new session on the source could still write")
                .with_hint("a setting overrides default_transaction_read_only for this role (ALTER ROLE ... SET); remove it and retry"))
        }
    }
    let left: i64 = src
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'
             AND NOT (usename = ANY($1))",
            &[&spared],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("verifying the fence", e))?;
    if left > 0 {
        return Err(Error::new(ErrorKind::Precondition, format!("{left} session(s) reconnected to the source during the fence"))
            .with_hint("an application that connects as a superuser is not stopped by the connection limit: stop it, or name a role it does not use"));
    }
    Ok(())
}

async fn exec(client: &Client, sql: Sql, doing: &str) -> Result<()> {
    client.batch_execute(sql.as_str()).await.map_err(|e| Error::server(doing, e))
}

async fn query_one<T: for<'a> tokio_postgres::types::FromSql<'a>>(client: &Client, sql: &str) -> Result<T> {
    client
        .query_one(sql, &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the source", e))
}
