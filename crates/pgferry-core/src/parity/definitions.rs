//! The objects compared by the statement that creates them, as the server
//! renders it: rules (`pg_get_ruledef`), extended statistics
//! (`pg_get_statisticsobjdef`), aggregates and collations (their catalog rows
//! written as `CREATE AGGREGATE`/`CREATE COLLATION`), and schemas, which matter
//! even empty (a `search_path` names them, privileges are granted on them).
//! `pg_dump` carries each; a later change reaches the target only through DDL
//! capture. A schema only on the target is said, not refused: an empty schema
//! changes nothing the application reads, and the operator may have made it.
//! ([CREATE RULE](https://www.postgresql.org/docs/current/sql-createrule.html),
//! [CREATE STATISTICS](https://www.postgresql.org/docs/current/sql-createstatistics.html),
//! [CREATE AGGREGATE](https://www.postgresql.org/docs/current/sql-createaggregate.html),
//! [CREATE COLLATION](https://www.postgresql.org/docs/current/sql-createcollation.html))

use std::fmt;

use super::{differs, normalize, pair, push, run, unqualified, Fix, ObjectKind, Parity, Side};
use crate::sql::{Ident, QualifiedName, ServerSql, Sql};

/// Which object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    Rule { relation: QualifiedName, name: Ident },
    Statistics(QualifiedName),
    Aggregate { name: QualifiedName, arguments: ServerSql },
    Collation(QualifiedName),
    Schema(Ident),
}

/// One such object on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Definition {
    pub object: Named,
    /// The statement that creates it, where the server (or the reader) renders one.
    pub create: Option<ServerSql>,
}

impl Named {
    fn kind(&self) -> ObjectKind {
        match self {
            Named::Rule { .. } => ObjectKind::Rule,
            Named::Statistics(_) => ObjectKind::Statistics,
            Named::Aggregate { .. } => ObjectKind::Aggregate,
            Named::Collation(_) => ObjectKind::Collation,
            Named::Schema(_) => ObjectKind::Schema,
        }
    }

    fn key(&self) -> String {
        match self {
            Named::Rule { relation, name } => format!("rule {relation} {name}"),
            Named::Aggregate { name, arguments } => format!("aggregate {name}({})", arguments.as_str()),
            other => other.to_string(),
        }
    }

    fn drop(&self) -> Sql {
        match self {
            Named::Rule { relation, name } => Sql::new("DROP RULE ").ident(name).push(" ON ").name(relation),
            Named::Statistics(name) => Sql::new("DROP STATISTICS ").name(name),
            Named::Aggregate { name, arguments } => {
                Sql::new("DROP AGGREGATE ").name(name).push("(").server_sql(arguments).push(")")
            }
            Named::Collation(name) => Sql::new("DROP COLLATION ").name(name),
            Named::Schema(name) => Sql::new("DROP SCHEMA ").ident(name),
        }
    }
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Rule { relation, name } => write!(f, "rule {name} on {relation}"),
            Named::Statistics(name) => write!(f, "statistics object {name}"),
            Named::Aggregate { name, arguments } => write!(f, "aggregate {name}({})", arguments.as_str()),
            Named::Collation(name) => write!(f, "collation {name}"),
            Named::Schema(name) => write!(f, "schema {name}"),
        }
    }
}

impl Definition {
    fn create_fix(&self) -> Fix {
        match (&self.object, &self.create) {
            (Named::Schema(name), _) => run(Sql::new("CREATE SCHEMA ").ident(name)),
            (_, Some(create)) => run(Sql::default().server_sql(create)),
            (object, None) => Fix::from(format!(
                "create {object} on the target as on the source (pg_dump --schema-only of the source shows its statement)"
            )),
        }
    }

    /// What is compared: the statement, laid out alike, names unqualified
    /// across major versions (PostgreSQL 16 stopped qualifying some).
    fn compared(&self, same_major: bool) -> String {
        let text = normalize(self.create.as_ref().map_or("", |c| c.as_str()));
        if same_major {
            text
        } else {
            unqualified(&text)
        }
    }
}

