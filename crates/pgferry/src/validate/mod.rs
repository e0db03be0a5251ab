//! `pgferry validate`: proof that source and target hold the same rows.
//!
//! Both sides are read under one exported snapshot each
//! ([`pg_export_snapshot`](https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION)),
//! shared by `--jobs` workers, so the comparison is of two consistent states.
//! Tables are cut into key-range chunks (see [`tables`]); each chunk's fingerprint
//! is compared, and only a chunk that differs is listed row by row to name the keys
//! that are missing, extra or changed (`pgferry_core::validation`).
//!
//! The verdict is three-valued (`pgferry_core::validation::judge_table`): a
//! chunk whose rows kept changing through the live re-checks ([`live`]) is NOT
//! PROVEN, never EQUAL, and a difference that may be lag ([`lag`]) is NOT
//! PROVEN, never DIFFERENT.

mod changed;
mod fidelity;
mod journal;
mod lag;
mod live;
mod tables;

pub use changed::{validate_changed, Recording, Sessions, Unapplied};
pub use fidelity::LargeObjectsVerdict;
pub use journal::{last_validation, LastValidation};
pub use lag::Behind;

use pgferry_core::names::MigrationName;
use pgferry_core::sql::{QualifiedName, Sql};
use pgferry_core::validation::{
    diff_rows, judge_table, overall, Fingerprint, KeyDifference, Lag, RowDigest, TableEvidence, Unproven, Verdict,
};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::events::{Event, Events, Phase};
use live::{Live, Outcome};
use tables::ValidatedTable;

/// Why a migration whose slot is lost is not validated.
const SLOT_LOST: &str = "a validation's verdict cannot be trusted: changes the source made since the slot was lost can no longer reach the target, and none of them can be told from a difference";

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    pub jobs: usize,
    pub chunk_rows: i64,
    /// Keys listed per differing table.
    pub max_differences: usize,
    /// Show row values in differences (they may be personal data).
    pub show_values: bool,
}

/// The verdict for one table.
#[derive(Debug, Serialize)]
pub struct TableVerdict {
    pub table: String,
    #[serde(skip)]
    pub name: QualifiedName,
    pub verdict: Verdict,
    /// Why the table is not proven equal (also beside a proven difference).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unproven: Vec<Unproven>,
    pub keyed: bool,
    /// A materialized view: the cutover refreshes it, so a difference found
    /// before then (the source refreshed it since the copy) does not hold the
    /// cutover back; its underlying tables are compared on their own.
    pub materialized_view: bool,
    /// A partition truncated alone, rewritten, created or attached since the copy
    /// ([`crate::partitions`]): change capture cannot carry that, and the cutover
    /// copies it again inside its fence, so a difference does not hold it back.
    pub recopied_by_cutover: bool,
    pub source_rows: i64,
    pub target_rows: i64,
    pub chunks: usize,
    pub matched: usize,
    pub mismatched: usize,
    /// Chunks that still differed after live re-checks while their rows on the
    /// source kept changing: not proven either way.
    pub changing: usize,
    pub differences: Vec<KeyDifference>,
    /// Set when the table could not be compared (missing on the target, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ValidationReport {
    pub verdict: Verdict,
    /// `verdict` is EQUAL.
    pub equal: bool,
    pub tables: Vec<TableVerdict>,
    /// Set when the tables differ while the migration's change capture was
    /// not running and the target had not applied all of the source's changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<Behind>,
    /// The large objects compared by content (a full validation only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<LargeObjectsVerdict>,
}

impl ValidationReport {
    /// The report as the event stream tells it.
    pub fn event(&self) -> Event {
        Event::Validated {
            verdict: self.verdict.as_str(),
            mismatched_chunks: self.tables.iter().map(|t| t.mismatched as u64).sum(),
            rows_compared: self.tables.iter().map(|t| t.source_rows.max(0) as u64).sum(),
        }
    }

    /// Judges each table from its counts and the lag, then the whole.
    /// Judges every table; `behind` (change capture not running) is kept in the
    /// report where a table differs, or always when `lag_always_told` (a check
    /// of the changed rows says EQUAL only of the changes applied so far).
    fn conclude(&mut self, behind: Option<Behind>, lag_always_told: bool) {
        for t in &mut self.tables {
            let evidence = TableEvidence {
                missing_on_target: t.problem.is_some(),
                mismatched_chunks: t.mismatched,
                changing_chunks: t.changing,
                lag: behind.as_ref().map_or(Lag::None, |b| b.lag(&t.name)),
            };
            (t.verdict, t.unproven) = judge_table(&evidence);
        }
        self.verdict = overall(self.tables.iter().map(|t| t.verdict));
        self.equal = self.verdict == Verdict::Equal;
        self.behind = behind.filter(|_| lag_always_told || self.tables.iter().any(|t| t.mismatched > 0));
    }

