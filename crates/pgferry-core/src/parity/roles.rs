//! Roles, compared just before the cutover. Roles are the server's, not the
//! database's: neither logical replication nor pgferry's change capture carries
//! them, so after a snapshot restore (the seeded path) or `pgferry roles` (the
//! copy path) every later change on the source is lost at the switch unless it
//! is found here: a role created since, LOGIN granted, a membership granted or
//! revoked, a setting of the role (`ALTER ROLE ... SET`, every database), a
//! connection limit or VALID UNTIL changed, a password rotated. The
//! application would then fail to log in, or behave otherwise, once switched.
//!
//! The rules (the statements are [`crate::roles`]'s, which `pgferry roles` runs):
//! - a role of the source the target lacks stops the cutover; its fix is the
//!   `CREATE ROLE` `pgferry roles` runs, then its memberships and settings, each
//!   a difference of its own (in that order, so the fixes run as listed);
//! - an attribute, a membership (with its admin option) or a setting of every
//!   database that differs stops it, fixed by `ALTER ROLE`, `GRANT` or `REVOKE`;
//!   SUPERUSER, REPLICATION and BYPASSRLS only where the target's user may give
//!   them, else said as a warning. A role's settings in the migrated database
//!   are the database's ([`super::database`]); those of other databases are
//!   their own databases' gates' (`cutover --all-databases` runs one per database);
//! - a role only the target has is a warning: made there on purpose;
//! - passwords are compared where both sides' users may read `pg_authid` (a
//!   superuser on plain PostgreSQL; nobody on RDS), and never shown: the reader
//!   takes a digest of each hash, not the hash. A login role with a password on
//!   the source and none on the target stops the cutover. Two hashes that differ
//!   stop it when the target is a physical copy of the source (a seeded
//!   migration: it started with the same hashes, so one was changed since);
//!   after a logical copy a password set anew on the target has a salt of its
//!   own, so a difference is said once as a warning. On a seeded target a
//!   password the source no longer has (removed since the snapshot) stops it
//!   too, fixed by `PASSWORD NULL`: the old one would still log in;
//! - the predefined roles (`pg_*`), the bootstrap superuser and the provider's
//!   own (`rdsadmin`, `rds_*`, ...) are left out, as `pgferry roles` leaves them;
//! - the attributes and memberships of the role pgferry connects to the target
//!   as are warnings: it is the operator's tool, not the application's; a
//!   non-superuser cannot change its own attributes, nor revoke a membership it
//!   was given by the server (PostgreSQL 16 grants a role's creator ADMIN on it,
//!   so every role `pgferry roles` made adds one), so such a difference would
//!   refuse every cutover; and taking them away could take what pgferry needs.
//! - a setting only a superuser may set, which the target's user may not (nor
//!   was granted `SET` on), is a warning with the statement for a superuser.
//!
//! The cutover's fence does not touch roles (it revokes `CONNECT` on the
//! database and makes it read-only, see [`crate::fence`]), and the gate is not
//! read while a fence is up ([`super`]'s callers), so no fence is read here.

use std::collections::{BTreeMap, BTreeSet};

use super::{differs, push, run, Catalog, Fix, ObjectKind, Parity, Side};
use crate::roles::{self, Membership, RoleSetting, Scope, SourceRole, Target};
use crate::sql::{Ident, Sql};

/// One server's roles, as far as the gate compares them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServerRoles {
    /// The roles but the predefined ones and the bootstrap superuser (OID below 16384).
    pub roles: Vec<SourceRole>,
    /// Memberships of those roles.
    pub memberships: Vec<Membership>,
    /// Their settings (`pg_db_role_setting`), each with its scope.
    pub settings: Vec<RoleSetting>,
    /// A digest of each role's password hash (`None`: no password), never the
    /// hash; `None` when this side's user may not read `pg_authid`.
    pub passwords: Option<BTreeMap<String, Option<String>>>,
    /// The target's: it began as a physical copy of the source (a seeded
    /// migration: a snapshot restore or a base backup), so its roles began as
    /// the source's, password hashes included. Not the system identifier: two
    /// servers made from one image share it too.
    pub physical_copy: bool,
    /// What the user pgferry connects as may give.
    pub superuser: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    /// The role pgferry connects as (`current_user`).
    pub user: String,
    /// The settings only a superuser may set that this side's user may not
    /// (lower case): a role's value of one is no fix this user can run.
    pub superuser_settings: BTreeSet<String>,
}

