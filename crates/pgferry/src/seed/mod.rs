//! Seeded migrations: the target is a physical copy of the source (an RDS
//! snapshot restore, a `pg_basebackup`, a storage snapshot), so nothing is
//! reloaded; change capture starts exactly where the copy ends.
//!
//! 1. [`prepare`] (on the source, before the copy): the publications, the
//!    migration's logical slot (its creation waits until every transaction that
//!    was writing when it started has ended, so decoding is complete from its
//!    consistent point on), then a marker row committed after the slot. Any copy
//!    taken from now on holds the marker, and the slot holds every change after it.
//! 2. The operator takes the copy and brings it up as the target.
//! 3. [`attach`] (on the target): reads the copy's end from its server log (the
//!    last `redo done at` line) or takes it given, checks it against the slot, the
//!    marker and both servers ([`pgferry_core::seed::judge`], every problem at
//!    once, nothing changed when refused), removes what the copy inherited and
//!    must not keep ([`inherited`]), and journals the migration as copied with
//!    change capture starting just after that position. From then on it is the
//!    same lifecycle as a copied migration.
//!
//! The boundary rule (a transaction is in the copy exactly when its commit record
//! starts at or before the redo position) is explained in [`pgferry_core::seed`].

mod facts;
mod inherited;
pub(crate) mod marker;

use std::path::PathBuf;

use pgferry_core::names::MigrationName;
use pgferry_core::phase::MigrationPhase;
use pgferry_core::seed::{judge, redo_done_at, start_after};
use pgferry_pg::ConnSpec;
use pgferry_pgoutput::Lsn;
use serde::Serialize;
use tokio_postgres::Client;

pub use inherited::Inherited;
pub(crate) use marker::forget as forget_marker;

use crate::copy::{ensure_publications, journal, list_tables, Publishable};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;

/// Where the copy ends.
#[derive(Clone, Debug)]
pub enum SeedPosition {
    /// Given by the operator, as printed in the copy's `redo done at` line.
    Lsn(Lsn),
    /// The copy's server log, holding that line.
    Log(ServerLog),
}

/// A server log, from wherever it can be read.
#[derive(Clone, Debug)]
pub enum ServerLog {
    /// A file on this machine (a self-managed copy).
    File(PathBuf),
    /// Text fetched elsewhere, such as RDS's log download API (`pgferry aws`);
    /// `origin` names it in messages.
    Text { origin: String, text: String },
}

impl ServerLog {
    fn read(&self) -> Result<(String, String)> {
        match self {
            ServerLog::File(path) => std::fs::read(path)
                .map(|bytes| (path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()))
                .map_err(|e| Error::new(ErrorKind::Usage, format!("reading the copy's log {}: {e}", path.display()))),
            ServerLog::Text { origin, text } => Ok((origin.clone(), text.clone())),
        }
    }
}

/// Progress, for whoever draws it.
#[derive(Clone, Debug)]
pub enum SeedEvent {
    /// The slot's creation waits for these sessions' transactions to end.
    WaitingForTransactions { pids: Vec<i32> },
}

/// The outcome of `seed prepare`.
#[derive(Debug, Serialize)]
pub struct PrepareReport {
    pub migration: String,
    pub slot: String,
    /// False when a previous run had made it already.
    pub created_slot: bool,
    pub consistent_lsn: String,
    pub marker_lsn: String,
    /// Tables without a replica identity: only their inserts and truncates are
    /// replicated (see `pgferry check`).
    pub insert_only_tables: Vec<String>,
    /// Unlogged tables: the copy holds them empty, and nothing of them is replicated.
    pub unlogged_tables: Vec<String>,
}

/// Makes the source ready for a physical copy. Rerunning it keeps an existing
/// slot and marker.
pub async fn prepare(source: &ConnSpec, name: &MigrationName, events: &crate::events::Events) -> Result<PrepareReport> {
    let src = pgferry_pg::connect(source).await?;
    let cutover_state = crate::lifecycle::record(&src, None, name).await?;
    crate::lifecycle::check(name, pgferry_core::lifecycle::Command::SeedPrepare, &cutover_state)?;
    events.emit(crate::events::Event::Phase(crate::events::Phase::Seed));
    require_logical_wal(&src).await?;
    let slot = crate::slot::on_source(&src, name).await?;
    crate::copy::ensure_slot_is_ours(&src, name, &slot).await?;
    let tables = list_tables(&src).await?;
    ensure_publications(&src, name).await?;
    let existing = src
        .query_opt("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| Error::server("reading the source's replication slots", e))?;
    let (slot_lsn, created_slot) = match existing {
        Some(row) => (marker::parse(row.get(0))?, false),
        None => (create_slot(&src, &slot, events).await?, true),
    };
    failpoint::hit("seed-after-slot");
    let marker = match marker::read(&src, name).await? {
        Some(marker) if !created_slot => marker,
        _ => marker::write(&src, name, &slot, slot_lsn).await?,
    };
    let named =
        |kind: Publishable| tables.iter().filter(|(_, p)| *p == kind).map(|(t, _)| t.name.to_string()).collect();
    Ok(PrepareReport {
        migration: name.to_string(),
        slot,
        created_slot,
        consistent_lsn: slot_lsn.to_string(),
        marker_lsn: marker.lsn.to_string(),
        insert_only_tables: named(Publishable::InsertsOnly),
        unlogged_tables: named(Publishable::Never),
    })
}

async fn require_logical_wal(src: &Client) -> Result<()> {
    let level: String = src
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(|e| Error::server("reading wal_level", e))?
        .get(0);
    if level == "logical" {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Refused, format!("the source's wal_level is {level}, not logical")).with_hint(
        "set wal_level = logical (on RDS: rds.logical_replication = 1 in the parameter group) and restart the source",
    ))
}

