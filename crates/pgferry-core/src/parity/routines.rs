//! Functions and procedures, compared by their whole definition as the server
//! renders it (`pg_get_functiondef`: arguments, result, language, volatility,
//! `SECURITY DEFINER`, `SET` clauses and the body), which names no owner: a
//! target restored under another role is not a difference. Overloads are told
//! apart by their identity arguments. A body in SQL-standard form (`BEGIN
//! ATOMIC`) is deparsed by the server, so across major versions it is compared
//! without name qualifiers, as views are. Aggregates are not compared
//! (`pg_get_functiondef` does not render them).

use super::{differs, normalize, pair, push, run, unqualified, ObjectKind, Parity, Side};
use crate::sql::{QualifiedName, ServerSql, Sql};

/// A function or procedure of the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routine {
    pub name: QualifiedName,
    /// `pg_get_function_identity_arguments`: what tells overloads apart.
    pub arguments: ServerSql,
    pub procedure: bool,
    /// `pg_get_functiondef`: the whole `CREATE OR REPLACE` statement.
    pub definition: ServerSql,
    /// The body is in SQL-standard form, deparsed by the server.
    pub sql_body: bool,
    /// `provolatile`: `i`, `s` or `v`.
    pub volatility: String,
    pub security_definer: bool,
}

impl Routine {
    fn word(&self) -> &'static str {
        if self.procedure {
            "procedure"
        } else {
            "function"
        }
    }

    fn traits(&self) -> String {
        let volatility = match self.volatility.as_str() {
            "i" => "IMMUTABLE",
            "s" => "STABLE",
            _ => "VOLATILE",
        };
        let security = if self.security_definer { "SECURITY DEFINER" } else { "SECURITY INVOKER" };
        format!("{volatility} {security}")
    }
}

pub(super) fn compare(source: &[Routine], target: &[Routine], same_major: bool, p: &mut Parity) {
    let definition = |r: &Routine| match same_major || !r.sql_body {
        true => normalize(r.definition.as_str()),
        false => unqualified(&normalize(r.definition.as_str())),
    };
    for (s, t) in pair(source, target, |r| (r.name.clone(), r.arguments.as_str().to_string())) {
        let r = s.or(t).expect("paired");
        let object = format!("{} {}({})", r.word(), r.name, r.arguments.as_str());
        let create = |s: &Routine| Sql::default().server_sql(&s.definition);
        match (s, t) {
            (Some(s), None) => push(p, ObjectKind::Function, object, Side::MissingOnTarget, run(create(s))),
            (None, Some(t)) => {
                let drop = Sql::new(if t.procedure { "DROP PROCEDURE " } else { "DROP FUNCTION " })
                    .name(&t.name)
                    .push("(")
                    .server_sql(&t.arguments)
                    .push(")");
                push(p, ObjectKind::Function, object, Side::OnlyOnTarget, run(drop))
            }
            (Some(s), Some(t)) => {
                let (sd, td) = (definition(s), definition(t));
                if sd == td && s.traits() == t.traits() {
                    continue;
                }
                let side = match s.traits() == t.traits() {
                    true => differs(sd, td),
                    false => differs(s.traits(), t.traits()),
                };
                let fix = run(create(s))
                    .note(" (when its result type or an argument's name changed, DROP it on the target first)");
                push(p, ObjectKind::Function, object, side, fix);
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compare as compare_catalogs, Catalog};
    use super::*;

    fn add(body: &str) -> Routine {
        Routine {
            name: QualifiedName::from_catalog("public", "add"),
            arguments: ServerSql::from_catalog("a integer, b integer"),
            procedure: false,
            definition: ServerSql::from_catalog(format!(
                "CREATE OR REPLACE FUNCTION public.add(a integer, b integer)\n RETURNS integer\n LANGUAGE sql\n IMMUTABLE\nAS $function${body}$function$\n"
            )),
            sql_body: false,
            volatility: "i".into(),
            security_definer: false,
        }
    }

    fn catalog(version: i32, routines: Vec<Routine>) -> Catalog {
        Catalog { server_version_num: version, routines, ..Catalog::default() }
    }

    #[test]
    fn a_changed_body_is_named_and_replaced_from_the_source() {
        let source = catalog(150000, vec![add("SELECT a + b")]);
        assert_eq!(compare_catalogs(&source, &source.clone()).differences, []);
        let target = catalog(150000, vec![add("SELECT a - b")]);
        let parity = compare_catalogs(&source, &target);
        assert_eq!(parity.differences.len(), 1, "{parity:#?}");
        let d = &parity.differences[0];
        assert_eq!(d.kind, ObjectKind::Function);
        assert_eq!(d.object, "function \"public\".\"add\"(a integer, b integer)");
        assert!(matches!(&d.side, Side::Differs { target, .. } if target.contains("SELECT a - b")), "{d:#?}");
        assert_eq!(d.ddl.as_deref(), Some(source.routines[0].definition.as_str()), "the source's text, unchanged");
    }

    #[test]
    fn volatility_and_security_are_said_as_such() {
        let source = catalog(150000, vec![add("SELECT a + b")]);
        let mut changed = add("SELECT a + b");
        changed.volatility = "v".into();
        changed.security_definer = true;
        changed.definition =
            ServerSql::from_catalog(changed.definition.as_str().replace("IMMUTABLE", "VOLATILE SECURITY DEFINER"));
        let reasons = compare_catalogs(&source, &catalog(150000, vec![changed])).reasons();
        assert!(
            reasons[0].contains("on the source IMMUTABLE SECURITY INVOKER, on the target VOLATILE SECURITY DEFINER"),
            "{reasons:#?}"
        );
    }

    #[test]
    fn overloads_missing_and_extra_routines_are_told_apart() {
        let mut other = add("SELECT a + b");
        other.arguments = ServerSql::from_catalog("a bigint, b bigint");
        let mut bump = add("");
        bump.name = QualifiedName::from_catalog("public", "bump");
        bump.arguments = ServerSql::from_catalog("IN n integer");
        bump.procedure = true;
        let source = catalog(150000, vec![add("SELECT a + b"), other.clone()]);
        let target = catalog(150000, vec![add("SELECT a + b"), bump]);
        let reasons = compare_catalogs(&source, &target).reasons();
        assert_eq!(reasons.len(), 2, "{reasons:#?}");
        assert!(reasons[0].contains("function \"public\".\"add\"(a bigint, b bigint) is on the source but missing"));
        assert!(reasons[1].ends_with("DROP PROCEDURE \"public\".\"bump\"(IN n integer)"), "{reasons:#?}");
    }

    #[test]
    fn sql_standard_bodies_compare_across_major_versions_without_qualifiers() {
        let body = |text: &str| {
            let mut r = add("");
            r.sql_body = true;
            r.definition = ServerSql::from_catalog(format!(
                "CREATE OR REPLACE FUNCTION public.total()\n RETURNS numeric\n LANGUAGE sql\nBEGIN ATOMIC\n {text};\nEND"
            ));
            r
        };
        let source = catalog(150000, vec![body("SELECT sum(orders.total) AS sum FROM public.orders")]);
        let target = catalog(180000, vec![body("SELECT sum(total) AS sum FROM public.orders")]);
        assert_eq!(compare_catalogs(&source, &target).differences, []);
        let target = catalog(150000, target.routines);
        assert_eq!(compare_catalogs(&source, &target).differences.len(), 1, "the same major: compared as they are");
    }
}
