//! What the cutover's fence changes on the source database, and how each change is
//! put back.
//!
//! The fence is scoped to the migrated database, so that the applications of other
//! databases on the same server never notice it: the `CONNECT` privilege on the
//! database is revoked from everyone who holds it (`PUBLIC` included) but pgferry's
//! own role and the administrators, new sessions start read-only
//! (`ALTER DATABASE ... SET default_transaction_read_only = on`), and every open
//! session but pgferry's own (by backend pid, whatever its role) is terminated.
//! Role-level settings such as `CONNECTION LIMIT` are server-wide and are not used.
//! Superusers bypass privileges: an application connecting as one is caught by the
//! fence's verification, not stopped by it.
//!
//! Every change is a [`FenceChange`], saved on the source in the transaction that
//! makes it, and undone by [`lift_statements`]: the same function gives the
//! statements pgferry runs and those it prints when it cannot reach the source.
//! See [GRANT](https://www.postgresql.org/docs/current/sql-grant.html) and
//! [ALTER DATABASE](https://www.postgresql.org/docs/current/sql-alterdatabase.html).

use serde::{Deserialize, Serialize};

use crate::sql::{Ident, Sql};

/// Who holds `CONNECT` on the database directly (an entry of its ACL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectGrant {
    /// `None` for `PUBLIC`.
    pub grantee: Option<String>,
    pub grantable: bool,
}

/// One change the fence makes, stored on the source (`pgferry.source_fence`) as
/// `kind`, `name` and `previous`; the stored spelling is pinned by a test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FenceChange {
    /// `REVOKE CONNECT` from a role (`None`: `PUBLIC`) that held it directly.
    RevokedConnect { grantee: Option<String>, grantable: bool },
    /// `GRANT CONNECT` to a role that must keep connecting (pgferry's, an
    /// administrator) and held it only through `PUBLIC` or a group.
    GrantedConnect { grantee: String },
    /// `default_transaction_read_only` set at the database level; its previous
    /// database-level value (`None`: not set).
    ReadOnly { previous: Option<String> },
}

/// The stored form: kind, name, previous.
pub type StoredChange = (String, String, Option<String>);

/// `PUBLIC`'s stored name: no role can be named with the empty string.
const PUBLIC: &str = "";

impl FenceChange {
    pub fn to_stored(&self) -> StoredChange {
        match self {
            FenceChange::RevokedConnect { grantee, grantable } => (
                "revoked_connect".into(),
                grantee.clone().unwrap_or_else(|| PUBLIC.into()),
                Some(if *grantable { "grantable" } else { "plain" }.into()),
            ),
            FenceChange::GrantedConnect { grantee } => ("granted_connect".into(), grantee.clone(), None),
            FenceChange::ReadOnly { previous } => ("read_only".into(), String::new(), previous.clone()),
        }
    }

    /// Reads a stored change back; `None` for a row this version does not know.
    pub fn from_stored((kind, name, previous): &StoredChange) -> Option<FenceChange> {
        match kind.as_str() {
            "revoked_connect" => Some(FenceChange::RevokedConnect {
                grantee: (name != PUBLIC).then(|| name.clone()),
                grantable: previous.as_deref() == Some("grantable"),
            }),
            "granted_connect" => Some(FenceChange::GrantedConnect { grantee: name.clone() }),
            "read_only" => Some(FenceChange::ReadOnly { previous: previous.clone() }),
            _ => None,
        }
    }
}

/// The changes that fence a database: `CONNECT` revoked from every direct holder
/// but the spared roles, granted to the spared roles that are not superusers and
/// would lose it, and the database made read-only for new sessions.
pub fn plan_fence(
    grants: &[ConnectGrant],
    spared: &[SparedRole],
    previous_read_only: Option<&str>,
) -> Vec<FenceChange> {
    let is_spared = |name: &str| spared.iter().any(|s| s.name == name);
    let mut changes: Vec<FenceChange> = grants
        .iter()
        .filter(|g| g.grantee.as_deref().is_none_or(|name| !is_spared(name)))
        .map(|g| FenceChange::RevokedConnect { grantee: g.grantee.clone(), grantable: g.grantable })
        .collect();
    for role in spared.iter().filter(|s| !s.superuser) {
        let direct = grants.iter().any(|g| g.grantee.as_deref() == Some(role.name.as_str()));
        if !direct {
            changes.push(FenceChange::GrantedConnect { grantee: role.name.clone() });
        }
    }
    changes.sort_by_key(FenceChange::to_stored);
    changes.dedup();
    changes.push(FenceChange::ReadOnly { previous: previous_read_only.map(str::to_string) });
    changes
}

/// A role that keeps connecting during the fence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparedRole {
    pub name: String,
    pub superuser: bool,
}

/// The statements that make `changes` on `database`.
pub fn raise_statements(database: &Ident, changes: &[FenceChange]) -> Vec<Sql> {
    changes
        .iter()
        .map(|change| match change {
            FenceChange::RevokedConnect { grantee, .. } => grantee_clause(
                Sql::new("REVOKE CONNECT ON DATABASE ").ident(database).push(" FROM "),
                grantee.as_deref(),
            ),
            FenceChange::GrantedConnect { grantee } => Sql::new("GRANT CONNECT ON DATABASE ")
                .ident(database)
                .push(" TO ")
                .ident(&Ident::from_catalog(grantee.as_str())),
            FenceChange::ReadOnly { .. } => {
                Sql::new("ALTER DATABASE ").ident(database).push(" SET default_transaction_read_only = on")
            }
        })
        .collect()
}

