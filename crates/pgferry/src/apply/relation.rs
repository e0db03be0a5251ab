//! Relation messages mapped onto the target's tables.
//!
//! pgoutput describes each table (schema, name, replica identity, columns with
//! their type and key flag) before its first change in a session and again after
//! its definition changed
//! ([Logical Replication Message Formats](https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html)).
//! Each description is checked against the target table of the same name before
//! any change to it is applied: a column the target lacks, a column whose type
//! differs, or a target column that must get a value the stream does not carry
//! stops change capture with the table and column named, and nothing after the
//! last applied transaction is lost (the slot keeps it). Target columns missing
//! from the stream that can take their default are allowed, as PostgreSQL's own
//! subscriber allows them
//! ([Logical Replication Restrictions](https://www.postgresql.org/docs/current/logical-replication-restrictions.html)).

use std::collections::HashMap;
use std::fmt;

use pgferry_core::sql::{Ident, QualifiedName, ServerSql, Sql};
use pgferry_pgoutput::{Oid, Relation, ReplicaIdentity};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::Stop;
use crate::error::{Error, ErrorKind, Result};

/// Types with OIDs below this are built in, with the same OID in every version
/// (`FirstGenbkiObjectId`); pgoutput names the others in Type messages.
const FIRST_NAMED_TYPE_OID: Oid = 10_000;

/// A column of the target table, as its catalog says.
#[derive(Clone, Debug)]
pub(crate) struct TargetColumn {
    pub(crate) name: String,
    /// `format_type(atttypid, atttypmod)`, schema-qualified (read with an empty
    /// search_path).
    pub(crate) type_sql: ServerSql,
    pub(crate) type_oid: Oid,
    pub(crate) type_modifier: i32,
    /// The type's schema and name, and those of its base type for a domain:
    /// pgoutput names a domain by its base type.
    pub(crate) type_name: (String, String),
    pub(crate) base_type_name: (String, String),
    pub(crate) generated: bool,
    pub(crate) identity_always: bool,
    /// NOT NULL without a default: it must be given a value.
    pub(crate) required: bool,
}

/// A stream column mapped onto its target column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MappedColumn {
    pub(crate) name: Ident,
    pub(crate) type_sql: ServerSql,
    pub(crate) is_key: bool,
    /// GENERATED ALWAYS AS IDENTITY: inserted with OVERRIDING SYSTEM VALUE, never
    /// assigned by UPDATE (PostgreSQL refuses that).
    pub(crate) identity_always: bool,
    /// Matched as text under REPLICA IDENTITY FULL: its type has no equality
    /// operator (json, point, xml, ...).
    pub(crate) compare_as_text: bool,
}

/// A relation ready for apply.
#[derive(Clone, Debug)]
pub(crate) struct Mapped {
    pub(crate) table: QualifiedName,
    pub(crate) columns: Vec<MappedColumn>,
    pub(crate) full: bool,
    pub(crate) folding: Folding,
    /// A partitioned table (changes published through its root): statements
    /// reach its partitions, so they are written without ONLY.
    pub(crate) partitioned: bool,
    /// A trigger or rule fires in replica mode: it may read other tables, so
    /// parallel apply applies its changes between barriers ([`super::parallel`]).
    pub(crate) replica_logic: bool,
}

/// Whether a table's changes in a batch may be folded into net changes
/// ([`super::net`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Folding {
    /// Each change applied on its own, in stream order.
    InOrder,
    /// The last image of each key, applied as set statements.
    ByKey,
    /// A table without a key: only inserts arrive, sent together in order.
    Append,
}

/// Which folding is exact for a table (pure). `uniques` holds, for each unique
/// index or exclusion constraint of the target table, its key columns' names
/// (`None` for one on expressions or with a predicate); `replica_logic` says
/// whether a trigger or rule fires in replica mode. Folding reorders the
/// changes of a batch, which only the key's own unique index may see.
pub(crate) fn folding(full: bool, key: &[&str], uniques: &[Option<Vec<String>>], replica_logic: bool) -> Folding {
    if full || replica_logic {
        return Folding::InOrder;
    }
    if key.is_empty() {
        return Folding::Append;
    }
    let same_columns =
        |columns: &Vec<String>| columns.len() == key.len() && key.iter().all(|k| columns.iter().any(|c| c == k));
    match uniques {
        [Some(only)] if same_columns(only) => Folding::ByKey,
        _ => Folding::InOrder,
    }
}

impl Mapped {
    pub(crate) fn has_key(&self) -> bool {
        self.full || self.columns.iter().any(|c| c.is_key)
    }

    /// `ONLY ` for a plain table (its inheritance children are tables of their
    /// own), nothing for a partitioned one.
    pub(crate) fn only(&self) -> &'static str {
        if self.partitioned {
            ""
        } else {
            "ONLY "
        }
    }
}

