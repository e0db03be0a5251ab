//! The database itself: its owner, connection limit, comment and settings
//! (`ALTER DATABASE ... SET`, and `ALTER ROLE ... IN DATABASE ... SET`), which
//! `pg_dump` writes only with `--create` and logical replication never carries,
//! so a copy made with `pg_dump --schema-only` leaves the target's database as
//! it was made ([ALTER DATABASE](https://www.postgresql.org/docs/current/sql-alterdatabase.html),
//! [pg_db_role_setting](https://www.postgresql.org/docs/current/catalog-pg-db-role-setting.html)).
//! Its privileges (`CONNECT`, `TEMPORARY`, `CREATE`) are compared with the
//! other privileges ([`super::grants`]).
//!
//! The database is one object on each side whatever its name: a migration may
//! move `app` into `app_new`, and every fix names the target's database. A
//! setting only the target has is said, not refused: it was made there on
//! purpose (a new instance tuned before the move), and the source's
//! application never ran with it. The copy carries the rest itself
//! ([`carry`]); the cutover's gate finds what changed since.

use std::collections::BTreeSet;

use super::{differs, pair, push, run, Catalog, ObjectKind, Parity, Side};
use crate::sql::{Ident, Sql};

/// One side's database, as far as the gate compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseProperties {
    /// This side's name for it.
    pub name: Ident,
    pub owner: Ident,
    /// `datconnlimit`, -1 for none.
    pub connection_limit: i32,
    pub comment: Option<String>,
    pub settings: Vec<DatabaseSetting>,
    /// The settings this side's server knows (`pg_settings`, lower case): a
    /// source's setting that a newer target dropped or renamed
    /// (`force_parallel_mode` in 16) cannot be set there.
    pub known_settings: BTreeSet<String>,
}

/// A setting of the database (`role` none) or of a role in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseSetting {
    pub role: Option<Ident>,
    pub name: String,
    /// As `pg_db_role_setting` stores it (`search_path` as `"$user", public`).
    pub value: String,
}

impl DatabaseSetting {
    fn object(&self, database: &Ident) -> String {
        match &self.role {
            None => format!("the setting {} of database {database}", self.name),
            Some(role) => format!("the setting {} of role {role} in database {database}", self.name),
        }
    }

    /// `ALTER DATABASE "d" ` or `ALTER ROLE "r" IN DATABASE "d" `.
    fn head(&self, database: &Ident) -> Sql {
        match &self.role {
            None => Sql::new("ALTER DATABASE ").ident(database).push(" "),
            Some(role) => Sql::new("ALTER ROLE ").ident(role).push(" IN DATABASE ").ident(database).push(" "),
        }
    }

    fn set(&self, database: &Ident) -> Sql {
        let sql = self.head(database).push("SET ").ident(&Ident::from_catalog(self.name.clone())).push(" TO ");
        value_sql(sql, &self.name, &self.value)
    }

    fn reset(&self, database: &Ident) -> Sql {
        self.head(database).push("RESET ").ident(&Ident::from_catalog(self.name.clone()))
    }
}

/// The settings whose stored value is a list of quoted elements, each to be
/// given as its own literal (`pg_dump`'s `variable_is_guc_list_quote`): one
/// literal `'"$user", public'` would become a single schema of that name.
const LIST_SETTINGS: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// The settings that name libraries every new session loads: set to one the
/// target lacks, every connection to the database is refused (`could not access
/// file`), pgferry's and the application's, so the copy does not carry them
/// (the gate names them with their fix, to run once the target has the libraries).
const LIBRARY_SETTINGS: [&str; 2] = ["local_preload_libraries", "session_preload_libraries"];

fn value_sql(mut sql: Sql, name: &str, value: &str) -> Sql {
    if !LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        return sql.literal(value);
    }
    let elements = split_list(value);
    if elements.is_empty() {
        return sql.literal("");
    }
    for (i, element) in elements.iter().enumerate() {
        sql = if i == 0 { sql } else { sql.push(", ") }.literal(element);
    }
    sql
}