/// Compares those of `kinds` (called in the order the fixes can run: schemas
/// and collations before what uses them, aggregates after functions, rules and
/// statistics after their tables).
pub(super) fn compare(
    source: &[Definition],
    target: &[Definition],
    kinds: &[ObjectKind],
    same_major: bool,
    p: &mut Parity,
) {
    let of = |d: &&Definition| kinds.contains(&d.object.kind());
    let (source, target): (Vec<Definition>, Vec<Definition>) =
        (source.iter().filter(of).cloned().collect(), target.iter().filter(of).cloned().collect());
    for (s, t) in pair(&source, &target, |d| d.object.key()) {
        match (s, t) {
            (Some(s), None) => push(p, s.object.kind(), s.object.to_string(), Side::MissingOnTarget, s.create_fix()),
            (None, Some(t)) if matches!(t.object, Named::Schema(_)) => p.warnings.push(format!(
                "{} is on the target only: kept (to match the source: {})",
                t.object,
                t.object.drop()
            )),
            (None, Some(t)) => push(p, t.object.kind(), t.object.to_string(), Side::OnlyOnTarget, run(t.object.drop())),
            (Some(s), Some(t)) if s.compared(same_major) != t.compared(same_major) => {
                let fix = match s.create_fix() {
                    Fix { ddl: Some(create), .. } => run(t
                        .object
                        .drop()
                        .push("; ")
                        .append(Sql::default().server_sql(&ServerSql::from_catalog(create)))),
                    other => other,
                };
                let side = differs(s.compared(same_major), t.compared(same_major));
                push(p, s.object.kind(), s.object.to_string(), side, fix);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> QualifiedName {
        QualifiedName::from_catalog("public", name)
    }

    fn rule(definition: &str) -> Definition {
        Definition {
            object: Named::Rule { relation: q("orders"), name: Ident::from_catalog("no_delete") },
            create: Some(ServerSql::from_catalog(definition)),
        }
    }

    #[test]
    fn each_kind_missing_changed_or_extra_is_named_with_its_fix() {
        let source = vec![
            rule("CREATE RULE no_delete AS\n    ON DELETE TO public.orders DO INSTEAD NOTHING;"),
            Definition {
                object: Named::Statistics(q("s1")),
                create: Some(ServerSql::from_catalog("CREATE STATISTICS public.s1 (ndistinct) ON a, b FROM public.t")),
            },
            Definition { object: Named::Schema(Ident::from_catalog("reports")), create: None },
            Definition {
                object: Named::Aggregate { name: q("total"), arguments: ServerSql::from_catalog("numeric") },
                create: None,
            },
        ];
        let target = vec![
            rule("CREATE RULE no_delete AS ON DELETE TO public.orders DO INSTEAD NOTHING"),
            Definition {
                object: Named::Statistics(q("s1")),
                create: Some(ServerSql::from_catalog("CREATE STATISTICS public.s1 (mcv) ON a, b FROM public.t")),
            },
            Definition { object: Named::Collation(q("nocase")), create: None },
            Definition { object: Named::Schema(Ident::from_catalog("scratch")), create: None },
        ];
        let mut p = Parity::default();
        let every = [
            ObjectKind::Rule,
            ObjectKind::Statistics,
            ObjectKind::Aggregate,
            ObjectKind::Collation,
            ObjectKind::Schema,
        ];
        compare(&source, &target, &every, true, &mut p);
        let found: Vec<(&str, &Side, &str)> =
            p.differences.iter().map(|d| (d.object.as_str(), &d.side, d.fix.as_str())).collect();
        assert_eq!(found.len(), 4, "the rule is the same laid out otherwise: {p:#?}");
        assert_eq!(found[0].0, "aggregate \"public\".\"total\"(numeric)");
        assert!(found[0].2.starts_with("create aggregate"), "{p:#?}");
        assert_eq!(p.differences[1].ddl.as_deref(), Some("DROP COLLATION \"public\".\"nocase\""));
        assert_eq!(p.differences[2].ddl.as_deref(), Some("CREATE SCHEMA \"reports\""));
        assert_eq!(
            p.differences[3].ddl.as_deref(),
            Some("DROP STATISTICS \"public\".\"s1\"; CREATE STATISTICS public.s1 (ndistinct) ON a, b FROM public.t")
        );
        assert_eq!(
            p.warnings,
            ["schema \"scratch\" is on the target only: kept (to match the source: DROP SCHEMA \"scratch\")"]
        );
    }
}
