//! `pgferry check`: observe both servers and this machine, then judge.
//!
//! Both servers are read at once, and a connection failure on one side does not
//! hide the other's: every problem is reported in one run. Source and target
//! are also compared: the same database under two spellings (TCP and a Unix
//! socket, `localhost` and `127.0.0.1`) is a problem, found by identity rather
//! than by name ([`pgferry_core::preflight::same_database`]).
//!
//! The commands that change servers call [`refuse_unless_ready`] and the pairing
//! check ([`crate::pairing`], which refuses the same database twice by the same
//! identities, [`identities`]) before they create anything, so a refusal leaves
//! both servers as they were and exits with [`ErrorKind::Refused`].

use pgferry_core::preflight::{
    blocking, choose_client, evaluate, missing_roles_finding, same_database, same_database_finding, CheckPlan,
    DatabaseIdentity, Finding, ServerFacts, Side, ToolFacts,
};
use pgferry_pg::tools::{find_client_pairs, ClientPair};
use pgferry_pg::ConnSpec;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// What `pgferry check` found.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ready: bool,
    pub source: ServerSummary,
    pub target: ServerSummary,
    pub tools: Vec<ToolSummary>,
    pub findings: Vec<Finding>,
}

/// One server, as the report names it (redacted).
#[derive(Debug, Serialize)]
pub struct ServerSummary {
    pub url: String,
    pub version: String,
}

#[derive(Debug, Serialize)]
pub struct ToolSummary {
    pub program: &'static str,
    pub path: Option<String>,
    pub version_num: Option<i32>,
}

/// Runs the preflight.
pub async fn check(source: &ConnSpec, target: &ConnSpec, plan: &CheckPlan) -> Result<CheckReport> {
    // Boxed: each side's facts are large, and every command that changes a server awaits this first.
    let (observed_source, observed_target) =
        tokio::join!(Box::pin(observe(source, "source")), Box::pin(observe(target, "target")));
    let ((src, source_facts), (dst, target_facts)) = match (observed_source, observed_target) {
        (Ok(s), Ok(t)) => (s, t),
        (s, t) => return Err(Error::combine(s.err().into_iter().chain(t.err()).collect())),
    };
    let client = client_for(source_facts.server_version_num, target_facts.server_version_num).await;
    let mut findings = evaluate(&source_facts, &target_facts, &tool_facts(client.as_ref()), plan);
    if is_same_database(&src, &dst).await? {
        findings.insert(0, same_database_finding(&source.to_string(), &target.to_string()));
    } else if let Some(f) = missing_roles_finding(&missing_roles(&src, &dst).await?, plan) {
        findings.push(f);
    }
    let (dump, restore) = client.map(|c| (c.pg_dump, c.pg_restore)).unzip();
    Ok(CheckReport {
        ready: pgferry_core::preflight::is_ready(&findings),
        source: summary(source, &source_facts),
        target: summary(target, &target_facts),
        tools: [("pg_dump", dump), ("pg_restore", restore)]
            .into_iter()
            .map(|(program, tool)| ToolSummary {
                program,
                path: tool.as_ref().map(|t| t.path.display().to_string()),
                version_num: tool.map(|t| t.version_num),
            })
            .collect(),
        findings,
    })
}

/// The client installation (pg_dump and pg_restore) a copy between servers of
/// these versions uses ([`choose_client`]); when none fits, the newest found, for
/// the preflight to say what is wrong with it. Finding them runs each
/// `pg_dump --version`: on a blocking thread, off the async runtime.
pub(crate) async fn client_for(source_version_num: i32, target_version_num: i32) -> Option<ClientPair> {
    let mut pairs = tokio::task::spawn_blocking(find_client_pairs).await.unwrap_or_default();
    let versions: Vec<i32> = pairs.iter().map(|p| p.pg_dump.version_num).collect();
    match choose_client(&versions, source_version_num, target_version_num) {
        Some(i) => Some(pairs.swap_remove(i)),
        None => pairs.into_iter().next(),
    }
}

/// The versions of a client installation, as the preflight judges them.
pub(crate) fn tool_facts(client: Option<&ClientPair>) -> ToolFacts {
    ToolFacts {
        pg_dump_version_num: client.map(|c| c.pg_dump.version_num),
        pg_restore_version_num: client.map(|c| c.pg_restore.version_num),
    }
}

/// The source's side of the preflight, for a seeded migration whose target
/// does not exist yet: it will be a physical copy of the source (an RDS
/// snapshot restore), with the same version, settings and contents, so the
/// source's facts stand for it and only the source's findings are returned.
pub async fn check_source(source: &ConnSpec, plan: &CheckPlan) -> Result<Vec<Finding>> {
    let (_, facts) = observe(source, "source").await?;
    // Only the source's findings are kept: this machine's tools do not matter here.
    let no_tools = ToolFacts::default();
    Ok(evaluate(&facts, &facts, &no_tools, plan).into_iter().filter(|f| f.side == Side::Source).collect())
}

