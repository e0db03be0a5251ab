//! The target's journal: the definitions and states that `pgferry target prepare`
//! changes, saved on the target itself (schema `pgferry`) before anything changes.
//!
//! Saving on the target makes the record as durable as the change it undoes: it
//! survives the operator's machine, and a journal row and the DDL it describes are
//! committed in the same transaction, so they never disagree (see
//! [Transactions](https://www.postgresql.org/docs/current/tutorial-transactions.html):
//! DDL is transactional in PostgreSQL).
//!
//! Row states, per object:
//! - foreign key: `saved` -> `dropped` (prepare) -> `added` (restore, NOT VALID and
//!   waiting for validation) -> row deleted (validated, or restored in its saved
//!   NOT VALID form);
//! - trigger: `saved` -> `disabled` (prepare) -> row deleted (restore put it back in
//!   its saved state).
//!
//! Rows are written with `ON CONFLICT DO NOTHING`: a prepare that is rerun after a
//! crash never overwrites the original state with the half-changed one.

use crate::inventory::{Inventory, TableKind, TriggerState};
use crate::names::state_schema;
use crate::sql::{Ident, QualifiedName, ServerSql, Sql};

/// Where a saved foreign key stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignKeyStep {
    Saved,
    Dropped,
    /// Re-created NOT VALID; `VALIDATE CONSTRAINT` is still to run.
    Added,
}

impl ForeignKeyStep {
    pub fn as_str(self) -> &'static str {
        match self {
            ForeignKeyStep::Saved => "saved",
            ForeignKeyStep::Dropped => "dropped",
            ForeignKeyStep::Added => "added",
        }
    }

    pub fn parse(word: &str) -> Option<ForeignKeyStep> {
        [ForeignKeyStep::Saved, ForeignKeyStep::Dropped, ForeignKeyStep::Added].into_iter().find(|s| s.as_str() == word)
    }
}

/// Where a saved trigger stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerStep {
    Saved,
    Disabled,
}

impl TriggerStep {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerStep::Saved => "saved",
            TriggerStep::Disabled => "disabled",
        }
    }

    pub fn parse(word: &str) -> Option<TriggerStep> {
        [TriggerStep::Saved, TriggerStep::Disabled].into_iter().find(|s| s.as_str() == word)
    }
}

/// One row of `pgferry.saved_foreign_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedForeignKey {
    pub table: QualifiedName,
    pub name: Ident,
    pub definition: ServerSql,
    /// Whether it was validated when saved; a NOT VALID one is restored NOT VALID.
    pub validated: bool,
    /// Whether its table is partitioned: before PostgreSQL 18 such a foreign key
    /// cannot be added NOT VALID.
    pub partitioned_table: bool,
    pub step: ForeignKeyStep,
}

/// One row of `pgferry.saved_trigger`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedTrigger {
    pub table: QualifiedName,
    pub name: Ident,
    /// The state to put back: never `Disabled` (disabled triggers are not touched).
    pub saved_state: TriggerState,
    pub cloned_from_parent: bool,
    pub definition: ServerSql,
    pub step: TriggerStep,
}

/// The journal rows as read from the target (empty when it has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    pub foreign_keys: Vec<SavedForeignKey>,
    pub triggers: Vec<SavedTrigger>,
}

impl Journal {
    /// What prepare saves from the target's inventory: every foreign key and every
    /// trigger that is not disabled.
    pub fn from_inventory(inventory: &Inventory) -> Journal {
        let partitioned = |table: &QualifiedName| {
            inventory.tables.iter().any(|t| &t.name == table && t.kind == TableKind::Partitioned)
        };
        Journal {
            foreign_keys: inventory
                .foreign_keys
                .iter()
                .map(|fk| SavedForeignKey {
                    table: fk.table.clone(),
                    name: fk.name.clone(),
                    definition: fk.definition.clone(),
                    validated: fk.validated,
                    partitioned_table: partitioned(&fk.table),
                    step: ForeignKeyStep::Saved,
                })
                .collect(),
            triggers: inventory
                .triggers
                .iter()
                .filter(|t| t.state != TriggerState::Disabled)
                .map(|t| SavedTrigger {
                    table: t.table.clone(),
                    name: t.name.clone(),
                    saved_state: t.state,
                    cloned_from_parent: t.cloned_from_parent,
                    definition: t.definition.clone(),
                    step: TriggerStep::Saved,
                })
                .collect(),
        }
    }

