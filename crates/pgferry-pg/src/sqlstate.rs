//! What a server's error means for the caller, decided by its SQLSTATE code
//! ([Appendix A](https://www.postgresql.org/docs/current/errcodes-appendix.html)),
//! never by its message text, in one place.
//!
//! A failure is either transient (a new session may succeed: the connection is
//! gone, the server is restarting or full, a wait ran into a time limit, an object
//! is still held by a session about to end) or definite (the same statement fails
//! the same way again: stop, and say what to fix). Which transient kinds a caller
//! retries depends on what it runs; each such list is a method of [`Class`] here.
//!
//! The replication transport reports a server's error response as text it formats
//! itself (`message (SQLSTATE XXXXX)`, its `ErrorFields::to_error_string`), with
//! the `C` field last: [`code_of_transport`] reads the code back from there once,
//! at the edge, and every decision after works on the code.

use pgwire_replication::PgWireError;
use tokio_postgres::error::SqlState;

/// What a failure says about trying again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// The connection is gone, or the server is shutting down or not up yet
    /// (class 08 `connection_exception`, `admin_shutdown`, `crash_shutdown`,
    /// `cannot_connect_now`), or the failure has no server error at all (I/O).
    ConnectionLost,
    /// `too_many_connections`: a connection slot frees up later.
    TooManyConnections,
    /// A wait ran into the session's time limits: `lock_not_available`
    /// (`lock_timeout`), `query_canceled` (`statement_timeout`),
    /// `idle_in_transaction_session_timeout`.
    TimedOut,
    /// `object_in_use`: held by another session, such as a replication slot
    /// still held by the previous session's walsender.
    InUse,
    /// Anything else: the statement fails the same way again.
    Definite,
}

impl Class {
    /// Whether change capture retries a failed statement on the target with a
    /// new session (the batch is rolled back and read again from the stream).
    pub fn retried_by_apply(self) -> bool {
        matches!(self, Class::ConnectionLost | Class::TooManyConnections | Class::TimedOut)
    }

    /// Whether change capture opens the source's change stream again after it
    /// failed (a slot still in use is released when its walsender ends).
    pub fn reopens_stream(self) -> bool {
        matches!(self, Class::ConnectionLost | Class::TooManyConnections | Class::InUse)
    }
}

/// The class of a server's SQLSTATE code.
pub fn classify(code: &SqlState) -> Class {
    if code.code().starts_with("08") {
        return Class::ConnectionLost;
    }
    match code {
        c if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW => {
            Class::ConnectionLost
        }
        c if *c == SqlState::TOO_MANY_CONNECTIONS => Class::TooManyConnections,
        c if *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::QUERY_CANCELED
            || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT =>
        {
            Class::TimedOut
        }
        c if *c == SqlState::OBJECT_IN_USE => Class::InUse,
        _ => Class::Definite,
    }
}

/// The class of a failed statement: a closed connection, or a failure the
/// server did not answer with an error (I/O), is a lost connection.
pub fn of_statement(error: &tokio_postgres::Error) -> Class {
    match error.code() {
        _ if error.is_closed() => Class::ConnectionLost,
        Some(code) => classify(code),
        None => Class::ConnectionLost,
    }
}

/// The class of a replication transport's failure: a server error by its code
/// (none readable: definite), the network or the transport's worker lost as a
/// lost connection, anything else (authentication, TLS, protocol) definite.
pub fn of_transport(error: &PgWireError) -> Class {
    match error {
        PgWireError::Server(_) => code_of_transport(error).map_or(Class::Definite, |code| classify(&code)),
        other if other.is_transient() => Class::ConnectionLost,
        _ => Class::Definite,
    }
}

/// The SQLSTATE of a server error the transport reports (the `C` field it
/// writes last, as `(SQLSTATE XXXXX)`); `None` for its other errors.
pub fn code_of_transport(error: &PgWireError) -> Option<SqlState> {
    let PgWireError::Server(text) = error else { return None };
    let code = text.strip_suffix(')')?.rsplit_once("(SQLSTATE ")?.1;
    (code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| SqlState::from_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classes_are_decided_by_code() {
        let class = |code: &str| classify(&SqlState::from_code(code));
        for lost in ["08000", "08006", "08P01", "57P01", "57P02", "57P03"] {
            assert_eq!(class(lost), Class::ConnectionLost, "{lost}");
        }
        assert_eq!(class("53300"), Class::TooManyConnections);
        for timed_out in ["55P03", "57014", "25P03"] {
            assert_eq!(class(timed_out), Class::TimedOut, "{timed_out}");
        }
        assert_eq!(class("55006"), Class::InUse);
        for definite in ["23505", "23503", "42P01", "42501", "25006", "53100", "57000", "XX000"] {
            assert_eq!(class(definite), Class::Definite, "{definite}");
        }
    }

    /// The two lists change capture used to keep as text, kept exactly.
    #[test]
    fn apply_and_the_stream_retry_what_they_retried() {
        let retried = |codes: &[&'static str], pick: fn(Class) -> bool| {
            codes.iter().filter(|c| pick(classify(&SqlState::from_code(c)))).copied().collect::<Vec<_>>()
        };
        let all = ["08003", "57P01", "57P02", "57P03", "53300", "55P03", "57014", "25P03", "55006", "23505"];
        assert_eq!(
            retried(&all, Class::retried_by_apply),
            ["08003", "57P01", "57P02", "57P03", "53300", "55P03", "57014", "25P03"]
        );
        assert_eq!(retried(&all, Class::reopens_stream), ["08003", "57P01", "57P02", "57P03", "53300", "55006"]);
    }

    #[test]
    fn the_transport_s_server_error_carries_its_code() {
        let server = |text: &str| PgWireError::Server(text.into());
        let in_use = server("replication slot \"s\" is active for PID 42 (SQLSTATE 55006)");
        assert_eq!(code_of_transport(&in_use), Some(SqlState::OBJECT_IN_USE));
        assert_eq!(of_transport(&in_use), Class::InUse);
        let gone = server("replication slot \"s\" does not exist (SQLSTATE 42704)");
        assert_eq!(of_transport(&gone), Class::Definite);
        // A message that merely mentions a code is not that code.
        let quoted = server("bad value \"SQLSTATE 08006\" (SQLSTATE 22023)");
        assert_eq!(code_of_transport(&quoted), Some(SqlState::INVALID_PARAMETER_VALUE));
        assert_eq!(of_transport(&quoted), Class::Definite);
        assert_eq!(code_of_transport(&server("no code here")), None);
        assert_eq!(of_transport(&server("no code here")), Class::Definite);
        let io = PgWireError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(of_transport(&io), Class::ConnectionLost);
        assert_eq!(of_transport(&PgWireError::Auth("password authentication failed".into())), Class::Definite);
    }
}
