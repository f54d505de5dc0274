//! Connecting: plain or TLS (rustls, Mozilla's roots and any given), each connection driven
//! on a task of its own.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Connects, and drives the connection on a task of its own.
pub(super) async fn open<T>(
    config: &tokio_postgres::Config,
    tls: T,
    name: &str,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(target: "audit", sink = %name, %error, "PostgreSQL connection closed");
        }
    });
    Ok((client, task))
}

/// TLS that verifies the server's certificate and name against Mozilla's roots and `pems`.
pub(super) fn tls_connector(pems: &[Vec<u8>]) -> Result<MakeRustlsConnect, String> {
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
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