    /// The journal after saving `fresh` into `self` with `ON CONFLICT DO NOTHING`:
    /// rows already saved win.
    pub fn merged_with(&self, fresh: &Journal) -> Journal {
        let mut out = self.clone();
        for fk in &fresh.foreign_keys {
            if !out.foreign_keys.iter().any(|o| o.table == fk.table && o.name == fk.name) {
                out.foreign_keys.push(fk.clone());
            }
        }
        for t in &fresh.triggers {
            if !out.triggers.iter().any(|o| o.table == t.table && o.name == t.name) {
                out.triggers.push(t.clone());
            }
        }
        out.foreign_keys.sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
        out.triggers.sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
        out
    }
}

/// The statements of the saving transaction: insert every row without
/// overwriting rows already there (the tables are pgferry's state, made by
/// `pgferry::state` before the transaction).
pub fn save_statements(fresh: &Journal) -> Vec<Sql> {
    let schema = state_schema();
    let mut out = Vec::new();
    if !fresh.foreign_keys.is_empty() {
        let mut insert = Sql::new("INSERT INTO ").ident(&schema).push(
            ".saved_foreign_key (table_schema, table_name, constraint_name, definition, validated, partitioned_table, state) VALUES",
        );
        for (i, fk) in fresh.foreign_keys.iter().enumerate() {
            insert = insert
                .push(if i == 0 { "\n  (" } else { ",\n  (" })
                .literal(fk.table.schema.as_str())
                .push(", ")
                .literal(fk.table.name.as_str())
                .push(", ")
                .literal(fk.name.as_str())
                .push(", ")
                .literal(fk.definition.as_str())
                .push(", ")
                .bool(fk.validated)
                .push(", ")
                .bool(fk.partitioned_table)
                .push(", 'saved')");
        }
        out.push(insert.push("\nON CONFLICT DO NOTHING"));
    }
    if !fresh.triggers.is_empty() {
        let mut insert = Sql::new("INSERT INTO ").ident(&schema).push(
            ".saved_trigger (table_schema, table_name, trigger_name, saved_state, cloned_from_parent, definition, state) VALUES",
        );
        for (i, t) in fresh.triggers.iter().enumerate() {
            insert = insert
                .push(if i == 0 { "\n  (" } else { ",\n  (" })
                .literal(t.table.schema.as_str())
                .push(", ")
                .literal(t.table.name.as_str())
                .push(", ")
                .literal(t.name.as_str())
                .push(", ")
                .push("'")
                .push(t.saved_state.as_str())
                .push("', ")
                .bool(t.cloned_from_parent)
                .push(", ")
                .literal(t.definition.as_str())
                .push(", 'saved')");
        }
        out.push(insert.push("\nON CONFLICT DO NOTHING"));
    }
    out
}

/// `UPDATE pgferry.saved_foreign_key SET state = ... WHERE <this key>`.
pub(crate) fn set_foreign_key_step(fk: &SavedForeignKey, step: ForeignKeyStep) -> Sql {
    Sql::new("UPDATE ")
        .ident(&state_schema())
        .push(".saved_foreign_key SET state = '")
        .push(step.as_str())
        .push("'")
        .append(foreign_key_row(fk))
}

pub(crate) fn delete_foreign_key(fk: &SavedForeignKey) -> Sql {
    Sql::new("DELETE FROM ").ident(&state_schema()).push(".saved_foreign_key").append(foreign_key_row(fk))
}

fn foreign_key_row(fk: &SavedForeignKey) -> Sql {
    Sql::new(" WHERE table_schema = ")
        .literal(fk.table.schema.as_str())
        .push(" AND table_name = ")
        .literal(fk.table.name.as_str())
        .push(" AND constraint_name = ")
        .literal(fk.name.as_str())
}

pub(crate) fn set_trigger_disabled(t: &SavedTrigger) -> Sql {
    Sql::new("UPDATE ")
        .ident(&state_schema())
        .push(".saved_trigger SET state = '")
        .push(TriggerStep::Disabled.as_str())
        .push("'")
        .append(trigger_row(t))
}

pub(crate) fn delete_trigger(t: &SavedTrigger) -> Sql {
    Sql::new("DELETE FROM ").ident(&state_schema()).push(".saved_trigger").append(trigger_row(t))
}

fn trigger_row(t: &SavedTrigger) -> Sql {
    Sql::new(" WHERE table_schema = ")
        .literal(t.table.schema.as_str())
        .push(" AND table_name = ")
        .literal(t.table.name.as_str())
        .push(" AND trigger_name = ")
        .literal(t.name.as_str())
}
