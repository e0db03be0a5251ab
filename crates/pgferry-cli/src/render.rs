//! Human-readable renderings of reports, as plain functions of the report.

use std::fmt::Write;

use pgferry::check::CheckReport;
use pgferry::copy::{CopyReport, StatisticsReport};
use pgferry::cutover::CutoverReport;
use pgferry::rehearse::Rehearsal;
use pgferry::status::Status;
use pgferry::validate::ValidationReport;
use pgferry_core::cutover::Decision;
use pgferry_core::preflight::human_bytes;
use pgferry_core::preflight::{Finding, Severity, Side};
use pgferry_core::validation::Verdict;

/// The check report as a table grouped by side: each finding, its fix, its objects.
/// `check --all-databases`: each database's check, what is left out and why,
/// and the instance's verdict.
pub(crate) fn instance_check(report: &pgferry::instance::InstanceCheck) -> String {
    let mut out = String::new();
    for db in &report.databases {
        let _ = writeln!(out, "=== database {}", db.database);
        match (&db.report, &db.create_on_target) {
            (Some(check), _) => out.push_str(&check_table(check)),
            (None, Some(create)) => {
                let _ = writeln!(out, "missing on the target server: create it as the source has it:\n  {create};");
                if !db.findings_before_creation.is_empty() {
                    let _ = writeln!(out, "what its start would find (the source, and the target server):");
                }
                for f in &db.findings_before_creation {
                    finding_lines(&mut out, f);
                }
            }
            (None, None) => {}
        }
        out.push('\n');
    }
    if !report.capacity.is_empty() {
        let _ = writeln!(out, "=== the source server, for every database at once");
        for f in &report.capacity {
            let _ = writeln!(out, "  PROBLEM [{}] {}\n          fix: {}", f.code, f.what, f.fix);
        }
        out.push('\n');
    }
    for (name, why) in &report.plan.left_out {
        let mark = if why.loses_writes() { "WARNING: " } else { "" };
        let _ = writeln!(out, "{mark}left out: {name} ({})", why.as_str());
    }
    let _ = writeln!(
        out,
        "instance: {} database(s): {}; {}",
        report.plan.databases.len(),
        report.plan.databases.join(", "),
        if report.ready { "READY" } else { "NOT READY (see above)" }
    );
    out
}

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
            finding_lines(&mut out, f);
        }
        out.push('\n');
    }
    let verdict = if report.ready { "READY" } else { "NOT READY" };
    let _ = writeln!(out, "{verdict}: {problems} problem(s), {warnings} warning(s)");
    out
}

/// A finding of the preflight: its label, code and what; its fix; its objects.
fn finding_lines(out: &mut String, f: &Finding) {
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

/// Writes one `label  seconds s` line per step, the labels padded to the longest
/// so that the seconds line up.
pub(crate) fn timings(out: &mut String, indent: &str, steps: &[(&str, f64)], decimals: usize) {
    let width = steps.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, seconds) in steps {
        let _ = writeln!(out, "{indent}{label:<width$}  {seconds:>8.decimals$} s");
    }
}

/// The copy's summary: per table rows, bytes and pieces; per phase seconds.
pub(crate) fn copy_summary(report: &CopyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<48} {:>12} {:>10} {:>6} {:>9}", "table", "rows", "bytes", "pieces", "time");
    for t in &report.tables {
        let time = format!("{:.1} s", t.seconds);
        let _ = writeln!(out, "{:<48} {:>12} {:>10} {:>6} {time:>9}", t.table, t.rows, human_bytes(t.bytes), t.chunks);
    }
    let rows: i64 = report.tables.iter().map(|t| t.rows).sum();
    let bytes: i64 = report.tables.iter().map(|t| t.bytes).sum();
    let _ =
        writeln!(out, "{:<48} {:>12} {:>10}", format!("{} table(s)", report.tables.len()), rows, human_bytes(bytes));
    out.push('\n');
    timings(&mut out, "", &report.phases, 1);
    statistics(&mut out, &report.statistics);
    if !report.missing_roles.is_empty() {
        let _ = writeln!(
            out,
            "\nownership and grants were not restored: these roles do not exist on the target: {}",
            report.missing_roles.join(", ")
        );
    }
    if !report.replica_identity_full.is_empty() {
        let _ = writeln!(
            out,
            "\nREPLICA IDENTITY FULL set on the source (abort and cleanup set it back): {}",
            report.replica_identity_full.join(", ")
        );
    }
    let _ = writeln!(out, "\nmigration {}: copied; change capture starts at {}", report.migration, report.slot_lsn);
    out
}

