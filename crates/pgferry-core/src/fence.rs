//! Which roles the cutover fences, and how each is put back.
//!
//! The fence stops every writer on the source database: application roles may not
//! open new connections (`CONNECTION LIMIT 0`), new sessions start read-only
//! (`ALTER DATABASE ... SET default_transaction_read_only = on`), and their open
//! sessions are terminated. pgferry's own role, superusers and the administrator
//! roles the operator names keep working, so the cutover and a human can still act.
//! Every setting is saved before it is changed and put back exactly as it was
//! ([ALTER ROLE](https://www.postgresql.org/docs/current/sql-alterrole.html)).

use serde::{Deserialize, Serialize};

/// A login role as observed on the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRole {
    pub name: String,
    pub superuser: bool,
    /// `rolconnlimit`: -1 means no limit.
    pub connection_limit: i32,
}

/// A role's saved setting: what the fence changes, and what unfencing restores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencedRole {
    pub name: String,
    pub previous_connection_limit: i32,
}

/// The roles to fence: login roles other than superusers, the connecting role and
/// the named administrators. The result is sorted, so the plan is deterministic.
pub fn roles_to_fence(roles: &[LoginRole], own_role: &str, administrators: &[String]) -> Vec<FencedRole> {
    let mut fenced: Vec<FencedRole> = roles
        .iter()
        .filter(|r| !r.superuser && r.name != own_role && !administrators.contains(&r.name))
        .map(|r| FencedRole { name: r.name.clone(), previous_connection_limit: r.connection_limit })
        .collect();
    fenced.sort_by(|a, b| a.name.cmp(&b.name));
    fenced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, superuser: bool, limit: i32) -> LoginRole {
        LoginRole { name: name.into(), superuser, connection_limit: limit }
    }

    #[test]
    fn superusers_ourselves_and_administrators_are_never_fenced() {
        let roles = [role("app", false, -1), role("postgres", true, -1), role("mover", false, -1), role("dba", false, 5), role("batch", false, 3)];
        let fenced = roles_to_fence(&roles, "mover", &["dba".to_string()]);
        assert_eq!(
            fenced,
            [
                FencedRole { name: "app".into(), previous_connection_limit: -1 },
                FencedRole { name: "batch".into(), previous_connection_limit: 3 },
            ]
        );
    }
}
