//! Reading rules, extended statistics, aggregates, collations and schemas for
//! the parity gate (`pgferry_core::parity::Definition`), and the other objects
//! compared by existence (`pgferry_core::parity::OtherObject`): the user's, not
//! an extension's members. Aggregates and collations have no `pg_get_*def`: their
//! catalog rows are written here as the statement that makes them (with
//! `search_path` empty, every name the server renders is qualified where it
//! must be).

use pgferry_core::names::STATE_SCHEMA;
use pgferry_core::parity::{Definition, Named, OtherObject};
use pgferry_core::sql::Ident;
use pgferry_pg::facts::USER_RELATION;
use tokio_postgres::Client;

use super::code::not_an_extensions;
use super::{name, optional_sql, server_sql, USER_SCHEMA};

pub(super) async fn definitions(c: &Client) -> Result<Vec<Definition>, tokio_postgres::Error> {
    let mut out = rules(c).await?;
    out.extend(statistics(c).await?);
    out.extend(aggregates(c).await?);
    out.extend(collations(c).await?);
    out.extend(schemas(c).await?);
    Ok(out)
}

/// Each rule as `CREATE RULE`, followed, as `pg_dump` writes it, by the
/// `ALTER TABLE` that sets its state when it is not the default (`ev_enabled`:
/// after the switch a rule fires as the target has it set).
async fn rules(c: &Client) -> Result<Vec<Definition>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, r.rulename::text,
                pg_get_ruledef(r.oid) || CASE r.ev_enabled WHEN 'O' THEN '' ELSE
                    format(' ALTER TABLE %s %s RULE %I;', c.oid::regclass,
                           CASE r.ev_enabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA'
                                             ELSE 'ENABLE ALWAYS' END, r.rulename) END
         FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE r.rulename <> '_RETURN' AND {USER_RELATION}"
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Definition {
            object: Named::Rule { relation: name(r, 0, 1), name: Ident::from_catalog(r.get::<_, String>(2)) },
            create: Some(server_sql(r, 3)),
        })
        .collect())
}

async fn statistics(c: &Client) -> Result<Vec<Definition>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, s.stxname::text, pg_get_statisticsobjdef(s.oid)
         FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
         WHERE {USER_SCHEMA} AND {}",
        not_an_extensions("pg_statistic_ext", "s")
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Definition { object: Named::Statistics(name(r, 0, 1)), create: Some(server_sql(r, 2)) })
        .collect())
}

/// Ordinary aggregates as `CREATE AGGREGATE` (every option `pg_aggregate`
/// holds); ordered-set and hypothetical-set ones are compared by the same text
/// but get no statement (their syntax differs): the fix says to use pg_dump.
async fn aggregates(c: &Client) -> Result<Vec<Definition>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), a.aggkind = 'n',
                format('CREATE AGGREGATE %I.%I(%s) (SFUNC = %s, STYPE = %s%s%s%s%s%s%s%s%s%s)',
                    n.nspname, p.proname, pg_get_function_arguments(p.oid),
                    a.aggtransfn::regproc, format_type(a.aggtranstype, NULL),
                    CASE WHEN a.aggtransspace <> 0 THEN ', SSPACE = ' || a.aggtransspace END,
                    CASE WHEN a.aggfinalfn <> 0 THEN ', FINALFUNC = ' || a.aggfinalfn::regproc END,
                    CASE WHEN a.aggfinalextra THEN ', FINALFUNC_EXTRA' END,
                    CASE WHEN a.aggcombinefn <> 0 THEN ', COMBINEFUNC = ' || a.aggcombinefn::regproc END,
                    CASE WHEN a.aggserialfn <> 0 THEN ', SERIALFUNC = ' || a.aggserialfn::regproc
                         || ', DESERIALFUNC = ' || a.aggdeserialfn::regproc END,
                    CASE WHEN a.agginitval IS NOT NULL THEN ', INITCOND = ' || quote_literal(a.agginitval) END,
                    CASE WHEN a.aggmtransfn <> 0 THEN ', MSFUNC = ' || a.aggmtransfn::regproc
                         || ', MINVFUNC = ' || a.aggminvtransfn::regproc
                         || ', MSTYPE = ' || format_type(a.aggmtranstype, NULL)
                         || coalesce(', MINITCOND = ' || quote_literal(a.aggminitval), '')
                         || CASE WHEN a.aggmfinalfn <> 0 THEN ', MFINALFUNC = ' || a.aggmfinalfn::regproc ELSE '' END END,
                    CASE WHEN a.aggsortop <> 0 THEN ', SORTOP = ' || a.aggsortop::regoperator END,
                    CASE p.proparallel WHEN 's' THEN ', PARALLEL = SAFE' WHEN 'r' THEN ', PARALLEL = RESTRICTED' END)
         FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE {USER_SCHEMA} AND {}",
        not_an_extensions("pg_proc", "p")
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Definition {
            object: Named::Aggregate { name: name(r, 0, 1), arguments: server_sql(r, 2) },
            create: r.get::<_, bool>(3).then(|| server_sql(r, 4)),
        })
        .collect())
}