/// How the copied tables got their statistics: carried from the source, or
/// analyzed, counted per reason.
fn statistics(out: &mut String, report: &StatisticsReport) {
    if report.carried.is_empty() && report.analyzed.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nstatistics: {} table(s) carried from the source in {:.1} s, {} analyzed on the target in {:.1} s (worker seconds)",
        report.carried.len(),
        report.carry_seconds,
        report.analyzed.len(),
        report.analyze_seconds
    );
    let mut reasons: Vec<(&str, usize)> = Vec::new();
    for analyzed in &report.analyzed {
        match reasons.iter_mut().find(|(why, _)| *why == analyzed.why) {
            Some((_, n)) => *n += 1,
            None => reasons.push((analyzed.why, 1)),
        }
    }
    for (why, n) in reasons {
        let _ = writeln!(out, "  analyzed {n}: {why}");
    }
}

/// The validation report: per table rows on each side and chunks; each
/// difference by key; a summary line.
pub(crate) fn validation(report: &ValidationReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<44} {:>12} {:>12} {:>7} {:>8} {:>10}",
        "table", "source rows", "target rows", "chunks", "matched", "mismatched"
    );
    for t in &report.tables {
        let _ = writeln!(
            out,
            "{:<44} {:>12} {:>12} {:>7} {:>8} {:>10}",
            t.table, t.source_rows, t.target_rows, t.chunks, t.matched, t.mismatched
        );
        if let Some(problem) = &t.problem {
            let _ = writeln!(out, "    {problem}");
        }
        for why in &t.unproven {
            let _ = writeln!(out, "    NOT PROVEN: {why}");
        }
        for d in &t.differences {
            let _ = writeln!(out, "    {:?} key {}", d.difference, d.key);
            if let Some(row) = &d.source_row {
                let _ = writeln!(out, "      source: {row}");
            }
            if let Some(row) = &d.target_row {
                let _ = writeln!(out, "      target: {row}");
            }
        }
        if !t.keyed && t.mismatched > 0 {
            let _ = writeln!(out, "    (no key: the differing rows are listed by their whole value)");
        }
        if t.recopied_by_cutover && (t.mismatched > 0 || t.problem.is_some()) {
            let _ = writeln!(
                out,
                "    (a partition truncated alone, rewritten, created or attached since the copy: change capture cannot carry that; the cutover copies it again inside its fence, so this difference does not hold the cutover back; validate --repair copies it now)"
            );
        }
        if t.materialized_view && t.mismatched > 0 {
            let _ = writeln!(
                out,
                "    (a materialized view: the cutover refreshes it, so this difference does not hold the cutover back)"
            );
        }
    }
    let count = |verdict| report.tables.iter().filter(|t| t.verdict == verdict).count();
    if let Some(b) = &report.behind {
        let pending = b
            .pending_changes
            .map_or_else(|| "changes not counted".to_string(), |n| format!("{n} change(s) not applied yet"));
        let meaning = match report.equal {
            true => "the changes not applied yet are not compared",
            false => "differences in tables with changes not applied yet may be lag, not mismatches",
        };
        let _ = writeln!(
            out,
            "change capture was not running: the target holds the source's changes up to {}, the source was at {} ({} behind, {pending}); \
             {meaning}: start `pgferry follow`, then validate again",
            b.applied_lsn,
            b.source_lsn,
            human_bytes(b.bytes)
        );
    }
    if let Some(lo) = &report.large_objects {
        let d = &lo.differences;
        let _ = writeln!(
            out,
            "large objects: {} on the source, {} on the target; {} missing, {} extra, {} changed on the target",
            lo.source_objects,
            lo.target_objects,
            d.missing.len(),
            d.extra.len(),
            d.changed.len()
        );
        for (what, oids) in [("missing", &d.missing), ("extra", &d.extra), ("changed", &d.changed)] {
            if !oids.is_empty() {
                let shown: Vec<String> = oids.iter().take(20).map(u32::to_string).collect();
                let _ =
                    writeln!(out, "    {what}: OID {}{}", shown.join(", "), if oids.len() > 20 { ", ..." } else { "" });
            }
        }
    }
    let _ = writeln!(
        out,
        "{}: {} table(s) compared, {} differ, {} not proven",
        report.verdict.as_str(),
        report.tables.len(),
        count(Verdict::Different),
        count(Verdict::NotProven)
    );
    if report.verdict == Verdict::NotProven {
        let _ = writeln!(
            out,
            "nothing was proven different, and not everything was proven equal (exit 4): see NOT PROVEN above"
        );
    }
    out
}

