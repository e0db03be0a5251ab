//! The preflight decision: given what was observed on both servers and on this
//! machine, which problems stand between the operator and a migration.
//!
//! This module is a pure function of [`ServerFacts`] and [`ToolFacts`]; gathering
//! them is the PostgreSQL layer's job. Every finding carries the fix, so the report
//! is a to-do list rather than a riddle, and every finding is reported at once.

use serde::Serialize;

/// Which side a finding is about.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Target,
    /// This machine: pg_dump, pg_restore.
    Tools,
}

/// Whether a finding blocks the migration.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Must be fixed before a migration can start.
    Problem,
    /// The migration can run, but the operator should know.
    Warning,
}

/// One thing the preflight found, with its fix.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Finding {
    pub side: Side,
    pub severity: Severity,
    /// A stable identifier for scripts and tests, such as `wal_level`.
    pub code: &'static str,
    /// What is wrong, with the observed values.
    pub what: String,
    /// How to fix it.
    pub fix: String,
    /// The objects concerned, such as table names, when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

/// A table named in a finding, with its size so the operator can weigh the fix.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct TableFact {
    /// The quoted, schema-qualified name.
    pub name: String,
    pub bytes: i64,
}

/// An open transaction on the source.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct OpenTransaction {
    pub pid: i32,
    pub age_seconds: i64,
    pub state: String,
    pub user: String,
}

/// What was observed on one server. Every field is read from the catalog or the
/// settings; see `pgferry_pg::facts`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct ServerFacts {
    pub server_version_num: i32,
    pub server_version: String,
    /// True when `rds.*` settings exist: the server is Amazon RDS or Aurora.
    pub is_rds: bool,
    pub wal_level: String,
    pub is_superuser: bool,
    /// REPLICATION attribute, or membership in `rds_replication` on RDS.
    pub can_replicate: bool,
    pub max_replication_slots: i32,
    pub used_replication_slots: i32,
    pub max_wal_senders: i32,
    pub used_wal_senders: i32,
    /// `max_slot_wal_keep_size` in megabytes; -1 means unlimited.
    pub max_slot_wal_keep_size_mb: i64,
    pub tables_without_identity: Vec<TableFact>,
    pub unlogged_tables: Vec<TableFact>,
    pub large_object_count: i64,
    /// `schema.table.column` of each generated column.
    pub generated_columns: Vec<String>,
    /// Extensions installed in the database (not plpgsql).
    pub extensions: Vec<String>,
    /// Extensions that could be created (`pg_available_extensions`).
    pub available_extensions: Vec<String>,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    pub open_transactions: Vec<OpenTransaction>,
    pub prepared_transactions: Vec<String>,
    /// User tables (outside system schemas), counted.
    pub user_table_count: i64,
    /// The connecting role, and the database it reached.
    pub user_name: String,
    pub database_name: String,
    /// CREATE on the database: publications on the source, schemas on the target.
    pub can_create_in_database: bool,
    /// The tables a publication would name that the connecting role may not
    /// publish (not their owner nor a member of the owner's role, not a
    /// superuser), as `table (owner role)`.
    pub unpublishable_tables: Vec<String>,
    /// pgferry's own replication slots of this database (migrations under way),
    /// by name: a slot near its limit or lost is reported early.
    pub migration_slots: Vec<(String, crate::slot::SlotRow)>,
}

/// Which database a connection reached: the cluster's system identifier and the
/// database's OID. A physical copy shares both with its origin.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct DatabaseIdentity {
    pub system_identifier: String,
    pub database_oid: u32,
}

/// Whether source and target are one and the same database: same system
/// identifier and database OID, and the target's server shows the session
/// pgferry holds on the source (which a physical copy, sharing both
/// identifiers, does not).
pub fn same_database(source: &DatabaseIdentity, target: &DatabaseIdentity, target_shows_source_session: bool) -> bool {
    source == target && target_shows_source_session
}

