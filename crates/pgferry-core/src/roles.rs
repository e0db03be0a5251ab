//! The source's roles made on the target (`pgferry roles`): a copy restores
//! owners and privileges only when their roles exist there, and roles are global,
//! so no dump of one database carries them.
//!
//! [`plan`] is the pure rule. Every role of the source that the target lacks is
//! created with its attributes (LOGIN, INHERIT, CREATEDB, CREATEROLE, CONNECTION
//! LIMIT, VALID UNTIL), then its memberships (with their admin option) and its
//! settings (for every database, and for the migrated one). Never:
//! - a password: the source's hashes are not read (RDS lets nobody read them);
//!   the plan names every login role that needs one set on the target;
//! - a role that exists on the target, whatever its attributes: it is named and
//!   left as it is, and so is its membership in a role created now;
//! - an attribute the target's user cannot give (SUPERUSER, REPLICATION,
//!   BYPASSRLS): the role is created without it, and the plan names it;
//! - the predefined roles (`pg_*`), the bootstrap superuser and a provider's own
//!   roles (`rdsadmin`, `rds_superuser`, ...): each target has its own.

use serde::Serialize;

use crate::sql::{Ident, Sql};

/// A role of the source, as its catalog shows it (and, for the cutover's gate,
/// one of the target's: [`crate::parity`] compares them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRole {
    pub name: String,
    pub superuser: bool,
    pub inherit: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub login: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    /// -1: no limit.
    pub connection_limit: i32,
    /// `rolvaliduntil` as the server prints it (in UTC, so both sides' agree).
    pub valid_until: Option<String>,
    /// Its OID on its server (0: not read). A physical copy keeps it, a rename too.
    pub oid: u32,
}

/// `member` is a member of `role`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub role: String,
    pub member: String,
    pub admin: bool,
    /// The roles that granted it (from PostgreSQL 16 one grant each, and a
    /// `REVOKE` takes back only the revoker's unless `GRANTED BY` names another).
    pub grantors: Vec<String>,
}

/// Where a per-role setting applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    EveryDatabase,
    /// The database being migrated: set for the target's database.
    ThisDatabase,
    /// Another database of the source: not carried (it may not exist on the target).
    OtherDatabase(String),
}

/// One `ALTER ROLE ... SET` of the source: `setting` as `pg_db_role_setting` stores it (`name=value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSetting {
    pub role: String,
    pub scope: Scope,
    pub setting: String,
}

/// What the target's user may give, and what the target has.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub roles: Vec<String>,
    /// The migrated database's name on the target.
    pub database: String,
    pub superuser: bool,
    /// The target's user has REPLICATION / BYPASSRLS itself (a non-superuser may
    /// give them from PostgreSQL 16 on only then).
    pub replication: bool,
    pub bypass_rls: bool,
    pub server_version_num: i32,
}

/// A role to create.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PlannedRole {
    pub name: String,
    /// Attributes of the source's role the target's user cannot give: left out.
    pub attributes_left_out: Vec<&'static str>,
    /// A login role: the operator sets its password on the target.
    pub needs_password: bool,
}

/// What `pgferry roles` does, in order.
#[derive(Clone, Debug, Default)]
pub struct RolesPlan {
    pub create: Vec<PlannedRole>,
    /// `CREATE ROLE`s: all or none.
    pub creates: Vec<Sql>,
    /// `GRANT role TO role`s and `ALTER ROLE ... SET`s: one the target refuses
    /// (its user may not grant that role or set that parameter) is named, not fatal.
    pub grants: Vec<Sql>,
    pub settings: Vec<Sql>,
    /// Roles the target has already: left exactly as they are.
    pub existing: Vec<String>,
    /// Roles not the operator's to create, with why.
    pub left_out: Vec<String>,
    /// Memberships and settings of the source not carried, with why.
    pub not_carried: Vec<String>,
}

impl RolesPlan {
    /// Every statement, in order: the roles, the memberships, the settings.
    pub fn statements(&self) -> impl Iterator<Item = &Sql> {
        self.creates.iter().chain(&self.grants).chain(&self.settings)
    }
}

/// The roles a cloud provider keeps for itself (prefixes).
const PROVIDER_ROLE_PREFIXES: &[&str] = &["rds", "azure", "cloudsql", "alloydb"];

