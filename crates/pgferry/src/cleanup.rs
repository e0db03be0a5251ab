//! `pgferry abort` and `pgferry cleanup`: remove exactly what one migration made,
//! found by its deterministic names, and nothing else.
//!
//! On the source: the slot `pgferry_<name>` (only when it belongs to this
//! database), the publications `pgferry_<name>` and `pgferry_<name>__insert_only`,
//! and a seeded migration's row in `pgferry.seed_marker`. `abort` lowers a recorded
//! fence first, so every privilege and setting is back as it was; `cleanup` after
//! a cutover keeps the old source fenced, and keeps the saved settings with it
//! until `abort --force` lifts it. On the target: this migration's journal rows,
//! and pgferry's schema once no migration has rows left in it. Other migrations'
//! objects and anything not named by pgferry are never touched. Both commands can
//! be rerun: each step skips what is already gone.
//!
//! Each is refused where it would break the promise of the cutover
//! ([`pgferry_core::lifecycle::allowed`], through [`crate::lifecycle`]): `abort` once the application was
//! switched (it would unfence the old source), `cleanup` before the cutover (it
//! would end a live migration while its target is left half made), either while a
//! cutover's switch has an unknown outcome.

use pgferry_core::lifecycle::{allowed_without_target, Command, Refusal};
use pgferry_core::names::{state_schema, MigrationName, STATE_SCHEMA};
use pgferry_core::sql::{Ident, QualifiedName, Sql};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::fence;

/// What was removed.
#[derive(Debug, Default, Serialize)]
pub struct CleanupReport {
    pub fence_settings_restored: usize,
    pub dropped_slot: bool,
    pub dropped_publications: Vec<String>,
    /// DDL capture's event triggers and functions on the source.
    pub removed_ddl_capture: bool,
    /// Tables given REPLICA IDENTITY FULL by `--replica-identity-full`, set back.
    pub replica_identity_restored: Vec<String>,
    /// A seeded migration's marker row on the source.
    pub dropped_seed_marker: bool,
    pub journal_rows_deleted: u64,
    pub dropped_state_schema: bool,
    /// `abort --target-lost` only: tables of the source with REPLICA IDENTITY FULL
    /// and no key. `--replica-identity-full` may have set them, but its journal
    /// was on the lost target, so which ones (if any) cannot be told: they are
    /// left as they are, named for the operator to set back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replica_identity_full_unverified: Vec<String>,
}

/// What to do with a fence that is still up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fence {
    /// Lift it (abort: the source goes back to the application).
    Lift,
    /// Keep it and its saved settings (cleanup after the cutover).
    Keep,
}

