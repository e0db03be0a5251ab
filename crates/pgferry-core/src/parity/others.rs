//! The other objects a query or the application may name: operators, operator
//! classes and families, casts, text search configurations, dictionaries,
//! parsers and templates, conversions, range types, foreign data wrappers and
//! servers, languages. `pg_dump` carries each; one created on the source after
//! the copy (without DDL capture) reaches the target never, and the
//! application's query that names it fails after the switch. They are compared
//! by existence, each by its kind and identity as the server renders it
//! (`pg_identify_object`, the same on every supported version); their
//! definitions are not compared. One missing on the target stops the cutover
//! (its statement is the source's `pg_dump --schema-only`); one only on the
//! target is said, not refused, as a schema only there is: it changes nothing
//! the source's application used.
//! ([pg_identify_object](https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-OBJECT))

use super::{pair, push, ObjectKind, Parity, Side};
use crate::sql::ServerSql;

/// One such object on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherObject {
    /// `pg_identify_object`'s type: `operator`, `cast`, `server`, ...
    pub kind: String,
    /// Its identity: `public.===(integer,integer)`, `(integer AS text)`.
    pub identity: ServerSql,
}

pub(super) fn compare(source: &[OtherObject], target: &[OtherObject], p: &mut Parity) {
    for (s, t) in pair(source, target, |o| (o.kind.clone(), o.identity.as_str().to_string())) {
        match (s, t) {
            (Some(s), None) => push(
                p,
                ObjectKind::Other,
                format!("{} {}", s.kind, s.identity.as_str()),
                Side::MissingOnTarget,
                "create it on the target as on the source (pg_dump --schema-only of the source shows its statement)"
                    .to_string(),
            ),
            (None, Some(t)) => p.warnings.push(format!(
                "{} {} is on the target only: kept (the source's application never used it)",
                t.kind,
                t.identity.as_str()
            )),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(kind: &str, identity: &str) -> OtherObject {
        OtherObject { kind: kind.into(), identity: ServerSql::from_catalog(identity) }
    }

    #[test]
    fn one_missing_on_the_target_stops_the_cutover_one_only_there_is_said() {
        let source = [other("operator", "public.===(integer,integer)"), other("cast", "(integer AS text)")];
        let target = [other("cast", "(integer AS text)"), other("server", "files")];
        let mut p = Parity::default();
        compare(&source, &target, &mut p);
        assert_eq!(p.differences.len(), 1, "{p:#?}");
        assert_eq!(p.differences[0].object, "operator public.===(integer,integer)");
        assert_eq!(p.differences[0].side, Side::MissingOnTarget);
        assert_eq!(p.warnings, ["server files is on the target only: kept (the source's application never used it)"]);
    }
}