/// A stored list setting's elements: separated by commas, each maybe in double
/// quotes (`""` inside them a quote), blanks around them dropped.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut element = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        element.push('"');
                    } else {
                        break;
                    }
                } else {
                    element.push(c);
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                element.push(c);
                chars.next();
            }
            element = element.trim_end().to_string();
        }
        out.push(element);
        if chars.next().is_none() {
            break;
        }
    }
    out
}

pub(super) fn compare(source: &Catalog, target: &Catalog, p: &mut Parity) {
    compare_database(source, target, false, p)
}

/// `carrying`: for the copy, which leaves out what it must not run unseen.
fn compare_database(source: &Catalog, target: &Catalog, carrying: bool, p: &mut Parity) {
    let (Some(s), Some(t)) = (&source.database, &target.database) else { return };
    let target_roles: BTreeSet<&Ident> = target.roles.iter().collect();
    let source_roles: BTreeSet<&Ident> = source.roles.iter().collect();
    let database = &t.name;
    let object = format!("database {database}");
    if s.owner != t.owner {
        let side = differs(format!("owned by {}", s.owner), format!("owned by {}", t.owner));
        if target_roles.contains(&s.owner) {
            let fix = run(Sql::new("ALTER DATABASE ").ident(database).push(" OWNER TO ").ident(&s.owner));
            push(p, ObjectKind::Database, object.clone(), side, fix);
        } else {
            p.warnings.push(format!(
                "{object} is owned by {} on the source, a role the target does not have: create it on the target and run ALTER DATABASE {database} OWNER TO {}",
                s.owner, s.owner
            ));
        }
    }
    if s.connection_limit != t.connection_limit {
        let show = |limit: i32| {
            if limit < 0 {
                "no connection limit".to_string()
            } else {
                format!("connection limit {limit}")
            }
        };
        let fix = Sql::new("ALTER DATABASE ").ident(database).push(" CONNECTION LIMIT ").int(s.connection_limit.into());
        push(
            p,
            ObjectKind::Database,
            object.clone(),
            differs(show(s.connection_limit), show(t.connection_limit)),
            run(fix),
        );
    }
    if s.comment != t.comment {
        let sql = Sql::new("COMMENT ON DATABASE ").ident(database).push(" IS ");
        let fix = run(match &s.comment {
            Some(text) => sql.literal(text),
            None => sql.push("NULL"),
        });
        let show = |c: &Option<String>| c.as_ref().map_or_else(|| "none".to_string(), |c| format!("{c:?}"));
        push(
            p,
            ObjectKind::Database,
            format!("the comment on {object}"),
            differs(show(&s.comment), show(&t.comment)),
            fix,
        );
    }
    let mut unmatched = BTreeSet::new();
    for (sv, tv) in pair(&s.settings, &t.settings, |v| (v.role.clone(), v.name.clone())) {
        let v = sv.or(tv).expect("paired");
        if let Some(role) = &v.role {
            if !target_roles.contains(role) || !source_roles.contains(role) {
                unmatched.insert(role.clone());
                continue;
            }
        }
        // A custom setting (`myapp.x`) is a placeholder any server takes.
        let name = v.name.to_ascii_lowercase();
        if sv.is_some() && !name.contains('.') && !t.known_settings.is_empty() && !t.known_settings.contains(&name) {
            p.warnings.push(format!(
                "{} is not carried: the target's PostgreSQL has no setting {} (removed or renamed in a newer version); set its successor on the target if the application needs it",
                v.object(database),
                v.name
            ));
            continue;
        }
        if carrying && sv.is_some_and(|sv| Some(sv) != tv) && LIBRARY_SETTINGS.contains(&name.as_str()) {
            p.warnings.push(format!(
                "{} is not carried: a library the target lacks would refuse every new connection to the database; once the target has them, run: {}",
                v.object(database),
                sv.expect("from the source").set(database)
            ));
            continue;
        }
        match (sv, tv) {
            (Some(sv), None) => push(p, ObjectKind::Database, sv.object(database), Side::MissingOnTarget, run(sv.set(database))),
            (Some(sv), Some(tv)) if sv.value != tv.value => {
                push(p, ObjectKind::Database, sv.object(database), differs(&sv.value, &tv.value), run(sv.set(database)))
            }
            // The switched application could not write: a stopped cutover's fence
            // copied there, or a setting made for the move and left behind.
            (None, Some(tv)) if starts_read_only(tv) => {
                push(p, ObjectKind::Database, tv.object(database), Side::OnlyOnTarget, run(tv.reset(database)))
            }
            (None, Some(tv)) => p.warnings.push(format!(
                "{} is {:?} on the target only: kept (the source's application never ran with it); to match the source: {}",
                tv.object(database),
                tv.value,
                tv.reset(database)
            )),
            _ => {}
        }
    }
    for role in unmatched {
        p.warnings.push(format!(
            "role {role} does not exist on both sides: its settings in database {database} are not compared; create it on the target and set them as on the source"
        ));
    }
}

