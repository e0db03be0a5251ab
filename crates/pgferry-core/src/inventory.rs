//! What a database holds, as data: the inventory that `pgferry inventory` prints and
//! that the target's prepare/restore steps and the tests compare.
//!
//! The types are plain data with a stable JSON form (documented in
//! `docs/inventory.md`): fields serialize in declaration order, enums as snake_case
//! strings, and every list is sorted by qualified name, so two inventories of the
//! same catalog are byte-identical. Figures that move with the data (sizes, row
//! estimates, sequence positions, the large-object count) sit in their own fields,
//! and [`Inventory::catalog_only`] blanks them to compare catalogs alone.
//!
//! Reading it from a server is `pgferry_pg::inventory::read_inventory`.

use serde::{Deserialize, Serialize};

use crate::sql::{Ident, QualifiedName, ServerSql};

/// The version of the JSON form; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Which schemas an inventory covers. Empty `include` means every user schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// Everything in the user schemas of one database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub format_version: u32,
    pub server_version_num: i32,
    pub schemas: Vec<Ident>,
    pub extensions: Vec<Extension>,
    pub tables: Vec<Table>,
    pub foreign_keys: Vec<ForeignKey>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub triggers: Vec<Trigger>,
    pub sequences: Vec<Sequence>,
    pub views: Vec<View>,
    /// Volatile: the number of large objects (database-wide; they have no schema).
    pub large_objects: i64,
}

impl Inventory {
    /// The same inventory with every data-dependent figure set to zero, so that two
    /// inventories compare equal when their catalogs are the same.
    pub fn catalog_only(mut self) -> Inventory {
        for table in &mut self.tables {
            table.size = TableSize::default();
        }
        for sequence in &mut self.sequences {
            sequence.position = SequencePosition::default();
        }
        self.large_objects = 0;
        self
    }

    /// Sorts every list by qualified name, the order the JSON form promises.
    pub fn sort(&mut self) {
        self.schemas.sort();
        self.extensions.sort_by(|a, b| a.name.cmp(&b.name));
        self.tables.sort_by(|a, b| a.name.cmp(&b.name));
        self.foreign_keys.sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
        self.constraints.sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
        self.indexes.sort_by(|a, b| a.name.cmp(&b.name));
        self.triggers.sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
        self.sequences.sort_by(|a, b| a.name.cmp(&b.name));
        self.views.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub version: String,
    pub schema: Ident,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// `relkind = 'r'`.
    Ordinary,
    /// `relkind = 'p'`: holds no rows itself.
    Partitioned,
}

/// `relreplident`: what a publication sends to identify an updated or deleted row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    /// The primary key, if there is one.
    Default,
    Full,
    Nothing,
    Index(Ident),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityGeneration {
    Always,
    ByDefault,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityColumn {
    pub column: Ident,
    pub generation: IdentityGeneration,
}

/// Volatile figures of a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSize {
    /// `pg_total_relation_size`: heap, indexes and TOAST.
    pub bytes: i64,
    /// `reltuples`, or `None` when never vacuumed or analyzed.
    pub estimated_rows: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: QualifiedName,
    pub kind: TableKind,
    pub unlogged: bool,
    /// The primary key's columns, in key order; empty when there is none.
    pub primary_key: Vec<Ident>,
    pub replica_identity: ReplicaIdentity,
    /// `pg_get_partkeydef`, for a partitioned table.
    pub partition_key: Option<ServerSql>,
    /// The parent, for a partition.
    pub partition_of: Option<QualifiedName>,
    /// `FOR VALUES ...`, for a partition.
    pub partition_bound: Option<ServerSql>,
    /// Parents by plain (non-partition) inheritance, in `inhseqno` order.
    pub inherits: Vec<QualifiedName>,
    pub identity_columns: Vec<IdentityColumn>,
    /// Columns computed by `GENERATED ALWAYS AS (...)`.
    pub generated_columns: Vec<Ident>,
    pub size: TableSize,
}

/// `ON DELETE` / `ON UPDATE` of a foreign key (`confdeltype`, `confupdtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForeignKeyAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl ForeignKeyAction {
    /// From the catalog's one-letter code.
    pub fn from_code(code: &str) -> Option<ForeignKeyAction> {
        Some(match code {
            "a" => ForeignKeyAction::NoAction,
            "r" => ForeignKeyAction::Restrict,
            "c" => ForeignKeyAction::Cascade,
            "n" => ForeignKeyAction::SetNull,
            "d" => ForeignKeyAction::SetDefault,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForeignKeyMatch {
    Simple,
    Full,
    Partial,
}

impl ForeignKeyMatch {
    pub fn from_code(code: &str) -> Option<ForeignKeyMatch> {
        Some(match code {
            "s" => ForeignKeyMatch::Simple,
            "f" => ForeignKeyMatch::Full,
            "p" => ForeignKeyMatch::Partial,
            _ => return None,
        })
    }
}

/// A declared foreign key (`conparentid = 0`); the copies PostgreSQL makes on
/// partitions follow their parent and are not listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub table: QualifiedName,
    pub name: Ident,
    /// `pg_get_constraintdef`, with every name schema-qualified.
    pub definition: ServerSql,
    pub columns: Vec<Ident>,
    pub referenced_table: QualifiedName,
    pub referenced_columns: Vec<Ident>,
    pub on_update: ForeignKeyAction,
    pub on_delete: ForeignKeyAction,
    pub match_type: ForeignKeyMatch,
    pub deferrable: bool,
    pub initially_deferred: bool,
    /// False for a constraint added `NOT VALID` and never validated.
    pub validated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    Check,
    Exclusion,
}

/// A primary key, unique, check or exclusion constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub table: QualifiedName,
    pub name: Ident,
    pub kind: ConstraintKind,
    pub definition: ServerSql,
    pub validated: bool,
    /// Inherited from a parent table or partitioned table rather than declared here.
    pub inherited: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The index's own name (indexes live in their table's schema).
    pub name: QualifiedName,
    pub table: QualifiedName,
    /// `pg_get_indexdef`.
    pub definition: ServerSql,
    pub unique: bool,
    pub primary: bool,
    /// False while a `CREATE INDEX CONCURRENTLY` failed or is running.
    pub valid: bool,
}

/// `tgenabled`: when a trigger fires, as set by `ALTER TABLE ... ENABLE/DISABLE
/// TRIGGER` (see [ALTER TABLE](https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-DISABLE-ENABLE-TRIGGER)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerState {
    /// `O`: fires when `session_replication_role` is `origin` or `local` (ENABLE).
    Origin,
    /// `D`: never fires (DISABLE).
    Disabled,
    /// `R`: fires only when `session_replication_role` is `replica` (ENABLE REPLICA).
    Replica,
    /// `A`: always fires (ENABLE ALWAYS).
    Always,
}