/// Settings whose list elements are quoted identifiers (PostgreSQL's
/// `GUC_LIST_QUOTE`): each element becomes a literal of its own, as `pg_dumpall` does.
const LIST_SETTINGS: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// Why a role of the source is not the operator's to create, if it is not.
pub(crate) fn left_out(name: &str) -> Option<&'static str> {
    if name.starts_with("pg_") {
        return Some("predefined");
    }
    PROVIDER_ROLE_PREFIXES.iter().any(|p| name.starts_with(p)).then_some("the provider's own")
}

pub fn plan(source: &[SourceRole], memberships: &[Membership], settings: &[RoleSetting], target: &Target) -> RolesPlan {
    let mut plan = RolesPlan::default();
    let mut created: Vec<&str> = Vec::new();
    for role in source {
        if let Some(why) = left_out(&role.name) {
            plan.left_out.push(format!("{}: {why}", role.name));
        } else if target.roles.contains(&role.name) {
            plan.existing.push(role.name.clone());
        } else {
            let (statement, attributes_left_out) = create_role(role, target);
            plan.creates.push(statement);
            plan.create.push(PlannedRole { name: role.name.clone(), attributes_left_out, needs_password: role.login });
            created.push(&role.name);
        }
    }
    let exists = |name: &str| created.contains(&name) || target.roles.iter().any(|r| r == name);
    for m in memberships {
        if !created.contains(&m.member.as_str()) {
            if created.contains(&m.role.as_str()) {
                plan.not_carried.push(format!(
                    "{} is a member of {} on the source: {} exists on the target and is not changed (GRANT it yourself if it should be)",
                    m.member, m.role, m.member
                ));
            }
            continue;
        }
        if !exists(&m.role) {
            plan.not_carried
                .push(format!("{} is a member of {} on the source: {} is not on the target", m.member, m.role, m.role));
            continue;
        }
        plan.grants.push(grant(m));
    }
    for s in settings.iter().filter(|s| created.contains(&s.role.as_str())) {
        if let Scope::OtherDatabase(database) = &s.scope {
            plan.not_carried
                .push(format!("{}'s setting {} in database {database}: another database", s.role, s.setting));
            continue;
        }
        match set_setting(s, &target.database) {
            Some(set) => plan.settings.push(set),
            None => plan.not_carried.push(format!("{}'s setting {}: not of the form name=value", s.role, s.setting)),
        }
    }
    plan
}

fn ident(name: &str) -> Ident {
    Ident::from_catalog(name)
}

/// `GRANT role TO member`, with its admin option.
pub(crate) fn grant(m: &Membership) -> Sql {
    let grant = Sql::new("GRANT ").ident(&ident(&m.role)).push(" TO ").ident(&ident(&m.member));
    if m.admin {
        grant.push(" WITH ADMIN OPTION")
    } else {
        grant
    }
}

/// `ALTER ROLE ... [IN DATABASE database] SET ...` for a setting of every
/// database or of the migrated one (`database`: the target's name for it);
/// `None` for another database's or one not of the form `name=value`.
pub(crate) fn set_setting(s: &RoleSetting, database: &str) -> Option<Sql> {
    let alter = Sql::new("ALTER ROLE ").ident(&ident(&s.role));
    let alter = match &s.scope {
        Scope::EveryDatabase => alter,
        Scope::ThisDatabase => alter.push(" IN DATABASE ").ident(&ident(database)),
        Scope::OtherDatabase(_) => return None,
    };
    Some(alter.append(set_clause(&s.setting)?))
}

/// `ALTER ROLE role RESET name`, for every database.
pub(crate) fn reset_setting(role: &str, name: &str) -> Option<Sql> {
    Some(Sql::new("ALTER ROLE ").ident(&ident(role)).push(" RESET ").append(setting_name(name)?))
}

/// Whether the target's user may give (or take) SUPERUSER, REPLICATION or BYPASSRLS.
pub(crate) fn may_give(attribute: &str, target: &Target) -> bool {
    let since_16 = target.server_version_num >= 160_000;
    match attribute {
        "SUPERUSER" => target.superuser,
        "REPLICATION" => target.superuser || (since_16 && target.replication),
        _ => target.superuser || (since_16 && target.bypass_rls),
    }
}

