//! The one home of pgferry's state: every `pgferry.*` table on a migration's
//! source and target is made here, by numbered upgrades, and nowhere else.
//!
//! Each side records the last upgrade it received in `pgferry.state_version`
//! (one row per [`Side`]: a database can be one migration's source and another's
//! target). [`ensure`] is called before a side's state is first written: it reads
//! the recorded version and lets [`pgferry_core::state::decide`] say what to do.
//! A current state costs one read and no DDL, so nothing ever waits behind a
//! reader's lock (validate holds snapshots open on the target while it reads the
//! journal); a state behind this release is upgraded in one transaction,
//! serialized by an advisory lock so that two processes never upgrade at once; a
//! state newer than this release is refused before anything is read or written
//! ([`refuse_newer`], called by every command that pairs a source and a target).
//!
//! Upgrade 1 of each side is the whole state as this release uses it, written
//! only with `IF NOT EXISTS`, so that it also brings the state of a release from
//! before the upgrades were numbered up to date in place. A later change of the
//! state is a new numbered file here, appended to [`TARGET`] or [`SOURCE`]; a
//! shipped upgrade is never edited. The per-migration objects pgferry makes on
//! the source (publications, the slot, DDL capture's functions and event
//! triggers) are not state: each is made and dropped by its own module.
//! See [Transactions](https://www.postgresql.org/docs/current/tutorial-transactions.html):
//! DDL commits or rolls back with the version row.

use pgferry_core::sql::Sql;
use pgferry_core::state::{decide, Decision, Side};
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// The target's upgrades, in order: upgrade `n` is `TARGET[n - 1]`.
const TARGET: &[&str] = &[
    include_str!("target_1.sql"),
    include_str!("target_2.sql"),
    include_str!("target_3.sql"),
    include_str!("target_4.sql"),
    include_str!("target_5.sql"),
];

/// The source's upgrades, in order.
const SOURCE: &[&str] = &[include_str!("source_1.sql")];

const VERSION_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS pgferry;
CREATE TABLE IF NOT EXISTS pgferry.state_version (
    side text PRIMARY KEY CHECK (side IN ('source', 'target')),
    version integer NOT NULL,
    release text NOT NULL,
    upgraded_at timestamptz NOT NULL DEFAULT now()
)";

/// The name of the table that records the versions (never a migration's journal).
pub(crate) const VERSION_TABLE: &str = "state_version";

fn upgrades(side: Side) -> &'static [&'static str] {
    match side {
        Side::Source => SOURCE,
        Side::Target => TARGET,
    }
}

/// The last upgrade this release knows for `side`.
pub fn known(side: Side) -> u32 {
    upgrades(side).len() as u32
}

/// Brings `side`'s state on `client` up to this release, or refuses a newer one.
pub async fn ensure(client: &Client, side: Side) -> Result<()> {
    match decide(stored(client, side).await?, known(side)) {
        Decision::Current => Ok(()),
        Decision::Newer { stored, known } => Err(newer(side, stored, known)),
        Decision::Upgrade { .. } => upgrade(client, side).await,
    }
}

/// The statements that make `side`'s state current, for a script an operator
/// runs (`pgferry target prepare --sql-only`): every upgrade (each only adds
/// what is missing) and the version, never lowering a newer one.
pub fn script(side: Side) -> Vec<Sql> {
    let mut statements = vec![Sql::new(VERSION_SQL)];
    statements.extend(upgrades(side).iter().map(|sql| Sql::new(sql)));
    statements.push(
        Sql::new("INSERT INTO pgferry.state_version (side, version, release) VALUES (")
            .literal(side.as_str())
            .push(", ")
            .literal(&known(side).to_string())
            .push("::integer, ")
            .literal(env!("CARGO_PKG_VERSION"))
            .push(") ON CONFLICT (side) DO NOTHING"),
    );
    statements
}

/// Refuses (exit 1, nothing changed) a state recorded by a newer pgferry; reads only.
pub async fn refuse_newer(client: &Client, side: Side) -> Result<()> {
    match decide(stored(client, side).await?, known(side)) {
        Decision::Newer { stored, known } => Err(newer(side, stored, known)),
        Decision::Current | Decision::Upgrade { .. } => Ok(()),
    }
}

fn newer(side: Side, stored: u32, known: u32) -> Error {
    Error::new(
        ErrorKind::Refused,
        format!(
            "the {side}'s pgferry state is at upgrade {stored}, newer than this pgferry {} knows (upgrade {known}): a newer pgferry worked on this migration; nothing was changed",
            env!("CARGO_PKG_VERSION")
        ),
    )
    .with_hint("run the pgferry release that last worked on this migration, or a newer one")
}

/// The recorded version of `side`, `None` when none is.
async fn stored(client: &Client, side: Side) -> Result<Option<u32>> {
    let fail = |e| Error::server(&format!("reading pgferry's state version on the {side}"), e);
    let exists: bool =
        client.query_one("SELECT to_regclass('pgferry.state_version') IS NOT NULL", &[]).await.map_err(fail)?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT version FROM pgferry.state_version WHERE side = $1", &[&side.as_str()])
        .await
        .map_err(fail)?;
    Ok(row.map(|r| r.get::<_, i32>(0) as u32))
}

/// Runs the upgrades `side` lacks and records the version, in one transaction
/// taken under an advisory lock; decides again under the lock, since another
/// process may have upgraded meanwhile.
async fn upgrade(client: &Client, side: Side) -> Result<()> {
    let doing = format!("bringing pgferry's state on the {side} up to date");
    let fail = |e| Error::server(&doing, e);
    client
        .batch_execute(&format!(
            "BEGIN; {VERSION_SQL}; SELECT pg_advisory_xact_lock(hashtext('pgferry'), hashtext('state_version'))"
        ))
        .await
        .map_err(fail)?;
    let outcome = async {
        let (from, to) = match decide(stored(client, side).await?, known(side)) {
            Decision::Current => return Ok(()),
            Decision::Newer { stored, known } => return Err(newer(side, stored, known)),
            Decision::Upgrade { from, to } => (from, to),
        };
        for sql in &upgrades(side)[from as usize - 1..to as usize] {
            client.batch_execute(sql).await.map_err(fail)?;
        }
        client
            .execute(
                "INSERT INTO pgferry.state_version (side, version, release) VALUES ($1, $2, $3)
                 ON CONFLICT (side) DO UPDATE SET version = excluded.version, release = excluded.release, upgraded_at = now()",
                &[&side.as_str(), &(to as i32), &env!("CARGO_PKG_VERSION")],
            )
            .await
            .map_err(fail)?;
        Ok(())
    }
    .await;
    let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await.map_err(fail);
    outcome.and(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_upgrade_only_adds_what_is_missing_so_an_earlier_releases_state_is_taken_as_it_is() {
        for sql in [TARGET[0], SOURCE[0]] {
            for statement in sql.split(';').map(str::trim).filter(|s| s.starts_with("CREATE")) {
                assert!(statement.contains("IF NOT EXISTS"), "{statement}");
            }
        }
        for sql in TARGET.iter().chain(SOURCE) {
            assert!(!sql.contains("CREATE SCHEMA"), "the schema is made with the version table");
        }
    }
}