/// Removes the migration's objects on both sides; `force` is the operator's word
/// to go on where the lifecycle says no.
pub async fn remove(
    source: &ConnSpec,
    target: &ConnSpec,
    migration: &MigrationName,
    fence_policy: Fence,
    force: bool,
) -> Result<CleanupReport> {
    // No cutover, follow or start of this migration may run meanwhile: abort would
    // lift a fence under a cutover that then reports success.
    let src = pgferry_pg::connect(source).await?;
    let runner = crate::start::RunnerLock::take(target, migration).await;
    let (_runner, dst) = match runner {
        Ok(runner) => match pgferry_pg::connect(target).await {
            Ok(dst) => (runner, dst),
            Err(e) => return Err(fence::unreachable_target(&src, migration, e.into()).await),
        },
        Err(e) if e.kind == ErrorKind::Connection => return Err(fence::unreachable_target(&src, migration, e).await),
        Err(e) => return Err(e),
    };
    let command = match fence_policy {
        Fence::Lift => Command::Abort { force },
        Fence::Keep => Command::Cleanup { force },
    };
    // A rerun after a finished run: nothing of the migration is left on either side.
    let facts = crate::pairing::observe(&src, &dst, migration).await?;
    if pgferry_core::pairing::already_removed(&facts, source_holds_any(&src, migration).await?) {
        warn_of_other_names(&src, migration).await?;
        return Ok(CleanupReport::default());
    }
    // The target must be this source's: the source itself, or another migration's
    // target, would have the live migration's objects dropped or its fence lifted.
    crate::lifecycle::guard(&src, &dst, migration, command).await?;
    let slot = crate::slot::resolve(&src, &dst, migration).await?;
    crate::copy::ensure_slot_is_ours(&src, migration, &slot).await?;
    fence::allow_writes(&src).await?;
    let restored = match fence_policy {
        Fence::Lift => {
            if crate::outside_fence::recorded(&src, migration).await?.is_some() {
                if !force {
                    return Err(Error::new(ErrorKind::Refused, "an outside fence raised by --fence-command may still be up; nothing was changed")
                        .with_hint("rerun pgferry cutover with the same --fence-command and --unfence-command: it rolls back and lifts it; or lift it yourself and rerun abort with --force"));
                }
                crate::outside_fence::forget(&src, migration).await?;
            }
            let lowered = fence::lower(&src, migration).await?;
            fence::forget_switch(&src, migration).await?;
            lowered
        }
        Fence::Keep => 0,
    };
    let mut report = CleanupReport { fence_settings_restored: restored, ..Default::default() };
    report.dropped_slot = drop_slot(&src, &slot).await?;
    report.dropped_publications = crate::copy::drop_publications(&src, migration).await?;
    report.removed_ddl_capture = crate::ddl::remove(&src, migration).await?;
    report.replica_identity_restored = crate::copy::restore_replica_identity(&src, &dst, migration).await?;
    report.dropped_seed_marker = crate::seed::forget_marker(&src, migration).await?;
    report.journal_rows_deleted = delete_journal_rows(&dst, migration, fence_policy).await?;
    report.dropped_state_schema = drop_state_schema_if_unused(&dst).await?;
    Ok(report)
}

/// `abort --target-lost`: the migration's target is gone (its server failed, or
/// it was dropped), so its journal cannot pair the source with it. What the
/// source itself records decides: its own slot (named with this database's OID),
/// publications, DDL capture, seed marker and fence journal are removed, the fence
/// lowered exactly as its journal says, unless the source records that a switch
/// started ([`allowed_without_target`]: then only `force` goes on). Nothing on
/// any target is touched. Another pgferry process on the source database (a
/// `follow` streaming, a copy whose slot is still idle) stops it before anything
/// changes. A rerun finds nothing left and changes nothing.
pub async fn remove_without_target(source: &ConnSpec, migration: &MigrationName, force: bool) -> Result<CleanupReport> {
    let src = pgferry_pg::connect(source).await?;
    if !source_holds_any(&src, migration).await? && crate::seed::marker::read(&src, migration).await?.is_none() {
        warn_of_other_names(&src, migration).await?;
        return Ok(CleanupReport::default());
    }
    refuse_other_pgferry_sessions(&src).await?;
    let record = crate::lifecycle::record(&src, None, migration).await?;
    allowed_without_target(migration.as_str(), &record, force).map_err(|Refusal { reason, instead }| {
        Error::new(ErrorKind::Refused, format!("{reason}; nothing was changed")).with_hint(instead)
    })?;
    let slots = own_slots(&src, migration).await?;
    for slot in &slots {
        crate::copy::ensure_slot_is_ours(&src, migration, slot).await?;
        refuse_active_slot(&src, slot).await?;
    }
    fence::allow_writes(&src).await?;
    if crate::outside_fence::recorded(&src, migration).await?.is_some() {
        if !force {
            return Err(Error::new(ErrorKind::Refused, "an outside fence raised by --fence-command may still be up; nothing was changed")
                .with_hint("lift it yourself (pgferry aws fence --lift, or your --unfence-command), then rerun abort --target-lost with --force"));
        }
        crate::outside_fence::forget(&src, migration).await?;
    }
    let mut report =
        CleanupReport { fence_settings_restored: fence::lower(&src, migration).await?, ..Default::default() };
    fence::forget_switch(&src, migration).await?;
    for slot in &slots {
        report.dropped_slot |= drop_slot(&src, slot).await?;
    }
    report.dropped_publications = crate::copy::drop_publications(&src, migration).await?;
    report.removed_ddl_capture = crate::ddl::remove(&src, migration).await?;
    report.dropped_seed_marker = crate::seed::forget_marker(&src, migration).await?;
    report.replica_identity_full_unverified = crate::copy::keyless_tables_with_full_identity(&src).await?;
    Ok(report)
}