    /// The tables found DIFFERENT.
    pub fn different(&self) -> impl Iterator<Item = &TableVerdict> {
        self.tables.iter().filter(|t| t.verdict == Verdict::Different)
    }
}

/// A piece of one table compared at once.
struct Chunk {
    table: usize,
    scope: Scope,
}

/// Which rows of a table a chunk holds.
pub(crate) enum Scope {
    /// A key range (bounds as text; `None` is open), or the whole table.
    Range { low: Option<Vec<String>>, high: Option<Vec<String>> },
    /// The rows with these keys: one text array per key column.
    Keys(Vec<Vec<String>>),
}

/// Compares every table of the source with the target. When `migration` is
/// given and the tables are equal, the rows its change capture touched up to the
/// position the target's snapshot holds are marked checked (see [`changed`]).
pub async fn validate(
    source: &ConnSpec,
    target: &ConnSpec,
    migration: Option<&MigrationName>,
    options: &ValidateOptions,
    events: &Events,
) -> Result<ValidationReport> {
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    if let Some(name) = migration {
        crate::pairing::require(&src, &dst, name, "validate", pgferry_core::pairing::Need::JournalOrNone).await?;
        crate::slot::refuse_lost(&src, &dst, name, SLOT_LOST).await?;
    }
    events.emit(Event::Phase(Phase::Validate));
    // Before the snapshots are exported: reading the copy's journal of partition
    // files may bring its table up to date, which would wait for them.
    let uncovered = match migration {
        Some(name) => crate::partitions::uncovered_partitions(&src, &dst, name).await?.all(),
        None => Vec::new(),
    };
    let sides = Sides::export(source, target, &src, &dst).await?;
    let applied = match migration {
        Some(name) => changed::applied(&dst, name).await?,
        None => None,
    };
    let slot = match migration {
        Some(name) => Some(crate::slot::resolve(&src, &dst, name).await?),
        None => None,
    };
    let mut tables = tables::list(&src).await?;
    let first_view = tables.len();
    tables.extend(tables::materialized_views(&src).await?);
    let mut verdicts: Vec<TableVerdict> = tables.iter().map(|t| verdict(&t.name, !t.key.is_empty())).collect();
    for view in &mut verdicts[first_view..] {
        view.materialized_view = true;
    }
    for partition in verdicts.iter_mut().filter(|v| uncovered.contains(&v.name)) {
        partition.recopied_by_cutover = true;
    }
    let mut chunks = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        if !exists(&dst, &table.name).await? {
            verdicts[index].problem = Some("missing on the target".into());
            continue;
        }
        if index >= first_view {
            match fidelity::view_check(&src, &dst, &table.name).await? {
                fidelity::ViewCheck::Rows => {}
                fidelity::ViewCheck::Nothing => continue,
                fidelity::ViewCheck::Differs(problem) => {
                    verdicts[index].problem = Some(problem);
                    continue;
                }
            }
        }
        chunks.extend(range_chunks(&src, index, table, options.chunk_rows).await?);
    }
    let live = match (migration, &slot) {
        (Some(name), Some(slot)) => Live::open(source, target, name, slot).await?,
        _ => None,
    };
    let mut report = compare(&sides, &tables, chunks, verdicts, live.as_ref(), options).await?;
    let large_objects = fidelity::large_objects(&sides).await?;
    let behind = match (migration, &slot) {
        (Some(name), Some(slot)) if live.is_none() && report.tables.iter().any(|t| t.mismatched > 0) => {
            lag::behind(source, name, slot, applied.as_deref(), &sides.source_lsn).await?
        }
        _ => None,
    };
    report.conclude(behind, false);
    if !large_objects.differences.is_empty() {
        // Large objects are not replicated: a difference is never lag.
        report.verdict = Verdict::Different;
        report.equal = false;
    }
    report.large_objects = Some(large_objects);
    if let Some(name) = migration {
        // The workers are done: the exporting session records the outcome.
        end_snapshot(&dst).await?;
        journal::record(&dst, name, "full", &report).await?;
        if let (Some(applied), true) = (applied, report.equal) {
            changed::mark_checked(&dst, name, applied).await?;
        }
    }
    events.emit(report.event());
    Ok(report)
}