/// Why a relation cannot be applied to its target table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    NoTable,
    MissingColumn { column: String },
    GeneratedColumn { column: String },
    TypeDiffers { column: String, source: String, target: String },
    RequiredColumn { column: String },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::NoTable => f.write_str("the table does not exist on the target"),
            Mismatch::MissingColumn { column } => {
                write!(f, "the source sends column {column:?}, which the target table lacks")
            }
            Mismatch::GeneratedColumn { column } => {
                write!(f, "the source sends column {column:?}, which is a generated column on the target")
            }
            Mismatch::TypeDiffers { column, source, target } => {
                write!(f, "column {column:?} has type {source} on the source and {target} on the target")
            }
            Mismatch::RequiredColumn { column } => write!(
                f,
                "the target's column {column:?} is NOT NULL without a default, and the source no longer sends it"
            ),
        }
    }
}

impl Mismatch {
    /// The error that stops apply, naming the table and how to go on.
    pub(crate) fn into_error(self, table: &QualifiedName) -> Error {
        Error::new(
            ErrorKind::Precondition,
            format!("change capture stopped before changing {table}: {self}"),
        )
        .with_hint(format!(
            "the source's table definition changed; make the target's {table} match it (for example ALTER TABLE ... ADD COLUMN on the target) and rerun pgferry follow: every change from the last applied position on is still in the slot"
        ))
    }
}

/// Checks a Relation message against the target table's columns (pure).
/// `type_names` holds the Type messages seen: OID to (schema, name).
pub(crate) fn map_columns(
    relation: &Relation,
    type_names: &HashMap<Oid, (String, String)>,
    target: &[TargetColumn],
) -> Result<Vec<MappedColumn>, Mismatch> {
    if target.is_empty() {
        return Err(Mismatch::NoTable);
    }
    let mut mapped = Vec::with_capacity(relation.columns.len());
    for column in &relation.columns {
        let Some(t) = target.iter().find(|t| t.name == column.name) else {
            return Err(Mismatch::MissingColumn { column: column.name.clone() });
        };
        if t.generated {
            return Err(Mismatch::GeneratedColumn { column: column.name.clone() });
        }
        let same_type = if column.type_oid < FIRST_NAMED_TYPE_OID {
            column.type_oid == t.type_oid
        } else {
            type_names.get(&column.type_oid).is_none_or(|n| *n == t.type_name || *n == t.base_type_name)
        } && column.type_modifier == t.type_modifier;
        if !same_type {
            let source = match type_names.get(&column.type_oid) {
                Some((schema, name)) => format!("{schema}.{name} (modifier {})", column.type_modifier),
                None => format!("OID {} (modifier {})", column.type_oid, column.type_modifier),
            };
            return Err(Mismatch::TypeDiffers {
                column: column.name.clone(),
                source,
                target: t.type_sql.as_str().to_string(),
            });
        }
        mapped.push(MappedColumn {
            name: Ident::from_catalog(&column.name),
            type_sql: t.type_sql.clone(),
            is_key: column.is_key,
            identity_always: t.identity_always,
            compare_as_text: false,
        });
    }
    if let Some(t) =
        target.iter().find(|t| t.required && !t.generated && !relation.columns.iter().any(|c| c.name == t.name))
    {
        return Err(Mismatch::RequiredColumn { column: t.name.clone() });
    }
    Ok(mapped)
}

/// Reads the target table's columns; empty when the table does not exist.
async fn target_columns(target: &Client, table: &QualifiedName) -> Result<Vec<TargetColumn>, Stop> {
    let rows = target
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod,
                    tn.nspname::text, t.typname::text, a.attgenerated <> '', a.attidentity = 'a',
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = '',
                    base.nspname::text, base.typname::text
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_namespace tn ON tn.oid = t.typnamespace
             CROSS JOIN LATERAL (
                 WITH RECURSIVE chain (oid, base, depth) AS (
                     SELECT t.oid, t.typbasetype, 0
                     UNION ALL SELECT d.oid, d.typbasetype, chain.depth + 1 FROM pg_type d JOIN chain ON d.oid = chain.base
                 )
                 SELECT bn.nspname, bt.typname FROM chain JOIN pg_type bt ON bt.oid = chain.oid
                 JOIN pg_namespace bn ON bn.oid = bt.typnamespace ORDER BY chain.depth DESC LIMIT 1
             ) base
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
             ORDER BY a.attnum",
            &[&table.schema.as_str(), &table.name.as_str()],
        )
        .await
        .map_err(|e| Stop::target(&format!("reading the target's definition of {table}"), e))?;
    Ok(rows
        .iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            type_sql: ServerSql::from_catalog(r.get::<_, String>(1)),
            type_oid: r.get(2),
            type_modifier: r.get(3),
            type_name: (r.get(4), r.get(5)),
            generated: r.get(6),
            identity_always: r.get(7),
            required: r.get(8),
            base_type_name: (r.get(9), r.get(10)),
        })
        .collect())
}

