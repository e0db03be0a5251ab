//! The plans of `pgferry target prepare`, `restore` and `validate-constraints`:
//! from the journal (and, for restore, what the target and source hold now) to the
//! list of steps. Each step is one transaction: its DDL and the journal update that
//! records it, so a crash between two steps leaves a state the next run plans from.
//!
//! Why the restore is split in two: `ALTER TABLE ... ADD FOREIGN KEY` scans the
//! referencing table under a SHARE ROW EXCLUSIVE lock, but added `NOT VALID` it only
//! touches the catalog, and a later `VALIDATE CONSTRAINT` scans under SHARE UPDATE
//! EXCLUSIVE, which lets reads and writes run (see
//! [ALTER TABLE](https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES)).
//! So the downtime part is catalog-only and the scans run once the application is
//! back. PostgreSQL before 18 refuses `NOT VALID` on a partitioned table's foreign
//! key; those are added validated, and the report says so.
//!
//! Sequences are set with `setval(seq, last_value, is_called)` from the source's
//! own sequence state, never from `max(column) + 1`, which is wrong for descending,
//! cycling, custom-increment, shared and free-standing sequences.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::foreign_keys::{add_statement, validate_statement};
use crate::inventory::{Sequence, TriggerState};
use crate::journal::{
    delete_foreign_key, delete_trigger, set_foreign_key_step, set_trigger_disabled, ForeignKeyStep, Journal,
    SavedForeignKey, TriggerStep,
};
use crate::sql::{Ident, QualifiedName, Sql};

/// The first version that can add a NOT VALID foreign key on a partitioned table.
pub const NOT_VALID_ON_PARTITIONED_SINCE: i32 = 180000;

/// The object a step changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Object {
    ForeignKey { table: QualifiedName, name: Ident },
    Trigger { table: QualifiedName, name: Ident },
    Sequence { name: QualifiedName },
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::ForeignKey { table, name } => write!(f, "foreign key {name} on {table}"),
            Object::Trigger { table, name } => write!(f, "trigger {name} on {table}"),
            Object::Sequence { name } => write!(f, "sequence {name}"),
        }
    }
}

/// What a step does to its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    DropForeignKey,
    DisableTrigger,
    /// Re-created NOT VALID: catalog only, no scan.
    AddForeignKeyNotValid,
    /// Re-created validated (scans): a partitioned table before PostgreSQL 18.
    AddForeignKeyValidated,
    /// Already on the target under its name: only the journal changes.
    RecognizeForeignKey,
    SetTriggerState {
        state: TriggerState,
    },
    SetSequence {
        last_value: i64,
        is_called: bool,
    },
    ValidateForeignKey,
}

/// One transaction: the change and its journal update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub object: Object,
    pub action: Action,
    pub statements: Vec<Sql>,
}

/// Drop every saved foreign key not yet dropped, disable every saved trigger not
/// yet disabled. Rows already done are skipped, so a rerun plans nothing.
pub fn plan_prepare(journal: &Journal) -> Vec<Step> {
    let mut steps = Vec::new();
    for fk in journal.foreign_keys.iter().filter(|fk| fk.step != ForeignKeyStep::Dropped) {
        steps.push(Step {
            object: foreign_key_object(fk),
            action: Action::DropForeignKey,
            statements: vec![
                // Without ONLY: on a partitioned table the partitions' copies go too.
                Sql::new("ALTER TABLE ").name(&fk.table).push(" DROP CONSTRAINT IF EXISTS ").ident(&fk.name),
                set_foreign_key_step(fk, ForeignKeyStep::Dropped),
            ],
        });
    }
    for t in journal.triggers.iter().filter(|t| t.step == TriggerStep::Saved) {
        steps.push(Step {
            object: Object::Trigger { table: t.table.clone(), name: t.name.clone() },
            action: Action::DisableTrigger,
            statements: vec![
                Sql::new("ALTER TABLE ONLY ").name(&t.table).push(" DISABLE TRIGGER ").ident(&t.name),
                set_trigger_disabled(t),
            ],
        });
    }
    steps
}

/// What the target and the source hold when restore starts.
#[derive(Clone, Debug, Default)]
pub struct RestoreInput {
    /// Every constraint on the target's tables, with `convalidated`.
    pub target_constraints: BTreeMap<(QualifiedName, Ident), bool>,
    pub target_version_num: i32,
    /// The target's sequences.
    pub target_sequences: BTreeSet<QualifiedName>,
    /// The source's sequences with their positions, read after writes stopped.
    pub source_sequences: Vec<Sequence>,
    /// Run `VALIDATE CONSTRAINT` now (else `validate-constraints` does, later).
    pub validate_now: bool,
}

