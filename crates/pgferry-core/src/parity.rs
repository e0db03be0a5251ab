//! The cutover's final catalog parity gate: the source's and the target's catalogs
//! compared just before the fence, so that a target missing an index, a constraint,
//! a trigger, a view, a sequence, an extension, a comment, a function, a type's
//! label, a grant, a policy or an event trigger, or with columns in another order
//! (a DDL that was not replayed, a hand-made change on one side) is found while
//! the source still takes writes, not by the application after the switch.
//!
//! [`compare`] is pure: each side is read into a [`Catalog`] (by `pgferry::parity`,
//! with `search_path` empty so every name the server renders is qualified), and the
//! result lists every difference at once, each with the side it is on and its fix,
//! plus warnings about what is not carried by design (unlogged tables' later
//! changes, large objects the cutover brings over itself, indexes `pg_dump` skips).
//!
//! Major versions differ in how they catalog some things: PostgreSQL 18 records NOT
//! NULL as constraints (the reader leaves those out: nullability is compared on
//! the columns), an extension restored by `CREATE EXTENSION` gets the target's
//! default version, and PostgreSQL 17 added the MAINTAIN privilege ([`grants`]).
//! Definitions are compared in a normalized form (whitespace,
//! a trailing semicolon), so that a faithful migration from 15 to 18 passes.
//! Sequence values are not compared: the cutover sets them inside the fence.
//!
//! What a table is made of is compared here; what surrounds it, each in its own
//! module: the user's types ([`types`]), functions and procedures
//! ([`routines`]), privileges ([`grants`]), row-level security
//! ([`row_security`]), the order of columns ([`column_order`]), event
//! triggers ([`event_triggers`]), the database itself: its owner, settings
//! and comment ([`database`]), relations' options ([`relation_options`]),
//! rules, extended statistics, aggregates, collations and schemas ([`definitions`]),
//! and the server's roles, which nothing replicates ([`roles`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::sql::{Ident, QualifiedName, ServerSql, Sql};

mod column_order;
mod database;
mod definitions;
mod event_triggers;
mod grants;
mod others;
mod relation_options;
mod roles;
mod routines;
mod row_security;
mod securable;
mod types;

pub use database::{carry, DatabaseProperties, DatabaseSetting};
pub use definitions::{Definition, Named};
pub use event_triggers::EventTrigger;
pub use grants::{Acl, AclEntry, DefaultedObjects, RoleName, Securable};
pub use others::OtherObject;
pub use roles::ServerRoles;
pub use routines::Routine;
pub use row_security::{Policy, RowSecurity};
pub use types::{labels_to_add, TypeShape, UserType};

/// A relation's kind (`pg_class.relkind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Table,
    PartitionedTable,
    View,
    MaterializedView,
    ForeignTable,
}

impl RelationKind {
    pub fn from_code(code: &str) -> Option<RelationKind> {
        Some(match code {
            "r" => RelationKind::Table,
            "p" => RelationKind::PartitionedTable,
            "v" => RelationKind::View,
            "m" => RelationKind::MaterializedView,
            "f" => RelationKind::ForeignTable,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::PartitionedTable => "partitioned table",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
            RelationKind::ForeignTable => "foreign table",
        }
    }

    fn drop_statement(self) -> &'static str {
        match self {
            RelationKind::Table | RelationKind::PartitionedTable => "DROP TABLE ",
            RelationKind::View => "DROP VIEW ",
            RelationKind::MaterializedView => "DROP MATERIALIZED VIEW ",
            RelationKind::ForeignTable => "DROP FOREIGN TABLE ",
        }
    }

    /// `ALTER TABLE `, `ALTER VIEW `, ...: what alters a relation of this kind.
    fn alter_keyword(self) -> &'static str {
        match self {
            RelationKind::Table | RelationKind::PartitionedTable => "ALTER TABLE ",
            RelationKind::View => "ALTER VIEW ",
            RelationKind::MaterializedView => "ALTER MATERIALIZED VIEW ",
            RelationKind::ForeignTable => "ALTER FOREIGN TABLE ",
        }
    }

    fn is_view(self) -> bool {
        matches!(self, RelationKind::View | RelationKind::MaterializedView)
    }
}

/// A table, partitioned table, partition, view, materialized view or foreign table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub name: QualifiedName,
    pub kind: RelationKind,
    pub unlogged: bool,
    /// The parent of a partition.
    pub partition_of: Option<QualifiedName>,
    /// The parents of a table that inherits (`INHERITS`, not a partition's):
    /// a query on a parent reads its children's rows too.
    pub inherits: Vec<QualifiedName>,
    /// A partition's bound (`FOR VALUES ...`, `DEFAULT`).
    pub bound: Option<ServerSql>,
    /// A partitioned table's key (`RANGE (id)`).
    pub partition_key: Option<ServerSql>,
    /// A view's query (`pg_get_viewdef`).
    pub definition: Option<ServerSql>,
    /// `reloptions` as `name=value`, the TOAST table's as `toast.name=value`.
    pub options: Vec<String>,
    /// A foreign table's options (`ftoptions`) as `name=value`.
    pub foreign_options: Vec<String>,
}

/// A column of a table (user columns, not dropped ones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub relation: QualifiedName,
    pub name: Ident,
    /// `attnum`: the columns' order (with gaps where columns were dropped).
    pub position: i16,
    /// `format_type(atttypid, atttypmod)`.
    pub type_name: ServerSql,
    pub not_null: bool,
    pub default: Option<ServerSql>,
    /// `attidentity`: empty, `a` (ALWAYS) or `d` (BY DEFAULT).
    pub identity: String,
    /// `attgenerated`: empty or `s` (STORED).
    pub generated: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    pub relation: QualifiedName,
    pub name: Ident,
    /// `pg_get_indexdef`: the whole `CREATE INDEX` statement, names qualified.
    pub definition: ServerSql,
    pub valid: bool,
}

/// A constraint of a table or a domain (NOT NULL ones left out: columns carry them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    /// The table, or the domain when `on_domain`.
    pub on: QualifiedName,
    pub on_domain: bool,
    pub name: Ident,
    /// `pg_get_constraintdef`, with ` NOT VALID` when not validated.
    pub definition: ServerSql,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub name: QualifiedName,
    pub type_name: ServerSql,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub start: i64,
    pub cycle: bool,
    /// The column it belongs to (`OWNED BY`, as `serial` makes it): dropped with
    /// it, and what `pg_get_serial_sequence` finds. Identity columns' own are not
    /// listed here (their column's identity is compared).
    pub owned_by: Option<(QualifiedName, Ident)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub relation: QualifiedName,
    pub name: Ident,
    /// `pg_get_triggerdef`.
    pub definition: ServerSql,
    /// `tgenabled`: `O`, `D`, `R` or `A`.
    pub enabled: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub name: Ident,
    pub version: String,
    pub schema: Ident,
    /// The version `CREATE EXTENSION` installs on this server, when known.
    pub default_version: Option<String>,
}