/// The refusal when source and target are one database, whatever their spelling.
pub fn same_database_finding(source_url: &str, target_url: &str) -> Finding {
    finding(
        Side::Target,
        Severity::Problem,
        "same_database",
        format!(
            "the source ({source_url}) and the target ({target_url}) are the same database (same system identifier and database OID, and the target's server shows pgferry's source session)"
        ),
        "point --target at the new server's database: a migration into its own source would build its slot, publications and schema inside the source".into(),
    )
}

/// What was observed on this machine.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct ToolFacts {
    /// `pg_dump --version` as a version number (such as 180006), when found.
    pub pg_dump_version_num: Option<i32>,
    pub pg_restore_version_num: Option<i32>,
}

/// What the operator plans, which changes what counts as a problem.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CheckPlan {
    /// A full copy needs an empty target; a seeded migration needs the opposite.
    pub full_copy: bool,
    /// Transactions open longer than this are reported.
    pub long_transaction_seconds: i64,
}

impl Default for CheckPlan {
    fn default() -> Self {
        CheckPlan { full_copy: true, long_transaction_seconds: 300 }
    }
}

/// The roles that own objects or hold privileges on the source and are missing on
/// the target of a full copy: the copy then restores no owner and no privilege
/// at all (`pg_restore --no-owner --no-privileges`), so every object is owned by
/// pgferry's role and every REVOKE is lost (a function closed to PUBLIC on the
/// source is open on the target). Roles are global objects, outside the copy.
pub fn missing_roles_finding(missing: &[String], plan: &CheckPlan) -> Option<Finding> {
    if missing.is_empty() || !plan.full_copy {
        return None;
    }
    let mut f = finding(
        Side::Target,
        Severity::Warning,
        "missing_roles",
        format!("{} role(s) that own objects or hold privileges on the source do not exist on the target: the copy would then restore no owner and no privilege at all (every object owned by pgferry's role, every REVOKE lost)", missing.len()),
        "create them on the target before the copy: pgferry roles --source ... --target ... (--dry-run shows the statements) creates every role the target lacks with its attributes, memberships and settings, never a password (RDS lets nobody read the hashes: set them on the target); then run pgferry check again".into(),
    );
    f.objects = missing.to_vec();
    Some(f)
}

/// Slots and WAL senders one migration needs on the source.
const SLOTS_NEEDED: i32 = 1;
const WAL_SENDERS_NEEDED: i32 = 1;

/// Evaluates the observed facts. The result is sorted: problems first, then by side.
pub fn evaluate(source: &ServerFacts, target: &ServerFacts, tools: &ToolFacts, plan: &CheckPlan) -> Vec<Finding> {
    let mut findings = Vec::new();
    check_versions(source, target, &mut findings);
    check_source_replication(source, &mut findings);
    check_privileges(source, target, &mut findings);
    check_source_tables(source, &mut findings);
    check_source_transactions(source, plan, &mut findings);
    check_pair(source, target, plan, &mut findings);
    if plan.full_copy {
        // Only a full copy runs pg_dump and pg_restore; a seeded migration reloads nothing.
        check_tools(source.server_version_num, target.server_version_num, tools, &mut findings);
    }
    findings.sort_by_key(|f| (f.severity, f.side));
    findings
}

/// True when no finding blocks the migration.
pub fn is_ready(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.severity != Severity::Problem)
}

/// The findings that stop `pgferry start`: every problem, except the tables
/// without a replica identity when the operator settled them: declared them
/// insert-only (they are then published for inserts and truncates only, and the
/// source's UPDATEs and DELETEs on them keep working) or consented to REPLICA
/// IDENTITY FULL.
pub fn blocking(findings: &[Finding], keyless_tables_settled: bool) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .filter(|f| !(keyless_tables_settled && f.code == "replica_identity"))
        .collect()
}

fn major(version_num: i32) -> i32 {
    version_num / 10000
}

/// Whether a client program (`pg_dump`, `pg_restore`) of `client_version_num` can
/// work with a server of `server_version_num`: its major version must be at least
/// the server's ([pg_dump's notes](https://www.postgresql.org/docs/current/app-pgdump.html#PG-DUMP-NOTES)).
pub fn client_reads_server(client_version_num: i32, server_version_num: i32) -> bool {
    major(client_version_num) >= major(server_version_num)
}

