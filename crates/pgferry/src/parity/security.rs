//! Reading roles, privileges and row-level security for the parity gate.

use std::collections::BTreeMap;

use pgferry_core::names::STATE_SCHEMA;
use pgferry_core::parity::{
    Acl, AclEntry, DatabaseProperties, DatabaseSetting, DefaultedObjects, Policy, RelationKind, RoleName, RowSecurity,
    Securable, ServerRoles,
};
use pgferry_core::sql::{Ident, QualifiedName, ServerSql};
use pgferry_pg::facts::USER_RELATION;
use tokio_postgres::Client;

use super::{name, optional_sql, USER_SCHEMA};

/// The server's roles for the gate ([`pgferry_core::parity::ServerRoles`]), read
/// as `pgferry roles` reads them. Passwords only where this user may read
/// `pg_authid`, and only as a digest of each hash: no hash leaves the server.
pub(super) async fn server_roles(c: &Client) -> Result<ServerRoles, tokio_postgres::Error> {
    let me = c
        .query_one(
            "SELECT rolsuper, rolreplication, rolbypassrls, has_table_privilege('pg_catalog.pg_authid', 'SELECT'),
                    rolname::text
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let passwords = match me.get::<_, bool>(3) {
        false => None,
        true => Some(
            c.query(
                "SELECT rolname::text, encode(sha256(convert_to(rolpassword, 'UTF8')), 'hex')
                 FROM pg_catalog.pg_authid WHERE oid >= 16384",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        ),
    };
    // Who may set a superuser's setting: a superuser, and from PostgreSQL 15 a
    // role granted SET on it (has_parameter_privilege is not older).
    let version: i32 = c.query_one("SELECT current_setting('server_version_num')::int", &[]).await?.get(0);
    let may_set = if version >= 150_000 { "has_parameter_privilege(name, 'SET')" } else { "false" };
    let superuser_settings = match me.get::<_, bool>(0) {
        true => Default::default(),
        false => c
            .query(&format!("SELECT lower(name) FROM pg_settings WHERE context = 'superuser' AND NOT {may_set}"), &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    Ok(ServerRoles {
        roles: crate::roles::read_roles(c).await?,
        memberships: crate::roles::read_memberships(c).await?,
        settings: crate::roles::read_settings(c).await?,
        passwords,
        physical_copy: false,
        superuser: me.get(0),
        replication: me.get(1),
        bypass_rls: me.get(2),
        user: me.get(4),
        superuser_settings,
    })
}

pub(super) async fn roles(c: &Client) -> Result<Vec<Ident>, tokio_postgres::Error> {
    let rows = c.query("SELECT rolname::text FROM pg_roles", &[]).await?;
    Ok(rows.iter().map(|r| Ident::from_catalog(r.get::<_, String>(0))).collect())
}

/// The database this session is in: owner, connection limit, comment, and the
/// settings of the database and of roles in it (`pg_db_role_setting`).
pub(super) async fn database(c: &Client) -> Result<DatabaseProperties, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT d.datname::text, pg_get_userbyid(d.datdba)::text, d.datconnlimit,
                    shobj_description(d.oid, 'pg_database')
             FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await?;
    let settings = c
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole)::text END, c.setting
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c(setting)
             WHERE d.datname = current_database()",
            &[],
        )
        .await?;
    Ok(DatabaseProperties {
        name: Ident::from_catalog(row.get::<_, String>(0)),
        owner: Ident::from_catalog(row.get::<_, String>(1)),
        connection_limit: row.get(2),
        comment: row.get(3),
        settings: settings
            .iter()
            .filter_map(|r| {
                let (name, value) =
                    r.get::<_, String>(1).split_once('=').map(|(n, v)| (n.to_string(), v.to_string()))?;
                Some(DatabaseSetting { role: r.get::<_, Option<String>>(0).map(Ident::from_catalog), name, value })
            })
            .collect(),
        known_settings: c.query("SELECT lower(name) FROM pg_settings", &[]).await?.iter().map(|r| r.get(0)).collect(),
    })
}

/// The privileges on the user's relations (and their columns), schemas, functions,
/// procedures, aggregates and types and on the database, and the default privileges
/// (`pg_default_acl`; `arguments` holds a column's name, or the kind of objects
/// defaulted): one row per privilege (a NULL ACL read as its default,
/// `acldefault`), and one without a privilege for an object that has none.
pub(super) async fn acls(c: &Client) -> Result<Vec<Acl>, tokio_postgres::Error> {
    let sql = format!(
        "WITH objects (class, schema, name, kind, arguments, owner, acl) AS (
             SELECT 'relation', n.nspname::text, c.relname::text, c.relkind::text, NULL, c.relowner,
                    coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {USER_RELATION}
             UNION ALL
             SELECT 'schema', n.nspname::text, n.nspname::text, NULL, NULL, n.nspowner,
                    coalesce(n.nspacl, acldefault('n', n.nspowner))
             FROM pg_namespace n
             WHERE {USER_SCHEMA}
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                               AND e.classid = 'pg_namespace'::regclass AND e.objid = n.oid)
             UNION ALL
             SELECT 'column', n.nspname::text, c.relname::text, c.relkind::text, a.attname::text, c.relowner, a.attacl
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_RELATION}
             UNION ALL
             SELECT 'defaults', coalesce(n.nspname::text, ''), pg_get_userbyid(d.defaclrole)::text, d.defaclobjtype::text,
                    d.defaclobjtype::text, d.defaclrole, d.defaclacl
             FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
             WHERE n.oid IS NULL OR ({USER_SCHEMA})
             UNION ALL
             SELECT 'database', '', d.datname::text, NULL, NULL, d.datdba, coalesce(d.datacl, acldefault('d', d.datdba))
             FROM pg_database d WHERE d.datname = current_database()
             UNION ALL
             SELECT 'routine', n.nspname::text, p.proname::text, p.prokind::text,
                    pg_get_function_identity_arguments(p.oid), p.proowner,
                    coalesce(p.proacl, acldefault('f', p.proowner))
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prokind IN ('f', 'p', 'w', 'a') AND {USER_SCHEMA}
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                               AND e.classid = 'pg_proc'::regclass AND e.objid = p.oid)
             UNION ALL
             SELECT 'type', n.nspname::text, t.typname::text, t.typtype::text, NULL, t.typowner,
                    coalesce(t.typacl, acldefault('T', t.typowner))
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE (t.typtype IN ('e', 'd', 'r')
                    OR (t.typtype = 'c' AND (SELECT k.relkind FROM pg_class k WHERE k.oid = t.typrelid) = 'c'))
               AND {USER_SCHEMA}
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                               AND e.classid = 'pg_type'::regclass AND e.objid = t.oid))
         SELECT o.class, o.schema, o.name, o.kind, o.arguments, pg_get_userbyid(o.owner)::text,
                a.grantee = 0, pg_get_userbyid(a.grantee)::text, a.privilege_type, a.is_grantable
         FROM objects o LEFT JOIN LATERAL aclexplode(o.acl) a ON true"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    let mut acls: Vec<Acl> = Vec::new();
    let mut index: BTreeMap<(String, String, String, Option<String>), usize> = BTreeMap::new();
    for r in &rows {
        let (class, schema, object, kind, arguments): (String, String, String, Option<String>, Option<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let Some(securable) = securable(&class, &schema, &object, kind.as_deref(), arguments.as_deref()) else {
            continue;
        };
        let at = *index.entry((class, schema, object, arguments)).or_insert_with(|| {
            acls.push(Acl { object: securable, owner: Ident::from_catalog(r.get::<_, String>(5)), entries: vec![] });
            acls.len() - 1
        });
        if let Some(privilege) = r.get::<_, Option<String>>(8) {
            let grantee = match r.get::<_, bool>(6) {
                true => RoleName::Public,
                false => RoleName::Role(Ident::from_catalog(r.get::<_, String>(7))),
            };
            acls[at].entries.push(AclEntry { grantee, privilege, grantable: r.get(9) });
        }
    }
    Ok(acls)
}

