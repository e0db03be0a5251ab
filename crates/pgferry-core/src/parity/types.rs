//! Types the user made: enums (their labels, in order: the order is what `<` and
//! `ORDER BY` compare), composite types (their attributes, in order) and domains
//! (base type, default, NOT NULL; their CHECK constraints are compared with the
//! constraints). A label or attribute that is missing at the end can be added
//! in place; anything else (a label to remove, labels in another order) has no
//! DDL short of recreating the type, and is said so.

use super::{differs, normalize, pair, push, run, Fix, ObjectKind, Parity, Side};
use crate::sql::{Ident, QualifiedName, ServerSql, Sql};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserType {
    pub name: QualifiedName,
    pub shape: TypeShape,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeShape {
    /// Labels in `enumsortorder`.
    Enum { labels: Vec<String> },
    /// Attributes in `attnum` order, with `format_type`.
    Composite { attributes: Vec<(Ident, ServerSql)> },
    Domain {
        /// `format_type(typbasetype, typtypmod)`.
        base: ServerSql,
        /// `typdefault`.
        default: Option<ServerSql>,
        not_null: bool,
    },
}

impl TypeShape {
    fn word(&self) -> &'static str {
        match self {
            TypeShape::Enum { .. } => "enum type",
            TypeShape::Composite { .. } => "composite type",
            TypeShape::Domain { .. } => "domain",
        }
    }

    fn drop_statement(&self) -> &'static str {
        match self {
            TypeShape::Domain { .. } => "DROP DOMAIN ",
            _ => "DROP TYPE ",
        }
    }
}

/// No DDL changes it in place.
fn recreate(name: &QualifiedName, why: &str) -> Fix {
    Fix::from(format!(
        "{why}: recreate {name} on the target as on the source (pg_dump --schema-only of the source shows it), with the columns that use it"
    ))
}

fn create(name: &QualifiedName, shape: &TypeShape) -> Sql {
    match shape {
        TypeShape::Enum { labels } => {
            let mut sql = Sql::new("CREATE TYPE ").name(name).push(" AS ENUM (");
            for (i, label) in labels.iter().enumerate() {
                sql = if i == 0 { sql } else { sql.push(", ") }.literal(label);
            }
            sql.push(")")
        }
        TypeShape::Composite { attributes } => {
            let mut sql = Sql::new("CREATE TYPE ").name(name).push(" AS (");
            for (i, (attribute, type_name)) in attributes.iter().enumerate() {
                sql = if i == 0 { sql } else { sql.push(", ") }.ident(attribute).push(" ").server_sql(type_name);
            }
            sql.push(")")
        }
        TypeShape::Domain { base, default, not_null } => {
            let mut sql = Sql::new("CREATE DOMAIN ").name(name).push(" AS ").server_sql(base);
            if let Some(d) = default {
                sql = sql.push(" DEFAULT ").server_sql(d);
            }
            if *not_null {
                sql = sql.push(" NOT NULL");
            }
            sql
        }
    }
}

pub(super) fn compare(source: &[UserType], target: &[UserType], p: &mut Parity) {
    for (s, t) in pair(source, target, |t| t.name.clone()) {
        let u = s.or(t).expect("paired");
        let object = format!("{} {}", u.shape.word(), u.name);
        match (s, t) {
            (Some(s), None) => push(p, ObjectKind::Type, object, Side::MissingOnTarget, run(create(&s.name, &s.shape))),
            (None, Some(t)) => {
                let drop = Sql::new(t.shape.drop_statement()).name(&t.name);
                push(p, ObjectKind::Type, object, Side::OnlyOnTarget, run(drop));
            }
            (Some(s), Some(t)) => shapes(&s.name, &s.shape, &t.shape, object, p),
            (None, None) => {}
        }
    }
}

