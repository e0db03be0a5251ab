//! Reading the user's types, functions and procedures, and event triggers, for
//! the parity gate: those of user schemas, not an extension's members.

use pgferry_core::names::STATE_SCHEMA;
use pgferry_core::parity::{EventTrigger, Routine, TypeShape, UserType};
use pgferry_core::sql::{Ident, QualifiedName, ServerSql};
use tokio_postgres::Client;

use super::{name, server_sql, USER_SCHEMA};

/// An object `{alias}` of catalog `{class}` that is not an extension's member.
pub(super) fn not_an_extensions(class: &str, alias: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                     AND e.classid = '{class}'::regclass AND e.objid = {alias}.oid)"
    )
}

pub(super) async fn types(c: &Client) -> Result<Vec<UserType>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, t.typname::text, t.typtype::text,
                ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder),
                ARRAY(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
                ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                      WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
                format_type(t.typbasetype, t.typtypmod), t.typdefault, t.typnotnull
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE (t.typtype IN ('e', 'd')
                OR (t.typtype = 'c' AND (SELECT k.relkind FROM pg_class k WHERE k.oid = t.typrelid) = 'c'))
           AND {USER_SCHEMA} AND {}",
        not_an_extensions("pg_type", "t")
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let shape = match r.get::<_, String>(2).as_str() {
                "e" => TypeShape::Enum { labels: r.get(3) },
                "c" => {
                    let names: Vec<String> = r.get(4);
                    let types: Vec<String> = r.get(5);
                    TypeShape::Composite {
                        attributes: names
                            .into_iter()
                            .map(Ident::from_catalog)
                            .zip(types.into_iter().map(ServerSql::from_catalog))
                            .collect(),
                    }
                }
                _ => TypeShape::Domain {
                    base: server_sql(r, 6),
                    default: r.get::<_, Option<String>>(7).map(ServerSql::from_catalog),
                    not_null: r.get(8),
                },
            };
            UserType { name: name(r, 0, 1), shape }
        })
        .collect())
}

/// Functions and procedures (aggregates are not: `pg_get_functiondef` does not
/// render them).
pub(super) async fn routines(c: &Client, server_version_num: i32) -> Result<Vec<Routine>, tokio_postgres::Error> {
    // SQL-standard bodies came with PostgreSQL 14.
    let sql_body = if server_version_num >= 140000 { "p.prosqlbody IS NOT NULL" } else { "false" };
    let sql = format!(
        "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), p.prokind = 'p',
                pg_get_functiondef(p.oid), {sql_body}, p.provolatile::text, p.prosecdef
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.prokind IN ('f', 'p', 'w') AND {USER_SCHEMA} AND {}",
        not_an_extensions("pg_proc", "p")
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Routine {
            name: name(r, 0, 1),
            arguments: server_sql(r, 2),
            procedure: r.get(3),
            definition: server_sql(r, 4),
            sql_body: r.get(5),
            volatility: r.get(6),
            security_definer: r.get(7),
        })
        .collect())
}

/// Every event trigger, DDL capture's too (the comparison leaves those out).
pub(super) async fn event_triggers(c: &Client) -> Result<Vec<EventTrigger>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT t.evtname::text, t.evtevent::text, coalesce(t.evttags, '{{}}')::text[],
                n.nspname::text, p.proname::text, t.evtenabled::text
         FROM pg_event_trigger t JOIN pg_proc p ON p.oid = t.evtfoid JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE {}",
        not_an_extensions("pg_event_trigger", "t")
    );
    let rows = c.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| EventTrigger {
            name: Ident::from_catalog(r.get::<_, String>(0)),
            event: r.get(1),
            tags: r.get(2),
            function: QualifiedName::from_catalog(r.get::<_, String>(3), r.get::<_, String>(4)),
            enabled: r.get(5),
        })
        .collect())
}