/// The cutover's report: each step's time and the downtime.
pub(crate) fn cutover(report: &CutoverReport) -> String {
    let mut out = String::new();
    if !report.complete {
        let downtime = if report.downtime_seconds.is_nan() {
            "not journaled".to_string()
        } else {
            format!("{:.3} s", report.downtime_seconds)
        };
        let _ = writeln!(
            out,
            "migration {}: cut over. An earlier run switched the application and was stopped after it; this run only recorded the target as open. Downtime measured by that run (fence to switch): {downtime}. The old source stays fenced.",
            report.migration
        );
        if let Some(seconds) = report.views_refreshed_after_switch {
            let _ = writeln!(
                out,
                "materialized views refreshed after the switch: {} in {seconds:.3} s",
                report.materialized_views_refreshed
            );
        }
        return out;
    }
    timings(&mut out, "", &report.steps, 3);
    let _ = writeln!(
        out,
        "\nmigration {}: cut over. Downtime (fence to switch): {:.3} s; {} change(s) drained; {} changed row(s) checked equal; {} sequence(s) set; CONNECT on the old source revoked from: {}; {} session(s) ended. The old source stays fenced.",
        report.migration,
        report.downtime_seconds,
        report.changes_drained,
        report.rows_checked,
        report.sequences_set,
        if report.connect_revoked_from.is_empty() { "nobody".to_string() } else { report.connect_revoked_from.join(", ") },
        report.terminated_sessions,
    );
    unfenced_superusers(&mut out, &report.unfenced_superusers);
    if let Some(from) = &report.took_over_from {
        let _ = writeln!(out, "taken over from the running pgferry start ({from}), which ended its change capture");
    }
    if !report.partitions_recopied.is_empty() {
        let _ = writeln!(out, "partitions copied again inside the fence: {}", report.partitions_recopied.join(", "));
    }
    match report.views_refreshed_after_switch {
        None => {
            let _ = writeln!(
                out,
                "large objects brought over inside the fence: {}; materialized views refreshed: {}",
                report.large_objects_synced, report.materialized_views_refreshed
            );
        }
        Some(seconds) => {
            let _ = writeln!(
                out,
                "large objects brought over inside the fence: {}; materialized views refreshed after the switch: {} in {seconds:.3} s",
                report.large_objects_synced, report.materialized_views_refreshed
            );
        }
    }
    out
}

/// `cutover --dry-run`: the verdict, then what would happen, in order.
/// The superusers a fence cannot keep out, named so that no application uses one.
fn unfenced_superusers(out: &mut String, superusers: &[String]) {
    if !superusers.is_empty() {
        let _ = writeln!(
            out,
            "WARNING: superusers can still log in to the old source and write, the fence cannot stop them: {} (make sure no application logs in as one; --admin-role names the ones kept on purpose)",
            superusers.join(", ")
        );
    }
}

