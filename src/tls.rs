//! TLS for outgoing HTTPS (webhook sinks): rustls with the system's root
//! certificates, or the CA certificates of a PEM file.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The CA certificates of a PEM file, or why they cannot be used.
pub fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "tls_ca_file {}: no certificate in it",
            path.display()
        ));
    }
    Ok(roots)
}

/// A client configuration trusting `ca` (a PEM file) or, without it, the
/// system's roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let roots = match ca {
        Some(path) => ca_roots(path)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no system root certificates found (give tls_ca_file)".into());
            }
            roots
        }
    };
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