fn ident(name: &str) -> Ident {
    Ident::from_catalog(name)
}

fn compared(role: &SourceRole) -> bool {
    roles::left_out(&role.name).is_none()
}

pub(super) fn compare(source: &Catalog, target: &Catalog, p: &mut Parity) {
    let (Some(s), Some(t)) = (&source.server_roles, &target.server_roles) else { return };
    let model = Target {
        roles: target.roles.iter().map(|r| r.as_str().to_string()).collect(),
        database: target.database.as_ref().map(|d| d.name.as_str().to_string()).unwrap_or_default(),
        superuser: t.superuser,
        replication: t.replication,
        bypass_rls: t.bypass_rls,
        server_version_num: target.server_version_num,
    };
    let on_target: BTreeSet<&str> = target.roles.iter().map(Ident::as_str).collect();
    let on_source: BTreeSet<&str> = source.roles.iter().map(Ident::as_str).collect();
    let targets: BTreeMap<&str, &SourceRole> =
        t.roles.iter().filter(|r| compared(r)).map(|r| (r.name.as_str(), r)).collect();
    let mut created: Vec<&str> = Vec::new();
    for role in s.roles.iter().filter(|r| compared(r) && !on_target.contains(r.name.as_str())) {
        let (sql, left_out) = roles::create_role(role, &model);
        let mut fix = run(sql).note(" (what pgferry roles runs)");
        if !left_out.is_empty() {
            fix = fix.note(&format!(
                "; created without {}: the target's user cannot give it (a superuser can, with ALTER ROLE)",
                left_out.join(", ")
            ));
        }
        if role.login {
            fix = fix.note("; a login role: set its password on the target (pgferry never copies passwords)");
        }
        if let Some(old) = renamed(role, t, &on_source) {
            let rename = Sql::new("ALTER ROLE ").ident(&ident(&old.name)).push(" RENAME TO ").ident(&ident(&role.name));
            fix = fix.note(&format!(
                "; or, if it is role {} renamed on the source since the snapshot (the target's role of that name has this role's OID, as a physical copy keeps it), run instead: {rename} (it keeps its objects, privileges and password; an MD5 password is cleared by a rename: set it again)",
                ident(&old.name)
            ));
        }
        push(p, ObjectKind::Role, format!("role {}", ident(&role.name)), Side::MissingOnTarget, fix);
        created.push(&role.name);
    }
    for role in t.roles.iter().filter(|r| compared(r) && !on_source.contains(r.name.as_str())) {
        p.warnings.push(format!(
            "role {} is on the target only: kept (made there on purpose, or dropped on the source since the copy: then DROP ROLE it on the target)",
            ident(&role.name)
        ));
    }
    for role in s.roles.iter().filter(|r| compared(r)) {
        if let Some(theirs) = targets.get(role.name.as_str()) {
            attributes(role, theirs, &model, &t.user, p);
        }
    }
    let exists_after = |name: &str| on_target.contains(name) || created.contains(&name);
    memberships(s, t, &targets, &created, &exists_after, target.server_version_num, p);
    settings(source, target, &targets, &created, &model.database, p);
    passwords(s, t, &targets, p);
}

/// The target's role that has `role`'s OID and whose name the source lacks, on
/// a physical copy: possibly `role` under its name at the snapshot (a rename
/// keeps the OID). Only possibly: a role made on either side since the snapshot
/// may take the same OID as one made on the other, so it is a hint, never the fix.
fn renamed<'a>(role: &SourceRole, t: &'a ServerRoles, on_source: &BTreeSet<&str>) -> Option<&'a SourceRole> {
    if !t.physical_copy || role.oid == 0 {
        return None;
    }
    t.roles.iter().find(|r| r.oid == role.oid && compared(r) && !on_source.contains(r.name.as_str()))
}