pub(crate) fn cutover_plan(plan: &pgferry::cutover::CutoverPlan) -> String {
    let mut out = String::new();
    match &plan.decision {
        Decision::Go => {
            let _ = writeln!(out, "migration {}: the cutover would start now", plan.migration);
        }
        Decision::NoGo(reasons) => {
            let _ = writeln!(out, "migration {}: the cutover would NOT start:", plan.migration);
            for r in reasons {
                let _ = writeln!(out, "  - {r}");
            }
        }
    }
    let _ = writeln!(out, "\nsteps:");
    for (i, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "  {}. {step}", i + 1);
    }
    let _ = writeln!(out, "\nthe fence on the source database (each undone exactly by a rollback):");
    for change in &plan.fence {
        let _ = writeln!(out, "  - {}", fence_change(change));
    }
    unfenced_superusers(&mut out, &plan.unfenced_superusers);
    if !plan.keyless_tables.is_empty() {
        let _ = writeln!(out, "keyless tables ({}): {}", plan.keyless_policy, plan.keyless_tables.join(", "));
    }
    let _ = writeln!(out, "changed rows to compare: {}", plan.changed_rows_to_check);
    if !plan.materialized_views.is_empty() {
        let measured: f64 = plan.materialized_views.iter().filter_map(|v| v.last_seconds).sum();
        let _ = writeln!(
            out,
            "materialized views ({}), refreshed {}; last measured {measured:.3} s in all:",
            plan.materialized_views.len(),
            plan.views_refresh.as_str()
        );
        for view in &plan.materialized_views {
            let _ = match (view.last_seconds, &view.measured_by) {
                (Some(seconds), Some(by)) => writeln!(out, "  - {}: {seconds:.3} s (by {by})", view.view),
                _ => writeln!(out, "  - {}: not measured yet (pgferry rehearse measures it)", view.view),
            };
        }
    }
    let _ = writeln!(out, "switch command: {}", plan.switch_command.as_deref().unwrap_or("none"));
    match &plan.parity {
        Some(parity) => out.push_str(&catalog_parity(parity)),
        None => {
            let _ = writeln!(
                out,
                "catalog parity: not compared now (it is once change capture runs and no stopped cutover, of this migration or another, holds a fence on the source)"
            );
        }
    }
    let _ = writeln!(out, "\n(dry run: nothing was changed)");
    out
}

/// The catalog parity gate's result: each difference (they stop the cutover) and warning.
fn catalog_parity(parity: &pgferry_core::parity::Parity) -> String {
    let mut out = String::new();
    match parity.differences.len() {
        0 => {
            let _ = writeln!(out, "catalog parity: the target's catalog matches the source's");
        }
        n => {
            let _ = writeln!(out, "catalog parity: {n} difference(s), each stops the cutover:");
            for d in &parity.differences {
                let _ = writeln!(out, "  - {d}");
            }
        }
    }
    for w in &parity.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    out
}

fn fence_change(change: &pgferry_core::fence::FenceChange) -> String {
    use pgferry_core::fence::FenceChange;
    match change {
        FenceChange::RevokedConnect { grantee, grantable } => format!(
            "CONNECT revoked from {}{}",
            grantee.as_deref().unwrap_or("PUBLIC"),
            if *grantable { " (held WITH GRANT OPTION)" } else { "" }
        ),
        FenceChange::GrantedConnect { grantee } => {
            format!("CONNECT granted to {grantee} for the fence (pgferry or an administrator)")
        }
        FenceChange::ReadOnly { previous } => format!(
            "new sessions read-only (default_transaction_read_only = on; before: {})",
            previous.as_deref().unwrap_or("not set")
        ),
    }
}