/// A comment (`pg_description`) on a relation, column, constraint, trigger or schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// `pg_identify_object(...).type`: `table`, `table column`, `index`, ...
    pub object_type: String,
    /// `pg_identify_object(...).identity`: the object's qualified, quoted name.
    pub identity: ServerSql,
    pub text: String,
}

/// One side's catalog, as far as the gate compares it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Catalog {
    pub server_version_num: i32,
    pub relations: Vec<Relation>,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub constraints: Vec<Constraint>,
    pub sequences: Vec<Sequence>,
    pub triggers: Vec<Trigger>,
    pub extensions: Vec<Extension>,
    pub comments: Vec<Comment>,
    pub large_objects: i64,
    pub types: Vec<UserType>,
    pub routines: Vec<Routine>,
    /// The privileges on tables, sequences, schemas, functions and procedures.
    pub acls: Vec<Acl>,
    /// Every role on the server: privileges are compared for the roles on both sides.
    pub roles: Vec<Ident>,
    pub row_security: Vec<RowSecurity>,
    pub policies: Vec<Policy>,
    pub event_triggers: Vec<EventTrigger>,
    /// The database itself (its privileges are in `acls`).
    pub database: Option<DatabaseProperties>,
    /// Rules, extended statistics, aggregates, collations and schemas.
    pub definitions: Vec<Definition>,
    pub others: Vec<OtherObject>,
    /// The server's roles, their memberships, settings and passwords ([`roles`]).
    pub server_roles: Option<ServerRoles>,
}

/// What kind of object differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Relation,
    Column,
    Index,
    Constraint,
    Sequence,
    Trigger,
    Extension,
    Comment,
    Type,
    Function,
    Grant,
    RowSecurity,
    Policy,
    ColumnOrder,
    EventTrigger,
    Database,
    Owner,
    Rule,
    Statistics,
    Aggregate,
    Collation,
    Schema,
    /// A role: missing, its attributes, its settings, its password.
    Role,
    /// A role's membership in another.
    Membership,
    /// Operators, operator classes and families, casts, text search
    /// configurations and dictionaries, conversions, range types, foreign data
    /// wrappers, servers and user mappings, languages, transforms: by existence.
    Other,
}

/// Where the difference is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "side", rename_all = "snake_case")]
pub enum Side {
    /// On the source, not on the target.
    MissingOnTarget,
    /// On the target, not on the source.
    OnlyOnTarget,
    /// On both, not the same.
    Differs { source: String, target: String },
}

/// One difference, named, with its fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub kind: ObjectKind,
    /// The object, e.g. `index "orders_note" on "public"."orders"`.
    pub object: String,
    #[serde(flatten)]
    pub side: Side,
    /// What to do, usually the DDL to run on the target.
    pub fix: String,
    /// The DDL alone, when the fix is to run it on the target.
    pub ddl: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.side {
            Side::MissingOnTarget => write!(f, "{} is on the source but missing on the target", self.object)?,
            Side::OnlyOnTarget => write!(f, "{} is on the target but not on the source", self.object)?,
            Side::Differs { source, target } => {
                write!(f, "{} differs: on the source {source}, on the target {target}", self.object)?
            }
        }
        write!(f, "; fix: {}", self.fix)
    }
}

/// The gate's result.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct Parity {
    /// Each stops the cutover.
    pub differences: Vec<Difference>,
    /// Not carried by design, or brought over by the cutover itself: said, not refused.
    pub warnings: Vec<String>,
}

impl Parity {
    /// The go/no-go's reasons, one per difference.
    pub fn reasons(&self) -> Vec<String> {
        self.differences.iter().map(|d| format!("catalog parity: {d}")).collect()
    }
}

/// How DDL for the target is given.
const RUN_ON_TARGET: &str = "run on the target (pgferry follow --apply-ddl runs it there): ";

/// Compares the two catalogs: every difference, and the warnings.
pub fn compare(source: &Catalog, target: &Catalog) -> Parity {
    let mut p = Parity::default();
    let same_major = source.server_version_num / 10000 == target.server_version_num / 10000;
    // In the order the fixes can run: types and functions before what uses
    // them, privileges and policies once their objects exist; roles first.
    roles::compare(source, target, &mut p);
    let definitions = |kinds: &[ObjectKind], p: &mut Parity| {
        definitions::compare(&source.definitions, &target.definitions, kinds, same_major, p)
    };
    definitions(&[ObjectKind::Schema, ObjectKind::Collation], &mut p);
    types::compare(&source.types, &target.types, &mut p);
    routines::compare(&source.routines, &target.routines, same_major, &mut p);
    definitions(&[ObjectKind::Aggregate], &mut p);
    others::compare(&source.others, &target.others, &mut p);
    relations(source, target, same_major, &mut p);
    columns(source, target, &mut p);
    column_order::compare(source, target, &mut p);
    indexes(source, target, &mut p);
    constraints(source, target, &mut p);
    sequences(source, target, &mut p);
    triggers(source, target, &mut p);
    definitions(&[ObjectKind::Rule, ObjectKind::Statistics], &mut p);
    event_triggers::compare(&source.event_triggers, &target.event_triggers, &mut p);
    extensions(source, target, same_major, &mut p);
    comments(source, target, &mut p);
    row_security::compare(source, target, same_major, &mut p);
    database::compare(source, target, &mut p);
    grants::compare(source, target, &mut p);
    if source.large_objects != target.large_objects {
        p.warnings.push(format!(
            "large objects: {} on the source, {} on the target; the cutover brings them over (before the fence, and what changed since inside it)",
            source.large_objects, target.large_objects
        ));
    }
    p
}

/// Whitespace runs made one space, a trailing semicolon dropped: how the server
/// lays a definition out is not what it means.
pub fn normalize(definition: &str) -> String {
    let joined = definition.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.trim_end_matches(';').trim_end().to_string()
}

/// A query's text without the qualifiers of its names (`orders.id` -> `id`,
/// `public.orders` -> `orders`), string literals and quoted names kept whole:
/// PostgreSQL 16 stopped qualifying the columns of a query over one relation,
/// so views are compared this way across major versions (on both sides alike).
pub fn unqualified(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let starts_ident = |c: char| c.is_alphabetic() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let word_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '$');
        if c == '\'' {
            // A string literal: '' inside it is a quote.
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else if chars[i] == '\'' {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            out.extend(&chars[start..i]);
        } else if c == '"' || (starts_ident(c) && !word_before) {
            let start = i;
            if c == '"' {
                i += 1;
                while i < chars.len() {
                    if chars[i] == '"' && chars.get(i + 1) == Some(&'"') {
                        i += 2;
                    } else if chars[i] == '"' {
                        i += 1;
                        break;
                    } else {
                        i += 1;
                    }
                }
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                    i += 1;
                }
            }
            let qualifies =
                chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|&n| n == '"' || starts_ident(n));
            if qualifies {
                i += 1;
            } else {
                out.extend(&chars[start..i]);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Pairs the two sides' objects by key, in key order.
fn pair<'a, T, K: Ord>(source: &'a [T], target: &'a [T], key: impl Fn(&T) -> K) -> Vec<(Option<&'a T>, Option<&'a T>)> {
    let mut map: BTreeMap<K, (Option<&T>, Option<&T>)> = BTreeMap::new();
    for s in source {
        map.entry(key(s)).or_default().0 = Some(s);
    }
    for t in target {
        map.entry(key(t)).or_default().1 = Some(t);
    }
    map.into_values().collect()
}

