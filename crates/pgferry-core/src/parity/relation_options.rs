//! Relation options (`pg_class.reloptions`, and the TOAST table's as
//! `toast.*`): a view's `check_option`, `security_barrier` and
//! `security_invoker`, which decide what the application may see and write
//! through it, and a table's `fillfactor` and autovacuum settings, which decide
//! how it ages; and a foreign table's options (`ftoptions`: which remote table or
//! file it reads). `pg_dump` carries them; a later `ALTER ... SET (...)` reaches
//! the target only through DDL capture, so the gate compares them
//! ([storage parameters](https://www.postgresql.org/docs/current/sql-createtable.html#SQL-CREATETABLE-STORAGE-PARAMETERS),
//! [ALTER VIEW](https://www.postgresql.org/docs/current/sql-alterview.html)).

use std::collections::BTreeMap;

use super::{differs, push, run, ObjectKind, Parity, Relation};
use crate::sql::{Ident, Sql};

/// Option name -> value, as `name=value` is stored.
fn options(r: &Relation) -> BTreeMap<&str, &str> {
    r.options.iter().filter_map(|o| o.split_once('=')).collect()
}

/// A stored name, `toast.` prefix and all, each part quoted.
fn name_sql(mut sql: Sql, name: &str) -> Sql {
    for (i, part) in name.split('.').enumerate() {
        sql = if i == 0 { sql } else { sql.push(".") }.ident(&Ident::from_catalog(part));
    }
    sql
}

fn show(options: &BTreeMap<&str, &str>) -> String {
    if options.is_empty() {
        return "none".into();
    }
    options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

pub(super) fn compare(s: &Relation, t: &Relation, p: &mut Parity) {
    storage(s, t, p);
    foreign(s, t, p);
}

/// A foreign table's options (`pg_foreign_table.ftoptions`: the remote table's
/// name, a file's path, ...), fixed with `OPTIONS (SET/ADD/DROP ...)`.
fn foreign(s: &Relation, t: &Relation, p: &mut Parity) {
    let parse = |o: &[String]| -> BTreeMap<String, String> {
        o.iter().filter_map(|o| o.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let (so, to) = (parse(&s.foreign_options), parse(&t.foreign_options));
    if so == to {
        return;
    }
    let mut fix = Sql::new("ALTER FOREIGN TABLE ").name(&s.name).push(" OPTIONS (");
    let mut first = true;
    let mut sep = |fix: Sql| {
        let fix = if first { fix } else { fix.push(", ") };
        first = false;
        fix
    };
    for (k, v) in &so {
        let verb = match to.get(k) {
            Some(tv) if tv == v => continue,
            Some(_) => "SET ",
            None => "ADD ",
        };
        fix = sep(fix).push(verb).ident(&Ident::from_catalog(k.clone())).push(" ").literal(v);
    }
    for k in to.keys().filter(|k| !so.contains_key(*k)) {
        fix = sep(fix).push("DROP ").ident(&Ident::from_catalog(k.clone()));
    }
    let show = |o: &BTreeMap<String, String>| o.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
    let object = format!("the options of foreign table {}", s.name);
    push(p, ObjectKind::Relation, object, differs(show(&so), show(&to)), run(fix.push(")")));
}

/// Storage parameters and view options.
fn storage(s: &Relation, t: &Relation, p: &mut Parity) {
    let (so, to) = (options(s), options(t));
    if so == to {
        return;
    }
    let alter = || Sql::new(s.kind.alter_keyword()).name(&s.name);
    let mut fix = Sql::default();
    let set: Vec<(&&str, &&str)> = so.iter().filter(|(k, v)| to.get(*k) != Some(*v)).collect();
    if !set.is_empty() {
        fix = fix.append(alter()).push(" SET (");
        for (i, (k, v)) in set.into_iter().enumerate() {
            fix = name_sql(if i == 0 { fix } else { fix.push(", ") }, k).push(" = ").literal(v);
        }
        fix = fix.push(")");
    }
    let reset: Vec<&&str> = to.keys().filter(|k| !so.contains_key(*k)).collect();
    if !reset.is_empty() {
        fix = if fix.as_str().is_empty() { fix } else { fix.push("; ") }.append(alter()).push(" RESET (");
        for (i, k) in reset.into_iter().enumerate() {
            fix = name_sql(if i == 0 { fix } else { fix.push(", ") }, k);
        }
        fix = fix.push(")");
    }
    let object = format!("the options of {} {}", s.kind.as_str(), s.name);
    push(p, ObjectKind::Relation, object, differs(show(&so), show(&to)), run(fix));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parity::RelationKind;
    use crate::sql::QualifiedName;

    fn view(options: &[&str]) -> Relation {
        Relation {
            name: QualifiedName::from_catalog("public", "mine"),
            kind: RelationKind::View,
            unlogged: false,
            partition_of: None,
            inherits: vec![],
            bound: None,
            partition_key: None,
            definition: None,
            options: options.iter().map(|o| o.to_string()).collect(),
            foreign_options: vec![],
        }
    }

    #[test]
    fn a_foreign_tables_options_are_set_added_and_dropped() {
        let mut p = Parity::default();
        let table = |options: &[&str]| Relation {
            kind: RelationKind::ForeignTable,
            options: vec![],
            foreign_options: options.iter().map(|o| o.to_string()).collect(),
            ..view(&[])
        };
        compare(
            &table(&["filename=/data/a.csv", "format=csv"]),
            &table(&["filename=/tmp/b.csv", "header=true"]),
            &mut p,
        );
        assert_eq!(
            p.differences[0].ddl.as_deref(),
            Some("ALTER FOREIGN TABLE \"public\".\"mine\" OPTIONS (SET \"filename\" '/data/a.csv', ADD \"format\" 'csv', DROP \"header\")"),
            "{p:#?}"
        );
    }

    #[test]
    fn options_set_changed_or_dropped_are_fixed_with_set_and_reset() {
        let mut p = Parity::default();
        compare(&view(&["security_barrier=true", "check_option=local"]), &view(&["check_option=local"]), &mut p);
        compare(
            &view(&["check_option=cascaded"]),
            &view(&["check_option=local", "toast.autovacuum_enabled=false"]),
            &mut p,
        );
        compare(&view(&["a=1"]), &view(&["a=1"]), &mut p);
        let found: Vec<(&str, String, Option<&str>)> =
            p.differences.iter().map(|d| (d.object.as_str(), d.to_string(), d.ddl.as_deref())).collect();
        assert_eq!(found.len(), 2, "{p:#?}");
        assert_eq!(found[0].0, "the options of view \"public\".\"mine\"");
        assert!(found[0]
            .1
            .contains("on the source check_option=local, security_barrier=true, on the target check_option=local"));
        assert_eq!(found[0].2, Some("ALTER VIEW \"public\".\"mine\" SET (\"security_barrier\" = 'true')"));
        assert_eq!(
            found[1].2,
            Some(
                "ALTER VIEW \"public\".\"mine\" SET (\"check_option\" = 'cascaded'); ALTER VIEW \"public\".\"mine\" RESET (\"toast\".\"autovacuum_enabled\")"
            )
        );
    }
}
