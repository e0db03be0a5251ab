//! Reading each side's catalog for the cutover's parity gate
//! (`pgferry_core::parity`, where the comparison is): one query per kind of
//! object, in one `REPEATABLE READ READ ONLY` transaction with `search_path`
//! empty, so the parts agree and every name the server renders is qualified.
//!
//! User schemas are all but the system ones and pgferry's own; objects that
//! belong to an extension are left out (the extension makes them), and so are
//! pgferry's own (its schema; triggers named `pgferry_*`; publications are not
//! read at all; DDL capture's event triggers are read and left out by the
//! comparison). PostgreSQL 18's NOT NULL constraints are left out (nullability
//! is read from the columns), and so are partitions' clones of their parent's
//! triggers (`tgparentid`: the parent's trigger is compared). Types, functions
//! and event triggers are read in [`code`], roles (the server's, with their
//! memberships, settings and a digest of each password hash), privileges and
//! row-level security in [`security`].

use pgferry_core::names::{MigrationName, PREFIX, STATE_SCHEMA};
use pgferry_core::parity::{
    compare, Catalog, Column, Comment, Constraint, Extension, Index, Parity, Relation, RelationKind, Sequence, Trigger,
};
use pgferry_core::sql::{Ident, QualifiedName, ServerSql};
// Relations `c` in user schemas `n`, not an extension's: the rule of every list of the user's tables.
use pgferry_pg::facts::USER_RELATION;
use tokio_postgres::{Client, Row};

use crate::error::{Error, Result};

mod code;
mod definitions;
mod security;

/// Schemas `n` of the user ($1: pgferry's schema).
const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// Compares the two sides' catalogs now.
pub async fn check(src: &Client, dst: &Client, name: &MigrationName) -> Result<Parity> {
    // Boxed: the reads' state stays off the callers' futures.
    let (source, mut target) =
        Box::pin(async { tokio::try_join!(read_catalog(src, "source"), read_catalog(dst, "target")) }).await?;
    if let Some(roles) = target.server_roles.as_mut() {
        roles.physical_copy = seeded(dst, name).await?;
    }
    Ok(compare(&source, &target))
}

/// Whether the migration was seeded (its attach journaled): the target began
/// as a physical copy of the source.
async fn seeded(dst: &Client, name: &MigrationName) -> Result<bool> {
    let fail = |e| Error::server("reading the migration's journal", e);
    let journaled: bool =
        dst.query_one("SELECT to_regclass('pgferry.seed') IS NOT NULL", &[]).await.map_err(fail)?.get(0);
    if !journaled {
        return Ok(false);
    }
    let row = dst
        .query_one("SELECT EXISTS (SELECT 1 FROM pgferry.seed WHERE migration = $1)", &[&name.as_str()])
        .await
        .map_err(fail)?;
    Ok(row.get(0))
}