/// Whether a `pg_restore` of `client_version_num` can restore into a server of
/// `target_version_num`: from 17 on, pg_restore starts its sessions with
/// `SET transaction_timeout = 0`, a setting that servers before 17 reject (the
/// trap of pgcopydb's issue 918).
pub fn client_writes_to_server(client_version_num: i32, target_version_num: i32) -> bool {
    major(client_version_num) < 17 || major(target_version_num) >= 17
}

/// Which of the client installations found (their versions) a copy from a
/// `source_version_num` server to a `target_version_num` one uses: one that reads
/// the source and writes to the target; of those the newest not newer than the
/// target (its restore speaks the target's dialect), else the newest.
pub fn choose_client(found: &[i32], source_version_num: i32, target_version_num: i32) -> Option<usize> {
    let usable = |v: i32| client_reads_server(v, source_version_num) && client_writes_to_server(v, target_version_num);
    let newest = |fits: &dyn Fn(i32) -> bool| {
        found.iter().enumerate().filter(|(_, v)| usable(**v) && fits(**v)).max_by_key(|(_, v)| **v).map(|(i, _)| i)
    };
    newest(&|v| major(v) <= major(target_version_num)).or_else(|| newest(&|_| true))
}

fn finding(side: Side, severity: Severity, code: &'static str, what: String, fix: String) -> Finding {
    Finding { side, severity, code, what, fix, objects: Vec::new() }
}

fn check_versions(source: &ServerFacts, target: &ServerFacts, out: &mut Vec<Finding>) {
    if major(target.server_version_num) < major(source.server_version_num) {
        out.push(finding(
            Side::Target,
            Severity::Problem,
            "target_version",
            format!(
                "the target runs PostgreSQL {} but the source runs {}: a migration cannot go to an older major version",
                target.server_version, source.server_version
            ),
            format!("use a target on PostgreSQL {} or newer", major(source.server_version_num)),
        ));
    }
    if major(source.server_version_num) < 10 {
        out.push(finding(
            Side::Source,
            Severity::Problem,
            "source_version",
            format!("the source runs PostgreSQL {}, which has no logical replication", source.server_version),
            "upgrade the source to PostgreSQL 10 or newer first".into(),
        ));
    }
}

fn check_source_replication(source: &ServerFacts, out: &mut Vec<Finding>) {
    if source.wal_level != "logical" {
        let fix = if source.is_rds {
            "set the parameter rds.logical_replication = 1 in a custom DB parameter group attached to the instance, then reboot it (a short outage: schedule it before the migration day)".to_string()
        } else {
            "run ALTER SYSTEM SET wal_level = logical on the source, then restart it".to_string()
        };
        out.push(finding(
            Side::Source,
            Severity::Problem,
            "wal_level",
            format!("wal_level is {:?}; logical replication needs \"logical\"", source.wal_level),
            fix,
        ));
    }
    if !source.is_superuser && !source.can_replicate {
        let fix = if source.is_rds {
            "GRANT rds_replication TO the migration user (as the master user)"
        } else {
            "ALTER ROLE the migration user WITH REPLICATION (as a superuser)"
        };
        out.push(finding(
            Side::Source,
            Severity::Problem,
            "replication_privilege",
            "the connecting role may not use replication".into(),
            fix.into(),
        ));
    }
    let free_slots = source.max_replication_slots - source.used_replication_slots;
    if free_slots < SLOTS_NEEDED {
        out.push(finding(
            Side::Source,
            Severity::Problem,
            "replication_slots",
            format!(
                "{} of max_replication_slots = {} are in use; pgferry needs {SLOTS_NEEDED} free",
                source.used_replication_slots, source.max_replication_slots
            ),
            "raise max_replication_slots (restart needed) or drop unused slots with pg_drop_replication_slot()".into(),
        ));
    }
    let free_senders = source.max_wal_senders - source.used_wal_senders;
    if free_senders < WAL_SENDERS_NEEDED {
        out.push(finding(
            Side::Source,
            Severity::Problem,
            "wal_senders",
            format!(
                "{} of max_wal_senders = {} are in use; pgferry needs {WAL_SENDERS_NEEDED} free",
                source.used_wal_senders, source.max_wal_senders
            ),
            "raise max_wal_senders (restart needed) or stop an idle replication client".into(),
        ));
    }
    check_migration_slots(source, out);
    if source.max_slot_wal_keep_size_mb < 0 {
        out.push(finding(
            Side::Source,
            Severity::Warning,
            "max_slot_wal_keep_size",
            "max_slot_wal_keep_size is unlimited: if the migration stalls, its slot keeps WAL until the source's disk is full".into(),
            "set max_slot_wal_keep_size to what the disk can spare (for example 50GB); pgferry status shows the headroom".into(),
        ));
    }
}