fn shapes(name: &QualifiedName, source: &TypeShape, target: &TypeShape, object: String, p: &mut Parity) {
    match (source, target) {
        (TypeShape::Enum { labels: s }, TypeShape::Enum { labels: t }) if s != t => {
            let show = |labels: &[String]| format!("labels ({})", labels.join(", "));
            push(p, ObjectKind::Type, object, differs(show(s), show(t)), enum_fix(name, s, t));
        }
        (TypeShape::Composite { attributes: s }, TypeShape::Composite { attributes: t }) => {
            let shown = |a: &[(Ident, ServerSql)]| {
                let parts: Vec<String> = a.iter().map(|(n, ty)| format!("{n} {}", normalize(ty.as_str()))).collect();
                format!("attributes ({})", parts.join(", "))
            };
            if shown(s) != shown(t) {
                push(p, ObjectKind::Type, object, differs(shown(s), shown(t)), composite_fix(name, s, t));
            }
        }
        (
            TypeShape::Domain { base: sb, default: sd, not_null: sn },
            TypeShape::Domain { base: tb, default: td, not_null: tn },
        ) => {
            if normalize(sb.as_str()) != normalize(tb.as_str()) {
                let side = differs(format!("over {}", sb.as_str()), format!("over {}", tb.as_str()));
                push(p, ObjectKind::Type, object.clone(), side, recreate(name, "a domain's base type cannot change"));
            }
            let default = |d: &Option<ServerSql>| d.as_ref().map(|d| normalize(d.as_str()));
            if default(sd) != default(td) {
                let alter = Sql::new("ALTER DOMAIN ").name(name);
                let fix = match sd {
                    Some(d) => alter.push(" SET DEFAULT ").server_sql(d),
                    None => alter.push(" DROP DEFAULT"),
                };
                let show = |d: Option<String>| d.map_or_else(|| "no default".to_string(), |d| format!("DEFAULT {d}"));
                push(p, ObjectKind::Type, object.clone(), differs(show(default(sd)), show(default(td))), run(fix));
            }
            if sn != tn {
                let word = |n: bool| if n { "NOT NULL" } else { "nullable" };
                let fix =
                    Sql::new("ALTER DOMAIN ").name(name).push(if *sn { " SET NOT NULL" } else { " DROP NOT NULL" });
                push(p, ObjectKind::Type, object, differs(word(*sn), word(*tn)), run(fix));
            }
        }
        (s, t) if std::mem::discriminant(s) != std::mem::discriminant(t) => {
            let fix = recreate(name, "a type's kind cannot change");
            push(p, ObjectKind::Type, format!("type {name}"), differs(s.word(), t.word()), fix);
        }
        _ => {}
    }
}

