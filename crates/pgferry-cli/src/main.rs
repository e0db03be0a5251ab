//! The `pgferry` command. It parses arguments, sets up logging to stderr, runs one
//! library executor and renders its result to stdout; only this crate draws output.
//!
//! Exit codes: 0 success (for `check`: the pair is ready), 1 the command ran and
//! found problems (for `check`: findings that block a migration), or refused to
//! run having changed nothing (`ErrorKind::Refused`: a preflight, a tool, a
//! runner already there, source and target the same database, ...), 2 usage,
//! configuration or connection errors, 3 a failure while changing a server (a
//! rerun resumes), 4 a validation (`validate`, `rehearse`) that is NOT PROVEN:
//! nothing found different, not everything proven equal (rows that kept
//! changing, differences that may be lag); `validate` and `rehearse` exit 0
//! for EQUAL and 1 for DIFFERENT; 5 the migration's replication slot is lost
//! (`ErrorKind::SlotLost`: dropped or invalidated; `follow`, `start`, `status`,
//! `validate`; abort, then copy or seed again); `demo` stopped by SIGINT or SIGTERM exits 130 or 143 after
//! removing its clusters; 141 when the reader of stdout went away (`| head`).

mod aws;
mod cli;
mod closed_stdout;
mod commands;
mod config;
mod demo;
mod follow;
mod instance;
mod logging;
mod metrics;
mod open_files;
mod progress;
mod render;
mod report;
mod signals;
mod start;
mod target;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system's malloc: change capture allocates and frees
/// small buffers for every value of every row, and a profile of a 1-million-row
/// transaction applied showed glibc's malloc and free (chunk consolidation
/// above all) taking a third of pgferry's CPU (`bench/RESULTS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    closed_stdout::exit_quietly_when_closed();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(err) = config::load(&args) {
        eprintln!("error: {}", err.message);
        eprintln!("hint: write the file as key = value lines (source, target, name, jobs, ...); see pgferry --help");
        return ExitCode::from(commands::exit_code(err.kind));
    }
    let cli = cli::Cli::parse_from(args);
    logging::init(cli.verbose, cli.log_format);
    open_files::raise_limit();
    // One thread: pgferry's work is waiting on sockets, and on a small machine the
    // servers it drives need the cores more than it does (measured: a third less
    // client CPU than a multi-threaded runtime for the same copy).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("start the async runtime");
    match runtime.block_on(commands::run(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            logging::error(&err);
            ExitCode::from(commands::exit_code(err.kind))
        }
    }
}
