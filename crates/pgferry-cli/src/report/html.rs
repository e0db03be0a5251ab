//! The report as one self-contained HTML page: inline CSS and SVG, no script,
//! no font, no image or style sheet from elsewhere, so it opens the same on a
//! machine without network access and can be attached to a ticket as it is.

use std::fmt::Write;

use pgferry::report::{MigrationRecord, When};
use pgferry_core::preflight::human_bytes;

use super::plots;

pub(super) const SINCE_START: &str = "minutes since the migration began";

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
td.n{text-align:right}.downtime{font-size:1.3em;font-weight:bold}.none{color:#777}
.EQUAL{color:#176f2c}.DIFFERENT{color:#b00020}.NOT_PROVEN{color:#b06000}";

/// The page for `record`.
pub(crate) fn page(record: &MigrationRecord) -> String {
    let origin = origin(record);
    let minutes = |at: &When| (at.epoch - origin) / 60.0;
    let mut out = String::new();
    let name = escape(&record.migration);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pgferry migration {name}</title><style>{STYLE}</style></head><body>\n<h1>pgferry migration {name}</h1>\n"
    );
    summary(&mut out, record);
    out.push_str("<h2>Phases</h2>\n");
    plot(&mut out, plots::timeline("Timeline of the migration", SINCE_START, &stages(record, &minutes)));

    out.push_str("<h2>Copy</h2>\n");
    let mut copied = 0.0;
    let cumulative: Vec<(f64, f64)> = record
        .pieces
        .iter()
        .map(|p| {
            copied += p.bytes as f64 / 1e6;
            (minutes(&p.finished), copied)
        })
        .collect();
    plot(&mut out, plots::line("Data copied", "MB copied", &cumulative));
    let tables: Vec<(String, f64, f64)> =
        record.tables.iter().map(|t| (t.table.clone(), minutes(&t.started), minutes(&t.finished))).collect();
    plot(&mut out, plots::timeline("Per-table copy times", SINCE_START, &tables));
    if !record.tables.is_empty() {
        out.push_str(
            "<table><tr><th>table</th><th>rows</th><th>size</th><th>pieces</th><th>seconds</th><th>MB/s</th></tr>\n",
        );
        for t in &record.tables {
            let rate = if t.seconds > 0.0 { t.bytes as f64 / 1e6 / t.seconds } else { 0.0 };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{rate:.1}</td></tr>",
                escape(&t.table),
                t.rows,
                human_bytes(t.bytes),
                t.pieces,
                t.seconds
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Change capture</h2>\n");
    let series = |f: &dyn Fn(&pgferry::report::Sample) -> f64| -> Vec<(f64, f64)> {
        record.samples.iter().map(|s| (minutes(&s.at), f(s))).collect()
    };
    plot(&mut out, plots::line("Lag (seconds)", "seconds behind", &series(&|s| s.lag_seconds)));
    plot(&mut out, plots::line("Lag (WAL bytes)", "bytes behind", &series(&|s| s.lag_bytes as f64)));
    plot(&mut out, plots::line("Throughput", "changes per second", &series(&|s| s.changes_per_second)));
    let retained: Vec<(f64, f64)> =
        record.samples.iter().filter_map(|s| s.slot_retained_bytes.map(|b| (minutes(&s.at), b as f64))).collect();
    plot(&mut out, plots::line("WAL the source keeps for the slot", "bytes", &retained));

    validations(&mut out, record);
    cutover(&mut out, record);
    preflight(&mut out, record);
    out.push_str("</body></html>\n");
    out
}

fn summary(out: &mut String, record: &MigrationRecord) {
    let bytes: i64 = record.tables.iter().map(|t| t.bytes).sum();
    let rows: i64 = record.tables.iter().map(|t| t.rows).sum();
    let _ = writeln!(
        out,
        "<p>{} table(s), {} rows, {} copied; {} change capture sample(s); last validation: {}.</p>",
        record.tables.len(),
        rows,
        human_bytes(bytes),
        record.samples.len(),
        record.validations.last().map_or("none recorded".to_string(), |v| escape(&v.verdict))
    );
    if let Some(seconds) = record.cutover.as_ref().and_then(|c| c.downtime_seconds) {
        let _ = writeln!(out, "<p class=\"downtime\">Downtime: <span id=\"downtime\">{seconds:.3}</span> s</p>");
    }
}

fn validations(out: &mut String, record: &MigrationRecord) {
    out.push_str("<h2>Validations</h2>\n");
    if record.validations.is_empty() {
        out.push_str("<p class=\"none\">No validation recorded.</p>\n");
        return;
    }
    out.push_str("<table><tr><th>finished</th><th>mode</th><th>verdict</th><th>mismatched chunks</th><th>rows compared</th></tr>\n");
    for v in &record.validations {
        let number = |n: Option<i64>| n.map_or(String::new(), |n| n.to_string());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&v.at.utc),
            escape(v.mode.as_deref().unwrap_or("")),
            escape(&v.verdict.replace(' ', "_")),
            escape(&v.verdict),
            number(v.mismatched_chunks),
            number(v.rows_compared)
        );
    }
    out.push_str("</table>\n");
}

fn cutover(out: &mut String, record: &MigrationRecord) {
    out.push_str("<h2>Cutover</h2>\n");
    let Some(state) = &record.cutover else {
        out.push_str("<p class=\"none\">No cutover recorded.</p>\n");
        return;
    };
    let downtime = state.downtime_seconds.map_or("not measured (no switch yet)".into(), |s| format!("{s:.3} s"));
    let _ = writeln!(out, "<p>Last step: {}. Downtime (fence to switch): {downtime}.</p>", escape(&state.step));
    let first = record.cutover_steps.first().map_or(0.0, |s| s.at.epoch);
    let steps: Vec<(String, f64)> = record.cutover_steps.iter().map(|s| (s.name.clone(), s.at.epoch - first)).collect();
    plot(out, plots::timeline("Cutover steps", "seconds since the cutover began", &spans(&steps)));
    out.push_str("<table><tr><th>step</th><th>at</th><th>seconds after the first step</th></tr>\n");
    for s in &record.cutover_steps {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.3}</td></tr>",
            escape(&s.name),
            escape(&s.at.utc),
            s.at.epoch - first
        );
    }
    out.push_str("</table>\n");
}

