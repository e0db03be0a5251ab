//! A whole instance (`--all-databases`): the source server's databases read and
//! planned ([`pgferry_core::instance::plan`]), each paired with the target
//! server's database of the same name ([`paired`]), on which the per-database
//! commands (check here; status and validation in the CLI) run.
//!
//! The URLs name the servers; their database is only the one pgferry connects to
//! first. A database the target server lacks is reported with the statement that
//! creates it as the source has it (encoding, collation and character type,
//! locale provider, owner) from `template0`, and `start --all-databases` runs
//! it ([`create_missing`]), so that nothing the source's collations sort
//! differs on the target
//! ([CREATE DATABASE](https://www.postgresql.org/docs/current/sql-createdatabase.html)).

use pgferry_core::instance::{
    capacity_problems, plan, InstancePlan, ReplicationCapacity, Selection, SourceDatabase, UnknownDatabase,
};
use pgferry_core::names::MigrationName;
use pgferry_core::phase::MigrationPhase;
use pgferry_core::preflight::{CheckPlan, Finding};
use pgferry_core::sql::{Ident, Sql};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::check::CheckReport;
use crate::error::{Error, ErrorKind, Result};

/// The instance's check: the plan, and each database's report.
#[derive(Debug, Serialize)]
pub struct InstanceCheck {
    pub plan: InstancePlan,
    pub databases: Vec<DatabaseCheck>,
    /// What moving every database side by side lacks on the source server
    /// ([`capacity_problems`]).
    pub capacity: Vec<Finding>,
    /// Every database moved is ready, none is missing on the target, and the
    /// source server has room for all of them at once.
    pub ready: bool,
}

/// One database's part of the instance's check.
#[derive(Debug, Serialize)]
pub struct DatabaseCheck {
    pub database: String,
    /// `None` when the target server lacks the database.
    pub report: Option<CheckReport>,
    /// The statement that creates it on the target as the source has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_on_target: Option<String>,
    /// For a database the target server lacks, what its start would find
    /// before creating it ([`crate::check::check_before_creation`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings_before_creation: Vec<Finding>,
}

/// Reads the source server's databases and decides which are moved.
pub async fn planned(source: &ConnSpec, selection: &Selection) -> Result<InstancePlan> {
    let src = pgferry_pg::connect(source).await?;
    let rows = src
        .query("SELECT datname::text, datistemplate, datallowconn FROM pg_database", &[])
        .await
        .map_err(|e| Error::server("listing the source server's databases", e))?;
    let databases: Vec<SourceDatabase> = rows
        .iter()
        .map(|r| SourceDatabase { name: r.get(0), is_template: r.get(1), allows_connections: r.get(2) })
        .collect();
    plan(&databases, selection).map_err(|UnknownDatabase(name)| {
        Error::new(ErrorKind::Usage, format!("the source server has no database {name:?}")).with_hint(
            "give the names as the source lists them (psql -l), or leave --database and --exclude-database out",
        )
    })
}

/// A database of the plan, named in both servers' URLs.
#[derive(Debug)]
pub struct PairedDatabase {
    pub database: String,
    pub source: ConnSpec,
    /// `None` when the target server lacks it.
    pub target: Option<ConnSpec>,
}

/// The plan's databases, each paired with the target server's database of the
/// same name.
pub async fn paired(
    source: &ConnSpec,
    target: &ConnSpec,
    selection: &Selection,
) -> Result<(InstancePlan, Vec<PairedDatabase>)> {
    let instance = planned(source, selection).await?;
    let dst = pgferry_pg::connect(target).await?;
    let mut databases = Vec::new();
    for name in &instance.databases {
        let on_target = dst
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[name])
            .await
            .map_err(|e| Error::server("listing the target server's databases", e))?
            .is_some();
        databases.push(PairedDatabase {
            database: name.clone(),
            source: source.with_dbname(name),
            target: on_target.then(|| target.with_dbname(name)),
        });
    }
    Ok((instance, databases))
}

