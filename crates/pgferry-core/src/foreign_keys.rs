//! The copy's foreign keys: added after the data `NOT VALID`, then validated.
//!
//! `ALTER TABLE ... ADD FOREIGN KEY` scans the referencing table under a SHARE
//! ROW EXCLUSIVE lock, which blocks every write to it until the scan ends. Added
//! `NOT VALID`, the constraint only touches the catalog (new rows are checked from
//! then on), and `VALIDATE CONSTRAINT` scans under SHARE UPDATE EXCLUSIVE, which
//! lets reads and writes run beside it
//! ([ALTER TABLE](https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES)).
//! So no foreign key's scan can hold up change capture or sit in a downtime
//! window. A key the source itself holds `NOT VALID` stays so (its definition
//! already says it), and PostgreSQL before 18 refuses `NOT VALID` on a
//! partitioned table's foreign key: those are added validated.
//!
//! The plan (pure) compares the source's keys with what the target holds, so a
//! rerun adds only the missing ones and validates only those still unvalidated.

use std::collections::{BTreeMap, BTreeSet};

use crate::inventory::ForeignKey;
use crate::sql::{Ident, QualifiedName, ServerSql, Sql};
use crate::target::NOT_VALID_ON_PARTITIONED_SINCE;

/// What the target holds: each foreign key by table and name, and whether it is
/// validated; which of its tables are partitioned; its version.
#[derive(Clone, Debug, Default)]
pub struct TargetKeys {
    pub present: BTreeMap<(QualifiedName, Ident), bool>,
    pub partitioned: BTreeSet<QualifiedName>,
    pub version_num: i32,
}

/// The statements, in two phases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForeignKeyPlan {
    /// `ADD CONSTRAINT`, catalog only (or validated, where NOT VALID is refused).
    pub add: Vec<Sql>,
    /// `VALIDATE CONSTRAINT`, one per key; they may run in parallel.
    pub validate: Vec<Sql>,
}

/// `ALTER TABLE <table> ADD CONSTRAINT <name> <definition>`, the definition as
/// `pg_get_constraintdef` rendered it.
pub fn add_statement(table: &QualifiedName, name: &Ident, definition: &ServerSql) -> Sql {
    Sql::new("ALTER TABLE ").name(table).push(" ADD CONSTRAINT ").ident(name).push(" ").server_sql(definition)
}

/// `ALTER TABLE <table> VALIDATE CONSTRAINT <name>`.
pub fn validate_statement(table: &QualifiedName, name: &Ident) -> Sql {
    Sql::new("ALTER TABLE ").name(table).push(" VALIDATE CONSTRAINT ").ident(name)
}

/// The foreign keys to add and validate so the target holds the source's.
pub fn plan(source: &[ForeignKey], target: &TargetKeys) -> ForeignKeyPlan {
    let mut plan = ForeignKeyPlan::default();
    for fk in source {
        let key = (fk.table.clone(), fk.name.clone());
        let add = add_statement(&fk.table, &fk.name, &fk.definition);
        let validated_now = match target.present.get(&key) {
            Some(&validated) => validated,
            // pg_get_constraintdef of an unvalidated key already ends in NOT VALID.
            None if !fk.validated => {
                plan.add.push(add);
                continue;
            }
            None if target.partitioned.contains(&fk.table) && target.version_num < NOT_VALID_ON_PARTITIONED_SINCE => {
                plan.add.push(add);
                true
            }
            None => {
                plan.add.push(add.push(" NOT VALID"));
                false
            }
        };
        if fk.validated && !validated_now {
            plan.validate.push(validate_statement(&fk.table, &fk.name));
        }
    }
    plan
}

