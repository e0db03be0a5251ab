//! Finding PostgreSQL's client programs (pg_dump, pg_restore) on this machine.
//!
//! pgferry looks in `PGFERRY_PG_BIN` only when it is set, else in the versioned
//! directories that Debian and Ubuntu install (`/usr/lib/postgresql/N/bin`) and on
//! `PATH`, and lists each installation found (pg_dump with the pg_restore beside
//! it); which one a copy uses is decided by
//! `pgferry_core::preflight::choose_client` from the servers' versions.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A client program found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub path: PathBuf,
    /// As `server_version_num` would say it: 150018 for 15.18.
    pub version_num: i32,
}

/// `pg_dump` and the `pg_restore` beside it: one installation of the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPair {
    pub pg_dump: Tool,
    pub pg_restore: Tool,
}

/// Every installation of `pg_dump` with its `pg_restore` in the same directory,
/// newest first.
pub fn find_client_pairs() -> Vec<ClientPair> {
    let mut pairs: Vec<ClientPair> = candidates("pg_dump")
        .into_iter()
        .filter_map(|dump_path| {
            let restore_path = dump_path.with_file_name("pg_restore");
            let pg_dump = Tool { version_num: version_of(&dump_path)?, path: dump_path };
            let pg_restore = Tool { version_num: version_of(&restore_path)?, path: restore_path };
            Some(ClientPair { pg_dump, pg_restore })
        })
        .collect();
    pairs.sort_by_key(|p| std::cmp::Reverse(p.pg_dump.version_num));
    pairs
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