/// The databases of the plan the target server lacks, as the source defines
/// them, to be made by [`create_missing`]. Refused, naming each, when the
/// target server's release cannot make one as the source has it (its locale
/// provider or ICU rules are newer): nothing is created then, and this comes
/// before `start --roles` creates anything.
pub async fn missing_definitions(target: &ConnSpec, paired: &[PairedDatabase]) -> Result<Vec<DatabaseDefinition>> {
    let mut definitions = Vec::new();
    for db in paired.iter().filter(|db| db.target.is_none()) {
        let src = pgferry_pg::connect(&db.source).await?;
        definitions.push(definition(&src).await?);
    }
    if definitions.is_empty() {
        return Ok(definitions);
    }
    let dst = pgferry_pg::connect(target).await?;
    let version: i32 = dst
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::server("reading the target server's version", e))?
        .get(0);
    let problems: Vec<String> = definitions.iter().filter_map(|d| d.beyond(version)).collect();
    if !problems.is_empty() {
        return Err(Error::new(ErrorKind::Refused, format!("{}; nothing was created or started", problems.join("; ")))
            .with_hint(
                "move to a target server of that release or later, or leave the database out with --exclude-database",
            ));
    }
    Ok(definitions)
}

/// Refuses, naming each, a database to create that the target's user could
/// not create as the source has it: the user may not create databases (no
/// CREATEDB), its owner is missing on the target server and `start --roles`
/// is not to create it (`to_be_created`: the roles its dry run plans;
/// `pgferry roles` leaves some out, a provider's own, say), or the user may not
/// give a database to its owner (`CREATE DATABASE ... OWNER` needs membership
/// in the owner's role, with SET from 16 on, and its privileges inherited for
/// the database's start, unless a superuser; a role the user creates makes it
/// a member only from 16 on, with the options `createrole_self_grant` names).
/// `unchanged`: what the refusal
/// left as it was, for its message.
pub async fn refuse_lacking_owners(
    target: &ConnSpec,
    definitions: &[DatabaseDefinition],
    to_be_created: &[String],
    unchanged: &str,
) -> Result<()> {
    if definitions.is_empty() {
        return Ok(());
    }
    let dst = pgferry_pg::connect(target).await?;
    let read = |e| Error::server("reading the target server's roles", e);
    let me = dst
        .query_one(
            "SELECT current_user::text, rolsuper, rolcreatedb, current_setting('server_version_num')::int,
                    coalesce(current_setting('createrole_self_grant', true), ''), rolcreaterole
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(read)?;
    let (user, superuser, createdb, version): (String, bool, bool, i32) = (me.get(0), me.get(1), me.get(2), me.get(3));
    // From 16 on, a role the user creates makes it a member with these options.
    let self_grant: String = me.get(4);
    let createrole: bool = me.get(5);
    let member_of_created =
        version >= 160000 && createrole && ["set", "inherit"].iter().all(|o| self_grant.to_lowercase().contains(o));
    let mut problems = Vec::new();
    if !superuser && !createdb {
        problems.push(format!("the target's user {user:?} may not create databases (it has no CREATEDB)"));
    }
    let right = if version >= 160000 { "SET" } else { "MEMBER" };
    for d in definitions {
        let exists =
            dst.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&d.owner]).await.map_err(read)?.is_some();
        if !exists && !to_be_created.contains(&d.owner) {
            problems
                .push(format!("database {:?} is owned by role {:?}, which the target server lacks", d.name, d.owner));
            continue;
        }
        if superuser || d.owner == user {
            continue;
        }
        if !exists && member_of_created {
            continue;
        }
        if !exists {
            problems.push(format!(
                "database {:?} is to be owned by role {:?}, which --roles would create, but the target's user {user:?} would not be a member of it (creating a role makes its creator one only from 16 on, with the options of its createrole_self_grant setting: 'set, inherit'), and CREATE DATABASE ... OWNER needs that",
                d.name, d.owner
            ));
            continue;
        }
        // Membership to give it the database (SET from 16 on), and its
        // privileges inherited: the database's start then acts as its owner.
        let may: bool = dst
            .query_one(
                "SELECT pg_has_role(current_user, $1::text::name, $2::text)
                    AND pg_has_role(current_user, $1::text::name, 'USAGE')",
                &[&d.owner, &right],
            )
            .await
            .map_err(read)?
            .get(0);
        if !may {
            problems.push(format!(
                "database {:?} is owned by role {:?}, of which the target's user {user:?} is no member with {}INHERIT: it could not create the database or act as its owner",
                d.name,
                d.owner,
                if version >= 160000 { "SET and " } else { "" }
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Refused, format!("{}; {unchanged}", problems.join("; "))).with_hint(
        "create the source's roles on the target first (pgferry roles --source ... --target ...; never their passwords; a role it leaves out, it names them, you create yourself); the target's user needs CREATEDB and to be a member of each owner's role: GRANT owner TO user (WITH SET TRUE, INHERIT TRUE from 16 on), as a superuser, the master user or the role's admin; or create the databases yourself (pgferry check --all-databases prints each CREATE DATABASE)",
    ))
}

/// Creates on the target server every database [`missing_definitions`] found,
/// as the source has it, and pairs each; the copy then carries the database's
/// settings, comment and connection limit like any other database's
/// (`parity::database::carry`). Every owner must exist on the target first:
/// one missing refuses the whole run before any database is created, naming
/// each. Run again after a kill, a database created already is simply paired.
/// Returns the names created.
pub async fn create_missing(
    target: &ConnSpec,
    paired: &mut [PairedDatabase],
    definitions: Vec<DatabaseDefinition>,
) -> Result<Vec<String>> {
    if definitions.is_empty() {
        return Ok(Vec::new());
    }
    refuse_lacking_owners(target, &definitions, &[], "no database was created and nothing started").await?;
    let dst = pgferry_pg::connect(target).await?;
    let mut created = Vec::new();
    for d in definitions {
        let database = d.name.clone();
        let statement = d.create().into_string();
        dst.batch_execute(&statement).await.map_err(|e| {
            Error::server(&format!("creating database {database:?} on the target"), e).with_hint(format!(
                "the target's user needs CREATEDB and membership in the owner's role; or create it yourself: {statement}"
            ))
        })?;
        let db = paired.iter_mut().find(|db| db.database == database).expect("planned above");
        db.target = Some(target.with_dbname(&database));
        created.push(database);
    }
    Ok(created)
}

/// Checks every database of the plan against the target server's database of
/// the same name.
pub async fn check(
    source: &ConnSpec,
    target: &ConnSpec,
    selection: &Selection,
    plan: &CheckPlan,
) -> Result<InstanceCheck> {
    let (instance, paired) = paired(source, target, selection).await?;
    let mut databases = Vec::new();
    for db in paired {
        let (report, create_on_target, findings_before_creation) = match &db.target {
            Some(target) => (Some(crate::check::check(&db.source, target, plan).await?), None, Vec::new()),
            None => (
                None,
                Some(create_statement(&pgferry_pg::connect(&db.source).await?).await?.into_string()),
                crate::check::check_before_creation(&db.source, target, plan).await?,
            ),
        };
        databases.push(DatabaseCheck { database: db.database, report, create_on_target, findings_before_creation });
    }
    let capacity = capacity_problems(
        &replication_capacity(source, None, &instance.databases).await?,
        instance.databases.len(),
        true,
    );
    let ready = capacity.is_empty() && databases.iter().all(|d| d.report.as_ref().is_some_and(|r| r.ready));
    Ok(InstanceCheck { plan: instance, databases, capacity, ready })
}

/// Refuses, before anything is made, a plan whose databases do not all fit in
/// the source server's replication capacity at once ([`capacity_problems`]).
/// `streaming`: they will follow side by side in this run.
/// `resuming`: how many of them resume a copy ([`resuming_copies`]).
pub async fn refuse_without_room(
    source: &ConnSpec,
    migration: &MigrationName,
    databases: &[String],
    streaming: bool,
    resuming: usize,
) -> Result<()> {
    let mut capacity = replication_capacity(source, Some(migration), databases).await?;
    capacity.resuming_copies = i32::try_from(resuming).unwrap_or(i32::MAX);
    let problems = capacity_problems(&capacity, databases.len(), streaming);
    if problems.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = problems.iter().map(|f| f.what.as_str()).collect();
    let fix: Vec<&str> = problems.iter().map(|f| f.fix.as_str()).collect();
    Err(Error::new(ErrorKind::Refused, format!("{}; nothing was started", what.join("; "))).with_hint(fix.join("; ")))
}

/// How many of the paired databases hold `migration`'s copy stopped while it
/// read the tables: `start` resumes each under a temporary slot beside its own
/// ([`crate::copy`]), one slot more than the slot it kept.
pub async fn resuming_copies(paired: &[PairedDatabase], migration: &MigrationName) -> Result<usize> {
    let mut resuming = 0;
    for target in paired.iter().filter_map(|db| db.target.as_ref()) {
        let dst = pgferry_pg::connect(target).await?;
        let phase = crate::copy::journal::phase_if_journaled(&dst, migration).await?;
        resuming += usize::from(matches!(phase, Some((MigrationPhase::Data, _))));
    }
    Ok(resuming)
}

/// The source server's replication capacity for `databases`. A database whose
/// slot for `migration` exists already keeps it; with no migration named
/// (`check`), any pgferry migration's slot there counts as kept.
pub async fn replication_capacity(
    source: &ConnSpec,
    migration: Option<&MigrationName>,
    databases: &[String],
) -> Result<ReplicationCapacity> {
    let src = pgferry_pg::connect(source).await?;
    let doing = "reading the source server's replication slots and WAL senders";
    let row = src
        .query_one(
            "SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots)::int,
                    current_setting('max_wal_senders')::int,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int",
            &[],
        )
        .await
        .map_err(|e| Error::server(doing, e))?;
    let slots = src
        .query(
            "SELECT s.slot_name::text, d.oid FROM pg_replication_slots s JOIN pg_database d ON d.datname = s.database
             WHERE NOT s.temporary AND d.datname = ANY($1)",
            &[&databases],
        )
        .await
        .map_err(|e| Error::server(doing, e))?;
    let mut kept: Vec<u32> = slots
        .iter()
        .filter_map(|r| {
            let (slot, database): (String, u32) = (r.get(0), r.get(1));
            let owner = MigrationName::from_object_name(&slot)?;
            let ours = migration.is_none_or(|m| m == &owner);
            (ours && slot == owner.slot(database)).then_some(database)
        })
        .collect();
    kept.sort_unstable();
    kept.dedup();
    Ok(ReplicationCapacity {
        max_slots: row.get(0),
        used_slots: row.get(1),
        own_slots: i32::try_from(kept.len()).unwrap_or(i32::MAX),
        resuming_copies: 0,
        max_senders: row.get(2),
        used_senders: row.get(3),
    })
}

/// `CREATE DATABASE` for the database `src` is connected to, as the source has
/// it.
async fn create_statement(src: &Client) -> Result<Sql> {
    Ok(definition(src).await?.create())
}

/// The definition of the database `src` is connected to. Columns that differ
/// between releases are read through `to_jsonb`.
async fn definition(src: &Client) -> Result<DatabaseDefinition> {
    let row = src
        .query_one(
            "SELECT d.datname::text, pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding),
                    d.datcollate::text, d.datctype::text, coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'),
                    coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale'),
                    to_jsonb(d) ->> 'daticurules'
             FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the source database's definition", e))?;
    Ok(DatabaseDefinition {
        name: row.get(0),
        owner: row.get(1),
        encoding: row.get(2),
        collate: row.get(3),
        ctype: row.get(4),
        provider: row.get(5),
        locale: row.get(6),
        icu_rules: row.get(7),
    })
}

/// A database as `pg_database` describes it, as far as `CREATE DATABASE`
/// takes it.
pub struct DatabaseDefinition {
    name: String,
    owner: String,
    encoding: String,
    collate: String,
    ctype: String,
    /// `datlocprovider`: `c` (libc), `i` (ICU), `b` (builtin, 17+).
    provider: String,
    locale: Option<String>,
    /// An ICU database's tailoring rules (16+): they change how its text sorts
    /// and compares, so a database created without them orders its indexes
    /// and answers its unique constraints differently.
    icu_rules: Option<String>,
}

impl DatabaseDefinition {
    /// Why a server of `version` (`server_version_num`) cannot create it as
    /// the source has it: its locale provider, or its ICU rules, came later.
    fn beyond(&self, version: i32) -> Option<String> {
        let needs = match self.provider.as_str() {
            "i" if self.icu_rules.as_ref().is_some_and(|r| !r.is_empty()) => (160000, "ICU rules"),
            "i" => (150000, "the ICU locale provider"),
            "b" => (170000, "the builtin locale provider"),
            _ => return None,
        };
        (version < needs.0).then(|| {
            format!(
                "database {:?} uses {}, which PostgreSQL {} and later have and the target server ({}) has not",
                self.name,
                needs.1,
                needs.0 / 10000,
                version / 10000
            )
        })
    }

    fn create(self) -> Sql {
        let mut sql = Sql::new("CREATE DATABASE ")
            .ident(&Ident::from_catalog(self.name))
            .push(" OWNER ")
            .ident(&Ident::from_catalog(self.owner))
            .push(" TEMPLATE template0 ENCODING ")
            .literal(&self.encoding)
            .push(" LC_COLLATE ")
            .literal(&self.collate)
            .push(" LC_CTYPE ")
            .literal(&self.ctype);
        sql = match (self.provider.as_str(), self.locale) {
            ("i", Some(locale)) => sql.push(" LOCALE_PROVIDER icu ICU_LOCALE ").literal(&locale),
            ("b", Some(locale)) => sql.push(" LOCALE_PROVIDER builtin BUILTIN_LOCALE ").literal(&locale),
            _ => sql,
        };
        match (self.provider.as_str(), self.icu_rules) {
            ("i", Some(rules)) if !rules.is_empty() => sql.push(" ICU_RULES ").literal(&rules),
            _ => sql,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(provider: &str, locale: Option<&str>, icu_rules: Option<&str>) -> DatabaseDefinition {
        DatabaseDefinition {
            name: "Intl db".into(),
            owner: "shop_owner".into(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            provider: provider.into(),
            locale: locale.map(Into::into),
            icu_rules: icu_rules.map(Into::into),
        }
    }

    #[test]
    fn a_database_is_created_with_its_provider_locale_and_icu_rules() {
        let base = "CREATE DATABASE \"Intl db\" OWNER \"shop_owner\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'";
        assert_eq!(definition("c", None, None).create().as_str(), base);
        assert_eq!(
            definition("i", Some("de-DE"), Some("&a < g; &'x' < y")).create().as_str(),
            format!("{base} LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' ICU_RULES '&a < g; &''x'' < y'")
        );
        assert_eq!(
            definition("i", Some("de-DE"), Some("")).create().as_str(),
            format!("{base} LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'"),
            "no rules: none given"
        );
        assert_eq!(
            definition("b", Some("C.UTF-8"), None).create().as_str(),
            format!("{base} LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'")
        );
        assert_eq!(definition("c", None, Some("&a < g")).create().as_str(), base, "rules belong to ICU alone");
    }

    #[test]
    fn a_target_older_than_the_locale_it_needs_is_named() {
        let rules = definition("i", Some("de-DE"), Some("&a < g"));
        assert_eq!(rules.beyond(160000), None);
        assert_eq!(
            rules.beyond(150004).as_deref(),
            Some("database \"Intl db\" uses ICU rules, which PostgreSQL 16 and later have and the target server (15) has not")
        );
        assert_eq!(definition("i", Some("de-DE"), None).beyond(150004), None);
        assert!(definition("b", Some("C.UTF-8"), None).beyond(160010).is_some_and(|w| w.contains("builtin")));
        assert_eq!(definition("c", None, None).beyond(130000), None);
    }
}
