//! The user's event triggers (DDL auditing, guards against drops), which
//! `pg_dump` carries: their event, tags, function and state. pgferry's own (DDL
//! capture's, named after the migration, see
//! [`crate::names::MigrationName::ddl_trigger`]) are on the source only, by design,
//! and are not compared.

use super::{differs, pair, push, run, trigger_state, Fix, ObjectKind, Parity, Side};
use crate::names::is_ddl_capture_trigger;
use crate::sql::{Ident, QualifiedName, Sql};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventTrigger {
    pub name: Ident,
    /// `evtevent`: `ddl_command_start`, `ddl_command_end`, `sql_drop`, ...
    pub event: String,
    /// `evttags`, empty for every command.
    pub tags: Vec<String>,
    pub function: QualifiedName,
    /// `evtenabled`: `O`, `D`, `R` or `A`.
    pub enabled: String,
}

/// The events pgferry writes (the server's names, from code).
fn event(name: &str) -> Option<&'static str> {
    Some(match name {
        "ddl_command_start" => "ddl_command_start",
        "ddl_command_end" => "ddl_command_end",
        "sql_drop" => "sql_drop",
        "table_rewrite" => "table_rewrite",
        "login" => "login",
        _ => return None,
    })
}

fn create(e: &EventTrigger) -> Fix {
    match create_sql(e) {
        Some(sql) => run(sql),
        None => Fix::from(format!("create event trigger {} on the target as on the source", e.name)),
    }
}

fn create_sql(e: &EventTrigger) -> Option<Sql> {
    let event = event(&e.event)?;
    let mut sql = Sql::new("CREATE EVENT TRIGGER ").ident(&e.name).push(" ON ").push(event);
    if !e.tags.is_empty() {
        sql = sql.push(" WHEN TAG IN (");
        for (i, tag) in e.tags.iter().enumerate() {
            sql = if i == 0 { sql } else { sql.push(", ") }.literal(tag);
        }
        sql = sql.push(")");
    }
    sql = sql.push(" EXECUTE FUNCTION ").name(&e.function).push("()");
    if e.enabled != "O" {
        sql = sql.push("; ALTER EVENT TRIGGER ").ident(&e.name).push(trigger_state(&e.enabled).1);
    }
    Some(sql)
}

