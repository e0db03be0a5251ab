//! A moto server on a free 127.0.0.1 port, one per test process.
//!
//! moto (<https://docs.getmoto.org>) emulates the AWS APIs pgferry calls; it
//! keeps records rather than simulating RDS (everything is `available` at once).
//! The server is started through a small Python wrapper (which also models the
//! encryption of a Blue/Green deployment's green instance) that exits when its
//! standard input closes, so it ends with the test process even though a static
//! is never dropped. Tests share it and keep apart by unique resource names.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_rds::config::{Credentials, Region};

use crate::sdk::Aws;

/// Serves moto until standard input closes (the test process ended).
///
/// moto 5.2.5 ignores a Blue/Green deployment's `TargetResourceConfigurations`
/// and creates green unencrypted; the patch gives the green primary the key its
/// configuration names, as AWS does. (moto creates no green replicas at all.)
const LAUNCHER: &str = "\
import os, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
from moto.rds import models as rds
created = rds.BlueGreenDeployment.__init__
def encrypting(self, backend, *args, **kwargs):
    created(self, backend, *args, **kwargs)
    for conf in kwargs.get('target_resource_configurations') or []:
        if conf.get('source_arn') == self.source and conf.get('target_kms_key_id'):
            green = backend.find_db_from_id(self.target)
            green.storage_encrypted = True
            green.kms_key_id = conf.get('target_kms_key_id')
rds.BlueGreenDeployment.__init__ = encrypting
from moto.server import main
main(sys.argv[1:])
";

/// A running moto server.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's Python: `PGFERRY_MOTO_PYTHON`, else the venv `scripts/setup.sh` makes
/// (`PGFERRY_MOTO_ROOT`, default `/opt/pgferry/moto`).
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("PGFERRY_MOTO_PYTHON") {
        return PathBuf::from(python);
    }
    let root = std::env::var_os("PGFERRY_MOTO_ROOT").unwrap_or_else(|| "/opt/pgferry/moto".into());
    PathBuf::from(root).join("bin/python")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free local port").port()
}

/// One HTTP GET; the status code, if the server answered.
fn status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Moto {
    /// The process's server, started on first use.
    ///
    /// # Panics
    /// When moto is not installed, with the command that installs it.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::start)
    }

    pub fn start() -> Moto {
        let python = python();
        assert!(
            python.exists(),
            "moto's Python not found at {} (set PGFERRY_MOTO_PYTHON): run scripts/setup.sh to install it",
            python.display()
        );
        let port = free_port();
        let child = Command::new(&python)
            .args(["-c", LAUNCHER, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while status(port, "/moto-api/data.json") != Some(200) {
            assert!(Instant::now() < deadline, "moto did not answer on port {port} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The SDK configuration for this server: static credentials, retries off.
    pub async fn config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .retry_config(RetryConfig::disabled())
            .load()
            .await
    }

    pub async fn aws(&self) -> Aws {
        Aws::from_config(&self.config().await)
    }
}