/// A difference's fix: what to do, and the DDL alone when it is DDL on the target.
struct Fix {
    text: String,
    ddl: Option<String>,
}

impl Fix {
    fn note(mut self, note: &str) -> Fix {
        self.text.push_str(note);
        self
    }
}

impl From<String> for Fix {
    fn from(text: String) -> Fix {
        Fix { text, ddl: None }
    }
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn push(p: &mut Parity, kind: ObjectKind, object: String, side: Side, fix: impl Into<Fix>) {
    let Fix { text, ddl } = fix.into();
    p.differences.push(Difference { kind, object, side, fix: text, ddl });
}

fn run(sql: Sql) -> Fix {
    Fix { text: format!("{RUN_ON_TARGET}{sql}"), ddl: Some(sql.into_string()) }
}

fn differs(source: impl fmt::Display, target: impl fmt::Display) -> Side {
    Side::Differs { source: source.to_string(), target: target.to_string() }
}

fn body(def: &ServerSql) -> ServerSql {
    ServerSql::from_catalog(normalize(def.as_str()))
}

fn relations(source: &Catalog, target: &Catalog, same_major: bool, p: &mut Parity) {
    for r in source.relations.iter().filter(|r| r.unlogged) {
        p.warnings.push(format!(
            "{} {} is unlogged: its rows were copied, but its changes since the copy are not carried (they never reach the WAL)",
            r.kind.as_str(),
            r.name
        ));
    }
    for (s, t) in pair(&source.relations, &target.relations, |r| r.name.clone()) {
        match (s, t) {
            (Some(s), None) => {
                let object = format!("{} {}", s.kind.as_str(), s.name);
                let fix = create_relation(s);
                if s.unlogged {
                    p.warnings.push(format!(
                        "{object} is unlogged and missing on the target (its data is not carried by design); to create it: {fix}"
                    ));
                } else {
                    push(p, ObjectKind::Relation, object, Side::MissingOnTarget, fix);
                }
            }
            (None, Some(t)) => push(
                p,
                ObjectKind::Relation,
                format!("{} {}", t.kind.as_str(), t.name),
                Side::OnlyOnTarget,
                run(Sql::new(t.kind.drop_statement()).name(&t.name)),
            ),
            (Some(s), Some(t)) => relation_pair(s, t, same_major, p),
            (None, None) => {}
        }
    }
}

fn pg_dump_fix(name: &QualifiedName) -> String {
    format!(
        "create it on the target as on the source (pg_dump --schema-only --table='{name}' of the source, restored on the target)"
    )
}

fn create_relation(s: &Relation) -> Fix {
    match (s.kind, &s.definition, &s.partition_of, &s.bound) {
        (RelationKind::View, Some(def), _, _) => {
            run(Sql::new("CREATE VIEW ").name(&s.name).push(" AS ").server_sql(&body(def)))
        }
        (RelationKind::MaterializedView, Some(def), _, _) => run(Sql::new("CREATE MATERIALIZED VIEW ")
            .name(&s.name)
            .push(" AS ")
            .server_sql(&body(def))
            .push(" WITH NO DATA")),
        (RelationKind::Table | RelationKind::PartitionedTable, _, Some(parent), Some(bound))
            if s.partition_key.is_none() =>
        {
            run(Sql::new("CREATE TABLE ").name(&s.name).push(" PARTITION OF ").name(parent).push(" ").server_sql(bound))
        }
        _ => pg_dump_fix(&s.name).into(),
    }
}

fn relation_pair(s: &Relation, t: &Relation, same_major: bool, p: &mut Parity) {
    let object = format!("{} {}", s.kind.as_str(), s.name);
    if s.kind != t.kind {
        let side = differs(s.kind.as_str(), t.kind.as_str());
        let fix = format!("drop it from the target and {}", pg_dump_fix(&s.name));
        push(p, ObjectKind::Relation, object, side, fix);
        return;
    }
    if s.unlogged != t.unlogged {
        let word = |unlogged: bool| if unlogged { "unlogged" } else { "logged" };
        let fix = Sql::new("ALTER TABLE ").name(&s.name).push(if s.unlogged { " SET UNLOGGED" } else { " SET LOGGED" });
        push(p, ObjectKind::Relation, object.clone(), differs(word(s.unlogged), word(t.unlogged)), run(fix));
    }
    let key = |r: &Relation| r.partition_key.as_ref().map(|k| normalize(k.as_str()));
    if key(s) != key(t) {
        let show = |k: Option<String>| k.map_or_else(|| "not partitioned".to_string(), |k| format!("PARTITION BY {k}"));
        let fix = format!("drop it from the target and {}", pg_dump_fix(&s.name));
        push(p, ObjectKind::Relation, object.clone(), differs(show(key(s)), show(key(t))), fix);
    }
    let bound = |r: &Relation| match (&r.partition_of, &r.bound) {
        (Some(parent), Some(bound)) => Some(format!("a partition of {parent} {}", normalize(bound.as_str()))),
        _ => None,
    };
    if bound(s) != bound(t) {
        let mut fix = Sql::default();
        if let Some(parent) = &t.partition_of {
            fix = fix.push("ALTER TABLE ").name(parent).push(" DETACH PARTITION ").name(&t.name).push("; ");
        }
        if let (Some(parent), Some(b)) = (&s.partition_of, &s.bound) {
            fix =
                fix.push("ALTER TABLE ").name(parent).push(" ATTACH PARTITION ").name(&s.name).push(" ").server_sql(b);
        }
        let show = |b: Option<String>| b.unwrap_or_else(|| "not a partition".to_string());
        push(p, ObjectKind::Relation, object.clone(), differs(show(bound(s)), show(bound(t))), run(fix));
    }
    inheritance(s, t, &object, p);
    let def = |r: &Relation| {
        r.definition.as_ref().map(|d| match same_major {
            true => normalize(d.as_str()),
            false => unqualified(&normalize(d.as_str())),
        })
    };
    if s.kind.is_view() && def(s) != def(t) {
        let fix = match (s.kind, &s.definition) {
            (RelationKind::View, Some(d)) => {
                run(Sql::new("CREATE OR REPLACE VIEW ").name(&s.name).push(" AS ").server_sql(&body(d)))
            }
            (_, Some(d)) => run(Sql::new("DROP MATERIALIZED VIEW ")
                .name(&s.name)
                .push("; CREATE MATERIALIZED VIEW ")
                .name(&s.name)
                .push(" AS ")
                .server_sql(&body(d))
                .push(" WITH NO DATA")),
            _ => pg_dump_fix(&s.name).into(),
        };
        let show = |d: Option<String>| d.unwrap_or_default();
        push(p, ObjectKind::Relation, format!("the query of {object}"), differs(show(def(s)), show(def(t))), fix);
    }
    relation_options::compare(s, t, p);
}

/// The parents a table inherits from: a query on a parent reads the rows of
/// the children it has on that side. Fix: `NO INHERIT` the target's extra
/// parents, `INHERIT` the missing ones (the columns must match, as on the source).
fn inheritance(s: &Relation, t: &Relation, object: &str, p: &mut Parity) {
    let parents = |r: &Relation| {
        let mut parents = r.inherits.clone();
        parents.sort();
        parents
    };
    let (sp, tp) = (parents(s), parents(t));
    if sp == tp {
        return;
    }
    let mut fix = Sql::default();
    for (i, (parent, keyword)) in tp
        .iter()
        .filter(|q| !sp.contains(q))
        .map(|q| (q, " NO INHERIT "))
        .chain(sp.iter().filter(|q| !tp.contains(q)).map(|q| (q, " INHERIT ")))
        .enumerate()
    {
        fix = if i == 0 { fix } else { fix.push("; ") }.push("ALTER TABLE ").name(&s.name).push(keyword).name(parent);
    }
    let show = |parents: &[QualifiedName]| match parents {
        [] => "inherits from no table".to_string(),
        _ => format!("inherits from {}", parents.iter().map(|q| q.to_string()).collect::<Vec<_>>().join(", ")),
    };
    push(p, ObjectKind::Relation, format!("the parents of {object}"), differs(show(&sp), show(&tp)), run(fix));
}

/// The relations on both sides, by name: their parts are compared only there
/// (a relation missing on one side is one difference, not one per column).
fn on_both<'a>(source: &'a Catalog, target: &Catalog) -> BTreeMap<&'a QualifiedName, RelationKind> {
    let theirs: std::collections::BTreeSet<&QualifiedName> = target.relations.iter().map(|r| &r.name).collect();
    source.relations.iter().filter(|r| theirs.contains(&r.name)).map(|r| (&r.name, r.kind)).collect()
}