/// The range chunks covering a whole table.
async fn range_chunks(src: &Client, index: usize, table: &ValidatedTable, chunk_rows: i64) -> Result<Vec<Chunk>> {
    let bounds = tables::boundaries(src, table, chunk_rows.max(1)).await?;
    let mut chunks = Vec::new();
    let mut low = None;
    for bound in bounds {
        chunks.push(Chunk { table: index, scope: Scope::Range { low: low.take(), high: Some(bound.clone()) } });
        low = Some(bound);
    }
    chunks.push(Chunk { table: index, scope: Scope::Range { low, high: None } });
    Ok(chunks)
}

/// Both servers and the snapshots the workers share; the exporting sessions
/// must stay open while they work.
struct Sides<'a> {
    source: &'a ConnSpec,
    target: &'a ConnSpec,
    source_snapshot: String,
    target_snapshot: String,
    /// The source's WAL insert position just after its snapshot: every
    /// transaction the snapshot sees committed before it.
    source_lsn: String,
}

impl<'a> Sides<'a> {
    async fn export(source: &'a ConnSpec, target: &'a ConnSpec, src: &Client, dst: &Client) -> Result<Sides<'a>> {
        let source_snapshot = export_snapshot(src, "source").await?;
        let source_lsn = src
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(|e| Error::server("reading the source's WAL position", e))?
            .get(0);
        Ok(Sides {
            source,
            target,
            source_snapshot,
            target_snapshot: export_snapshot(dst, "target").await?,
            source_lsn,
        })
    }
}

/// Compares the chunks with `--jobs` workers and folds the results into the
/// tables' verdicts.
async fn compare(
    sides: &Sides<'_>,
    tables: &[ValidatedTable],
    chunks: Vec<Chunk>,
    mut verdicts: Vec<TableVerdict>,
    live: Option<&Live>,
    options: &ValidateOptions,
) -> Result<ValidationReport> {
    let open = async || {
        let s = open_worker(sides.source, &sides.source_snapshot).await?;
        let t = open_worker(sides.target, &sides.target_snapshot).await?;
        Ok((s, t))
    };
    let compare = async |(s, t): &(Client, Client), chunk: Chunk| {
        let table = &tables[chunk.table];
        let (a, b) = tokio::try_join!(fingerprint(s, table, &chunk.scope), fingerprint(t, table, &chunk.scope))?;
        let outcome = if a == b {
            Outcome::Equal { rows: a.rows }
        } else if let Some(live) = live {
            live.recheck(table, &chunk.scope, options).await?
        } else {
            let (x, y) = tokio::try_join!(rows(s, table, &chunk.scope), rows(t, table, &chunk.scope))?;
            let differences = diff_rows(&x, &y, options.max_differences, options.show_values);
            Outcome::Differs { source_rows: a.rows, target_rows: b.rows, differences }
        };
        Ok((chunk.table, outcome))
    };
    for (index, outcome) in crate::pool::each(chunks, options.jobs, open, compare).await? {
        let v = &mut verdicts[index];
        v.chunks += 1;
        match outcome {
            Outcome::Equal { rows } => {
                v.matched += 1;
                v.source_rows += rows;
                v.target_rows += rows;
            }
            Outcome::Changing { source_rows, target_rows } => {
                v.changing += 1;
                v.source_rows += source_rows;
                v.target_rows += target_rows;
            }
            Outcome::Differs { source_rows, target_rows, differences } => {
                v.mismatched += 1;
                v.source_rows += source_rows;
                v.target_rows += target_rows;
                let room = options.max_differences.saturating_sub(v.differences.len());
                v.differences.extend(differences.into_iter().take(room).map(|mut d| {
                    d.key = key_text(std::mem::take(&mut d.key));
                    d
                }));
            }
        }
    }
    for v in &mut verdicts {
        v.differences.sort_by(|a, b| a.key.cmp(&b.key));
    }
    // Judged by the caller, once it knows whether the differences may be lag.
    Ok(ValidationReport {
        verdict: Verdict::NotProven,
        equal: false,
        tables: verdicts,
        behind: None,
        large_objects: None,
    })
}

