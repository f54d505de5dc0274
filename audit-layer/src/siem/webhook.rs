//! The webhook follower: the trail as batched, signed HTTPS POSTs in Splunk HEC, Elastic
//! `_bulk` or NDJSON shape.

use std::fmt;
use std::path::Path;

use crate::error::ConfigError;
use crate::event::AuditEvent;
use crate::file::TrailLine;
use crate::follow::{Cursor, Follower, LocalCursor};
use crate::format::Format;
use crate::siem::http::{Target, TargetSettings};
use crate::sink::{BoxFuture, SinkError};

const DEFAULT_MAX_BODY: usize = 4 << 20;

/// The header naming a batch's trail and seqs (`shop-1:100-4195`): a receiver that keeps
/// the last one it stored can drop a batch it has seen.
pub const BATCH_HEADER: &str = "audit-batch";

/// How a [`WebhookFollower`] lays out a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookShape {
    /// One event per line (`application/x-ndjson`); CEF records are lines of text.
    #[default]
    Ndjson,
    /// Splunk's HTTP Event Collector (`/services/collector/event`): one
    /// `{"time","source","sourcetype","event","fields"}` object per event, the event id
    /// among the indexed `fields`.
    SplunkHec,
    /// Elasticsearch's `_bulk` API (`/<index>/_bulk`): a `create` with the event id as the
    /// document `_id` before each document, so that Elasticsearch itself drops a resent
    /// event (its `409` counts as stored). JSON formats only.
    ElasticBulk,
}

/// A follower that POSTs the trail to a webhook, batch by batch, each body signed with
/// HMAC-SHA256 ([`sign_webhook`](crate::siem::sign_webhook)) when a secret is set.
///
/// A batch counts as delivered when the receiver answers `2xx` (for `_bulk`: with no item
/// failed other than as a duplicate); anything else, or no answer within the timeout, is
/// retried with backoff from the follower's cursor (kept in `DIR/followers/`), so nothing
/// is lost while the receiver is down, and what was delivered is not sent again. Only a
/// batch the receiver stored but whose answer was lost is sent twice: each event carries
/// its id (and each request the [`BATCH_HEADER`]) for the receiver to drop it.
///
/// ```
/// use audit_layer::file::JsonlFileSink;
/// use audit_layer::format::Format;
/// use audit_layer::siem::{WebhookFollower, WebhookShape};
/// use audit_layer::AuditTrail;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let elastic = WebhookFollower::builder("https://elastic.internal:9200/audit/_bulk")
///     .shape(WebhookShape::ElasticBulk)
///     .format(Format::Ecs)
///     .header("authorization", "ApiKey c2VjcmV0")
///     .secret(b"shared secret".to_vec())
///     .build()?;
/// let audit = AuditTrail::builder()
///     .sink(JsonlFileSink::new(dir.path()))
///     .follower(elastic)
///     .build()?;
/// # drop(audit);
/// # Ok(()) }
/// ```
pub struct WebhookFollower {
    target: Target,
    shape: WebhookShape,
    format: Format,
    max_body: usize,
    cursor: LocalCursor,
    body: Vec<u8>,
    record: Vec<u8>,
}

impl fmt::Debug for WebhookFollower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers and the secret stay out of logs.
        f.debug_struct("WebhookFollower")
            .field("name", &self.target.name)
            .field("shape", &self.shape)
            .field("format", &self.format)
            .field("signed", &self.target.signed())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`WebhookFollower`], from [`WebhookFollower::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct WebhookFollowerBuilder {
    url: String,
    shape: WebhookShape,
    format: Format,
    max_body: usize,
    target: TargetSettings,
}

impl fmt::Debug for WebhookFollowerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookFollowerBuilder")
            .field("url", &self.url)
            .field("shape", &self.shape)
            .field("format", &self.format)
            .field("signed", &self.target.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookFollower {
    /// A follower POSTing to `url` (`https://..`, or `http://..` for a receiver on the
    /// same host or network).
    pub fn builder(url: impl Into<String>) -> WebhookFollowerBuilder {
        WebhookFollowerBuilder {
            url: url.into(),
            shape: WebhookShape::Ndjson,
            format: Format::Ocsf,
            max_body: DEFAULT_MAX_BODY,
            target: TargetSettings::default(),
        }
    }
}

impl WebhookFollowerBuilder {
    crate::siem::http::target_setters!();

    /// How a batch is laid out (default [`WebhookShape::Ndjson`]).
    pub fn shape(mut self, shape: WebhookShape) -> Self {
        self.shape = shape;
        self
    }

    /// The events' format (default [`Format::Ocsf`]).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The largest body sent at once (default 4 MiB): a batch beyond it goes in several
    /// requests. One event bigger than this is sent alone. A receiver that answers `413
    /// Payload Too Large` halves it for the bodies that follow.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<WebhookFollower, ConfigError> {
        let invalid = |reason: String| ConfigError::Sink {
            sink: "webhook",
            reason,
        };
        if self.shape == WebhookShape::ElasticBulk && !self.format.is_json() {
            return Err(invalid(format!(
                "Elastic _bulk takes JSON documents, not {}",
                self.format
            )));
        }
        if self.max_body == 0 {
            return Err(ConfigError::Zero("webhook max body bytes"));
        }
        let target = self.target.build(&self.url, "webhook").map_err(invalid)?;
        Ok(WebhookFollower {
            cursor: LocalCursor::new(&target.name),
            target,
            shape: self.shape,
            format: self.format,
            max_body: self.max_body,
            body: Vec::new(),
            record: Vec::new(),
        })
    }
}

