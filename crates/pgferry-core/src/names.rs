//! Deterministic names for everything pgferry creates.
//!
//! Cleanup must touch only what pgferry made, and a rerun after a crash must find
//! what the previous run left. Both follow from one rule: every object's name is a
//! pure function of the migration's name (and, for what is server-wide, of the
//! database it belongs to), and can be parsed back into it. The migration name is
//! restricted to lower-case ASCII so that the derived names need no quoting, fit
//! PostgreSQL's 63-byte limit, and are valid replication slot names (`[a-z0-9_]`, see
//! [Replication Slots](https://www.postgresql.org/docs/current/warm-standby.html#STREAMING-REPLICATION-SLOTS)).
//!
//! Publications live in a database; replication slots are server-wide. A slot named
//! after the migration alone (`pgferry_main`, as earlier releases named it) collides
//! with the slot of another database's migration under the same name, so a slot is
//! named after the migration and the source database's OID (`pgferry_main__16384`).
//! A migration records its slot's name when it starts, and keeps using the recorded
//! one (a migration started by an earlier release keeps its [`MigrationName::legacy_slot`]).

use std::fmt;

use crate::sql::Ident;

/// The prefix of every object pgferry creates on a server.
pub const PREFIX: &str = "pgferry_";

/// The schema on the target (and for the fence, on the source) where pgferry keeps
/// its journal and saved definitions.
pub const STATE_SCHEMA: &str = "pgferry";

const MAX_MIGRATION_NAME: usize = 40;

const INSERT_ONLY_SUFFIX: &str = "__insert_only";

/// A migration's name: 1 to 40 characters of `a-z`, `0-9` and `_`, starting with a
/// letter, without `__` (which separates the suffixes of derived names).
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MigrationName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid migration name {name:?}: use 1 to {MAX_MIGRATION_NAME} characters of a-z, 0-9 and single _, starting with a letter (for example \"orders_2026\")"
)]
pub struct InvalidMigrationName {
    pub name: String,
}

impl MigrationName {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidMigrationName> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= MAX_MIGRATION_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.contains("__")
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(MigrationName(name))
        } else {
            Err(InvalidMigrationName { name })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The logical replication slot on the source of a migration started by this
    /// release: unique on the server by the source database's OID (at most 60 bytes).
    pub fn slot(&self, source_database: u32) -> String {
        format!("{PREFIX}{}{DATABASE_SEPARATOR}{source_database}", self.0)
    }

    /// The slot of a migration started by a release before slot names carried the
    /// database: such a migration keeps it.
    pub fn legacy_slot(&self) -> String {
        format!("{PREFIX}{}", self.0)
    }

    /// The publication on the source.
    pub fn publication(&self) -> Ident {
        Ident::from_catalog(format!("{PREFIX}{}", self.0))
    }

    /// The publication for tables without a usable replica identity: it carries
    /// only inserts and truncates, so the source's UPDATEs and DELETEs on those
    /// tables keep working (a publication that carried them would make them fail).
    pub fn insert_only_publication(&self) -> Ident {
        Ident::from_catalog(format!("{PREFIX}{}{INSERT_ONLY_SUFFIX}", self.0))
    }

    /// DDL capture on the source: the event triggers (`ddl_command_end`, `sql_drop`)
    /// and their functions in the state schema, all named after the migration.
    pub fn ddl_trigger(&self) -> Ident {
        Ident::from_catalog(format!("{PREFIX}{}__ddl", self.0))
    }

    pub fn ddl_drop_trigger(&self) -> Ident {
        Ident::from_catalog(format!("{PREFIX}{}__ddl_drop", self.0))
    }

    /// The `SECURITY DEFINER` function the `ddl_command_end` trigger's function
    /// (which runs as the session, to read its settings) calls to emit.
    pub fn ddl_emit_function(&self) -> Ident {
        Ident::from_catalog(format!("{PREFIX}{}__ddl_emit", self.0))
    }

    /// The prefix of the logical messages DDL capture emits for this migration.
    pub fn ddl_message_prefix(&self) -> String {
        format!("{PREFIX}ddl__{}", self.0)
    }

    /// Parses a slot (permanent or temporary, of either release) or publication name
    /// back into the migration's name.
    pub fn from_object_name(object: &str) -> Option<MigrationName> {
        let rest = object.strip_prefix(PREFIX)?;
        let rest = rest.strip_suffix(INSERT_ONLY_SUFFIX).unwrap_or(rest);
        let name = match rest.split_once(DATABASE_SEPARATOR) {
            None => rest,
            Some((name, database)) => {
                let oid = SnapshotSlot::ALL
                    .iter()
                    .find_map(|purpose| database.strip_suffix(purpose.suffix()))
                    .unwrap_or(database);
                if oid.is_empty() || !oid.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                name
            }
        };
        MigrationName::new(name).ok()
    }
}