/// The preflight of a database the target server lacks and `start
/// --all-databases` is to create ([`crate::instance::create_missing`]), against
/// the target server's database `target_server` names: the source's findings
/// and the target server's (its version, extensions, this machine's tools);
/// not those about the target database itself, which will be made empty, as
/// the source has it, owned by its owner.
pub async fn check_before_creation(
    source: &ConnSpec,
    target_server: &ConnSpec,
    plan: &CheckPlan,
) -> Result<Vec<Finding>> {
    const OF_THE_DATABASE: [&str; 5] =
        ["target_not_empty", "encoding", "collation", "create_privilege", "missing_roles"];
    let report = check(source, target_server, plan).await?;
    Ok(report.findings.into_iter().filter(|f| !(f.side == Side::Target && OF_THE_DATABASE.contains(&f.code))).collect())
}

/// The preflight as a gate: every blocking problem at once, as an error of kind
/// [`ErrorKind::Refused`], before the caller changes anything.
/// `keyless_tables_settled`: see [`blocking`].
pub(crate) async fn refuse_unless_ready(
    source: &ConnSpec,
    target: &ConnSpec,
    plan: &CheckPlan,
    keyless_tables_settled: bool,
) -> Result<Vec<Finding>> {
    let report = check(source, target, plan).await?;
    refuse_problems(report.findings, keyless_tables_settled)
}

/// The findings, or every blocking one at once as a refusal.
pub(crate) fn refuse_problems(findings: Vec<Finding>, keyless_tables_settled: bool) -> Result<Vec<Finding>> {
    let problems = blocking(&findings, keyless_tables_settled);
    if problems.is_empty() {
        return Ok(findings);
    }
    let lines: Vec<String> = problems
        .iter()
        .map(|f| {
            let objects: String = f.objects.iter().map(|o| format!("\n    {o}")).collect();
            format!("- [{}] {}{objects}\n  fix: {}", f.code, f.what, f.fix)
        })
        .collect();
    Err(Error::new(
        ErrorKind::Refused,
        format!("the preflight found {} problem(s):\n{}", problems.len(), lines.join("\n")),
    )
    .with_hint("fix them and rerun (pgferry check lists every finding); nothing was changed"))
}

async fn is_same_database(src: &Client, dst: &Client) -> Result<bool> {
    let (source_id, target_id, shown) = identities(src, dst).await?;
    Ok(same_database(&source_id, &target_id, shown))
}

/// The identities of the databases `src` and `dst` reached, and whether the
/// target's server shows pgferry's session on the source (asked only when the
/// identities are equal): what [`same_database`] and the pairing check judge.
pub(crate) async fn identities(src: &Client, dst: &Client) -> Result<(DatabaseIdentity, DatabaseIdentity, bool)> {
    let read = |e| Error::server("comparing the source's and the target's identity", e);
    let source_id = pgferry_pg::facts::identity(src).await.map_err(read)?;
    let target_id = pgferry_pg::facts::identity(dst).await.map_err(read)?;
    let shown = source_id == target_id && pgferry_pg::facts::shows_session_of(dst, src).await.map_err(read)?;
    Ok((source_id, target_id, shown))
}

async fn observe(spec: &ConnSpec, side: &str) -> Result<(Client, ServerFacts)> {
    let client = pgferry_pg::connect(spec).await.map_err(|e| {
        let mut err = Error::from(e);
        err.message = format!("{side}: {}", err.message);
        err
    })?;
    let facts = pgferry_pg::facts::server_facts(&client)
        .await
        .map_err(|e| Error::server(&format!("reading the {side}'s catalog"), e))?;
    Ok((client, facts))
}

fn summary(spec: &ConnSpec, facts: &ServerFacts) -> ServerSummary {
    ServerSummary { url: spec.to_string(), version: facts.server_version.clone() }
}

/// Roles that own objects or hold grants on the source but do not exist on the
/// target. When there are any, ownership and grants are not restored.
pub(crate) async fn missing_roles(src: &Client, dst: &Client) -> Result<Vec<String>> {
    let rows = src
        .query(
            "SELECT DISTINCT r.rolname::text FROM pg_roles r WHERE r.oid IN (
                 SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname NOT LIKE 'pg\\_%'
                 UNION SELECT nspowner FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND nspname NOT LIKE 'pg\\_%'
                 UNION SELECT (aclexplode(c.relacl)).grantee FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relacl IS NOT NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname NOT LIKE 'pg\\_%')
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::server("listing the source's roles", e))?;
    let wanted: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let present = dst
        .query("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)", &[&wanted])
        .await
        .map_err(|e| Error::server("listing the target's roles", e))?;
    let present: Vec<String> = present.iter().map(|r| r.get(0)).collect();
    Ok(wanted.into_iter().filter(|r| !present.contains(r)).collect())
}