fn columns(source: &Catalog, target: &Catalog, p: &mut Parity) {
    let both = on_both(source, target);
    // A view's columns follow from its query, which is compared.
    let compared = |c: &&Column| both.get(&c.relation).is_some_and(|k| !k.is_view());
    let s_cols: Vec<Column> = source.columns.iter().filter(compared).cloned().collect();
    let t_cols: Vec<Column> = target.columns.iter().filter(compared).cloned().collect();
    for (s, t) in pair(&s_cols, &t_cols, |c| (c.relation.clone(), c.name.clone())) {
        let c = s.or(t).expect("paired");
        let object = format!("column {} of {}", c.name, c.relation);
        let alter = || Sql::new("ALTER TABLE ").name(&c.relation).push(" ALTER COLUMN ").ident(&c.name);
        match (s, t) {
            (Some(s), None) => {
                let mut fix = Sql::new("ALTER TABLE ")
                    .name(&s.relation)
                    .push(" ADD COLUMN ")
                    .ident(&s.name)
                    .push(" ")
                    .server_sql(&s.type_name);
                if let Some(d) = &s.default {
                    fix = fix.push(" DEFAULT ").server_sql(d);
                }
                if s.not_null {
                    fix = fix.push(" NOT NULL");
                }
                let fix = run(fix).note(&column_order::added_last(s, &s_cols, &t_cols));
                push(p, ObjectKind::Column, object, Side::MissingOnTarget, fix);
            }
            (None, Some(t)) => {
                let fix = Sql::new("ALTER TABLE ").name(&t.relation).push(" DROP COLUMN ").ident(&t.name);
                push(p, ObjectKind::Column, object, Side::OnlyOnTarget, run(fix));
            }
            (Some(s), Some(t)) => {
                if normalize(s.type_name.as_str()) != normalize(t.type_name.as_str()) {
                    let fix = alter().push(" TYPE ").server_sql(&s.type_name);
                    let side =
                        differs(format!("type {}", s.type_name.as_str()), format!("type {}", t.type_name.as_str()));
                    push(p, ObjectKind::Column, object.clone(), side, run(fix));
                }
                if s.not_null != t.not_null {
                    let word = |n: bool| if n { "NOT NULL" } else { "nullable" };
                    let fix = alter().push(if s.not_null { " SET NOT NULL" } else { " DROP NOT NULL" });
                    push(p, ObjectKind::Column, object.clone(), differs(word(s.not_null), word(t.not_null)), run(fix));
                }
                let default = |c: &Column| c.default.as_ref().map(|d| normalize(d.as_str()));
                if default(s) != default(t) {
                    let fix = match &s.default {
                        Some(d) => alter().push(" SET DEFAULT ").server_sql(d),
                        None => alter().push(" DROP DEFAULT"),
                    };
                    let show =
                        |d: Option<String>| d.map_or_else(|| "no default".to_string(), |d| format!("DEFAULT {d}"));
                    push(p, ObjectKind::Column, object.clone(), differs(show(default(s)), show(default(t))), run(fix));
                }
                if s.identity != t.identity || s.generated != t.generated {
                    let show = |c: &Column| match (c.identity.as_str(), c.generated.as_str()) {
                        ("a", _) => "GENERATED ALWAYS AS IDENTITY".to_string(),
                        ("d", _) => "GENERATED BY DEFAULT AS IDENTITY".to_string(),
                        (_, "s") => "GENERATED ALWAYS AS (...) STORED".to_string(),
                        (_, "v") => "GENERATED ALWAYS AS (...) VIRTUAL".to_string(),
                        _ => "a plain column".to_string(),
                    };
                    let fix = format!(
                        "make the target's column as the source's (pg_dump --schema-only --table='{}' of the source shows it)",
                        c.relation
                    );
                    push(p, ObjectKind::Column, object, differs(show(s), show(t)), fix);
                }
            }
            (None, None) => {}
        }
    }
}