/// Separates the migration's name from the database's OID in a slot's name.
const DATABASE_SEPARATOR: &str = "__";

/// A temporary slot made only for the snapshot it exports, beside the migration's
/// slot. Its suffix is short so that it fits beside the longest slot name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SnapshotSlot {
    /// A resumed copy's fresh snapshot.
    Resume,
    /// `validate --repair`'s snapshot.
    Repair,
}

impl SnapshotSlot {
    const ALL: [SnapshotSlot; 2] = [SnapshotSlot::Resume, SnapshotSlot::Repair];

    fn suffix(self) -> &'static str {
        match self {
            SnapshotSlot::Resume => "_r",
            SnapshotSlot::Repair => "_p",
        }
    }

    /// The temporary slot's name for the migration's `slot`.
    pub fn beside(self, slot: &str) -> String {
        format!("{slot}{}", self.suffix())
    }
}

impl TryFrom<String> for MigrationName {
    type Error = InvalidMigrationName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        MigrationName::new(value)
    }
}

impl From<MigrationName> for String {
    fn from(value: MigrationName) -> Self {
        value.0
    }
}

impl fmt::Display for MigrationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state schema as an identifier.
pub fn state_schema() -> Ident {
    Ident::from_catalog(STATE_SCHEMA)
}

/// Whether an event trigger is DDL capture's, of any migration
/// ([`MigrationName::ddl_trigger`], [`MigrationName::ddl_drop_trigger`]).
pub fn is_ddl_capture_trigger(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else { return false };
    ["__ddl", "__ddl_drop"]
        .iter()
        .any(|suffix| rest.strip_suffix(suffix).is_some_and(|migration| MigrationName::new(migration).is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_derive_parseable_object_names() {
        let name = MigrationName::new("orders_2026").unwrap();
        assert_eq!(name.slot(16384), "pgferry_orders_2026__16384");
        assert_eq!(name.legacy_slot(), "pgferry_orders_2026");
        assert_eq!(name.publication().as_str(), "pgferry_orders_2026");
        for slot in [name.slot(16384), name.legacy_slot()] {
            assert_eq!(MigrationName::from_object_name(&slot), Some(name.clone()), "{slot}");
        }
        for purpose in SnapshotSlot::ALL {
            let temporary = purpose.beside(&name.slot(16384));
            assert_eq!(MigrationName::from_object_name(&temporary), Some(name.clone()), "{temporary}");
        }
        let insert_only = name.insert_only_publication();
        assert_eq!(MigrationName::from_object_name(insert_only.as_str()), Some(name));
    }

    #[test]
    fn slots_of_two_databases_differ() {
        let name = MigrationName::new("main").unwrap();
        assert_ne!(name.slot(16384), name.slot(16385));
    }

    #[test]
    fn derived_names_fit_the_identifier_limit() {
        let name = MigrationName::new("a".repeat(40)).unwrap();
        assert!(name.publication().fits_namedatalen());
        for purpose in SnapshotSlot::ALL {
            let longest = purpose.beside(&name.slot(u32::MAX));
            assert!(longest.len() <= 63, "{longest}");
            assert!(longest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
        assert!(name.insert_only_publication().fits_namedatalen());
    }

    #[test]
    fn invalid_names_are_refused_with_an_example() {
        for bad in ["", "a__b", "1abc", "Abc", "a-b", "a b", "é", &"a".repeat(41)] {
            let err = MigrationName::new(bad).unwrap_err();
            assert!(err.to_string().contains("for example"), "{bad}");
        }
    }

    #[test]
    fn ddl_captures_triggers_are_told_from_the_users() {
        let name = MigrationName::new("orders_2026").unwrap();
        assert!(is_ddl_capture_trigger(name.ddl_trigger().as_str()));
        assert!(is_ddl_capture_trigger(name.ddl_drop_trigger().as_str()));
        for user in ["audit", "pgferry_audit", "pgferry___ddl", "pgferry_Main__ddl", "pgferry_main__ddl_x"] {
            assert!(!is_ddl_capture_trigger(user), "{user}");
        }
    }

    #[test]
    fn foreign_objects_do_not_parse_as_ours() {
        assert_eq!(MigrationName::from_object_name("other_slot"), None);
        assert_eq!(MigrationName::from_object_name("pgferry_"), None);
        assert_eq!(MigrationName::from_object_name("pgferry_Bad"), None);
        assert_eq!(MigrationName::from_object_name("pgferry_main__"), None);
        assert_eq!(MigrationName::from_object_name("pgferry_main__12x"), None);
    }
}
