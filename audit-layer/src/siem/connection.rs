//! A stream to a receiver: TCP, or TLS over TCP (rustls, see `crate::tls`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::sink::SinkError;

/// Where to connect, and how.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `None` for plain TCP.
    pub(crate) tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Endpoint {
    /// `host:port` of a `scheme://host:port` URL; TLS when `tls_config` is given.
    pub(crate) fn parse(
        url: &str,
        tls_config: Option<rustls::ClientConfig>,
    ) -> Result<Self, String> {
        let rest = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("`{url}` is not a URL (expected scheme://host:port)"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{url}` has no port (expected scheme://host:port)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` in `{url}` is not a port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let tls = match tls_config {
            None => None,
            Some(config) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|error| format!("`{host}` is not a TLS server name: {error}"))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Self { host, port, tls })
    }

    /// Connects within `timeout`.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Stream, SinkError> {
        let address = format!("{}:{}", self.host, self.port);
        let connect = async {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(match &self.tls {
                None => Stream::Plain(tcp),
                Some((connector, name)) => {
                    Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
                }
            })
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(SinkError::new(format!("{address}: {error}"))),
            Err(_) => Err(SinkError::new(format!(
                "{address}: no connection within {timeout:?}"
            ))),
        }
    }
}

/// A connected stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
