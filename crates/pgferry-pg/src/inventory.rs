//! Reading the inventory (`pgferry_core::inventory`) from the catalog.
//!
//! Everything is read in one `REPEATABLE READ READ ONLY` transaction, so the parts
//! agree with each other, and with `search_path` empty, so that the definitions the
//! server renders (`pg_get_constraintdef` and friends) qualify every name and mean
//! the same thing wherever they are replayed (pg_dump does the same; see
//! [System Catalog Information Functions](https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-CATALOG)).
//!
//! User schemas are all but the system ones and pgferry's own; objects that belong
//! to an extension (`pg_depend.deptype = 'e'`) are left out, the extension makes
//! them. Sequence positions are read from each sequence itself
//! (`SELECT last_value, is_called FROM seq`), which is exact where `pg_sequences`
//! hides `last_value` before the first `nextval` and `max(column)` guesses.
//! PostgreSQL 13 or later (`pg_trigger.tgparentid`).

use pgferry_core::inventory::{
    ColumnRef, Constraint, ConstraintKind, Extension, ForeignKey, ForeignKeyAction, ForeignKeyMatch, IdentityColumn,
    IdentityGeneration, Index, Inventory, ReplicaIdentity, SchemaFilter, Sequence, SequenceKind, SequencePosition,
    Table, TableKind, TableSize, Trigger, TriggerState, View, ViewKind, FORMAT_VERSION,
};
use pgferry_core::names::STATE_SCHEMA;
use pgferry_core::sql::{Ident, QualifiedName, ServerSql, Sql};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, IsolationLevel, Row, Transaction};

/// Schemas `n` that are user schemas and pass the filter ($1 pgferry's schema,
/// $2 the schemas to include or none, $3 the schemas to leave out).
macro_rules! user_schema {
    () => {
        "n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
         AND (cardinality($2::text[]) = 0 OR n.nspname = ANY($2::text[]))
         AND n.nspname <> ALL($3::text[])"
    };
}

/// Relations `c` in user schemas `n`, not made by an extension.
macro_rules! user_relation {
    () => {
        concat!(
            user_schema!(),
            " AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')"
        )
    };
}

/// The column names of `attnums` (an array expression) of relation `rel`, in order.
macro_rules! column_names {
    ($rel:literal, $attnums:literal) => {
        concat!(
            "ARRAY(SELECT a.attname::text FROM unnest(",
            $attnums,
            ") WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = ",
            $rel,
            " AND a.attnum = k.attnum ORDER BY k.ord)"
        )
    };
}

/// Reads the inventory of the connected database.
pub async fn read_inventory(client: &mut Client, filter: &SchemaFilter) -> Result<Inventory, Error> {
    let tx = snapshot(client).await?;
    let params = Params::new(filter);
    let server_version_num = tx.query_one("SELECT current_setting('server_version_num')::int", &[]).await?.get(0);
    let mut inventory = Inventory {
        format_version: FORMAT_VERSION,
        server_version_num,
        schemas: schemas(&tx, &params).await?,
        extensions: extensions(&tx).await?,
        tables: tables(&tx, &params).await?,
        foreign_keys: foreign_keys(&tx, &params).await?,
        constraints: constraints(&tx, &params).await?,
        indexes: indexes(&tx, &params).await?,
        triggers: triggers(&tx, &params).await?,
        sequences: sequences(&tx, &params).await?,
        views: views(&tx, &params).await?,
        large_objects: tx.query_one("SELECT count(*) FROM pg_largeobject_metadata", &[]).await?.get(0),
    };
    tx.commit().await?;
    inventory.sort();
    Ok(inventory)
}

/// Reads only the sequences with their positions (what restore needs from the
/// source, during the downtime).
pub async fn read_sequences(client: &mut Client, filter: &SchemaFilter) -> Result<Vec<Sequence>, Error> {
    let tx = snapshot(client).await?;
    let mut out = sequences(&tx, &Params::new(filter)).await?;
    tx.commit().await?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

async fn snapshot(client: &mut Client) -> Result<Transaction<'_>, Error> {
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    tx.batch_execute("SET LOCAL search_path = ''").await?;
    Ok(tx)
}