/// `CREATE ROLE` with the source's attributes, and those left out.
pub(crate) fn create_role(role: &SourceRole, target: &Target) -> (Sql, Vec<&'static str>) {
    let flag = |sql: Sql, on: bool, yes: &'static str, no: &'static str| sql.push(if on { yes } else { no });
    let mut sql = Sql::new("CREATE ROLE ").ident(&ident(&role.name)).push(" WITH");
    sql = flag(sql, role.login, " LOGIN", " NOLOGIN");
    sql = flag(sql, role.inherit, " INHERIT", " NOINHERIT");
    sql = flag(sql, role.create_db, " CREATEDB", " NOCREATEDB");
    sql = flag(sql, role.create_role, " CREATEROLE", " NOCREATEROLE");
    sql = sql.push(" CONNECTION LIMIT ").int(i64::from(role.connection_limit));
    if let Some(until) = &role.valid_until {
        sql = sql.push(" VALID UNTIL ").literal(until);
    }
    let mut left_out = Vec::new();
    for (wanted, attribute) in
        [(role.superuser, "SUPERUSER"), (role.replication, "REPLICATION"), (role.bypass_rls, "BYPASSRLS")]
    {
        match (wanted, may_give(attribute, target)) {
            (false, _) => {}
            (true, true) => {
                sql = sql.push(match attribute {
                    "SUPERUSER" => " SUPERUSER",
                    "REPLICATION" => " REPLICATION",
                    _ => " BYPASSRLS",
                })
            }
            (true, false) => left_out.push(attribute),
        }
    }
    (sql, left_out)
}

/// ` SET name = value[, value]` from a stored `name=value`.
fn set_clause(setting: &str) -> Option<Sql> {
    let (name, value) = setting.split_once('=')?;
    let mut sql = Sql::new(" SET ").append(setting_name(name)?).push(" = ");
    if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        for (i, element) in list_elements(value).iter().enumerate() {
            if i > 0 {
                sql = sql.push(", ");
            }
            sql = sql.literal(element);
        }
        Some(sql)
    } else {
        Some(sql.literal(value))
    }
}

/// A setting's name, each part quoted (`"myapp"."tenant"`).
fn setting_name(name: &str) -> Option<Sql> {
    if name.is_empty() {
        return None;
    }
    let mut sql = Sql::new("");
    for (i, part) in name.split('.').enumerate() {
        if i > 0 {
            sql = sql.push(".");
        }
        sql = sql.ident(&Ident::new(part).ok()?);
    }
    Some(sql)
}

