//! pgferry's error, sorted by what the caller should do about it.
//!
//! The CLI prints the message once, then the hint on its own line, and picks the
//! exit code from the [`ErrorKind`].

use pgferry_pg::{ConnSpecError, ConnectError};

/// What the operator should do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorKind {
    /// Fix the command line or configuration; nothing was changed.
    Usage,
    /// Make the server reachable or fix the credentials; nothing was changed.
    Connection,
    /// A check refused the command before it changed anything: fix what the
    /// message names (each with its fix) and run it again.
    Refused,
    /// A server is not in the state this step needs; the message says which.
    Precondition,
    /// A statement failed on a server; what ran before it is kept and a rerun resumes.
    Server,
    /// Stopped by SIGINT/SIGTERM; the message says what was left as it was or put back.
    Interrupted,
    /// The migration's replication slot is gone (dropped, or invalidated by the
    /// source): no rerun helps; abort, then copy or seed again (the hint says how).
    SlotLost,
}

/// An error with its cause and a hint.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Wraps a failed statement with what pgferry was doing.
    pub fn server(doing: &str, error: tokio_postgres::Error) -> Self {
        let detail = match error.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => error.to_string(),
        };
        Error::new(ErrorKind::Server, format!("{doing}: {detail}"))
    }

    /// Several errors reported together, such as both sides of a check failing.
    pub fn combine(errors: Vec<Error>) -> Error {
        let kind = errors.iter().map(|e| e.kind).min_by_key(|k| *k as u8).unwrap_or(ErrorKind::Server);
        let message = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("\n");
        let hints: Vec<_> = errors.iter().filter_map(|e| e.hint.as_deref()).collect();
        Error { kind, message, hint: (!hints.is_empty()).then(|| hints.join("\n")) }
    }
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Self {
        let hint = e.hint();
        Error::new(ErrorKind::Connection, e.to_string()).with_hint(hint)
    }
}

impl From<ConnSpecError> for Error {
    fn from(e: ConnSpecError) -> Self {
        Error::new(ErrorKind::Usage, e.to_string())
            .with_hint("write it as postgresql://user@host:5432/dbname?sslmode=verify-full or as host=... dbname=... key/value pairs")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
