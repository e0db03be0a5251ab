//! Human-readable renderings of reports, as plain functions of the report.

use std::fmt::Write;

use pgferry::check::CheckReport;
use pgferry_core::preflight::{Finding, Severity, Side};

/// The check report as a table grouped by side: each finding, its fix, its objects.
pub(crate) fn check_table(report: &CheckReport) -> String {
    let mut out = String::new();
    let problems = report.findings.iter().filter(|f| f.severity == Severity::Problem).count();
    let warnings = report.findings.len() - problems;
    let sides = [
        (Side::Source, format!("SOURCE  {}  (PostgreSQL {})", report.source.url, report.source.version)),
        (Side::Target, format!("TARGET  {}  (PostgreSQL {})", report.target.url, report.target.version)),
        (Side::Tools, format!("TOOLS   {}", tools_line(report))),
    ];
    for (side, heading) in sides {
        let _ = writeln!(out, "{heading}");
        let findings: Vec<&Finding> = report.findings.iter().filter(|f| f.side == side).collect();
        if findings.is_empty() {
            let _ = writeln!(out, "  ok      no problems found");
        }
        for f in findings {
            let label = match f.severity {
                Severity::Problem => "PROBLEM",
                Severity::Warning => "warning",
            };
            let _ = writeln!(out, "  {label:<7} [{}] {}", f.code, f.what);
            let _ = writeln!(out, "          fix: {}", f.fix);
            for object in &f.objects {
                let _ = writeln!(out, "          - {object}");
            }
        }
        out.push('\n');
    }
    let verdict = if report.ready { "READY" } else { "NOT READY" };
    let _ = writeln!(out, "{verdict}: {problems} problem(s), {warnings} warning(s)");
    out
}

fn tools_line(report: &CheckReport) -> String {
    report
        .tools
        .iter()
        .map(|t| match (&t.path, t.version_num) {
            (Some(path), Some(v)) => format!("{} {}.{} ({path})", t.program, v / 10000, v % 10000),
            _ => format!("{} not found", t.program),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