struct Params {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Params {
    fn new(filter: &SchemaFilter) -> Params {
        Params { include: filter.include.clone(), exclude: filter.exclude.clone() }
    }

    fn sql(&self) -> [&(dyn ToSql + Sync); 3] {
        [&STATE_SCHEMA, &self.include, &self.exclude]
    }
}

fn name(row: &Row, schema: usize, name: usize) -> QualifiedName {
    QualifiedName::from_catalog(row.get::<_, String>(schema), row.get::<_, String>(name))
}

fn idents(row: &Row, index: usize) -> Vec<Ident> {
    row.get::<_, Vec<String>>(index).into_iter().map(Ident::from_catalog).collect()
}

fn server_sql(row: &Row, index: usize) -> ServerSql {
    ServerSql::from_catalog(row.get::<_, String>(index))
}

async fn schemas(tx: &Transaction<'_>, p: &Params) -> Result<Vec<Ident>, Error> {
    let sql = concat!("SELECT n.nspname::text FROM pg_namespace n WHERE ", user_schema!());
    let rows = tx.query(sql, &p.sql()).await?;
    Ok(rows.iter().map(|r| Ident::from_catalog(r.get::<_, String>(0))).collect())
}

async fn extensions(tx: &Transaction<'_>) -> Result<Vec<Extension>, Error> {
    let rows = tx
        .query(
            "SELECT e.extname::text, e.extversion, n.nspname::text
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Extension { name: r.get(0), version: r.get(1), schema: Ident::from_catalog(r.get::<_, String>(2)) })
        .collect())
}

async fn tables(tx: &Transaction<'_>, p: &Params) -> Result<Vec<Table>, Error> {
    let sql = concat!(
        "SELECT n.nspname::text, c.relname::text, c.relkind = 'p', c.relpersistence = 'u',
                (SELECT ",
        column_names!("c.oid", "i.indkey::int2[]"),
        "
                 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                c.relreplident::text,
                (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = c.oid AND i.indisreplident),
                CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
                (SELECT pn.nspname::text FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent
                   JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE h.inhrelid = c.oid AND c.relispartition),
                (SELECT pc.relname::text FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent
                 WHERE h.inhrelid = c.oid AND c.relispartition),
                CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
                ARRAY(SELECT pn.nspname::text FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent
                        JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                      WHERE h.inhrelid = c.oid AND NOT c.relispartition ORDER BY h.inhseqno),
                ARRAY(SELECT pc.relname::text FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent
                      WHERE h.inhrelid = c.oid AND NOT c.relispartition ORDER BY h.inhseqno),
                ARRAY(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> ''
                      ORDER BY a.attnum),
                ARRAY(SELECT a.attidentity::text FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> ''
                      ORDER BY a.attnum),
                ARRAY(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
                      ORDER BY a.attnum),
                pg_total_relation_size(c.oid), c.reltuples::float8
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND ",
        user_relation!()
    );
    let rows = tx.query(sql, &p.sql()).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let identity_names = idents(r, 13);
            let identity_kinds: Vec<String> = r.get(14);
            let reltuples: f64 = r.get(17);
            Table {
                name: name(r, 0, 1),
                kind: if r.get(2) { TableKind::Partitioned } else { TableKind::Ordinary },
                unlogged: r.get(3),
                primary_key: r
                    .get::<_, Option<Vec<String>>>(4)
                    .unwrap_or_default()
                    .into_iter()
                    .map(Ident::from_catalog)
                    .collect(),
                replica_identity: match r.get::<_, &str>(5) {
                    "f" => ReplicaIdentity::Full,
                    "n" => ReplicaIdentity::Nothing,
                    "i" => match r.get::<_, Option<String>>(6) {
                        Some(index) => ReplicaIdentity::Index(Ident::from_catalog(index)),
                        None => ReplicaIdentity::Nothing,
                    },
                    _ => ReplicaIdentity::Default,
                },
                partition_key: r.get::<_, Option<String>>(7).map(ServerSql::from_catalog),
                partition_of: match (r.get::<_, Option<String>>(8), r.get::<_, Option<String>>(9)) {
                    (Some(s), Some(t)) => Some(QualifiedName::from_catalog(s, t)),
                    _ => None,
                },
                partition_bound: r.get::<_, Option<String>>(10).map(ServerSql::from_catalog),
                inherits: r
                    .get::<_, Vec<String>>(11)
                    .into_iter()
                    .zip(r.get::<_, Vec<String>>(12))
                    .map(|(s, t)| QualifiedName::from_catalog(s, t))
                    .collect(),
                identity_columns: identity_names
                    .into_iter()
                    .zip(identity_kinds)
                    .map(|(column, kind)| IdentityColumn {
                        column,
                        generation: if kind == "a" {
                            IdentityGeneration::Always
                        } else {
                            IdentityGeneration::ByDefault
                        },
                    })
                    .collect(),
                generated_columns: idents(r, 15),
                size: TableSize { bytes: r.get(16), estimated_rows: (reltuples >= 0.0).then_some(reltuples as i64) },
            }
        })
        .collect())
}

