//! Privileges on tables (and views, sequences, ...), schemas, functions and
//! procedures: each side's ACL as `aclexplode` lists it (a NULL ACL as the
//! built-in default, `acldefault`), compared per grantee by role name. The
//! owner's own privileges are compared as the owner's, whoever owns the object
//! on each side, and the grantor is not compared (it is the owner, as a rule).
//!
//! A role that exists on one side only cannot be granted anything on the other:
//! its privileges are not compared, and a warning names it (roles are global
//! objects, outside the database that moves: the operator creates them, e.g.
//! with `pgferry roles`). PostgreSQL 17 added the MAINTAIN privilege
//! on tables, which `GRANT ALL` and the owner's default include there, so it is
//! not compared when either side is older.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use super::securable::{DefaultedObjects, Securable};
use super::{differs, pair, push, run, Fix, ObjectKind, Parity, Side};
use crate::sql::{Ident, Sql};

/// A role a privilege or a policy names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoleName {
    /// Every role (grantee 0).
    Public,
    Role(Ident),
}

impl RoleName {
    pub(super) fn sql(&self) -> Sql {
        match self {
            RoleName::Public => Sql::new("PUBLIC"),
            RoleName::Role(r) => Sql::default().ident(r),
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleName::Public => f.write_str("PUBLIC"),
            RoleName::Role(r) => write!(f, "{r}"),
        }
    }
}

/// One object's privileges on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub object: Securable,
    pub owner: Ident,
    pub entries: Vec<AclEntry>,
}

/// One privilege granted (`aclexplode`), grantor left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclEntry {
    pub grantee: RoleName,
    /// `SELECT`, `USAGE`, `EXECUTE`, ...
    pub privilege: String,
    pub grantable: bool,
}

/// Who holds privileges, with the owner as such on each side.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Holder {
    Owner,
    Other(RoleName),
}

/// The privilege keywords pgferry writes (the server's names, from code).
fn keyword(privilege: &str) -> Option<&'static str> {
    Some(match privilege {
        "SELECT" => "SELECT",
        "INSERT" => "INSERT",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "TRUNCATE" => "TRUNCATE",
        "REFERENCES" => "REFERENCES",
        "TRIGGER" => "TRIGGER",
        "MAINTAIN" => "MAINTAIN",
        "USAGE" => "USAGE",
        "CREATE" => "CREATE",
        "EXECUTE" => "EXECUTE",
        "CONNECT" => "CONNECT",
        "TEMPORARY" => "TEMPORARY",
        _ => return None,
    })
}

/// Privilege -> grantable, per holder.
type Held = BTreeMap<Holder, BTreeMap<String, bool>>;

fn held(acl: &Acl, with_maintain: bool) -> Held {
    let mut out = Held::new();
    for e in &acl.entries {
        if e.privilege == "MAINTAIN" && !with_maintain {
            continue;
        }
        let holder = match &e.grantee {
            RoleName::Role(r) if *r == acl.owner => Holder::Owner,
            other => Holder::Other(other.clone()),
        };
        out.entry(holder).or_default().insert(e.privilege.clone(), e.grantable);
    }
    out
}

fn show(privileges: &BTreeMap<String, bool>) -> String {
    if privileges.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = privileges
        .iter()
        .map(|(p, grantable)| if *grantable { format!("{p} WITH GRANT OPTION") } else { p.clone() })
        .collect();
    parts.join(", ")
}

pub(super) fn compare(source: &super::Catalog, target: &super::Catalog, p: &mut Parity) {
    compare_where(source, target, p, |_| true);
}

/// The database's own privileges alone (what the copy carries, see [`super::database::carry`]).
pub(super) fn compare_database(source: &super::Catalog, target: &super::Catalog, p: &mut Parity) {
    compare_where(source, target, p, |o| matches!(o, Securable::Database(_)));
}

