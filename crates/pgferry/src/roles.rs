//! `pgferry roles`: the source's roles made on the target, with the operator's
//! consent (the command itself; `--dry-run` shows it first). The rule is
//! `pgferry_core::roles::plan`; this module reads both catalogs and runs the
//! plan's statements in one transaction on the target, so a failure leaves the
//! target as it was. Password hashes are never read: the report names the login
//! roles whose password the operator sets.

use pgferry_core::roles::{plan, Membership, PlannedRole, RoleSetting, Scope, SourceRole, Target};
use pgferry_core::sql::Sql;
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// What `pgferry roles` did (or, with `dry_run`, would do).
#[derive(Debug, Serialize)]
pub struct RolesReport {
    pub dry_run: bool,
    pub created: Vec<PlannedRole>,
    /// The statements run (or to run), in order; no password among them.
    pub statements: Vec<String>,
    pub existing: Vec<String>,
    pub left_out: Vec<String>,
    pub not_carried: Vec<String>,
}

pub async fn roles(source: &ConnSpec, target: &ConnSpec, dry_run: bool) -> Result<RolesReport> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let (roles, memberships, settings) = read_source(&src).await?;
    let planned = plan(&roles, &memberships, &settings, &read_target(&dst).await?);
    let mut statements: Vec<String> = planned.statements().map(|s| s.as_str().to_string()).collect();
    let mut not_carried = planned.not_carried;
    if !dry_run && !statements.is_empty() {
        let refused = run(&dst, &planned.creates, planned.grants.iter().chain(&planned.settings)).await?;
        statements.retain(|s| !refused.iter().any(|(r, _)| r == s));
        not_carried
            .extend(refused.into_iter().map(|(statement, why)| format!("{statement}: refused by the target ({why})")));
    }
    Ok(RolesReport {
        dry_run,
        created: planned.create,
        statements,
        existing: planned.existing,
        left_out: planned.left_out,
        not_carried,
    })
}

/// One transaction: every `CREATE ROLE` or none; a membership or setting the
/// target refuses (its user may not grant that role or set that parameter) is
/// rolled back alone and returned with the server's reason.
async fn run<'a>(dst: &Client, creates: &[Sql], rest: impl Iterator<Item = &'a Sql>) -> Result<Vec<(String, String)>> {
    let doing = "creating the roles on the target";
    dst.batch_execute("BEGIN").await.map_err(|e| Error::server(doing, e))?;
    let outcome = async {
        for statement in creates {
            dst.batch_execute(statement.as_str()).await.map_err(|e| {
                Error::server(&format!("{doing} ({})", statement.as_str()), e)
                    .with_hint("nothing was created (one transaction); fix the cause (the target's user needs CREATEROLE, and CREATEDB to give it) and rerun")
            })?;
        }
        let mut refused = Vec::new();
        for statement in rest {
            dst.batch_execute("SAVEPOINT pgferry_role").await.map_err(|e| Error::server(doing, e))?;
            match dst.batch_execute(statement.as_str()).await {
                Ok(()) => {}
                Err(e) => {
                    let why = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string());
                    dst.batch_execute("ROLLBACK TO SAVEPOINT pgferry_role").await.map_err(|e| Error::server(doing, e))?;
                    refused.push((statement.as_str().to_string(), why));
                }
            }
        }
        Ok::<_, Error>(refused)
    }
    .await;
    let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = dst.batch_execute(end).await.map_err(|e| Error::server(doing, e));
    let refused = outcome?;
    ended?;
    Ok(refused)
}

/// Roles, memberships and per-role settings of the source (no password).
async fn read_source(src: &Client) -> Result<(Vec<SourceRole>, Vec<Membership>, Vec<RoleSetting>)> {
    let fail = |e| Error::server("reading the source's roles", e);
    Ok((
        read_roles(src).await.map_err(fail)?,
        read_memberships(src).await.map_err(fail)?,
        read_settings(src).await.map_err(fail)?,
    ))
}

/// The server's roles but the bootstrap superuser and the predefined roles
/// (OIDs below 16384), VALID UNTIL in UTC so that two servers' agree.
pub(crate) async fn read_roles(c: &Client) -> std::result::Result<Vec<SourceRole>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
                    rolbypassrls, rolconnlimit,
                    CASE WHEN isfinite(rolvaliduntil)
                         THEN rtrim(rtrim(to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '0'), '.')
                              || '+00'
                         ELSE rolvaliduntil::text END,
                    oid
             FROM pg_roles WHERE oid >= 16384 ORDER BY 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| SourceRole {
        name: r.get(0),
        superuser: r.get(1),
        inherit: r.get(2),
        create_role: r.get(3),
        create_db: r.get(4),
        login: r.get(5),
        replication: r.get(6),
        bypass_rls: r.get(7),
        connection_limit: r.get(8),
        valid_until: r.get(9),
        oid: r.get(10),
    })
    .collect())
}

/// The memberships of those roles, one per role and member, with every grantor
/// (a grantor dropped before PostgreSQL 16 tracked them is left out).
pub(crate) async fn read_memberships(c: &Client) -> std::result::Result<Vec<Membership>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT g.rolname::text, m.rolname::text, bool_or(a.admin_option),
                array_remove(array_agg(DISTINCT b.rolname::text ORDER BY b.rolname::text), NULL)
             FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
             LEFT JOIN pg_roles b ON b.oid = a.grantor
             WHERE m.oid >= 16384 GROUP BY 1, 2 ORDER BY 2, 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| Membership { role: r.get(0), member: r.get(1), admin: r.get(2), grantors: r.get(3) })
    .collect())
}

/// Every per-role setting, scoped to every database, this one or another.
pub(crate) async fn read_settings(c: &Client) -> std::result::Result<Vec<RoleSetting>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT r.rolname::text, s.setdatabase = 0, d.datname = current_database(), d.datname::text, c.setting
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) WITH ORDINALITY c(setting, n)
             ORDER BY 1, 2 DESC, 4, c.n",
        &[],
    )
    .await?
    .iter()
    .map(|r| RoleSetting {
        role: r.get(0),
        scope: match (r.get::<_, bool>(1), r.get::<_, Option<bool>>(2)) {
            (true, _) => Scope::EveryDatabase,
            (false, Some(true)) => Scope::ThisDatabase,
            (false, _) => Scope::OtherDatabase(r.get::<_, Option<String>>(3).unwrap_or_default()),
        },
        setting: r.get(4),
    })
    .collect())
}

async fn read_target(dst: &Client) -> Result<Target> {
    let fail = |e| Error::server("reading the target's roles", e);
    let roles = dst.query("SELECT rolname::text FROM pg_roles", &[]).await.map_err(fail)?;
    let me = dst
        .query_one(
            "SELECT rolsuper, rolreplication, rolbypassrls, current_database()::text,
                    current_setting('server_version_num')::int
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(fail)?;
    Ok(Target {
        roles: roles.iter().map(|r| r.get(0)).collect(),
        superuser: me.get(0),
        replication: me.get(1),
        bypass_rls: me.get(2),
        database: me.get(3),
        server_version_num: me.get(4),
    })
}
