//! DDL capture (`--capture-ddl`) on the source, its journal on the target, and
//! the operator's way on after a schema change stopped change capture
//! (`pgferry follow --apply-ddl`).
//!
//! Logical replication carries rows, never schema. With the operator's consent,
//! pgferry installs two event triggers on the source (their functions in the
//! `pgferry` schema, `SECURITY DEFINER` under pgferry's role, named after the
//! migration): at `ddl_command_end` a function without a `SET` clause (one
//! would hide them) reads the session's settings that change what the text
//! means ([`pgferry_core::ddl::REPLAY_SETTINGS`]), every name in it
//! schema-qualified, and hands them to a function with a pinned search_path,
//! which writes the client's command text with them into
//! the WAL as a transactional logical message
//! ([`pg_logical_emit_message`](https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION)),
//! so it reaches change capture in its transaction, in order with the rows
//! around it, and only if that transaction commits. A new table (not a
//! partition: those are covered through their root) is added to the
//! migration's publication by the same trigger, inside the creating transaction,
//! so none of its rows precedes its publication; a table without a replica
//! identity goes to the inserts-only publication, as at the copy. Commands on
//! pgferry's own objects (its schema, its publications), on temporary objects
//! and by extensions emit nothing; `sql_drop` marks a drop of only such objects
//! so its `ddl_command_end` emits nothing either.
//!
//! Change capture replays the command on the target ([`crate::apply`]) inside
//! the batch's transaction, before the changes that follow it, and journals it
//! in `pgferry.ddl`. A command it cannot replay exactly stops change capture;
//! the stopped command is journaled (`pending`) and `follow --apply-ddl` runs the
//! operator's equivalent and marks it done, in one target transaction.

use pgferry_core::ddl::REPLAY_SETTINGS;
use pgferry_core::names::{state_schema, MigrationName, STATE_SCHEMA};
use pgferry_core::sql::{Ident, QualifiedName, Sql};
use pgferry_pg::facts::USER_RELATION;
use pgferry_pg::ConnSpec;
use pgferry_pgoutput::Lsn;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, ErrorKind, Result};