fn indexes(source: &Catalog, target: &Catalog, p: &mut Parity) {
    let both = on_both(source, target);
    let invalid: Vec<&Index> = source.indexes.iter().filter(|i| !i.valid).collect();
    for i in &invalid {
        p.warnings.push(format!(
            "index {} on {} is invalid on the source (a failed CREATE INDEX CONCURRENTLY?): pg_dump does not carry it, so it is not compared; REINDEX it on the source, then create it on the target",
            i.name, i.relation
        ));
    }
    let skipped = |i: &&Index| {
        both.contains_key(&i.relation) && !invalid.iter().any(|v| v.relation == i.relation && v.name == i.name)
    };
    let s_idx: Vec<Index> = source.indexes.iter().filter(skipped).cloned().collect();
    let t_idx: Vec<Index> = target.indexes.iter().filter(skipped).cloned().collect();
    for (s, t) in pair(&s_idx, &t_idx, |i| (i.relation.clone(), i.name.clone())) {
        let i = s.or(t).expect("paired");
        let object = format!("index {} on {}", i.name, i.relation);
        let qualified = QualifiedName::new(i.relation.schema.clone(), i.name.clone());
        match (s, t) {
            (Some(s), None) => push(
                p,
                ObjectKind::Index,
                object,
                Side::MissingOnTarget,
                run(Sql::new("").server_sql(&body(&s.definition))),
            ),
            (None, Some(_)) => {
                push(p, ObjectKind::Index, object, Side::OnlyOnTarget, run(Sql::new("DROP INDEX ").name(&qualified)))
            }
            (Some(s), Some(t)) => {
                let (sd, td) = (normalize(s.definition.as_str()), normalize(t.definition.as_str()));
                if sd != td {
                    let fix = Sql::new("DROP INDEX ").name(&qualified).push("; ").server_sql(&body(&s.definition));
                    push(p, ObjectKind::Index, object, differs(sd, td), run(fix));
                } else if !t.valid {
                    let fix = Sql::new("REINDEX INDEX ").name(&qualified);
                    push(p, ObjectKind::Index, object, differs("valid", "invalid"), run(fix));
                }
            }
            (None, None) => {}
        }
    }
}

/// A constraint's definition without its validity, and whether it is validated.
fn constraint_body(c: &Constraint) -> (String, bool) {
    let def = normalize(c.definition.as_str());
    match def.strip_suffix(" NOT VALID") {
        Some(rest) => (rest.to_string(), false),
        None => (def, true),
    }
}

fn constraints(source: &Catalog, target: &Catalog, p: &mut Parity) {
    let both = on_both(source, target);
    let compared = |c: &&Constraint| c.on_domain || both.contains_key(&c.on);
    let s_con: Vec<Constraint> = source.constraints.iter().filter(compared).cloned().collect();
    let t_con: Vec<Constraint> = target.constraints.iter().filter(compared).cloned().collect();
    for (s, t) in pair(&s_con, &t_con, |c| (c.on_domain, c.on.clone(), c.name.clone())) {
        let c = s.or(t).expect("paired");
        let (word, alter) = match c.on_domain {
            true => ("domain", "ALTER DOMAIN "),
            false => ("table", "ALTER TABLE "),
        };
        let object = format!("constraint {} on {word} {}", c.name, c.on);
        let drop = || Sql::new(alter).name(&c.on).push(" DROP CONSTRAINT ").ident(&c.name);
        let add = |s: &Constraint| {
            Sql::new(alter)
                .name(&s.on)
                .push(" ADD CONSTRAINT ")
                .ident(&s.name)
                .push(" ")
                .server_sql(&body(&s.definition))
        };
        match (s, t) {
            (Some(s), None) => push(p, ObjectKind::Constraint, object, Side::MissingOnTarget, run(add(s))),
            (None, Some(_)) => push(p, ObjectKind::Constraint, object, Side::OnlyOnTarget, run(drop())),
            (Some(s), Some(t)) => {
                let ((sd, s_valid), (td, t_valid)) = (constraint_body(s), constraint_body(t));
                if sd != td {
                    let fix = drop().push("; ").append(add(s));
                    push(p, ObjectKind::Constraint, object, differs(sd, td), run(fix));
                } else if s_valid && !t_valid {
                    p.warnings.push(format!(
                        "{object} is not validated on the target yet: {}",
                        Sql::new(alter).name(&c.on).push(" VALIDATE CONSTRAINT ").ident(&c.name)
                    ));
                }
            }
            (None, None) => {}
        }
    }
}

fn sequences(source: &Catalog, target: &Catalog, p: &mut Parity) {
    let shape = |s: &Sequence| {
        format!(
            "AS {} INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {}{}",
            normalize(s.type_name.as_str()),
            s.increment,
            s.min,
            s.max,
            s.start,
            if s.cycle { " CYCLE" } else { " NO CYCLE" }
        )
    };
    let options = |s: &Sequence| {
        Sql::new(" AS ")
            .server_sql(&s.type_name)
            .push(" INCREMENT BY ")
            .int(s.increment)
            .push(" MINVALUE ")
            .int(s.min)
            .push(" MAXVALUE ")
            .int(s.max)
            .push(" START WITH ")
            .int(s.start)
            .push(if s.cycle { " CYCLE" } else { " NO CYCLE" })
    };
    for (s, t) in pair(&source.sequences, &target.sequences, |s| s.name.clone()) {
        let q = s.or(t).expect("paired");
        let object = format!("sequence {}", q.name);
        match (s, t) {
            (Some(s), None) => {
                let fix = Sql::new("CREATE SEQUENCE ").name(&s.name).append(options(s));
                let fix = run(fix).note(" (the cutover sets its value from the source)");
                push(p, ObjectKind::Sequence, object, Side::MissingOnTarget, fix);
            }
            (None, Some(t)) => {
                push(p, ObjectKind::Sequence, object, Side::OnlyOnTarget, run(Sql::new("DROP SEQUENCE ").name(&t.name)))
            }
            (Some(s), Some(t)) => {
                if shape(s) != shape(t) {
                    let fix = Sql::new("ALTER SEQUENCE ").name(&s.name).append(options(s));
                    push(p, ObjectKind::Sequence, object.clone(), differs(shape(s), shape(t)), run(fix));
                }
                if s.owned_by != t.owned_by {
                    let show = |o: &Option<(QualifiedName, Ident)>| {
                        o.as_ref()
                            .map_or_else(|| "owned by no column".to_string(), |(t, c)| format!("owned by {t}.{c}"))
                    };
                    let fix = Sql::new("ALTER SEQUENCE ").name(&s.name).push(" OWNED BY ");
                    let fix = match &s.owned_by {
                        Some((table, column)) => fix.name(table).push(".").ident(column),
                        None => fix.push("NONE"),
                    };
                    push(p, ObjectKind::Sequence, object, differs(show(&s.owned_by), show(&t.owned_by)), run(fix));
                }
            }
            _ => {}
        }
    }
}