/// The elements of a stored list setting: separated by commas, each possibly
/// in double quotes (a doubled quote inside is one quote).
fn list_elements(value: &str) -> Vec<String> {
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => elements.push(std::mem::take(&mut current).trim().to_string()),
            c if c.is_whitespace() && !quoted && current.is_empty() => {}
            c => current.push(c),
        }
    }
    elements.push(current.trim().to_string());
    elements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> SourceRole {
        SourceRole { name: name.into(), inherit: true, connection_limit: -1, ..SourceRole::default() }
    }

    fn texts(plan: &RolesPlan) -> Vec<&str> {
        plan.statements().map(Sql::as_str).collect()
    }

    #[test]
    fn missing_roles_are_created_with_their_attributes_memberships_and_settings_existing_ones_untouched() {
        let rw = SourceRole {
            login: true,
            inherit: false,
            create_db: true,
            connection_limit: 7,
            valid_until: Some("2031-01-01 00:00:00+00".into()),
            ..role("app \"rw\"")
        };
        let source = [role("owner"), rw, role("existing"), role("pg_read_all_data"), role("rds_superuser")];
        let memberships = [
            Membership { role: "owner".into(), member: "app \"rw\"".into(), admin: true, ..Membership::default() },
            Membership {
                role: "pg_read_all_data".into(),
                member: "app \"rw\"".into(),
                admin: false,
                ..Membership::default()
            },
            Membership { role: "owner".into(), member: "existing".into(), admin: false, ..Membership::default() },
            Membership { role: "rds_superuser".into(), member: "owner".into(), admin: false, ..Membership::default() },
        ];
        let settings = [
            RoleSetting {
                role: "app \"rw\"".into(),
                scope: Scope::EveryDatabase,
                setting: "search_path=app, \"my \"\"s\"\"\"".into(),
            },
            RoleSetting {
                role: "app \"rw\"".into(),
                scope: Scope::ThisDatabase,
                setting: "statement_timeout=5s".into(),
            },
            RoleSetting {
                role: "owner".into(),
                scope: Scope::OtherDatabase("other".into()),
                setting: "work_mem=1MB".into(),
            },
            RoleSetting { role: "existing".into(), scope: Scope::EveryDatabase, setting: "work_mem=1MB".into() },
        ];
        let target = Target {
            roles: vec!["existing".into(), "pg_read_all_data".into()],
            database: "app db".into(),
            superuser: true,
            server_version_num: 150_000,
            ..Target::default()
        };
        let plan = plan(&source, &memberships, &settings, &target);
        assert_eq!(
            texts(&plan),
            [
                r#"CREATE ROLE "owner" WITH NOLOGIN INHERIT NOCREATEDB NOCREATEROLE CONNECTION LIMIT -1"#,
                r#"CREATE ROLE "app ""rw""" WITH LOGIN NOINHERIT CREATEDB NOCREATEROLE CONNECTION LIMIT 7 VALID UNTIL '2031-01-01 00:00:00+00'"#,
                r#"GRANT "owner" TO "app ""rw""" WITH ADMIN OPTION"#,
                r#"GRANT "pg_read_all_data" TO "app ""rw""""#,
                r#"ALTER ROLE "app ""rw""" SET "search_path" = 'app', 'my "s"'"#,
                r#"ALTER ROLE "app ""rw""" IN DATABASE "app db" SET "statement_timeout" = '5s'"#,
            ]
        );
        assert_eq!(plan.existing, ["existing"]);
        assert_eq!(plan.left_out, ["pg_read_all_data: predefined", "rds_superuser: the provider's own"]);
        assert_eq!(plan.not_carried.len(), 3, "{:?}", plan.not_carried);
        assert!(
            plan.not_carried[0].contains("existing is a member of owner")
                && plan.not_carried[0].contains("not changed")
        );
        assert!(plan.not_carried[1].contains("rds_superuser is not on the target"));
        assert!(plan.not_carried[2].contains("database other"));
        assert_eq!(plan.create.iter().filter(|r| r.needs_password).count(), 1);
    }

    #[test]
    fn attributes_the_targets_user_cannot_give_are_left_out_and_named() {
        let strong = SourceRole { superuser: true, replication: true, bypass_rls: true, ..role("strong") };
        let before_16 =
            Target { replication: true, bypass_rls: true, server_version_num: 150_000, ..Target::default() };
        let plan = plan(std::slice::from_ref(&strong), &[], &[], &before_16);
        assert_eq!(plan.create[0].attributes_left_out, ["SUPERUSER", "REPLICATION", "BYPASSRLS"]);
        assert!(!plan.creates[0].as_str().contains("SUPERUSER"));
        let since_16 = Target { server_version_num: 160_000, ..before_16 };
        let plan = super::plan(std::slice::from_ref(&strong), &[], &[], &since_16);
        assert_eq!(plan.create[0].attributes_left_out, ["SUPERUSER"]);
        assert!(plan.creates[0].as_str().ends_with(" REPLICATION BYPASSRLS"));
        let superuser = Target { superuser: true, ..Target::default() };
        let plan = super::plan(&[strong], &[], &[], &superuser);
        assert!(plan.create[0].attributes_left_out.is_empty());
        assert!(plan.creates[0].as_str().ends_with(" SUPERUSER REPLICATION BYPASSRLS"));
    }

    #[test]
    fn a_rerun_with_every_role_present_plans_nothing() {
        let target = Target { roles: vec!["a".into()], ..Target::default() };
        let plan = plan(&[role("a")], &[], &[], &target);
        assert!(plan.statements().next().is_none() && plan.create.is_empty());
    }

    #[test]
    fn custom_and_list_settings_are_quoted_element_by_element() {
        assert_eq!(set_clause("myapp.tenant=a'b").unwrap().as_str(), r#" SET "myapp"."tenant" = 'a''b'"#);
        assert_eq!(set_clause("DateStyle=ISO, MDY").unwrap().as_str(), r#" SET "DateStyle" = 'ISO, MDY'"#);
        assert_eq!(
            set_clause("search_path=\"$user\", public").unwrap().as_str(),
            r#" SET "search_path" = '$user', 'public'"#
        );
        assert!(set_clause("=x").is_none() && set_clause("novalue").is_none());
    }
}
