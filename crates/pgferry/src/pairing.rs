//! The pairing check's I/O: observe both sides and the target's journal, then let
//! [`pgferry_core::pairing::judge`] decide whether this source and this target are
//! one migration's pair. Every command that acts on both sides calls [`require`]
//! (directly, or through [`crate::lifecycle::guard`]) before it changes anything:
//! reading changes nothing, so a refusal leaves both servers as they were.

use pgferry_core::names::MigrationName;
use pgferry_core::pairing::{judge, Need, PairFacts, Paired, TargetJournal};
use pgferry_core::preflight::DatabaseIdentity;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// A pair found fit, and what it was judged on.
#[derive(Clone, Debug)]
pub struct Pair {
    pub paired: Paired,
    pub facts: PairFacts,
}

impl Pair {
    /// The source's identity, as the journal records it.
    pub fn source(&self) -> &DatabaseIdentity {
        &self.facts.source
    }
}

/// Refuses (exit 1, nothing changed) unless `dst` is the target `src` is migrated
/// into, as `command` needs it.
pub async fn require(src: &Client, dst: &Client, migration: &MigrationName, command: &str, need: Need) -> Result<Pair> {
    // A newer pgferry's state could not be read right: refused before anything else.
    crate::state::refuse_newer(src, pgferry_core::state::Side::Source).await?;
    crate::state::refuse_newer(dst, pgferry_core::state::Side::Target).await?;
    let facts = observe(src, dst, migration).await?;
    match judge(migration, command, need, &facts) {
        Ok(paired) => {
            if paired == Paired::Unrecorded {
                tracing::debug!(
                    "migration {migration}: the target's journal (an earlier release's) records no source identity"
                );
            }
            Ok(Pair { paired, facts })
        }
        Err(mismatch) => {
            let mut message = format!("{}: {}", mismatch.what, mismatch.why);
            let mut hint = mismatch.fix;
            // The source's own record of a switch: the operator must know the old
            // source stays fenced and what the right target's cutover will ask.
            if let Some(at) = crate::fence::switch_started_at(src, migration).await? {
                message.push_str(&format!(
                    "; the source records that migration {migration}'s switch command started at {at}: the old source stays fenced"
                ));
                hint.push_str("; given the right target, pgferry cutover finishes or, on the operator's word (--switch-ran or --switch-did-not-run), rolls back");
            }
            Err(Error::new(ErrorKind::Refused, format!("{message}; nothing was changed")).with_hint(hint))
        }
    }
}

/// Both sides' identities and what the target's journal says of this migration.
pub async fn observe(src: &Client, dst: &Client, migration: &MigrationName) -> Result<PairFacts> {
    let (source, target, target_shows_source_session) = crate::check::identities(src, dst).await?;
    let source_seed_token = crate::seed::marker::read(src, migration).await?.map(|m| m.token);
    Ok(PairFacts {
        source,
        target,
        target_shows_source_session,
        journal: journal(dst, migration).await?,
        source_seed_token,
    })
}

/// The target's record of this migration's source: the migration's row, else the
/// cutover's (which `cleanup` keeps), else an inherited seed marker. Columns an
/// earlier release's table lacks read as NULL (through `to_jsonb`).
async fn journal(dst: &Client, migration: &MigrationName) -> Result<TargetJournal> {
    let fail = |e| Error::server("reading the target's journal", e);
    let tables: (bool, bool) = dst
        .query_one(
            "SELECT to_regclass('pgferry.migration') IS NOT NULL, to_regclass('pgferry.cutover') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .map_err(fail)?;
    let identity = |row: &tokio_postgres::Row| match (row.get::<_, Option<String>>(0), row.get::<_, Option<u32>>(1)) {
        (Some(system_identifier), Some(database_oid)) => Some(DatabaseIdentity { system_identifier, database_oid }),
        _ => None,
    };
    let migration_row = match tables.0 {
        true => dst
            .query_opt(
                "SELECT to_jsonb(t) ->> 'source_system_identifier', (to_jsonb(t) ->> 'source_database_oid')::oid,
                        to_jsonb(t) ->> 'slot_name'
                 FROM pgferry.migration t WHERE name = $1",
                &[&migration.as_str()],
            )
            .await
            .map_err(fail)?,
        false => None,
    };
    let cutover_row = match tables.1 {
        true => dst
            .query_opt(
                "SELECT to_jsonb(c) ->> 'source_system_identifier', (to_jsonb(c) ->> 'source_database_oid')::oid
                 FROM pgferry.cutover c WHERE migration = $1",
                &[&migration.as_str()],
            )
            .await
            .map_err(fail)?,
        false => None,
    };
    // The migration's row, its identity completed by the cutover's row where an
    // earlier release's migration row lacks it; else the cutover's row alone.
    let recorded = cutover_row.as_ref().and_then(identity);
    match (&migration_row, &cutover_row) {
        (Some(row), _) => {
            return Ok(TargetJournal::Journaled { source: identity(row).or(recorded), slot_name: row.get(2) })
        }
        (None, Some(_)) => return Ok(TargetJournal::Journaled { source: recorded, slot_name: None }),
        (None, None) => {}
    }
    if let Some(marker) = crate::seed::marker::read(dst, migration).await? {
        return Ok(TargetJournal::SeedCopy { token: marker.token });
    }
    let others = match tables.0 {
        true => dst
            .query("SELECT name FROM pgferry.migration ORDER BY 1", &[])
            .await
            .map_err(fail)?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        false => Vec::new(),
    };
    Ok(TargetJournal::Absent { others })
}