fn compare_where(source: &super::Catalog, target: &super::Catalog, p: &mut Parity, keep: impl Fn(&Securable) -> bool) {
    let with_maintain = source.server_version_num >= 170000 && target.server_version_num >= 170000;
    let roles = |c: &super::Catalog| c.roles.iter().cloned().collect::<BTreeSet<Ident>>();
    let (source_roles, target_roles) = (roles(source), roles(target));
    let on_both = |r: &Ident| source_roles.contains(r) && target_roles.contains(r);
    let mut unmatched: BTreeMap<(&'static str, Ident), usize> = BTreeMap::new();
    let mut count_unmatched = |r: &Ident| {
        let side = if target_roles.contains(r) { "source" } else { "target" };
        *unmatched.entry((side, r.clone())).or_default() += 1;
    };
    for (s, t) in pair(&source.acls, &target.acls, |a| a.object.key()) {
        let Some(object) = s.or(t).map(|a| &a.object).filter(|o| keep(o)) else { continue };
        // Column privileges and default privileges: no ACL on one side is
        // what it holds there (none, or the built-in defaults), not a missing object.
        let absent = |present: &Acl| match object {
            Securable::Column { .. } | Securable::Defaults { .. } => Some(unset(present)),
            _ => None,
        };
        let s_absent = if s.is_none() { t.and_then(absent) } else { None };
        let t_absent = if t.is_none() { s.and_then(absent) } else { None };
        // An object only on the target is dropped by its own difference's fix.
        let Some(s) = s.or(s_absent.as_ref()) else { continue };
        // One missing on the target is created by its own difference's fix,
        // with what every new object gets: the rest is granted after it.
        let created = (t.is_none() && t_absent.is_none()).then(|| new_object(s));
        let Some(t) = t.or(t_absent.as_ref()).or(created.as_ref()) else { continue };
        if let Securable::Defaults { role, .. } = object {
            if !on_both(role) {
                count_unmatched(role);
                continue;
            }
        }
        // Named as the target calls it: the fix runs there.
        let on = if matches!(s.object, Securable::Database(_)) { &t.object } else { &s.object };
        if s.owner != t.owner && created.is_none() {
            match (on.alter_owner(), on_both(&s.owner) && on_both(&t.owner)) {
                (Some(alter), true) => {
                    let side = differs(format!("owned by {}", s.owner), format!("owned by {}", t.owner));
                    push(p, ObjectKind::Owner, format!("the owner of {on}"), side, run(alter.ident(&s.owner)));
                }
                (Some(_), false) => count_unmatched(if on_both(&s.owner) { &t.owner } else { &s.owner }),
                (None, _) => {}
            }
        }
        let (sh, th) = (held(s, with_maintain), held(t, with_maintain));
        let holders: BTreeSet<&Holder> = sh.keys().chain(th.keys()).collect();
        for holder in holders {
            if let Holder::Other(RoleName::Role(r)) = holder {
                if !on_both(r) {
                    count_unmatched(r);
                    continue;
                }
            }
            let none = BTreeMap::new();
            let (sp, tp) = (sh.get(holder).unwrap_or(&none), th.get(holder).unwrap_or(&none));
            if sp == tp || (created.is_some() && *holder == Holder::Owner) {
                continue;
            }
            let who = match holder {
                Holder::Owner => "the owner".to_string(),
                Holder::Other(r) => r.to_string(),
            };
            let object = format!("the grant to {who} on {on}");
            let side = match (sp.is_empty(), tp.is_empty()) {
                (false, true) => Side::MissingOnTarget,
                _ if created.is_some() => differs(show(sp), format!("{} once created (the default)", show(tp))),
                (true, false) => Side::OnlyOnTarget,
                _ => differs(show(sp), show(tp)),
            };
            let grantee = match holder {
                Holder::Owner => RoleName::Role(t.owner.clone()),
                Holder::Other(r) => r.clone(),
            };
            push(p, ObjectKind::Grant, object, side, fix(on, &grantee, sp, tp));
        }
    }
    for ((side, role), objects) in unmatched {
        let other = if side == "source" { "target" } else { "source" };
        p.warnings.push(format!(
            "role {role} does not exist on the {side}: its privileges on {objects} object(s) on the {other} are not compared; create the role on the {side} (pgferry roles creates the source's missing roles on the target) and grant them as on the source"
        ));
    }
}

/// The privileges on the other side of a column or of default privileges that
/// has no ACL: none on a column, the built-in ones for default privileges
/// everywhere, none added for those in a schema.
fn unset(present: &Acl) -> Acl {
    let entries = match &present.object {
        Securable::Defaults { schema: None, objects, .. } => {
            let (owner, public) = objects.built_in();
            let entry = |grantee: &RoleName, privilege: &&str| AclEntry {
                grantee: grantee.clone(),
                privilege: privilege.to_string(),
                grantable: false,
            };
            let owner_role = RoleName::Role(present.owner.clone());
            owner
                .iter()
                .map(|p| entry(&owner_role, p))
                .chain(public.iter().map(|p| entry(&RoleName::Public, p)))
                .collect()
        }
        _ => vec![],
    };
    Acl { object: present.object.clone(), owner: present.owner.clone(), entries }
}

/// The privileges a new object gets: its owner's, and EXECUTE to PUBLIC on a
/// function, procedure or aggregate, USAGE on a type.
fn new_object(source: &Acl) -> Acl {
    let public =
        |privilege: &str| vec![AclEntry { grantee: RoleName::Public, privilege: privilege.into(), grantable: false }];
    let entries = match source.object {
        Securable::Routine { .. } | Securable::Aggregate { .. } => public("EXECUTE"),
        Securable::Type { .. } => public("USAGE"),
        _ => vec![],
    };
    Acl { object: source.object.clone(), owner: source.owner.clone(), entries }
}

/// The GRANTs and REVOKEs that make the target's privileges the source's.
fn fix(
    object: &Securable,
    grantee: &RoleName,
    source: &BTreeMap<String, bool>,
    target: &BTreeMap<String, bool>,
) -> Fix {
    let mut statements: Vec<Sql> = Vec::new();
    let list = |privileges: Vec<&String>| -> Option<Sql> {
        let mut sql = Sql::default();
        for (i, p) in privileges.iter().enumerate() {
            sql = if i == 0 { sql } else { sql.push(", ") }.push(keyword(p)?);
            if let Some(column) = object.column() {
                sql = sql.push(" (").ident(column).push(")");
            }
        }
        Some(sql)
    };
    let statement = |head: &'static str, privileges: Vec<&String>, to: &'static str, tail: &'static str| {
        let privileges = list(privileges)?;
        Some(
            object
                .prefix()
                .push(head)
                .append(privileges)
                .push(" ON ")
                .append(object.sql())
                .push(to)
                .append(grantee.sql())
                .push(tail),
        )
    };
    let plain: Vec<&String> = source.iter().filter(|(p, g)| !**g && !target.contains_key(*p)).map(|(p, _)| p).collect();
    let grantable: Vec<&String> =
        source.iter().filter(|(p, g)| **g && target.get(*p) != Some(&true)).map(|(p, _)| p).collect();
    let revoked: Vec<&String> = target.keys().filter(|p| !source.contains_key(*p)).collect();
    let option_revoked: Vec<&String> =
        target.iter().filter(|(p, g)| **g && source.get(*p) == Some(&false)).map(|(p, _)| p).collect();
    for (head, privileges, to, tail) in [
        ("GRANT ", plain, " TO ", ""),
        ("GRANT ", grantable, " TO ", " WITH GRANT OPTION"),
        ("REVOKE ", revoked, " FROM ", ""),
        ("REVOKE GRANT OPTION FOR ", option_revoked, " FROM ", ""),
    ] {
        if privileges.is_empty() {
            continue;
        }
        match statement(head, privileges, to, tail) {
            Some(sql) => statements.push(sql),
            None => return Fix::from(format!("grant and revoke on the target as on the source ({object})")),
        }
    }
    let mut sql = Sql::default();
    for (i, s) in statements.into_iter().enumerate() {
        sql = if i == 0 { sql } else { sql.push("; ") }.append(s);
    }
    run(sql)
}

