//! The cloud journal: every AWS call pgferry makes, as intent, call and outcome.
//!
//! The target database does not exist before the restore, so unlike the
//! database journal this one is a local file: JSON lines in
//! `<state dir>/aws-journal.jsonl`, appended and synced before and after each
//! call. A rerun reads it to know which resources are pgferry's (an intent was
//! written before their creation) and what was decided (the key, the source's
//! security groups before the fence); whether a call took effect is read from
//! the cloud itself, never assumed from the file. Entries hold identifiers and
//! settings only, never credentials.
//!
//! One command at a time acts on a migration's journal: [`Journal::open_for`]
//! holds an exclusive `flock(2)` on `<state dir>/lock` until the journal is
//! dropped (the kernel releases it when the process ends, also on `kill -9`),
//! so a second `aws encrypt` (or `fence`, `switch`, `finish`) started on the
//! same migration is refused instead of making the same calls a second time.
//! `aws fence --lift` waits (up to five minutes) instead: after a cutover was
//! killed while its fence command ran, that command may still be running, and
//! the rerun's lift must come after it, not be refused (and the fence then
//! raised by it behind the lift).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgferry::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const FILE: &str = "aws-journal.jsonl";
/// The file whose lock says a command is acting on the journal; it holds that process's id.
const LOCK: &str = "lock";
/// The name of the migration whose journal the directory holds.
const MIGRATION_MARK: &str = "migration";

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// About to call; the detail is what will be asked.
    Intent,
    /// The cloud accepted the call (or a rerun found its effect in the cloud).
    Call,
    /// The resource reached the state the step waits for; the detail is the result.
    Outcome,
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub step: String,
    pub event: Event,
    /// The AWS identifier the call is about.
    pub resource: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// The journal of one migration.
pub struct Journal {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Held from [`Journal::open_for`] until the journal is dropped.
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Usage, format!("{what} {}: {e}", path.display()))
        .with_hint("--state-dir must be a writable directory kept between runs of the same migration")
}

/// Takes the exclusive lock on `dir`'s journal, or says which process holds it.
fn lock(dir: &Path, migration: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek};
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error("cannot open", &path, e))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut held) => {
            let written = held
                .set_len(0)
                .and_then(|()| held.rewind())
                .and_then(|()| held.write_all(format!("{}\n", std::process::id()).as_bytes()));
            written.map_err(|e| io_error("cannot write", &path, e))?;
            Ok(held)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (process {pid})"),
            };
            Err(Error::new(
                ErrorKind::Refused,
                format!("another pgferry aws command is acting on migration {migration}{holder}: its journal in {} is held; nothing was done", dir.display()),
            )
            .with_hint("wait for it to end (or stop it), then rerun; two commands at once would make the same cloud calls twice"))
        }
        Err((_, errno)) => Err(io_error("cannot lock", &path, std::io::Error::from(errno))),
    }
}