async fn foreign_keys(tx: &Transaction<'_>, p: &Params) -> Result<Vec<ForeignKey>, Error> {
    let sql = concat!(
        "SELECT n.nspname::text, c.relname::text, co.conname::text, pg_get_constraintdef(co.oid),
                ",
        column_names!("co.conrelid", "co.conkey"),
        ",
                rn.nspname::text, rc.relname::text,
                ",
        column_names!("co.confrelid", "co.confkey"),
        ",
                co.confupdtype::text, co.confdeltype::text, co.confmatchtype::text,
                co.condeferrable, co.condeferred, co.convalidated
         FROM pg_constraint co
              JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_class rc ON rc.oid = co.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
         WHERE co.contype = 'f' AND co.conparentid = 0 AND ",
        user_relation!()
    );
    let rows = tx.query(sql, &p.sql()).await?;
    Ok(rows
        .iter()
        .map(|r| ForeignKey {
            table: name(r, 0, 1),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            definition: server_sql(r, 3),
            columns: idents(r, 4),
            referenced_table: name(r, 5, 6),
            referenced_columns: idents(r, 7),
            on_update: ForeignKeyAction::from_code(r.get(8)).expect("confupdtype is a known code"),
            on_delete: ForeignKeyAction::from_code(r.get(9)).expect("confdeltype is a known code"),
            match_type: ForeignKeyMatch::from_code(r.get(10)).expect("confmatchtype is a known code"),
            deferrable: r.get(11),
            initially_deferred: r.get(12),
            validated: r.get(13),
        })
        .collect())
}

async fn constraints(tx: &Transaction<'_>, p: &Params) -> Result<Vec<Constraint>, Error> {
    let sql = concat!(
        "SELECT n.nspname::text, c.relname::text, co.conname::text, co.contype::text,
                pg_get_constraintdef(co.oid), co.convalidated, NOT co.conislocal OR co.conparentid <> 0
         FROM pg_constraint co
              JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE co.contype IN ('p', 'u', 'c', 'x') AND ",
        user_relation!()
    );
    let rows = tx.query(sql, &p.sql()).await?;
    Ok(rows
        .iter()
        .map(|r| Constraint {
            table: name(r, 0, 1),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            kind: match r.get::<_, &str>(3) {
                "p" => ConstraintKind::PrimaryKey,
                "u" => ConstraintKind::Unique,
                "c" => ConstraintKind::Check,
                _ => ConstraintKind::Exclusion,
            },
            definition: server_sql(r, 4),
            validated: r.get(5),
            inherited: r.get(6),
        })
        .collect())
}

