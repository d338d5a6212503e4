//! The TLS client settings of an `https` [`Endpoint`](crate::Endpoint): which
//! certificate authorities to trust, with the rustls provider the caller chooses.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::FlowError;

/// The system's CA bundle (Debian and derivatives), used when no CA file is given.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client configuration (TLS 1.2 and 1.3, ALPN `http/1.1`) trusting the
/// certificates in the PEM file `ca_file`, or the system's CA bundle without one.
///
/// # Errors
/// [`FlowError::Tls`], naming the file at fault.
pub fn client_config(
    provider: Arc<CryptoProvider>,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, FlowError> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS));
    let bad = |problem: String| FlowError::Tls(format!("CA file {}: {problem}", path.display()));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| bad(e.to_string()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable certificate".into()));
    }
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FlowError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