fn securable(
    class: &str,
    schema: &str,
    object: &str,
    kind: Option<&str>,
    arguments: Option<&str>,
) -> Option<Securable> {
    let qualified = || QualifiedName::from_catalog(schema, object);
    Some(match (class, kind) {
        ("schema", _) => Securable::Schema(Ident::from_catalog(schema)),
        ("database", _) => Securable::Database(Ident::from_catalog(object)),
        ("column", Some(_)) => {
            Securable::Column { relation: qualified(), column: Ident::from_catalog(arguments.unwrap_or_default()) }
        }
        ("defaults", Some(code)) => Securable::Defaults {
            role: Ident::from_catalog(object),
            schema: (!schema.is_empty()).then(|| Ident::from_catalog(schema)),
            objects: DefaultedObjects::from_code(code)?,
        },
        ("relation", Some("S")) => Securable::Sequence(qualified()),
        ("relation", Some(code)) => Securable::Relation { name: qualified(), kind: RelationKind::from_code(code)? },
        ("routine", Some("a")) => Securable::Aggregate {
            name: qualified(),
            arguments: ServerSql::from_catalog(arguments.unwrap_or_default()),
        },
        ("type", Some(code)) => Securable::Type { name: qualified(), domain: code == "d" },
        ("routine", Some(code)) => Securable::Routine {
            name: qualified(),
            arguments: ServerSql::from_catalog(arguments.unwrap_or_default()),
            procedure: code == "p",
        },
        _ => return None,
    })
}

pub(super) async fn row_security(c: &Client) -> Result<Vec<RowSecurity>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE (c.relrowsecurity OR c.relforcerowsecurity) AND c.relkind IN ('r', 'p') AND {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows.iter().map(|r| RowSecurity { relation: name(r, 0, 1), enabled: r.get(2), forced: r.get(3) }).collect())
}

pub(super) async fn policies(c: &Client) -> Result<Vec<Policy>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, p.polname::text, p.polcmd::text, p.polpermissive,
                ARRAY(SELECT CASE WHEN r.oid = 0 THEN NULL ELSE pg_get_userbyid(r.oid)::text END
                      FROM unnest(p.polroles) AS r(oid)),
                pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut roles: Vec<RoleName> = r
                .get::<_, Vec<Option<String>>>(5)
                .into_iter()
                .map(|role| role.map_or(RoleName::Public, |role| RoleName::Role(Ident::from_catalog(role))))
                .collect();
            roles.sort();
            Policy {
                relation: name(r, 0, 1),
                name: Ident::from_catalog(r.get::<_, String>(2)),
                command: r.get(3),
                permissive: r.get(4),
                roles,
                using: optional_sql(r, 6),
                with_check: optional_sql(r, 7),
            }
        })
        .collect())
}