fn triggers(source: &Catalog, target: &Catalog, p: &mut Parity) {
    let both = on_both(source, target);
    let compared = |t: &&Trigger| both.contains_key(&t.relation);
    let s_trg: Vec<Trigger> = source.triggers.iter().filter(compared).cloned().collect();
    let t_trg: Vec<Trigger> = target.triggers.iter().filter(compared).cloned().collect();
    for (s, t) in pair(&s_trg, &t_trg, |t| (t.relation.clone(), t.name.clone())) {
        let g = s.or(t).expect("paired");
        let object = format!("trigger {} on {}", g.name, g.relation);
        let drop = || Sql::new("DROP TRIGGER ").ident(&g.name).push(" ON ").name(&g.relation);
        match (s, t) {
            (Some(s), None) => push(
                p,
                ObjectKind::Trigger,
                object,
                Side::MissingOnTarget,
                run(Sql::default().server_sql(&body(&s.definition))),
            ),
            (None, Some(_)) => push(p, ObjectKind::Trigger, object, Side::OnlyOnTarget, run(drop())),
            (Some(s), Some(t)) => {
                let (sd, td) = (normalize(s.definition.as_str()), normalize(t.definition.as_str()));
                if sd != td {
                    let fix = drop().push("; ").server_sql(&body(&s.definition));
                    push(p, ObjectKind::Trigger, object, differs(sd, td), run(fix));
                } else if s.enabled != t.enabled {
                    // After the switch a trigger fires as the target has it set.
                    let (word, keyword) = trigger_state(&s.enabled);
                    let fix = Sql::new("ALTER TABLE ").name(&g.relation).push(keyword).push(" TRIGGER ").ident(&g.name);
                    push(p, ObjectKind::Trigger, object, differs(word, trigger_state(&t.enabled).0), run(fix));
                }
            }
            (None, None) => {}
        }
    }
}

/// A trigger's or an event trigger's state (`tgenabled`, `evtenabled`), and
/// what sets it after `ALTER TABLE ...`/`ALTER EVENT TRIGGER ...`.
fn trigger_state(code: &str) -> (&'static str, &'static str) {
    match code {
        "D" => ("disabled", " DISABLE"),
        "R" => ("enabled for replicas only", " ENABLE REPLICA"),
        "A" => ("always enabled", " ENABLE ALWAYS"),
        _ => ("enabled", " ENABLE"),
    }
}

fn extensions(source: &Catalog, target: &Catalog, same_major: bool, p: &mut Parity) {
    for (s, t) in pair(&source.extensions, &target.extensions, |e| e.name.clone()) {
        let e = s.or(t).expect("paired");
        let object = format!("extension {}", e.name);
        match (s, t) {
            (Some(s), None) => {
                let fix = Sql::new("CREATE EXTENSION ")
                    .ident(&s.name)
                    .push(" WITH SCHEMA ")
                    .ident(&s.schema)
                    .push(" VERSION ")
                    .literal(&s.version);
                push(p, ObjectKind::Extension, object, Side::MissingOnTarget, run(fix));
            }
            (None, Some(t)) => push(
                p,
                ObjectKind::Extension,
                object,
                Side::OnlyOnTarget,
                run(Sql::new("DROP EXTENSION ").ident(&t.name)),
            ),
            (Some(s), Some(t)) if s.version != t.version => {
                // Restored by CREATE EXTENSION on a newer server: its default version.
                if !same_major && t.default_version.as_deref() == Some(t.version.as_str()) {
                    p.warnings.push(format!(
                        "{object} is at version {} on the source and {} on the target (the target server's default): check that the application works with it",
                        s.version, t.version
                    ));
                    continue;
                }
                let fix = run(Sql::new("ALTER EXTENSION ").ident(&s.name).push(" UPDATE TO ").literal(&s.version)).note(
                    " (if the target's is newer: DROP EXTENSION, then CREATE EXTENSION ... VERSION, when nothing depends on it)",
                );
                let side = differs(format!("version {}", s.version), format!("version {}", t.version));
                push(p, ObjectKind::Extension, object, side, fix);
            }
            _ => {}
        }
    }
}

/// The `COMMENT ON` keyword of an object type `pg_identify_object` names.
fn comment_keyword(object_type: &str) -> Option<&'static str> {
    Some(match object_type {
        "table" => "COMMENT ON TABLE ",
        "view" => "COMMENT ON VIEW ",
        "materialized view" => "COMMENT ON MATERIALIZED VIEW ",
        "foreign table" => "COMMENT ON FOREIGN TABLE ",
        "index" => "COMMENT ON INDEX ",
        "sequence" => "COMMENT ON SEQUENCE ",
        "schema" => "COMMENT ON SCHEMA ",
        "trigger" => "COMMENT ON TRIGGER ",
        "table constraint" => "COMMENT ON CONSTRAINT ",
        t if t.ends_with(" column") => "COMMENT ON COLUMN ",
        _ => return None,
    })
}

