//! Row-level security: whether a table enables and forces it
//! (`relrowsecurity`, `relforcerowsecurity`), and its policies (`pg_policy`:
//! command, permissive or restrictive, roles, `USING` and `WITH CHECK`). A target
//! where it is off, or a policy missing, shows the application rows it must not
//! see; it is compared on the tables present on both sides.

use std::collections::BTreeMap;

use super::grants::RoleName;
use super::{differs, normalize, on_both, pair, push, run, unqualified, ObjectKind, Parity, Side};
use crate::sql::{Ident, QualifiedName, ServerSql, Sql};

/// A table with row-level security enabled or forced (others are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSecurity {
    pub relation: QualifiedName,
    pub enabled: bool,
    pub forced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub relation: QualifiedName,
    pub name: Ident,
    /// `polcmd`: `r` (SELECT), `a` (INSERT), `w` (UPDATE), `d` (DELETE), `*` (ALL).
    pub command: String,
    pub permissive: bool,
    /// Sorted.
    pub roles: Vec<RoleName>,
    /// `pg_get_expr(polqual, polrelid)`.
    pub using: Option<ServerSql>,
    /// `pg_get_expr(polwithcheck, polrelid)`.
    pub with_check: Option<ServerSql>,
}

fn command(code: &str) -> &'static str {
    match code {
        "r" => "SELECT",
        "a" => "INSERT",
        "w" => "UPDATE",
        "d" => "DELETE",
        _ => "ALL",
    }
}

pub(super) fn compare(source: &super::Catalog, target: &super::Catalog, same_major: bool, p: &mut Parity) {
    let both = on_both(source, target);
    let flags = |list: &[RowSecurity]| -> BTreeMap<QualifiedName, (bool, bool)> {
        list.iter()
            .filter(|r| both.contains_key(&r.relation))
            .map(|r| (r.relation.clone(), (r.enabled, r.forced)))
            .collect()
    };
    let (sf, tf) = (flags(&source.row_security), flags(&target.row_security));
    let mut relations: Vec<&QualifiedName> = sf.keys().chain(tf.keys()).collect();
    relations.sort();
    relations.dedup();
    for relation in relations {
        let (s, t) = (sf.get(relation).copied().unwrap_or_default(), tf.get(relation).copied().unwrap_or_default());
        if s == t {
            continue;
        }
        let mut fix = Sql::new("ALTER TABLE ").name(relation);
        if s.0 != t.0 {
            fix = fix.push(if s.0 { " ENABLE ROW LEVEL SECURITY" } else { " DISABLE ROW LEVEL SECURITY" });
        }
        if s.1 != t.1 {
            if s.0 != t.0 {
                fix = fix.push(",");
            }
            fix = fix.push(if s.1 { " FORCE ROW LEVEL SECURITY" } else { " NO FORCE ROW LEVEL SECURITY" });
        }
        let show = |(enabled, forced): (bool, bool)| match (enabled, forced) {
            (true, true) => "enabled and forced",
            (true, false) => "enabled",
            (false, true) => "forced but not enabled",
            (false, false) => "disabled",
        };
        let object = format!("row level security on table {relation}");
        push(p, ObjectKind::RowSecurity, object, differs(show(s), show(t)), run(fix));
    }

    let compared = |x: &&Policy| both.contains_key(&x.relation);
    let s_pol: Vec<Policy> = source.policies.iter().filter(compared).cloned().collect();
    let t_pol: Vec<Policy> = target.policies.iter().filter(compared).cloned().collect();
    let expression = |e: &Option<ServerSql>| {
        e.as_ref().map(|e| match same_major {
            true => normalize(e.as_str()),
            false => unqualified(&normalize(e.as_str())),
        })
    };
    let shape = |x: &Policy| {
        let roles: Vec<String> = x.roles.iter().map(|r| r.to_string()).collect();
        let mut text = format!(
            "AS {} FOR {} TO {}",
            if x.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
            command(&x.command),
            roles.join(", ")
        );
        if let Some(u) = expression(&x.using) {
            text.push_str(&format!(" USING ({u})"));
        }
        if let Some(c) = expression(&x.with_check) {
            text.push_str(&format!(" WITH CHECK ({c})"));
        }
        text
    };
    for (s, t) in pair(&s_pol, &t_pol, |x| (x.relation.clone(), x.name.clone())) {
        let x = s.or(t).expect("paired");
        let object = format!("policy {} on {}", x.name, x.relation);
        let drop = || Sql::new("DROP POLICY ").ident(&x.name).push(" ON ").name(&x.relation);
        match (s, t) {
            (Some(s), None) => push(p, ObjectKind::Policy, object, Side::MissingOnTarget, run(create(s))),
            (None, Some(_)) => push(p, ObjectKind::Policy, object, Side::OnlyOnTarget, run(drop())),
            (Some(s), Some(t)) if shape(s) != shape(t) => {
                let fix = drop().push("; ").append(create(s));
                push(p, ObjectKind::Policy, object, differs(shape(s), shape(t)), run(fix));
            }
            _ => {}
        }
    }
}

