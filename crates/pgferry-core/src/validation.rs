//! Validation verdicts: how chunk fingerprints and row lists from both sides
//! become a report.
//!
//! A chunk's fingerprint is its row count and the sum of a 64-bit hash of each row's
//! text form (`hashtextextended(row::text, 0)`, the same function on every
//! PostgreSQL version, as hash partitioning requires). A sum does not depend on row
//! order, so a table without a key can be fingerprinted whole. When fingerprints
//! differ, the rows of that chunk are listed by key with their hashes, and the
//! lists are merged to name the keys that are missing, extra or changed.
//!
//! The verdict ([`judge_table`], [`overall`]) has three values, because a
//! comparison of a live database can fail to prove anything: EQUAL (every row
//! compared the same), DIFFERENT (keys differ and nothing but a real difference
//! explains it) and NOT PROVEN (nothing proven different, but some rows kept
//! changing through every re-check, or differ while the target had not applied
//! all of the source's changes to their table: lag, never a mismatch).

use serde::Serialize;

/// What a validation proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every compared row is the same on both sides.
    Equal,
    /// Keys differ (or a table is missing) and lag cannot explain it.
    Different,
    /// Nothing proven different, and not everything proven equal.
    NotProven,
}

impl Verdict {
    /// As reports print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Equal => "EQUAL",
            Verdict::Different => "DIFFERENT",
            Verdict::NotProven => "NOT PROVEN",
        }
    }
}

/// Whether the target may have lacked some of the source's changes to a table
/// when the two sides were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    /// The target held every change the source's read held: re-checks waited
    /// for change capture, nothing was pending, or there is no change capture.
    None,
    /// This many changes to the table, committed on the source by its read,
    /// were not applied on the target.
    Pending(i64),
    /// The target was behind and its pending changes could not be counted.
    Unknown,
}

/// Why a table is not proven equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unproven {
    /// Chunks whose rows on the source changed between every re-check.
    KeptChanging { chunks: usize },
    /// Chunks that differ while the target had not applied all of the source's
    /// changes to the table (`pending_changes`: `None` when not counted).
    MayBeLag { chunks: usize, pending_changes: Option<i64> },
}

impl std::fmt::Display for Unproven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unproven::KeptChanging { chunks } => {
                write!(f, "{chunks} chunk(s) kept changing on the source through every re-check")
            }
            Unproven::MayBeLag { chunks, pending_changes: Some(n) } => {
                write!(f, "{chunks} chunk(s) differ while {n} change(s) to the table were not applied yet: may be lag")
            }
            Unproven::MayBeLag { chunks, pending_changes: None } => {
                write!(f, "{chunks} chunk(s) differ while the target was behind (changes not counted): may be lag")
            }
        }
    }
}

/// What comparing one table found, before it is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEvidence {
    pub missing_on_target: bool,
    /// Chunks that still differed at their last read.
    pub mismatched_chunks: usize,
    /// Chunks that differed while their source rows kept changing.
    pub changing_chunks: usize,
    pub lag: Lag,
}

/// One table's verdict and, when not proven, why.
pub fn judge_table(evidence: &TableEvidence) -> (Verdict, Vec<Unproven>) {
    let mut unproven = Vec::new();
    if evidence.changing_chunks > 0 {
        unproven.push(Unproven::KeptChanging { chunks: evidence.changing_chunks });
    }
    if evidence.missing_on_target {
        return (Verdict::Different, unproven);
    }
    if evidence.mismatched_chunks > 0 {
        let pending_changes = match evidence.lag {
            Lag::None => return (Verdict::Different, unproven),
            Lag::Pending(0) => return (Verdict::Different, unproven),
            Lag::Pending(n) => Some(n),
            Lag::Unknown => None,
        };
        unproven.push(Unproven::MayBeLag { chunks: evidence.mismatched_chunks, pending_changes });
    }
    let verdict = if unproven.is_empty() { Verdict::Equal } else { Verdict::NotProven };
    (verdict, unproven)
}

/// The whole validation's verdict: DIFFERENT when any table is, else NOT PROVEN
/// when any table is, else EQUAL (also when there was nothing to compare).
pub fn overall(tables: impl IntoIterator<Item = Verdict>) -> Verdict {
    tables.into_iter().fold(Verdict::Equal, |all, table| match (all, table) {
        (Verdict::Different, _) | (_, Verdict::Different) => Verdict::Different,
        (Verdict::NotProven, _) | (_, Verdict::NotProven) => Verdict::NotProven,
        _ => Verdict::Equal,
    })
}

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
                out.push(KeyDifference {
                    key: source[s].key.clone(),
                    difference: Difference::Missing,
                    source_row: value(&source[s]),
                    target_row: None,
                });
                s += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(KeyDifference {
                    key: target[t].key.clone(),
                    difference: Difference::Extra,
                    source_row: None,
                    target_row: value(&target[t]),
                });
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

    fn evidence(mismatched_chunks: usize, changing_chunks: usize, lag: Lag) -> TableEvidence {
        TableEvidence { missing_on_target: false, mismatched_chunks, changing_chunks, lag }
    }

    #[test]
    fn chunks_that_kept_changing_are_not_proven_with_their_count() {
        let (verdict, why) = judge_table(&evidence(0, 7, Lag::None));
        assert_eq!(verdict, Verdict::NotProven);
        assert_eq!(why, [Unproven::KeptChanging { chunks: 7 }]);
        assert_eq!(
            judge_table(&evidence(0, 0, Lag::Unknown)),
            (Verdict::Equal, vec![]),
            "lag without a difference is equal"
        );
    }

    #[test]
    fn a_difference_is_different_only_when_lag_cannot_explain_it() {
        assert_eq!(judge_table(&evidence(2, 0, Lag::None)).0, Verdict::Different);
        assert_eq!(
            judge_table(&evidence(2, 0, Lag::Pending(0))).0,
            Verdict::Different,
            "nothing pending for the table"
        );
        assert_eq!(
            judge_table(&evidence(2, 0, Lag::Pending(5))),
            (Verdict::NotProven, vec![Unproven::MayBeLag { chunks: 2, pending_changes: Some(5) }])
        );
        assert_eq!(
            judge_table(&evidence(1, 3, Lag::Unknown)),
            (
                Verdict::NotProven,
                vec![Unproven::KeptChanging { chunks: 3 }, Unproven::MayBeLag { chunks: 1, pending_changes: None }]
            )
        );
        let (verdict, why) = judge_table(&evidence(1, 3, Lag::None));
        assert_eq!(
            (verdict, why),
            (Verdict::Different, vec![Unproven::KeptChanging { chunks: 3 }]),
            "a proven difference wins"
        );
        let missing = TableEvidence { missing_on_target: true, ..evidence(0, 0, Lag::Pending(9)) };
        assert_eq!(judge_table(&missing).0, Verdict::Different, "a missing table is not lag");
    }

    #[test]
    fn different_outranks_not_proven_which_outranks_equal() {
        use Verdict::*;
        assert_eq!(overall([]), Equal);
        assert_eq!(overall([Equal, Equal]), Equal);
        assert_eq!(overall([Equal, NotProven, Equal]), NotProven);
        assert_eq!(overall([NotProven, Different, Equal]), Different);
        assert_eq!(overall([Different, NotProven]), Different);
    }

    #[test]
    fn equal_lists_have_no_difference() {
        let rows = [row("a", 1), row("b", 2)];
        assert!(diff_rows(&rows, &rows, 10, true).is_empty());
    }
}