/// Collations as `CREATE COLLATION`: provider, locale (`colllocale` from 17 on,
/// `colliculocale` before, the libc names otherwise) and determinism.
async fn collations(c: &Client) -> Result<Vec<Definition>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text, k.collname::text,
                CASE WHEN k.collprovider = 'c' AND k.collcollate IS DISTINCT FROM k.collctype
                     THEN format('CREATE COLLATION %I.%I (provider = libc, lc_collate = %L, lc_ctype = %L, deterministic = %s)',
                                 n.nspname, k.collname, k.collcollate, k.collctype, k.collisdeterministic::text)
                     ELSE format('CREATE COLLATION %I.%I (provider = %s, locale = %L, deterministic = %s)',
                                 n.nspname, k.collname,
                                 CASE k.collprovider WHEN 'i' THEN 'icu' WHEN 'b' THEN 'builtin' ELSE 'libc' END,
                                 coalesce(to_jsonb(k) ->> 'colllocale', to_jsonb(k) ->> 'colliculocale', k.collcollate),
                                 k.collisdeterministic::text) END
         FROM pg_collation k JOIN pg_namespace n ON n.oid = k.collnamespace
         WHERE {USER_SCHEMA} AND {}",
        not_an_extensions("pg_collation", "k")
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Definition { object: Named::Collation(name(r, 0, 1)), create: optional_sql(r, 2) })
        .collect())
}

async fn schemas(c: &Client) -> Result<Vec<Definition>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname::text FROM pg_namespace n WHERE {USER_SCHEMA} AND {}",
        not_an_extensions("pg_namespace", "n")
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| Definition { object: Named::Schema(Ident::from_catalog(r.get::<_, String>(0))), create: None })
        .collect())
}

/// The other objects of the user's schemas (and, for those in none, made after
/// `initdb`: an oid from `FirstNormalObjectId`, 16384, on), not an extension's,
/// each as `pg_identify_object` names it: the catalog, and its schema column.
const OTHERS: &[(&str, Option<&str>)] = &[
    ("pg_operator", Some("oprnamespace")),
    ("pg_opclass", Some("opcnamespace")),
    ("pg_opfamily", Some("opfnamespace")),
    ("pg_ts_config", Some("cfgnamespace")),
    ("pg_ts_dict", Some("dictnamespace")),
    ("pg_ts_parser", Some("prsnamespace")),
    ("pg_ts_template", Some("tmplnamespace")),
    ("pg_conversion", Some("connamespace")),
    ("pg_cast", None),
    ("pg_foreign_data_wrapper", None),
    ("pg_foreign_server", None),
    ("pg_language", None),
];

pub(super) async fn others(c: &Client) -> Result<Vec<OtherObject>, tokio_postgres::Error> {
    let mut parts: Vec<String> = OTHERS
        .iter()
        .map(|(class, schema)| {
            let place = match schema {
                Some(column) => format!("JOIN pg_namespace n ON n.oid = x.{column} WHERE {USER_SCHEMA} AND"),
                None => "WHERE x.oid >= 16384 AND".to_string(),
            };
            format!(
                "SELECT '{class}'::regclass AS class, x.oid FROM {class} x {place} {}",
                not_an_extensions(class, "x")
            )
        })
        .collect();
    // Range types (their multirange and array types come with them).
    parts.push(format!(
        "SELECT 'pg_type'::regclass, x.oid FROM pg_type x JOIN pg_namespace n ON n.oid = x.typnamespace
         WHERE x.typtype = 'r' AND {USER_SCHEMA} AND {}",
        not_an_extensions("pg_type", "x")
    ));
    let sql = format!(
        "SELECT o.type, o.identity FROM ({}) AS objects, LATERAL pg_identify_object(objects.class, objects.oid, 0) o",
        parts.join(" UNION ALL ")
    );
    let rows = c.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows.iter().map(|r| OtherObject { kind: r.get(0), identity: server_sql(r, 1) }).collect())
}
