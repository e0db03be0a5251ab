//! `pgferry.toml`: one migration's settings in a file, so that every command of
//! that migration (start, status, validate, cutover, ...) runs with the same
//! servers, name and tuning without repeating them.
//!
//! Precedence: a flag on the command line, then a `PGFERRY_*` environment
//! variable, then the file. The file is read before the arguments are parsed
//! and fills only the variables not already set, which gives exactly that order
//! with clap's own `env` handling. Unknown keys are an error (a misspelt key
//! must not be silently ignored in a maintenance window).
//!
//! ```toml
//! name = "orders_2026"
//! source = "postgresql://mover@old.example.com/app?sslmode=verify-full"
//! target = "postgresql://mover@new.example.com/app?sslmode=verify-full"
//! jobs = 4
//! admin_roles = ["dba"]
//! switch_command = "./point-dns-at-target.sh"
//! ```
//!
//! Keep passwords out of it: `~/.pgpass` and `PGPASSWORD` are read as libpq reads them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pgferry::{Error, ErrorKind, Result};

/// The keys the file may hold, and the variable each one sets.
const KEYS: &[(&str, &str)] = &[
    ("source", "PGFERRY_SOURCE"),
    ("target", "PGFERRY_TARGET"),
    ("name", "PGFERRY_NAME"),
    ("jobs", "PGFERRY_JOBS"),
    ("index_jobs", "PGFERRY_INDEX_JOBS"),
    ("split_larger_than", "PGFERRY_SPLIT_LARGER_THAN"),
    ("switch_command", "PGFERRY_SWITCH_COMMAND"),
    ("admin_roles", "PGFERRY_ADMIN_ROLES"),
];

const DEFAULT_FILE: &str = "pgferry.toml";

/// Reads the settings file named by `--config` in `args` (or `./pgferry.toml`
/// when it exists) into the environment. Returns the file read, if any.
pub(crate) fn load(args: &[OsString]) -> Result<Option<PathBuf>> {
    let path = match explicit(args) {
        Some(path) => path,
        None if Path::new(DEFAULT_FILE).exists() => PathBuf::from(DEFAULT_FILE),
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::new(ErrorKind::Usage, format!("reading {}: {e}", path.display())))?;
    for (variable, value) in
        settings(&text).map_err(|e| Error::new(ErrorKind::Usage, format!("{}: {e}", path.display())))?
    {
        if std::env::var_os(variable).is_none() {
            std::env::set_var(variable, value);
        }
    }
    Ok(Some(path))
}

/// `--config FILE` or `--config=FILE`.
fn explicit(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The file's settings as (variable, value) pairs.
fn settings(text: &str) -> std::result::Result<Vec<(&'static str, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    let mut out = Vec::new();
    for (key, value) in table {
        let Some((_, variable)) = KEYS.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(format!("unknown key {key:?}; the keys are {}", known.join(", ")));
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("{key}: expected a list of strings")))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .join(","),
            other => {
                return Err(format!(
                    "{key}: expected a string, a number or a list of strings, found {}",
                    other.type_str()
                ))
            }
        };
        out.push((*variable, text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_variables_and_unknown_keys_are_refused() {
        let read = settings("name = \"m1\"\njobs = 4\nadmin_roles = [\"dba\", \"ops\"]\n").unwrap();
        assert_eq!(
            read,
            vec![
                ("PGFERRY_ADMIN_ROLES", "dba,ops".to_string()),
                ("PGFERRY_JOBS", "4".into()),
                ("PGFERRY_NAME", "m1".into())
            ]
        );
        assert!(settings("nmae = \"m1\"").unwrap_err().contains("unknown key \"nmae\""));
        assert!(settings("jobs = true").unwrap_err().contains("expected a string"));
        assert!(settings("name = ").is_err());
    }

    #[test]
    fn the_file_is_named_by_the_flag_in_either_form() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(explicit(&args(&["pgferry", "status", "--config", "a.toml"])), Some(PathBuf::from("a.toml")));
        assert_eq!(explicit(&args(&["pgferry", "--config=b.toml", "status"])), Some(PathBuf::from("b.toml")));
        assert_eq!(explicit(&args(&["pgferry", "status"])), None);
    }
}
