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

use crate::preflight::{Finding, Severity, Side};

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

/// The source server's replication capacity, read once for the whole plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicationCapacity {
    pub max_slots: i32,
    /// Replication slots on the server, the migration's own included.
    pub used_slots: i32,
    /// Of the plan's databases, those whose migration slot exists already (kept, not
    /// made again).
    pub own_slots: i32,
    /// Of those, the ones whose copy was stopped while it read the tables: each
    /// resumes under a temporary slot beside its own, so needs one slot more.
    pub resuming_copies: i32,
    pub max_senders: i32,
    /// WAL senders running now.
    pub used_senders: i32,
}

/// What moving `databases` side by side needs of the source server at once: a
/// slot for each (one that exists is kept) and a WAL sender for each (its copy's
/// snapshot session, then its change stream). Each database's own preflight
/// asks for one free slot and one free sender, which all of them see: checked
/// only there, the first databases would take the last slots and the others
/// fail after they had started. A shortfall is a problem before anything starts.
/// `streaming`: the databases will follow side by side in this run (`start`); a
/// `seed prepare` makes their slots one after another and needs the slots only.
pub fn capacity_problems(capacity: &ReplicationCapacity, databases: usize, streaming: bool) -> Vec<Finding> {
    let databases = i32::try_from(databases).unwrap_or(i32::MAX);
    let mut out = Vec::new();
    let new_slots = databases - capacity.own_slots + capacity.resuming_copies;
    let free_slots = capacity.max_slots - capacity.used_slots;
    if new_slots > free_slots {
        out.push(Finding {
            side: Side::Source,
            severity: Severity::Problem,
            code: "instance_replication_slots",
            what: format!(
                "the plan's {databases} database(s) need {new_slots} new replication slot(s) (one each{}), and {} of \
                 max_replication_slots = {} are in use: {free_slots} free",
                if capacity.own_slots > 0 {
                    format!("; {} kept from an earlier run", capacity.own_slots)
                } else {
                    String::new()
                } + &if capacity.resuming_copies > 0 {
                    format!(
                        "; {} resumed cop(ies) each take a temporary slot beside their own",
                        capacity.resuming_copies
                    )
                } else {
                    String::new()
                },
                capacity.used_slots,
                capacity.max_slots,
            ),
            fix: format!(
                "raise max_replication_slots to at least {} (restart needed), drop unused slots with \
                 pg_drop_replication_slot(), or move fewer databases at once with --database / --exclude-database",
                capacity.used_slots + new_slots
            ),
            objects: Vec::new(),
        });
    }
    let free_senders = capacity.max_senders - capacity.used_senders;
    if streaming && databases > free_senders {
        out.push(Finding {
            side: Side::Source,
            severity: Severity::Problem,
            code: "instance_wal_senders",
            what: format!(
                "the plan's {databases} database(s) each hold a WAL sender while they copy and follow side by side, \
                 and {} of max_wal_senders = {} are in use: {free_senders} free",
                capacity.used_senders, capacity.max_senders
            ),
            fix: format!(
                "raise max_wal_senders to at least {} (restart needed), stop an idle replication client, or move \
                 fewer databases at once with --database / --exclude-database",
                capacity.used_senders + databases
            ),
            objects: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(used_slots: i32, own_slots: i32, used_senders: i32) -> ReplicationCapacity {
        ReplicationCapacity { max_slots: 10, used_slots, own_slots, resuming_copies: 0, max_senders: 10, used_senders }
    }

    #[test]
    fn sixteen_databases_do_not_fit_in_eight_free_slots_and_the_fix_names_the_setting() {
        let problems = capacity_problems(&capacity(2, 0, 0), 16, true);
        let codes: Vec<_> = problems.iter().map(|f| f.code).collect();
        assert_eq!(codes, ["instance_replication_slots", "instance_wal_senders"]);
        assert!(problems[0].what.contains("16 new replication slot(s)") && problems[0].what.contains("8 free"));
        assert!(problems[0].fix.contains("at least 18"), "{}", problems[0].fix);
        assert!(problems[1].fix.contains("max_wal_senders to at least 16"), "{}", problems[1].fix);
    }

    #[test]
    fn slots_kept_from_an_earlier_run_need_no_room_and_a_seed_prepare_needs_no_senders() {
        // A rerun: 8 of the 10 databases hold their slot (counted among the used).
        assert!(capacity_problems(&capacity(10, 8, 0), 10, false)
            .iter()
            .any(|f| f.code == "instance_replication_slots"));
        assert_eq!(capacity_problems(&ReplicationCapacity { max_slots: 12, ..capacity(10, 8, 0) }, 10, false), []);
        // A rerun after every database made its slot and was stopped while copying
        // its tables (the first run fit exactly): each resumed copy takes a
        // temporary slot beside its own, and none is free.
        let resumed = ReplicationCapacity { resuming_copies: 10, ..capacity(10, 10, 0) };
        let problems = capacity_problems(&resumed, 10, true);
        assert_eq!(problems.iter().map(|f| f.code).collect::<Vec<_>>(), ["instance_replication_slots"]);
        assert!(problems[0].what.contains("10 resumed cop(ies)"), "{}", problems[0].what);
        assert!(problems[0].fix.contains("at least 20"), "{}", problems[0].fix);
        assert_eq!(capacity_problems(&ReplicationCapacity { max_slots: 20, ..resumed }, 10, true), []);
        // Exactly enough is enough.
        assert_eq!(capacity_problems(&capacity(0, 0, 0), 10, true), []);
        assert_eq!(capacity_problems(&capacity(0, 0, 9), 10, false), []);
        assert_eq!(capacity_problems(&capacity(0, 0, 1), 10, true).len(), 1);
    }

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
