//! Finding PostgreSQL's client programs (pg_dump, pg_restore) on this machine.
//!
//! pg_dump must be at least as new as the server it dumps, so pgferry looks in
//! `PGFERRY_PG_BIN` first, then picks the newest of the versioned directories that
//! Debian and Ubuntu install (`/usr/lib/postgresql/N/bin`), then `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A client program found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub path: PathBuf,
    /// As `server_version_num` would say it: 150018 for 15.18.
    pub version_num: i32,
}

/// The newest copy of `program` that can be found, with its version.
pub fn find_tool(program: &str) -> Option<Tool> {
    candidates(program)
        .into_iter()
        .filter_map(|path| {
            let version_num = version_of(&path)?;
            Some(Tool { path, version_num })
        })
        .max_by_key(|t| t.version_num)
}

fn candidates(program: &str) -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("PGFERRY_PG_BIN") {
        return vec![Path::new(&dir).join(program)];
    }
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            found.push(entry.path().join("bin").join(program));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        found.extend(std::env::split_paths(&path).map(|d| d.join(program)));
    }
    found.retain(|p| p.is_file());
    distinct_programs(found, |p| std::fs::canonicalize(p).ok())
}

/// Each program once (`/bin` is often a link to `/usr/bin`), and without Debian's
/// `pg_wrapper` when a versioned program was found: the wrapper only dispatches
/// to one of those, through a Perl start that costs a tenth of a second per
/// `--version`, which an operator waits for before every copy.
fn distinct_programs(found: Vec<PathBuf>, canonical: impl Fn(&Path) -> Option<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut programs: Vec<(PathBuf, bool)> = Vec::new();
    for path in found {
        let real = canonical(&path).unwrap_or_else(|| path.clone());
        let wrapper = real.file_name().is_some_and(|n| n == "pg_wrapper");
        if seen.insert(real) {
            programs.push((path, wrapper));
        }
    }
    if programs.iter().any(|(_, wrapper)| !wrapper) {
        programs.retain(|(_, wrapper)| !wrapper);
    }
    programs.into_iter().map(|(path, _)| path).collect()
}

fn version_of(path: &Path) -> Option<i32> {
    let mut cmd = Command::new(path);
    if let Some(lib) = path.parent().and_then(Path::parent).map(|p| p.join("lib")) {
        if lib.join("libpq.so.5").exists() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
    }
    let output = cmd.arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

/// Reads `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` as 150018.
fn parse_version(text: &str) -> Option<i32> {
    let number = text.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = number.split(|c: char| !c.is_ascii_digit());
    let major: i32 = parts.next()?.parse().ok()?;
    let minor: i32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(major * 10000 + minor)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{distinct_programs, parse_version};

    #[test]
    fn each_program_is_probed_once_and_debian_wrappers_only_when_nothing_else_is_there() {
        let canonical = |p: &Path| {
            Some(PathBuf::from(match p.to_str().unwrap() {
                "/bin/pg_dump" | "/usr/bin/pg_dump" => "/usr/share/postgresql-common/pg_wrapper",
                "/opt/pg/bin/pg_dump" | "/opt/pg-link/bin/pg_dump" => "/opt/pg/bin/pg_dump",
                other => other,
            }))
        };
        let paths = |list: &[&str]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
        let found = paths(&[
            "/usr/lib/postgresql/15/bin/pg_dump",
            "/opt/pg/bin/pg_dump",
            "/opt/pg-link/bin/pg_dump",
            "/usr/bin/pg_dump",
            "/bin/pg_dump",
        ]);
        assert_eq!(
            distinct_programs(found, canonical),
            paths(&["/usr/lib/postgresql/15/bin/pg_dump", "/opt/pg/bin/pg_dump"])
        );
        let only_wrappers = paths(&["/usr/bin/pg_dump", "/bin/pg_dump"]);
        assert_eq!(distinct_programs(only_wrappers, canonical), paths(&["/usr/bin/pg_dump"]));
    }

    #[test]
    fn versions_are_read_like_server_version_num() {
        assert_eq!(parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(150018));
        assert_eq!(parse_version("pg_restore (PostgreSQL) 18.6\n"), Some(180006));
        assert_eq!(parse_version("pg_dump (PostgreSQL) 19devel\n"), Some(190000));
        assert_eq!(parse_version("garbage"), None);
    }
}