/// Migrations under way on the source whose slot nears its limit, is about to
/// be lost or is lost ([`crate::slot::judge`]): warnings, since they concern
/// those migrations, not a new one.
fn check_migration_slots(source: &ServerFacts, out: &mut Vec<Finding>) {
    use crate::slot::{judge, SlotNeed};
    let keep = (source.max_slot_wal_keep_size_mb >= 0).then_some(source.max_slot_wal_keep_size_mb * 1024 * 1024);
    for (name, row) in &source.migration_slots {
        let verdict = judge(SlotNeed::Needed, Some(row), keep);
        if let Some((what, remedy)) = verdict.problem(name) {
            let code = if verdict.is_lost() { "slot_lost" } else { "slot_at_risk" };
            out.push(finding(Side::Source, Severity::Warning, code, what, remedy.into()));
        }
    }
}

/// What `start` will do as the connecting roles: create publications over every
/// published table on the source (CREATE on the database and ownership of each
/// table, see [CREATE PUBLICATION](https://www.postgresql.org/docs/current/sql-createpublication.html)),
/// and pgferry's schema plus the user's schemas on the target (CREATE on the database).
fn check_privileges(source: &ServerFacts, target: &ServerFacts, out: &mut Vec<Finding>) {
    for (side, facts, needs) in [
        (
            Side::Source,
            source,
            "create the migration's publications (and, for a seeded migration, pgferry's marker schema)",
        ),
        (Side::Target, target, "create pgferry's journal schema and the source's schemas"),
    ] {
        if !facts.is_superuser && !facts.can_create_in_database {
            out.push(finding(
                side,
                Severity::Problem,
                "create_privilege",
                format!(
                    "the role {} has no CREATE privilege on the database {}: pgferry needs it to {needs}",
                    facts.user_name, facts.database_name
                ),
                format!(
                    "GRANT CREATE ON DATABASE {} TO {} (as the database's owner{})",
                    facts.database_name,
                    facts.user_name,
                    if facts.is_rds { " or the master user" } else { " or a superuser" }
                ),
            ));
        }
    }
    if !source.unpublishable_tables.is_empty() {
        let mut f = finding(
            Side::Source,
            Severity::Problem,
            "table_ownership",
            format!(
                "the role {} does not own {} table(s) that the migration publishes: adding a table to a publication needs its ownership",
                source.user_name,
                source.unpublishable_tables.len()
            ),
            format!(
                "make {} a member of each owner below (GRANT owner TO {}), or migrate as {}",
                source.user_name,
                source.user_name,
                if source.is_rds { "the master user (rds_superuser)" } else { "a superuser" }
            ),
        );
        f.objects = source.unpublishable_tables.clone();
        out.push(f);
    }
}

