//! The order of a table's columns (`attnum`, dropped columns left out): what
//! `SELECT *` returns and what `INSERT ... VALUES` without a column list fills,
//! so a target with the same columns in another order breaks an application
//! that relies on either. Only the columns on both sides are ordered here (a
//! missing column is a difference of its own). No DDL moves a column: the fix
//! is to rebuild the table, which is said, not given.

use std::collections::BTreeMap;

use super::{differs, on_both, push, Catalog, Column, Fix, ObjectKind, Parity};
use crate::sql::{Ident, QualifiedName};

fn ordered<'a>(
    columns: &'a [Column],
    compared: &BTreeMap<&QualifiedName, bool>,
) -> BTreeMap<&'a QualifiedName, Vec<(i16, &'a Ident)>> {
    let mut out: BTreeMap<&QualifiedName, Vec<(i16, &Ident)>> = BTreeMap::new();
    for c in columns.iter().filter(|c| compared.get(&c.relation) == Some(&true)) {
        out.entry(&c.relation).or_default().push((c.position, &c.name));
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

/// What a missing column's `ADD COLUMN` does to the order: it goes last, so a
/// column the source has after it and the target has too ends up before it.
pub(super) fn added_last(missing: &Column, source: &[Column], target: &[Column]) -> String {
    let after = source
        .iter()
        .filter(|c| c.relation == missing.relation && c.position > missing.position)
        .filter(|c| target.iter().any(|t| t.relation == c.relation && t.name == c.name))
        .min_by_key(|c| c.position);
    match after {
        Some(next) => format!(
            " (ADD COLUMN puts it last, while the source has it before {}: the column order then differs, which only rebuilding the table fixes)",
            next.name
        ),
        None => String::new(),
    }
}

pub(super) fn compare(source: &Catalog, target: &Catalog, p: &mut Parity) {
    // A view's columns follow from its query, which is compared.
    let compared: BTreeMap<&QualifiedName, bool> =
        on_both(source, target).into_iter().map(|(n, k)| (n, !k.is_view())).collect();
    let (s_order, t_order) = (ordered(&source.columns, &compared), ordered(&target.columns, &compared));
    for (relation, s_cols) in &s_order {
        let Some(t_cols) = t_order.get(relation) else { continue };
        let common = |mine: &[(i16, &Ident)], theirs: &[(i16, &Ident)]| -> Vec<String> {
            mine.iter().filter(|(_, n)| theirs.iter().any(|(_, m)| m == n)).map(|(_, n)| n.to_string()).collect()
        };
        let (s, t) = (common(s_cols, t_cols), common(t_cols, s_cols));
        if s == t {
            continue;
        }
        let fix = Fix::from(format!(
            "no DDL moves a column: rebuild {relation} on the target with the source's column order (create it as on the source, e.g. from pg_dump --schema-only --table='{relation}', move the rows over, swap the names); until then SELECT * and INSERT without a column list see the columns in another order"
        ));
        let side = differs(format!("({})", s.join(", ")), format!("({})", t.join(", ")));
        push(p, ObjectKind::ColumnOrder, format!("the column order of {relation}"), side, fix);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compare as compare_catalogs, Relation, RelationKind};
    use super::*;
    use crate::sql::ServerSql;

    fn catalog(columns: &[&str]) -> Catalog {
        let wide = QualifiedName::from_catalog("public", "wide");
        Catalog {
            server_version_num: 150000,
            relations: vec![Relation {
                name: wide.clone(),
                kind: RelationKind::Table,
                unlogged: false,
                partition_of: None,
                inherits: vec![],
                bound: None,
                partition_key: None,
                definition: None,
                options: vec![],
                foreign_options: vec![],
            }],
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, name)| Column {
                    relation: wide.clone(),
                    name: Ident::from_catalog(*name),
                    // Gaps, as dropped columns leave them.
                    position: 2 * i as i16 + 1,
                    type_name: ServerSql::from_catalog("integer"),
                    not_null: false,
                    default: None,
                    identity: String::new(),
                    generated: String::new(),
                })
                .collect(),
            ..Catalog::default()
        }
    }

    #[test]
    fn the_same_order_with_other_gaps_matches() {
        let mut target = catalog(&["a", "b", "c"]);
        for (i, c) in target.columns.iter_mut().enumerate() {
            c.position = i as i16 + 1;
        }
        assert_eq!(compare_catalogs(&catalog(&["a", "b", "c"]), &target), Default::default());
    }

    #[test]
    fn another_order_is_named_without_ddl() {
        let parity = compare_catalogs(&catalog(&["a", "b", "c"]), &catalog(&["a", "c", "b"]));
        assert_eq!(parity.differences.len(), 1, "{parity:#?}");
        let d = &parity.differences[0];
        assert_eq!(d.kind, ObjectKind::ColumnOrder);
        assert_eq!(d.object, "the column order of \"public\".\"wide\"");
        assert_eq!(d.side, differs("(\"a\", \"b\", \"c\")", "(\"a\", \"c\", \"b\")"));
        assert_eq!(d.ddl, None);
        assert!(d.fix.starts_with("no DDL moves a column: rebuild \"public\".\"wide\""), "{}", d.fix);
    }

    #[test]
    fn a_missing_column_is_not_an_order_difference() {
        let reasons = compare_catalogs(&catalog(&["a", "b", "c"]), &catalog(&["a", "c"])).reasons();
        assert_eq!(reasons.len(), 1, "{reasons:#?}");
        assert!(
            reasons[0].contains("column \"b\" of \"public\".\"wide\" is on the source but missing"),
            "{reasons:#?}"
        );
        assert!(
            reasons[0].ends_with("ADD COLUMN \"b\" integer (ADD COLUMN puts it last, while the source has it before \"c\": the column order then differs, which only rebuilding the table fixes)"),
            "{reasons:#?}"
        );
        let parity = compare_catalogs(&catalog(&["a", "b", "c"]), &catalog(&["a", "b"]));
        assert!(
            parity.differences[0].fix.ends_with("ADD COLUMN \"c\" integer"),
            "the last one stays last: {parity:#?}"
        );
        assert_eq!(
            parity.differences[0].ddl.as_deref(),
            Some("ALTER TABLE \"public\".\"wide\" ADD COLUMN \"c\" integer")
        );
    }
}