#[cfg(test)]
mod tests {
    use super::super::{compare as compare_catalogs, Catalog, RelationKind};
    use super::*;
    use crate::sql::{QualifiedName, ServerSql};

    fn role(name: &str) -> RoleName {
        RoleName::Role(Ident::from_catalog(name))
    }

    fn entry(grantee: RoleName, privilege: &str, grantable: bool) -> AclEntry {
        AclEntry { grantee, privilege: privilege.into(), grantable }
    }

    fn orders(owner: &str, entries: Vec<AclEntry>) -> Acl {
        Acl {
            object: Securable::Relation {
                name: QualifiedName::from_catalog("public", "orders"),
                kind: RelationKind::Table,
            },
            owner: Ident::from_catalog(owner),
            entries,
        }
    }

    fn owner_default(owner: &str, maintain: bool) -> Vec<AclEntry> {
        let mut privileges = vec!["DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"];
        if maintain {
            privileges.push("MAINTAIN");
        }
        privileges.into_iter().map(|p| entry(role(owner), p, false)).collect()
    }

    fn catalog(version: i32, owner: &str, extra: Vec<AclEntry>, roles: &[&str]) -> Catalog {
        let mut entries = owner_default(owner, version >= 170000);
        entries.extend(extra);
        let secret = Acl {
            object: Securable::Routine {
                name: QualifiedName::from_catalog("public", "secret"),
                arguments: ServerSql::from_catalog(""),
                procedure: false,
            },
            owner: Ident::from_catalog(owner),
            entries: vec![entry(role(owner), "EXECUTE", false), entry(role("app"), "EXECUTE", false)],
        };
        Catalog {
            server_version_num: version,
            acls: vec![orders(owner, entries), secret],
            roles: roles.iter().map(|r| Ident::from_catalog(*r)).collect(),
            ..Catalog::default()
        }
    }