fn check_source_tables(source: &ServerFacts, out: &mut Vec<Finding>) {
    if !source.tables_without_identity.is_empty() {
        let mut f = finding(
            Side::Source,
            Severity::Problem,
            "replica_identity",
            format!(
                "{} table(s) have no primary key and no usable replica identity: their UPDATEs and DELETEs cannot be replicated, and publishing them would make those statements fail on the source",
                source.tables_without_identity.len()
            ),
            "add a primary key; or let pgferry set REPLICA IDENTITY FULL with --replica-identity-full (journaled, set back by abort and cleanup; each UPDATE and DELETE on them then logs the whole old row on the source and scans the table on the target, so busy large tables lag); or keep them as they are: pgferry publishes them for inserts and truncates only, and the cutover copies them again inside its fence with --recopy-keyless-tables (their sizes below are what that adds to the downtime) or trusts --keyless-tables-are-insert-only for logs and histories".into(),
        );
        f.objects =
            source.tables_without_identity.iter().map(|t| format!("{} ({})", t.name, human_bytes(t.bytes))).collect();
        out.push(f);
    }
    if !source.unlogged_tables.is_empty() {
        let mut f = finding(
            Side::Source,
            Severity::Warning,
            "unlogged_tables",
            "unlogged tables are copied but their later changes are not replicated (they are not written to WAL)"
                .into(),
            "make them logged (ALTER TABLE ... SET LOGGED) or accept that they are copied again inside the cutover"
                .into(),
        );
        f.objects = source.unlogged_tables.iter().map(|t| t.name.clone()).collect();
        out.push(f);
    }
    if source.large_object_count > 0 {
        out.push(finding(
            Side::Source,
            Severity::Warning,
            "large_objects",
            format!(
                "the database holds {} large object(s): their contents are copied, but logical replication does not carry later changes to them",
                source.large_object_count
            ),
            "avoid writing large objects during the migration, or move them to bytea columns".into(),
        ));
    }
    if !source.generated_columns.is_empty() {
        let mut f = finding(
            Side::Source,
            Severity::Warning,
            "generated_columns",
            "generated columns are not copied or replicated: the target computes them from its own copy of the expression".into(),
            "nothing to do unless the expression calls functions that differ between the servers".into(),
        );
        f.objects = source.generated_columns.clone();
        out.push(f);
    }
}

fn check_source_transactions(source: &ServerFacts, plan: &CheckPlan, out: &mut Vec<Finding>) {
    let long: Vec<_> =
        source.open_transactions.iter().filter(|t| t.age_seconds >= plan.long_transaction_seconds).collect();
    if !long.is_empty() {
        let mut f = finding(
            Side::Source,
            Severity::Warning,
            "long_transactions",
            format!(
                "{} transaction(s) have been open for more than {} s: creating the replication slot waits until they end",
                long.len(),
                plan.long_transaction_seconds
            ),
            "let them finish, or end them with pg_terminate_backend(pid), before starting".into(),
        );
        f.objects =
            long.iter().map(|t| format!("pid {} by {} ({} s, {})", t.pid, t.user, t.age_seconds, t.state)).collect();
        out.push(f);
    }
    if !source.prepared_transactions.is_empty() {
        let mut f = finding(
            Side::Source,
            Severity::Problem,
            "prepared_transactions",
            "prepared transactions are pending: creating the replication slot waits until they are committed or rolled back".into(),
            "COMMIT PREPARED or ROLLBACK PREPARED each of them (see pg_prepared_xacts)".into(),
        );
        f.objects = source.prepared_transactions.clone();
        out.push(f);
    }
}

fn check_pair(source: &ServerFacts, target: &ServerFacts, plan: &CheckPlan, out: &mut Vec<Finding>) {
    let missing: Vec<String> =
        source.extensions.iter().filter(|e| !target.available_extensions.contains(e)).cloned().collect();
    if !missing.is_empty() {
        let mut f = finding(
            Side::Target,
            Severity::Problem,
            "extensions",
            format!("{} extension(s) used on the source are not available on the target", missing.len()),
            "install them on the target's server (or on RDS, pick a version that offers them)".into(),
        );
        f.objects = missing;
        out.push(f);
    }
    if source.encoding != target.encoding {
        out.push(finding(
            Side::Target,
            Severity::Problem,
            "encoding",
            format!("the target database's encoding is {} but the source's is {}", target.encoding, source.encoding),
            format!("create the target database with ENCODING '{}'", source.encoding),
        ));
    }
    if source.collate != target.collate || source.ctype != target.ctype {
        out.push(finding(
            Side::Target,
            Severity::Warning,
            "collation",
            format!(
                "the target's collation is {}/{} but the source's is {}/{}: text sorts differently, and unique indexes on text may disagree",
                target.collate, target.ctype, source.collate, source.ctype
            ),
            format!(
                "create the target database with LC_COLLATE '{}' LC_CTYPE '{}'",
                source.collate, source.ctype
            ),
        ));
    }
    if plan.full_copy && target.user_table_count > 0 {
        out.push(finding(
            Side::Target,
            Severity::Problem,
            "target_not_empty",
            format!(
                "the target database already holds {} table(s); a full copy needs an empty database",
                target.user_table_count
            ),
            "point --target at a new, empty database, or use a seeded migration if the target is a copy of the source"
                .into(),
        ));
    }
}