/// Maps a Relation message onto the target (catalog reads, then [`map_columns`]).
/// A lost connection is a transient stop (apply reconnects); a mismatch is fatal.
pub(crate) async fn map_relation(
    target: &Client,
    relation: &Relation,
    type_names: &HashMap<Oid, (String, String)>,
) -> Result<Mapped, Stop> {
    let table = QualifiedName::from_catalog(&relation.namespace, &relation.name);
    let columns = target_columns(target, &table).await?;
    let mut mapped = map_columns(relation, type_names, &columns).map_err(|m| m.into_error(&table))?;
    let full = relation.replica_identity == ReplicaIdentity::Full;
    if full {
        for column in &mut mapped {
            column.compare_as_text = !has_equality(target, &column.type_sql).await?;
        }
    }
    let (uniques, replica_logic, partitioned) = target_constraints(target, &table).await?;
    let key: Vec<&str> = mapped.iter().filter(|c| c.is_key).map(|c| c.name.as_str()).collect();
    let folding = folding(full, &key, &uniques, replica_logic);
    Ok(Mapped { table, columns: mapped, full, folding, partitioned, replica_logic })
}

/// The target table's unique indexes and exclusion constraints (their key
/// columns, `None` for expressions or a predicate), and whether a trigger or
/// rule of it fires in replica mode (enabled ALWAYS or REPLICA), and whether it
/// is partitioned. A partitioned
/// table (changes published through its root) counts those of its partitions
/// too, but for the partitions' copies of its own indexes.
async fn target_constraints(
    target: &Client,
    table: &QualifiedName,
) -> Result<(Vec<Option<Vec<String>>>, bool, bool), Stop> {
    let rows = target
        .query(
            "SELECT CASE WHEN i.indexprs IS NULL AND i.indpred IS NULL THEN
                        ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                              WHERE k.n <= i.indnkeyatts) END,
                    i.indexrelid IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tree.relid AND NOT t.tgisinternal AND t.tgenabled IN ('A', 'R'))
                    OR EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = tree.relid AND r.rulename <> '_RETURN' AND r.ev_enabled IN ('A', 'R')),
                    c.relkind = 'p'
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             -- pg_partition_tree lists nothing for a plain table: the table itself, then its tree.
             CROSS JOIN LATERAL (SELECT c.oid AS relid UNION SELECT relid FROM pg_partition_tree(c.oid)) tree
             LEFT JOIN pg_index i ON i.indrelid = tree.relid AND (i.indisunique OR i.indisexclusion)
                 AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema.as_str(), &table.name.as_str()],
        )
        .await
        .map_err(|e| Stop::target(&format!("reading the target's constraints of {table}"), e))?;
    let replica_logic = rows.iter().any(|r| r.get::<_, bool>(2));
    let partitioned = rows.iter().any(|r| r.get::<_, bool>(3));
    let uniques = rows.iter().filter(|r| r.get::<_, bool>(1)).map(|r| r.get::<_, Option<Vec<String>>>(0)).collect();
    Ok((uniques, replica_logic, partitioned))
}

