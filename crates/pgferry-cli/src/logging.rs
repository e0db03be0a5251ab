//! Log lines on stderr: one line per event, in the format a service's log
//! wants (`--log-format`).
//!
//! Two kinds of lines share stderr. pgferry's own events (progress, reconnects,
//! stop requests: target [`EVENTS`]) are always written; the library's tracing
//! diagnostics only as `-v` or `PGFERRY_LOG` asks. In `text`, events read
//! `pgferry: message key=value ...` and diagnostics are tracing's plain lines,
//! with colour only when stderr is a terminal; in `json`, every line is one JSON
//! object with `timestamp`, `level`, `message` and the event's fields, the
//! final error included. Progress bars are drawn only on a terminal and never
//! in `json` ([`crate::progress`]).

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::ValueEnum;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The tracing target of pgferry's own events.
pub(crate) const EVENTS: &str = pgferry::events::LOGGED;

/// How lines on stderr are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Plain lines: `pgferry: message key=value`, and tracing's own for diagnostics.
    Text,
    /// One JSON object per line.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Whether lines are JSON (and nothing else may be written to stderr).
pub(crate) fn json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// Sets up logging to stderr; `verbose` (-v, -vv) widens the diagnostics.
pub(crate) fn init(verbose: u8, format: LogFormat) {
    let _ = FORMAT.set(format);
    let default = match verbose {
        0 => "warn",
        1 => "info,pgferry=info",
        _ => "debug",
    };
    let diagnostics = EnvFilter::try_from_env("PGFERRY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default))
        .and(filter_fn(|meta| meta.target() != EVENTS));
    let events = filter_fn(|meta| meta.target() == EVENTS && *meta.level() <= Level::INFO);
    let layers = match format {
        LogFormat::Text => vec![
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(diagnostics)
                .boxed(),
            fmt::layer().with_writer(std::io::stderr).with_ansi(false).event_format(Plain).with_filter(events).boxed(),
        ],
        LogFormat::Json => vec![
            fmt::layer().with_writer(std::io::stderr).json().flatten_event(true).with_filter(diagnostics).boxed(),
            fmt::layer().with_writer(std::io::stderr).json().flatten_event(true).with_filter(events).boxed(),
        ],
    };
    tracing_subscriber::registry().with(layers).init();
}

/// The command's error, as its last line(s) on stderr.
pub(crate) fn error(err: &pgferry::Error) {
    if json() {
        match &err.hint {
            Some(hint) => tracing::error!(target: EVENTS, hint = %hint, "{}", err.message),
            None => tracing::error!(target: EVENTS, "{}", err.message),
        }
        return;
    }
    // Written, not printed: a reader of stderr gone (`2>&1 | tee` stopped)
    // must not turn the documented exit code into a panic's.
    use std::io::Write;
    let mut stderr = std::io::stderr();
    let _ = writeln!(stderr, "error: {}", err.message);
    if let Some(hint) = &err.hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
}

/// `pgferry: [span fields] message key=value ...`, one line, without escapes.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        write!(writer, "pgferry: ")?;
        // The spans' fields first: `database=shop` under `--all-databases`.
        for span in ctx.event_scope().into_iter().flat_map(|scope| scope.from_root()) {
            if let Some(fields) = span.extensions().get::<FormattedFields<N>>().filter(|f| !f.is_empty()) {
                write!(writer, "{fields} ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
