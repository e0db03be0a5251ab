//! Log sequence numbers, printed and parsed the way PostgreSQL does.
//!
//! An LSN is a byte position in the write-ahead log. pgoutput sends it as a
//! plain 64-bit integer, but everything a person reads (server logs,
//! `pg_current_wal_lsn()`, `pg_replication_slots`) shows the `pg_lsn` text
//! form: two upper-case hex numbers, the high and low 32 bits, separated by a
//! slash, e.g. `0/16B3748`. Using the same form in pgferry's output lets an
//! operator paste positions between the two. See
//! <https://www.postgresql.org/docs/current/datatype-pg-lsn.html>.

use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log (PostgreSQL's `XLogRecPtr` / `pg_lsn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let high = self.0 >> 32;
        let low = self.0 & 0xFFFF_FFFF;
        write!(f, "{high:X}/{low:X}")
    }
}

/// The text was not an LSN in PostgreSQL's `X/X` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {input:?}: expected two hex numbers of 1 to 8 digits separated by '/', like 0/16B3748")]
pub struct ParseLsnError {
    input: String,
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Accepts exactly what `pg_lsn`'s input function accepts: 1 to 8 hex
    /// digits (either case), a slash, 1 to 8 hex digits, nothing else.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseLsnError { input: input.to_owned() };
        let (high, low) = input.split_once('/').ok_or_else(invalid)?;
        let high = parse_hex_half(high).ok_or_else(invalid)?;
        let low = parse_hex_half(low).ok_or_else(invalid)?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

/// Parses one side of the slash. `u32::from_str_radix` alone would also
/// accept a leading `+`, which `pg_lsn` rejects, hence the digit check.
fn parse_hex_half(digits: &str) -> Option<u32> {
    let well_formed = (1..=8).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !well_formed {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_pg_lsn() {
        assert_eq!(Lsn(0x16B_3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_what_it_displays() {
        for value in [0, 1, 0x16B_3748, 0xABCD_0000_0001, u64::MAX] {
            let lsn = Lsn(value);
            assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        }
    }

    #[test]
    fn parses_lower_case_and_leading_zeros() {
        assert_eq!("0/16b3748".parse::<Lsn>(), Ok(Lsn(0x16B_3748)));
        assert_eq!("00000001/00000002".parse::<Lsn>(), Ok(Lsn(0x1_0000_0002)));
    }

    #[test]
    fn rejects_what_pg_lsn_rejects() {
        for input in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "+1/0",
            "0/+1",
            "-1/0",
            " 0/0",
            "0/0 ",
            "123456789/0",
            "0/123456789",
            "g/0",
            "0x1/0",
        ] {
            assert!(input.parse::<Lsn>().is_err(), "{input:?} should not parse");
        }
    }

    #[test]
    fn parse_error_names_the_input() {
        let error = "nope".parse::<Lsn>().unwrap_err();
        assert!(error.to_string().contains("\"nope\""), "{error}");
    }

    #[test]
    fn orders_by_position() {
        assert!(Lsn(0x1_0000_0000) > Lsn(0xFFFF_FFFF));
    }
}