/// The restore: foreign keys back (NOT VALID), triggers back in their saved state,
/// sequences set from the source, then validation when asked.
#[derive(Clone, Debug, Default)]
pub struct RestorePlan {
    pub steps: Vec<Step>,
    /// Sequences of the source that the target lacks.
    pub missing_sequences: Vec<QualifiedName>,
}

pub fn plan_restore(journal: &Journal, input: &RestoreInput) -> RestorePlan {
    let mut steps = Vec::new();
    let mut to_validate: Vec<&SavedForeignKey> = Vec::new();
    for fk in &journal.foreign_keys {
        if fk.step == ForeignKeyStep::Added {
            to_validate.push(fk);
            continue;
        }
        let object = foreign_key_object(fk);
        let existing = input.target_constraints.get(&(fk.table.clone(), fk.name.clone()));
        let (action, statements, validate) = match existing {
            Some(&valid) if valid || !fk.validated => {
                (Action::RecognizeForeignKey, vec![delete_foreign_key(fk)], false)
            }
            Some(_) => (Action::RecognizeForeignKey, vec![set_foreign_key_step(fk, ForeignKeyStep::Added)], true),
            None if !fk.validated => {
                // pg_get_constraintdef already ends in NOT VALID.
                (Action::AddForeignKeyNotValid, vec![add_constraint(fk), delete_foreign_key(fk)], false)
            }
            None if fk.partitioned_table && input.target_version_num < NOT_VALID_ON_PARTITIONED_SINCE => {
                (Action::AddForeignKeyValidated, vec![add_constraint(fk), delete_foreign_key(fk)], false)
            }
            None => (
                Action::AddForeignKeyNotValid,
                vec![add_constraint(fk).push(" NOT VALID"), set_foreign_key_step(fk, ForeignKeyStep::Added)],
                true,
            ),
        };
        steps.push(Step { object, action, statements });
        if validate {
            to_validate.push(fk);
        }
    }
    // Parents before the clones on their partitions, so that whatever a server
    // version does to clones when their parent changes, each ends in its own state.
    let mut triggers: Vec<_> = journal.triggers.iter().collect();
    triggers.sort_by_key(|t| t.cloned_from_parent);
    for t in triggers {
        let verb: &'static str = match t.saved_state {
            TriggerState::Origin => " ENABLE TRIGGER ",
            TriggerState::Replica => " ENABLE REPLICA TRIGGER ",
            TriggerState::Always => " ENABLE ALWAYS TRIGGER ",
            TriggerState::Disabled => " DISABLE TRIGGER ",
        };
        steps.push(Step {
            object: Object::Trigger { table: t.table.clone(), name: t.name.clone() },
            action: Action::SetTriggerState { state: t.saved_state },
            statements: vec![Sql::new("ALTER TABLE ONLY ").name(&t.table).push(verb).ident(&t.name), delete_trigger(t)],
        });
    }
    let mut missing_sequences = Vec::new();
    for seq in &input.source_sequences {
        if !input.target_sequences.contains(&seq.name) {
            missing_sequences.push(seq.name.clone());
            continue;
        }
        let position = seq.position;
        steps.push(Step {
            object: Object::Sequence { name: seq.name.clone() },
            action: Action::SetSequence { last_value: position.last_value, is_called: position.is_called },
            statements: vec![Sql::new("SELECT pg_catalog.setval(")
                .literal(&seq.name.to_string())
                .push("::regclass, ")
                .int(position.last_value)
                .push(", ")
                .bool(position.is_called)
                .push(")")],
        });
    }
    if input.validate_now {
        steps.extend(to_validate.into_iter().map(validate_step));
    }
    RestorePlan { steps, missing_sequences }
}

/// `VALIDATE CONSTRAINT` for every foreign key restored NOT VALID and not yet
/// validated. Runs while the application writes: it takes SHARE UPDATE EXCLUSIVE.
pub fn plan_validate(journal: &Journal) -> Vec<Step> {
    journal.foreign_keys.iter().filter(|fk| fk.step == ForeignKeyStep::Added).map(validate_step).collect()
}

fn validate_step(fk: &SavedForeignKey) -> Step {
    Step {
        object: foreign_key_object(fk),
        action: Action::ValidateForeignKey,
        statements: vec![validate_statement(&fk.table, &fk.name), delete_foreign_key(fk)],
    }
}