impl WebhookFollower {
    /// Appends one event to the body, in the follower's shape.
    fn append(&mut self, trail: &str, line: &TrailLine) -> Result<(), SinkError> {
        let event: AuditEvent = line.event().map_err(|error| {
            SinkError::new(format!("line {} holds no audit/1 event: {error}", line.seq))
        })?;
        self.record.clear();
        if self.format == Format::Audit {
            self.record.extend_from_slice(line.json.as_bytes());
        } else {
            self.format
                .encode_at(&event, trail, line.seq, &mut self.record)
                .map_err(SinkError::new)?;
        }
        let body = &mut self.body;
        match self.shape {
            WebhookShape::Ndjson => body.extend_from_slice(&self.record),
            WebhookShape::ElasticBulk => {
                body.extend_from_slice(b"{\"create\":{\"_id\":\"");
                body.extend_from_slice(event.id.hyphenated().to_string().as_bytes());
                body.extend_from_slice(b"\"}}\n");
                body.extend_from_slice(&self.record);
            }
            WebhookShape::SplunkHec => {
                let micros = event.time.unix_micros();
                let sourcetype = match self.format {
                    Format::Audit => "audit/1",
                    other => other.name(),
                };
                let head = serde_json::json!({
                    "time": format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000),
                    "source": "audit-layer",
                    "sourcetype": sourcetype,
                    "fields": {"event_id": event.id.to_string(), "trail": trail, "seq": line.seq},
                });
                let head = head.to_string();
                // `{"fields":..,"source":..,...` then `,"event":<record>}`.
                body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
                body.extend_from_slice(b",\"event\":");
                if self.format.is_json() {
                    body.extend_from_slice(&self.record);
                } else {
                    let text = String::from_utf8_lossy(&self.record);
                    serde_json::to_writer(&mut *body, &text).map_err(SinkError::new)?;
                }
                body.push(b'}');
            }
        }
        body.push(b'\n');
        Ok(())
    }

    /// POSTs the body; `Ok` when the receiver stored it.
    async fn post(&mut self, trail: &str, first: u64, last: u64) -> Result<(), SinkError> {
        let content_type = match self.shape {
            WebhookShape::SplunkHec => "application/json",
            WebhookShape::Ndjson | WebhookShape::ElasticBulk => "application/x-ndjson",
        };
        let batch = (BATCH_HEADER, format!("{trail}:{first}-{last}"));
        let body = std::mem::take(&mut self.body);
        let size = body.len();
        let answer = match self.target.post(body, content_type, Some(batch)).await {
            Ok(answer) => answer,
            Err((error, Some(http::StatusCode::PAYLOAD_TOO_LARGE))) if size > 1 => {
                // The receiver takes less than was sent: smaller bodies from the retry on.
                self.max_body = self.max_body.min(size / 2).max(1);
                tracing::warn!(target: "audit", follower = %self.target.name, max_body = self.max_body, "the receiver refused a body as too large; sending smaller ones");
                return Err(error);
            }
            Err((error, _)) => return Err(error),
        };
        if self.shape == WebhookShape::ElasticBulk
            && let Some(failure) = bulk_failure(&answer)
        {
            return Err(SinkError::new(format!("{}: {failure}", self.target.name)));
        }
        Ok(())
    }
}

/// The first item of an Elasticsearch `_bulk` answer that failed other than as a
/// duplicate (`409`, the document with that id exists: stored before).
fn bulk_failure(answer: &[u8]) -> Option<String> {
    let answer: serde_json::Value = match serde_json::from_slice(answer) {
        Ok(answer) => answer,
        Err(error) => return Some(format!("the _bulk answer is not JSON: {error}")),
    };
    if answer["errors"] != true {
        return None;
    }
    answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_object()?.values().next())
        .find(|result| !matches!(result["status"].as_u64(), Some(200 | 201 | 409)))
        .map(|result| format!("an item failed: {}", result["error"]))
}

impl Follower for WebhookFollower {
    fn name(&self) -> &str {
        &self.target.name
    }

    fn start(&mut self, trail_dir: &Path) -> Result<(), SinkError> {
        self.cursor.open(trail_dir)
    }

    fn cursor<'a>(&'a mut self, _trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move { self.cursor.get() })
    }

    fn ship<'a>(
        &'a mut self,
        trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut start = 0;
            while start < lines.len() {
                self.body.clear();
                let mut end = start;
                while end < lines.len() && (end == start || self.body.len() < self.max_body) {
                    let before = self.body.len();
                    self.append(trail, &lines[end])?;
                    if end > start && self.body.len() > self.max_body {
                        self.body.truncate(before);
                        break;
                    }
                    end += 1;
                }
                let (first, last) = (&lines[start], &lines[end - 1]);
                self.post(trail, first.seq, last.seq).await?;
                self.cursor.confirm(last.seq, &last.hash);
                start = end;
            }
            Ok(())
        })
    }
}
