//! POSTing to a receiver: one client (rustls, see `crate::tls`), the headers the
//! application gives, and the body's signature, shared by the webhook follower and the
//! webhook notifier.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};

use crate::siem::signature::{SIGNATURE_HEADER, sign_webhook};
use crate::sink::SinkError;

/// The setters of a builder's [`TargetSettings`] (its `target` field): `secret`, `header`,
/// `timeout` and `root_certificate`, the same for every builder that POSTs.
macro_rules! target_setters {
    () => {
        /// Signs each body with this secret, in the
        /// [`SIGNATURE_HEADER`](crate::siem::SIGNATURE_HEADER) (see
        /// [`sign_webhook`](crate::siem::sign_webhook)).
        pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
            self.target.secret = Some(secret.into());
            self
        }

        /// A header sent with every request (`authorization`: `Splunk <token>` for HEC,
        /// `ApiKey ..` for Elasticsearch); its value never appears in logs or `Debug`.
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.target.headers.push((name.into(), value.into()));
            self
        }

        /// The bound of each request, from connecting to the answer (default 30 s).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.target.timeout = Some(timeout);
            self
        }

        /// A PEM certificate (or several) to trust besides Mozilla's roots.
        pub fn root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
            self.target.root_certificates.push(pem.into());
            self
        }
    };
}
pub(crate) use target_setters;

/// Where and how to POST.
pub(crate) struct Target {
    /// For messages: the URL without credentials or query.
    pub(crate) name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    secret: Option<Vec<u8>>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The settings a [`Target`] is built from, checked by [`TargetSettings::build`].
#[derive(Clone, Default)]
pub(crate) struct TargetSettings {
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) root_certificates: Vec<Vec<u8>>,
}

impl TargetSettings {
    /// Checks the URL, headers and certificates; `Err` says what is wrong.
    pub(crate) fn build(self, url: &str, kind: &str) -> Result<Target, String> {
        let url =
            reqwest::Url::parse(url).map_err(|error| format!("`{url}` is not a URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("`{url}`: expected http(s)://host/path"));
        }
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if url.scheme() == "http" && !loopback {
            // Audit events in clear text on a network: allowed (a sidecar, a private
            // network), but said.
            tracing::warn!(target: "audit", %url, "a {kind} over plain HTTP: use https:// beyond this host");
        }
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err("the timeout must be above zero".to_owned());
        }
        let mut headers = Vec::new();
        for (name, value) in self.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            let mut value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("the value of `{name}` is not a header value"))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let tls = crate::tls::client_config(&self.root_certificates)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(self.timeout.unwrap_or(Duration::from_secs(30)))
            .build()
            .map_err(|error| format!("HTTP client: {error}"))?;
        // The name (logs, metrics, a cursor's file) leaves out credentials in the URL.
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        shown.set_query(None);
        Ok(Target {
            name: format!("{kind}:{shown}"),
            url,
            client,
            secret: self.secret,
            headers,
        })
    }
}

impl Target {
    /// Whether bodies are signed.
    pub(crate) fn signed(&self) -> bool {
        self.secret.is_some()
    }

    /// POSTs `body`; the answer's body when the receiver answered `2xx`, else the error
    /// and the status the receiver answered, if it answered.
    pub(crate) async fn post(
        &self,
        body: Vec<u8>,
        content_type: &'static str,
        extra: Option<(&'static str, String)>,
    ) -> Result<bytes::Bytes, (SinkError, Option<http::StatusCode>)> {
        let (status, answer) = self.exchange(body, content_type, extra).await?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&answer).chars().take(200).collect();
            let message = format!("{}: answered {status}: {text}", self.name);
            return Err((SinkError::new(message), Some(status)));
        }
        Ok(answer)
    }

    /// POSTs `body`; the receiver's status and answer, whatever the status.
    pub(crate) async fn exchange(
        &self,
        body: Vec<u8>,
        content_type: &'static str,
        extra: Option<(&'static str, String)>,
    ) -> Result<(http::StatusCode, bytes::Bytes), (SinkError, Option<http::StatusCode>)> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = &self.secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            request = request.header(SIGNATURE_HEADER, sign_webhook(secret, now, &body));
        }
        let failed = |error: reqwest::Error| {
            let message = format!("{}: {}", self.name, without_url(&error));
            (SinkError::new(message), None)
        };
        let response = request.body(body).send().await.map_err(failed)?;
        let status = response.status();
        let answer = response.bytes().await.map_err(failed)?;
        Ok((status, answer))
    }
}

/// The error without its URL, which may hold credentials.
fn without_url(error: &reqwest::Error) -> String {
    let mut error = error.to_string();
    if let Some(start) = error.find(" for url (") {
        error.truncate(start);
    }
    error
}
