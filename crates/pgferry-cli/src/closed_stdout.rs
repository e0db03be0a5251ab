//! A reader that goes away (`pgferry status | head -3`) closes stdout under
//! pgferry. Rust ignores SIGPIPE so that a closed socket is an error rather than
//! death (pgferry must never die mid-cutover because a server went away), and
//! `print!` then panics on the broken pipe. Only stdout's pipe is meant here: the
//! panic it raises is turned into the quiet exit a shell tool makes when its
//! reader leaves (141, 128 + SIGPIPE), and every other panic is reported as before.

/// Installs the hook (once, before any output).
pub(crate) fn exit_quietly_when_closed() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}