/// The attributes `ALTER ROLE` changes, as each side has them.
fn attributes(source: &SourceRole, target: &SourceRole, model: &Target, user: &str, p: &mut Parity) {
    let flag = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
    let mut sql = Sql::new("ALTER ROLE ").ident(&ident(&source.name)).push(" WITH");
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    for (s, t, yes, no) in [
        (source.login, target.login, " LOGIN", " NOLOGIN"),
        (source.inherit, target.inherit, " INHERIT", " NOINHERIT"),
        (source.create_db, target.create_db, " CREATEDB", " NOCREATEDB"),
        (source.create_role, target.create_role, " CREATEROLE", " NOCREATEROLE"),
    ] {
        if s != t {
            sql = sql.push(flag(s, yes, no));
            theirs.push(flag(s, yes, no).trim().to_string());
            ours.push(flag(t, yes, no).trim().to_string());
        }
    }
    for (s, t, yes, no) in [
        (source.superuser, target.superuser, " SUPERUSER", " NOSUPERUSER"),
        (source.replication, target.replication, " REPLICATION", " NOREPLICATION"),
        (source.bypass_rls, target.bypass_rls, " BYPASSRLS", " NOBYPASSRLS"),
    ] {
        if s == t {
            continue;
        }
        if roles::may_give(yes.trim(), model) {
            sql = sql.push(flag(s, yes, no));
            theirs.push(flag(s, yes, no).trim().to_string());
            ours.push(flag(t, yes, no).trim().to_string());
        } else {
            p.warnings.push(format!(
                "role {} is {} on the source, {} on the target: the target's user cannot change that (a superuser can: ALTER ROLE {} WITH{})",
                ident(&source.name),
                flag(s, yes, no).trim(),
                flag(t, yes, no).trim(),
                ident(&source.name),
                flag(s, yes, no)
            ));
        }
    }
    if source.connection_limit != target.connection_limit {
        sql = sql.push(" CONNECTION LIMIT ").int(source.connection_limit.into());
        theirs.push(format!("CONNECTION LIMIT {}", source.connection_limit));
        ours.push(format!("CONNECTION LIMIT {}", target.connection_limit));
    }
    // No expiry reads as NULL, or as infinity once VALID UNTIL 'infinity' ran.
    let until = |r: &SourceRole| r.valid_until.clone().filter(|u| u != "infinity");
    if until(source) != until(target) {
        sql = sql.push(" VALID UNTIL ").literal(until(source).as_deref().unwrap_or("infinity"));
        let show = |u: Option<String>| u.map_or_else(|| "no VALID UNTIL".to_string(), |u| format!("VALID UNTIL {u}"));
        theirs.push(show(until(source)));
        ours.push(show(until(target)));
    }
    if theirs.is_empty() {
        return;
    }
    if source.name == user {
        p.warnings.push(own_user(
            &format!(
                "role {} is {} on the source, {} on the target",
                ident(&source.name),
                theirs.join(", "),
                ours.join(", ")
            ),
            &sql,
        ));
    } else {
        let side = differs(theirs.join(", "), ours.join(", "));
        push(p, ObjectKind::Role, format!("role {}", ident(&source.name)), side, run(sql));
    }
}

/// A difference of the role pgferry connects to the target as, said as a warning.
fn own_user(what: &str, sql: &Sql) -> String {
    format!(
        "{what}: left as it is, since pgferry connects to the target as that role (a non-superuser cannot change its own attributes, nor revoke what the server granted it, and pgferry may need them); if the application logs in as it too, run as a superuser after the cutover: {sql}"
    )
}