/// One side's catalog.
pub async fn read_catalog(client: &Client, side: &str) -> Result<Catalog> {
    let fail =
        |e: tokio_postgres::Error| Error::server(&format!("reading the {side}'s catalog for the parity check"), e);
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL search_path = ''")
        .await
        .map_err(fail)?;
    let read = read_all(client).await;
    // The transaction only read: ending it either way leaves the session as it was.
    let end = client.batch_execute(if read.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
    let catalog = read.map_err(fail)?;
    end.map_err(fail)?;
    Ok(catalog)
}

async fn read_all(c: &Client) -> std::result::Result<Catalog, tokio_postgres::Error> {
    let server_version_num = c.query_one("SELECT current_setting('server_version_num')::int", &[]).await?.get(0);
    Ok(Catalog {
        server_version_num,
        relations: relations(c).await?,
        columns: columns(c).await?,
        indexes: indexes(c).await?,
        constraints: constraints(c).await?,
        sequences: sequences(c).await?,
        triggers: triggers(c).await?,
        extensions: extensions(c).await?,
        comments: comments(c).await?,
        large_objects: c.query_one("SELECT count(*) FROM pg_largeobject_metadata", &[]).await?.get(0),
        types: code::types(c).await?,
        routines: code::routines(c, server_version_num).await?,
        acls: security::acls(c).await?,
        roles: security::roles(c).await?,
        row_security: security::row_security(c).await?,
        policies: security::policies(c).await?,
        event_triggers: code::event_triggers(c).await?,
        database: Some(security::database(c).await?),
        definitions: definitions::definitions(c).await?,
        others: definitions::others(c).await?,
        server_roles: Some(security::server_roles(c).await?),
    })
}

fn name(row: &Row, schema: usize, name: usize) -> QualifiedName {
    QualifiedName::from_catalog(row.get::<_, String>(schema), row.get::<_, String>(name))
}

fn server_sql(row: &Row, index: usize) -> ServerSql {
    ServerSql::from_catalog(row.get::<_, String>(index))
}

fn optional_sql(row: &Row, index: usize) -> Option<ServerSql> {
    row.get::<_, Option<String>>(index).map(ServerSql::from_catalog)
}

/// The parents `h` (schema `hn`) a table `c` inherits from, not a partition's, in order.
const PARENTS: &str =
    "pg_inherits hi JOIN pg_class h ON h.oid = hi.inhparent JOIN pg_namespace hn ON hn.oid = h.relnamespace
    WHERE hi.inhrelid = c.oid AND NOT c.relispartition ORDER BY hi.inhseqno";

async fn relations(c: &Client) -> std::result::Result<Vec<Relation>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
                c.relpersistence = 'u' AS unlogged, pn.nspname::text AS parent_schema, p.relname::text AS parent,
                CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
                CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS definition,
                coalesce(c.reloptions, '{{}}')
                    || ARRAY(SELECT 'toast.' || o FROM pg_class tc, unnest(tc.reloptions) o WHERE tc.oid = c.reltoastrelid)
                    AS options,
                coalesce((SELECT f.ftoptions FROM pg_foreign_table f WHERE f.ftrelid = c.oid), '{{}}') AS foreign_options,
                ARRAY(SELECT hn.nspname::text FROM {PARENTS}) AS inherits_schemas,
                ARRAY(SELECT h.relname::text FROM {PARENTS}) AS inherits_names
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_inherits i ON c.relispartition AND i.inhrelid = c.oid
         LEFT JOIN pg_class p ON p.oid = i.inhparent
         LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Relation {
                name: QualifiedName::from_catalog(r.get::<_, String>("schema"), r.get::<_, String>("name")),
                kind: RelationKind::from_code(r.get("kind"))?,
                unlogged: r.get("unlogged"),
                partition_of: r
                    .get::<_, Option<String>>("parent")
                    .map(|parent| QualifiedName::from_catalog(r.get::<_, String>("parent_schema"), parent)),
                inherits: r
                    .get::<_, Vec<String>>("inherits_schemas")
                    .into_iter()
                    .zip(r.get::<_, Vec<String>>("inherits_names"))
                    .map(|(schema, name)| QualifiedName::from_catalog(schema, name))
                    .collect(),
                bound: r.get::<_, Option<String>>("bound").map(ServerSql::from_catalog),
                partition_key: r.get::<_, Option<String>>("partition_key").map(ServerSql::from_catalog),
                definition: r.get::<_, Option<String>>("definition").map(ServerSql::from_catalog),
                options: r.get("options"),
                foreign_options: r.get("foreign_options"),
            })
        })
        .collect())
}

/// Each column's type carries its collation when it is not the type's own (`COLLATE "C"` changes
/// ordering and uniqueness), in the form `ALTER COLUMN ... TYPE` accepts.
async fn columns(c: &Client) -> std::result::Result<Vec<Column>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text,
                format_type(a.atttypid, a.atttypmod) || coalesce(' COLLATE ' || quote_ident(cn.nspname) || '.'
                    || quote_ident(co.collname), ''),
                a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, a.attnum
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type ty ON ty.oid = a.atttypid
         LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> ty.typcollation
         LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Column {
            relation: name(r, 0, 1),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            position: r.get(8),
            type_name: server_sql(r, 3),
            not_null: r.get(4),
            default: optional_sql(r, 5),
            identity: r.get(6),
            generated: r.get(7),
        })
        .collect())
}

async fn indexes(c: &Client) -> std::result::Result<Vec<Index>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, ic.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Index {
            relation: name(r, 0, 1),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            definition: server_sql(r, 3),
            valid: r.get(4),
        })
        .collect())
}

async fn constraints(c: &Client) -> std::result::Result<Vec<Constraint>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, coalesce(c.relname, t.typname)::text, t.oid IS NOT NULL,
                k.conname::text, pg_get_constraintdef(k.oid)
         FROM pg_constraint k
         LEFT JOIN pg_class c ON c.oid = k.conrelid
         LEFT JOIN pg_type t ON t.oid = k.contypid
         JOIN pg_namespace n ON n.oid = coalesce(c.relnamespace, t.typnamespace)
         WHERE k.contype <> 'n' AND {USER_SCHEMA}
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                           AND ((e.classid = 'pg_class'::regclass AND e.objid = c.oid)
                             OR (e.classid = 'pg_type'::regclass AND e.objid = t.oid)))"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Constraint {
            on: name(r, 0, 1),
            on_domain: r.get(2),
            name: Ident::from_catalog(r.get::<_, String>(3)),
            definition: server_sql(r, 4),
        })
        .collect())
}

async fn sequences(c: &Client) -> std::result::Result<Vec<Sequence>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL),
                s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcycle,
                tn.nspname::text, tc.relname::text, ta.attname::text
         FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
              AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype = 'a'
         LEFT JOIN pg_class tc ON tc.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
         LEFT JOIN pg_attribute ta ON ta.attrelid = d.refobjid AND ta.attnum = d.refobjsubid
         WHERE {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Sequence {
            name: name(r, 0, 1),
            type_name: server_sql(r, 2),
            increment: r.get(3),
            min: r.get(4),
            max: r.get(5),
            start: r.get(6),
            cycle: r.get(7),
            owned_by: r
                .get::<_, Option<String>>(9)
                .map(|_| (name(r, 8, 9), Ident::from_catalog(r.get::<_, String>(10)))),
        })
        .collect())
}

