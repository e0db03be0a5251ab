//! SIGINT and SIGTERM as a stop request: the library finishes or rolls back the
//! step at hand and returns a summary, instead of the process dying wherever it is.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use pgferry::{Error, ErrorKind, Result};

/// What a second signal does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Second {
    /// Exit at once (safe where everything committed is journaled: copy, follow).
    Exits,
    /// Only repeat the message: the cutover must see its rollback or its switch
    /// command through, or the source could stay fenced or the application split.
    Waits,
}

/// Installs the handlers; the receiver turns true at the first signal, whose
/// arrival is announced on stderr with `first`.
pub(crate) fn stop_on_signals(first: &'static str, second: Second) -> Result<watch::Receiver<bool>> {
    let signal_error = |e: std::io::Error| Error::new(ErrorKind::Usage, format!("installing signal handlers: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if round > 0 && second == Second::Exits {
                std::process::exit(143);
            }
            tracing::info!(target: crate::logging::EVENTS, "{first}");
            let _ = stop.send(true);
        }
    });
    Ok(stopped)
}
