//! pgferry's error, sorted by what the caller should do about it.
//!
//! The CLI prints the message once, then the hint on its own line, and picks the
//! exit code from the [`ErrorKind`]. The failure underneath (the driver's error,
//! the replication transport's) stays attached as the [`Cause`], the error's
//! `source()`, so a caller decides by its SQLSTATE ([`Error::code`], classified by
//! [`pgferry_pg::sqlstate`]) and never by the message text.

use pgferry_pg::replication::ReplicationError;
use pgferry_pg::{ConnSpecError, ConnectError};
use tokio_postgres::error::SqlState;

/// What the operator should do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorKind {
    /// Fix the command line or configuration; nothing was changed.
    Usage,
    /// Make the server reachable or fix the credentials. A connection that could
    /// not be opened before the first change changed nothing; one lost during a
    /// run keeps what was committed, and a rerun resumes.
    Connection,
    /// A check refused the command before it changed anything: fix what the
    /// message names (each with its fix) and run it again.
    Refused,
    /// A server is not in the state this step needs; the message says which, the
    /// hint what to do before a rerun.
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
    /// The failure underneath, when a server or the transport reported one
    /// (boxed: an error travels in every `Result`).
    #[source]
    pub cause: Option<Box<Cause>>,
}

/// The failure underneath an [`Error`], kept whole.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// A statement or a connection of the driver.
    #[error(transparent)]
    Statement(tokio_postgres::Error),
    /// The replication connection.
    #[error(transparent)]
    Replication(ReplicationError),
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, cause: None }
    }

    /// The SQLSTATE the server answered with, when a server error is the cause.
    pub fn code(&self) -> Option<&SqlState> {
        match &**self.cause.as_ref()? {
            Cause::Statement(e) => e.code(),
            Cause::Replication(e) => e.code.as_ref(),
        }
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
        Error {
            cause: Some(Box::new(Cause::Statement(error))),
            ..Error::new(ErrorKind::Server, format!("{doing}: {detail}"))
        }
    }

    /// Several errors reported together, such as both sides of a check failing.
    pub fn combine(errors: Vec<Error>) -> Error {
        let kind = errors.iter().map(|e| e.kind).min_by_key(|k| *k as u8).unwrap_or(ErrorKind::Server);
        let message = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("\n");
        let mut hints: Vec<&str> = Vec::new();
        for hint in errors.iter().filter_map(|e| e.hint.as_deref()) {
            if !hints.contains(&hint) {
                hints.push(hint);
            }
        }
        let hint = (!hints.is_empty()).then(|| hints.join("\n"));
        let cause = errors.into_iter().find_map(|e| e.cause);
        Error { kind, message, hint, cause }
    }
}

impl From<ReplicationError> for Error {
    fn from(e: ReplicationError) -> Self {
        let message = e.to_string();
        Error { cause: Some(Box::new(Cause::Replication(e))), ..Error::new(ErrorKind::Server, message) }
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_replication_failure_keeps_its_code_and_cause() {
        let failed = ReplicationError {
            doing: "reading the source's change stream".into(),
            cause: "server error: replication slot \"s\" is active for PID 7 (SQLSTATE 55006)".into(),
            code: Some(SqlState::OBJECT_IN_USE),
        };
        let error = Error::from(failed);
        assert_eq!(
            error.message,
            "reading the source's change stream: server error: replication slot \"s\" is active for PID 7 (SQLSTATE 55006)"
        );
        assert_eq!(error.code(), Some(&SqlState::OBJECT_IN_USE));
        assert!(error.source().is_some_and(|cause| cause.to_string() == error.message));
        assert_eq!(Error::new(ErrorKind::Server, "no cause").code(), None);
        let combined = Error::combine(vec![Error::new(ErrorKind::Connection, "first"), error]);
        assert_eq!(combined.code(), Some(&SqlState::OBJECT_IN_USE), "the cause is kept when combined");
    }
}
