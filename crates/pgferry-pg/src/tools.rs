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
    found
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
    use super::parse_version;

    #[test]
    fn versions_are_read_like_server_version_num() {
        assert_eq!(parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(150018));
        assert_eq!(parse_version("pg_restore (PostgreSQL) 18.6\n"), Some(180006));
        assert_eq!(parse_version("pg_dump (PostgreSQL) 19devel\n"), Some(190000));
        assert_eq!(parse_version("garbage"), None);
    }
}
