//! The demo's closing summary, a plain function of what each step reported.

use std::fmt::Write;

use pgferry::copy::CopyReport;
use pgferry::cutover::CutoverReport;
use pgferry::validate::ValidationReport;
use pgferry_core::preflight::human_bytes;

use crate::render::timings;

use super::workload::{NewIds, Stopped};

/// Everything the summary shows.
pub(crate) struct Summary<'a> {
    pub(crate) source_version: &'a str,
    pub(crate) target_version: &'a str,
    pub(crate) sample_bytes: i64,
    pub(crate) copy: &'a CopyReport,
    /// Changes applied by change capture before the cutover.
    pub(crate) followed: u64,
    pub(crate) application: &'a Stopped,
    pub(crate) cutover: &'a CutoverReport,
    pub(crate) validation: &'a ValidationReport,
    /// The source's last ids, and the ids the application got on the target.
    pub(crate) takeover: (&'a NewIds, &'a NewIds),
    /// Each step of the demo with its seconds.
    pub(crate) steps: &'a [(&'static str, f64)],
}

impl Summary<'_> {
    /// Whether the target took over cleanly: equal rows and ids past the source's.
    pub(crate) fn succeeded(&self) -> bool {
        let (source, target) = self.takeover;
        self.validation.equal && target.order > source.order && target.event > source.event
    }
}

pub(crate) fn render(s: &Summary<'_>) -> String {
    let mut out = String::new();
    let rows: i64 = s.copy.tables.iter().map(|t| t.rows).sum();
    let bytes: i64 = s.copy.tables.iter().map(|t| t.bytes).sum();
    let total: f64 = s.steps.iter().map(|(_, seconds)| seconds).sum();
    let _ = writeln!(
        out,
        "pgferry demo: PostgreSQL {} -> PostgreSQL {}, a sample of {} under live writes, {total:.1} s in all\n",
        s.source_version,
        s.target_version,
        human_bytes(s.sample_bytes)
    );
    let _ = writeln!(out, "rows copied          {rows} rows, {} in {} tables", human_bytes(bytes), s.copy.tables.len());
    let _ = writeln!(
        out,
        "changes replicated   {} ({} while following, {} drained at the cutover)",
        s.followed + s.cutover.changes_drained,
        s.followed,
        s.cutover.changes_drained
    );
    let _ = writeln!(
        out,
        "application          {} transactions committed on the source; then: {}",
        s.application.committed, s.application.cause
    );
    let source_rows: i64 = s.validation.tables.iter().map(|t| t.source_rows).sum();
    let target_rows: i64 = s.validation.tables.iter().map(|t| t.target_rows).sum();
    let verdict = s.validation.verdict.as_str();
    let _ = writeln!(
        out,
        "validation           {verdict}: {} tables, {source_rows} rows on the source, {target_rows} on the target; inside the cutover, {} changed rows compared equal",
        s.validation.tables.len(),
        s.cutover.rows_checked
    );
    let _ = writeln!(out, "downtime             {:.3} s (fence to open target)", s.cutover.downtime_seconds);
    timings(&mut out, "  ", &s.cutover.steps, 3);
    let (source, target) = s.takeover;
    let continued = if target.order > source.order && target.event > source.event {
        "the sequences continue, no collision"
    } else {
        "the sequences did NOT continue past the source's"
    };
    let _ = writeln!(
        out,
        "target took over     the application's next order on the target got id {} (source's last: {}), its audit row id {} (source's last: {}): {continued}",
        target.order, source.order, target.event, source.event
    );
    let _ = writeln!(out, "\nsteps");
    timings(&mut out, "  ", s.steps, 1);
    out
}