/// Installs (or replaces) DDL capture on the source for this migration. Needs
/// the right to create event triggers (a superuser, `rds_superuser` on RDS).
pub async fn install(source: &ConnSpec, name: &MigrationName) -> Result<()> {
    let src = pgferry_pg::connect(source).await?;
    let function = function_name(&name.ddl_trigger());
    let emit = function_name(&name.ddl_emit_function());
    let drop_function = function_name(&name.ddl_drop_trigger());
    let flag = own_ddl_flag(name);
    // The trigger's function has no SET clause: a function's SET search_path
    // hides the caller's, and the command's meaning depends on it. So it runs
    // under the session's search_path (SECURITY DEFINER, for the emitting
    // function in pgferry's schema), which is why every name in it is
    // schema-qualified and it does nothing but read the session's settings and
    // hand them on.
    let mut settings = Sql::new("pg_catalog.jsonb_build_object(");
    for (i, setting) in REPLAY_SETTINGS.iter().enumerate() {
        if i > 0 {
            settings = settings.push(", ");
        }
        settings = settings.literal(setting).push(", pg_catalog.current_setting(").literal(setting).push(")");
    }
    settings = settings.push(")");
    let body = Sql::new("CREATE OR REPLACE FUNCTION ")
        .name(&function)
        .push("() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER AS $pgferry$\nBEGIN\n    PERFORM ")
        .name(&emit)
        .push("(tg_tag, ")
        .append(settings)
        .push(
            ",
        pg_catalog.to_char(pg_catalog.timezone('UTC', pg_catalog.statement_timestamp()), 'YYYY-MM-DD\"T\"HH24:MI:SS.US'));
END
$pgferry$;\n",
        );
    let body = body
        .push("CREATE OR REPLACE FUNCTION ")
        .name(&emit)
    .push(
        "(tag text, settings jsonb, statement_start text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgferry$
DECLARE
    cmd record;
    rel record;
    commands jsonb := '[]';
    unpublished text[] := '{}';
    keyed boolean;
    flag text := ",
    )
    .literal(&flag)
    .push(";\n    publication text := ")
    .literal(name.publication().as_str())
    .push(";\n    insert_only text := ")
    .literal(name.insert_only_publication().as_str())
    .push(";\n    prefix text := ")
    .literal(&name.ddl_message_prefix())
    .push(
        ";
BEGIN
    IF current_setting(flag, true) = 'on' THEN
        PERFORM set_config(flag, 'off', true);
        RETURN;
    END IF;
    -- A refresh changes no schema; the target's materialized views are refreshed by the cutover.
    IF tag = 'REFRESH MATERIALIZED VIEW' THEN
        RETURN;
    END IF;
    FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        CONTINUE WHEN cmd.in_extension OR cmd.schema_name = 'pgferry' OR cmd.schema_name LIKE 'pg\\_temp%'
            OR (cmd.object_type = 'schema' AND cmd.object_identity = 'pgferry')
            OR cmd.object_type IN ('publication', 'publication relation', 'publication namespace', 'subscription', 'event trigger');
        commands := commands || jsonb_build_object('tag', cmd.command_tag, 'type', cmd.object_type, 'identity', cmd.object_identity);
        IF cmd.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS') AND cmd.object_type = 'table'
           AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = cmd.objid AND c.relkind IN ('r', 'p')
                       AND c.relpersistence = 'p' AND NOT c.relispartition) THEN
            SELECT NOT (c.relreplident = 'n'
                OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
                OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
              INTO keyed FROM pg_class c WHERE c.oid = cmd.objid;
            -- Before the copy made the publications (or while a rerun makes them again) there
            -- is none to add to: the copy publishes every table its snapshot holds.
            CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_publication p
                                      WHERE p.pubname = CASE WHEN keyed THEN publication ELSE insert_only END);
            BEGIN
                PERFORM set_config(flag, 'on', true);
                EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', CASE WHEN keyed THEN publication ELSE insert_only END, cmd.objid::regclass);
                PERFORM set_config(flag, 'off', true);
            EXCEPTION WHEN insufficient_privilege THEN
                unpublished := unpublished || cmd.object_identity;
            END;
        END IF;
    END LOOP;
    IF tag = 'ALTER TABLE' THEN
        -- ATTACH PARTITION puts a table the trigger published on its own under its root, which
        -- publishes it now: it leaves the publication. DETACH PARTITION (or SET LOGGED) leaves a
        -- table outside every publication: it is published as a new table is. In the command's
        -- own transaction, so that no row of it is decoded under the wrong coverage.
        FOR rel IN SELECT c.oid, p.pubname FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                   JOIN pg_class c ON c.oid = pr.prrelid
                   WHERE p.pubname IN (publication, insert_only) AND c.relispartition LOOP
            PERFORM set_config(flag, 'on', true);
            EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s', rel.pubname, rel.oid::regclass);
            PERFORM set_config(flag, 'off', true);
        END LOOP;
        FOR rel IN SELECT c.oid, NOT (c.relreplident = 'n'
                       OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
                       OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident))) AS keyed
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
                     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
                     AND NOT EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                                     WHERE pr.prrelid = c.oid AND p.pubname IN (publication, insert_only)) LOOP
            CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_publication p
                                      WHERE p.pubname = CASE WHEN rel.keyed THEN publication ELSE insert_only END);
            BEGIN
                PERFORM set_config(flag, 'on', true);
                EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', CASE WHEN rel.keyed THEN publication ELSE insert_only END, rel.oid::regclass);
                PERFORM set_config(flag, 'off', true);
            EXCEPTION WHEN insufficient_privilege THEN
                unpublished := unpublished || rel.oid::regclass::text;
            END;
        END LOOP;
    END IF;
    IF commands = '[]' AND tag NOT LIKE 'DROP %' THEN
        RETURN;
    END IF;
    -- The role is read here, not taken from the caller.
    PERFORM pg_logical_emit_message(true, prefix, jsonb_build_object(
        'query', current_query(), 'search_path', settings->>'search_path', 'settings', settings,
        'statement_start', statement_start, 'tag', tag,
        'role', CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END,
        'commands', commands, 'unpublished', to_jsonb(unpublished))::text);