/// Creates the slot; PostgreSQL waits until every transaction holding an xid
/// when it started has ended, which is why those are announced first.
async fn create_slot(src: &Client, slot: &str, events: &crate::events::Events) -> Result<Lsn> {
    let pids: Vec<i32> = src
        .query(
            "SELECT pid FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start",
            &[],
        )
        .await
        .map_err(|e| Error::server("listing the source's open transactions", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !pids.is_empty() {
        events.emit(crate::events::Event::Seed(SeedEvent::WaitingForTransactions { pids }));
    }
    let row = src
        .query_one("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot])
        .await
        .map_err(|e| Error::server(&format!("creating the replication slot {slot} on the source"), e))?;
    marker::parse(row.get(0))
}

/// The outcome of attaching a copy.
#[derive(Debug, Serialize)]
pub struct AttachReport {
    pub migration: String,
    /// The copy's last replayed record.
    pub redo_lsn: String,
    /// Change capture sends every transaction whose commit starts at or after this.
    pub start_lsn: String,
    /// False when a previous run had attached this copy already.
    pub attached_now: bool,
    pub inherited: Inherited,
}

/// Makes the copy the migration's target, starting change capture after its end.
pub async fn attach(
    source: &ConnSpec,
    target: &ConnSpec,
    name: &MigrationName,
    position: &SeedPosition,
) -> Result<AttachReport> {
    let redo = resolve(position)?;
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    let pair = crate::lifecycle::guard(&src, &dst, name, pgferry_core::lifecycle::Command::StartSeeded).await?;
    let report = |attached_now, inherited| AttachReport {
        migration: name.to_string(),
        redo_lsn: redo.to_string(),
        start_lsn: start_after(redo).to_string(),
        attached_now,
        inherited,
    };
    match attached(&dst, name).await? {
        Some(earlier) if earlier == redo => return Ok(report(false, Inherited::default())),
        Some(earlier) => {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("migration {name} was seeded on this target at {earlier}, not {redo}"),
            )
            .with_hint("rerun with the first position, or run pgferry abort and seed again"))
        }
        None => {}
    }
    if journal::phase_if_journaled(&dst, name).await?.is_some() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("migration {name} on this target was started as a full copy"),
        )
        .with_hint("use pgferry start without --seeded, or another --name"));
    }
    let slot = crate::slot::resolve(&src, &dst, name).await?;
    let facts = facts::read(&src, &dst, name, &slot).await?;
    let problems = judge(redo, &facts);
    if !problems.is_empty() {
        let message = problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n");
        let mut hints: Vec<&str> = problems.iter().map(|p| p.hint()).collect();
        hints.dedup();
        return Err(Error::new(ErrorKind::Refused, format!("refusing to seed from {redo}:\n{message}"))
            .with_hint(hints.join("\n")));
    }
    let inherited = inherited::remove(&src, &dst, name).await?;
    failpoint::hit("seed-after-inherited");
    record(&dst, name, &slot, redo, pair.source()).await?;
    Ok(report(true, inherited))
}

fn resolve(position: &SeedPosition) -> Result<Lsn> {
    let log = match position {
        SeedPosition::Lsn(lsn) => return Ok(*lsn),
        SeedPosition::Log(log) => log,
    };
    let (origin, text) = log.read()?;
    redo_done_at(&text).ok_or_else(|| {
        Error::new(ErrorKind::Refused, format!("{origin} has no 'redo done at' line")).with_hint(
            "give the log of the copy's first start after the restore (log_min_messages at LOG or below), or the position with --seed-lsn",
        )
    })
}

/// The redo position this target was seeded at, if it was.
async fn attached(dst: &Client, name: &MigrationName) -> Result<Option<Lsn>> {
    let exists: bool = dst
        .query_one("SELECT to_regclass('pgferry.seed') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::server("reading the journal", e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    dst.query_opt("SELECT redo_lsn::text FROM pgferry.seed WHERE migration = $1", &[&name.as_str()])
        .await
        .map_err(|e| Error::server("reading the journal", e))?
        .map(|r| marker::parse(r.get(0)))
        .transpose()
}

/// Journals the seed and the migration (with its slot's name) as copied, in one transaction.
async fn record(
    dst: &Client,
    name: &MigrationName,
    slot: &str,
    redo: Lsn,
    source: &pgferry_core::preflight::DatabaseIdentity,
) -> Result<()> {
    journal::ensure(dst).await?;
    let start = start_after(redo).to_string();
    let write = || async {
        dst.batch_execute("BEGIN").await?;
        dst.execute(
            "INSERT INTO pgferry.seed (migration, redo_lsn, start_lsn) VALUES ($1, $2::text::pg_lsn, $3::text::pg_lsn)",
            &[&name.as_str(), &redo.to_string(), &start],
        )
        .await?;
        Ok::<_, tokio_postgres::Error>(())
    };
    write().await.map_err(|e| Error::server("journaling the seed", e))?;
    journal::begin(dst, name, slot, source).await?;
    journal::set_phase(dst, name, MigrationPhase::Copied, Some(&start)).await?;
    dst.batch_execute("COMMIT").await.map_err(|e| Error::server("journaling the seed", e))
}
