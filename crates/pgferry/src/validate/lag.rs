//! Lag, told apart from differences. When the migration's change capture is
//! not running, a table read on both sides can differ only because the target
//! has not applied the source's latest changes yet. That is never a mismatch:
//! the slot's pending changes are counted per table
//! ([`pg_logical_slot_peek_binary_changes`](https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION),
//! which consumes nothing), and a differing table with pending changes is NOT
//! PROVEN, one without is DIFFERENT.
//!
//! Pending means: in a transaction committed after the target's applied
//! position (as its snapshot saw it) and no later than the source's read. The
//! peek decodes the WAL between the two, so beyond [`COUNT_LIMIT_BYTES`] the
//! changes are not counted and every differing table is NOT PROVEN. Peeking
//! holds the slot for its duration: a `follow` starting at that very moment
//! fails and must be started again.

use pgferry_core::names::MigrationName;
use pgferry_core::sql::QualifiedName;
use pgferry_core::validation::Lag;
use pgferry_pg::ConnSpec;
use serde::Serialize;

use crate::error::{Error, Result};

/// WAL decoded at most to count pending changes.
const COUNT_LIMIT_BYTES: i64 = 256 * 1024 * 1024;

/// How far the target was behind the source's read while change capture was
/// not running.
#[derive(Debug, Serialize)]
pub struct Behind {
    pub applied_lsn: String,
    pub source_lsn: String,
    pub bytes: i64,
    /// Changes to published tables committed on the source by its read and not
    /// applied; `None` when they were not counted (too much WAL, slot in use).
    pub pending_changes: Option<i64>,
    #[serde(skip)]
    per_table: Option<Vec<(QualifiedName, i64)>>,
}

impl Behind {
    /// Whether a difference in `table` may be lag.
    pub(super) fn lag(&self, table: &QualifiedName) -> Lag {
        match &self.per_table {
            None => Lag::Unknown,
            Some(tables) => Lag::Pending(tables.iter().find(|(t, _)| t == table).map_or(0, |(_, n)| *n)),
        }
    }
}

/// `None` when there is no migration slot, or the target holds everything the
/// source wrote by `source_lsn`. Before change capture first ran (`applied` is
/// `None`), the target holds what the slot's consistent point held.
pub(super) async fn behind(
    source: &ConnSpec,
    name: &MigrationName,
    slot: &str,
    applied: Option<&str>,
    source_lsn: &str,
) -> Result<Option<Behind>> {
    let src = pgferry_pg::connect(source).await?;
    let row = src
        .query_opt(
            "SELECT coalesce($2::text::pg_lsn, confirmed_flush_lsn)::text,
                    pg_wal_lsn_diff($3::text::pg_lsn, coalesce($2::text::pg_lsn, confirmed_flush_lsn))::bigint, active
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot, &applied, &source_lsn],
        )
        .await
        .map_err(|e| Error::server("reading the migration's slot", e))?;
    let Some(row) = row else { return Ok(None) };
    let (applied_lsn, bytes, active): (String, i64, bool) = (row.get(0), row.get(1), row.get(2));
    if bytes <= 0 {
        return Ok(None);
    }
    let per_table = if active || bytes > COUNT_LIMIT_BYTES {
        None
    } else {
        await_flush(&src, source_lsn).await?;
        count_pending(&src, name, slot, &applied_lsn, source_lsn).await
    };
    let pending_changes = per_table.as_ref().map(|t: &Vec<(QualifiedName, i64)>| t.iter().map(|(_, n)| n).sum::<i64>());
    if pending_changes == Some(0) {
        return Ok(None);
    }
    Ok(Some(Behind { applied_lsn, source_lsn: source_lsn.to_string(), bytes, pending_changes, per_table }))
}

/// Whether the source has flushed its WAL up to `upto`: logical decoding reads
/// only flushed WAL, and under `synchronous_commit = off` a commit's record may
/// wait for the WAL writer (`wal_writer_delay`, 200 ms by default): a peek before
/// it would miss commits and call their rows' lag a difference. Waits at most a
/// second (the insert position of an idle server can stay ahead of its flush).
async fn await_flush(src: &tokio_postgres::Client, upto: &str) -> Result<()> {
    for _ in 0..10 {
        let done: bool = src
            .query_one("SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn", &[&upto])
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::server("reading the source's flushed position", e))?;
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Per table, the changes (inserts, updates, deletes, truncates) of the
/// transactions committed in (`applied`, `upto`]; `None` when the slot could not
/// be read (the reason is logged).
async fn count_pending(
    src: &tokio_postgres::Client,
    name: &MigrationName,
    slot: &str,
    applied: &str,
    upto: &str,
) -> Option<Vec<(QualifiedName, i64)>> {
    // pgoutput protocol 1: 'C' (67) commit, whose lsn is the end of its record;
    // 'I' (73), 'U' (85), 'D' (68) name their relation in bytes 1-4; 'T' (84)
    // has a count in bytes 1-4, options in byte 5, then the relations.
    let rows = src
        .query(
            "WITH c AS MATERIALIZED (
                 SELECT lsn, xid, data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, NULL,
                     'proto_version', '1', 'publication_names', quote_ident($3) || ',' || quote_ident($4))
             ), unapplied AS (
                 SELECT xid FROM c WHERE get_byte(data, 0) = 67 AND lsn > $5::text::pg_lsn AND lsn <= $2::text::pg_lsn
             ), touched AS (
                 SELECT CASE WHEN get_byte(c.data, 0) = 84 THEN substr(c.data, 7 + 4 * i, 4) ELSE substr(c.data, 2, 4) END AS relid
                 FROM c JOIN unapplied u ON u.xid = c.xid,
                      LATERAL generate_series(0, CASE WHEN get_byte(c.data, 0) = 84
                                                      THEN ('x' || encode(substr(c.data, 2, 4), 'hex'))::bit(32)::int - 1 ELSE 0 END) i
                 WHERE get_byte(c.data, 0) IN (73, 85, 68, 84)
             )
             SELECT n.nspname::text, r.relname::text, count(*)
             FROM touched t JOIN pg_class r ON r.oid = ('x' || encode(t.relid, 'hex'))::bit(32)::int::oid
                  JOIN pg_namespace n ON n.oid = r.relnamespace
             GROUP BY 1, 2",
            &[&slot, &upto, &name.publication().as_str(), &name.insert_only_publication().as_str(), &applied],
        )
        .await;
    match rows {
        Ok(rows) => Some(
            rows.iter()
                .map(|r| {
                    (QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)), r.get::<_, i64>(2))
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!("counting the changes not applied yet: {e}");
            None
        }
    }
}