/// The migration's status, for people.
pub(crate) fn status(s: &Status) -> String {
    let mut out = String::new();
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "migration      {}", s.migration);
    let _ =
        writeln!(out, "phase          {}", s.phase.clone().unwrap_or_else(|| "not started (run pgferry copy)".into()));
    let _ = writeln!(out, "slot start     {}", or_none(&s.slot_lsn));
    let _ = writeln!(out, "applied        {} (at {})", or_none(&s.applied_lsn), or_none(&s.applied_at));
    if let Some(rate) = s.changes_per_second {
        let _ = writeln!(out, "throughput     {rate:.0} changes/s (change capture's last 5 s)");
    }
    let _ = writeln!(out, "source now     {}", s.source_lsn);
    if let Some(lag) = s.lag_bytes {
        let _ = writeln!(out, "lag            {}", human_bytes(lag));
    }
    if let Some(slot) = &s.slot {
        let headroom = match (slot.row.safe_wal_size, slot.row.wal_status.as_deref()) {
            (_, Some("lost")) => "none (lost)".to_string(),
            (Some(bytes), _) => human_bytes(bytes),
            (None, _) => "unlimited".into(),
        };
        let _ = writeln!(
            out,
            "slot           {}, retains {} of WAL, status {}, headroom {headroom}",
            if slot.active { "in use" } else { "idle" },
            human_bytes(slot.retained_wal_bytes),
            slot.row.wal_status.as_deref().unwrap_or("-")
        );
    }
    if let pgferry_core::slot::SlotVerdict::Lost { .. } = s.slot_verdict {
        let _ = writeln!(out, "slot           LOST: this migration cannot go on (see the WARNING below)");
    }
    match &s.validation {
        Some(v) => {
            let verdict = match (v.equal, v.verdict.as_deref()) {
                (true, _) => "equal".to_string(),
                (false, Some("NOT PROVEN")) => format!(
                    "NOT PROVEN ({} chunk(s) kept changing; differences that may be lag are not mismatches)",
                    v.changing_chunks
                ),
                (false, _) => format!("{} differing chunk(s)", v.mismatched_chunks),
            };
            let _ = writeln!(
                out,
                "validation     {} ({}, {} rows, at {})",
                verdict, v.mode, v.rows_compared, v.finished_at
            );
        }
        None => {
            let _ = writeln!(out, "validation     never run (pgferry validate)");
        }
    }
    let _ = writeln!(
        out,
        "changed rows   {} to re-check (pgferry validate --changed-only; the cutover checks them)",
        s.touched_rows
    );
    let _ = writeln!(out, "fence          {}", if s.fenced { "RAISED on the source" } else { "none" });
    if let Some(step) = &s.cutover_step {
        let _ = writeln!(out, "cutover step   {step}");
    }
    match (&s.cut_over, &s.cutover) {
        (Some(done), _) => {
            let _ = writeln!(out, "cutover        DONE: {done}");
        }
        (None, Decision::Go) => {
            let _ = writeln!(out, "cutover        would start now");
        }
        (None, Decision::NoGo(reasons)) => {
            let _ = writeln!(out, "cutover        not now:");
            for r in reasons {
                let _ = writeln!(out, "                 - {r}");
            }
        }
    }
    if !s.tables.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<44} {:>10} {:>10} {:>10} {:>10}",
            "table", "inserts", "updates", "deletes", "truncates"
        );
        for t in &s.tables {
            let _ = writeln!(
                out,
                "{:<44} {:>10} {:>10} {:>10} {:>10}",
                t.table, t.inserts, t.updates, t.deletes, t.truncates
            );
        }
    }
    for w in &s.warnings {
        let _ = writeln!(out, "\nWARNING: {w}");
    }
    out
}

/// The rehearsal: each step's time, the verdicts and the downtime to expect.
pub(crate) fn rehearsal(r: &Rehearsal) -> String {
    let mut out = String::new();
    match &r.decision {
        Decision::Go => {
            let _ = writeln!(out, "go/no-go       go");
        }
        Decision::NoGo(reasons) => {
            let _ = writeln!(out, "go/no-go       no go:");
            for reason in reasons {
                let _ = writeln!(out, "                 - {reason}");
            }
        }
    }
    let _ = writeln!(out, "drain          {:.3} s ({} change(s))", r.drain_seconds, r.changes_drained);
    let _ = writeln!(
        out,
        "large objects  {:.3} s ({} brought over now; the cutover brings only what changes again)",
        r.large_objects_seconds, r.large_objects_synced
    );
    let after = r.views_refresh == pgferry::materialized_views::ViewRefresh::AfterSwitch;
    let _ = writeln!(
        out,
        "mat. views     {:.3} s ({} refreshed; {})",
        r.materialized_views_seconds,
        r.materialized_views.len(),
        if after { "after the switch: not downtime" } else { "inside the fence" }
    );
    for view in &r.materialized_views {
        let _ = writeln!(out, "                 {} {:.3} s", view.view, view.seconds);
    }
    let _ = writeln!(out, "sequences      {:.3} s ({} present on both sides)", r.sequence_seconds, r.sequences);
    let _ = writeln!(
        out,
        "validation     {} in {:.1} s (outside the downtime; the changed rows, judged as the cutover will)",
        r.validation.verdict.as_str(),
        r.validation_seconds
    );
    for t in r.validation.tables.iter().filter(|t| t.verdict != Verdict::Equal) {
        let keys: Vec<&str> = t.differences.iter().map(|d| d.key.as_str()).collect();
        let _ = writeln!(out, "                 {} {}: keys {}", t.table, t.verdict.as_str(), keys.join(", "));
        for why in &t.unproven {
            let _ = writeln!(out, "                   {why}");
        }
    }
    let _ = writeln!(out, "switch         would run: {}", r.switch_command.as_deref().unwrap_or("(none given)"));
    let _ = writeln!(out, "\nexpected downtime: about {:.2} s", r.expected_downtime_seconds);
    if let Some(from) = &r.took_over_from {
        let _ = writeln!(out, "handed over by the running pgferry start ({from}): it resumes change capture now");
    }
    out
}