    fn app_grants() -> Vec<AclEntry> {
        vec![
            entry(role("app"), "SELECT", false),
            entry(role("app"), "INSERT", false),
            entry(RoleName::Public, "SELECT", false),
        ]
    }

    #[test]
    fn the_same_privileges_under_another_owner_and_a_newer_server_match() {
        let source = catalog(150000, "postgres", app_grants(), &["postgres", "app"]);
        assert_eq!(compare_catalogs(&source, &source.clone()), Default::default());
        let target = catalog(180000, "ferry", app_grants(), &["ferry", "app"]);
        assert_eq!(
            compare_catalogs(&source, &target).differences,
            [],
            "MAINTAIN and the owner's name are not compared"
        );
        let mut both17 = catalog(170000, "postgres", app_grants(), &["postgres", "app"]);
        let target17 = both17.clone();
        both17.acls[0].entries.retain(|e| e.privilege != "MAINTAIN");
        assert_eq!(compare_catalogs(&both17, &target17).differences.len(), 1, "17 -> 17: MAINTAIN is compared");
    }

    #[test]
    fn a_revoked_grant_is_named_with_its_grant() {
        let source = catalog(150000, "postgres", app_grants(), &["postgres", "app"]);
        let mut target = source.clone();
        target.acls[0].entries.retain(|e| !(e.grantee == role("app") && e.privilege == "INSERT"));
        target.acls[1].entries.push(entry(RoleName::Public, "EXECUTE", false));
        let parity = compare_catalogs(&source, &target);
        let found: Vec<(&str, &Side, Option<&str>)> =
            parity.differences.iter().map(|d| (d.object.as_str(), &d.side, d.ddl.as_deref())).collect();
        assert_eq!(
            found,
            [
                (
                    "the grant to PUBLIC on function \"public\".\"secret\"()",
                    &Side::OnlyOnTarget,
                    Some("REVOKE EXECUTE ON FUNCTION \"public\".\"secret\"() FROM PUBLIC")
                ),
                (
                    "the grant to \"app\" on table \"public\".\"orders\"",
                    &differs("INSERT, SELECT", "SELECT"),
                    Some("GRANT INSERT ON TABLE \"public\".\"orders\" TO \"app\"")
                ),
            ],
            "{parity:#?}"
        );
        assert!(parity.differences.iter().all(|d| d.kind == ObjectKind::Grant));
    }

