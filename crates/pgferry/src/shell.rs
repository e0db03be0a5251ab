//! The operator's commands (the switch, the outside fence), run with `sh -c`.
//!
//! Each runs in a process group of its own, so that a time limit, or pgferry
//! leaving by any path but `kill -9`, ends the whole command (its children
//! included) instead of leaving an orphan that could still switch the application
//! minutes after the cutover rolled back. A command's outcome is one of three:
//! it succeeded, it failed (non-zero exit), or it was stopped at its time limit;
//! in the last two pgferry knows it is no longer running.
//! See [setpgid(2)](https://man7.org/linux/man-pages/man2/setpgid.2.html).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, ErrorKind, Result};

/// How long a command stopped at its time limit gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often what a command wrote is copied to pgferry's stderr.
const COPY_EVERY: Duration = Duration::from_millis(100);
/// How long the end of a command's output is copied for once it ended.
const LAST_COPY_WITHIN: Duration = Duration::from_secs(1);

/// A command running in its own process group.
pub(crate) struct Running {
    child: tokio::process::Child,
    pid: i32,
    what: &'static str,
    /// Its output's file and the thread copying it to stderr.
    output: Option<Output>,
}

/// A command's output file, copied to pgferry's stderr by a thread of its own
/// (the command itself never writes to stderr, so a stderr that blocks or went
/// away never stops or ends it).
struct Output {
    path: PathBuf,
    /// Set once the command ended: the copier copies what is left and stops.
    ended: Arc<AtomicBool>,
    /// Set when a write to stderr failed: the output reached nobody, so the
    /// file is kept.
    lost: Arc<AtomicBool>,
    copier: Option<std::thread::JoinHandle<()>>,
}

/// Starts `command` with `sh -c` in a new process group.
///
/// What it prints (stdout and stderr) goes to a file of its own, whose path is
/// logged at once, and a thread copies it to pgferry's stderr as it comes: never
/// to stdout (the report: one JSON document under `--format json`; on stderr the
/// command's lines are its own, not JSON), and never through a pipe or terminal
/// that could end the command midway (a reader of pgferry's stderr gone, a `|
/// tee` stopped by Ctrl-C, would kill a switch writing there with SIGPIPE while
/// pgferry still waits for it). The file stays when the command failed, when
/// its output reached nobody, or when pgferry was killed (the evidence of how
/// far a switch got); otherwise it is removed. Where no file can be made, the
/// command writes to pgferry's stderr, said so. Pagers are turned off
/// (`PAGER=cat`, `AWS_PAGER` empty): in a process group of its own, one waiting
/// on the terminal would stop the command until its time limit.
pub(crate) fn spawn(what: &'static str, command: &str) -> Result<Running> {
    let cannot_start = |e: std::io::Error| Error::new(ErrorKind::Precondition, format!("{what} could not start: {e}"));
    let mut sh = tokio::process::Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .env("PAGER", "cat")
        .env("AWS_PAGER", "");
    let file = match output_file() {
        Ok((path, writer, reader)) => match writer.try_clone() {
            Ok(err) => {
                sh.stdout(writer).stderr(err);
                Some((path, reader))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(cannot_start(e));
            }
        },
        Err(e) => {
            tracing::warn!(target: crate::events::LOGGED, "{what} writes to pgferry's stderr: no file for its output could be made ({e})");
            let stderr = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned().map_err(cannot_start)?;
            sh.stdout(stderr);
            None
        }
    };
    let child = match sh.spawn() {
        Ok(child) => child,
        Err(e) => {
            if let Some((path, _)) = &file {
                let _ = std::fs::remove_file(path);
            }
            return Err(cannot_start(e));
        }
    };
    let pid = child.id().map_or(0, |id| id as i32);
    let output = file.map(|(path, file)| {
        tracing::info!(target: crate::events::LOGGED, "{what} (process group {pid}) writes its output to {}", path.display());
        let (ended, lost) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let copier = {
            let (ended, lost) = (ended.clone(), lost.clone());
            std::thread::Builder::new().name("command-output".into()).spawn(move || copy(file, &ended, &lost)).ok()
        };
        // No copier: the output reaches nobody, and its file is kept.
        lost.store(copier.is_none(), Ordering::Release);
        Output { path, ended, lost, copier }
    });
    Ok(Running { child, pid, what, output })
}

