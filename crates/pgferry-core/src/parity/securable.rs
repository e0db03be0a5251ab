//! What privileges are granted on, and how each is named in `GRANT`, `ALTER ...
//! OWNER` and the gate's messages ([GRANT](https://www.postgresql.org/docs/current/sql-grant.html),
//! [ALTER DEFAULT PRIVILEGES](https://www.postgresql.org/docs/current/sql-alterdefaultprivileges.html)).

use std::fmt;

use super::RelationKind;
use crate::sql::{Ident, QualifiedName, ServerSql, Sql};

/// What privileges are granted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Securable {
    /// A table, view, materialized view or foreign table (`GRANT ... ON TABLE`).
    Relation {
        name: QualifiedName,
        kind: RelationKind,
    },
    Sequence(QualifiedName),
    Schema(Ident),
    /// The database itself, by this side's name (one object whatever its name).
    Database(Ident),
    Routine {
        name: QualifiedName,
        arguments: ServerSql,
        procedure: bool,
    },
    /// An aggregate (`GRANT EXECUTE ON FUNCTION`, `ALTER AGGREGATE ... OWNER`).
    Aggregate {
        name: QualifiedName,
        arguments: ServerSql,
    },
    /// An enum, composite, range type or a domain (`GRANT USAGE ON TYPE/DOMAIN`).
    Type {
        name: QualifiedName,
        domain: bool,
    },
    /// One column's own privileges (`GRANT SELECT (c) ON TABLE t`), apart from the table's.
    Column {
        relation: QualifiedName,
        column: Ident,
    },
    /// What the objects a role creates get (`ALTER DEFAULT PRIVILEGES`), in one
    /// schema or, without one, everywhere.
    Defaults {
        role: Ident,
        schema: Option<Ident>,
        objects: DefaultedObjects,
    },
}

/// The kinds of object default privileges apply to (`pg_default_acl.defaclobjtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultedObjects {
    Tables,
    Sequences,
    Functions,
    Types,
    Schemas,
}

impl DefaultedObjects {
    pub fn from_code(code: &str) -> Option<DefaultedObjects> {
        Some(match code {
            "r" => DefaultedObjects::Tables,
            "S" => DefaultedObjects::Sequences,
            "f" => DefaultedObjects::Functions,
            "T" => DefaultedObjects::Types,
            "n" => DefaultedObjects::Schemas,
            _ => return None,
        })
    }

    fn keyword(self) -> &'static str {
        match self {
            DefaultedObjects::Tables => "TABLES",
            DefaultedObjects::Sequences => "SEQUENCES",
            DefaultedObjects::Functions => "FUNCTIONS",
            DefaultedObjects::Types => "TYPES",
            DefaultedObjects::Schemas => "SCHEMAS",
        }
    }

    /// What such an object gets without any default privileges (`acldefault`):
    /// its owner's privileges, and PUBLIC's on functions and types.
    pub(super) fn built_in(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            DefaultedObjects::Tables => {
                (&["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"], &[])
            }
            DefaultedObjects::Sequences => (&["SELECT", "UPDATE", "USAGE"], &[]),
            DefaultedObjects::Functions => (&["EXECUTE"], &["EXECUTE"]),
            DefaultedObjects::Types => (&["USAGE"], &["USAGE"]),
            DefaultedObjects::Schemas => (&["USAGE", "CREATE"], &[]),
        }
    }
}