fn comments(source: &Catalog, target: &Catalog, p: &mut Parity) {
    for (s, t) in pair(&source.comments, &target.comments, |c| (c.object_type.clone(), c.identity.as_str().to_string()))
    {
        let c = s.or(t).expect("paired");
        let object = format!("the comment on {} {}", c.object_type, c.identity.as_str());
        let fix = |text: Option<&str>| match comment_keyword(&c.object_type) {
            Some(keyword) => {
                let sql = Sql::new(keyword).server_sql(&c.identity).push(" IS ");
                run(match text {
                    Some(text) => sql.literal(text),
                    None => sql.push("NULL"),
                })
            }
            None => Fix::from("set the target's comment as the source's (COMMENT ON ...)".to_string()),
        };
        match (s, t) {
            (Some(s), None) => push(p, ObjectKind::Comment, object, Side::MissingOnTarget, fix(Some(&s.text))),
            (None, Some(_)) => push(p, ObjectKind::Comment, object, Side::OnlyOnTarget, fix(None)),
            (Some(s), Some(t)) if s.text != t.text => {
                let side = differs(format!("{:?}", s.text), format!("{:?}", t.text));
                push(p, ObjectKind::Comment, object, side, fix(Some(&s.text)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(schema: &str, name: &str) -> QualifiedName {
        QualifiedName::from_catalog(schema, name)
    }

    fn sql(text: &str) -> ServerSql {
        ServerSql::from_catalog(text)
    }

    fn table(name: &str) -> Relation {
        Relation {
            name: q("public", name),
            kind: RelationKind::Table,
            unlogged: false,
            partition_of: None,
            inherits: vec![],
            bound: None,
            partition_key: None,
            definition: None,
            options: vec![],
            foreign_options: vec![],
        }
    }

    fn column(table: &str, name: &str, type_name: &str) -> Column {
        Column {
            relation: q("public", table),
            name: Ident::from_catalog(name),
            position: 1,
            type_name: sql(type_name),
            not_null: false,
            default: None,
            identity: String::new(),
            generated: String::new(),
        }
    }

    /// A small but complete catalog, as a faithful migration leaves it on both sides.
    fn shop(version: i32) -> Catalog {
        let mut parent = table("events");
        parent.kind = RelationKind::PartitionedTable;
        parent.partition_key = Some(sql("RANGE (id)"));
        let mut part = table("events_1");
        part.partition_of = Some(q("public", "events"));
        part.bound = Some(sql("FOR VALUES FROM (1) TO (100)"));
        let mut view = table("big_orders");
        view.kind = RelationKind::View;
        view.definition = Some(sql(" SELECT id\n   FROM public.orders\n  WHERE total > 100;"));
        let mut id = column("orders", "id", "bigint");
        let mut total = column("orders", "total", "numeric(10,2)");
        total.position = 2;
        id.not_null = true;
        id.default = Some(sql("nextval('public.orders_id_seq'::regclass)"));
        Catalog {
            server_version_num: version,
            relations: vec![table("orders"), parent, part, view],
            columns: vec![id, total, column("events", "id", "integer")],
            indexes: vec![Index {
                relation: q("public", "orders"),
                name: Ident::from_catalog("orders_total"),
                definition: sql("CREATE INDEX orders_total ON public.orders USING btree (total)"),
                valid: true,
            }],
            constraints: vec![Constraint {
                on: q("public", "orders"),
                on_domain: false,
                name: Ident::from_catalog("positive"),
                definition: sql("CHECK ((total > (0)::numeric))"),
            }],
            sequences: vec![Sequence {
                name: q("public", "orders_id_seq"),
                type_name: sql("bigint"),
                increment: 1,
                min: 1,
                max: i64::MAX,
                start: 1,
                cycle: false,
                owned_by: Some((q("public", "orders"), Ident::from_catalog("id"))),
            }],
            triggers: vec![Trigger {
                relation: q("public", "orders"),
                name: Ident::from_catalog("stamp"),
                definition: sql(
                    "CREATE TRIGGER stamp BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.stamp()",
                ),
                enabled: "O".into(),
            }],
            extensions: vec![Extension {
                name: Ident::from_catalog("hstore"),
                version: "1.8".into(),
                schema: Ident::from_catalog("public"),
                default_version: Some("1.8".into()),
            }],
            comments: vec![Comment {
                object_type: "table".into(),
                identity: sql("public.orders"),
                text: "what was bought".into(),
            }],
            large_objects: 2,
            ..Catalog::default()
        }
    }

    #[test]
    fn a_faithful_target_has_no_difference_even_laid_out_otherwise() {
        assert_eq!(compare(&shop(150000), &shop(150000)), Parity::default());
        let mut target = shop(180000);
        target.relations[3].definition = Some(sql("SELECT id FROM public.orders WHERE total > 100"));
        target.indexes[0].definition = sql("CREATE INDEX orders_total  ON public.orders USING btree (total);");
        target.relations.reverse();
        assert_eq!(compare(&shop(150000), &target), Parity::default());
    }

    #[test]
    fn every_difference_is_named_with_its_side_and_fix() {
        let source = shop(150000);
        let mut target = shop(150000);
        target.indexes.clear();
        target.columns[1].type_name = sql("text");
        target.constraints.clear();
        target.triggers.clear();
        target.extensions.clear();
        target.comments.clear();
        target.relations.retain(|r| r.kind != RelationKind::View);
        target.sequences.clear();
        target.relations.push(table("stray"));
        let parity = compare(&source, &target);
        let kinds: Vec<ObjectKind> = parity.differences.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [
                ObjectKind::Relation,
                ObjectKind::Relation,
                ObjectKind::Column,
                ObjectKind::Index,
                ObjectKind::Constraint,
                ObjectKind::Sequence,
                ObjectKind::Trigger,
                ObjectKind::Extension,
                ObjectKind::Comment
            ],
            "{parity:#?}"
        );
        let reasons = parity.reasons();
        let find = |needle: &str| {
            reasons.iter().find(|r| r.contains(needle)).unwrap_or_else(|| panic!("{needle}: {reasons:#?}"))
        };
        assert!(find("view \"public\".\"big_orders\" is on the source but missing on the target")
            .ends_with("CREATE VIEW \"public\".\"big_orders\" AS SELECT id FROM public.orders WHERE total > 100"));
        assert!(find("table \"public\".\"stray\" is on the target but not on the source")
            .ends_with("DROP TABLE \"public\".\"stray\""));
        assert!(find("column \"total\" of \"public\".\"orders\" differs: on the source type numeric(10,2), on the target type text")
            .ends_with("ALTER TABLE \"public\".\"orders\" ALTER COLUMN \"total\" TYPE numeric(10,2)"));
        assert!(find("index \"orders_total\" on \"public\".\"orders\" is on the source but missing").ends_with(
            "pgferry follow --apply-ddl runs it there): CREATE INDEX orders_total ON public.orders USING btree (total)"
        ));
        assert!(find("constraint \"positive\" on table \"public\".\"orders\"")
            .ends_with("ALTER TABLE \"public\".\"orders\" ADD CONSTRAINT \"positive\" CHECK ((total > (0)::numeric))"));
        assert!(find("sequence \"public\".\"orders_id_seq\" is on the source but missing").contains(
            "CREATE SEQUENCE \"public\".\"orders_id_seq\" AS bigint INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 NO CYCLE (the cutover sets its value"
        ));
        assert!(find("trigger \"stamp\" on \"public\".\"orders\"").ends_with("EXECUTE FUNCTION public.stamp()"));
        assert!(find("extension \"hstore\" is on the source but missing")
            .ends_with("CREATE EXTENSION \"hstore\" WITH SCHEMA \"public\" VERSION '1.8'"));
        assert!(find("the comment on table public.orders is on the source but missing")
            .ends_with("COMMENT ON TABLE public.orders IS 'what was bought'"));
        assert!(reasons.iter().all(|r| r.starts_with("catalog parity: ")));
        let index = parity.differences.iter().find(|d| d.kind == ObjectKind::Index).unwrap();
        assert_eq!(index.ddl.as_deref(), Some("CREATE INDEX orders_total ON public.orders USING btree (total)"));
        let sequence = parity.differences.iter().find(|d| d.kind == ObjectKind::Sequence).unwrap();
        assert!(sequence.ddl.as_deref().is_some_and(|d| d.ends_with("NO CYCLE")), "the DDL alone, without the note");
    }

    #[test]
    fn columns_differ_by_nullability_default_and_identity() {
        let source = shop(150000);
        let mut target = shop(150000);
        target.columns[0].not_null = false;
        target.columns[0].default = None;
        target.columns[0].identity = "d".into();
        target.columns.push(column("orders", "extra", "text"));
        let reasons = compare(&source, &target).reasons();
        assert_eq!(reasons.len(), 4, "{reasons:#?}");
        assert!(
            reasons[0].contains("\"extra\"")
                && reasons[0].ends_with("ALTER TABLE \"public\".\"orders\" DROP COLUMN \"extra\"")
        );
        assert!(reasons[1].ends_with("ALTER COLUMN \"id\" SET NOT NULL"), "{reasons:#?}");
        assert!(reasons[2].ends_with("ALTER COLUMN \"id\" SET DEFAULT nextval('public.orders_id_seq'::regclass)"));
        assert!(reasons[3].contains("on the source a plain column, on the target GENERATED BY DEFAULT AS IDENTITY"));
    }

    #[test]
    fn a_missing_relation_is_one_difference_not_one_per_part() {
        let source = shop(150000);
        let mut target = shop(150000);
        target.relations.retain(|r| r.name.name.as_str() != "orders");
        let parity = compare(&source, &target);
        assert_eq!(parity.differences.len(), 1, "the table, not its columns, indexes, ...: {parity:#?}");
        assert!(parity.differences[0].fix.contains("pg_dump --schema-only --table='\"public\".\"orders\"'"));
    }

    #[test]
    fn partitions_are_compared_with_their_bounds() {
        let source = shop(150000);
        let mut target = shop(150000);
        target.relations[2].bound = Some(sql("FOR VALUES FROM (1) TO (50)"));
        let reasons = compare(&source, &target).reasons();
        assert_eq!(reasons.len(), 1, "{reasons:#?}");
        assert!(reasons[0].contains("on the source a partition of \"public\".\"events\" FOR VALUES FROM (1) TO (100), on the target a partition of \"public\".\"events\" FOR VALUES FROM (1) TO (50)"));
        assert!(reasons[0].ends_with("ALTER TABLE \"public\".\"events\" DETACH PARTITION \"public\".\"events_1\"; ALTER TABLE \"public\".\"events\" ATTACH PARTITION \"public\".\"events_1\" FOR VALUES FROM (1) TO (100)"));
        target.relations.remove(2);
        let reasons = compare(&source, &target).reasons();
        assert!(reasons[0].ends_with(
            "CREATE TABLE \"public\".\"events_1\" PARTITION OF \"public\".\"events\" FOR VALUES FROM (1) TO (100)"
        ));
    }

    #[test]
    fn what_is_not_carried_by_design_is_a_warning() {
        let mut source = shop(150000);
        let mut target = shop(150000);
        let mut log = table("log");
        log.unlogged = true;
        source.relations.push(log);
        target.large_objects = 0;
        source.indexes.push(Index {
            relation: q("public", "orders"),
            name: Ident::from_catalog("broken"),
            definition: sql("CREATE INDEX broken ON public.orders USING btree (id)"),
            valid: false,
        });
        target.triggers[0].enabled = "D".into();
        source.constraints[0].definition = sql("CHECK ((total > (0)::numeric))");
        target.constraints[0].definition = sql("CHECK ((total > (0)::numeric)) NOT VALID");
        let parity = compare(&source, &target);
        let ddl: Vec<Option<&str>> = parity.differences.iter().map(|d| d.ddl.as_deref()).collect();
        assert_eq!(
            ddl,
            [Some("ALTER TABLE \"public\".\"orders\" ENABLE TRIGGER \"stamp\"")],
            "a trigger's state decides whether it fires after the switch: {parity:#?}"
        );
        let warnings = parity.warnings.join("\n");
        assert_eq!(parity.warnings.len(), 5, "{warnings}");
        for needle in [
            "table \"public\".\"log\" is unlogged: its rows were copied",
            "table \"public\".\"log\" is unlogged and missing on the target",
            "large objects: 2 on the source, 0 on the target",
            "index \"broken\" on \"public\".\"orders\" is invalid on the source",
            "ALTER TABLE \"public\".\"orders\" VALIDATE CONSTRAINT \"positive\"",
        ] {
            assert!(warnings.contains(needle), "{needle}\n{warnings}");
        }
    }

    #[test]
    fn an_extension_at_the_newer_servers_default_version_is_a_warning() {
        let source = shop(150000);
        let mut target = shop(180000);
        target.extensions[0].version = "1.9".into();
        target.extensions[0].default_version = Some("1.9".into());
        let parity = compare(&source, &target);
        assert_eq!(parity.differences, [], "{parity:#?}");
        assert!(parity.warnings[0].contains("at version 1.8 on the source and 1.9 on the target"));
        // The same major version, or not the target's default: a difference.
        target.server_version_num = 150004;
        let reasons = compare(&source, &target).reasons();
        assert!(reasons[0].contains("ALTER EXTENSION \"hstore\" UPDATE TO '1.8'"), "{reasons:#?}");
        target.server_version_num = 180000;
        target.extensions[0].version = "1.7".into();
        assert_eq!(compare(&source, &target).differences.len(), 1);
    }

    #[test]
    fn comments_and_hostile_names_are_quoted() {
        let mut source = shop(150000);
        let target = shop(150000);
        source.comments.push(Comment {
            object_type: "table column".into(),
            identity: sql("public.orders.\"it's\""),
            text: "it's \\ tricky".into(),
        });
        let reasons = compare(&source, &target).reasons();
        assert!(
            reasons[0].ends_with("COMMENT ON COLUMN public.orders.\"it's\" IS  E'it''s \\\\ tricky'"),
            "{reasons:#?}"
        );
    }

    #[test]
    fn views_compare_across_major_versions_without_their_qualifiers() {
        let pg15 = "SELECT orders.id, orders.total FROM public.orders WHERE (orders.total > (100)::numeric)";
        let pg18 = "SELECT id, total FROM public.orders WHERE (total > (100)::numeric)";
        assert_eq!(unqualified(pg15), unqualified(pg18));
        assert_eq!(
            unqualified("SELECT \"My T\".\"a.b\", 'x.y' AS s, 1.5 FROM s.\"My T\""),
            "SELECT \"a.b\", 'x.y' AS s, 1.5 FROM \"My T\""
        );
        assert_ne!(unqualified(pg15), unqualified("SELECT id FROM public.orders WHERE (total > (100)::numeric)"));
        let mut source = shop(150000);
        source.relations[3].definition = Some(sql(pg15));
        let mut target = shop(180000);
        target.relations[3].definition = Some(sql(pg18));
        assert_eq!(compare(&source, &target).differences, []);
        target.server_version_num = 150000;
        assert_eq!(compare(&source, &target).differences.len(), 1, "the same major version: compared as they are");
    }

    #[test]
    fn normalizing_keeps_meaning() {
        assert_eq!(normalize(" SELECT a\n   FROM t;"), "SELECT a FROM t");
        assert_ne!(normalize("CHECK (a > 1)"), normalize("CHECK (a > 2)"));
    }

    #[test]
    fn the_result_serializes_with_sides() {
        let mut target = shop(150000);
        target.indexes.clear();
        let json = serde_json::to_value(compare(&shop(150000), &target)).unwrap();
        assert_eq!(json["differences"][0]["kind"], "index");
        assert_eq!(json["differences"][0]["side"], "missing_on_target");
    }
}