END
$pgferry$",
    );
    let drop_body = Sql::new("CREATE OR REPLACE FUNCTION ")
        .name(&drop_function)
        .push(
            "() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgferry$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                   WHERE d.original AND NOT d.is_temporary AND d.schema_name IS DISTINCT FROM 'pgferry'
                     AND NOT (d.object_type = 'schema' AND d.object_name = 'pgferry')
                     AND d.object_type NOT IN ('publication', 'publication relation', 'publication namespace', 'subscription')) THEN
        PERFORM set_config(",
        )
        .literal(&flag)
        .push(
            ", 'on', true);
    END IF;
END
$pgferry$",
        );
    let triggers = [
        (name.ddl_trigger(), " ON ddl_command_end EXECUTE FUNCTION ", &function),
        (name.ddl_drop_trigger(), " ON sql_drop EXECUTE FUNCTION ", &drop_function),
    ];
    // A rerun's triggers are dropped first: left in place, they would capture
    // this installation's own commands into the stream, and change capture
    // would stop at them. In one transaction, so no other session's DDL falls
    // between the old triggers and the new.
    let mut sql = Sql::new("BEGIN;\n");
    for (trigger, _, _) in &triggers {
        sql = sql.push("DROP EVENT TRIGGER IF EXISTS ").ident(trigger).push(";\n");
    }
    sql = sql.push("CREATE SCHEMA IF NOT EXISTS ").ident(&state_schema()).push(";\n").append(body);
    sql = sql.push(";\n").append(drop_body).push(";\n");
    // Only the trigger's function (pgferry's role) calls it.
    sql = sql.push("REVOKE EXECUTE ON FUNCTION ").name(&emit).push("(text, jsonb, text) FROM PUBLIC;\n");
    for (trigger, event, function) in triggers {
        sql = sql.push("CREATE EVENT TRIGGER ").ident(&trigger).push(event).name(function).push("();\n");
    }
    sql = sql.push("COMMIT");
    if let Err(e) = src.batch_execute(sql.as_str()).await {
        let denied = e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE);
        let error = Error::server("installing DDL capture (event triggers) on the source", e);
        return Err(if denied {
            Error::new(ErrorKind::Refused, format!("{}; nothing was changed", error.message)).with_hint(
                "creating an event trigger needs a superuser (rds_superuser on RDS): connect as one, or run without --capture-ddl (a schema change then stops change capture, and pgferry follow --apply-ddl continues)",
            )
        } else {
            error
        });
    }
    Ok(())
}

/// Whether DDL capture is installed for this migration on a server.
pub async fn installed(client: &impl GenericClient, name: &MigrationName) -> Result<bool> {
    client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)", &[&name.ddl_trigger().as_str()])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking for DDL capture's event trigger", e))
}

/// Removes DDL capture (triggers and functions) from a server; whether it was there.
pub async fn remove(client: &Client, name: &MigrationName) -> Result<bool> {
    let was = installed(client, name).await?;
    let mut sql = Sql::new("");
    for trigger in [name.ddl_trigger(), name.ddl_drop_trigger()] {
        sql = sql
            .push("DROP EVENT TRIGGER IF EXISTS ")
            .ident(&trigger)
            .push("; DROP FUNCTION IF EXISTS ")
            .name(&function_name(&trigger))
            .push("(); ");
    }
    sql = sql
        .push("DROP FUNCTION IF EXISTS ")
        .name(&function_name(&name.ddl_emit_function()))
        .push("(text, jsonb, text)");
    client.batch_execute(sql.as_str()).await.map_err(|e| Error::server("removing DDL capture's event triggers", e))?;
    Ok(was)
}

fn function_name(trigger: &Ident) -> QualifiedName {
    QualifiedName::new(state_schema(), trigger.clone())
}

/// The transaction-local setting by which a trigger marks a command as
/// pgferry's own (not to be emitted).
fn own_ddl_flag(name: &MigrationName) -> String {
    format!("{STATE_SCHEMA}.own_ddl_{name}")
}