fn memberships(
    s: &ServerRoles,
    t: &ServerRoles,
    targets: &BTreeMap<&str, &SourceRole>,
    created: &[&str],
    exists_after: &dyn Fn(&str) -> bool,
    version: i32,
    p: &mut Parity,
) {
    let key = |m: &Membership| (m.member.clone(), m.role.clone());
    let theirs: BTreeMap<_, &Membership> = t.memberships.iter().map(|m| (key(m), m)).collect();
    let ours: BTreeMap<_, &Membership> = s.memberships.iter().map(|m| (key(m), m)).collect();
    for m in &s.memberships {
        let member_compared = created.contains(&m.member.as_str()) || targets.contains_key(m.member.as_str());
        if !member_compared {
            continue;
        }
        if !exists_after(&m.role) {
            p.warnings.push(format!(
                "role {} is a member of {} on the source: {} is not on the target and not pgferry's to create",
                ident(&m.member),
                ident(&m.role),
                ident(&m.role)
            ));
            continue;
        }
        let (side, fix) = match theirs.get(&key(m)) {
            None => (Side::MissingOnTarget, roles::grant(m)),
            Some(tm) if m.admin && !tm.admin => (differs("WITH ADMIN OPTION", "without ADMIN OPTION"), roles::grant(m)),
            Some(tm) if !m.admin && tm.admin => {
                (differs("without ADMIN OPTION", "WITH ADMIN OPTION"), revoke("REVOKE ADMIN OPTION FOR ", tm, version))
            }
            Some(_) => continue,
        };
        membership(p, m, side, fix, &t.user);
    }
    let on_source = |name: &str| s.roles.iter().any(|r| r.name == name) || roles::left_out(name).is_some();
    for m in t.memberships.iter().filter(|m| !ours.contains_key(&key(m))) {
        // A role only the target has, and its memberships, were made there on purpose.
        if !targets.contains_key(m.member.as_str()) || !on_source(&m.member) || !on_source(&m.role) {
            continue;
        }
        membership(p, m, Side::OnlyOnTarget, revoke("REVOKE ", m, version), &t.user);
    }
}

/// `REVOKE` of the target's membership `m`. From PostgreSQL 16 each grantor's
/// grant is its own, and a `REVOKE` without `GRANTED BY` takes back only the
/// revoker's (a superuser's: the bootstrap superuser's), leaving the others
/// with a mere warning: one `REVOKE ... GRANTED BY` per grantor.
fn revoke(what: &'static str, m: &Membership, version: i32) -> Sql {
    let one = || Sql::new(what).ident(&ident(&m.role)).push(" FROM ").ident(&ident(&m.member));
    if version < 160_000 || m.grantors.is_empty() {
        return one();
    }
    let mut sql = Sql::new("");
    for (i, grantor) in m.grantors.iter().enumerate() {
        if i > 0 {
            sql = sql.push("; ");
        }
        sql = sql.append(one().push(" GRANTED BY ").ident(&ident(grantor)));
    }
    sql
}

/// A membership that differs: a difference, or a warning when its member is
/// the role pgferry connects to the target as.
fn membership(p: &mut Parity, m: &Membership, side: Side, fix: Sql, user: &str) {
    let object = format!("the membership of role {} in {}", ident(&m.member), ident(&m.role));
    if m.member != user {
        return push(p, ObjectKind::Membership, object, side, run(fix));
    }
    let what = match side {
        Side::MissingOnTarget => format!("{object} is on the source only"),
        Side::OnlyOnTarget => format!("{object} is on the target only"),
        Side::Differs { source, target } => format!("{object} is {source} on the source, {target} on the target"),
    };
    p.warnings.push(own_user(&what, &fix));
}

