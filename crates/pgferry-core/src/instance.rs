//! Which databases of a server a whole-instance migration (`--all-databases`)
//! moves, and what it leaves out, loudly.
//!
//! The job is "move this instance", not one database: a database left out keeps
//! taking writes on the source that never reach the target, and after a seeded
//! migration (a snapshot restore brings every database over) it sits frozen at
//! the snapshot on the target while looking complete. [`plan`] is the pure rule:
//! every database that allows connections is in, except templates and the
//! provider's own (`rdsadmin` on RDS); `--database` narrows the set, and
//! `--exclude-database` leaves one out; each left out is named with its reason,
//! the operator's choices flagged as losing that database's later writes.

use serde::Serialize;

/// A database as the source's `pg_database` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDatabase {
    pub name: String,
    pub is_template: bool,
    pub allows_connections: bool,
}

/// The databases a cloud provider keeps for itself.
const PROVIDER_DATABASES: &[&str] = &["rdsadmin", "azure_maintenance", "azure_sys", "cloudsqladmin"];

/// Why a database is not moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftOut {
    Template,
    /// The provider's own (`rdsadmin`, ...): not the operator's to move.
    Provider,
    /// `datallowconn` is false: nothing can connect to read it.
    NoConnections,
    /// Excluded by `--exclude-database`: its writes after the copy are lost.
    Excluded,
    /// Not among the `--database` names given: its writes after the copy are lost.
    NotNamed,
}

impl LeftOut {
    /// Whether leaving it out loses data the operator may want: the operator's own choice.
    pub fn loses_writes(self) -> bool {
        matches!(self, LeftOut::Excluded | LeftOut::NotNamed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LeftOut::Template => "a template",
            LeftOut::Provider => "the provider's own",
            LeftOut::NoConnections => "it allows no connections",
            LeftOut::Excluded => "excluded by --exclude-database: its writes after the copy will NOT reach the target",
            LeftOut::NotNamed => "not named by --database: its writes after the copy will NOT reach the target",
        }
    }
}

/// The databases moved, in name order, and those left out with why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InstancePlan {
    pub databases: Vec<String>,
    pub left_out: Vec<(String, LeftOut)>,
}

/// What the operator asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--database`: only these (empty: all).
    pub only: Vec<String>,
    /// `--exclude-database`.
    pub excluded: Vec<String>,
}

/// A name the operator gave that the source does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownDatabase(pub String);

/// Decides which databases are moved. A name given in `--database` or
/// `--exclude-database` that the source lacks is refused (a typo would
/// otherwise move, or leave out, something else than meant).
pub fn plan(databases: &[SourceDatabase], selection: &Selection) -> Result<InstancePlan, UnknownDatabase> {
    for name in selection.only.iter().chain(&selection.excluded) {
        if !databases.iter().any(|d| &d.name == name) {
            return Err(UnknownDatabase(name.clone()));
        }
    }
    let mut sorted: Vec<&SourceDatabase> = databases.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = InstancePlan::default();
    for db in sorted {
        let reason = if db.is_template {
            Some(LeftOut::Template)
        } else if PROVIDER_DATABASES.contains(&db.name.as_str()) {
            Some(LeftOut::Provider)
        } else if !db.allows_connections {
            Some(LeftOut::NoConnections)
        } else if selection.excluded.contains(&db.name) {
            Some(LeftOut::Excluded)
        } else if !selection.only.is_empty() && !selection.only.contains(&db.name) {
            Some(LeftOut::NotNamed)
        } else {
            None
        };
        match reason {
            Some(reason) => out.left_out.push((db.name.clone(), reason)),
            None => out.databases.push(db.name.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str, is_template: bool, allows_connections: bool) -> SourceDatabase {
        SourceDatabase { name: name.into(), is_template, allows_connections }
    }

    fn server() -> Vec<SourceDatabase> {
        vec![
            db("template1", true, true),
            db("template0", true, false),
            db("shop", false, true),
            db("rdsadmin", false, true),
            db("postgres", false, true),
            db("archive", false, false),
            db("reports", false, true),
        ]
    }

    #[test]
    fn every_database_that_can_be_read_is_moved_but_templates_and_the_providers() {
        let plan = plan(&server(), &Selection::default()).unwrap();
        assert_eq!(plan.databases, ["postgres", "reports", "shop"]);
        assert_eq!(
            plan.left_out,
            [
                ("archive".into(), LeftOut::NoConnections),
                ("rdsadmin".into(), LeftOut::Provider),
                ("template0".into(), LeftOut::Template),
                ("template1".into(), LeftOut::Template),
            ]
        );
        assert!(plan.left_out.iter().all(|(_, why)| !why.loses_writes()));
    }

    #[test]
    fn the_operators_choices_are_named_as_losing_writes_and_unknown_names_are_refused() {
        let chosen = Selection { only: vec![], excluded: vec!["reports".into()] };
        let plan = plan(&server(), &chosen).unwrap();
        assert_eq!(plan.databases, ["postgres", "shop"]);
        assert!(plan.left_out.contains(&("reports".into(), LeftOut::Excluded)));
        assert!(LeftOut::Excluded.loses_writes() && LeftOut::Excluded.as_str().contains("NOT reach"));

        let narrowed = Selection { only: vec!["shop".into()], excluded: vec![] };
        let plan_narrowed = super::plan(&server(), &narrowed).unwrap();
        assert_eq!(plan_narrowed.databases, ["shop"]);
        assert!(plan_narrowed.left_out.contains(&("postgres".into(), LeftOut::NotNamed)));

        let typo = Selection { only: vec![], excluded: vec!["report".into()] };
        assert_eq!(super::plan(&server(), &typo), Err(UnknownDatabase("report".into())));
    }
}
