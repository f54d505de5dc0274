//! Connecting: plain or TLS (see `crate::tls`), each connection driven on a task of its own.

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
    crate::tls::client_config(pems).map(MakeRustlsConnect::new)
}