/// `seed prepare`: the slot, the marker, and what to do next.
pub(crate) fn seed_prepared(report: &pgferry::seed::PrepareReport) -> String {
    let mut out = String::new();
    let made = if report.created_slot { "created" } else { "exists (kept from an earlier run)" };
    let _ = writeln!(out, "slot {} {made}; consistent from {}", report.slot, report.consistent_lsn);
    let _ = writeln!(out, "marker committed at {}", report.marker_lsn);
    if !report.insert_only_tables.is_empty() {
        let _ = writeln!(
            out,
            "published for inserts and truncates only (no replica identity): {}",
            report.insert_only_tables.join(", ")
        );
    }
    if !report.unlogged_tables.is_empty() {
        let _ = writeln!(
            out,
            "unlogged, not replicated and empty in a physical copy: {}",
            report.unlogged_tables.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\nREADY: take the copy now (RDS snapshot, pg_basebackup, storage snapshot); then bring it up as the target and run\n  pgferry start --seeded --name {} --seed-log <the copy's server log>",
        report.migration
    );
    out
}

/// `start --seeded`: where change capture starts and what the copy inherited.
pub(crate) fn seed_attached(report: &pgferry::seed::AttachReport) -> String {
    let mut out = String::new();
    let verb = if report.attached_now { "seeded" } else { "already seeded" };
    let _ = writeln!(
        out,
        "migration {}: {verb}: the copy ends at {}; change capture sends every transaction committed after it",
        report.migration, report.redo_lsn
    );
    let inherited = &report.inherited;
    for (what, names) in [
        ("dropped inherited replication slots", &inherited.dropped_slots),
        ("dropped inherited publications", &inherited.dropped_publications),
        (
            "disabled inherited subscriptions (enable them after the cutover if wanted)",
            &inherited.disabled_subscriptions,
        ),
    ] {
        if !names.is_empty() {
            let _ = writeln!(out, "{what}: {}", names.join(", "));
        }
    }
    out
}

/// `pgferry roles`: what was created (or would be), what was left alone, and the passwords to set.
pub(crate) fn roles(report: &pgferry::roles::RolesReport) -> String {
    let mut out = String::new();
    let verb = if report.dry_run { "would run" } else { "ran" };
    if report.statements.is_empty() {
        let _ = writeln!(out, "nothing to do: every role of the source exists on the target");
    } else {
        let _ = writeln!(out, "{verb} on the target, in one transaction:");
        for statement in &report.statements {
            let _ = writeln!(out, "  {statement};");
        }
    }
    for role in report.created.iter().filter(|r| !r.attributes_left_out.is_empty()) {
        let _ = writeln!(
            out,
            "{}: created without {} (the target's user cannot give them; a superuser can, with ALTER ROLE)",
            role.name,
            role.attributes_left_out.join(", ")
        );
    }
    if !report.existing.is_empty() {
        let _ = writeln!(out, "on the target already, left as they are: {}", report.existing.join(", "));
    }
    for line in report.not_carried.iter().chain(&report.left_out) {
        let _ = writeln!(out, "not carried: {line}");
    }
    let login: Vec<&str> = report.created.iter().filter(|r| r.needs_password).map(|r| r.name.as_str()).collect();
    if !login.is_empty() {
        let _ = writeln!(
            out,
            "passwords are never copied (the source's hashes are not read; RDS lets nobody read them): set one on the target for {} (ALTER ROLE ... PASSWORD)",
            login.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::timings;

    #[test]
    fn timings_line_up_whatever_the_longest_label() {
        let mut out = String::new();
        timings(&mut out, "  ", &[("schema", 0.2), ("foreign keys, sequences and statistics", 12.25)], 1);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("  schema "), "{out}");
        assert!(lines[1].ends_with("12.2 s") || lines[1].ends_with("12.3 s"), "{out}");
        assert_eq!(lines[0].len(), lines[1].len(), "the seconds end in the same column:\n{out}");
    }
}