/// What is wrong with the client programs a copy from a `source_version_num`
/// server to a `target_version_num` one would use: nothing when they fit.
pub fn tool_problems(source_version_num: i32, target_version_num: i32, tools: &ToolFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    check_tools(source_version_num, target_version_num, tools, &mut out);
    out
}

fn check_tools(source_version_num: i32, target_version_num: i32, tools: &ToolFacts, out: &mut Vec<Finding>) {
    let needed = major(source_version_num);
    let install = |version: i32| {
        format!(
            "install the PostgreSQL {version} client, e.g. apt-get install postgresql-client-{version}, or set PGFERRY_PG_BIN to its bin directory"
        )
    };
    for (program, found) in [("pg_dump", tools.pg_dump_version_num), ("pg_restore", tools.pg_restore_version_num)] {
        let (what, fix) = match found {
            None => (format!("{program} was not found on PATH"), install(needed)),
            Some(v) if !client_reads_server(v, source_version_num) => (
                format!("{program} is version {} but the source runs {needed}: an older {program} cannot read a newer server", major(v)),
                install(needed),
            ),
            Some(v) if program == "pg_restore" && !client_writes_to_server(v, target_version_num) => (
                format!(
                    "pg_restore is version {} but the target runs {}: pg_restore 17 and newer set transaction_timeout, which servers before 17 reject",
                    major(v),
                    major(target_version_num)
                ),
                install(needed.max(major(target_version_num))),
            ),
            Some(_) => continue,
        };
        out.push(finding(Side::Tools, Severity::Problem, program, what, fix));
    }
}