    #[test]
    fn grant_options_and_the_owners_privileges() {
        let mut extra = app_grants();
        extra[0].grantable = true;
        let source = catalog(150000, "postgres", extra, &["postgres", "app"]);
        let mut target = catalog(150000, "ferry", app_grants(), &["ferry", "app"]);
        target.acls[0].entries.retain(|e| !(e.grantee == role("ferry") && e.privilege == "TRUNCATE"));
        let ddl: Vec<String> =
            compare_catalogs(&source, &target).differences.into_iter().filter_map(|d| d.ddl).collect();
        assert_eq!(
            ddl,
            [
                "GRANT TRUNCATE ON TABLE \"public\".\"orders\" TO \"ferry\"",
                "GRANT SELECT ON TABLE \"public\".\"orders\" TO \"app\" WITH GRANT OPTION",
            ]
        );
        let ddl: Vec<String> =
            compare_catalogs(&target, &source).differences.into_iter().filter_map(|d| d.ddl).collect();
        assert_eq!(ddl[1], "REVOKE GRANT OPTION FOR SELECT ON TABLE \"public\".\"orders\" FROM \"app\"");
    }

    #[test]
    fn a_role_missing_on_one_side_is_a_warning() {
        let source = catalog(150000, "postgres", app_grants(), &["postgres", "app"]);
        let mut target = catalog(150000, "postgres", vec![entry(RoleName::Public, "SELECT", false)], &["postgres"]);
        target.acls[1].entries.retain(|e| e.grantee != role("app"));
        target.acls[0].entries.push(entry(role("auditor"), "SELECT", false));
        target.roles.push(Ident::from_catalog("auditor"));
        let parity = compare_catalogs(&source, &target);
        assert_eq!(parity.differences, [], "{parity:#?}");
        assert_eq!(parity.warnings.len(), 2, "{parity:#?}");
        assert!(parity.warnings[0].starts_with("role \"auditor\" does not exist on the source: its privileges on 1 object(s) on the target are not compared"), "{parity:#?}");
        assert!(parity.warnings[1].starts_with("role \"app\" does not exist on the target: its privileges on 2 object(s) on the source are not compared"), "{parity:#?}");
    }

    #[test]
    fn an_object_missing_on_the_target_gets_its_privileges_after_it() {
        let source = catalog(150000, "postgres", app_grants(), &["postgres", "app"]);
        let mut target = source.clone();
        target.acls.clear();
        let parity = compare_catalogs(&source, &target);
        let found: Vec<(&str, String, Option<&str>)> =
            parity.differences.iter().map(|d| (d.object.as_str(), d.to_string(), d.ddl.as_deref())).collect();
        assert_eq!(found.len(), 4, "not the owner's: {parity:#?}");
        assert_eq!(found[0].0, "the grant to PUBLIC on function \"public\".\"secret\"()");
        assert!(found[0].1.contains("on the source none, on the target EXECUTE once created (the default)"));
        assert_eq!(found[0].2, Some("REVOKE EXECUTE ON FUNCTION \"public\".\"secret\"() FROM PUBLIC"));
        assert_eq!(found[1].2, Some("GRANT EXECUTE ON FUNCTION \"public\".\"secret\"() TO \"app\""));
        assert_eq!(found[2].2, Some("GRANT SELECT ON TABLE \"public\".\"orders\" TO PUBLIC"));
        assert_eq!(found[3].2, Some("GRANT INSERT, SELECT ON TABLE \"public\".\"orders\" TO \"app\""));
        assert!(compare_catalogs(&target, &source).differences.is_empty(), "only on the target: dropped by its fix");
    }

    #[test]
    fn an_unknown_privilege_has_no_ddl() {
        let source = catalog(150000, "postgres", vec![entry(role("app"), "FROBNICATE", false)], &["postgres", "app"]);
        let target = catalog(150000, "postgres", vec![], &["postgres", "app"]);
        let parity = compare_catalogs(&source, &target);
        assert_eq!(parity.differences[0].ddl, None, "{parity:#?}");
    }

    #[test]
    fn an_owner_changed_on_one_side_is_named_with_its_alter() {
        let source = catalog(150000, "app", app_grants(), &["postgres", "app"]);
        let mut target = catalog(150000, "postgres", app_grants(), &["postgres", "app"]);
        // The function has the same owner on both sides: not named.
        target.acls[1].owner = Ident::from_catalog("app");
        let parity = compare_catalogs(&source, &target);
        let owners: Vec<(&str, Option<&str>)> = parity
            .differences
            .iter()
            .filter(|d| d.kind == ObjectKind::Owner)
            .map(|d| (d.object.as_str(), d.ddl.as_deref()))
            .collect();
        assert_eq!(
            owners,
            [("the owner of table \"public\".\"orders\"", Some("ALTER TABLE \"public\".\"orders\" OWNER TO \"app\"")),],
            "{parity:#?}"
        );
    }