/// The settings of every database (`ALTER ROLE ... SET`); a created role's own in
/// the migrated database too (the database's gate compares the others' there).
fn settings(
    source: &Catalog,
    target: &Catalog,
    targets: &BTreeMap<&str, &SourceRole>,
    created: &[&str],
    database: &str,
    p: &mut Parity,
) {
    let (Some(s), Some(t)) = (&source.server_roles, &target.server_roles) else { return };
    let known = target.database.as_ref().map(|d| &d.known_settings);
    let split = |r: &RoleSetting| {
        let (name, value) = r.setting.split_once('=').unwrap_or((&r.setting, ""));
        (name.to_string(), value.to_string())
    };
    let every = |r: &&RoleSetting| r.scope == Scope::EveryDatabase;
    let theirs: BTreeMap<(String, String), String> = t
        .settings
        .iter()
        .filter(every)
        .map(|r| {
            let (name, value) = split(r);
            ((r.role.clone(), name), value)
        })
        .collect();
    let object = |r: &RoleSetting, name: &str| match r.scope {
        Scope::ThisDatabase => format!("the setting {name} of role {} in database {}", ident(&r.role), ident(database)),
        _ => format!("the setting {name} of role {}", ident(&r.role)),
    };
    let mut ours = BTreeSet::new();
    for r in &s.settings {
        let is_created = created.contains(&r.role.as_str());
        let both = targets.contains_key(r.role.as_str()) && r.scope == Scope::EveryDatabase;
        // Another database's: that database's gate compares it, once the role exists.
        let elsewhere = matches!(r.scope, Scope::OtherDatabase(_));
        if (!is_created && !both) || elsewhere {
            continue;
        }
        let (name, value) = split(r);
        if r.scope == Scope::EveryDatabase {
            ours.insert((r.role.clone(), name.clone()));
        }
        let lower = name.to_ascii_lowercase();
        if !lower.contains('.') && known.is_some_and(|k| !k.is_empty() && !k.contains(&lower)) {
            p.warnings.push(format!(
                "{} is not compared: the target's PostgreSQL has no setting {name} (removed or renamed in a newer version); set its successor on the target if the application needs it",
                object(r, &name)
            ));
            continue;
        }
        let Some(set) = roles::set_setting(r, database) else {
            p.warnings.push(format!("{}: {:?} is not of the form name=value", object(r, &name), r.setting));
            continue;
        };
        let side = match theirs.get(&(r.role.clone(), name.clone())).filter(|_| !is_created) {
            None => Side::MissingOnTarget,
            Some(v) if *v != value => differs(&value, v),
            Some(_) => continue,
        };
        if t.superuser_settings.contains(&lower) {
            p.warnings.push(format!(
                "{} differs from the source's ({value}): the target's user may not set {name} (a superuser's setting), so it is not asked for; a superuser can: {set}",
                object(r, &name)
            ));
            continue;
        }
        push(p, ObjectKind::Role, object(r, &name), side, run(set));
    }
    for ((role, name), _) in theirs.iter().filter(|(k, _)| !ours.contains(*k)) {
        if !targets.contains_key(role.as_str()) || !s.roles.iter().any(|r| &r.name == role) {
            continue;
        }
        let object = format!("the setting {name} of role {}", ident(role));
        let fix: Fix = match roles::reset_setting(role, name) {
            Some(reset) => run(reset),
            None => format!("remove the setting {name} of role {} on the target", ident(role)).into(),
        };
        push(p, ObjectKind::Role, object, Side::OnlyOnTarget, fix);
    }
}

