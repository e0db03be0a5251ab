//! Materialized views on the target.
//!
//! `pg_dump --schema-only` creates each materialized view `WITH NO DATA` and
//! emits nothing that fills it, and logical replication never carries their
//! rows (a refresh is not a change of a published table). So the target's
//! views are refreshed from the target's own tables: after the copy, beside the
//! rest of post-data (the copied rows are the snapshot's), and again by the
//! cutover once the drain has brought the target to the source's final state.
//! A view the source holds unpopulated is left (or made) unpopulated. Views
//! are refreshed after every view they read, directly or through plain views
//! (`pgferry_core::fidelity::refresh_order`).
//!
//! A refresh inside the fence is downtime, so each one's time is journaled on
//! the target (`pgferry.view_refresh`, by the copy, `rehearse` and the cutover):
//! `cutover --dry-run` shows the last measured time of each view, and
//! `rehearse` counts them in the downtime it predicts. A view too slow for the
//! downtime is refreshed after the switch instead ([`ViewRefresh::AfterSwitch`],
//! `--refresh-materialized-views after`): the application then reads it stale
//! (as the copy or the last refresh left it) until that refresh ends.

use std::time::Instant;

use pgferry_core::fidelity::refresh_order;
use pgferry_core::names::{MigrationName, STATE_SCHEMA};
use pgferry_core::sql::{QualifiedName, Sql};
use pgferry_pg::facts::USER_RELATION;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// When the cutover refreshes the materialized views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewRefresh {
    /// Inside the fence, after the drain: the application finds them fresh, and
    /// their refresh counts in the downtime.
    #[default]
    BeforeSwitch,
    /// Right after the switch: outside the downtime, stale until refreshed.
    AfterSwitch,
}

impl ViewRefresh {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewRefresh::BeforeSwitch => "before the switch (inside the downtime)",
            ViewRefresh::AfterSwitch => "after the switch (outside the downtime; stale until refreshed)",
        }
    }
}

/// A view the cutover will refresh, with its last measured refresh.
#[derive(Debug, Serialize)]
pub struct PlannedView {
    pub view: String,
    /// Seconds of its last refresh on the target, and by whom (`copy`,
    /// `rehearse`, `cutover`); `None` when never measured.
    pub last_seconds: Option<f64>,
    pub measured_by: Option<String>,
}

/// What was done to one view.
#[derive(Debug, Serialize)]
pub struct RefreshedView {
    pub view: String,
    /// `refreshed`, `emptied` (unpopulated as on the source) or
    /// `left_unpopulated`.
    pub action: &'static str,
    pub seconds: f64,
}

/// The refresh of every materialized view, in the order it ran.
#[derive(Debug, Serialize)]
pub struct MaterializedViewsRefreshed {
    pub views: Vec<RefreshedView>,
    pub seconds: f64,
}

/// One of the source's materialized views.
struct SourceView {
    name: QualifiedName,
    populated: bool,
}

/// Refreshes the target's materialized views from the target's tables, in
/// dependency order, populated exactly where the source's are; each view's time
/// is journaled as measured `by` (a command's name).
pub async fn refresh_materialized_views(
    src: &Client,
    dst: &Client,
    name: &MigrationName,
    by: &str,
) -> Result<MaterializedViewsRefreshed> {
    let started = Instant::now();
    let views = source_views(src).await?;
    let mut done = Vec::with_capacity(views.len());
    for view in views {
        let clock = Instant::now();
        let populated_on_target = populated(dst, &view.name).await?;
        let (action, sql) = match (view.populated, populated_on_target) {
            (true, _) => ("refreshed", Some(Sql::new("REFRESH MATERIALIZED VIEW ").name(&view.name))),
            (false, true) => {
                ("emptied", Some(Sql::new("REFRESH MATERIALIZED VIEW ").name(&view.name).push(" WITH NO DATA")))
            }
            (false, false) => ("left_unpopulated", None),
        };
        if let Some(sql) = sql {
            dst.batch_execute(sql.as_str()).await.map_err(|e| {
                Error::server(&format!("refreshing the materialized view {} on the target", view.name), e)
            })?;
        }
        done.push(RefreshedView { view: view.name.to_string(), action, seconds: clock.elapsed().as_secs_f64() });
    }
    record_times(dst, name, by, &done).await?;
    Ok(MaterializedViewsRefreshed { views: done, seconds: started.elapsed().as_secs_f64() })
}