fn preflight(out: &mut String, record: &MigrationRecord) {
    out.push_str("<h2>Preflight findings</h2>\n");
    let findings = record.preflight.as_ref().and_then(|p| p.as_array());
    match findings {
        None => {
            out.push_str("<p class=\"none\">Not recorded (a seeded migration, or one begun by an older pgferry).</p>\n")
        }
        Some(list) if list.is_empty() => out.push_str("<p>None: the pair was ready.</p>\n"),
        Some(list) => {
            out.push_str("<table><tr><th>severity</th><th>side</th><th>finding</th><th>fix</th></tr>\n");
            for f in list {
                let field = |k: &str| escape(f.get(k).and_then(|v| v.as_str()).unwrap_or(""));
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}: {}</td><td>{}</td></tr>",
                    field("severity"),
                    field("side"),
                    field("code"),
                    field("what"),
                    field("fix")
                );
            }
            out.push_str("</table>\n");
        }
    }
}

/// The timeline's bars: each copy phase until the next (the last until change
/// capture or the cutover begins), change capture from its first sample to its
/// last, each validation, the cutover from its first step to its last.
fn stages(record: &MigrationRecord, minutes: &dyn Fn(&When) -> f64) -> Vec<(String, f64, f64)> {
    let capture = record.samples.first().zip(record.samples.last()).map(|(a, b)| (minutes(&a.at), minutes(&b.at)));
    let cutover =
        record.cutover_steps.first().zip(record.cutover_steps.last()).map(|(a, b)| (minutes(&a.at), minutes(&b.at)));
    let phases: Vec<(String, f64)> =
        record.phases.iter().map(|p| (format!("copy: {}", p.name), minutes(&p.at))).collect();
    let mut bars = spans(&phases);
    if let Some(last) = bars.last_mut() {
        let next = capture.or(cutover).map_or(last.1, |(start, _)| start);
        last.2 = next.max(last.1);
    }
    if let Some((start, end)) = capture {
        bars.push(("change capture".into(), start, end));
    }
    for v in &record.validations {
        bars.push((format!("validation: {}", v.verdict), minutes(&v.at), minutes(&v.at)));
    }
    if let Some((start, end)) = cutover {
        bars.push(("cutover".into(), start, end));
    }
    bars.sort_by(|a, b| a.1.total_cmp(&b.1));
    bars
}

/// Milestones in time order as bars: each lasts until the next one begins.
fn spans(milestones: &[(String, f64)]) -> Vec<(String, f64, f64)> {
    milestones
        .iter()
        .enumerate()
        .map(|(i, (name, start))| (name.clone(), *start, milestones.get(i + 1).map_or(*start, |next| next.1)))
        .collect()
}

/// The first moment recorded: the plots' zero.
fn origin(record: &MigrationRecord) -> f64 {
    let all = record
        .phases
        .iter()
        .map(|p| p.at.epoch)
        .chain(record.tables.iter().map(|t| t.started.epoch))
        .chain(record.samples.iter().map(|s| s.at.epoch))
        .chain(record.cutover_steps.iter().map(|s| s.at.epoch))
        .chain(record.validations.iter().map(|v| v.at.epoch));
    let first = all.fold(f64::INFINITY, f64::min);
    if first.is_finite() {
        first
    } else {
        0.0
    }
}

fn plot(out: &mut String, svg: Option<String>) {
    match svg {
        Some(svg) => {
            out.push_str("<figure>");
            out.push_str(&svg);
            out.push_str("</figure>\n");
        }
        None => out.push_str("<p class=\"none\">Nothing recorded to plot.</p>\n"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_last_until_the_next() {
        let s = spans(&[("a".into(), 0.0), ("b".into(), 2.0), ("c".into(), 5.0)]);
        assert_eq!(s, vec![("a".into(), 0.0, 2.0), ("b".into(), 2.0, 5.0), ("c".into(), 5.0, 5.0)]);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }
}