fn passwords(s: &ServerRoles, t: &ServerRoles, targets: &BTreeMap<&str, &SourceRole>, p: &mut Parity) {
    let (Some(ours), Some(theirs)) = (&s.passwords, &t.passwords) else {
        let who = match (&s.passwords, &t.passwords) {
            (None, None) => "neither side's user",
            (None, _) => "the source's user",
            _ => "the target's user",
        };
        p.warnings.push(format!(
            "passwords could not be compared: {who} may not read pg_authid (a superuser may on plain PostgreSQL; nobody may on RDS): make sure each login role's password on the target is the source's current one"
        ));
        return;
    };
    let physical = t.physical_copy;
    let mut unproven = Vec::new();
    for role in s.roles.iter().filter(|r| compared(r) && targets.contains_key(r.name.as_str())) {
        let name = ident(&role.name);
        let object = format!("the password of role {name}");
        match (ours.get(&role.name).cloned().flatten(), theirs.get(&role.name).cloned().flatten()) {
            (Some(a), Some(b)) if a != b && physical => push(
                p,
                ObjectKind::Role,
                object,
                differs("one hash (not shown)", "another (not shown)"),
                format!(
                    "password changed on the source after the copy (or on the target since): set the source's on the target. Copy its hash exactly (on the source, as a superuser: SELECT rolpassword FROM pg_authid WHERE rolname = {}; on the target: ALTER ROLE {name} PASSWORD 'that hash'): a password typed anew gets a salt of its own and still differs",
                    Sql::new("").literal(&role.name)
                ),
            ),
            (Some(a), Some(b)) if a != b => unproven.push(name.to_string()),
            (Some(_), None) if role.login => push(
                p,
                ObjectKind::Role,
                object,
                Side::MissingOnTarget,
                format!("a login role with no password on the target: set it there (ALTER ROLE {name} PASSWORD ...; pgferry never copies passwords)"),
            ),
            // Removed on the source since the snapshot: the old one would still log in.
            (None, Some(_)) if physical => push(
                p,
                ObjectKind::Role,
                object,
                Side::OnlyOnTarget,
                run(Sql::new("ALTER ROLE ").ident(&name).push(" PASSWORD NULL")),
            ),
            _ => {}
        }
    }
    if !unproven.is_empty() {
        p.warnings.push(format!(
            "the password hashes of {} differ between the sides: the target was copied logically, and a password set anew there has a salt of its own, so pgferry cannot tell a password rotated on the source since from the same one; make sure each is the source's current one",
            unproven.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parity::compare as compare_catalogs;

    fn role(name: &str) -> SourceRole {
        SourceRole { name: name.into(), inherit: true, connection_limit: -1, ..SourceRole::default() }
    }

    fn login(name: &str) -> SourceRole {
        SourceRole { login: true, ..role(name) }
    }

    fn member(role: &str, member: &str, admin: bool) -> Membership {
        Membership { role: role.into(), member: member.into(), admin, grantors: vec!["postgres".into()] }
    }

    fn setting(role: &str, scope: Scope, setting: &str) -> RoleSetting {
        RoleSetting { role: role.into(), scope, setting: setting.into() }
    }

    fn side(server: ServerRoles) -> Catalog {
        let mut names: Vec<Ident> = server.roles.iter().map(|r| ident(&r.name)).collect();
        names.extend([ident("postgres"), ident("pg_read_all_data")]);
        Catalog { server_version_num: 150000, roles: names, server_roles: Some(server), ..Catalog::default() }
    }

    fn passwords(of: &[(&str, Option<&str>)]) -> Option<BTreeMap<String, Option<String>>> {
        Some(of.iter().map(|(r, h)| (r.to_string(), h.map(str::to_string))).collect())
    }

    fn ddl(p: &Parity) -> Vec<&str> {
        p.differences.iter().filter_map(|d| d.ddl.as_deref()).collect()
    }

    fn source() -> ServerRoles {
        ServerRoles {
            roles: vec![login("app"), role("owner"), login("rds_admin_like"), role("team")],
            memberships: vec![member("owner", "app", false), member("pg_read_all_data", "app", false)],
            settings: vec![setting("app", Scope::EveryDatabase, "work_mem=64MB")],
            passwords: passwords(&[("app", Some("d1")), ("owner", None)]),
            physical_copy: true,
            superuser: true,
            ..ServerRoles::default()
        }
    }

    #[test]
    fn the_same_roles_match() {
        assert_eq!(compare_catalogs(&side(source()), &side(source())), Parity::default());
    }

    #[test]
    fn every_later_change_of_the_source_is_a_difference_with_its_fix_in_an_order_that_runs() {
        let mut changed = source();
        changed.roles[0].connection_limit = 20;
        changed.roles[0].valid_until = Some("2031-01-01 00:00:00+00".into());
        changed.roles[1].login = true;
        changed.roles.push(SourceRole { create_db: true, ..login("new \"one\"") });
        changed.memberships =
            vec![member("owner", "app", true), member("team", "app", false), member("owner", "new \"one\"", false)];
        changed.settings = vec![
            setting("app", Scope::EveryDatabase, "work_mem=128MB"),
            setting("app", Scope::EveryDatabase, "search_path=app, \"my s\""),
            setting("new \"one\"", Scope::EveryDatabase, "statement_timeout=5s"),
            setting("app", Scope::OtherDatabase("other".into()), "work_mem=1MB"),
            setting("new \"one\"", Scope::OtherDatabase("other".into()), "work_mem=2MB"),
        ];
        changed.passwords = passwords(&[("app", Some("d2")), ("owner", Some("d3")), ("new \"one\"", Some("d4"))]);
        let mut target = source();
        target.memberships.push(member("team", "owner", false));
        let p = compare_catalogs(&side(changed), &side(target));
        assert_eq!(
            ddl(&p),
            [
                r#"CREATE ROLE "new ""one""" WITH LOGIN INHERIT CREATEDB NOCREATEROLE CONNECTION LIMIT -1"#,
                r#"ALTER ROLE "app" WITH CONNECTION LIMIT 20 VALID UNTIL '2031-01-01 00:00:00+00'"#,
                r#"ALTER ROLE "owner" WITH LOGIN"#,
                r#"GRANT "owner" TO "app" WITH ADMIN OPTION"#,
                r#"GRANT "team" TO "app""#,
                r#"GRANT "owner" TO "new ""one""""#,
                r#"REVOKE "pg_read_all_data" FROM "app""#,
                r#"REVOKE "team" FROM "owner""#,
                r#"ALTER ROLE "app" SET "work_mem" = '128MB'"#,
                r#"ALTER ROLE "app" SET "search_path" = 'app', 'my s'"#,
                r#"ALTER ROLE "new ""one""" SET "statement_timeout" = '5s'"#,
            ],
            "{p:#?}"
        );
        let created = &p.differences[0];
        assert!(created.fix.contains("a login role: set its password"), "{created:?}");
        assert!(p.warnings.iter().all(|w| !w.contains("not of the form")), "another database's setting: {p:#?}");
        let password: Vec<&str> = p.differences.iter().filter(|d| d.ddl.is_none()).map(|d| d.object.as_str()).collect();
        assert_eq!(password, ["the password of role \"app\"", "the password of role \"owner\""]);
        let shown = format!("{p:?}");
        assert!(!shown.contains("d2") && !shown.contains("d3"), "no digest shown: {shown}");
    }

    #[test]
    fn what_only_the_target_has_is_taken_back_an_expiry_dropped_is_infinity_and_settings_it_lacks_are_said() {
        let mut changed = source();
        changed.memberships[0].admin = false;
        changed.settings.clear();
        changed.settings.push(setting("app", Scope::EveryDatabase, "force_parallel_mode=off"));
        let mut target = source();
        target.memberships[0].admin = true;
        target.roles[0].valid_until = Some("2031-01-01 00:00:00+00".into());
        let mut target = side(target);
        target.database = Some(crate::parity::DatabaseProperties {
            name: ident("app"),
            owner: ident("postgres"),
            connection_limit: -1,
            comment: None,
            settings: Vec::new(),
            known_settings: ["work_mem".to_string()].into(),
        });
        let p = compare_catalogs(&side(changed), &target);
        assert_eq!(
            ddl(&p),
            [
                r#"ALTER ROLE "app" WITH VALID UNTIL 'infinity'"#,
                r#"REVOKE ADMIN OPTION FOR "owner" FROM "app""#,
                r#"ALTER ROLE "app" RESET "work_mem""#,
            ],
            "{p:#?}"
        );
        assert!(p.warnings.iter().any(|w| w.contains("has no setting force_parallel_mode")), "{p:#?}");
        let mut infinite = source();
        infinite.roles[0].valid_until = Some("infinity".into());
        assert_eq!(compare_catalogs(&side(infinite), &side(source())), Parity::default(), "infinity is no expiry");
    }

    #[test]
    fn a_logical_copys_own_salts_are_a_warning_and_unreadable_passwords_are_said_once() {
        let mut logical = source();
        logical.physical_copy = false;
        logical.passwords = passwords(&[("app", Some("other salt"))]);
        let p = compare_catalogs(&side(source()), &side(logical));
        assert!(p.differences.is_empty(), "{p:#?}");
        assert!(p.warnings[0].contains("password hashes of \"app\" differ"), "{p:#?}");
        let mut unreadable = source();
        unreadable.passwords = None;
        let p = compare_catalogs(&side(source()), &side(unreadable));
        assert!(p.differences.is_empty());
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("passwords could not be compared: the target's user"), "{p:#?}");
    }

    #[test]
    fn a_role_renamed_on_the_source_after_the_snapshot_is_created_or_renamed_back_on_a_physical_copy() {
        let mut renamed = source();
        renamed.roles[0] = SourceRole { oid: 16400, ..login("app \"v2\"") };
        let mut target = source();
        target.roles[0].oid = 16400;
        let p = compare_catalogs(&side(renamed.clone()), &side(target.clone()));
        let created = p.differences.iter().find(|d| d.object == r#"role "app ""v2""""#).expect("missing role");
        assert!(created.fix.contains(r#"run instead: ALTER ROLE "app" RENAME TO "app ""v2""""#), "{created:?}");
        // After a logical copy the OIDs are the target's own: no hint.
        target.physical_copy = false;
        let p = compare_catalogs(&side(renamed), &side(target));
        assert!(p.differences.iter().all(|d| !d.fix.contains("RENAME")), "{p:#?}");
    }

    #[test]
    fn a_password_removed_on_the_source_after_the_snapshot_is_removed_on_the_target() {
        let mut removed = source();
        removed.passwords = passwords(&[("app", None), ("owner", None)]);
        let p = compare_catalogs(&side(removed.clone()), &side(source()));
        assert_eq!(ddl(&p), [r#"ALTER ROLE "app" PASSWORD NULL"#], "the old password would still log in: {p:#?}");
        assert!(!format!("{p:?}").contains("d1"), "no digest shown");
        let mut logical = source();
        logical.physical_copy = false;
        assert_eq!(compare_catalogs(&side(removed), &side(logical)), Parity::default(), "set there on purpose");
    }

    #[test]
    fn a_setting_the_targets_user_may_not_set_is_a_warning() {
        let mut changed = source();
        changed.settings.push(setting("app", Scope::EveryDatabase, "log_statement=all"));
        let mut target = source();
        target.superuser_settings = ["log_statement".to_string()].into();
        let p = compare_catalogs(&side(changed), &side(target));
        assert!(p.differences.is_empty(), "no fix the target's user can run: {p:#?}");
        assert!(
            p.warnings.iter().any(|w| w.contains("may not set log_statement")
                && w.contains(r#"ALTER ROLE "app" SET "log_statement" = 'all'"#)),
            "{p:#?}"
        );
    }

    #[test]
    fn from_postgresql_16_a_membership_is_taken_back_from_every_grantor() {
        // A REVOKE without GRANTED BY leaves another grantor's grant (a mere
        // warning), and the gate would refuse the cutover again after it ran.
        let mut target = source();
        target.memberships.push(Membership {
            role: "team".into(),
            member: "owner".into(),
            admin: false,
            grantors: vec!["dba".into(), "postgres".into()],
        });
        target.memberships[0].admin = true;
        target.memberships[0].grantors = vec!["dba \"x\"".into()];
        let on_18 = |server: ServerRoles| Catalog { server_version_num: 180_000, ..side(server) };
        let p = compare_catalogs(&on_18(source()), &on_18(target.clone()));
        assert_eq!(
            ddl(&p),
            [
                r#"REVOKE ADMIN OPTION FOR "owner" FROM "app" GRANTED BY "dba ""x""""#,
                r#"REVOKE "team" FROM "owner" GRANTED BY "dba"; REVOKE "team" FROM "owner" GRANTED BY "postgres""#,
            ],
            "{p:#?}"
        );
        let p = compare_catalogs(&side(source()), &side(target));
        assert_eq!(ddl(&p), [r#"REVOKE ADMIN OPTION FOR "owner" FROM "app""#, r#"REVOKE "team" FROM "owner""#]);
    }

    #[test]
    fn the_role_pgferry_connects_to_the_target_as_differs_only_as_warnings() {
        // The same user on both sides: on the target it may create databases and
        // roles, and PostgreSQL 16 made it an admin of each role it created.
        let mut source = source();
        source.roles.push(SourceRole { replication: true, ..login("migrator") });
        let mut target = source.clone();
        target.superuser = false;
        target.user = "migrator".into();
        target.roles[4] = SourceRole { create_db: true, create_role: true, ..login("migrator") };
        target.memberships.push(member("app", "migrator", true));
        source.memberships.push(member("pg_read_all_data", "migrator", false));
        let p = compare_catalogs(&side(source), &side(target));
        assert!(p.differences.is_empty(), "a difference no one but a superuser can fix, for ever: {p:#?}");
        let said =
            |text: &str| p.warnings.iter().any(|w| w.contains(text) && w.contains("pgferry connects to the target as"));
        assert!(said(r#"ALTER ROLE "migrator" WITH NOCREATEDB NOCREATEROLE"#), "{p:#?}");
        assert!(said(r#"REVOKE "app" FROM "migrator""#), "{p:#?}");
        assert!(said(r#"GRANT "pg_read_all_data" TO "migrator""#), "{p:#?}");
    }

    #[test]
    fn target_only_roles_and_attributes_the_target_cannot_give_are_warnings() {
        let mut strong = source();
        strong.roles[3].replication = true;
        let mut target = source();
        target.superuser = false;
        target.roles.push(role("dba"));
        let p = compare_catalogs(&side(strong), &side(target));
        assert!(p.differences.is_empty(), "{p:#?}");
        assert!(p.warnings.iter().any(|w| w.contains("role \"dba\" is on the target only")), "{p:#?}");
        assert!(p.warnings.iter().any(|w| w.contains("\"team\" is REPLICATION on the source")), "{p:#?}");
    }
}