/// The statements that add to the target's enums the labels the source added
/// since (`ALTER TYPE ... ADD VALUE`, where the source has them): what the copy
/// and change capture run before rows that may carry them arrive. An enum whose
/// labels cannot be fixed in place, or that one side lacks, is left to the gate.
pub fn labels_to_add(source: &[UserType], target: &[UserType]) -> Vec<String> {
    pair(source, target, |t| t.name.clone())
        .into_iter()
        .filter_map(|pair| match pair {
            (Some(s), Some(t)) => match (&s.shape, &t.shape) {
                (TypeShape::Enum { labels: sl }, TypeShape::Enum { labels: tl }) if sl != tl => {
                    enum_fix(&s.name, sl, tl).ddl
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Labels missing on the target, added where the source has them; labels the
/// source does not have, or in another order, cannot be fixed in place.
fn enum_fix(name: &QualifiedName, source: &[String], target: &[String]) -> Fix {
    let kept: Vec<&String> = source.iter().filter(|l| target.contains(l)).collect();
    if target.iter().any(|l| !source.contains(l)) || kept.iter().copied().ne(target.iter()) {
        return recreate(name, "an enum's labels cannot be removed or reordered");
    }
    let mut sql = Sql::default();
    for (i, label) in source.iter().enumerate() {
        if target.contains(label) {
            continue;
        }
        if !sql.as_str().is_empty() {
            sql = sql.push("; ");
        }
        sql = sql.push("ALTER TYPE ").name(name).push(" ADD VALUE ").literal(label);
        // Placed after the label before it on the source (added by now), or first.
        sql = match (i.checked_sub(1).map(|j| &source[j]), target.first()) {
            (Some(before), _) => sql.push(" AFTER ").literal(before),
            (None, Some(first)) => sql.push(" BEFORE ").literal(first),
            (None, None) => sql,
        };
    }
    run(sql)
}

/// Attributes added, dropped or retyped in place, when that leaves them in the
/// source's order (an added one goes last).
fn composite_fix(name: &QualifiedName, source: &[(Ident, ServerSql)], target: &[(Ident, ServerSql)]) -> Fix {
    fn has<'a>(list: &'a [(Ident, ServerSql)], n: &Ident) -> Option<&'a ServerSql> {
        list.iter().find(|(m, _)| m == n).map(|(_, t)| t)
    }
    let common_s: Vec<&Ident> = source.iter().map(|(n, _)| n).filter(|n| has(target, n).is_some()).collect();
    let common_t: Vec<&Ident> = target.iter().map(|(n, _)| n).filter(|n| has(source, n).is_some()).collect();
    let last_common = source.iter().rposition(|(n, _)| has(target, n).is_some());
    let first_added = source.iter().position(|(n, _)| has(target, n).is_none());
    let added_last = match (last_common, first_added) {
        (Some(last), Some(first)) => first > last,
        _ => true,
    };
    if common_s != common_t || !added_last {
        return recreate(name, "a composite type's attributes cannot be reordered");
    }
    let mut parts: Vec<Sql> = Vec::new();
    for (n, _) in target.iter().filter(|(n, _)| has(source, n).is_none()) {
        parts.push(Sql::new("DROP ATTRIBUTE ").ident(n));
    }
    for (n, ty) in source {
        match has(target, n) {
            None => parts.push(Sql::new("ADD ATTRIBUTE ").ident(n).push(" ").server_sql(ty)),
            Some(t) if normalize(t.as_str()) != normalize(ty.as_str()) => {
                parts.push(Sql::new("ALTER ATTRIBUTE ").ident(n).push(" TYPE ").server_sql(ty))
            }
            Some(_) => {}
        }
    }
    let mut sql = Sql::new("ALTER TYPE ").name(name).push(" ");
    for (i, part) in parts.into_iter().enumerate() {
        sql = if i == 0 { sql } else { sql.push(", ") }.append(part);
    }
    run(sql)
}

#[cfg(test)]
mod tests {
    use super::super::{compare as compare_catalogs, Catalog};
    use super::*;

    fn q(name: &str) -> QualifiedName {
        QualifiedName::from_catalog("public", name)
    }

    fn labels(list: &[&str]) -> TypeShape {
        TypeShape::Enum { labels: list.iter().map(|l| l.to_string()).collect() }
    }

    fn attributes(list: &[(&str, &str)]) -> TypeShape {
        TypeShape::Composite {
            attributes: list.iter().map(|(n, t)| (Ident::from_catalog(*n), ServerSql::from_catalog(*t))).collect(),
        }
    }

    fn domain(default: Option<&str>, not_null: bool) -> TypeShape {
        TypeShape::Domain {
            base: ServerSql::from_catalog("integer"),
            default: default.map(ServerSql::from_catalog),
            not_null,
        }
    }

    fn catalog(types: Vec<(&str, TypeShape)>) -> Catalog {
        Catalog {
            server_version_num: 150000,
            types: types.into_iter().map(|(n, shape)| UserType { name: q(n), shape }).collect(),
            ..Catalog::default()
        }
    }

    fn source() -> Catalog {
        catalog(vec![
            ("mood", labels(&["sad", "ok", "happy"])),
            ("address", attributes(&[("street", "text"), ("city", "text")])),
            ("posint", domain(Some("1"), true)),
        ])
    }

    #[test]
    fn labels_the_source_added_are_added_and_nothing_else_is_touched() {
        let target = catalog(vec![
            ("mood", labels(&["sad", "happy"])),
            ("address", attributes(&[("street", "text")])),
            ("posint", domain(Some("2"), true)),
        ]);
        assert_eq!(
            labels_to_add(&source().types, &target.types),
            ["ALTER TYPE \"public\".\"mood\" ADD VALUE 'ok' AFTER 'sad'"]
        );
        let reordered = catalog(vec![("mood", labels(&["happy", "sad"]))]);
        assert_eq!(labels_to_add(&source().types, &reordered.types), Vec::<String>::new(), "left to the gate");
    }

    #[test]
    fn a_faithful_target_has_no_difference() {
        assert_eq!(compare_catalogs(&source(), &source()), Default::default());
    }

    #[test]
    fn a_missing_label_is_added_where_the_source_has_it() {
        let target = catalog(vec![
            ("mood", labels(&["sad", "happy"])),
            ("address", attributes(&[("street", "text"), ("city", "text")])),
            ("posint", domain(Some("1"), true)),
        ]);
        let parity = compare_catalogs(&source(), &target);
        assert_eq!(parity.differences.len(), 1, "{parity:#?}");
        let d = &parity.differences[0];
        assert_eq!(d.object, "enum type \"public\".\"mood\"");
        assert_eq!(d.side, differs("labels (sad, ok, happy)", "labels (sad, happy)"));
        assert_eq!(d.ddl.as_deref(), Some("ALTER TYPE \"public\".\"mood\" ADD VALUE 'ok' AFTER 'sad'"));
        let fix = enum_fix(&q("mood"), &["sad".into(), "ok".into(), "happy".into()], &["ok".into(), "happy".into()]);
        assert_eq!(fix.ddl.as_deref(), Some("ALTER TYPE \"public\".\"mood\" ADD VALUE 'sad' BEFORE 'ok'"));
    }

    #[test]
    fn labels_reordered_or_extra_have_no_ddl() {
        for target in [&["sad", "happy", "ok"][..], &["sad", "ok", "happy", "meh"]] {
            let fix = enum_fix(
                &q("mood"),
                &["sad".into(), "ok".into(), "happy".into()],
                &target.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            );
            assert_eq!(fix.ddl, None, "{target:?}");
            assert!(fix.text.contains("cannot be removed or reordered"), "{}", fix.text);
        }
    }

    #[test]
    fn composite_attributes_and_domains_are_compared() {
        let target = catalog(vec![
            ("mood", labels(&["sad", "ok", "happy"])),
            ("address", attributes(&[("street", "varchar"), ("zip", "text")])),
            ("posint", domain(None, false)),
        ]);
        let parity = compare_catalogs(&source(), &target);
        let ddl: Vec<Option<&str>> = parity.differences.iter().map(|d| d.ddl.as_deref()).collect();
        assert_eq!(
            ddl,
            [
                Some("ALTER TYPE \"public\".\"address\" DROP ATTRIBUTE \"zip\", ALTER ATTRIBUTE \"street\" TYPE text, ADD ATTRIBUTE \"city\" text"),
                Some("ALTER DOMAIN \"public\".\"posint\" SET DEFAULT 1"),
                Some("ALTER DOMAIN \"public\".\"posint\" SET NOT NULL"),
            ],
            "{parity:#?}"
        );
        let reordered = attributes(&[("city", "text"), ("street", "text")]);
        let target = catalog(vec![("address", reordered)]);
        let d =
            compare_catalogs(&catalog(vec![("address", attributes(&[("street", "text"), ("city", "text")]))]), &target);
        assert_eq!(d.differences[0].ddl, None, "{d:#?}");
    }

    #[test]
    fn missing_extra_and_changed_kinds() {
        let mut target = source();
        target.types.remove(0);
        target.types.push(UserType { name: q("stray"), shape: domain(None, false) });
        target.types[1].shape = labels(&["x"]);
        let reasons = compare_catalogs(&source(), &target).reasons();
        assert_eq!(reasons.len(), 3, "{reasons:#?}");
        assert!(reasons[0].ends_with("CREATE TYPE \"public\".\"mood\" AS ENUM ('sad', 'ok', 'happy')"), "{reasons:#?}");
        assert!(
            reasons[1].contains("type \"public\".\"posint\" differs: on the source domain, on the target enum type")
        );
        assert!(reasons[2].ends_with("DROP DOMAIN \"public\".\"stray\""), "{reasons:#?}");
        let mut target = source();
        target.types.clear();
        let ddl: Vec<String> =
            compare_catalogs(&source(), &target).differences.into_iter().filter_map(|d| d.ddl).collect();
        assert_eq!(
            ddl,
            [
                "CREATE TYPE \"public\".\"address\" AS (\"street\" text, \"city\" text)",
                "CREATE TYPE \"public\".\"mood\" AS ENUM ('sad', 'ok', 'happy')",
                "CREATE DOMAIN \"public\".\"posint\" AS integer DEFAULT 1 NOT NULL",
            ]
        );
    }
}