fn verdict(name: &QualifiedName, keyed: bool) -> TableVerdict {
    TableVerdict {
        table: name.to_string(),
        name: name.clone(),
        verdict: Verdict::NotProven,
        unproven: Vec::new(),
        keyed,
        materialized_view: false,
        recopied_by_cutover: false,
        source_rows: 0,
        target_rows: 0,
        chunks: 0,
        matched: 0,
        mismatched: 0,
        changing: 0,
        differences: Vec::new(),
        problem: None,
    }
}

/// Ends an exporting session's snapshot transaction once the workers are done.
async fn end_snapshot(client: &Client) -> Result<()> {
    client.batch_execute("COMMIT").await.map_err(|e| Error::server("ending the validation's snapshot", e))
}

/// Opens a snapshot transaction whose snapshot the workers import; the returned
/// client must stay open while they work.
async fn export_snapshot(client: &Client, side: &str) -> Result<String> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| Error::server(&format!("starting a snapshot on the {side}"), e))?;
    client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server(&format!("exporting a snapshot on the {side}"), e))
}

async fn open_worker(spec: &ConnSpec, snapshot: &str) -> Result<Client> {
    let client = pgferry_pg::connect(spec).await?;
    let sql = Sql::new("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ").literal(snapshot);
    client.batch_execute(sql.as_str()).await.map_err(|e| Error::server("importing the validation snapshot", e))?;
    Ok(client)
}

async fn exists(client: &Client, table: &QualifiedName) -> Result<bool> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.to_string()])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking up a table on the target", e))
}

fn scope_params(scope: &Scope) -> Vec<&(dyn ToSql + Sync)> {
    match scope {
        Scope::Range { low, high } => {
            low.iter().chain(high.iter()).flatten().map(|v| v as &(dyn ToSql + Sync)).collect()
        }
        Scope::Keys(columns) => columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect(),
    }
}

fn scope_predicate(table: &ValidatedTable, scope: &Scope) -> Sql {
    match scope {
        Scope::Range { low, high } => tables::range_predicate(table, low.is_some(), high.is_some()),
        Scope::Keys(_) => tables::keys_predicate(table),
    }
}

async fn fingerprint(client: &Client, table: &ValidatedTable, scope: &Scope) -> Result<Fingerprint> {
    // sum(bigint) accumulates in 128 bits and returns numeric: no overflow, and no
    // per-row numeric arithmetic.
    let sql = Sql::new("SELECT count(*), coalesce(sum(")
        .append(table.row_hash.clone())
        .push("), 0)::text FROM ONLY ")
        .name(&table.name)
        .push(" t")
        .append(scope_predicate(table, scope));
    let row = client
        .query_one(sql.as_str(), &scope_params(scope))
        .await
        .map_err(|e| Error::server(&format!("fingerprinting {}", table.name), e))?;
    Ok(Fingerprint { rows: row.get(0), hash_sum: row.get(1) })
}

/// The chunk's rows by key (in byte order of the key's text, the same on both
/// sides whatever their collation), with hashes and text forms.
async fn rows(client: &Client, table: &ValidatedTable, scope: &Scope) -> Result<Vec<RowDigest>> {
    let key = if table.key.is_empty() {
        Sql::new("t::text")
    } else {
        Sql::new("ROW(").ident_list(table.key.iter().map(|k| &k.name)).push(", NULL)::text")
    };
    let sql = Sql::new("SELECT (")
        .append(key)
        .push(") COLLATE \"C\" AS pgferry_key, hashtextextended(t::text, 0), t::text COLLATE \"C\" AS pgferry_row FROM ONLY ")
        .name(&table.name)
        .push(" t")
        .append(scope_predicate(table, scope))
        .push(" ORDER BY pgferry_key, pgferry_row");
    let rows = client
        .query(sql.as_str(), &scope_params(scope))
        .await
        .map_err(|e| Error::server(&format!("listing rows of {}", table.name), e))?;
    Ok(rows.iter().map(|r| RowDigest { key: r.get(0), hash: r.get(1), text: r.get(2) }).collect())
}

/// `ROW(k1, k2, NULL)::text` is `(a,b,)`: shown as `(a,b)`. (The trailing NULL
/// keeps a one-column key a row, so every key prints the same way; rows are
/// ordered and merged on the raw form.)
fn key_text(raw: String) -> String {
    match raw.strip_suffix(",)") {
        Some(prefix) => format!("{prefix})"),
        None => raw,
    }
}
