//! `pgferry validate --changed-only`: re-compare only the rows change capture
//! touched since they were last found equal (`pgferry.touched_keys`, written by apply
//! in each batch's transaction), which makes the cutover's exact check after the
//! drain take seconds instead of a full pass.
//!
//! Keyed tables are compared key by key (groups of [`KEYS_PER_CHUNK`] keys, each
//! side read under its exported snapshot); a table marked whole (truncated, or
//! without a usable key) is compared in full. When everything is equal, the
//! touched rows up to the applied position the target's snapshot held are
//! deleted: they are checked. Anything touched later keeps its row.
//!
//! `rehearse` and the cutover's exact check call this same function and read
//! its verdict by the same rule (`pgferry_core::validation`): a rehearsal under
//! live writes may be NOT PROVEN (rows written after its drain are lag), never
//! DIFFERENT where the fenced cutover finds the rows equal.

use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use super::live::Live;
use super::tables::{self, ValidatedTable};
use super::{compare, exists, range_chunks, verdict, Chunk, Scope, Sides, ValidateOptions, ValidationReport};
use crate::apply::touched::{self, TouchedRows};
use crate::error::{Error, Result};
use crate::events::{Event, Events, Phase};

/// Keys compared by one query.
const KEYS_PER_CHUNK: usize = 5_000;

/// Whether a changed-rows check journals its outcome.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Recording {
    /// Recorded for `status` and the go/no-go; rows found equal marked checked.
    Record,
    /// A rehearsal's estimate under live writes: nothing written.
    Discard,
}

/// What a changed-rows check knows of the source's changes not applied yet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unapplied {
    /// Unknown: they are counted from the slot (or seen live), so a difference
    /// they may explain is NOT PROVEN rather than DIFFERENT.
    Counted,
    /// There are none, and the caller proves it right after the check: the
    /// cutover's, on a fenced and drained source, checks that nothing was
    /// written since the drain. Counting them would decode the WAL once more
    /// inside the downtime.
    ProvenByCaller,
}

/// Both servers, and a session of pgferry's on each (the caller's: the
/// cutover's own, inside its fence, so that the check opens no more than its
/// workers). The check's snapshot transactions open and end on them.
#[derive(Clone, Copy)]
pub struct Sessions<'a> {
    pub source: &'a ConnSpec,
    pub target: &'a ConnSpec,
    pub src: &'a Client,
    pub dst: &'a Client,
}

/// Compares the rows touched by change capture since they were last found equal.
pub async fn validate_changed(
    sessions: Sessions<'_>,
    name: &MigrationName,
    options: &ValidateOptions,
    recording: Recording,
    unapplied: Unapplied,
    events: &Events,
) -> Result<ValidationReport> {
    let Sessions { src, dst, .. } = sessions;
    crate::pairing::require(src, dst, name, "validate --changed-only", pgferry_core::pairing::Need::JournalOrNone)
        .await?;
    crate::slot::refuse_lost(src, dst, name, super::SLOT_LOST).await?;
    events.emit(Event::Phase(Phase::Validate));
    let compared = compare_changed(sessions, name, options, unapplied).await;
    // The snapshots end whatever the outcome: the sessions are the caller's.
    let ended = tokio::try_join!(super::end_snapshot(src), super::end_snapshot(dst));
    let (report, applied) = compared?;
    ended?;
    if recording == Recording::Record {
        super::journal::record(dst, name, "changed_only", &report).await?;
        if let (Some(applied), true) = (applied, report.equal) {
            mark_checked(dst, name, applied).await?;
        }
    }
    events.emit(report.event());
    Ok(report)
}

/// The comparison under both snapshots, concluded; with the applied position
/// the target's snapshot held.
async fn compare_changed(
    sessions: Sessions<'_>,
    name: &MigrationName,
    options: &ValidateOptions,
    unapplied: Unapplied,
) -> Result<(ValidationReport, Option<String>)> {
    let Sessions { source, target, src, dst } = sessions;
    let sides = Sides::export(source, target, src, dst).await?;
    let applied = applied(dst, name).await?;
    let slot = crate::slot::resolve(src, dst, name).await?;
    let touched = touched::read(dst, name).await.map_err(|e| Error::server("reading the touched rows", e))?;
    let listed = tables::list(src).await?;
    // A partitioned table's changes are recorded under its root (published
    // through it): its partitions are compared.
    let roots = crate::copy::partition_roots(src).await?;
    let mut tables: Vec<ValidatedTable> = Vec::new();
    let mut verdicts = Vec::new();
    let mut chunks = Vec::new();
    let roots = &roots;
    let touched_tables = touched.iter().flat_map(|(name, touch)| {
        listed.iter().filter(move |t| t.name == *name || roots.get(&t.name) == Some(name)).map(move |t| (t, touch))
    });
    for (table, touch) in touched_tables {
        let index = tables.len();
        tables.push(table.clone());
        verdicts.push(verdict(&table.name, !table.key.is_empty()));
        if !exists(dst, &table.name).await? {
            verdicts[index].problem = Some("missing on the target".into());
            continue;
        }
        match touch {
            TouchedRows::Keys(keys) if !table.key.is_empty() && keys.iter().all(|k| k.len() == table.key.len()) => {
                for group in keys.chunks(KEYS_PER_CHUNK) {
                    let columns = (0..table.key.len()).map(|c| group.iter().map(|k| k[c].clone()).collect()).collect();
                    chunks.push(Chunk { table: index, scope: Scope::Keys(columns) });
                }
            }
            _ => chunks.extend(range_chunks(src, index, table, options.chunk_rows).await?),
        }
    }
    let live = match unapplied {
        Unapplied::Counted => Live::open(source, target, name, &slot).await?,
        Unapplied::ProvenByCaller => None,
    };
    let mut report = compare(&sides, &tables, chunks, verdicts, live.as_ref(), options).await?;
    // Change capture not running: the changes not applied yet are not among
    // the touched rows, so the report says how far behind the target is.
    let behind = match (unapplied, live) {
        (Unapplied::Counted, None) => {
            super::lag::behind(source, name, &slot, applied.as_deref(), &sides.source_lsn).await?
        }
        _ => None,
    };
    report.conclude(behind, true);
    Ok((report, applied))
}

/// The migration's applied position, as the target's snapshot sees it.
pub(super) async fn applied(dst: &Client, name: &MigrationName) -> Result<Option<String>> {
    let exists: bool = dst
        .query_one("SELECT to_regclass('pgferry.apply_progress') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::server("looking for the apply journal", e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(dst
        .query_opt("SELECT applied_lsn::text FROM pgferry.apply_progress WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the applied position", e))?
        .map(|r| r.get(0)))
}

/// Forgets the touched rows recorded up to `applied`: they were found equal.
pub(super) async fn mark_checked(dst: &Client, name: &MigrationName, applied: String) -> Result<()> {
    touched::forget_up_to(dst, name, &applied)
        .await
        .map_err(|e| Error::server("marking the touched rows checked", e))?;
    Ok(())
}