impl TriggerState {
    /// From `tgenabled`.
    pub fn from_code(code: &str) -> Option<TriggerState> {
        Some(match code {
            "O" => TriggerState::Origin,
            "D" => TriggerState::Disabled,
            "R" => TriggerState::Replica,
            "A" => TriggerState::Always,
            _ => return None,
        })
    }

    /// The word the journal stores.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerState::Origin => "origin",
            TriggerState::Disabled => "disabled",
            TriggerState::Replica => "replica",
            TriggerState::Always => "always",
        }
    }

    pub fn parse(word: &str) -> Option<TriggerState> {
        [TriggerState::Origin, TriggerState::Disabled, TriggerState::Replica, TriggerState::Always]
            .into_iter()
            .find(|s| s.as_str() == word)
    }
}

/// A user trigger (`NOT tgisinternal`): the triggers behind foreign keys are not
/// listed, they come and go with their constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub table: QualifiedName,
    pub name: Ident,
    /// `pg_get_triggerdef`.
    pub definition: ServerSql,
    pub state: TriggerState,
    /// Created by `CREATE CONSTRAINT TRIGGER`.
    pub constraint_trigger: bool,
    /// A clone that PostgreSQL made on a partition for a trigger of its parent
    /// (`tgparentid <> 0`); its state can differ from the parent's.
    pub cloned_from_parent: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceKind {
    /// Owned by a column (`SERIAL`, or `ALTER SEQUENCE ... OWNED BY`): `pg_depend`
    /// type `a`.
    Serial,
    /// Behind an identity column: `pg_depend` type `i`.
    Identity,
    /// Owned by nothing; possibly used by several tables' defaults.
    Standalone,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRef {
    pub table: QualifiedName,
    pub column: Ident,
}

/// Volatile: where a sequence stands, read from the sequence itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencePosition {
    pub last_value: i64,
    /// False when `nextval` will return `last_value` itself.
    pub is_called: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub name: QualifiedName,
    pub kind: SequenceKind,
    pub owned_by: Option<ColumnRef>,
    /// `smallint`, `integer` or `bigint`.
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min_value: i64,
    pub max_value: i64,
    pub cache: i64,
    pub cycle: bool,
    pub position: SequencePosition,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewKind {
    View,
    MaterializedView,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub name: QualifiedName,
    pub kind: ViewKind,
    /// For a materialized view: whether it holds data (false after `WITH NO DATA`).
    pub populated: bool,
    /// `pg_get_viewdef`.
    pub definition: ServerSql,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_states_round_trip_through_catalog_codes_and_journal_words() {
        for (code, state) in [
            ("O", TriggerState::Origin),
            ("D", TriggerState::Disabled),
            ("R", TriggerState::Replica),
            ("A", TriggerState::Always),
        ] {
            assert_eq!(TriggerState::from_code(code), Some(state));
            assert_eq!(TriggerState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TriggerState::from_code("x"), None);
    }

    #[test]
    fn catalog_only_blanks_the_volatile_figures_and_nothing_else() {
        let name = QualifiedName::from_catalog("s", "t");
        let inventory = Inventory {
            format_version: FORMAT_VERSION,
            server_version_num: 150000,
            schemas: vec![Ident::from_catalog("s")],
            extensions: vec![],
            tables: vec![Table {
                name: name.clone(),
                kind: TableKind::Ordinary,
                unlogged: false,
                primary_key: vec![],
                replica_identity: ReplicaIdentity::Full,
                partition_key: None,
                partition_of: None,
                partition_bound: None,
                inherits: vec![],
                identity_columns: vec![],
                generated_columns: vec![],
                size: TableSize { bytes: 8192, estimated_rows: Some(3) },
            }],
            foreign_keys: vec![],
            constraints: vec![],
            indexes: vec![],
            triggers: vec![],
            sequences: vec![],
            views: vec![],
            large_objects: 2,
        };
        let blank = inventory.clone().catalog_only();
        assert_eq!(blank.tables[0].size, TableSize::default());
        assert_eq!(blank.large_objects, 0);
        assert_eq!(blank.tables[0].replica_identity, ReplicaIdentity::Full);
        let json = serde_json::to_string(&inventory.tables[0].replica_identity).unwrap();
        assert_eq!(json, "\"full\"");
    }
}