/// Journals a command change capture stopped at, in its own transaction.
pub(crate) async fn record_pending(
    target: &ConnSpec,
    name: &MigrationName,
    at: Lsn,
    command: &str,
    reason: &str,
) -> Result<()> {
    let dst = pgferry_pg::connect(target).await?;
    crate::state::ensure(&dst, pgferry_core::state::Side::Target).await?;
    dst.execute(
        "INSERT INTO pgferry.ddl (migration, source_lsn, source_command, state, reason)
         SELECT $1, $2::text::pg_lsn, $3, 'pending', $4
         WHERE NOT EXISTS (SELECT 1 FROM pgferry.ddl WHERE migration = $1 AND source_lsn = $2::text::pg_lsn)",
        &[&name.as_str(), &at.to_string(), &command, &reason],
    )
    .await
    .map_err(|e| Error::server("journaling the stopped DDL on the target", e))?;
    Ok(())
}

/// Whether the command at `at` was already handled (replayed, or the operator's).
pub(crate) async fn handled(
    target: &Client,
    name: &MigrationName,
    at: Lsn,
) -> std::result::Result<bool, tokio_postgres::Error> {
    target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pgferry.ddl WHERE migration = $1 AND source_lsn = $2::text::pg_lsn AND state <> 'pending')",
            &[&name.as_str(), &at.to_string()],
        )
        .await
        .map(|r| r.get(0))
}

/// Journals a replayed command inside the batch's transaction.
pub(crate) async fn record_applied(
    target: &Client,
    name: &MigrationName,
    at: Lsn,
    command: &str,
    applied: Option<&str>,
) -> std::result::Result<u64, tokio_postgres::Error> {
    target
        .execute(
            "INSERT INTO pgferry.ddl (migration, source_lsn, source_command, applied, state) VALUES ($1, $2::text::pg_lsn, $3, $4, 'applied')",
            &[&name.as_str(), &at.to_string(), &command, &applied],
        )
        .await
}

/// What `follow --apply-ddl` did.
#[derive(Debug, Serialize)]
pub struct OperatorDdl {
    /// The stopped source command it stands for, when one was journaled.
    pub stands_for: Option<String>,
    pub source_lsn: Option<String>,
}

