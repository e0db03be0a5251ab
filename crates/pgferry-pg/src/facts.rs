//! Observing a server for the preflight: settings, privileges, replication
//! capacity, and the tables logical replication cannot carry as they are.
//!
//! Only reads; the verdict is `pgferry_core::preflight::evaluate`. User schemas are
//! every schema except the system ones and pgferry's own, and objects that belong to
//! an extension are left out (the extension recreates them).

use pgferry_core::names::STATE_SCHEMA;
use pgferry_core::preflight::{DatabaseIdentity, OpenTransaction, ServerFacts, TableFact};
use pgferry_core::slot::SlotRow;
use pgferry_core::sql::QualifiedName;
use tokio_postgres::{Client, Error};

/// A WHERE clause fragment selecting relations `c` in user schemas `n`, with
/// pgferry's own schema as parameter `$1`: every query that lists "the user's
/// tables" uses it, so they all agree on what those are.
pub const USER_RELATION: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

/// A table `c` (of `pg_class`) whose UPDATEs and DELETEs a publication could not
/// replicate: no primary key under REPLICA IDENTITY DEFAULT, NOTHING, or an
/// identity index that no longer exists.
pub const WITHOUT_REPLICA_IDENTITY: &str = "(c.relreplident = 'n'
    OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
    OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))";

/// Reads everything the preflight needs from one server.
pub async fn server_facts(client: &Client) -> Result<ServerFacts, Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('server_version'),
                    current_setting('wal_level'),
                    EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'rds.%'),
                    r.rolsuper,
                    r.rolreplication OR EXISTS (
                        SELECT 1 FROM pg_roles g
                        WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'member')),
                    current_setting('max_replication_slots')::int,
                    (SELECT count(*) FROM pg_replication_slots)::int,
                    current_setting('max_wal_senders')::int,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int,
                    coalesce((SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'), -1),
                    (SELECT count(*) FROM pg_largeobject_metadata),
                    pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text,
                    current_user::text, current_database()::text,
                    has_database_privilege(d.oid, 'CREATE')
             FROM pg_roles r, pg_database d
             WHERE r.rolname = current_user AND d.datname = current_database()",
            &[],
        )
        .await?;
    Ok(ServerFacts {
        server_version_num: row.get(0),
        server_version: row.get(1),
        wal_level: row.get(2),
        is_rds: row.get(3),
        is_superuser: row.get(4),
        can_replicate: row.get(5),
        max_replication_slots: row.get(6),
        used_replication_slots: row.get(7),
        max_wal_senders: row.get(8),
        used_wal_senders: row.get(9),
        max_slot_wal_keep_size_mb: row.get(10),
        large_object_count: row.get(11),
        encoding: row.get(12),
        collate: row.get(13),
        ctype: row.get(14),
        tables_without_identity: tables_without_identity(client).await?,
        unlogged_tables: unlogged_tables(client).await?,
        generated_columns: generated_columns(client).await?,
        extensions: strings(client, "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
            .await?,
        available_extensions: strings(client, "SELECT name::text FROM pg_available_extensions ORDER BY 1").await?,
        open_transactions: open_transactions(client).await?,
        prepared_transactions: strings(
            client,
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared",
        )
        .await?,
        user_table_count: user_table_count(client).await?,
        user_name: row.get(15),
        database_name: row.get(16),
        can_create_in_database: row.get(17),
        unpublishable_tables: unpublishable_tables(client).await?,
        migration_slots: migration_slots(client).await?,
    })
}

/// pgferry's permanent logical slots of this database, with their WAL state.
async fn migration_slots(client: &Client) -> Result<Vec<(String, SlotRow)>, Error> {
    let rows = client
        .query(
            "SELECT slot_name::text, wal_status, safe_wal_size FROM pg_replication_slots
             WHERE slot_type = 'logical' AND NOT temporary AND database = current_database()
               AND starts_with(slot_name::text, $1)
             ORDER BY 1",
            &[&pgferry_core::names::PREFIX],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), SlotRow { wal_status: r.get(1), safe_wal_size: r.get(2) })).collect())
}

