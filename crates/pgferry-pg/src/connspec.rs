//! Connection specifications, read the way libpq reads them.
//!
//! Operators already have connection strings: URLs (`postgresql://user@host/db?sslmode=require`),
//! key/value strings (`host=db port=5432 dbname=app`), the `PG*` environment variables
//! and `~/.pgpass`. pgferry accepts all of them with libpq's precedence: what the string
//! says, then the environment, then the defaults (see
//! [Connection Strings](https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING)
//! and [Environment Variables](https://www.postgresql.org/docs/current/libpq-envars.html)).
//!
//! The password lives in a [`Secret`], whose `Debug` and `Display` print a mask, and a
//! [`ConnSpec`] displays as a URL without it, so a connection can be named in any
//! message or log line without leaking the password.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A password. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The password itself, for the authentication exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SslMode {
    Disable,
    /// Like `prefer`: pgferry never chooses plain text when TLS is offered.
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, ConnSpecError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnSpecError::InvalidValue {
                    key: "sslmode".into(),
                    value: other.into(),
                    expected: "disable, allow, prefer, require, verify-ca or verify-full",
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the server is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Host {
    Tcp(String),
    /// A directory holding the server's Unix-domain socket.
    Socket(PathBuf),
}

/// Everything needed to connect to one database.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConnSpec {
    pub host: Host,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub application_name: String,
    /// How long opening a connection may take, startup and authentication
    /// included: `connect_timeout` or `PGCONNECT_TIMEOUT`, else
    /// [`DEFAULT_CONNECT_TIMEOUT`]; `None` (given as 0) waits for ever, as in libpq.
    pub connect_timeout: Option<Duration>,
    /// Server settings sent at startup (`options=-c name=value`).
    pub options: Option<String>,
}

/// Why a connection string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnSpecError {
    #[error("the connection URL is malformed: {0}")]
    MalformedUrl(String),
    #[error("the connection string is malformed near {0:?}: expected key=value pairs")]
    MalformedKeyValue(String),
    #[error("unknown connection option {0:?}")]
    UnknownKey(String),
    #[error("invalid {key} {value:?}: expected {expected}")]
    InvalidValue { key: String, value: String, expected: &'static str },
}

/// How long a connection may take to open when the spec does not say: a server
/// that accepts TCP and never answers is reported within this.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options pgferry understands; libpq has more, which are refused rather than ignored.
const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "options",
    "passfile",
];

/// Where defaults come from: the process environment, or a fixed map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn home(&self) -> Option<PathBuf>;
    fn os_user(&self) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn home(&self) -> Option<PathBuf> {
        std::env::var_os("HOME").map(PathBuf::from)
    }
    fn os_user(&self) -> Option<String> {
        std::env::var("USER").ok().or_else(|| std::env::var("LOGNAME").ok())
    }
}

impl ConnSpec {
    /// Parses a URL or key/value string and fills the gaps from the environment and
    /// `~/.pgpass`.
    pub fn parse(input: &str) -> Result<ConnSpec, ConnSpecError> {
        ConnSpec::parse_with(input, &ProcessEnv)
    }

    pub fn parse_with(input: &str, env: &dyn Environment) -> Result<ConnSpec, ConnSpecError> {
        let trimmed = input.trim();
        let given = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            parse_url(trimmed)?
        } else {
            parse_key_value(trimmed)?
        };
        for key in given.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                return Err(ConnSpecError::UnknownKey(key.clone()));
            }
        }
        resolve(given, env)
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, dbname: &str) -> ConnSpec {
        ConnSpec { dbname: dbname.into(), ..self.clone() }
    }

    /// The host as libpq's `host` option would be written.
    pub fn host_str(&self) -> String {
        match &self.host {
            Host::Tcp(h) => h.clone(),
            Host::Socket(p) => p.display().to_string(),
        }
    }

    /// The environment variables that make libpq programs (pg_dump, pg_restore,
    /// psql) connect the same way; the password travels here, never in arguments.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host_str()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.dbname.clone()),
            ("PGSSLMODE", self.sslmode.as_str().to_string()),
            ("PGAPPNAME", self.application_name.clone()),
        ];
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", p.expose().to_string()));
        }
        if let Some(c) = &self.sslrootcert {
            env.push(("PGSSLROOTCERT", c.display().to_string()));
        }
        if let Some(t) = self.connect_timeout {
            env.push(("PGCONNECT_TIMEOUT", t.as_secs().to_string()));
        }
        // The application's time limits and read-only default lifted as for
        // pgferry's own sessions (pg_dump sets the limits to 0 itself, but only
        // after its first queries; pg_restore writes).
        let limits = crate::connect::CLIENT_PROGRAM_OPTIONS;
        env.push((
            "PGOPTIONS",
            match &self.options {
                Some(o) => format!("{limits} {o}"),
                None => limits.to_string(),
            },
        ));
        env
    }
}

