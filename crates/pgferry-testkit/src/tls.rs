//! A certificate authority and server certificate made for one test cluster,
//! with `openssl`, plus a second, unrelated CA for "wrong CA" tests.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install::hand_over;

/// The TLS files of a cluster started with `ClusterBuilder::tls`.
pub struct TlsFiles {
    /// The CA that signed the server's certificate: a correct `sslrootcert`.
    pub ca_cert: PathBuf,
    /// A CA that signed nothing the server has: a wrong `sslrootcert`.
    pub other_ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl TlsFiles {
    /// Makes the files; the server's key goes into the data directory, readable by
    /// the server's user only, as PostgreSQL demands.
    pub(crate) fn generate(dir: &Path, data: &Path) -> TlsFiles {
        let tls_dir = dir.join("tls");
        fs::create_dir_all(&tls_dir).expect("make tls dir");
        let ca_key = tls_dir.join("ca.key");
        let ca_cert = tls_dir.join("ca.pem");
        make_ca(&ca_key, &ca_cert, "pgferry test CA");
        let other_key = tls_dir.join("other.key");
        let other_ca_cert = tls_dir.join("other-ca.pem");
        make_ca(&other_key, &other_ca_cert, "pgferry unrelated CA");

        let server_key = data.join("server.key");
        let server_cert = data.join("server.crt");
        let csr = tls_dir.join("server.csr");
        let ext = tls_dir.join("server.ext");
        fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write ext");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            path(&server_key),
            "-out",
            path(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&ca_cert),
            "-CAkey",
            path(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            path(&server_cert),
            "-extfile",
            path(&ext),
        ]);
        fs::set_permissions(&server_key, fs::Permissions::from_mode(0o600)).expect("chmod key");
        hand_over(&server_key);
        hand_over(&server_cert);
        TlsFiles { ca_cert, other_ca_cert, server_cert, server_key }
    }

    pub(crate) fn server_settings(&self) -> Vec<String> {
        vec![
            "ssl = on".into(),
            format!("ssl_cert_file = '{}'", self.server_cert.display()),
            format!("ssl_key_file = '{}'", self.server_key.display()),
        ]
    }
}

fn make_ca(key: &Path, cert: &Path, name: &str) {
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        path(key),
        "-out",
        path(cert),
    ]);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}