pub(super) fn compare(source: &[EventTrigger], target: &[EventTrigger], p: &mut Parity) {
    let user = |list: &[EventTrigger]| -> Vec<EventTrigger> {
        list.iter().filter(|e| !is_ddl_capture_trigger(e.name.as_str())).cloned().collect()
    };
    let shape = |e: &EventTrigger| {
        format!("ON {} WHEN TAG IN ({}) EXECUTE FUNCTION {}()", e.event, e.tags.join(", "), e.function)
    };
    for (s, t) in pair(&user(source), &user(target), |e| e.name.clone()) {
        let e = s.or(t).expect("paired");
        let object = format!("event trigger {}", e.name);
        let drop = || Sql::new("DROP EVENT TRIGGER ").ident(&e.name);
        match (s, t) {
            (Some(s), None) => push(p, ObjectKind::EventTrigger, object, Side::MissingOnTarget, create(s)),
            (None, Some(_)) => push(p, ObjectKind::EventTrigger, object, Side::OnlyOnTarget, run(drop())),
            (Some(s), Some(t)) if shape(s) != shape(t) => {
                let fix = match create_sql(s) {
                    Some(sql) => run(drop().push("; ").append(sql)),
                    None => create(s),
                };
                push(p, ObjectKind::EventTrigger, object, differs(shape(s), shape(t)), fix);
            }
            (Some(s), Some(t)) if s.enabled != t.enabled => {
                let fix = Sql::new("ALTER EVENT TRIGGER ").ident(&e.name).push(trigger_state(&s.enabled).1);
                push(
                    p,
                    ObjectKind::EventTrigger,
                    object,
                    differs(trigger_state(&s.enabled).0, trigger_state(&t.enabled).0),
                    run(fix),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compare as compare_catalogs, Catalog};
    use super::*;

    fn audit() -> EventTrigger {
        EventTrigger {
            name: Ident::from_catalog("audit"),
            event: "ddl_command_end".into(),
            tags: vec!["CREATE TABLE".into(), "ALTER TABLE".into()],
            function: QualifiedName::from_catalog("public", "audit_ddl"),
            enabled: "O".into(),
        }
    }

    fn catalog(triggers: Vec<EventTrigger>) -> Catalog {
        Catalog { server_version_num: 150000, event_triggers: triggers, ..Catalog::default() }
    }

    #[test]
    fn a_missing_event_trigger_is_created_as_on_the_source() {
        let source = catalog(vec![audit()]);
        assert_eq!(compare_catalogs(&source, &source.clone()), Default::default());
        let parity = compare_catalogs(&source, &catalog(vec![]));
        assert_eq!(parity.differences.len(), 1, "{parity:#?}");
        let d = &parity.differences[0];
        assert_eq!(
            (d.kind, d.object.as_str(), &d.side),
            (ObjectKind::EventTrigger, "event trigger \"audit\"", &Side::MissingOnTarget)
        );
        assert_eq!(
            d.ddl.as_deref(),
            Some("CREATE EVENT TRIGGER \"audit\" ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION \"public\".\"audit_ddl\"()")
        );
        let mut disabled = audit();
        disabled.enabled = "D".into();
        disabled.tags.clear();
        let ddl = compare_catalogs(&catalog(vec![disabled]), &catalog(vec![])).differences.remove(0).ddl.unwrap();
        assert!(
            ddl.ends_with(
                "ON ddl_command_end EXECUTE FUNCTION \"public\".\"audit_ddl\"(); ALTER EVENT TRIGGER \"audit\" DISABLE"
            ),
            "{ddl}"
        );
    }

    #[test]
    fn ddl_captures_own_trigger_is_not_compared() {
        let mut own = audit();
        own.name = Ident::from_catalog("pgferry_main__ddl");
        let mut own_drop = audit();
        own_drop.name = Ident::from_catalog("pgferry_main__ddl_drop");
        let mut lookalike = audit();
        lookalike.name = Ident::from_catalog("pgferry_audit");
        let parity = compare_catalogs(&catalog(vec![own, own_drop, lookalike]), &catalog(vec![]));
        assert_eq!(parity.differences.len(), 1, "{parity:#?}");
        assert_eq!(parity.differences[0].object, "event trigger \"pgferry_audit\"");
    }

    #[test]
    fn changed_extra_and_disabled_event_triggers() {
        let mut changed = audit();
        changed.tags.pop();
        let mut stray = audit();
        stray.name = Ident::from_catalog("stray");
        let reasons = compare_catalogs(&catalog(vec![audit()]), &catalog(vec![changed, stray])).reasons();
        assert_eq!(reasons.len(), 2, "{reasons:#?}");
        assert!(reasons[0].ends_with("DROP EVENT TRIGGER \"audit\"; CREATE EVENT TRIGGER \"audit\" ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION \"public\".\"audit_ddl\"()"), "{reasons:#?}");
        assert!(reasons[1].ends_with("DROP EVENT TRIGGER \"stray\""));
        let mut disabled = audit();
        disabled.enabled = "D".into();
        let parity = compare_catalogs(&catalog(vec![audit()]), &catalog(vec![disabled]));
        assert_eq!(parity.warnings, Vec::<String>::new());
        assert_eq!(
            parity.reasons(),
            ["catalog parity: event trigger \"audit\" differs: on the source enabled, on the target disabled; fix: run on the target (pgferry follow --apply-ddl runs it there): ALTER EVENT TRIGGER \"audit\" ENABLE"]
        );
    }
}