/// Whether the source database holds anything of `migration` that
/// `abort --target-lost` removes (its slot, publications, DDL capture, a fence,
/// a seed marker): a database the target server lacks may still have a slot
/// keeping the source's WAL.
pub async fn source_holds(source: &ConnSpec, migration: &MigrationName) -> Result<bool> {
    let src = pgferry_pg::connect(source).await?;
    Ok(source_holds_any(&src, migration).await? || crate::seed::marker::read(&src, migration).await?.is_some())
}

/// Nothing of `migration` is left anywhere: a rerun of a finished removal (a
/// success), or a misspelt `--name`. When the source holds another migration's
/// objects (a fence, a slot), "nothing to do" alone would leave an operator who
/// misspelt the name locked out without a word: they are named.
async fn warn_of_other_names(src: &Client, migration: &MigrationName) -> Result<()> {
    let fenced: Vec<String> = match fence::journal_exists(src).await? {
        true => src
            .query("SELECT DISTINCT migration FROM pgferry.source_fence ORDER BY 1", &[])
            .await
            .map_err(|e| Error::server("reading the fence journal on the source", e))?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        false => Vec::new(),
    };
    let slots: Vec<String> = src
        .query(
            "SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database() AND slot_name LIKE 'pgferry\\_%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if fenced.is_empty() && slots.is_empty() {
        return Ok(());
    }
    let mut held = Vec::new();
    if !fenced.is_empty() {
        held.push(format!("the fence of migration(s) {}", fenced.join(", ")));
    }
    if !slots.is_empty() {
        held.push(format!("the slot(s) {}", slots.join(", ")));
    }
    tracing::warn!(
        "nothing of migration {migration} is left on the source or the target, but this source database holds {}: if you meant that migration, give its name with --name",
        held.join(" and ")
    );
    Ok(())
}