/// A new file for a command's output (mode 0600, never an existing path), in
/// the temporary directory, named for this process: its path, the file the
/// command writes to, and a reader of its own (its own offset: the command's
/// writes move the writer's).
fn output_file() -> std::io::Result<(PathBuf, std::fs::File, std::fs::File)> {
    let file = tempfile::Builder::new()
        .prefix(&format!("pgferry-command-{}-", std::process::id()))
        .suffix(".log")
        .append(true)
        .tempfile()?;
    let reader = file.reopen()?;
    let (writer, path) = file.keep().map_err(|e| e.error)?;
    Ok((path, writer, reader))
}

/// Copies `file` to stderr as it grows, until the command ended and all of it
/// was copied, or [`LAST_COPY_WITHIN`] after it ended (a process that left the
/// group may go on writing). Parked between reads: [`Running::wait`] wakes it
/// once the command ended.
fn copy(mut file: std::fs::File, ended: &AtomicBool, lost: &AtomicBool) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut ended_at = None;
    loop {
        // `ended` is looked at before reading: a read that finds nothing after
        // the command ended means all it wrote was copied.
        if ended.load(Ordering::Acquire) {
            let since = *ended_at.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > LAST_COPY_WITHIN {
                return;
            }
        }
        match file.read(&mut buffer) {
            Ok(0) | Err(_) if ended_at.is_some() => return,
            Ok(0) | Err(_) => std::thread::park_timeout(COPY_EVERY),
            Ok(n) => {
                if std::io::stderr().write_all(&buffer[..n]).is_err() {
                    lost.store(true, Ordering::Release);
                }
            }
        }
    }
}

impl Running {
    /// The process group's id (the shell's pid).
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the command, at most `limit`, its output copied to stderr as it
    /// comes; past the limit the whole group is stopped (SIGTERM, then SIGKILL)
    /// and the result is an error saying so.
    pub(crate) async fn wait(mut self, limit: Duration) -> Result<()> {
        let waited = self.wait_within(limit).await;
        if let Some(output) = &mut self.output {
            output.ended.store(true, Ordering::Release);
            // The copier's end, awaited without blocking the runtime (a copier
            // stuck on a stalled stderr is left behind, detached).
            let mut copied = false;
            if let Some(copier) = output.copier.take() {
                copier.thread().unpark();
                let deadline = tokio::time::Instant::now() + LAST_COPY_WITHIN + COPY_EVERY;
                while !copier.is_finished() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                copied = copier.is_finished();
            }
            let empty = std::fs::metadata(&output.path).is_ok_and(|m| m.len() == 0);
            if empty || (waited.is_ok() && copied && !output.lost.load(Ordering::Acquire)) {
                let _ = std::fs::remove_file(&output.path);
            } else {
                tracing::info!(target: crate::events::LOGGED, "{}'s output is kept in {}", self.what, output.path.display());
            }
        }
        waited
    }

    async fn wait_within(&mut self, limit: Duration) -> Result<()> {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => {
                status.map_err(|e| Error::new(ErrorKind::Precondition, format!("waiting for {}: {e}", self.what)))?
            }
            Err(_) => {
                self.stop_group().await;
                return Err(Error::new(
                    ErrorKind::Precondition,
                    format!("{} did not finish within {} s and was stopped", self.what, limit.as_secs()),
                ));
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Precondition, format!("{} failed ({status})", self.what)))
        }
    }

    async fn stop_group(&mut self) {
        signal_group(self.pid, Signal::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, self.child.wait()).await.is_err() {
            signal_group(self.pid, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        // The shell may be gone while its children are not.
        signal_group(self.pid, Signal::SIGKILL);
    }
}

impl Drop for Running {
    /// A command pgferry stops waiting for (an error or a panic on the way) must
    /// not go on by itself.
    fn drop(&mut self) {
        if self.pid > 0 && is_alive(self.pid) {
            signal_group(self.pid, Signal::SIGKILL);
        }
        // The copier copies what is left and stops; the file stays, said so.
        if let Some(output) = self.output.as_ref().filter(|o| o.copier.is_some()) {
            output.ended.store(true, Ordering::Release);
            tracing::info!(target: crate::events::LOGGED, "{}'s output is kept in {}", self.what, output.path.display());
        }
    }
}

/// Runs `command` to its end, at most `limit`.
pub(crate) async fn run(what: &'static str, command: &str, limit: Duration) -> Result<()> {
    spawn(what, command)?.wait(limit).await
}

/// Whether any process of the group `pgid` is still running on this machine. A
/// zombie does not count: an orphan's exit status may wait a long time for a
/// reaper (in a container, PID 1 may never reap it).
pub(crate) fn is_alive(pgid: i32) -> bool {
    if pgid <= 0 || killpg(Pid::from_raw(pgid), None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// Signals the group pgferry created; an error (the group is gone) is harmless.
fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}