fn add_constraint(fk: &SavedForeignKey) -> Sql {
    add_statement(&fk.table, &fk.name, &fk.definition)
}

fn foreign_key_object(fk: &SavedForeignKey) -> Object {
    Object::ForeignKey { table: fk.table.clone(), name: fk.name.clone() }
}

/// A psql script with the same effect as running the steps: each transaction in
/// `BEGIN; ... COMMIT;`, stopping at the first error.
pub fn script(title: &'static str, transactions: &[Vec<Sql>]) -> String {
    let mut out = String::new();
    out.push_str("-- ");
    out.push_str(title);
    out.push_str("\n\\set ON_ERROR_STOP on\n");
    for statements in transactions {
        out.push_str("\nBEGIN;\n");
        for s in statements {
            out.push_str(s.as_str());
            out.push_str(";\n");
        }
        out.push_str("COMMIT;\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{SequenceKind, SequencePosition};
    use crate::journal::SavedTrigger;
    use crate::sql::ServerSql;

    fn fk(name: &str, validated: bool, partitioned: bool, step: ForeignKeyStep) -> SavedForeignKey {
        SavedForeignKey {
            table: QualifiedName::from_catalog("s", "child"),
            name: Ident::from_catalog(name),
            definition: ServerSql::from_catalog(if validated {
                "FOREIGN KEY (p) REFERENCES s.parent(id)"
            } else {
                "FOREIGN KEY (p) REFERENCES s.parent(id) NOT VALID"
            }),
            validated,
            partitioned_table: partitioned,
            step,
        }
    }

    fn trigger(name: &str, state: TriggerState, clone: bool, step: TriggerStep) -> SavedTrigger {
        SavedTrigger {
            table: QualifiedName::from_catalog("s", "child"),
            name: Ident::from_catalog(name),
            saved_state: state,
            cloned_from_parent: clone,
            definition: ServerSql::from_catalog("CREATE TRIGGER ..."),
            step,
        }
    }

    #[test]
    fn prepare_skips_what_is_done_and_quotes_names() {
        let journal = Journal {
            foreign_keys: vec![
                fk("a\"b", true, false, ForeignKeyStep::Saved),
                fk("done", true, false, ForeignKeyStep::Dropped),
            ],
            triggers: vec![
                trigger("t", TriggerState::Always, false, TriggerStep::Saved),
                trigger("u", TriggerState::Origin, false, TriggerStep::Disabled),
            ],
        };
        let steps = plan_prepare(&journal);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].statements[0].as_str(), "ALTER TABLE \"s\".\"child\" DROP CONSTRAINT IF EXISTS \"a\"\"b\"");
        assert!(steps[0].statements[1].as_str().contains("constraint_name = 'a\"b'"));
        assert_eq!(steps[1].statements[0].as_str(), "ALTER TABLE ONLY \"s\".\"child\" DISABLE TRIGGER \"t\"");
        let done = Journal { foreign_keys: vec![fk("x", true, false, ForeignKeyStep::Dropped)], triggers: vec![] };
        assert!(plan_prepare(&done).is_empty());
    }

    #[test]
    fn restore_adds_not_valid_then_validates_and_keeps_not_valid_ones_not_valid() {
        let journal = Journal {
            foreign_keys: vec![
                fk("v", true, false, ForeignKeyStep::Dropped),
                fk("nv", false, false, ForeignKeyStep::Dropped),
            ],
            triggers: vec![],
        };
        let input = RestoreInput { target_version_num: 150000, validate_now: true, ..Default::default() };
        let plan = plan_restore(&journal, &input);
        let actions: Vec<_> = plan.steps.iter().map(|s| s.action).collect();
        assert_eq!(actions, [Action::AddForeignKeyNotValid, Action::AddForeignKeyNotValid, Action::ValidateForeignKey]);
        assert!(plan.steps[0].statements[0].as_str().ends_with("REFERENCES s.parent(id) NOT VALID"));
        assert!(plan.steps[0].statements[1]
            .as_str()
            .starts_with("UPDATE \"pgferry\".saved_foreign_key SET state = 'added'"));
        assert!(plan.steps[1].statements[1].as_str().starts_with("DELETE FROM"));
        assert_eq!(plan.steps[2].object, foreign_key_object(&journal.foreign_keys[0]));
        let later = plan_restore(&journal, &RestoreInput { validate_now: false, ..input });
        assert_eq!(later.steps.len(), 2);
    }

    #[test]
    fn partitioned_tables_before_18_get_validated_foreign_keys() {
        let journal = Journal { foreign_keys: vec![fk("p", true, true, ForeignKeyStep::Dropped)], triggers: vec![] };
        for (version, action) in [(150000, Action::AddForeignKeyValidated), (180000, Action::AddForeignKeyNotValid)] {
            let input = RestoreInput { target_version_num: version, ..Default::default() };
            assert_eq!(plan_restore(&journal, &input).steps[0].action, action);
        }
    }

    #[test]
    fn existing_constraints_are_recognized() {
        let journal = Journal {
            foreign_keys: vec![
                fk("valid_there", true, false, ForeignKeyStep::Saved),
                fk("not_valid_there", true, false, ForeignKeyStep::Dropped),
            ],
            triggers: vec![],
        };
        let table = QualifiedName::from_catalog("s", "child");
        let mut input = RestoreInput { target_version_num: 150000, validate_now: true, ..Default::default() };
        input.target_constraints.insert((table.clone(), Ident::from_catalog("valid_there")), true);
        input.target_constraints.insert((table, Ident::from_catalog("not_valid_there")), false);
        let plan = plan_restore(&journal, &input);
        let actions: Vec<_> = plan.steps.iter().map(|s| s.action).collect();
        assert_eq!(actions, [Action::RecognizeForeignKey, Action::RecognizeForeignKey, Action::ValidateForeignKey]);
        assert_eq!(plan.steps[0].statements.len(), 1, "no DDL for a recognized key");
    }

    #[test]
    fn triggers_get_their_exact_state_parents_first() {
        let journal = Journal {
            foreign_keys: vec![],
            triggers: vec![
                trigger("clone", TriggerState::Origin, true, TriggerStep::Disabled),
                trigger("r", TriggerState::Replica, false, TriggerStep::Disabled),
                trigger("a", TriggerState::Always, false, TriggerStep::Saved),
            ],
        };
        let plan = plan_restore(&journal, &RestoreInput::default());
        let ddl: Vec<_> = plan.steps.iter().map(|s| s.statements[0].as_str().to_owned()).collect();
        assert_eq!(
            ddl,
            [
                "ALTER TABLE ONLY \"s\".\"child\" ENABLE REPLICA TRIGGER \"r\"",
                "ALTER TABLE ONLY \"s\".\"child\" ENABLE ALWAYS TRIGGER \"a\"",
                "ALTER TABLE ONLY \"s\".\"child\" ENABLE TRIGGER \"clone\"",
            ]
        );
    }

    #[test]
    fn sequences_are_set_from_the_source_position_and_missing_ones_reported() {
        let seq = |name: &str, last_value, is_called| Sequence {
            name: QualifiedName::from_catalog("it's", name),
            kind: SequenceKind::Standalone,
            owned_by: None,
            data_type: "bigint".into(),
            start: -1,
            increment: -3,
            min_value: -100,
            max_value: -1,
            cache: 1,
            cycle: true,
            position: SequencePosition { last_value, is_called },
        };
        let mut input =
            RestoreInput { source_sequences: vec![seq("down", -7, true), seq("gone", 1, false)], ..Default::default() };
        input.target_sequences.insert(QualifiedName::from_catalog("it's", "down"));
        let plan = plan_restore(&Journal::default(), &input);
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(
            plan.steps[0].statements[0].as_str(),
            "SELECT pg_catalog.setval('\"it''s\".\"down\"'::regclass, -7, true)"
        );
        assert_eq!(plan.missing_sequences, [QualifiedName::from_catalog("it's", "gone")]);
    }

    #[test]
    fn merging_keeps_rows_already_saved() {
        let saved = Journal { foreign_keys: vec![fk("a", true, false, ForeignKeyStep::Dropped)], triggers: vec![] };
        let fresh = Journal {
            foreign_keys: vec![
                fk("a", false, false, ForeignKeyStep::Saved),
                fk("b", true, false, ForeignKeyStep::Saved),
            ],
            triggers: vec![],
        };
        let merged = saved.merged_with(&fresh);
        assert_eq!(merged.foreign_keys.len(), 2);
        assert_eq!(merged.foreign_keys[0], saved.foreign_keys[0]);
    }

    #[test]
    fn scripts_wrap_each_transaction() {
        let text = script("t", &[vec![Sql::new("SELECT 1")], vec![Sql::new("SELECT 2"), Sql::new("SELECT 3")]]);
        assert_eq!(
            text,
            "-- t\n\\set ON_ERROR_STOP on\n\nBEGIN;\nSELECT 1;\nCOMMIT;\n\nBEGIN;\nSELECT 2;\nSELECT 3;\nCOMMIT;\n"
        );
    }
}