/// Another pgferry process working on this source database (a copy or a start
/// of this migration, whose slot is idle until change capture starts) would be
/// broken by an abort that cannot ask the lost target's runner lock: refused.
async fn refuse_other_pgferry_sessions(src: &Client) -> Result<()> {
    // A process that has just ended leaves its sessions for a moment.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let sessions = other_pgferry_sessions(src).await?;
        if sessions.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("other pgferry sessions are connected to the source database ({}): a copy, start or follow of this migration may be running; nothing was changed", sessions.join(", ")),
            )
            .with_hint("stop that pgferry process first (Ctrl-C or SIGTERM), then rerun abort --target-lost"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn other_pgferry_sessions(src: &Client) -> Result<Vec<String>> {
    Ok(src
        .query(
            "SELECT format('pid %s (%s, since %s)', pid, coalesce(client_addr::text, 'local socket'), backend_start::timestamp(0))
             FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = current_setting('application_name')
               AND pid <> pg_backend_pid() ORDER BY backend_start",
            &[],
        )
        .await
        .map_err(|e| Error::server("looking for other pgferry sessions on the source", e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The slots of this migration on this database: as the seed marker or this
/// release names it, and an earlier release's name.
async fn own_slots(src: &Client, migration: &MigrationName) -> Result<Vec<String>> {
    let candidates = vec![crate::slot::on_source(src, migration).await?, migration.legacy_slot()];
    src.query(
        "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name = ANY($1) AND database = current_database() ORDER BY 1",
        &[&candidates],
    )
    .await
    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
    .map_err(|e| Error::server("reading the source's replication slots", e))
}

async fn refuse_active_slot(src: &Client, slot: &str) -> Result<()> {
    let active: bool = src
        .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?
        .is_some_and(|r| r.get(0));
    match active {
        false => Ok(()),
        true => Err(Error::new(ErrorKind::Refused, format!("the replication slot {slot} is in use: a pgferry process still streams this migration; nothing was changed"))
            .with_hint("stop it first (its target is not lost, then: run pgferry abort with --target instead)")),
    }
}

/// Whether the source still holds anything of the migration: its slot (as this
/// release or an earlier one names it), its publications, its DDL capture, rows
/// in its fence journal.
async fn source_holds_any(src: &Client, migration: &MigrationName) -> Result<bool> {
    let slots = vec![migration.slot(crate::slot::database_oid(src).await?), migration.legacy_slot()];
    let publications = [migration.publication(), migration.insert_only_publication()];
    let publications: Vec<&str> = publications.iter().map(Ident::as_str).collect();
    let holds: bool = src
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ANY($1) AND database = current_database())
                 OR EXISTS (SELECT 1 FROM pg_publication WHERE pubname = ANY($2))
                 OR EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $3)",
            &[&slots, &publications, &migration.ddl_trigger().as_str()],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking for the migration's objects on the source", e))?;
    if holds || !fence::journal_exists(src).await? {
        return Ok(holds);
    }
    src.query_one("SELECT EXISTS (SELECT 1 FROM pgferry.source_fence WHERE migration = $1)", &[&migration.as_str()])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the fence journal on the source", e))
}

async fn drop_slot(src: &Client, slot: &str) -> Result<bool> {
    let active: Option<bool> = src
        .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?
        .map(|r| r.get(0));
    match active {
        None => Ok(false),
        Some(true) => Err(Error::new(ErrorKind::Precondition, format!("the replication slot {slot} is in use"))
            .with_hint("stop the pgferry process that streams this migration first")),
        Some(false) => src
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map(|_| true)
            .map_err(|e| Error::server("dropping the replication slot", e)),
    }
}

/// Deletes the migration's rows from pgferry's journal tables: those keyed by a
/// `migration` column, and `pgferry.migration` itself (keyed by `name`). The
/// cutover's row stays while the old source stays fenced (`cleanup`): it is the
/// record that the application was switched, so no later command unfences it.
async fn delete_journal_rows(dst: &Client, migration: &MigrationName, fence_policy: Fence) -> Result<u64> {
    let tables = dst
        .query(
            "SELECT c.relname::text, a.attname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'fence' AND NOT (c.relname = 'cutover' AND $2)
               AND (a.attname = 'migration' OR (c.relname = 'migration' AND a.attname = 'name'))",
            &[&STATE_SCHEMA, &(fence_policy == Fence::Keep)],
        )
        .await
        .map_err(|e| Error::server("listing pgferry's journal tables", e))?;
    let mut deleted = 0;
    for row in &tables {
        let table = QualifiedName::new(state_schema(), Ident::from_catalog(row.get::<_, String>(0)));
        let column = Ident::from_catalog(row.get::<_, String>(1));
        let sql = Sql::new("DELETE FROM ").name(&table).push(" WHERE ").ident(&column).push(" = $1");
        deleted += dst
            .execute(sql.as_str(), &[&migration.as_str()])
            .await
            .map_err(|e| Error::server(&format!("deleting journal rows from {table}"), e))?;
    }
    Ok(deleted)
}

/// Drops pgferry's schema on the target when none of its tables holds a row
/// (the state's version aside: it describes the tables, not a migration).
async fn drop_state_schema_if_unused(dst: &Client) -> Result<bool> {
    let tables = dst
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> $2",
            &[&STATE_SCHEMA, &crate::state::VERSION_TABLE],
        )
        .await
        .map_err(|e| Error::server("listing pgferry's journal tables", e))?;
    let schema_exists: bool = dst
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&STATE_SCHEMA])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking for pgferry's schema", e))?;
    if !schema_exists {
        return Ok(false);
    }
    for row in &tables {
        let table = QualifiedName::new(state_schema(), Ident::from_catalog(row.get::<_, String>(0)));
        let sql = Sql::new("SELECT EXISTS (SELECT 1 FROM ").name(&table).push(")");
        let used: bool = dst
            .query_one(sql.as_str(), &[])
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::server("reading the journal", e))?;
        if used {
            return Ok(false);
        }
    }
    let sql = Sql::new("DROP SCHEMA ").ident(&state_schema()).push(" CASCADE");
    dst.batch_execute(sql.as_str()).await.map_err(|e| Error::server("dropping pgferry's schema on the target", e))?;
    Ok(true)
}
