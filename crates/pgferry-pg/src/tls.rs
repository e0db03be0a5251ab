//! TLS for connections, with libpq's `sslmode` semantics
//! ([SSL Support](https://www.postgresql.org/docs/current/libpq-ssl.html)).
//!
//! | sslmode | encrypted | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | disable | no | – | – |
//! | allow, prefer | if the server offers it | no | no |
//! | require | yes | only when `sslrootcert` is given (as libpq) | no |
//! | verify-ca | yes | yes | no |
//! | verify-full | yes | yes | yes |
//!
//! RDS forces TLS and publishes its CA bundle; `sslrootcert=/path/global-bundle.pem`
//! with `verify-full` is the setting to use there. `sslrootcert=system` uses the
//! operating system's trust store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::connspec::{ConnSpec, SslMode};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("sslmode={mode} needs a root certificate, but {path} does not exist")]
    MissingRootCert { mode: &'static str, path: PathBuf },
    #[error("the root certificate file {path} holds no usable certificate: {reason}")]
    BadRootCert { path: PathBuf, reason: String },
}

/// How the server's certificate is checked.
enum Verification {
    None,
    Chain(Arc<RootCertStore>),
    ChainAndName(Arc<RootCertStore>),
}

/// The rustls client configuration for a connection spec.
pub(crate) fn client_config(spec: &ConnSpec) -> Result<ClientConfig, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verification = match (spec.sslmode, &spec.sslrootcert) {
        (SslMode::Disable | SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => Verification::None,
        (SslMode::Require | SslMode::VerifyCa, root) => Verification::Chain(load_roots(spec.sslmode, root.as_deref())?),
        (SslMode::VerifyFull, root) => Verification::ChainAndName(load_roots(spec.sslmode, root.as_deref())?),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = match verification {
        Verification::ChainAndName(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Verification::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                inner: WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .expect("root store is not empty"),
            }))
            .with_no_client_auth(),
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified { provider }))
            .with_no_client_auth(),
    };
    Ok(config)
}

fn load_roots(mode: SslMode, path: Option<&Path>) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut store = RootCertStore::empty();
    if path == Some(Path::new("system")) {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = store.add(cert);
        }
        return Ok(Arc::new(store));
    }
    let path = match path {
        Some(p) => p.to_path_buf(),
        // libpq's default location.
        None => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".postgresql/root.crt"),
    };
    if !path.exists() {
        return Err(TlsConfigError::MissingRootCert { mode: mode.as_str(), path });
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| TlsConfigError::BadRootCert { path: path.clone(), reason: e.to_string() })?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsConfigError::BadRootCert { path, reason: "no PEM certificate found".into() });
    }
    Ok(Arc::new(store))
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(ok) => Ok(ok),
            // The chain was good; only the name differs, which verify-ca allows.
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, not authenticated,
/// exactly as libpq does it. The handshake signatures are still checked.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