/// Displays as a URL without the password: safe for any output.
impl fmt::Display for ConnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => write!(f, "postgresql://{}@[{h}]:{}", self.user, self.port)?,
            Host::Tcp(h) => write!(f, "postgresql://{}@{h}:{}", self.user, self.port)?,
            Host::Socket(p) => write!(f, "postgresql://{}@[{}]:{}", self.user, p.display(), self.port)?,
        }
        write!(f, "/{}?sslmode={}", self.dbname, self.sslmode.as_str())
    }
}

fn parse_url(input: &str) -> Result<BTreeMap<String, String>, ConnSpecError> {
    let rest = input.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let mut out = BTreeMap::new();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            out.insert("user".into(), percent_decode(user)?);
        }
        if let Some(p) = password {
            out.insert("password".into(), percent_decode(p)?);
        }
    }
    let (host, port) = split_host_port(hostport)?;
    if let Some(h) = host {
        out.insert("host".into(), percent_decode(h)?);
    }
    if let Some(p) = port {
        out.insert("port".into(), p.to_string());
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.insert("dbname".into(), percent_decode(db)?);
    }
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ConnSpecError::MalformedUrl(format!("query parameter {k:?} has no value", k = redact_pair(pair)))
        })?;
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Ok(out)
}

/// Shows a query parameter's key only: its value may be a password.
fn redact_pair(pair: &str) -> &str {
    pair.split('=').next().unwrap_or_default()
}

fn split_host_port(hostport: &str) -> Result<(Option<&str>, Option<&str>), ConnSpecError> {
    if hostport.is_empty() {
        return Ok((None, None));
    }
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| ConnSpecError::MalformedUrl("an IPv6 host is missing its closing ]".into()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(ConnSpecError::MalformedUrl("unexpected text after the host".into())),
        };
        return Ok((Some(host), port));
    }
    if hostport.contains(',') {
        return Err(ConnSpecError::MalformedUrl(
            "several hosts in one URL are not supported: give pgferry the primary's address".into(),
        ));
    }
    Ok(match hostport.split_once(':') {
        Some((h, p)) => ((!h.is_empty()).then_some(h), Some(p)),
        None => (Some(hostport), None),
    })
}

fn percent_decode(input: &str) -> Result<String, ConnSpecError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConnSpecError::MalformedUrl("a % escape is not followed by two hex digits".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnSpecError::MalformedUrl("a % escape decodes to invalid UTF-8".into()))
}

/// `key=value key2='quoted \' value'`, as libpq reads it.
fn parse_key_value(input: &str) -> Result<BTreeMap<String, String>, ConnSpecError> {
    let mut out = BTreeMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(ConnSpecError::MalformedKeyValue(key));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => {
                        value.push(chars.next().ok_or_else(|| ConnSpecError::MalformedKeyValue(key.clone()))?)
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(ConnSpecError::MalformedKeyValue(key)),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.push(chars.next().ok_or_else(|| ConnSpecError::MalformedKeyValue(key.clone()))?);
                } else {
                    value.push(c);
                }
            }
        }
        out.insert(key, value);
    }
    Ok(out)
}