/// The views a refresh would run through now, in order, with their last
/// measured times (none when the target has no journal of them yet).
pub async fn planned(src: &Client, dst: &Client, name: &MigrationName) -> Result<Vec<PlannedView>> {
    let views = source_views(src).await?;
    let journaled: bool = dst
        .query_one("SELECT to_regclass('pgferry.view_refresh') IS NOT NULL", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("reading the materialized views' refresh times", e))?;
    let mut planned = Vec::with_capacity(views.len());
    for view in views {
        let measured = match journaled {
            true => dst
                .query_opt(
                    "SELECT seconds, measured_by FROM pgferry.view_refresh WHERE migration = $1 AND view = $2",
                    &[&name.as_str(), &view.name.to_string()],
                )
                .await
                .map_err(|e| Error::server("reading the materialized views' refresh times", e))?,
            false => None,
        };
        planned.push(PlannedView {
            view: view.name.to_string(),
            last_seconds: measured.as_ref().map(|r| r.get(0)),
            measured_by: measured.as_ref().map(|r| r.get(1)),
        });
    }
    Ok(planned)
}

async fn record_times(dst: &Client, name: &MigrationName, by: &str, done: &[RefreshedView]) -> Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let fail = |e| Error::server("journaling the materialized views' refresh times", e);
    crate::state::ensure(dst, pgferry_core::state::Side::Target).await?;
    for view in done {
        dst.execute(
            "INSERT INTO pgferry.view_refresh (migration, view, seconds, measured_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (migration, view) DO UPDATE
             SET seconds = excluded.seconds, measured_by = excluded.measured_by, measured_at = now()",
            &[&name.as_str(), &view.view, &view.seconds, &by],
        )
        .await
        .map_err(fail)?;
    }
    Ok(())
}

/// The source's materialized views in refresh order, with whether each holds
/// rows.
async fn source_views(src: &Client) -> Result<Vec<SourceView>> {
    let rows = src
        .query(
            &format!(
                "WITH RECURSIVE views AS (
                     SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind = 'm' AND {USER_RELATION}
                 ), reads (view, rel) AS (
                     SELECT r.ev_class, d.refobjid FROM pg_rewrite r
                     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
                     WHERE r.ev_class IN (SELECT oid FROM views) AND d.refobjid <> r.ev_class
                     UNION
                     SELECT reads.view, d.refobjid FROM reads
                     JOIN pg_class v ON v.oid = reads.rel AND v.relkind = 'v'
                     JOIN pg_rewrite r ON r.ev_class = v.oid
                     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
                     WHERE d.refobjid <> r.ev_class
                 )
                 SELECT c.oid, n.nspname::text, c.relname::text, c.relispopulated,
                        ARRAY(SELECT DISTINCT rel FROM reads WHERE reads.view = c.oid AND rel IN (SELECT oid FROM views))
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid IN (SELECT oid FROM views)
                 ORDER BY n.nspname, c.relname"
            ),
            &[&STATE_SCHEMA],
        )
        .await
        .map_err(|e| Error::server("listing the source's materialized views", e))?;
    let graph: Vec<(u32, Vec<u32>)> = rows.iter().map(|r| (r.get(0), r.get(4))).collect();
    Ok(refresh_order(&graph)
        .into_iter()
        .map(|i| SourceView {
            name: QualifiedName::from_catalog(rows[i].get::<_, String>(1), rows[i].get::<_, String>(2)),
            populated: rows[i].get(3),
        })
        .collect())
}

/// Whether a materialized view holds rows (`pg_class.relispopulated`).
pub(crate) async fn populated(client: &Client, view: &QualifiedName) -> Result<bool> {
    client
        .query_one("SELECT relispopulated FROM pg_class WHERE oid = $1::text::regclass", &[&view.to_string()])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server(&format!("reading whether {view} is populated"), e))
}
