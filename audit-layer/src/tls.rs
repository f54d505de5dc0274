//! TLS client settings shared by every remote store: rustls with ring, Mozilla's roots
//! and any roots the application adds.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client configuration that verifies the server's certificate and name against
/// Mozilla's roots and the certificates in `pems` (PEM, each holding one or more).
pub(crate) fn client_config(pems: &[Vec<u8>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for pem in pems {
        let mut found = 0;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate
                .map_err(|error| format!("a root certificate is not valid PEM: {error}"))?;
            roots
                .add(certificate)
                .map_err(|error| format!("a root certificate is not usable: {error}"))?;
            found += 1;
        }
        if found == 0 {
            return Err("a root certificate PEM holds no `BEGIN CERTIFICATE` block".to_owned());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
