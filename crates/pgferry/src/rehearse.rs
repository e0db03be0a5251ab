//! `pgferry rehearse`: every cutover step that does not stop the source's writes,
//! timed, and the downtime to expect. The runbook's author insists on rehearsing;
//! this makes it one command that changes nothing the application sees.
//!
//! It runs the go/no-go, drains the stream to the source's current position (as the
//! cutover will, but without a fence), reads every sequence on both sides as the
//! cutover's sequence step would, compares the rows change capture touched as the
//! cutover's exact check will, and shows the switch command without running it.
//! It also does, on the target only, the two steps the cutover repeats inside
//! the fence: it brings over the large objects changed since the last sync and
//! refreshes the materialized views (each view's time journaled, for
//! `cutover --dry-run`). Both only bring the target closer to the source; the
//! cutover's own runs then have less to do.
//! The expected downtime is the fence's own cost plus the drain, large objects,
//! materialized views (unless left for after the switch), sequence and check
//! times measured here. The check is the cutover's own
//! ([`validate_changed`], the same verdict rule): under live writes, rows
//! written after the drain are lag, so the rehearsal says NOT PROVEN for them,
//! never DIFFERENT; the cutover's check runs fenced and settles them.
//! A running `pgferry start` hands the runner lock over for the rehearsal and
//! resumes change capture once it ends ([`crate::handover`]).

use std::time::Instant;

use pgferry_core::cutover::{go_no_go, Decision};
use pgferry_core::handover::Asker;
use pgferry_pg::ConnSpec;
use serde::Serialize;

use crate::apply::{follow, BatchLimits, FollowOptions, Until};
use crate::cutover::CutoverOptions;
use crate::error::{Error, Result};
use crate::materialized_views::{refresh_materialized_views, RefreshedView, ViewRefresh};
use crate::validate::{validate_changed, Recording, Sessions, Unapplied, ValidateOptions, ValidationReport};

/// What raising and verifying the fence cost in the benchmark (bench/RESULTS.md):
/// added to the measured steps to estimate the downtime.
const FENCE_SECONDS: f64 = 0.05;

/// The rehearsal's findings.
#[derive(Debug, Serialize)]
pub struct Rehearsal {
    pub decision: Decision,
    pub drain_seconds: f64,
    pub changes_drained: u64,
    pub large_objects_seconds: f64,
    pub large_objects_synced: usize,
    pub materialized_views_seconds: f64,
    /// Each view's refresh, in order.
    pub materialized_views: Vec<RefreshedView>,
    /// When the cutover will refresh them: after the switch, their time is not downtime.
    pub views_refresh: ViewRefresh,
    pub sequence_seconds: f64,
    pub sequences: usize,
    /// The changed-rows check's verdict is EQUAL.
    pub validation_equal: bool,
    /// The changed-rows check, as the cutover's would judge it.
    pub validation: ValidationReport,
    pub validation_seconds: f64,
    pub switch_command: Option<String>,
    pub expected_downtime_seconds: f64,
    /// The running `pgferry start` that handed the runner lock over for the
    /// rehearsal; it resumes change capture once the rehearsal ends.
    pub took_over_from: Option<String>,
}

pub async fn rehearse(
    source: &ConnSpec,
    target: &ConnSpec,
    options: &CutoverOptions,
    validation: &ValidateOptions,
) -> Result<Rehearsal> {
    let (_runner, took_over) = crate::handover::take_over(
        target,
        &options.migration,
        Asker::Rehearse,
        options.handover_timeout,
        options.shutdown.as_ref(),
    )
    .await?;
    crate::failpoint::pause("rehearse-after-lock").await;
    let src = pgferry_pg::connect(source).await?;
    let dst = pgferry_pg::connect(target).await?;
    crate::lifecycle::guard(&src, &dst, &options.migration, pgferry_core::lifecycle::Command::Rehearse).await?;
    let observed = crate::cutover::observe(&src, &dst, &options.migration).await?;
    // The rehearsal drains the stream itself, like the cutover: judge everything else.
    let decision = go_no_go(&observed, &options.policy);
    let started = Instant::now();
    let follow_options = FollowOptions {
        migration: options.migration.clone(),
        until: Until::CaughtUp,
        batch: BatchLimits::default(),
        shutdown: None,
        drain: true,
        lanes: 1,
    };
    let drained = follow(source, target, &follow_options, &crate::events::Events::silent()).await?;
    let drain_seconds = started.elapsed().as_secs_f64();
    let large_objects = crate::large_objects::sync_large_objects(&src, &dst).await?;
    let views = refresh_materialized_views(&src, &dst, &options.migration, "rehearse").await?;
    let started = Instant::now();
    let sequences = count_sequences(&src, &dst).await?;
    let sequence_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let report = validate_changed(
        Sessions { source, target, src: &src, dst: &dst },
        &options.migration,
        validation,
        Recording::Discard,
        Unapplied::Counted,
        &crate::events::Events::silent(),
    )
    .await?;
    let validation_seconds = started.elapsed().as_secs_f64();
    Ok(Rehearsal {
        decision,
        drain_seconds,
        changes_drained: drained.changes,
        large_objects_seconds: large_objects.seconds,
        large_objects_synced: large_objects.differences.missing.len()
            + large_objects.differences.extra.len()
            + large_objects.differences.changed.len(),
        materialized_views_seconds: views.seconds,
        materialized_views: views.views,
        views_refresh: options.views,
        sequence_seconds,
        sequences,
        validation_equal: report.equal,
        validation: report,
        validation_seconds,
        switch_command: options.switch_command.clone(),
        expected_downtime_seconds: FENCE_SECONDS
            + drain_seconds
            + large_objects.seconds
            + if options.views == ViewRefresh::BeforeSwitch { views.seconds } else { 0.0 }
            + sequence_seconds
            + validation_seconds,
        took_over_from: took_over.map(|t| t.from),
    })
}

/// Reads every sequence on the source and checks it exists on the target, as
/// the cutover's sequence step does before it sets them.
async fn count_sequences(src: &tokio_postgres::Client, dst: &tokio_postgres::Client) -> Result<usize> {
    let names: Vec<String> = src
        .query(
            "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'pgferry')",
            &[],
        )
        .await
        .map_err(|e| Error::server("listing the source's sequences", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: i64 = dst
        .query_one("SELECT count(*) FROM unnest($1::text[]) n WHERE to_regclass(n) IS NULL", &[&names])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking up the sequences on the target", e))?;
    if missing > 0 {
        return Err(Error::new(
            crate::ErrorKind::Precondition,
            format!("{missing} sequence(s) of the source are missing on the target"),
        )
        .with_hint("create them on the target (pgferry inventory lists both sides)"));
    }
    Ok(names.len())
}