/// Renders a byte count for people: `12.3 MB`.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_chosen_reads_the_source_and_writes_to_the_target() {
        let found = [150018, 180006, 160010];
        assert_eq!(choose_client(&found, 150018, 150018), Some(0), "15 -> 15: not 16, newer than the target");
        assert_eq!(choose_client(&found, 150018, 180006), Some(1), "15 -> 18: the newest");
        assert_eq!(choose_client(&found, 150018, 160004), Some(2), "15 -> 16: the target's own");
        assert_eq!(choose_client(&found, 180006, 180006), Some(1));
        assert_eq!(choose_client(&[160010, 180006], 150018, 150018), Some(0), "16 writes to 15; 18 does not");
        assert_eq!(choose_client(&[180006], 150018, 150018), None, "18 sets transaction_timeout, which 15 rejects");
        assert_eq!(choose_client(&[150018], 180006, 180006), None, "15 cannot read 18");
        assert_eq!(choose_client(&[], 150018, 150018), None);
    }

    #[test]
    fn a_pg_restore_that_the_target_rejects_is_reported() {
        let old_target = healthy();
        let new_tools = ToolFacts { pg_dump_version_num: Some(180006), pg_restore_version_num: Some(180006) };
        let findings = evaluate(&healthy(), &old_target, &new_tools, &CheckPlan::default());
        assert_eq!(codes(&findings), ["pg_restore"]);
        assert!(
            findings[0].what.contains("transaction_timeout") && findings[0].fix.contains("postgresql-client-15"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_client_reads_servers_up_to_its_own_major_version() {
        assert!(client_reads_server(180006, 150018));
        assert!(client_reads_server(180000, 180006), "minor versions do not matter");
        assert!(!client_reads_server(150018, 180006));
    }

    fn healthy() -> ServerFacts {
        ServerFacts {
            server_version_num: 150018,
            server_version: "15.18".into(),
            wal_level: "logical".into(),
            is_superuser: true,
            can_replicate: true,
            max_replication_slots: 10,
            max_wal_senders: 10,
            max_slot_wal_keep_size_mb: 10240,
            encoding: "UTF8".into(),
            collate: "C.UTF-8".into(),
            ctype: "C.UTF-8".into(),
            user_name: "mover".into(),
            database_name: "app".into(),
            can_create_in_database: true,
            ..ServerFacts::default()
        }
    }

    fn tools() -> ToolFacts {
        ToolFacts { pg_dump_version_num: Some(150018), pg_restore_version_num: Some(150018) }
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_migration_slot_near_its_limit_or_lost_is_warned_about() {
        use crate::slot::SlotRow;
        let mut source = healthy();
        let row = |status: &str, safe: Option<i64>| SlotRow { wal_status: Some(status.into()), safe_wal_size: safe };
        source.migration_slots = vec![
            ("pgferry_a".into(), row("reserved", Some(5 << 30))),
            ("pgferry_b".into(), row("unreserved", Some(-1))),
            ("pgferry_c".into(), row("lost", None)),
        ];
        let findings = evaluate(&source, &healthy(), &tools(), &CheckPlan::default());
        assert_eq!(codes(&findings), ["slot_at_risk", "slot_lost"], "{findings:?}");
        assert!(findings[0].what.contains("pgferry_b is about to be lost"), "{findings:?}");
        assert!(findings[1].fix.contains("pgferry abort"), "{findings:?}");
        assert!(is_ready(&findings), "another migration's slot does not block this one");
    }

    #[test]
    fn a_healthy_pair_is_ready() {
        let findings = evaluate(&healthy(), &healthy(), &tools(), &CheckPlan::default());
        assert!(findings.is_empty(), "{findings:?}");
        assert!(is_ready(&findings));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut source = healthy();
        source.wal_level = "replica".into();
        source.is_superuser = false;
        source.can_replicate = false;
        source.used_replication_slots = 10;
        let mut target = healthy();
        target.server_version_num = 140005;
        target.server_version = "14.5".into();
        target.user_table_count = 3;
        let findings = evaluate(&source, &target, &ToolFacts::default(), &CheckPlan::default());
        let codes = codes(&findings);
        for code in [
            "wal_level",
            "replication_privilege",
            "replication_slots",
            "target_version",
            "target_not_empty",
            "pg_dump",
            "pg_restore",
        ] {
            assert!(codes.contains(&code), "{code} missing from {codes:?}");
        }
        assert!(!is_ready(&findings));
    }

    #[test]
    fn missing_privileges_are_reported_on_each_side_with_the_grant() {
        let mut source = healthy();
        source.is_superuser = false;
        source.can_create_in_database = false;
        source.unpublishable_tables = vec!["public.t (owner app)".into()];
        let mut target = healthy();
        target.is_superuser = false;
        target.can_create_in_database = false;
        let findings = evaluate(&source, &target, &tools(), &CheckPlan::default());
        assert_eq!(codes(&findings), ["create_privilege", "table_ownership", "create_privilege"]);
        assert_eq!((findings[0].side, findings[2].side), (Side::Source, Side::Target));
        assert!(findings[0].fix.contains("GRANT CREATE ON DATABASE app TO mover"), "{findings:?}");
        assert_eq!(findings[1].objects, ["public.t (owner app)"]);
        target.is_superuser = true;
        assert_eq!(
            codes(&evaluate(&healthy(), &target, &tools(), &CheckPlan::default())),
            Vec::<&str>::new(),
            "a superuser needs no grant"
        );
    }

    #[test]
    fn only_the_database_itself_is_the_same_database() {
        let id = |system: &str, oid| DatabaseIdentity { system_identifier: system.into(), database_oid: oid };
        assert!(same_database(&id("7", 5), &id("7", 5), true));
        assert!(!same_database(&id("7", 5), &id("7", 5), false), "a physical copy shares both identifiers");
        assert!(!same_database(&id("7", 5), &id("7", 6), true), "another database of the same server");
        assert!(!same_database(&id("7", 5), &id("8", 5), true));
    }

    #[test]
    fn rds_sources_get_the_parameter_group_fix() {
        let mut source = healthy();
        source.wal_level = "replica".into();
        source.is_rds = true;
        let findings = evaluate(&source, &healthy(), &tools(), &CheckPlan::default());
        assert!(findings[0].fix.contains("rds.logical_replication = 1"));
        assert!(findings[0].fix.contains("reboot"));
    }

    #[test]
    fn warnings_do_not_block() {
        let mut source = healthy();
        source.max_slot_wal_keep_size_mb = -1;
        source.large_object_count = 2;
        let findings = evaluate(&source, &healthy(), &tools(), &CheckPlan::default());
        assert_eq!(codes(&findings), ["max_slot_wal_keep_size", "large_objects"]);
        assert!(is_ready(&findings));
    }

    #[test]
    fn problems_sort_before_warnings() {
        let mut source = healthy();
        source.large_object_count = 1;
        let mut target = healthy();
        target.encoding = "LATIN1".into();
        let findings = evaluate(&source, &target, &tools(), &CheckPlan::default());
        assert_eq!(codes(&findings), ["encoding", "large_objects"]);
    }

    #[test]
    fn old_client_tools_are_a_problem() {
        let mut source = healthy();
        source.server_version_num = 180006;
        let mut target = healthy();
        target.server_version_num = 180006;
        let findings = evaluate(&source, &target, &tools(), &CheckPlan::default());
        assert_eq!(codes(&findings), ["pg_dump", "pg_restore"]);
        assert!(findings[0].what.contains("version 15"));
    }

    #[test]
    fn a_seeded_plan_accepts_a_full_target() {
        let mut target = healthy();
        target.user_table_count = 5;
        let plan = CheckPlan { full_copy: false, ..CheckPlan::default() };
        assert!(evaluate(&healthy(), &target, &tools(), &plan).is_empty());
    }

    #[test]
    fn a_seeded_plan_needs_no_pg_dump() {
        let plan = CheckPlan { full_copy: false, ..CheckPlan::default() };
        let mut source = healthy();
        source.server_version_num = 180006;
        let mut target = healthy();
        target.server_version_num = 180006;
        target.user_table_count = 5;
        let old_tools = ToolFacts { pg_dump_version_num: Some(150018), pg_restore_version_num: None };
        assert!(evaluate(&source, &target, &old_tools, &plan).is_empty());
        target.user_table_count = 0;
        let full = evaluate(&source, &target, &old_tools, &CheckPlan::default());
        assert_eq!(codes(&full), ["pg_dump", "pg_restore"], "a full copy still needs both");
    }

    #[test]
    fn start_accepts_keyless_tables_only_when_declared_insert_only() {
        let mut source = healthy();
        source.tables_without_identity = vec![TableFact { name: "public.log".into(), bytes: 10 }];
        source.wal_level = "replica".into();
        let findings = evaluate(&source, &healthy(), &tools(), &CheckPlan::default());
        let codes = |accept| blocking(&findings, accept).iter().map(|f| f.code).collect::<Vec<_>>();
        assert_eq!(codes(false), vec!["wal_level", "replica_identity"]);
        assert_eq!(codes(true), vec!["wal_level"]);
    }

    #[test]
    fn human_bytes_is_readable() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_300_000), "12.3 MB");
    }

    #[test]
    fn roles_missing_on_the_target_of_a_full_copy_are_named() {
        let missing = vec!["app".to_string(), "reporting".to_string()];
        let f = missing_roles_finding(&missing, &CheckPlan::default()).expect("a finding");
        assert_eq!((f.code, f.severity, f.objects.clone()), ("missing_roles", Severity::Warning, missing.clone()));
        assert!(missing_roles_finding(&[], &CheckPlan::default()).is_none());
        let seeded = CheckPlan { full_copy: false, ..CheckPlan::default() };
        assert!(missing_roles_finding(&missing, &seeded).is_none(), "a physical copy has the source's roles");
    }
}