impl Securable {
    /// `TABLE "s"."t"`, `SCHEMA "s"`, `FUNCTION "s"."f"(integer)`: what follows `ON`.
    pub(super) fn sql(&self) -> Sql {
        match self {
            Securable::Relation { name, .. } => Sql::new("TABLE ").name(name),
            Securable::Sequence(name) => Sql::new("SEQUENCE ").name(name),
            Securable::Schema(name) => Sql::new("SCHEMA ").ident(name),
            Securable::Database(name) => Sql::new("DATABASE ").ident(name),
            Securable::Routine { name, arguments, procedure } => {
                Sql::new(if *procedure { "PROCEDURE " } else { "FUNCTION " })
                    .name(name)
                    .push("(")
                    .server_sql(arguments)
                    .push(")")
            }
            Securable::Aggregate { name, arguments } => {
                Sql::new("FUNCTION ").name(name).push("(").server_sql(arguments).push(")")
            }
            Securable::Type { name, domain } => Sql::new(if *domain { "DOMAIN " } else { "TYPE " }).name(name),
            Securable::Column { relation, .. } => Sql::new("TABLE ").name(relation),
            Securable::Defaults { objects, .. } => Sql::new(objects.keyword()),
        }
    }

    /// What comes before `GRANT`/`REVOKE`: `ALTER DEFAULT PRIVILEGES ...` for defaults.
    pub(super) fn prefix(&self) -> Sql {
        match self {
            Securable::Defaults { role, schema, .. } => {
                let sql = Sql::new("ALTER DEFAULT PRIVILEGES FOR ROLE ").ident(role);
                match schema {
                    Some(schema) => sql.push(" IN SCHEMA ").ident(schema).push(" "),
                    None => sql.push(" "),
                }
            }
            _ => Sql::default(),
        }
    }

    /// The column a privilege is granted on, written after each privilege.
    pub(super) fn column(&self) -> Option<&Ident> {
        match self {
            Securable::Column { column, .. } => Some(column),
            _ => None,
        }
    }

    /// What pairs the two sides' objects: the database is one whatever its names.
    pub(super) fn key(&self) -> String {
        match self {
            Securable::Database(_) => String::new(),
            Securable::Column { relation, column } => format!("COLUMN {relation} {column}"),
            Securable::Defaults { role, schema, objects } => {
                let schema = schema.as_ref().map(|s| s.quoted()).unwrap_or_default();
                format!("DEFAULTS {role} {schema} {}", objects.keyword())
            }
            _ => self.sql().into_string(),
        }
    }

    /// `ALTER TABLE "s"."t" OWNER TO `, where an object's owner can be set so.
    pub(super) fn alter_owner(&self) -> Option<Sql> {
        let head = match self {
            Securable::Relation { name, kind } => Sql::new(kind.alter_keyword()).name(name),
            Securable::Sequence(name) => Sql::new("ALTER SEQUENCE ").name(name),
            Securable::Schema(name) => Sql::new("ALTER SCHEMA ").ident(name),
            Securable::Routine { .. } | Securable::Type { .. } => Sql::new("ALTER ").append(self.sql()),
            Securable::Aggregate { name, arguments } => {
                Sql::new("ALTER AGGREGATE ").name(name).push("(").server_sql(arguments).push(")")
            }
            Securable::Database(_) | Securable::Column { .. } | Securable::Defaults { .. } => return None,
        };
        Some(head.push(" OWNER TO "))
    }
}

impl fmt::Display for Securable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Securable::Relation { name, kind } => write!(f, "{} {name}", kind.as_str()),
            Securable::Sequence(name) => write!(f, "sequence {name}"),
            Securable::Schema(name) => write!(f, "schema {name}"),
            Securable::Database(name) => write!(f, "database {name}"),
            Securable::Routine { name, arguments, procedure } => {
                let word = if *procedure { "procedure" } else { "function" };
                write!(f, "{word} {name}({})", arguments.as_str())
            }
            Securable::Aggregate { name, arguments } => write!(f, "aggregate {name}({})", arguments.as_str()),
            Securable::Type { name, domain } => write!(f, "{} {name}", if *domain { "domain" } else { "type" }),
            Securable::Column { relation, column } => write!(f, "column {column} of {relation}"),
            Securable::Defaults { role, schema, objects } => {
                let objects = objects.keyword().to_lowercase();
                match schema {
                    Some(schema) => write!(f, "the {objects} {role} creates in schema {schema} (default privileges)"),
                    None => write!(f, "the {objects} {role} creates (default privileges)"),
                }
            }
        }
    }
}