/// Whether a setting makes sessions start read-only.
fn starts_read_only(setting: &DatabaseSetting) -> bool {
    setting.name.eq_ignore_ascii_case("default_transaction_read_only")
        && ["on", "true", "yes", "1"].contains(&setting.value.to_ascii_lowercase().as_str())
}

/// The statements that make the target's database as the source's (what the
/// copy runs): the fixes of every difference [`compare`] finds, privileges
/// included, each with the difference it mends.
pub fn carry(source: &Catalog, target: &Catalog) -> Parity {
    let mut p = Parity::default();
    compare_database(source, target, true, &mut p);
    super::grants::compare_database(source, target, &mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parity::{compare as compare_catalogs, Acl, AclEntry, RoleName, Securable};

    fn ident(name: &str) -> Ident {
        Ident::from_catalog(name)
    }

    fn setting(role: Option<&str>, name: &str, value: &str) -> DatabaseSetting {
        DatabaseSetting { role: role.map(ident), name: name.into(), value: value.into() }
    }

    fn side(name: &str, settings: Vec<DatabaseSetting>, acl: Vec<AclEntry>) -> Catalog {
        Catalog {
            server_version_num: 150000,
            database: Some(DatabaseProperties {
                name: ident(name),
                owner: ident("app"),
                connection_limit: -1,
                comment: None,
                settings,
                known_settings: BTreeSet::new(),
            }),
            acls: vec![Acl { object: Securable::Database(ident(name)), owner: ident("app"), entries: acl }],
            roles: vec![ident("app"), ident("reporting"), ident("postgres")],
            ..Catalog::default()
        }
    }

    fn owner_default() -> Vec<AclEntry> {
        ["CREATE", "TEMPORARY", "CONNECT"]
            .into_iter()
            .map(|p| AclEntry { grantee: RoleName::Role(ident("app")), privilege: p.into(), grantable: false })
            .chain(["TEMPORARY", "CONNECT"].into_iter().map(|p| AclEntry {
                grantee: RoleName::Public,
                privilege: p.into(),
                grantable: false,
            }))
            .collect()
    }

    #[test]
    fn the_same_database_under_another_name_matches() {
        let settings = vec![
            setting(None, "search_path", "\"$user\", public, app"),
            setting(Some("reporting"), "work_mem", "64MB"),
        ];
        let source = side("app", settings.clone(), owner_default());
        let target = side("app_new", settings, owner_default());
        assert_eq!(compare_catalogs(&source, &target), Parity::default());
    }

    #[test]
    fn settings_ownership_limit_comment_and_privileges_are_fixed_on_the_targets_database() {
        let mut source = side(
            "app",
            vec![
                setting(None, "search_path", "\"$user\", public, \"Odd, name\""),
                setting(None, "statement_timeout", "5s"),
                setting(Some("reporting"), "default_transaction_read_only", "on"),
                setting(Some("ghost"), "work_mem", "1MB"),
            ],
            owner_default()
                .into_iter()
                .filter(|e| e.grantee != RoleName::Public)
                .chain([AclEntry {
                    grantee: RoleName::Role(ident("app")),
                    privilege: "CONNECT".into(),
                    grantable: false,
                }])
                .collect(),
        );
        let db = source.database.as_mut().unwrap();
        db.connection_limit = 50;
        db.comment = Some("it's the app".into());
        let target = side(
            "app new",
            vec![setting(None, "statement_timeout", "0"), setting(None, "work_mem", "32MB")],
            owner_default(),
        );
        let parity = compare_catalogs(&source, &target);
        let ddl: Vec<&str> = parity.differences.iter().filter_map(|d| d.ddl.as_deref()).collect();
        assert_eq!(
            ddl,
            [
                "ALTER DATABASE \"app new\" CONNECTION LIMIT 50",
                "COMMENT ON DATABASE \"app new\" IS 'it''s the app'",
                "ALTER DATABASE \"app new\" SET \"search_path\" TO '$user', 'public', 'Odd, name'",
                "ALTER DATABASE \"app new\" SET \"statement_timeout\" TO '5s'",
                "ALTER ROLE \"reporting\" IN DATABASE \"app new\" SET \"default_transaction_read_only\" TO 'on'",
                "REVOKE CONNECT, TEMPORARY ON DATABASE \"app new\" FROM PUBLIC",
            ],
            "{parity:#?}"
        );
        assert!(parity.differences.iter().all(|d| matches!(d.kind, ObjectKind::Database | ObjectKind::Grant)));
        let warnings = parity.warnings.join("\n");
        assert!(
            warnings.contains("the setting work_mem of database \"app new\" is \"32MB\" on the target only: kept"),
            "{warnings}"
        );
        assert!(warnings.contains("role \"ghost\" does not exist on both sides"), "{warnings}");
        assert_eq!(
            carry(&source, &target).differences,
            parity.differences,
            "the copy carries exactly what the gate asks"
        );
    }

    #[test]
    fn an_owner_the_target_lacks_is_a_warning_one_it_has_a_fix() {
        let source = side("app", vec![], owner_default());
        let mut target = source.clone();
        target.database.as_mut().unwrap().owner = ident("postgres");
        target.acls[0].owner = ident("postgres");
        let parity = compare_catalogs(&source, &target);
        assert_eq!(
            parity.differences[0].ddl.as_deref(),
            Some("ALTER DATABASE \"app\" OWNER TO \"app\""),
            "{parity:#?}"
        );
        target.roles.retain(|r| r.as_str() != "app");
        let parity = compare_catalogs(&source, &target);
        assert!(parity.differences.iter().all(|d| d.kind != ObjectKind::Database), "{parity:#?}");
        assert!(parity
            .warnings
            .iter()
            .any(|w| w.contains("owned by \"app\" on the source, a role the target does not have")));
    }

    #[test]
    fn a_read_only_default_only_on_the_target_stops_the_cutover() {
        let source = side("app", vec![], owner_default());
        let target = side(
            "app",
            vec![setting(Some("app"), "default_transaction_read_only", "on"), setting(None, "work_mem", "8MB")],
            owner_default(),
        );
        let parity = compare_catalogs(&source, &target);
        let ddl: Vec<&str> = parity.differences.iter().filter_map(|d| d.ddl.as_deref()).collect();
        assert_eq!(ddl, ["ALTER ROLE \"app\" IN DATABASE \"app\" RESET \"default_transaction_read_only\""]);
        assert!(parity.warnings.iter().any(|w| w.contains("work_mem")), "{parity:#?}");
    }

    #[test]
    fn list_settings_split_as_the_server_stores_them() {
        assert_eq!(split_list("\"$user\", public"), ["$user", "public"]);
        assert_eq!(split_list("a,\"b\"\"c\" , d e"), ["a", "b\"c", "d e"]);
        assert_eq!(split_list(""), Vec::<String>::new());
        let sql = value_sql(Sql::default(), "temp_tablespaces", "");
        assert_eq!(sql.as_str(), "''");
        assert_eq!(value_sql(Sql::default(), "work_mem", "4MB").as_str(), "'4MB'");
    }
}