/// Runs the operator's DDL on the target and journals it, in one transaction:
/// as the replacement of the pending source command, if change capture stopped
/// at one, else as a fix of the target's definitions (a schema change seen
/// without DDL capture). Change capture then resumes from its applied position.
pub async fn apply_operator_ddl(target: &ConnSpec, name: &MigrationName, sql: &str) -> Result<OperatorDdl> {
    let mut dst = pgferry_pg::connect(target).await?;
    crate::state::ensure(&dst, pgferry_core::state::Side::Target).await?;
    let tx = dst.transaction().await.map_err(|e| Error::server("opening a transaction on the target", e))?;
    let pending = tx
        .query_opt(
            "SELECT source_lsn::text, source_command FROM pgferry.ddl WHERE migration = $1 AND state = 'pending'
             ORDER BY source_lsn LIMIT 1 FOR UPDATE",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| Error::server("reading the DDL journal", e))?;
    tx.batch_execute(sql).await.map_err(|e| {
        Error::server("running --apply-ddl on the target", e)
            .with_hint("nothing was changed; correct the SQL and run pgferry follow --apply-ddl again")
    })?;
    let (source_lsn, stands_for) = match &pending {
        Some(row) => (Some(row.get::<_, String>(0)), Some(row.get::<_, String>(1))),
        None => (None, None),
    };
    let journal = match &source_lsn {
        Some(lsn) => {
            tx.execute(
                "UPDATE pgferry.ddl SET state = 'operator', applied = $3, at = now()
                 WHERE migration = $1 AND source_lsn = $2::text::pg_lsn AND state = 'pending'",
                &[&name.as_str(), lsn, &sql],
            )
            .await
        }
        None => {
            tx.execute(
                "INSERT INTO pgferry.ddl (migration, source_command, applied, state) VALUES ($1, '', $2, 'operator')",
                &[&name.as_str(), &sql],
            )
            .await
        }
    };
    journal.map_err(|e| Error::server("journaling the operator's DDL", e))?;
    tx.commit().await.map_err(|e| Error::server("committing the operator's DDL", e))?;
    Ok(OperatorDdl { stands_for, source_lsn })
}

/// What the cutover's go/no-go counts as a pending schema change: the source's
/// relations change capture misses (a table the target lacks is on its way in
/// the stream when DDL capture is on), and a stopped DDL command not yet stood
/// in for by `follow --apply-ddl`.
pub async fn pending_schema_changes(src: &Client, dst: &Client, name: &MigrationName) -> Result<Vec<String>> {
    let capture = installed(src, name).await?;
    let mut pending: Vec<String> = unreplicated(src, dst, name)
        .await?
        .into_iter()
        .filter(|u| !(capture && u.published))
        .map(|u| format!("{} ({})", u.relation, u.why))
        .collect();
    let journaled: bool = dst
        .query_one("SELECT to_regclass('pgferry.ddl') IS NOT NULL", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking for the DDL journal", e))?;
    if journaled {
        let rows = dst
            .query(
                "SELECT source_lsn::text, source_command FROM pgferry.ddl WHERE migration = $1 AND state = 'pending' ORDER BY source_lsn",
                &[&name.as_str()],
            )
            .await
            .map_err(|e| Error::server("reading the DDL journal", e))?;
        pending.extend(rows.iter().map(|r| {
            format!(
                "the DDL at {} ({:?}, stopped; pgferry follow --apply-ddl)",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            )
        }));
    }
    Ok(pending)
}

/// The tables a replayed DDL command rewrote with values each side computed
/// for itself (`pgferry_core::ddl::rewrites_rows`), marked in the replay's
/// transaction and not found equal by a validation since: `"table: why"`. The
/// cutover refuses to start while there are any (its changed rows' check would
/// compare them in full, inside the fence, and roll back on a difference).
pub async fn rows_to_prove(dst: &Client, name: &MigrationName) -> Result<Vec<String>> {
    let marked: bool = dst
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('pgferry.touched_keys') AND attname = 'reason')",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::server("looking for the touched rows' journal", e))?;
    if !marked {
        return Ok(Vec::new());
    }
    let tables = crate::apply::touched::rewritten(dst, name)
        .await
        .map_err(|e| Error::server("reading the tables rewritten by replayed DDL", e))?;
    Ok(tables.into_iter().map(|(table, why)| format!("{table}: {why}")).collect())
}

/// A relation of the source that change capture does not carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreplicated {
    pub relation: String,
    /// In the publication (the target lacks it).
    pub published: bool,
    pub why: String,
}

/// The source's relations created since the copy that change capture misses:
/// tables in no publication of the migration (created without DDL capture, or
/// not added), and tables or partitions the target lacks (created without DDL
/// capture: rows routed into such a partition stop change capture).
pub async fn unreplicated(src: &Client, dst: &Client, name: &MigrationName) -> Result<Vec<Unreplicated>> {
    let fail = |e| Error::server("comparing the source's tables with the publication and the target", e);
    let rows = src
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, c.relispartition,
                        c.relispartition OR EXISTS (SELECT 1 FROM pg_publication_tables p
                                                    WHERE p.pubname IN ($2, $3) AND p.schemaname = n.nspname AND p.tablename = c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND {USER_RELATION}
                 ORDER BY 1, 2"
            ),
            &[&STATE_SCHEMA, &name.publication().as_str(), &name.insert_only_publication().as_str()],
        )
        .await
        .map_err(fail)?;
    let names: Vec<String> = rows
        .iter()
        .map(|r| QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)).to_string())
        .collect();
    let on_target: Vec<bool> = dst
        .query(
            "SELECT to_regclass(n) IS NOT NULL FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i",
            &[&names],
        )
        .await
        .map_err(fail)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut found = Vec::new();
    for ((row, relation), exists) in rows.iter().zip(names).zip(on_target) {
        let (partition, published): (bool, bool) = (row.get(2), row.get(3));
        let why = match (published, exists) {
            (false, _) => "created on the source after the copy and not in the migration's publication: its rows are not replicated",
            (true, false) if partition => "a partition created on the source after the copy that the target lacks: rows routed into it will stop change capture",
            (true, false) => "published, but missing on the target",
            (true, true) => continue,
        };
        found.push(Unreplicated { relation, published, why: why.to_string() });
    }
    Ok(found)
}
