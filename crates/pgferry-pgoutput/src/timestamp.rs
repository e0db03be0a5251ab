//! Commit, prepare and abort times as pgoutput sends them.
//!
//! PostgreSQL's `TimestampTz` counts microseconds since its own epoch,
//! 2000-01-01 00:00:00 UTC, not the Unix epoch. The wire value is kept as is,
//! so nothing is lost, and [`Timestamp::unix_micros`] does the one conversion
//! callers need to compare it with system clocks. See the "Message Data
//! Types" notes in
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
const POSTGRES_EPOCH_IN_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A point in time: microseconds since 2000-01-01 00:00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The same instant as microseconds since 1970-01-01 00:00:00 UTC.
    ///
    /// PostgreSQL's `infinity` and `-infinity` (`i64::MAX` and `i64::MIN`)
    /// map to themselves; other values near the top saturate instead of
    /// overflowing.
    pub fn unix_micros(self) -> i64 {
        match self.0 {
            i64::MIN | i64::MAX => self.0,
            micros => micros.saturating_add(POSTGRES_EPOCH_IN_UNIX_MICROS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_epoch_is_the_year_2000() {
        // `date -u -d 2000-01-01 +%s` is 946684800.
        assert_eq!(Timestamp(0).unix_micros(), 946_684_800 * 1_000_000);
    }

    #[test]
    fn keeps_microseconds_and_negative_offsets() {
        assert_eq!(Timestamp(1).unix_micros(), 946_684_800_000_001);
        // One second before 2000-01-01 is 1999-12-31 23:59:59.
        assert_eq!(Timestamp(-1_000_000).unix_micros(), 946_684_799_000_000);
    }

    #[test]
    fn infinities_stay_infinite() {
        assert_eq!(Timestamp(i64::MAX).unix_micros(), i64::MAX);
        assert_eq!(Timestamp(i64::MIN).unix_micros(), i64::MIN);
        assert_eq!(Timestamp(i64::MAX - 1).unix_micros(), i64::MAX);
    }
}