fn resolve(mut given: BTreeMap<String, String>, env: &dyn Environment) -> Result<ConnSpec, ConnSpecError> {
    let mut take = |key: &str, var: &str| given.remove(key).filter(|v| !v.is_empty()).or_else(|| env.var(var));
    let host_value = take("hostaddr", "PGHOSTADDR").or_else(|| take("host", "PGHOST"));
    let port_value = take("port", "PGPORT");
    let user = take("user", "PGUSER").or_else(|| env.os_user()).unwrap_or_else(|| "postgres".into());
    let password = take("password", "PGPASSWORD").map(Secret::new);
    let dbname = take("dbname", "PGDATABASE").unwrap_or_else(|| user.clone());
    let sslmode_value = take("sslmode", "PGSSLMODE");
    let sslrootcert = take("sslrootcert", "PGSSLROOTCERT").map(PathBuf::from);
    let application_name = take("application_name", "PGAPPNAME").unwrap_or_else(|| "pgferry".into());
    let timeout_value = take("connect_timeout", "PGCONNECT_TIMEOUT");
    let options = take("options", "PGOPTIONS");
    let passfile = take("passfile", "PGPASSFILE").map(PathBuf::from);

    let host = match host_value {
        Some(h) if h.starts_with('/') => Host::Socket(PathBuf::from(h)),
        Some(h) => Host::Tcp(h),
        None => Host::Socket(PathBuf::from("/var/run/postgresql")),
    };
    let port = match port_value {
        Some(p) => p.parse().ok().filter(|p| *p > 0).ok_or(ConnSpecError::InvalidValue {
            key: "port".into(),
            value: p,
            expected: "a TCP port number from 1 to 65535",
        })?,
        None => 5432,
    };
    let sslmode = match sslmode_value {
        Some(m) => SslMode::parse(&m)?,
        None => SslMode::Prefer,
    };
    let connect_timeout = match timeout_value {
        Some(t) => match t.trim().parse::<u64>() {
            Ok(0) => None,
            // libpq's minimum: a shorter deadline fails on healthy servers.
            Ok(seconds) => Some(Duration::from_secs(seconds.max(2))),
            Err(_) => {
                return Err(ConnSpecError::InvalidValue {
                    key: "connect_timeout".into(),
                    value: t,
                    expected: "a whole number of seconds (0 waits for ever)",
                })
            }
        },
        None => Some(DEFAULT_CONNECT_TIMEOUT),
    };
    let mut spec = ConnSpec {
        host,
        port,
        user,
        password,
        dbname,
        sslmode,
        sslrootcert,
        application_name,
        connect_timeout,
        options,
    };
    if spec.password.is_none() {
        let file = passfile.or_else(|| env.home().map(|h| h.join(".pgpass")));
        if let Some(file) = file {
            spec.password = crate::pgpass::lookup(&file, &spec).map(Secret::new);
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    pub(crate) struct FakeEnv {
        pub(crate) vars: HashMap<&'static str, String>,
        pub(crate) home: Option<PathBuf>,
    }

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn home(&self) -> Option<PathBuf> {
            self.home.clone()
        }
        fn os_user(&self) -> Option<String> {
            Some("osuser".into())
        }
    }

    fn parse(input: &str) -> ConnSpec {
        ConnSpec::parse_with(input, &FakeEnv::default()).unwrap()
    }

    #[test]
    fn a_full_url_is_read() {
        let spec = parse("postgresql://alice:s%40cret@db.example.com:6543/app%20db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x");
        assert_eq!(spec.host, Host::Tcp("db.example.com".into()));
        assert_eq!(spec.port, 6543);
        assert_eq!(spec.user, "alice");
        assert_eq!(spec.password.as_ref().unwrap().expose(), "s@cret");
        assert_eq!(spec.dbname, "app db");
        assert_eq!(spec.sslmode, SslMode::VerifyFull);
        assert_eq!(spec.sslrootcert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(spec.application_name, "x");
    }

    #[test]
    fn urls_take_ipv6_hosts_and_socket_directories() {
        assert_eq!(parse("postgres://[::1]:5433/db").host, Host::Tcp("::1".into()));
        let spec = parse("postgresql://%2Ftmp%2Fsock:5999/db");
        assert_eq!(spec.host, Host::Socket(PathBuf::from("/tmp/sock")));
        let spec = parse("postgresql:///db?host=/run/pg");
        assert_eq!(spec.host, Host::Socket(PathBuf::from("/run/pg")));
    }

    #[test]
    fn key_value_strings_handle_quotes_and_escapes() {
        let spec = parse("host=h port=1 user=bob password='it\\'s a secret' dbname = 'my db'");
        assert_eq!(spec.host, Host::Tcp("h".into()));
        assert_eq!(spec.port, 1);
        assert_eq!(spec.password.unwrap().expose(), "it's a secret");
        assert_eq!(spec.dbname, "my db");
    }

    #[test]
    fn defaults_come_from_the_environment_then_libpq_defaults() {
        let env = FakeEnv {
            vars: HashMap::from([("PGHOST", "envhost".into()), ("PGSSLMODE", "require".into())]),
            ..FakeEnv::default()
        };
        let spec = ConnSpec::parse_with("dbname=x", &env).unwrap();
        assert_eq!(spec.host, Host::Tcp("envhost".into()));
        assert_eq!(spec.sslmode, SslMode::Require);
        assert_eq!(spec.user, "osuser");
        assert_eq!(spec.application_name, "pgferry");
        let spec = ConnSpec::parse_with("host=given", &env).unwrap();
        assert_eq!(spec.host, Host::Tcp("given".into()));
        assert_eq!(spec.dbname, "osuser");
        assert_eq!(parse("").sslmode, SslMode::Prefer);
        assert_eq!(parse("").port, 5432);
    }

    #[test]
    fn connect_timeout_defaults_to_ten_seconds_and_zero_waits_for_ever() {
        assert_eq!(parse("host=h").connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(parse("host=h connect_timeout=5").connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(parse("postgresql://h/db?connect_timeout=0").connect_timeout, None);
        assert_eq!(parse("host=h connect_timeout=1").connect_timeout, Some(Duration::from_secs(2)), "libpq's minimum");
        let env = FakeEnv { vars: HashMap::from([("PGCONNECT_TIMEOUT", "7".into())]), ..FakeEnv::default() };
        assert_eq!(ConnSpec::parse_with("host=h", &env).unwrap().connect_timeout, Some(Duration::from_secs(7)));
        let err = ConnSpec::parse_with("connect_timeout=soon", &FakeEnv::default()).unwrap_err();
        assert!(err.to_string().contains("whole number of seconds"), "{err}");
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let env = FakeEnv::default();
        let err = ConnSpec::parse_with("sslmode=maybe", &env).unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
        let err = ConnSpec::parse_with("port=99999", &env).unwrap_err();
        assert!(err.to_string().contains("1 to 65535"), "{err}");
        assert_eq!(ConnSpec::parse_with("bogus=1", &env).unwrap_err(), ConnSpecError::UnknownKey("bogus".into()));
        assert!(ConnSpec::parse_with("host", &env).is_err());
        assert!(ConnSpec::parse_with("postgresql://h/db?x", &env).is_err());
        assert!(ConnSpec::parse_with("postgresql://[::1/db", &env).is_err());
        assert!(ConnSpec::parse_with("postgresql://a,b/db", &env).is_err());
    }

    #[test]
    fn errors_never_echo_a_password() {
        let env = FakeEnv::default();
        for input in [
            "postgresql://u:hunter2@h:notaport/db",
            "postgresql://u@h/db?password",
            "postgresql://u:hunter2@h/db?bogus=1",
            "password=hunter2 port=x",
        ] {
            let err = ConnSpec::parse_with(input, &env).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{input}: {err}");
        }
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let spec = parse("postgresql://alice:hunter2@h:5432/db");
        let shown = format!("{spec} {spec:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(spec.to_string(), "postgresql://alice@h:5432/db?sslmode=prefer");
    }

    #[test]
    fn libpq_programs_get_the_password_through_the_environment() {
        let spec = parse("postgresql://alice:hunter2@h:5432/db?sslmode=verify-ca&sslrootcert=/ca");
        let env: HashMap<_, _> = spec.libpq_env().into_iter().collect();
        assert_eq!(env["PGPASSWORD"], "hunter2");
        assert_eq!(env["PGSSLMODE"], "verify-ca");
        assert_eq!(env["PGSSLROOTCERT"], "/ca");
        assert_eq!(
            env["PGOPTIONS"],
            "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0 -c default_transaction_read_only=off",
            "the time limits and the read-only default lifted"
        );
    }
}
