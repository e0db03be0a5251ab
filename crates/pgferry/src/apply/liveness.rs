//! The deadlines of change capture's connections, all derived from one number:
//! the source's `wal_sender_timeout`.
//!
//! A half-open connection (a silent partition, a NAT or load balancer that
//! dropped its state) gives no error: a read waits for ever, and TCP keepalives
//! do not help while a middlebox answers them or data waits unacknowledged. So
//! each wait has a deadline of its own.
//!
//! - **The source's stream.** The walsender asks for a reply (a keepalive with
//!   the reply-requested flag) once it has heard nothing from pgferry for half of
//!   `wal_sender_timeout`, and answers at once. The transport therefore sends its
//!   unsolicited standby status updates only after a whole `wal_sender_timeout`
//!   of silence ([`Liveness::status_wakeup`]): a live server is then heard from at
//!   least every half `wal_sender_timeout`, and nothing at all for twice that
//!   ([`Liveness::silence_limit`]) is a dead connection. Acknowledgements are
//!   sent as soon as they are due, as before. A server with `wal_sender_timeout`
//!   off (0) would never ask: pgferry's replication session then sets it to
//!   [`TIMEOUT_WHEN_OFF`] for itself.
//! - **The target.** A second connection probes the apply session on the same
//!   rhythm ([`Liveness::probe_every`]); a probe unanswered within its limit, or
//!   the apply session gone from `pg_stat_activity`, is a dead target
//!   ([`super::watchdog`]). The apply session waits at most
//!   [`Liveness::lock_timeout`] for a lock and [`STATEMENT_TIMEOUT`] for a
//!   statement, and the target ends it if it sits idle inside a transaction for
//!   [`Liveness::idle_in_transaction_timeout`] (its row locks released even when
//!   pgferry is cut off from it).
//!
//! A dead connection ends the session; it is reconnected after [`backoff`].

use std::time::Duration;

/// The `wal_sender_timeout` pgferry's replication session sets for itself when
/// the server's is off.
pub(crate) const TIMEOUT_WHEN_OFF: Duration = Duration::from_secs(60);
/// The apply session's `statement_timeout`: far above any batch's statement,
/// below "for ever".
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The least time the target waits on an idle transaction of the apply session.
const MIN_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(60);

/// One session's deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// The source's `wal_sender_timeout` as the replication session will have it.
    pub(crate) wal_sender_timeout: Duration,
    /// Whether the server's is off, so the session sets its own.
    pub(crate) set_by_pgferry: bool,
}

impl Liveness {
    /// From the source's `wal_sender_timeout` as `SHOW` prints it.
    pub(crate) fn from_shown(shown: &str) -> Option<Liveness> {
        let timeout = parse_duration(shown)?;
        Some(if timeout.is_zero() {
            Liveness { wal_sender_timeout: TIMEOUT_WHEN_OFF, set_by_pgferry: true }
        } else {
            Liveness { wal_sender_timeout: timeout, set_by_pgferry: false }
        })
    }

    /// Silence from the source for this long is a dead connection.
    pub(crate) fn silence_limit(&self) -> Duration {
        self.wal_sender_timeout * 2
    }

    /// The transport's unsolicited status update after this much silence: more
    /// than half `wal_sender_timeout`, so the server asks for a reply first.
    pub(crate) fn status_wakeup(&self) -> Duration {
        self.wal_sender_timeout
    }

    /// How often the target is probed.
    pub(crate) fn probe_every(&self) -> Duration {
        self.silence_limit() / 4
    }

    /// How long a probe of the target may take; with [`Self::probe_every`],
    /// a dead target is noticed within [`Self::silence_limit`].
    pub(crate) fn probe_answer_within(&self) -> Duration {
        self.silence_limit() / 2
    }

    /// The apply session's `lock_timeout`.
    pub(crate) fn lock_timeout(&self) -> Duration {
        self.silence_limit()
    }

    /// The apply session's `idle_in_transaction_session_timeout`: longer than
    /// any wait of a live session between two statements of a batch (at most
    /// [`Self::silence_limit`], for the source's next message).
    pub(crate) fn idle_in_transaction_timeout(&self) -> Duration {
        (self.silence_limit() * 2).max(MIN_IDLE_IN_TRANSACTION)
    }

    /// The startup option the replication session needs, if any.
    pub(crate) fn startup_option(&self) -> Option<String> {
        self.set_by_pgferry.then(|| format!("-c wal_sender_timeout={}ms", self.wal_sender_timeout.as_millis()))
    }

    /// The apply session's timeouts, as SQL (numbers only).
    pub(crate) fn target_session_sql(&self) -> String {
        format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
            STATEMENT_TIMEOUT.as_millis(),
            self.lock_timeout().as_millis(),
            self.idle_in_transaction_timeout().as_millis()
        )
    }
}

/// The wait before reconnection attempt `attempt` (1 for the first) of an
/// episode: 1 s, doubling up to [`MAX_BACKOFF`].
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

/// A time setting as `SHOW` prints it (`0`, `500ms`, `60s`, `1min`, `2h`, `1d`).
fn parse_duration(shown: &str) -> Option<Duration> {
    let shown = shown.trim();
    let split = shown.find(|c: char| !c.is_ascii_digit()).unwrap_or(shown.len());
    let (number, unit) = shown.split_at(split);
    let n: u64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(millis)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_setting_is_read_in_every_unit_show_prints() {
        assert_eq!(parse_duration("60s"), Some(secs(60)));
        assert_eq!(parse_duration("2s"), Some(secs(2)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1min"), Some(secs(60)));
        assert_eq!(parse_duration("2h"), Some(secs(7200)));
        assert_eq!(parse_duration("1d"), Some(secs(86400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5 weeks"), None);
    }

    #[test]
    fn a_live_server_pings_before_pgferry_would_speak_and_silence_for_twice_the_timeout_is_death() {
        let l = Liveness::from_shown("10s").unwrap();
        assert!(!l.set_by_pgferry);
        assert_eq!(l.silence_limit(), secs(20));
        assert!(l.status_wakeup() > l.wal_sender_timeout / 2, "the server must ask for a reply before pgferry speaks");
        assert!(l.status_wakeup() < l.silence_limit());
        assert!(l.probe_every() + l.probe_answer_within() < l.silence_limit(), "a dead target noticed in time");
        assert!(l.idle_in_transaction_timeout() > l.silence_limit());
        assert_eq!(l.startup_option(), None);
    }

    #[test]
    fn a_server_that_never_times_out_is_given_pgferrys_timeout_for_this_session() {
        let l = Liveness::from_shown("0").unwrap();
        assert!(l.set_by_pgferry);
        assert_eq!(l.wal_sender_timeout, TIMEOUT_WHEN_OFF);
        assert_eq!(l.startup_option().as_deref(), Some("-c wal_sender_timeout=60000ms"));
    }

    #[test]
    fn the_target_session_waits_bounded_everywhere() {
        let sql = Liveness::from_shown("2s").unwrap().target_session_sql();
        assert_eq!(
            sql,
            "SET statement_timeout = 600000; SET lock_timeout = 4000; SET idle_in_transaction_session_timeout = 60000"
        );
    }

    #[test]
    fn reconnection_backs_off_to_ten_seconds() {
        let waits: Vec<u64> = (1..=7).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
