//! The operator's commands (the switch, the outside fence), run with `sh -c`.
//!
//! Each runs in a process group of its own, so that a time limit, or pgferry
//! leaving by any path but `kill -9`, ends the whole command (its children
//! included) instead of leaving an orphan that could still switch the application
//! minutes after the cutover rolled back. A command's outcome is one of three:
//! it succeeded, it failed (non-zero exit), or it was stopped at its time limit;
//! in the last two pgferry knows it is no longer running.
//! See [setpgid(2)](https://man7.org/linux/man-pages/man2/setpgid.2.html).

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, ErrorKind, Result};

/// How long a command stopped at its time limit gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often what a command wrote is copied to pgferry's stderr.
const COPY_EVERY: Duration = Duration::from_millis(100);
/// The most of a command's output copied at once.
const COPIED_AT_ONCE: u64 = 1 << 20;

/// A command running in its own process group.
pub(crate) struct Running {
    child: tokio::process::Child,
    pid: i32,
    what: &'static str,
    /// Its output's file, and how much of it was copied to stderr.
    output: Option<(PathBuf, u64)>,
}

/// Starts `command` with `sh -c` in a new process group.
///
/// What it prints (stdout and stderr) goes to a file of its own, whose path is
/// logged at once, and pgferry copies it to its stderr as it comes: never to
/// stdout (the report: one JSON document under `--format json`), and never
/// through a pipe or terminal that could end the command midway (a reader of
/// pgferry's stderr gone, a `| tee` stopped by Ctrl-C or an SSH session
/// dropped, would kill a switch writing there with SIGPIPE or EIO while pgferry
/// still waits for it). The file stays when the command failed or pgferry was
/// killed (the evidence of how far a switch got); one that succeeded is removed.
/// Where no file can be made, the command writes to pgferry's stderr, said so.
/// Pagers are turned off (`PAGER=cat`, `AWS_PAGER` empty): in a process group
/// of its own, one waiting on the terminal would stop the command until its
/// time limit.
pub(crate) fn spawn(what: &'static str, command: &str) -> Result<Running> {
    let cannot_start = |e: std::io::Error| Error::new(ErrorKind::Precondition, format!("{what} could not start: {e}"));
    let mut sh = tokio::process::Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .env("PAGER", "cat")
        .env("AWS_PAGER", "");
    let output = match output_file() {
        Ok((path, file)) => {
            let shared = || file.try_clone().map_err(cannot_start);
            sh.stdout(shared()?).stderr(shared()?);
            Some(path)
        }
        Err(e) => {
            tracing::warn!(target: crate::events::LOGGED, "{what} writes to pgferry's stderr: no file for its output could be made ({e})");
            let stderr = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned().map_err(cannot_start)?;
            sh.stdout(stderr);
            None
        }
    };
    let child = sh.spawn().map_err(cannot_start)?;
    let pid = child.id().map_or(0, |id| id as i32);
    if let Some(path) = &output {
        tracing::info!(target: crate::events::LOGGED, "{what} (process group {pid}) writes its output to {}", path.display());
    }
    Ok(Running { child, pid, what, output: output.map(|path| (path, 0)) })
}

/// A new file for a command's output, in the temporary directory, named for
/// this process and the moment.
fn output_file() -> std::io::Result<(PathBuf, std::fs::File)> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = std::env::temp_dir().join(format!("pgferry-command-{}-{nanos}.log", std::process::id()));
    let file = std::fs::OpenOptions::new().append(true).create_new(true).mode(0o600).open(&path)?;
    Ok((path, file))
}

impl Running {
    /// The process group's id (the shell's pid).
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the command, at most `limit`, copying its output to stderr;
    /// past the limit the whole group is stopped (SIGTERM, then SIGKILL) and
    /// the result is an error saying so.
    pub(crate) async fn wait(mut self, limit: Duration) -> Result<()> {
        let waited = self.wait_copying(limit).await;
        self.copy_rest();
        if let Some((path, _)) = &self.output {
            match &waited {
                Ok(()) => {
                    let _ = std::fs::remove_file(path);
                }
                Err(_) => {
                    tracing::info!(target: crate::events::LOGGED, "{}'s output is kept in {}", self.what, path.display())
                }
            }
        }
        waited
    }

    async fn wait_copying(&mut self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        let status = loop {
            tokio::select! {
                status = self.child.wait() => {
                    break status.map_err(|e| Error::new(ErrorKind::Precondition, format!("waiting for {}: {e}", self.what)))?;
                }
                () = tokio::time::sleep(COPY_EVERY) => {
                    self.copy_output();
                }
            }
            if tokio::time::Instant::now() >= deadline {
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

    /// Copies what the command wrote since the last copy to pgferry's stderr,
    /// at most [`COPIED_AT_ONCE`]; an error (stderr gone) changes nothing for
    /// the command. Whether anything was copied.
    fn copy_output(&mut self) -> bool {
        let Some((path, copied)) = &mut self.output else { return false };
        let Ok(mut file) = std::fs::File::open(&*path) else { return false };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(*copied)).is_err() || file.take(COPIED_AT_ONCE).read_to_end(&mut bytes).is_err() {
            return false;
        }
        *copied += bytes.len() as u64;
        let _ = std::io::stderr().write_all(&bytes);
        !bytes.is_empty()
    }

    /// Copies the rest of the output once the command ended (bounded: a
    /// process that left its group may go on writing).
    fn copy_rest(&mut self) {
        for _ in 0..64 {
            if !self.copy_output() {
                break;
            }
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
