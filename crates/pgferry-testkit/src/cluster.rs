//! One throwaway cluster: made from a per-version template, started on a free
//! port, stopped and deleted on drop.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use tempfile::TempDir;

use crate::install::{hand_over, PgVersion};
use crate::tls::TlsFiles;

/// Settings every test cluster gets: logical replication on, quick to start,
/// loopback and a private socket directory only.
const BASE_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    ("wal_level", "logical"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("max_connections", "60"),
    ("shared_buffers", "32MB"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_sender_timeout", "10s"),
    ("logging_collector", "off"),
    ("log_min_messages", "warning"),
];

const HBA: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
local replication all trust
host replication postgres 127.0.0.1/32 trust
host replication all 127.0.0.1/32 scram-sha-256
";

/// Builds a cluster with extra settings.
pub struct ClusterBuilder {
    version: PgVersion,
    settings: Vec<(String, String)>,
    tls: bool,
}

impl ClusterBuilder {
    /// Adds a `postgresql.conf` line; later lines win.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Serves TLS with a certificate signed by a CA made for this cluster.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn start(self) -> Cluster {
        let dir =
            tempfile::Builder::new().prefix("pgferry-test-").tempdir_in(std::env::temp_dir()).expect("make test dir");
        make_traversable(dir.path());
        let data = dir.path().join("data");
        copy_template(self.version, &data);
        let tls = self.tls.then(|| TlsFiles::generate(dir.path(), &data));
        let mut cluster =
            Cluster { version: self.version, data, socket_dir: dir.path().to_path_buf(), port: 0, tls, _dir: dir };
        fs::write(cluster.data.join("pg_hba.conf"), HBA).expect("write pg_hba.conf");
        cluster.start_on_free_port(&self.settings);
        cluster
    }
}

/// A running PostgreSQL cluster owned by one test.
pub struct Cluster {
    version: PgVersion,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    tls: Option<TlsFiles>,
    // Dropped last: removes everything above.
    _dir: TempDir,
}

impl Cluster {
    /// A cluster with the default test settings.
    pub fn start(version: PgVersion) -> Cluster {
        Cluster::builder(version).start()
    }

    pub fn builder(version: PgVersion) -> ClusterBuilder {
        ClusterBuilder { version, settings: Vec::new(), tls: false }
    }

