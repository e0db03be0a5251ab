//! Named failpoints, for tests that kill pgferry at a step boundary.
//!
//! `PGFERRY_FAILPOINT=<name>:<n>` makes the process exit at once, as abruptly as a
//! `kill -9` (no destructors, no cleanup, exit status 137), the `n`-th time the
//! failpoint `<name>` is passed (1-based). Tests set it on the `pgferry` binary,
//! rerun without it, and compare the outcome with an uninterrupted run. Unset, a
//! failpoint costs one environment look-up per process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Parsed once: the armed failpoint's name and the pass that fires it.
fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED.get_or_init(|| armed_by("PGFERRY_FAILPOINT")).as_ref()
}

/// A point's name and pass, `<name>:<n>`, from the environment variable `var`.
fn armed_by(var: &str) -> Option<(String, u64)> {
    let value = std::env::var(var).ok()?;
    let (name, n) = value.rsplit_once(':')?;
    Some((name.to_string(), n.parse().ok()?))
}

static PASSES: AtomicU64 = AtomicU64::new(0);

/// Marks a step boundary named `name`; exits the process here when armed.
pub fn hit(name: &str) {
    let Some((armed_name, at)) = armed() else { return };
    if armed_name != name {
        return;
    }
    if PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *at {
        eprintln!("failpoint {name}:{at} reached: exiting as if killed");
        std::process::exit(137);
    }
}

/// Marks a point where a test injects a failure that the servers cannot be
/// made to produce on demand (a PostgreSQL bug). `PGFERRY_FAULT=<name>:<n>`
/// makes it return true the `n`-th time the point `<name>` is passed; unset,
/// it costs one environment look-up per process.
pub fn fault(name: &str) -> bool {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);
    match ARMED.get_or_init(|| armed_by("PGFERRY_FAULT")) {
        Some((armed_name, at)) if armed_name == name => PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *at,
        _ => false,
    }
}

/// Marks a point where a test needs pgferry to wait while it acts on the
/// servers. `PGFERRY_PAUSE=<name>:<dir>` makes the process, on reaching the pause
/// `<name>`, create `<dir>/<name>.reached` and wait until `<dir>/<name>.go`
/// exists; `<name>,<name>:<dir>` pauses at each of them. Unset, a pause costs
/// one environment look-up.
pub async fn pause(name: &str) {
    let Ok(value) = std::env::var("PGFERRY_PAUSE") else { return };
    let Some((paused, dir)) = value.split_once(':') else { return };
    if !paused.split(',').any(|p| p == name) {
        return;
    }
    let dir = std::path::Path::new(dir);
    if let Err(e) = std::fs::write(dir.join(format!("{name}.reached")), b"") {
        eprintln!("pause {name}: cannot mark it reached: {e}");
        return;
    }
    let go = dir.join(format!("{name}.go"));
    while !go.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
