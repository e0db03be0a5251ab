//! Drawing the copy's progress: bars on a terminal, a log line every few seconds
//! otherwise. The library only emits events; this is the one place that draws.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pgferry::copy::CopyEvent;
use pgferry::events::{Event, Observer};
use pgferry_core::preflight::human_bytes;
use tracing::info;

use crate::logging::EVENTS;

const LOG_EVERY: Duration = Duration::from_secs(5);

struct State {
    total_bytes: u64,
    done_bytes: u64,
    rows: u64,
    started: Instant,
    last_log: Instant,
    overall: Option<ProgressBar>,
    tables: HashMap<String, ProgressBar>,
}

/// The copy's progress display.
pub(crate) struct CopyView {
    bars: Option<MultiProgress>,
    state: Arc<Mutex<State>>,
}

impl CopyView {
    /// Bars on a terminal unless `log_lines` (a service's log wants lines) or
    /// the lines are JSON.
    pub(crate) fn new(log_lines: bool) -> Self {
        let bars = (!log_lines && !crate::logging::json() && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let now = Instant::now();
        CopyView {
            bars,
            state: Arc::new(Mutex::new(State {
                total_bytes: 0,
                done_bytes: 0,
                rows: 0,
                started: now,
                last_log: now,
                overall: None,
                tables: HashMap::new(),
            })),
        }
    }

    pub(crate) fn finish(&self) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = &s.overall {
            bar.finish_and_clear();
        }
        for bar in s.tables.values() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for CopyView {
    fn observe(&self, event: &Event) {
        if let Event::Copy(event) = event {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            handle(&mut s, self.bars.as_ref(), event);
        }
    }
}

fn handle(s: &mut State, bars: Option<&MultiProgress>, event: &CopyEvent) {
    match event {
        CopyEvent::Phase { phase } => info!(target: EVENTS, "{phase}"),
        CopyEvent::Planned { tables, units, bytes } => {
            s.total_bytes = (*bytes).max(0) as u64;
            info!(target: EVENTS, "copying {tables} table(s) in {units} piece(s), about {}", human_bytes(*bytes));
            if let Some(bars) = bars {
                let bar = bars.add(ProgressBar::new(s.total_bytes));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix("all tables");
                s.overall = Some(bar);
            }
        }
        CopyEvent::ChunkStarted { table, chunk, chunks } => {
            if let Some(bars) = bars {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>12} {msg} {bytes} {bytes_per_sec}").expect("valid template"),
                );
                bar.set_prefix("copying");
                bar.set_message(format!("{table} [{}/{chunks}]", chunk + 1));
                s.tables.insert(format!("{table}#{chunk}"), bar);
            }
        }
        CopyEvent::Bytes { table, bytes } => {
            s.done_bytes += bytes;
            if let Some(bar) = &s.overall {
                bar.inc(*bytes);
            }
            if let Some(bar) = s.tables.iter().find(|(k, _)| k.starts_with(&format!("{table}#"))).map(|(_, b)| b) {
                bar.inc(*bytes);
            }
            if bars.is_none() && s.last_log.elapsed() >= LOG_EVERY {
                s.last_log = Instant::now();
                let secs = s.started.elapsed().as_secs_f64().max(0.001);
                info!(
                    target: EVENTS,
                    "{} of {} copied, {} rows done, {}/s",
                    human_bytes(s.done_bytes as i64),
                    human_bytes(s.total_bytes as i64),
                    s.rows,
                    human_bytes((s.done_bytes as f64 / secs) as i64)
                );
            }
        }
        CopyEvent::ChunkDone { table, chunk, rows, .. } => {
            s.rows += rows;
            if let Some(bar) = s.tables.remove(&format!("{table}#{chunk}")) {
                bar.finish_and_clear();
            }
        }
        CopyEvent::TableDone { .. } => {}
        CopyEvent::Kept { table } => info!(target: EVENTS, "{table} was copied by an earlier run: kept"),
    }
}