async fn indexes(tx: &Transaction<'_>, p: &Params) -> Result<Vec<Index>, Error> {
    let sql = concat!(
        "SELECT n.nspname::text, ic.relname::text, c.relname::text, pg_get_indexdef(i.indexrelid),
                i.indisunique, i.indisprimary, i.indisvalid
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE ",
        user_relation!()
    );
    let rows = tx.query(sql, &p.sql()).await?;
    Ok(rows
        .iter()
        .map(|r| Index {
            name: name(r, 0, 1),
            table: name(r, 0, 2),
            definition: server_sql(r, 3),
            unique: r.get(4),
            primary: r.get(5),
            valid: r.get(6),
        })
        .collect())
}

async fn triggers(tx: &Transaction<'_>, p: &Params) -> Result<Vec<Trigger>, Error> {
    let sql = concat!(
        "SELECT n.nspname::text, c.relname::text, t.tgname::text, pg_get_triggerdef(t.oid),
                t.tgenabled::text, t.tgconstraint <> 0, t.tgparentid <> 0
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND ",
        user_relation!()
    );
    let rows = tx.query(sql, &p.sql()).await?;
    Ok(rows
        .iter()
        .map(|r| Trigger {
            table: name(r, 0, 1),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            definition: server_sql(r, 3),
            state: TriggerState::from_code(r.get(4)).expect("tgenabled is O, D, R or A"),
            constraint_trigger: r.get(5),
            cloned_from_parent: r.get(6),
        })
        .collect())
}

async fn sequences(tx: &Transaction<'_>, p: &Params) -> Result<Vec<Sequence>, Error> {
    let sql = concat!(
        "SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL),
                s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
                d.deptype::text, dn.nspname::text, dc.relname::text, a.attname::text
         FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
              LEFT JOIN pg_class dc ON dc.oid = d.refobjid
              LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace
              LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE ",
        user_relation!()
    );
    let rows = tx.query(sql, &p.sql()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq_name = name(r, 0, 1);
        let owned_by =
            match (r.get::<_, Option<String>>(10), r.get::<_, Option<String>>(11), r.get::<_, Option<String>>(12)) {
                (Some(s), Some(t), Some(c)) => {
                    Some(ColumnRef { table: QualifiedName::from_catalog(s, t), column: Ident::from_catalog(c) })
                }
                _ => None,
            };
        let kind = match r.get::<_, Option<&str>>(9) {
            Some("i") => SequenceKind::Identity,
            Some(_) => SequenceKind::Serial,
            None => SequenceKind::Standalone,
        };
        let position =
            tx.query_one(Sql::new("SELECT last_value, is_called FROM ").name(&seq_name).as_str(), &[]).await?;
        out.push(Sequence {
            name: seq_name,
            kind,
            owned_by,
            data_type: r.get(2),
            start: r.get(3),
            increment: r.get(4),
            min_value: r.get(5),
            max_value: r.get(6),
            cache: r.get(7),
            cycle: r.get(8),
            position: SequencePosition { last_value: position.get(0), is_called: position.get(1) },
        });
    }
    Ok(out)
}

async fn views(tx: &Transaction<'_>, p: &Params) -> Result<Vec<View>, Error> {
    let sql = concat!(
        "SELECT n.nspname::text, c.relname::text, c.relkind = 'm', c.relispopulated, pg_get_viewdef(c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND ",
        user_relation!()
    );
    let rows = tx.query(sql, &p.sql()).await?;
    Ok(rows
        .iter()
        .map(|r| View {
            name: name(r, 0, 1),
            kind: if r.get(2) { ViewKind::MaterializedView } else { ViewKind::View },
            populated: r.get(3),
            definition: server_sql(r, 4),
        })
        .collect())
}