fn create(x: &Policy) -> Sql {
    let mut sql = Sql::new("CREATE POLICY ")
        .ident(&x.name)
        .push(" ON ")
        .name(&x.relation)
        .push(if x.permissive { " AS PERMISSIVE FOR " } else { " AS RESTRICTIVE FOR " })
        .push(command(&x.command))
        .push(" TO ");
    for (i, role) in x.roles.iter().enumerate() {
        sql = if i == 0 { sql } else { sql.push(", ") }.append(role.sql());
    }
    if let Some(u) = &x.using {
        sql = sql.push(" USING (").server_sql(u).push(")");
    }
    if let Some(c) = &x.with_check {
        sql = sql.push(" WITH CHECK (").server_sql(c).push(")");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::super::{compare as compare_catalogs, Catalog, Relation, RelationKind};
    use super::*;

    fn notes() -> QualifiedName {
        QualifiedName::from_catalog("public", "notes")
    }

    fn own() -> Policy {
        Policy {
            relation: notes(),
            name: Ident::from_catalog("own"),
            command: "r".into(),
            permissive: true,
            roles: vec![RoleName::Role(Ident::from_catalog("app")), RoleName::Role(Ident::from_catalog("reader"))],
            using: Some(ServerSql::from_catalog("(author = CURRENT_USER)")),
            with_check: None,
        }
    }

    fn positive() -> Policy {
        Policy {
            name: Ident::from_catalog("positive"),
            command: "a".into(),
            permissive: false,
            roles: vec![RoleName::Public],
            using: None,
            with_check: Some(ServerSql::from_catalog("(length(body) > 0)")),
            ..own()
        }
    }

    fn catalog(version: i32) -> Catalog {
        Catalog {
            server_version_num: version,
            relations: vec![Relation {
                name: notes(),
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
            row_security: vec![RowSecurity { relation: notes(), enabled: true, forced: true }],
            policies: vec![own(), positive()],
            ..Catalog::default()
        }
    }

    #[test]
    fn a_faithful_target_has_no_difference() {
        let mut target = catalog(180000);
        target.policies.reverse();
        assert_eq!(compare_catalogs(&catalog(150000), &target), Default::default());
    }

    #[test]
    fn row_security_off_on_the_target_is_named_with_its_alter() {
        let mut target = catalog(150000);
        target.row_security.clear();
        let parity = compare_catalogs(&catalog(150000), &target);
        assert_eq!(parity.differences.len(), 1, "{parity:#?}");
        let d = &parity.differences[0];
        assert_eq!(d.object, "row level security on table \"public\".\"notes\"");
        assert_eq!(d.side, differs("enabled and forced", "disabled"));
        assert_eq!(
            d.ddl.as_deref(),
            Some("ALTER TABLE \"public\".\"notes\" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
        );
        target.row_security.push(RowSecurity { relation: notes(), enabled: true, forced: false });
        let reasons = compare_catalogs(&catalog(150000), &target).reasons();
        assert!(reasons[0].ends_with("ALTER TABLE \"public\".\"notes\" FORCE ROW LEVEL SECURITY"), "{reasons:#?}");
    }

    #[test]
    fn policies_missing_extra_and_changed() {
        let mut target = catalog(150000);
        target.policies.remove(0);
        target.policies[0].roles = vec![RoleName::Role(Ident::from_catalog("app"))];
        let mut stray = own();
        stray.name = Ident::from_catalog("stray");
        target.policies.push(stray);
        let parity = compare_catalogs(&catalog(150000), &target);
        let ddl: Vec<Option<&str>> = parity.differences.iter().map(|d| d.ddl.as_deref()).collect();
        assert_eq!(
            ddl,
            [
                Some("CREATE POLICY \"own\" ON \"public\".\"notes\" AS PERMISSIVE FOR SELECT TO \"app\", \"reader\" USING ((author = CURRENT_USER))"),
                Some("DROP POLICY \"positive\" ON \"public\".\"notes\"; CREATE POLICY \"positive\" ON \"public\".\"notes\" AS RESTRICTIVE FOR INSERT TO PUBLIC WITH CHECK ((length(body) > 0))"),
                Some("DROP POLICY \"stray\" ON \"public\".\"notes\""),
            ],
            "{parity:#?}"
        );
        assert!(parity.differences[1].to_string().contains(
            "on the source AS RESTRICTIVE FOR INSERT TO PUBLIC WITH CHECK ((length(body) > 0)), on the target AS RESTRICTIVE FOR INSERT TO \"app\""
        ));
        assert!(parity.differences.iter().all(|d| d.kind == ObjectKind::Policy));
    }

    #[test]
    fn a_table_missing_on_the_target_is_one_difference() {
        let mut target = catalog(150000);
        target.relations.clear();
        target.row_security.clear();
        target.policies.clear();
        assert_eq!(compare_catalogs(&catalog(150000), &target).differences.len(), 1);
    }
}