/// Whether a `pg_restore -l` entry is a foreign key (`2606 <oid> FK CONSTRAINT ...`).
pub fn is_foreign_key_entry(line: &str) -> bool {
    line.split_once("; ").is_some_and(|(_, rest)| {
        let mut fields = rest.splitn(3, ' ');
        fields.next() == Some("2606")
            && fields.next().is_some()
            && fields.next().is_some_and(|d| d.starts_with("FK CONSTRAINT "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ForeignKeyAction, ForeignKeyMatch};

    fn fk(table: &str, name: &str, validated: bool) -> ForeignKey {
        let definition = if validated {
            "FOREIGN KEY (p) REFERENCES s.parent(id)"
        } else {
            "FOREIGN KEY (p) REFERENCES s.parent(id) NOT VALID"
        };
        ForeignKey {
            table: QualifiedName::from_catalog("s", table),
            name: Ident::from_catalog(name),
            definition: ServerSql::from_catalog(definition),
            columns: vec![Ident::from_catalog("p")],
            referenced_table: QualifiedName::from_catalog("s", "parent"),
            referenced_columns: vec![Ident::from_catalog("id")],
            on_update: ForeignKeyAction::NoAction,
            on_delete: ForeignKeyAction::NoAction,
            match_type: ForeignKeyMatch::Simple,
            deferrable: false,
            initially_deferred: false,
            validated,
        }
    }

    fn texts(sql: &[Sql]) -> Vec<&str> {
        sql.iter().map(Sql::as_str).collect()
    }

    #[test]
    fn keys_are_added_not_valid_then_validated() {
        let plan = plan(&[fk("child", "child fk", true)], &TargetKeys { version_num: 150000, ..TargetKeys::default() });
        assert_eq!(
            texts(&plan.add),
            ["ALTER TABLE \"s\".\"child\" ADD CONSTRAINT \"child fk\" FOREIGN KEY (p) REFERENCES s.parent(id) NOT VALID"]
        );
        assert_eq!(texts(&plan.validate), ["ALTER TABLE \"s\".\"child\" VALIDATE CONSTRAINT \"child fk\""]);
    }

    #[test]
    fn a_key_the_source_holds_not_valid_stays_so() {
        let plan = plan(&[fk("child", "loose", false)], &TargetKeys::default());
        assert_eq!(
            texts(&plan.add),
            ["ALTER TABLE \"s\".\"child\" ADD CONSTRAINT \"loose\" FOREIGN KEY (p) REFERENCES s.parent(id) NOT VALID"]
        );
        assert!(plan.validate.is_empty());
    }

    #[test]
    fn partitioned_tables_before_18_get_validated_keys() {
        let mut target = TargetKeys { version_num: 170000, ..TargetKeys::default() };
        target.partitioned.insert(QualifiedName::from_catalog("s", "parted"));
        let plan_17 = plan(&[fk("parted", "p_fk", true)], &target);
        assert_eq!(
            texts(&plan_17.add),
            ["ALTER TABLE \"s\".\"parted\" ADD CONSTRAINT \"p_fk\" FOREIGN KEY (p) REFERENCES s.parent(id)"]
        );
        assert!(plan_17.validate.is_empty());
        target.version_num = 180000;
        let plan_18 = plan(&[fk("parted", "p_fk", true)], &target);
        assert!(plan_18.add[0].as_str().ends_with(" NOT VALID"));
        assert_eq!(plan_18.validate.len(), 1);
    }

    #[test]
    fn a_rerun_adds_what_is_missing_and_validates_what_is_not_yet() {
        let mut target = TargetKeys { version_num: 150000, ..TargetKeys::default() };
        target.present.insert((QualifiedName::from_catalog("s", "a"), Ident::from_catalog("done")), true);
        target.present.insert((QualifiedName::from_catalog("s", "b"), Ident::from_catalog("added")), false);
        let plan = plan(&[fk("a", "done", true), fk("b", "added", true), fk("c", "missing", true)], &target);
        assert_eq!(plan.add.len(), 1);
        assert!(plan.add[0].as_str().contains("\"missing\""));
        assert_eq!(
            texts(&plan.validate),
            [
                "ALTER TABLE \"s\".\"b\" VALIDATE CONSTRAINT \"added\"",
                "ALTER TABLE \"s\".\"c\" VALIDATE CONSTRAINT \"missing\""
            ]
        );
    }

    #[test]
    fn restore_list_entries_of_foreign_keys_are_recognized() {
        assert!(is_foreign_key_entry("3003; 2606 700 FK CONSTRAINT s t t_fk owner"));
        assert!(!is_foreign_key_entry("3002; 2606 600 CONSTRAINT s t t_pkey owner"));
        assert!(!is_foreign_key_entry("3004; 2620 800 TRIGGER s t tr owner"));
        assert!(!is_foreign_key_entry("; Archive created"));
    }
}
