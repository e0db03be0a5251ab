//! A DDL message from the source's event trigger ([`crate::ddl`]), replayed in
//! the open batch: the changes before it are sent first, the command runs under
//! the source session's settings (`pgferry_core::ddl::REPLAY_SETTINGS`) and role, it is journaled in `pgferry.ddl` in the same target
//! transaction, and every relation already described is mapped again, so the
//! changes after it meet the new definitions (pgoutput describes a changed
//! table again before its next change too).
//!
//! A command that cannot be replayed exactly ([`plan_replay`]), or whose replay
//! fails on the target, stops change capture before anything of its batch is
//! committed; [`RefusedDdl`] carries it to the journal (`pending`) so that
//! `pgferry follow --apply-ddl` can stand in for it.

use pgferry_core::ddl::{plan_replay, rewrites_rows, DdlMessage, Replay, REPLAY_SETTINGS};
use pgferry_core::sql::QualifiedName;
use pgferry_pgoutput::Lsn;

use super::Applier;
use crate::apply::Stop;
use crate::error::{Error, ErrorKind};

/// Takes on the role the command ran as on the source, when it exists on the
/// target and pgferry's role is a member of it (objects get the source's
/// owner); else the command runs as pgferry's role.
const AS_SOURCE_ROLE: &str = "SELECT set_config('role', r.rolname::text, true) FROM pg_roles r
    WHERE r.rolname = $1 AND r.rolname <> current_user AND pg_has_role(current_user, r.oid, 'MEMBER')";

/// The apply session's values of what a replay sets.
const SAVE_SETTINGS: &str =
    "SELECT s.name, current_setting(s.name) FROM unnest(ARRAY['role', 'check_function_bodies', 'search_path',
    'datestyle', 'intervalstyle', 'timezone', 'standard_conforming_strings', 'default_tablespace',
    'default_table_access_method', 'transform_null_equals', 'array_nulls']) AS s(name)";

/// The source session's settings ([`REPLAY_SETTINGS`]) that the target knows,
/// for the replay's transaction; `check_function_bodies` off (the source
/// accepted the bodies already).
const SOURCE_SETTINGS: &str = "SELECT set_config('check_function_bodies', 'off', true),
    (SELECT count(set_config(s.name, s.value, true)) FROM unnest($1::text[], $2::text[]) AS s(name, value)
     WHERE EXISTS (SELECT 1 FROM pg_settings p WHERE lower(p.name) = lower(s.name)))";

/// The apply session's values back.
const RESTORE_SETTINGS: &str =
    "SELECT count(set_config(s.name, s.value, true)) FROM unnest($1::text[], $2::text[]) AS s(name, value)";

/// A DDL command change capture stopped at.
#[derive(Clone, Debug)]
pub(crate) struct RefusedDdl {
    pub(crate) at: Lsn,
    pub(crate) command: String,
    pub(crate) reason: String,
}