async fn triggers(c: &Client) -> std::result::Result<Vec<Trigger>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, t.tgname::text, pg_get_triggerdef(t.oid), t.tgenabled::text
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND NOT starts_with(t.tgname::text, $2) AND {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA, &PREFIX]).await?;
    Ok(rows
        .iter()
        .map(|r| Trigger {
            relation: name(r, 0, 1),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            definition: server_sql(r, 3),
            enabled: r.get(4),
        })
        .collect())
}

async fn extensions(c: &Client) -> std::result::Result<Vec<Extension>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT e.extname::text, e.extversion, n.nspname::text, a.default_version
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             LEFT JOIN pg_available_extensions a ON a.name = e.extname",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Extension {
            name: Ident::from_catalog(r.get::<_, String>(0)),
            version: r.get(1),
            schema: Ident::from_catalog(r.get::<_, String>(2)),
            default_version: r.get(3),
        })
        .collect())
}

/// Comments on relations (and their columns), constraints, triggers and schemas
/// of the user.
async fn comments(c: &Client) -> std::result::Result<Vec<Comment>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT o.type, o.identity, d.description
             FROM pg_description d, LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o
             WHERE d.classoid IN ('pg_class'::regclass, 'pg_constraint'::regclass, 'pg_trigger'::regclass,
                                  'pg_namespace'::regclass)
               AND coalesce(o.schema, o.name) NOT IN ('pg_catalog', 'information_schema', $1)
               AND coalesce(o.schema, o.name) NOT LIKE 'pg\\_toast%'
               AND coalesce(o.schema, o.name) NOT LIKE 'pg\\_temp\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE d.classoid = 'pg_trigger'::regclass
                               AND t.oid = d.objoid AND starts_with(t.tgname::text, $2))
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                               AND e.classid = d.classoid AND e.objid = d.objoid)",
            &[&STATE_SCHEMA, &PREFIX],
        )
        .await?;
    Ok(rows.iter().map(|r| Comment { object_type: r.get(0), identity: server_sql(r, 1), text: r.get(2) }).collect())
}

/// Makes the target's database as the source's (owner, connection limit,
/// comment, settings, privileges: what `pg_dump --schema-only` leaves out, see
/// `pgferry_core::parity::carry`), one statement at a time. A statement the
/// target refuses (pgferry's role may not own the database there) is said with
/// its fix, not fatal: the cutover's gate stops until it is run.
pub async fn carry_database(src: &Client, dst: &Client) -> Result<()> {
    let (source, target) = tokio::try_join!(read_database(src, "source"), read_database(dst, "target"))?;
    let carried = pgferry_core::parity::carry(&source, &target);
    for warning in &carried.warnings {
        tracing::warn!("database: {warning}");
    }
    for difference in carried.differences {
        let Some(ddl) = &difference.ddl else {
            tracing::warn!("database: not carried, {difference}");
            continue;
        };
        match dst.batch_execute(ddl).await {
            Ok(()) => tracing::info!("database: carried {}: {ddl}", difference.object),
            Err(e) => tracing::warn!(
                "database: {}; the cutover waits until it is run there by a role that may",
                Error::server(&format!("the target refused {ddl}"), e).message
            ),
        }
    }
    Ok(())
}

/// Adds to the target's enums the labels the source added since the schema was
/// copied (`ALTER TYPE ... ADD VALUE` commits before any row can carry the label,
/// so a row the copy or change capture brings can hold one the target lacks).
/// Left to DDL capture where it runs: it replays the source's own statement.
/// Returns how many statements it ran.
pub async fn carry_enum_labels(src: &Client, dst: &Client, name: &MigrationName) -> Result<usize> {
    if crate::ddl::installed(src, name).await? {
        return Ok(0);
    }
    let (source, target) = tokio::try_join!(code::types(src), code::types(dst))
        .map_err(|e| Error::server("reading the enum types of both sides", e))?;
    let added = pgferry_core::parity::labels_to_add(&source, &target);
    for ddl in &added {
        dst.batch_execute(ddl)
            .await
            .map_err(|e| Error::server(&format!("adding enum labels on the target ({ddl})"), e))?;
        tracing::info!("enum labels the source added since the copy: {ddl}");
    }
    Ok(added.len())
}

/// The database's properties and privileges, and the roles.
async fn read_database(c: &Client, side: &str) -> Result<Catalog> {
    let fail = |e| Error::server(&format!("reading the {side}'s database settings and privileges"), e);
    let mut acls = security::acls(c).await.map_err(fail)?;
    acls.retain(|a| matches!(a.object, pgferry_core::parity::Securable::Database(_)));
    Ok(Catalog {
        database: Some(security::database(c).await.map_err(fail)?),
        acls,
        roles: security::roles(c).await.map_err(fail)?,
        ..Catalog::default()
    })
}

/// Says the gate's warnings (what is not carried by design) in the log.
pub fn warn(parity: &Parity) {
    for warning in &parity.warnings {
        tracing::warn!("catalog parity: {warning}");
    }
}
