//! The schema, moved with `pg_dump` and `pg_restore` rather than hand-written DDL.
//!
//! One custom-format schema dump, taken under the copy's snapshot, is restored in
//! two parts: pre-data (types, tables, functions) before the rows, post-data
//! (indexes, constraints, triggers, rules, policies) after them, with `-j` jobs
//! ([pg_restore](https://www.postgresql.org/docs/current/app-pgrestore.html)).
//! The password reaches both programs through their environment only; the dump
//! is written into the copy's private work directory ([`WorkDir`]), in files
//! readable by this user only.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use pgferry_core::names::STATE_SCHEMA;
use pgferry_pg::tools::Tool;
use pgferry_pg::ConnSpec;
use tokio::process::Command;

use super::workdir::WorkDir;
use crate::error::{Error, ErrorKind, Result};

/// Which part of the dump to restore (`None` restores all of it).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Section {
    PreData,
    PostData,
}

impl Section {
    fn flag(self) -> &'static str {
        match self {
            Section::PreData => "--section=pre-data",
            Section::PostData => "--section=post-data",
        }
    }
}

/// Dumps the source's schema into `dir`, under `snapshot` when given.
pub(crate) async fn dump(pg_dump: &Tool, source: &ConnSpec, snapshot: Option<&str>, dir: &WorkDir) -> Result<PathBuf> {
    let file = dir.private_file("schema.dump")?;
    let mut cmd = libpq_command(&pg_dump.path, source);
    cmd.args(["--format=custom", "--schema-only", "--no-publications", "--no-subscriptions"])
        .arg(format!("--exclude-schema={STATE_SCHEMA}"))
        .arg("--file")
        .arg(&file);
    if let Some(s) = snapshot {
        cmd.arg(format!("--snapshot={s}"));
    }
    run(cmd, "pg_dump of the source's schema").await?;
    Ok(file)
}

/// Dumps the source's large objects (metadata and contents, nothing else) under
/// `snapshot`: `--blobs` with every schema excluded.
pub(crate) async fn dump_large_objects(
    pg_dump: &Tool,
    source: &ConnSpec,
    snapshot: &str,
    dir: &WorkDir,
) -> Result<PathBuf> {
    let file = dir.private_file("large-objects.dump")?;
    let mut cmd = libpq_command(&pg_dump.path, source);
    cmd.args(["--format=custom", "--blobs", "--exclude-schema=*"])
        .arg(format!("--snapshot={snapshot}"))
        .arg("--file")
        .arg(&file);
    run(cmd, "pg_dump of the source's large objects").await?;
    Ok(file)
}

/// The `pg_restore` list of a large-object dump with the large objects only.
/// Objects outside every schema stay in a dump with `--exclude-schema=*`: event
/// triggers (DDL capture's own, whose functions live in pgferry's schema, and the
/// application's, restored later with post-data) must not be created here.
/// pg_dump names the entries `BLOB`, `BLOBS`, `BLOB METADATA` (17 and later)
/// and `COMMENT`/`ACL - LARGE OBJECT`.
pub(crate) fn large_objects_only(list: &str) -> String {
    list.lines()
        .filter(|line| {
            line.starts_with(';') || {
                let description = line.split_once("; ").map_or("", |(_, rest)| rest);
                description.contains(" BLOB") || description.contains(" LARGE OBJECT")
            }
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// How to restore a dump.
pub(crate) struct Restore<'a> {
    /// `None` restores every section.
    pub(crate) section: Option<Section>,
    pub(crate) jobs: usize,
    /// Drop what the dump would create first (a rerun after a kill).
    pub(crate) clean: bool,
    /// Restore ownership and grants (every role they name exists on the target).
    pub(crate) keep_owners: bool,
    /// Restore only the entries of this `pg_restore --list` file.
    pub(crate) list: Option<&'a Path>,
}

/// Restores (part of) the dump into the target.
pub(crate) async fn restore(pg_restore: &Tool, target: &ConnSpec, dump: &Path, how: &Restore<'_>) -> Result<()> {
    let mut cmd = libpq_command(&pg_restore.path, target);
    if let Some(list) = how.list {
        cmd.arg("--use-list").arg(list);
    }
    if let Some(section) = how.section {
        cmd.arg(section.flag());
    }
    cmd.arg("--exit-on-error").arg(format!("--jobs={}", how.jobs.max(1))).arg(dbname_option(&target.dbname));
    if how.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    if !how.keep_owners {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    cmd.arg(dump);
    run(cmd, "pg_restore into the target").await
}

/// `pg_restore`'s `--dbname`, written as a connection string that names only the
/// database: pg_restore reads a bare `--dbname` holding `=` (or starting with
/// `postgresql://`) as a connection string, so a database named `a=b` failed
/// with "invalid connection option" ([libpq's quoting](https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-KEYWORD-VALUE)).
fn dbname_option(dbname: &str) -> String {
    format!("--dbname=dbname='{}'", dbname.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The dump's table of contents, as `pg_restore --list` prints it.
pub(crate) async fn list(pg_restore: &Tool, dump: &Path) -> Result<String> {
    let mut cmd = Command::new(&pg_restore.path);
    cmd.arg("--list").arg(dump).stdin(Stdio::null()).stderr(Stdio::piped()).stdout(Stdio::piped());
    let output = cmd
        .output()
        .await
        .map_err(|e| Error::new(ErrorKind::Precondition, format!("pg_restore --list could not start: {e}")))?;
    if !output.status.success() {
        return Err(Error::new(
            ErrorKind::Server,
            format!("pg_restore --list failed: {}", String::from_utf8_lossy(&output.stderr).trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn libpq_command(program: &Path, spec: &ConnSpec) -> Command {
    let mut cmd = Command::new(program);
    for var in ["PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGOPTIONS"] {
        cmd.env_remove(var);
    }
    cmd.envs(spec.libpq_env());
    if let Some(lib) = program.parent().and_then(Path::parent).map(|p| p.join("lib")) {
        if lib.join("libpq.so.5").exists() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

async fn run(mut cmd: Command, what: &str) -> Result<()> {
    let output =
        cmd.output().await.map_err(|e| Error::new(ErrorKind::Precondition, format!("{what} could not start: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(Error::new(ErrorKind::Server, format!("{what} failed: {}", stderr.trim()))
        .with_hint("fix the cause above and rerun: the copy resumes where it stopped"))
}

#[cfg(test)]
mod tests {
    use super::large_objects_only;

    #[test]
    fn a_large_object_dump_restores_its_large_objects_and_nothing_else() {
        let list = ";\n; Archive\n2561; 2613 16386 BLOB METADATA - 16386 postgres\n2562; 0 0 BLOBS - 16386 postgres\n\
                    2563; 0 0 COMMENT - LARGE OBJECT 16386 postgres\n2564; 0 0 ACL - LARGE OBJECT 16386 postgres\n\
                    2413; 3466 16385 EVENT TRIGGER - pgferry_main__ddl postgres\n2414; 3466 16387 EVENT TRIGGER - audit postgres\n\
                    2415; 2613 16390 BLOB - 16390 postgres\n";
        let kept = large_objects_only(list);
        assert!(!kept.contains("EVENT TRIGGER"), "{kept}");
        for entry in ["BLOB METADATA", "BLOBS", "COMMENT - LARGE OBJECT", "ACL - LARGE OBJECT", "BLOB - 16390"] {
            assert!(kept.contains(entry), "{entry} missing from {kept}");
        }
    }
}
