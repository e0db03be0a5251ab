//! `~/.pgpass` look-ups, as libpq does them
//! ([The Password File](https://www.postgresql.org/docs/current/libpq-pgpass.html)):
//! the first line whose `hostname:port:database:username` fields match wins, `*`
//! matches anything, `\` escapes `:` and `\`, and a file that others can read is
//! ignored.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::connspec::{ConnSpec, Host};

/// The password for `spec` from the password file, if one matches.
pub(crate) fn lookup(file: &Path, spec: &ConnSpec) -> Option<String> {
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "password file has group or world access and is ignored; run chmod 0600 on it"
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    find(&text, spec)
}

fn find(text: &str, spec: &ConnSpec) -> Option<String> {
    let host = match &spec.host {
        Host::Tcp(h) => h.clone(),
        // libpq matches a socket connection against "localhost".
        Host::Socket(_) => "localhost".to_string(),
    };
    let port = spec.port.to_string();
    let wanted = [host.as_str(), port.as_str(), spec.dbname.as_str(), spec.user.as_str()];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(split_fields)
        .find(|fields| fields[..4].iter().zip(wanted).all(|(field, want)| field == "*" || field == want))
        .map(|mut fields| fields.remove(4))
}

fn split_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connspec::SslMode;
    use std::path::PathBuf;

    fn spec(host: Host, port: u16, db: &str, user: &str) -> ConnSpec {
        ConnSpec {
            host,
            port,
            user: user.into(),
            password: None,
            dbname: db.into(),
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            application_name: "pgferry".into(),
            connect_timeout: None,
            options: None,
        }
    }

    const FILE: &str = "\
# comment
db1:5432:app:alice:first
*:5432:*:bob:with\\:colon\\\\and backslash
localhost:*:*:carol:socket
*:*:*:*:fallback
";

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let tcp = |h: &str| Host::Tcp(h.into());
        assert_eq!(find(FILE, &spec(tcp("db1"), 5432, "app", "alice")).unwrap(), "first");
        assert_eq!(find(FILE, &spec(tcp("any"), 5432, "x", "bob")).unwrap(), "with:colon\\and backslash");
        assert_eq!(find(FILE, &spec(Host::Socket(PathBuf::from("/run")), 1, "x", "carol")).unwrap(), "socket");
        assert_eq!(find(FILE, &spec(tcp("db1"), 5433, "app", "alice")).unwrap(), "fallback");
    }

    #[test]
    fn a_file_readable_by_others_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").unwrap();
        let s = spec(Host::Tcp("h".into()), 1, "d", "u");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(lookup(&path, &s), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, &s).unwrap(), "pw");
    }
}
