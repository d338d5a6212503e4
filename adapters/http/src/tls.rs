//! TLS with rustls: the server configuration from PEM files, and the client
//! configuration for the gateway's `https://` upstreams (the rustls provider comes from
//! the backend list, `crypto_backends::tls_provider`).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS could not be set up; each names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No rustls provider in this build fits the backend.
    #[error(
        "TLS needs a rustls crypto provider and this build has none for the {backend} backend: {advice}"
    )]
    NoProvider {
        /// The crypto backend.
        backend: String,
        /// Which features bring one (from the backend list).
        advice: String,
    },
    /// A PEM file could not be read or holds nothing usable.
    #[error("{setting} {}: {problem}", path.display())]
    File {
        /// `TLS_CERT_FILE`, `TLS_KEY_FILE` or a gateway route's `ca_file`.
        setting: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The certificate and key do not go together.
    #[error("TLS_CERT_FILE / TLS_KEY_FILE do not form a usable pair: {0}")]
    Pair(rustls::Error),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Config(rustls::Error),
}

fn file_error(setting: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        setting,
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

/// A server configuration (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`) from a PEM
/// certificate chain and a PEM private key.
///
/// # Errors
/// [`TlsError`], naming the file or setting at fault.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect)
        .map_err(|e| file_error("TLS_CERT_FILE", cert_file, e))?;
    if certs.is_empty() {
        return Err(file_error(
            "TLS_CERT_FILE",
            cert_file,
            "no PEM certificate in it",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| file_error("TLS_KEY_FILE", key_file, e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The system's CA bundle (Debian and derivatives), trusted when a route names no CA
/// file.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client configuration for a gateway route's `https://` upstream (TLS 1.2 and 1.3,
/// ALPN `http/1.1`), trusting the certificates of `ca_file` (PEM), or the system's
/// bundle without one.
///
/// # Errors
/// [`TlsError`], naming the file at fault.
pub fn upstream_client_config(
    provider: Arc<CryptoProvider>,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| file_error("ca_file", path, e))?;
    let mut roots = RootCertStore::empty();
    if roots.add_parsable_certificates(certs).0 == 0 {
        return Err(file_error("ca_file", path, "no usable certificate"));
    }
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