    fn column_acl(entries: Vec<AclEntry>) -> Acl {
        Acl {
            object: Securable::Column {
                relation: QualifiedName::from_catalog("public", "orders"),
                column: Ident::from_catalog("Total"),
            },
            owner: Ident::from_catalog("postgres"),
            entries,
        }
    }

    #[test]
    fn column_privileges_granted_or_revoked_on_one_side_are_named() {
        let mut source = catalog(150000, "postgres", app_grants(), &["postgres", "app"]);
        let target = source.clone();
        source.acls.push(column_acl(vec![entry(role("app"), "UPDATE", false), entry(role("app"), "SELECT", true)]));
        let parity = compare_catalogs(&source, &target);
        let ddl: Vec<&str> = parity.differences.iter().filter_map(|d| d.ddl.as_deref()).collect();
        assert_eq!(
            ddl,
            ["GRANT UPDATE (\"Total\") ON TABLE \"public\".\"orders\" TO \"app\"; GRANT SELECT (\"Total\") ON TABLE \"public\".\"orders\" TO \"app\" WITH GRANT OPTION"],
            "{parity:#?}"
        );
        assert_eq!(parity.differences[0].object, "the grant to \"app\" on column \"Total\" of \"public\".\"orders\"");
        let parity = compare_catalogs(&target, &source);
        assert_eq!(
            parity.differences[0].ddl.as_deref(),
            Some("REVOKE SELECT (\"Total\"), UPDATE (\"Total\") ON TABLE \"public\".\"orders\" FROM \"app\""),
            "only on the target: revoked, {parity:#?}"
        );
    }

    fn defaults(schema: Option<&str>, objects: DefaultedObjects, entries: Vec<AclEntry>) -> Acl {
        Acl {
            object: Securable::Defaults {
                role: Ident::from_catalog("app"),
                schema: schema.map(Ident::from_catalog),
                objects,
            },
            owner: Ident::from_catalog("app"),
            entries,
        }
    }

    #[test]
    fn default_privileges_are_compared_against_the_built_in_ones() {
        let base = catalog(150000, "postgres", app_grants(), &["postgres", "app", "reader"]);
        let mut source = base.clone();
        // In a schema: added to the built-in ones.
        source.acls.push(defaults(
            Some("reports"),
            DefaultedObjects::Tables,
            vec![entry(role("reader"), "SELECT", false)],
        ));
        // Everywhere: replaces them (functions closed to PUBLIC).
        source.acls.push(defaults(None, DefaultedObjects::Functions, vec![entry(role("app"), "EXECUTE", false)]));
        let parity = compare_catalogs(&source, &base);
        let ddl: Vec<&str> = parity.differences.iter().filter_map(|d| d.ddl.as_deref()).collect();
        assert_eq!(
            ddl,
            [
                "ALTER DEFAULT PRIVILEGES FOR ROLE \"app\" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
                "ALTER DEFAULT PRIVILEGES FOR ROLE \"app\" IN SCHEMA \"reports\" GRANT SELECT ON TABLES TO \"reader\"",
            ],
            "{parity:#?}"
        );
        // The built-in ones written out on one side are the same as none.
        let mut written = base.clone();
        written.acls.push(defaults(
            None,
            DefaultedObjects::Functions,
            vec![entry(role("app"), "EXECUTE", false), entry(RoleName::Public, "EXECUTE", false)],
        ));
        assert_eq!(compare_catalogs(&written, &base).differences, []);
        // A role the target lacks: said, not compared.
        let mut lacking = base.clone();
        lacking.roles.retain(|r| r.as_str() != "app");
        let parity = compare_catalogs(&source, &lacking);
        assert!(parity.differences.iter().all(|d| !d.object.contains("default privileges")), "{parity:#?}");
    }
}
