//! The operator's commands (the switch, the outside fence), run with `sh -c`.
//!
//! Each runs in a process group of its own, so that a time limit, or pgferry
//! leaving by any path but `kill -9`, ends the whole command (its children
//! included) instead of leaving an orphan that could still switch the application
//! minutes after the cutover rolled back. A command's outcome is one of three:
//! it succeeded, it failed (non-zero exit), or it was stopped at its time limit;
//! in the last two pgferry knows it is no longer running.
//! See [setpgid(2)](https://man7.org/linux/man-pages/man2/setpgid.2.html).

use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, ErrorKind, Result};

/// How long a command stopped at its time limit gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A command running in its own process group.
pub(crate) struct Running {
    child: tokio::process::Child,
    pid: i32,
    what: &'static str,
}

/// Starts `command` with `sh -c` in a new process group. What it prints goes
/// to pgferry's stderr as it comes, beside the log (under `--log-format json`
/// its lines are its own, not JSON): stdout holds pgferry's report alone (one
/// JSON document under `--format json`). A kill of pgferry leaves it running
/// and still writing there. Pagers are turned off (`PAGER=cat`, `AWS_PAGER`
/// empty): in a process group of its own, one waiting on the terminal would
/// stop the command until its time limit.
pub(crate) fn spawn(what: &'static str, command: &str) -> Result<Running> {
    let cannot_start = |e: std::io::Error| Error::new(ErrorKind::Precondition, format!("{what} could not start: {e}"));
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().map_err(cannot_start)?;
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(stderr)
        .env("PAGER", "cat")
        .env("AWS_PAGER", "")
        .spawn()
        .map_err(cannot_start)?;
    let pid = child.id().map_or(0, |id| id as i32);
    Ok(Running { child, pid, what })
}

impl Running {
    /// The process group's id (the shell's pid).
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the command, at most `limit`; past it the whole group is stopped
    /// (SIGTERM, then SIGKILL) and the result is an error saying so.
    pub(crate) async fn wait(mut self, limit: Duration) -> Result<()> {
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