impl Journal {
    /// Opens (creating the directory if needed) and reads the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error("cannot read", &path, e)),
        };
        // A line cut short by a crash mid-write is the last one, without its newline:
        // drop it, so that the next entry starts on a line of its own.
        let whole = text.rfind('\n').map_or(0, |end| end + 1);
        if whole < text.len() {
            tracing::warn!(path = %path.display(), "dropping a journal line cut short by a crash");
            let file = OpenOptions::new().write(true).open(&path).map_err(|e| io_error("cannot open", &path, e))?;
            file.set_len(whole as u64).map_err(|e| io_error("cannot repair", &path, e))?;
        }
        let mut entries = Vec::new();
        for (n, line) in text[..whole].lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let entry = serde_json::from_str(line).map_err(|e| {
                Error::new(ErrorKind::Usage, format!("{} line {}: {e}", path.display(), n + 1))
                    .with_hint("the journal was edited by hand; restore it from a backup")
            })?;
            entries.push(entry);
        }
        Ok(Journal { path, entries, _lock: None })
    }

    /// Opens the journal of `migration` in `dir`. The directory is marked with
    /// the migration's name when first used: one that holds another
    /// migration's journal is refused, since a shared journal would make one
    /// migration adopt the other's resources, slots and target. A directory of
    /// an earlier release (no mark) is marked by the first migration to open it.
    ///
    /// The journal is held for this process alone ([`lock`]).
    pub fn open_for(dir: &Path, migration: &str) -> Result<Journal> {
        Journal::open_for_waiting(dir, migration, std::time::Duration::ZERO)
    }

    /// [`Journal::open_for`], waiting up to `wait` for another process that
    /// holds the journal to end.
    pub fn open_for_waiting(dir: &Path, migration: &str, wait: std::time::Duration) -> Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let deadline = std::time::Instant::now() + wait;
        let held = loop {
            match lock(dir, migration) {
                Err(e) if e.kind == ErrorKind::Refused && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                held => break held?,
            }
        };
        let journal = Journal { _lock: Some(held), ..Journal::open(dir)? };
        let mark = dir.join(MIGRATION_MARK);
        match std::fs::read_to_string(&mark) {
            Ok(owner) if owner.trim() == migration => Ok(journal),
            Ok(owner) => Err(Error::new(
                ErrorKind::Usage,
                format!("{} holds the journal of migration {}, not {migration}", dir.display(), owner.trim()),
            )
            .with_hint(format!(
                "give each migration its own --state-dir (the default is pgferry-state/<name>), or rerun with --name {}",
                owner.trim()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(&mark, format!("{migration}\n")).map_err(|e| io_error("cannot write", &mark, e))?;
                Ok(journal)
            }
            Err(e) => Err(io_error("cannot read", &mark, e)),
        }
    }

    /// Appends one entry and syncs it to disk before returning.
    pub fn record(&mut self, step: &str, event: Event, resource: &str, detail: Value) -> Result<()> {
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let entry = Entry { at, step: step.to_owned(), event, resource: resource.to_owned(), detail };
        let mut line = serde_json::to_string(&entry).expect("an entry serializes");
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io_error("cannot open", &self.path, e))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error("cannot write", &self.path, e))?;
        tracing::debug!(step, ?event, resource, "journaled");
        self.entries.push(entry);
        Ok(())
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The last entry of `step` with this event.
    pub fn last(&self, step: &str, event: Event) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.step == step && e.event == event)
    }

    /// The step's outcome, once it has one.
    pub fn outcome(&self, step: &str) -> Option<&Value> {
        self.last(step, Event::Outcome).map(|e| &e.detail)
    }

    /// The outcome of `step` for this resource (a database of the instance), once it has one.
    pub fn outcome_of(&self, step: &str, resource: &str) -> Option<&Value> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.step == step && e.resource == resource && e.event == Event::Outcome)
            .map(|e| &e.detail)
    }

    /// An intent for this resource was written: pgferry asked for it.
    pub fn intended(&self, step: &str, resource: &str) -> bool {
        self.entries.iter().any(|e| e.step == step && e.resource == resource && e.event == Event::Intent)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_stored_format_is_stable() {
        let entry = Entry {
            at: 1_764_307_800,
            step: "encrypted-copy".into(),
            event: Event::Intent,
            resource: "pgferry-main-encrypted".into(),
            detail: json!({"source": "pgferry-main-snapshot", "kms_key": "arn:aws:kms:us-east-1:123456789012:key/k"}),
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"at":1764307800,"step":"encrypted-copy","event":"intent","resource":"pgferry-main-encrypted","detail":{"kms_key":"arn:aws:kms:us-east-1:123456789012:key/k","source":"pgferry-main-snapshot"}}"#
        );
        let bare = r#"{"at":1,"step":"restore","event":"outcome","resource":"db-new"}"#;
        let read: Entry = serde_json::from_str(bare).unwrap();
        assert_eq!((read.event, &read.detail), (Event::Outcome, &Value::Null));
        assert_eq!(serde_json::to_string(&read).unwrap(), bare);
    }

    #[test]
    fn a_directory_holding_another_migrations_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Journal::open_for(dir.path(), "first").unwrap().record("plan", Event::Intent, "db", Value::Null).unwrap();
        assert_eq!(Journal::open_for(dir.path(), "first").unwrap().entries().len(), 1);
        let err = Journal::open_for(dir.path(), "second").err().expect("another migration's journal is refused");
        assert_eq!(err.kind, ErrorKind::Usage);
        assert!(err.message.contains("holds the journal of migration first, not second"), "{}", err.message);
        assert!(err.hint.unwrap().contains("--name first"));
        // An earlier release's directory, unmarked, is the first opener's.
        let earlier = tempfile::tempdir().unwrap();
        Journal::open(earlier.path()).unwrap().record("plan", Event::Intent, "db", Value::Null).unwrap();
        assert_eq!(Journal::open_for(earlier.path(), "main").unwrap().entries().len(), 1);
        assert!(Journal::open_for(earlier.path(), "other").is_err());
    }

    #[test]
    fn one_command_at_a_time_holds_a_migrations_journal() {
        let dir = tempfile::tempdir().unwrap();
        let held = Journal::open_for(dir.path(), "main").unwrap();
        let err = Journal::open_for(dir.path(), "main").err().expect("a second opener is refused");
        assert_eq!(err.kind, ErrorKind::Refused);
        let pid = std::process::id();
        assert!(
            err.message.contains(&format!("another pgferry aws command is acting on migration main (process {pid})")),
            "{}",
            err.message
        );
        // One that waits gets it once the holder lets go.
        let path = dir.path().to_path_buf();
        let waiting = std::thread::spawn(move || {
            Journal::open_for_waiting(&path, "main", std::time::Duration::from_secs(5)).map(|_| ())
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(held);
        waiting.join().unwrap().unwrap();
        Journal::open_for(dir.path(), "main").unwrap().record("plan", Event::Intent, "db", Value::Null).unwrap();
    }

    #[test]
    fn entries_survive_a_reopen_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.record("snapshot", Event::Intent, "s", json!({"instance": "db"})).unwrap();
        journal.record("snapshot", Event::Outcome, "s", Value::Null).unwrap();
        let mut file = OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap();
        file.write_all(b"{\"at\":3,\"step\":\"resto").unwrap();
        let mut reopened = Journal::open(dir.path()).unwrap();
        assert_eq!(reopened.entries().len(), 2);
        reopened.record("restore", Event::Intent, "db-new", Value::Null).unwrap();
        assert_eq!(Journal::open(dir.path()).unwrap().entries().len(), 3);
        assert!(reopened.intended("snapshot", "s"));
        assert!(reopened.outcome("snapshot").is_some());
        assert!(reopened.outcome("restore").is_none());
        assert!(reopened.last("restore", Event::Intent).is_some());
    }
}