impl Applier<'_> {
    /// Applies the DDL message at `at` (its position in the source's WAL).
    pub(crate) async fn ddl(&mut self, at: Lsn, content: &[u8]) -> Result<(), Stop> {
        let message: DdlMessage = serde_json::from_slice(content).map_err(|e| {
            Stop::Fatal(Error::new(ErrorKind::Server, format!("reading DDL capture's message at {at}: {e}")))
        })?;
        self.send_all_pending().await?;
        self.open_target().await?;
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        let handled = crate::ddl::handled(self.target, self.migration, at)
            .await
            .map_err(|e| Stop::target("reading the DDL journal on the target", e))?;
        if handled {
            return Ok(());
        }
        let sql = match plan_replay(&message, &self.ddl_replayed) {
            Replay::AlreadyRun => return self.mark_rewritten(&message).await,
            Replay::Refuse(reason) => return Err(self.refuse(at, &message, reason)),
            Replay::Run(sql) => sql,
        };
        let target = self.target;
        let settings = message.replay_settings();
        let (names, values): (Vec<&str>, Vec<&str>) = settings
            .iter()
            .filter(|(name, _)| REPLAY_SETTINGS.iter().any(|s| s.eq_ignore_ascii_case(name)))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .unzip();
        let run = async {
            // The apply session's own values, set back after the text (a SET
            // LOCAL between its commands included).
            let saved: Vec<(String, String)> =
                target.query(SAVE_SETTINGS, &[]).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
            target.query(AS_SOURCE_ROLE, &[&message.role]).await?;
            target.query(SOURCE_SETTINGS, &[&names, &values]).await?;
            target.batch_execute(&sql).await?;
            let (names, values): (Vec<String>, Vec<String>) = saved.into_iter().unzip();
            target.query(RESTORE_SETTINGS, &[&names, &values]).await
        };
        if let Err(e) = run.await {
            if e.is_closed() || e.as_db_error().is_none() {
                return Err(Stop::target("replaying a DDL command on the target", e));
            }
            let reason = format!("its replay on the target failed: {}", Error::server("running it", e).message);
            return Err(self.refuse(at, &message, reason));
        }
        crate::ddl::record_applied(self.target, self.migration, at, &message.query, Some(&sql))
            .await
            .map_err(|e| Stop::target("journaling a replayed DDL command on the target", e))?;
        self.ddl_replayed.push(message.replay_key());
        self.batch.replayed_ddl = true;
        self.mark_rewritten(&message).await?;
        self.remap_relations().await
    }

    /// A command that may have rewritten its tables' rows with values each side
    /// computed for itself ([`rewrites_rows`]): the tables are marked whole in
    /// the batch's touched rows, with the reason, in the replay's transaction.
    /// The changed rows' check then compares them in full, and the cutover
    /// refuses to start until a validation found them equal or a repair copied
    /// them again ([`crate::ddl::rows_to_prove`]).
    async fn mark_rewritten(&mut self, message: &DdlMessage) -> Result<(), Stop> {
        let Some(why) = rewrites_rows(message) else { return Ok(()) };
        let identities: Vec<&str> = message
            .commands
            .iter()
            .filter(|c| c.object_type == "table")
            .filter_map(|c| c.identity.as_deref())
            .collect();
        let rows = self
            .target
            .query(
                "SELECT DISTINCT n.nspname::text, c.relname::text FROM unnest($1::text[]) AS t(identity)
                 JOIN pg_class c ON c.oid = to_regclass(t.identity) JOIN pg_namespace n ON n.oid = c.relnamespace",
                &[&identities],
            )
            .await
            .map_err(|e| Stop::target("reading the tables a replayed DDL command rewrote", e))?;
        for row in rows {
            let table = QualifiedName::from_catalog(row.get::<_, String>(0), row.get::<_, String>(1));
            self.batch.touched.rewritten(&table, &why);
        }
        Ok(())
    }

    /// Maps every described relation again (the replayed command may have
    /// changed any of them), and forgets their prepared statements.
    pub(crate) async fn remap_relations(&mut self) -> Result<(), Stop> {
        let oids: Vec<_> = self.relations.keys().copied().collect();
        for oid in oids {
            self.statements.forget(oid);
            let described = self.relations[&oid].described.clone();
            let mapped = self.map(&described).await?;
            if let Some(relation) = self.relations.get_mut(&oid) {
                relation.mapped = mapped;
            }
        }
        Ok(())
    }

    fn refuse(&mut self, at: Lsn, message: &DdlMessage, reason: String) -> Stop {
        let within = self.current.map(|l| format!(" in the source transaction committing at {l}")).unwrap_or_default();
        self.refused_ddl = Some(RefusedDdl { at, command: message.query.clone(), reason: reason.clone() });
        Stop::Fatal(
            Error::new(
                ErrorKind::Precondition,
                format!(
                    "change capture stopped at a schema change on the source ({} at {at}{within}): {reason}; the command: {}",
                    message.tag,
                    message.query.trim()
                ),
            )
            .with_hint(
                "make the target's schema what this command made of the source's: pgferry follow --apply-ddl 'SQL' runs your SQL on the target (an empty string when nothing is needed), journals it in place of the command, and change capture continues from there: nothing lost, nothing applied twice",
            ),
        )
    }
}