/// The statements that undo `changes` on `database`, in reverse order: each
/// privilege and setting back exactly as it was saved.
pub fn lift_statements(database: &Ident, changes: &[FenceChange]) -> Vec<Sql> {
    changes
        .iter()
        .rev()
        .map(|change| match change {
            FenceChange::RevokedConnect { grantee, grantable } => {
                let sql = grantee_clause(
                    Sql::new("GRANT CONNECT ON DATABASE ").ident(database).push(" TO "),
                    grantee.as_deref(),
                );
                if *grantable {
                    sql.push(" WITH GRANT OPTION")
                } else {
                    sql
                }
            }
            FenceChange::GrantedConnect { grantee } => Sql::new("REVOKE CONNECT ON DATABASE ")
                .ident(database)
                .push(" FROM ")
                .ident(&Ident::from_catalog(grantee.as_str())),
            FenceChange::ReadOnly { previous: None } => {
                Sql::new("ALTER DATABASE ").ident(database).push(" RESET default_transaction_read_only")
            }
            FenceChange::ReadOnly { previous: Some(value) } => {
                Sql::new("ALTER DATABASE ").ident(database).push(" SET default_transaction_read_only = ").literal(value)
            }
        })
        .collect()
}

fn grantee_clause(sql: Sql, grantee: Option<&str>) -> Sql {
    match grantee {
        None => sql.push("PUBLIC"),
        Some(name) => sql.ident(&Ident::from_catalog(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(grantee: Option<&str>, grantable: bool) -> ConnectGrant {
        ConnectGrant { grantee: grantee.map(str::to_string), grantable }
    }

    fn spared(name: &str, superuser: bool) -> SparedRole {
        SparedRole { name: name.into(), superuser }
    }

    #[test]
    fn connect_is_revoked_from_everyone_but_the_spared_roles_who_keep_it() {
        let grants =
            [grant(None, false), grant(Some("owner"), true), grant(Some("app"), false), grant(Some("dba"), false)];
        let changes =
            plan_fence(&grants, &[spared("mover", false), spared("dba", false), spared("postgres", true)], Some("off"));
        assert_eq!(
            changes,
            [
                FenceChange::GrantedConnect { grantee: "mover".into() },
                FenceChange::RevokedConnect { grantee: None, grantable: false },
                FenceChange::RevokedConnect { grantee: Some("app".into()), grantable: false },
                FenceChange::RevokedConnect { grantee: Some("owner".into()), grantable: true },
                FenceChange::ReadOnly { previous: Some("off".into()) },
            ]
        );
    }

    #[test]
    fn lifting_undoes_each_change_in_reverse_order() {
        let database = Ident::from_catalog("app db");
        let changes = plan_fence(&[grant(None, false), grant(Some("Owner"), true)], &[spared("mover", false)], None);
        let raise: Vec<String> = raise_statements(&database, &changes).into_iter().map(Sql::into_string).collect();
        assert_eq!(
            raise,
            [
                r#"GRANT CONNECT ON DATABASE "app db" TO "mover""#,
                r#"REVOKE CONNECT ON DATABASE "app db" FROM PUBLIC"#,
                r#"REVOKE CONNECT ON DATABASE "app db" FROM "Owner""#,
                r#"ALTER DATABASE "app db" SET default_transaction_read_only = on"#,
            ]
        );
        let lift: Vec<String> = lift_statements(&database, &changes).into_iter().map(Sql::into_string).collect();
        assert_eq!(
            lift,
            [
                r#"ALTER DATABASE "app db" RESET default_transaction_read_only"#,
                r#"GRANT CONNECT ON DATABASE "app db" TO "Owner" WITH GRANT OPTION"#,
                r#"GRANT CONNECT ON DATABASE "app db" TO PUBLIC"#,
                r#"REVOKE CONNECT ON DATABASE "app db" FROM "mover""#,
            ]
        );
    }

    #[test]
    fn the_stored_format_is_pinned() {
        let changes = [
            FenceChange::RevokedConnect { grantee: None, grantable: false },
            FenceChange::RevokedConnect { grantee: Some("app".into()), grantable: true },
            FenceChange::GrantedConnect { grantee: "mover".into() },
            FenceChange::ReadOnly { previous: None },
            FenceChange::ReadOnly { previous: Some("on".into()) },
        ];
        let stored: Vec<StoredChange> = changes.iter().map(FenceChange::to_stored).collect();
        let expected: Vec<StoredChange> = vec![
            ("revoked_connect".into(), String::new(), Some("plain".into())),
            ("revoked_connect".into(), "app".into(), Some("grantable".into())),
            ("granted_connect".into(), "mover".into(), None),
            ("read_only".into(), String::new(), None),
            ("read_only".into(), String::new(), Some("on".into())),
        ];
        assert_eq!(stored, expected);
        for (change, row) in changes.iter().zip(&stored) {
            assert_eq!(FenceChange::from_stored(row).as_ref(), Some(change));
        }
        assert_eq!(FenceChange::from_stored(&("role".into(), "app".into(), Some("5".into()))), None);
    }
}