/// Whether `=` exists for a type, as the server resolves it (arrays, domains and
/// ranges included): preparing a comparison fails with 42883 when it does not.
/// Runs inside the batch's transaction, so the probe is fenced by a savepoint.
async fn has_equality(target: &Client, type_sql: &ServerSql) -> Result<bool, Stop> {
    let fail = |e| Stop::target("checking a column type's equality operator on the target", e);
    let sql = Sql::new("SELECT $1::text::")
        .server_sql(type_sql)
        .push(" IS NOT DISTINCT FROM $1::text::")
        .server_sql(type_sql);
    target.batch_execute("SAVEPOINT pgferry_probe").await.map_err(fail)?;
    let found = match target.prepare_typed(sql.as_str(), &[Type::TEXT]).await {
        Ok(_) => true,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_FUNCTION) => false,
        Err(e) => return Err(fail(e)),
    };
    let end = if found { "RELEASE SAVEPOINT pgferry_probe" } else { "ROLLBACK TO SAVEPOINT pgferry_probe" };
    target.batch_execute(end).await.map_err(fail)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgferry_pgoutput::RelationColumn;

    fn target(name: &str, oid: Oid, required: bool) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            type_sql: ServerSql::from_catalog("integer"),
            type_oid: oid,
            type_modifier: -1,
            type_name: ("pg_catalog".into(), "int4".into()),
            base_type_name: ("pg_catalog".into(), "int4".into()),
            generated: false,
            identity_always: false,
            required,
        }
    }

    fn relation(columns: &[(&str, Oid, bool)]) -> Relation {
        Relation {
            xid: None,
            oid: 1,
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: columns
                .iter()
                .map(|(name, oid, key)| RelationColumn {
                    is_key: *key,
                    name: (*name).into(),
                    type_oid: *oid,
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    #[test]
    fn matching_columns_map_in_stream_order_with_their_key_flags() {
        let cols = [target("b", 23, false), target("a", 23, true)];
        let mapped = map_columns(&relation(&[("a", 23, true), ("b", 23, false)]), &HashMap::new(), &cols).unwrap();
        assert_eq!(mapped.iter().map(|c| (c.name.as_str(), c.is_key)).collect::<Vec<_>>(), [("a", true), ("b", false)]);
    }

    #[test]
    fn a_column_missing_on_the_target_is_named() {
        let err =
            map_columns(&relation(&[("a", 23, true), ("extra", 25, false)]), &HashMap::new(), &[target("a", 23, true)]);
        assert_eq!(err.unwrap_err(), Mismatch::MissingColumn { column: "extra".into() });
    }

    #[test]
    fn a_changed_type_is_named_with_both_types() {
        let err = map_columns(&relation(&[("a", 20, true)]), &HashMap::new(), &[target("a", 23, true)]).unwrap_err();
        assert!(matches!(&err, Mismatch::TypeDiffers { column, .. } if column == "a"), "{err:?}");
        assert!(err.to_string().contains("integer"), "{err}");
    }

    #[test]
    fn user_types_are_compared_by_name_not_oid() {
        let mut col = target("m", 70_000, false);
        col.type_name = ("shop".into(), "mood".into());
        let types = HashMap::from([(16_500, ("shop".to_string(), "mood".to_string()))]);
        assert!(map_columns(&relation(&[("m", 16_500, false)]), &types, std::slice::from_ref(&col)).is_ok());
        let other = HashMap::from([(16_500, ("shop".to_string(), "other".to_string()))]);
        assert!(map_columns(&relation(&[("m", 16_500, false)]), &other, &[col]).is_err());
    }

    #[test]
    fn target_only_columns_pass_unless_they_need_a_value() {
        let cols = [target("a", 23, true), target("opt", 23, false)];
        assert!(map_columns(&relation(&[("a", 23, true)]), &HashMap::new(), &cols).is_ok());
        let cols = [target("a", 23, true), target("must", 23, true)];
        let err = map_columns(&relation(&[("a", 23, true)]), &HashMap::new(), &cols).unwrap_err();
        assert_eq!(err, Mismatch::RequiredColumn { column: "must".into() });
    }

    #[test]
    fn a_missing_table_or_generated_target_column_is_refused() {
        assert_eq!(map_columns(&relation(&[("a", 23, true)]), &HashMap::new(), &[]).unwrap_err(), Mismatch::NoTable);
        let mut g = target("a", 23, false);
        g.generated = true;
        assert!(matches!(
            map_columns(&relation(&[("a", 23, false)]), &HashMap::new(), &[g]),
            Err(Mismatch::GeneratedColumn { .. })
        ));
    }

    #[test]
    fn only_a_key_that_is_the_sole_unique_constraint_folds() {
        let key = ["a", "b"];
        let pk = || Some(vec!["b".to_string(), "a".to_string()]);
        assert_eq!(folding(false, &key, &[pk()], false), Folding::ByKey, "column order does not matter");
        assert_eq!(
            folding(false, &key, &[pk(), Some(vec!["email".into()])], false),
            Folding::InOrder,
            "another unique index sees order"
        );
        assert_eq!(folding(false, &key, &[pk(), None], false), Folding::InOrder, "so does one on an expression");
        assert_eq!(
            folding(false, &key, &[Some(vec!["a".into()])], false),
            Folding::InOrder,
            "the key is not what the target enforces"
        );
        assert_eq!(folding(false, &key, &[], false), Folding::InOrder, "no unique index on the target");
        assert_eq!(
            folding(false, &key, &[pk()], true),
            Folding::InOrder,
            "a trigger firing in replica mode sees every change"
        );
        assert_eq!(folding(true, &key, &[pk()], false), Folding::InOrder, "REPLICA IDENTITY FULL has no key");
        assert_eq!(
            folding(false, &[], &[Some(vec!["x".into()])], false),
            Folding::Append,
            "a keyless table only gets inserts"
        );
        assert_eq!(folding(false, &[], &[], true), Folding::InOrder);
    }

    #[test]
    fn the_error_names_table_column_and_what_to_do() {
        let table = QualifiedName::from_catalog("shop", "orders");
        let err = Mismatch::MissingColumn { column: "note".into() }.into_error(&table);
        assert!(err.message.contains("\"shop\".\"orders\"") && err.message.contains("\"note\""), "{}", err.message);
        assert!(err.hint.unwrap().contains("rerun pgferry follow"));
    }
}
