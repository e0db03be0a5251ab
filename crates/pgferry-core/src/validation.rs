//! Validation verdicts: how chunk fingerprints and row lists from both sides
//! become a report.
//!
//! A chunk's fingerprint is its row count and the sum of a 64-bit hash of each row's
//! text form (`hashtextextended(row::text, 0)`, the same function on every
//! PostgreSQL version, as hash partitioning requires). A sum does not depend on row
//! order, so a table without a key can be fingerprinted whole. When fingerprints
//! differ, the rows of that chunk are listed by key with their hashes, and the
//! lists are merged to name the keys that are missing, extra or changed.

use serde::Serialize;

/// A chunk's fingerprint on one side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    pub rows: i64,
    /// The sum of the rows' hashes, as decimal text (it exceeds 64 bits).
    pub hash_sum: String,
}

/// One row as listed for a differing chunk: its key as text, its hash, and its
/// whole text form (shown only when asked, since it may be personal data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowDigest {
    pub key: String,
    pub hash: i64,
    pub text: String,
}

/// How a key differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// On both, with different values.
    Changed,
}

/// A key that differs, with the row texts when values may be shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyDifference {
    pub key: String,
    pub difference: Difference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_row: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_row: Option<String>,
}

/// Merges two key-ordered row lists into their first `limit` differences.
pub fn diff_rows(source: &[RowDigest], target: &[RowDigest], limit: usize, show_values: bool) -> Vec<KeyDifference> {
    let mut out = Vec::new();
    let (mut s, mut t) = (0, 0);
    let value = |row: &RowDigest| show_values.then(|| row.text.clone());
    while out.len() < limit && (s < source.len() || t < target.len()) {
        let order = match (source.get(s), target.get(t)) {
            (Some(a), Some(b)) => a.key.cmp(&b.key),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                out.push(KeyDifference { key: source[s].key.clone(), difference: Difference::Missing, source_row: value(&source[s]), target_row: None });
                s += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(KeyDifference { key: target[t].key.clone(), difference: Difference::Extra, source_row: None, target_row: value(&target[t]) });
                t += 1;
            }
            std::cmp::Ordering::Equal => {
                if source[s].hash != target[t].hash || source[s].text != target[t].text {
                    out.push(KeyDifference {
                        key: source[s].key.clone(),
                        difference: Difference::Changed,
                        source_row: value(&source[s]),
                        target_row: value(&target[t]),
                    });
                }
                s += 1;
                t += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, hash: i64) -> RowDigest {
        RowDigest { key: key.into(), hash, text: format!("({key},{hash})") }
    }

    #[test]
    fn missing_extra_and_changed_keys_are_named_in_key_order() {
        let source = [row("1", 10), row("2", 20), row("4", 40)];
        let target = [row("1", 10), row("2", 21), row("3", 30)];
        let diffs = diff_rows(&source, &target, 10, false);
        let got: Vec<_> = diffs.iter().map(|d| (d.key.as_str(), d.difference)).collect();
        assert_eq!(got, [("2", Difference::Changed), ("3", Difference::Extra), ("4", Difference::Missing)]);
        assert!(diffs.iter().all(|d| d.source_row.is_none() && d.target_row.is_none()));
    }

    #[test]
    fn values_appear_only_when_asked_and_the_list_is_bounded() {
        let source = [row("1", 1), row("2", 2), row("3", 3)];
        let diffs = diff_rows(&source, &[], 2, true);
        assert_eq!(diffs.len(), 2);
        assert_eq!(diffs[0].source_row.as_deref(), Some("(1,1)"));
    }

    #[test]
    fn equal_lists_have_no_difference() {
        let rows = [row("a", 1), row("b", 2)];
        assert!(diff_rows(&rows, &rows, 10, true).is_empty());
    }
}