/// The tables a publication of the migration names (logged leaf tables of user
/// schemas) that the connecting role does not own, directly or through a role it
/// is a member of; none for a superuser.
async fn unpublishable_tables(client: &Client) -> Result<Vec<String>, Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, pg_get_userbyid(c.relowner)::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_RELATION} AND c.relkind = 'r' AND c.relpersistence = 'p'
           AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
           AND NOT pg_has_role(current_user, c.relowner, 'USAGE')
         ORDER BY 1, 2"
    );
    let rows = client.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let table = QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1));
            format!("{table} (owner {})", r.get::<_, String>(2))
        })
        .collect())
}

/// The identity of the database `client` reached. The system identifier needs
/// `pg_control_system()`; where the role may not call it, it reads as empty on
/// both sides and the database OID and the session check decide.
pub async fn identity(client: &Client) -> Result<DatabaseIdentity, Error> {
    let oid: u32 =
        client.query_one("SELECT oid FROM pg_database WHERE datname = current_database()", &[]).await?.get(0);
    let system_identifier = match client.query_one("SELECT system_identifier::text FROM pg_control_system()", &[]).await
    {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => String::new(),
        Err(e) => return Err(e),
    };
    Ok(DatabaseIdentity { system_identifier, database_oid: oid })
}

/// Whether the server behind `target` shows the session `source` holds: its
/// backend pid in the same database, under the same application name (visible
/// to every role in `pg_stat_activity`). True only when both reach one server.
pub async fn shows_session_of(target: &Client, source: &Client) -> Result<bool, Error> {
    let row = source
        .query_one(
            "SELECT pid, datid, coalesce(application_name, '') FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    let (pid, datid, application): (i32, u32, String) = (row.get(0), row.get(1), row.get(2));
    Ok(target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE pid = $1 AND datid = $2 AND application_name = $3 AND pid <> pg_backend_pid())",
            &[&pid, &datid, &application],
        )
        .await?
        .get(0))
}

async fn strings(client: &Client, sql: &str) -> Result<Vec<String>, Error> {
    Ok(client.query(sql, &[]).await?.iter().map(|r| r.get(0)).collect())
}

async fn tables(client: &Client, condition: &str) -> Result<Vec<TableFact>, Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, pg_total_relation_size(c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_RELATION} AND {condition}
         ORDER BY 1, 2"
    );
    let rows = client.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| TableFact {
            name: QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)).to_string(),
            bytes: r.get(2),
        })
        .collect())
}

/// Leaf tables whose UPDATEs and DELETEs a publication could not carry: replica
/// identity NOTHING, DEFAULT without a primary key, or USING INDEX without the index.
async fn tables_without_identity(client: &Client) -> Result<Vec<TableFact>, Error> {
    tables(client, &format!("c.relkind = 'r' AND c.relpersistence = 'p' AND {WITHOUT_REPLICA_IDENTITY}")).await
}

async fn unlogged_tables(client: &Client) -> Result<Vec<TableFact>, Error> {
    tables(client, "c.relkind IN ('r', 'p') AND c.relpersistence = 'u'").await
}

async fn generated_columns(client: &Client) -> Result<Vec<String>, Error> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_RELATION} AND c.relkind IN ('r', 'p') AND a.attnum > 0
               AND NOT a.attisdropped AND a.attgenerated <> ''
         ORDER BY 1, 2, a.attnum"
    );
    let rows = client.query(&sql, &[&STATE_SCHEMA]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let table = QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1));
            format!("{table}.{}", pgferry_core::sql::Ident::from_catalog(r.get::<_, String>(2)))
        })
        .collect())
}

async fn open_transactions(client: &Client) -> Result<Vec<OpenTransaction>, Error> {
    let rows = client
        .query(
            "SELECT pid, extract(epoch FROM now() - xact_start)::bigint, coalesce(state, ''), coalesce(usename::text, '')
             FROM pg_stat_activity
             WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
             ORDER BY xact_start",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OpenTransaction { pid: r.get(0), age_seconds: r.get(1), state: r.get(2), user: r.get(3) })
        .collect())
}

async fn user_table_count(client: &Client) -> Result<i64, Error> {
    let sql = format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_RELATION} AND c.relkind IN ('r', 'p')"
    );
    Ok(client.query_one(&sql, &[&STATE_SCHEMA]).await?.get(0))
}