    pub fn version(&self) -> PgVersion {
        self.version
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.socket_dir.join("server.log")
    }

    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A URL for the superuser `postgres` over TCP, TLS off.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// A URL for a given user and password over TCP, TLS off.
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgresql://{user}:{password}@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// Runs SQL through `psql` as the superuser and returns its unaligned output.
    ///
    /// # Panics
    /// When the SQL fails, with psql's error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(out) => out,
            Err(err) => panic!("psql on port {} failed: {err}\nSQL: {sql}", self.port),
        }
    }

    /// Runs SQL through `psql`; `Err` holds psql's standard error.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let output = self
            .version
            .client_command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .expect("run psql");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// The row content of every user table (pgferry's own left out), one line per
    /// table: its name, row count and a digest of its rows in a fixed order. Two
    /// databases with equal fingerprints hold the same rows.
    pub fn fingerprints(&self, db: &str) -> String {
        let tables = self.psql(
            db,
            "SELECT string_agg(format('%I.%I', schemaname, tablename), E'\\n' ORDER BY schemaname, tablename) FROM pg_tables
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'pgferry')",
        );
        tables
            .lines()
            .map(|table| {
                let digest = self.psql(
                    db,
                    &format!("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"),
                );
                format!("{table} {digest}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Creates a database (as the superuser).
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {}", crate::q(name)));
    }

    /// Connects over TCP as the superuser, without TLS.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to test cluster on port {}: {e}", self.port));
        tokio::spawn(connection);
        client
    }

    /// A physical copy of this running cluster, taken at an arbitrary moment and
    /// brought up as an independent cluster on another port: what a snapshot
    /// restore gives. It is a `pg_basebackup` started as a streaming standby,
    /// then promoted while the source keeps writing, so the copy ends wherever
    /// replay happened to be (a plain base backup would end at the WAL switch of
    /// `pg_backup_stop`, never between two commits). Its log holds the
    /// recovery's `redo done at` line ([`Cluster::log_path`]).
    pub fn physical_copy(&self) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pgferry-test-copy-")
            .tempdir_in(std::env::temp_dir())
            .expect("make test dir");
        make_traversable(dir.path());
        let data = dir.path().join("data");
        let output = self
            .version
            .server_command("pg_basebackup")
            .arg("-D")
            .arg(&data)
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-X", "stream", "-c", "fast", "--no-sync"])
            .output()
            .expect("run pg_basebackup");
        assert!(output.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&output.stderr));
        let mut copy = Cluster {
            version: self.version,
            data,
            socket_dir: dir.path().to_path_buf(),
            port: 0,
            tls: None,
            _dir: dir,
        };
        fs::write(copy.data.join("standby.signal"), "").expect("write standby.signal");
        hand_over(&copy.data.join("standby.signal"));
        let upstream = format!("'host={} port={} user=postgres'", self.socket_dir.display(), self.port);
        copy.start_on_free_port(&[("log_min_messages".into(), "log".into()), ("primary_conninfo".into(), upstream)]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        copy.pg_ctl(&["promote"]).expect("promote the copy");
        copy
    }

    /// Stops the server (fast shutdown) and starts it again on the same port.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast"]).expect("restart cluster");
    }

    /// Stops the server; [`Cluster::resume`] starts it again.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]).expect("stop cluster");
    }

    /// Stops the server as a crash would (immediate shutdown: what its WAL
    /// buffers held unwritten is lost); [`Cluster::resume`] recovers it.
    pub fn crash(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]).expect("crash cluster");
    }

    /// Starts a server stopped by [`Cluster::stop`] or [`Cluster::crash`].
    pub fn resume(&self) {
        self.pg_ctl(&["start"]).expect("start cluster");
    }

    fn start_on_free_port(&mut self, settings: &[(String, String)]) {
        let mut last_error = String::new();
        for _ in 0..5 {
            self.port = free_port();
            self.write_settings(settings);
            match self.pg_ctl(&["start"]) {
                Ok(_) => return,
                Err(err) => last_error = err,
            }
        }
        panic!("could not start a test cluster: {last_error}");
    }

    fn write_settings(&self, extra: &[(String, String)]) {
        let mut lines =
            vec![format!("port = {}", self.port), format!("unix_socket_directories = '{}'", self.socket_dir.display())];
        lines.extend(BASE_SETTINGS.iter().map(|(k, v)| format!("{k} = {v}")));
        if let Some(tls) = &self.tls {
            lines.extend(tls.server_settings());
        }
        lines.extend(extra.iter().map(|(k, v)| format!("{k} = {v}")));
        let mut conf = lines.join("\n");
        conf.push('\n');
        fs::write(self.data.join("postgresql.auto.conf"), conf).expect("write settings");
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, String> {
        let output = self
            .version
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(output)
        } else {
            let log = fs::read_to_string(self.log_path()).unwrap_or_default();
            Err(format!("pg_ctl {args:?}: {}\n--- server log ---\n{log}", String::from_utf8_lossy(&output.stderr)))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .version
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("find a free port")
}

fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod test dir");
    hand_over(dir);
}

/// Copies this version's initdb template into `data`, making the template first.
fn copy_template(version: PgVersion, data: &Path) {
    let template = template_dir(version);
    let status = Command::new("cp").arg("-a").arg(&template).arg(data).status().expect("run cp");
    assert!(status.success(), "copy template cluster");
}

fn template_dir(version: PgVersion) -> PathBuf {
    static TEMPLATES: OnceLock<Mutex<Vec<(PgVersion, PathBuf)>>> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| Mutex::new(Vec::new()));
    let mut templates = templates.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, dir)) = templates.iter().find(|(v, _)| *v == version) {
        return dir.clone();
    }
    let root = std::env::temp_dir().join("pgferry-testkit");
    fs::create_dir_all(&root).expect("make template root");
    make_traversable(&root);
    let dir = root.join(format!("template-{}-v1", version.major()));
    if !dir.join("PG_VERSION").exists() {
        run_initdb(version, &root, &dir);
    }
    templates.push((version, dir.clone()));
    dir
}

/// Runs initdb in a private directory, then renames it into place, so that
/// concurrent test processes never see a half-made template.
fn run_initdb(version: PgVersion, root: &Path, dir: &Path) {
    let staging = root.join(format!("staging-{}-{}", version.major(), std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let output = version
        .server_command("initdb")
        .arg("-D")
        .arg(&staging)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        .args(if version == PgVersion::V18 { &["--no-data-checksums"][..] } else { &[][..] })
        .output()
        .expect("run initdb");
    assert!(
        output.status.success(),
        "initdb for PostgreSQL {} failed: {}",
        version.major(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut conf =
        fs::OpenOptions::new().append(true).open(staging.join("postgresql.conf")).expect("open postgresql.conf");
    writeln!(conf, "# pgferry test template").expect("write postgresql.conf");
    if fs::rename(&staging, dir).is_err() {
        // Another process made it first.
        let _ = fs::remove_dir_all(&staging);
    }
}
