//! A sink that publishes each audit event to a NATS JetStream stream (feature `nats`).
//!
//! Each event is one message: the event's JSON as payload, on the subject
//! `<prefix>.<category>.<action>` (`audit.sensitive.user.role.change`), so consumers can
//! subscribe to `audit.sensitive.>` or `audit.*.auth.>`. The prefix is the stream's name in
//! lower case unless set: stream `AUDIT` takes `audit.>`, stream `BILLING_AUDIT`
//! `billing_audit.>`, so two trails with their own streams never claim the same subjects. A batch is published with up to
//! 1,024 messages in flight at once, and the write returns when JetStream has acknowledged
//! each one: an acknowledged message is stored by the stream, so the sink needs no separate sync.
//!
//! Every message carries the event id as `Nats-Msg-Id`, so when a batch is offered again
//! after a failure, JetStream drops the messages it already stored (within the stream's
//! duplicate window, two minutes by default, far longer than the writer's retry backoff).
//! Messages also carry `Nats-Expected-Stream`: a message that no stream of that name would
//! store fails instead of landing elsewhere.
//!
//! The sink connects on its first write, on the trail's writer thread, and reconnects after
//! an error; the writer retries the failed batch with backoff meanwhile. By default it creates
//! the stream if it is missing (file storage, subjects `<prefix>.>`); see
//! [`NatsSinkBuilder::create_stream`]. Building the sink does no I/O.
//!
//! An event larger than the server's `max_payload` (1 MiB by default; big `before`/`after`
//! snapshots) is published without `before`, `after`, `changes` and `details`, labelled
//! [`TRUNCATED_LABEL`] with its size: refused, it would be retried forever and hold back every
//! event after it.
//!
//! The stream is a copy of the trail for consumers (alerting, a SIEM), not the tamper-evident
//! record: keep a [`JsonlFileSink`](crate::file::JsonlFileSink) beside it.
//!
//! # Example
//!
//! ```no_run
//! use audit_layer::AuditTrail;
//! use audit_layer::sink::nats::NatsSink;
//! use audit_layer::file::JsonlFileSink;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let audit = AuditTrail::builder()
//!     .sink(JsonlFileSink::new("./audit-log"))
//!     .sink(NatsSink::builder("nats://127.0.0.1:4222").stream("AUDIT").subject_prefix("audit").build()?)
//!     .build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use super::{BoxFuture, Sink, SinkError};

mod follow;
mod mirror;
mod tree;

pub use self::follow::{CHECKPOINT_HEADER, HASH_HEADER, SEQ_HEADER};
pub use self::mirror::{DEFAULT_CHECKPOINT_STREAM, NatsCheckpointMirror};
pub use self::tree::TREE_SIZE_HEADER;
#[cfg(feature = "collector")]
pub(crate) use self::tree::{PublishedHead, TREE_SUFFIX};
use crate::error::ConfigError;
use crate::event::{AuditEvent, Category, write_event};

/// The stream used when none is given.
pub const DEFAULT_STREAM: &str = "AUDIT";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes audit events to a NATS JetStream stream. See the [module docs](self).
pub struct NatsSink {
    servers: Vec<async_nats::ServerAddr>,
    stream: String,
    subject_prefix: String,
    create_stream: bool,
    timeout: Duration,
    name: String,
    jetstream: Option<jetstream::Context>,
    /// Acknowledgements of the batch in flight, reused between batches.
    acks: Vec<PublishAckFuture>,
    /// The subject being built, reused between events.
    subject: String,
    /// The trail's directory, as a follower: where its tree heads are read.
    trail_dir: Option<std::path::PathBuf>,
    /// The size of the last tree head on the stream, once read.
    tree_published: Option<u64>,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("create_stream", &self.create_stream)
            .field("timeout", &self.timeout)
            .field("connected", &self.jetstream.is_some())
            .finish()
    }
}

/// Settings of a [`NatsSink`], from [`NatsSink::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct NatsSinkBuilder {
    url: String,
    stream: String,
    /// `None`: the stream's name in lower case.
    subject_prefix: Option<String>,
    create_stream: bool,
    timeout: Duration,
}

impl fmt::Debug for NatsSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSinkBuilder")
            .field("url", &without_credentials(&self.url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("create_stream", &self.create_stream)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl NatsSink {
    /// A sink for the NATS server(s) at `url` (`nats://host:4222`, several separated by
    /// commas; credentials as `nats://user:password@host`).
    pub fn builder(url: impl Into<String>) -> NatsSinkBuilder {
        NatsSinkBuilder {
            url: url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: None,
            create_stream: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A sink for the server at `url`, with the default settings.
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder(url).build()
    }

    /// The subject an event is published on: `<prefix>.<category>.<action>`, where each
    /// token of the action that a subject cannot hold (empty, whitespace, `*`, `>`) has
    /// those characters replaced with `_`.
    pub fn subject_for(&self, event: &AuditEvent) -> String {
        let mut subject = String::new();
        write_subject(&mut subject, &self.subject_prefix, event);
        subject
    }
}

impl NatsSinkBuilder {
    /// The JetStream stream; default `AUDIT`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// The first tokens of every subject; by default the stream's name in lower case
    /// (`audit` for the default stream `AUDIT`).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = Some(prefix.into());
        self
    }

    /// Whether the sink creates the stream if it is missing (file storage, subjects
    /// `<prefix>.>`); default `true`. An existing stream is used as it is; it must take the
    /// sink's subjects.
    pub fn create_stream(mut self, create: bool) -> Self {
        self.create_stream = create;
        self
    }

    /// How long connecting, or publishing a batch and receiving its acknowledgements, may
    /// take before it counts as failed and is retried; default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and returns the sink; it connects on its first write.
    pub fn build(self) -> Result<NatsSink, ConfigError> {
        let invalid = |reason: String| ConfigError::Sink {
            sink: "nats",
            reason,
        };
        let servers = self
            .url
            .split(',')
            .map(|server| {
                server
                    .trim()
                    .parse::<async_nats::ServerAddr>()
                    .map_err(|error| {
                        invalid(format!(
                            "`{}` is not a NATS server address: {error}",
                            without_credentials(server.trim())
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !is_stream_name(&self.stream) {
            return Err(invalid(format!(
                "`{}` is not a stream name: use letters, digits, `-` and `_`",
                self.stream
            )));
        }
        let subject_prefix = self
            .subject_prefix
            .unwrap_or_else(|| self.stream.to_ascii_lowercase());
        if subject_prefix.is_empty()
            || subject_prefix
                .split('.')
                .any(|token| token.is_empty() || token.chars().any(is_forbidden_in_subject))
        {
            return Err(invalid(format!(
                "`{subject_prefix}` is not a subject prefix: use dot-separated tokens without spaces, `*` or `>`",
            )));
        }
        if self.timeout.is_zero() {
            return Err(invalid("the timeout must be more than zero".to_owned()));
        }
        let name = format!("nats:{}/{}", without_credentials(&self.url), self.stream);
        Ok(NatsSink {
            servers,
            stream: self.stream,
            subject_prefix,
            create_stream: self.create_stream,
            timeout: self.timeout,
            name,
            jetstream: None,
            acks: Vec::new(),
            subject: String::new(),
            trail_dir: None,
            tree_published: None,
        })
    }
}

fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_forbidden_in_subject(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '*' || c == '>'
}

/// `<prefix>.<category>.<action>` into `out`, with the action's tokens made valid.
fn write_subject(out: &mut String, prefix: &str, event: &AuditEvent) {
    write_subject_parts(out, prefix, event.category, &event.action);
}

fn write_subject_parts(out: &mut String, prefix: &str, category: Category, action: &str) {
    out.clear();
    out.push_str(prefix);
    out.push('.');
    out.push_str(category.as_str());
    for token in action.split('.') {
        out.push('.');
        if token.is_empty() {
            out.push('_');
        }
        out.extend(
            token
                .chars()
                .map(|c| if is_forbidden_in_subject(c) { '_' } else { c }),
        );
    }
}

/// The URL(s) without `user:password@`, for names, logs and errors.
fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let server = server.trim();
            let (scheme, rest) = match server.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, server),
            };
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            match scheme {
                Some(scheme) => format!("{scheme}://{rest}"),
                None => rest.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl NatsSink {
    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .name("audit-layer")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .connect(self.servers.clone())
            .await
            .map_err(|error| SinkError::new(format!("cannot connect: {error}")))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(self.timeout)
            .build(client);
        if self.create_stream {
            jetstream
                .get_or_create_stream(stream::Config {
                    name: self.stream.clone(),
                    subjects: vec![format!("{}.>", self.subject_prefix)],
                    storage: stream::StorageType::File,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|error| self.stream_error(&error))?;
        }
        Ok(jetstream)
    }

    /// Why the stream could not be created, and for the likely mistake, what to change.
    fn stream_error(&self, error: &jetstream::context::CreateStreamError) -> SinkError {
        let overlap = matches!(
            error.kind(),
            jetstream::context::CreateStreamErrorKind::JetStream(error)
                if error.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP
        );
        if overlap {
            return SinkError::new(format!(
                "cannot create stream `{stream}`: its subjects `{prefix}.>` are taken by \
                 another stream on this server; give this sink a prefix of its own with \
                 `NatsSinkBuilder::subject_prefix`, or create the stream yourself and set \
                 `NatsSinkBuilder::create_stream(false)`",
                stream = self.stream,
                prefix = self.subject_prefix,
            ));
        }
        SinkError::new(format!("cannot create stream `{}`: {error}", self.stream))
    }

    async fn publish(&mut self, events: &[AuditEvent]) -> Result<(), SinkError> {
        let jetstream = self.connected().await?;
        self.acks.clear();
        let max_payload = max_payload(&jetstream);
        for event in events {
            write_subject(&mut self.subject, &self.subject_prefix, event);
            let mut payload = Vec::with_capacity(1024);
            write_event(&mut payload, event)?;
            if payload.len() > max_payload {
                let shortened = shortened(event, payload.len(), max_payload);
                payload.clear();
                write_event(&mut payload, &shortened)?;
            }
            let payload = Bytes::from(payload);
            let message = jetstream::message::PublishMessage::build()
                .payload(payload)
                .message_id(
                    event
                        .id
                        .as_hyphenated()
                        .encode_lower(&mut uuid::Uuid::encode_buffer()),
                )
                .expected_stream(&self.stream);
            send(&jetstream, &mut self.acks, self.subject.clone(), message).await?;
        }
        wait_for(&mut self.acks).await
    }

    /// The connection, made first if there is none. A `Context` is a handle: the clone is
    /// cheap, and leaves the sink free to be borrowed.
    /// The subject prefix: a trail's lines are on `<prefix>.<trail>.>`.
    #[cfg_attr(not(feature = "collector"), allow(dead_code))]
    pub(crate) fn prefix(&self) -> &str {
        &self.subject_prefix
    }

    /// The durable pull consumer `name` of the stream, over all the trails' subjects,
    /// created if need be: what collectors share.
    #[cfg(feature = "collector")]
    pub(crate) async fn durable_consumer(
        &mut self,
        name: &str,
        batch_size: usize,
    ) -> Result<jetstream::consumer::PullConsumer, SinkError> {
        use jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
        let jetstream = self.connected().await?;
        let stream = jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|error| SinkError::new(format!("no stream `{}`: {error}", self.stream)))?;
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject: format!("{}.>", self.subject_prefix),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            // Room for a few batches per collector.
            max_ack_pending: i64::try_from(batch_size.saturating_mul(8)).unwrap_or(i64::MAX),
            ..Default::default()
        };
        stream
            .get_or_create_consumer(name, config)
            .await
            .map_err(|error| SinkError::new(format!("cannot open consumer `{name}`: {error}")))
    }

    async fn connected(&mut self) -> Result<jetstream::Context, SinkError> {
        if self.jetstream.is_none() {
            self.jetstream = Some(self.connect().await?);
        }
        self.jetstream
            .clone()
            .ok_or_else(|| SinkError::new("not connected"))
    }
}

/// The largest payload the server takes, with room left for a message's headers.
fn max_payload(jetstream: &jetstream::Context) -> usize {
    jetstream
        .client()
        .server_info()
        .max_payload
        .saturating_sub(HEADER_ROOM)
}

/// Publishes `message`, its acknowledgement kept in `acks`. The client lends a bounded
/// number of acknowledgement slots (5,000): past [`MAX_IN_FLIGHT`], the ones waiting are
/// awaited first, or a large batch would wait for a slot forever.
async fn send(
    jetstream: &jetstream::Context,
    acks: &mut Vec<PublishAckFuture>,
    subject: String,
    message: jetstream::message::PublishMessage,
) -> Result<(), SinkError> {
    if acks.len() == MAX_IN_FLIGHT {
        wait_for(acks).await?;
    }
    let ack = jetstream
        .send_publish(subject, message)
        .await
        .map_err(|error| SinkError::new(format!("publish: {error}")))?;
    acks.push(ack);
    Ok(())
}

/// `publishing`'s result, or a failure if its messages are not all acknowledged within
/// `timeout`.
async fn acknowledged(
    timeout: Duration,
    count: &str,
    publishing: impl Future<Output = Result<(), SinkError>>,
) -> Result<(), SinkError> {
    tokio::time::timeout(timeout, publishing)
        .await
        .unwrap_or_else(|_| {
            Err(SinkError::new(format!(
                "{count} not acknowledged within {timeout:?}"
            )))
        })
}

impl NatsSink {
    /// After a failure: the client reconnects by itself after a network failure, but a
    /// fresh connection also recreates a stream deleted meanwhile.
    fn start_afresh(&mut self) {
        self.acks.clear();
        self.jetstream = None;
        self.tree_published = None;
    }
}

/// The most messages published before waiting for their acknowledgements.
const MAX_IN_FLIGHT: usize = 1024;

/// Waits for every acknowledgement in `acks`.
async fn wait_for(acks: &mut Vec<PublishAckFuture>) -> Result<(), SinkError> {
    for ack in acks.drain(..) {
        ack.await
            .map_err(|error| SinkError::new(format!("not acknowledged: {error}")))?;
    }
    Ok(())
}

/// Bytes of a message's limit kept for its headers.
const HEADER_ROOM: usize = 1024;

/// The label that marks a message holding a shortened event.
pub const TRUNCATED_LABEL: &str = "audit.truncated";

/// An event too large for the server (big `before`/`after` snapshots) without its state and
/// details, and labelled [`TRUNCATED_LABEL`] with why: refused whole, it would fail its
/// batch on every retry and hold back every event after it. The file trail keeps it whole.
fn shortened(event: &AuditEvent, size: usize, max_payload: usize) -> AuditEvent {
    let mut short = event.clone();
    short.before = None;
    short.after = None;
    short.changes = None;
    short.details = None;
    short.labels.insert(
        TRUNCATED_LABEL.to_owned(),
        format!(
            "the event's {size} bytes exceed the server's limit of {max_payload}; before, after, \
             changes and details are left out"
        ),
    );
    short
}

impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { self.connected().await.map(drop) })
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let count = format!("{} event(s)", events.len());
            let result = acknowledged(self.timeout, &count, self.publish(events)).await;
            if result.is_err() {
                self.start_afresh();
            }
            result
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        // Every message written was acknowledged: nothing is left to flush.
        self.jetstream = None;
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Outcome;
    use crate::event::actor::Actor;

    #[test]
    fn subjects_carry_category_and_action_and_stay_valid() {
        let sink = NatsSink::new("nats://127.0.0.1:4222").expect("valid");
        let event = AuditEvent::new(
            Category::Sensitive,
            "user.role.change",
            Outcome::Success,
            Actor::anonymous(),
        );
        assert_eq!(sink.subject_for(&event), "audit.sensitive.user.role.change");
        let event = AuditEvent::new(
            Category::System,
            "odd..act ion*>.",
            Outcome::Success,
            Actor::anonymous(),
        );
        assert_eq!(sink.subject_for(&event), "audit.system.odd._.act_ion__._");
    }

    #[test]
    fn bad_settings_are_refused_and_names_hide_credentials() {
        let sink = NatsSink::new("nats://audit:s3cret@127.0.0.1:4222").expect("valid");
        assert_eq!(sink.name(), "nats:nats://127.0.0.1:4222/AUDIT");
        assert!(!format!("{sink:?}").contains("s3cret"));
        for builder in [
            NatsSink::builder("nats://127.0.0.1:4222").stream("A.B"),
            NatsSink::builder("nats://127.0.0.1:4222").stream(""),
            NatsSink::builder("nats://127.0.0.1:4222").subject_prefix("audit.>"),
            NatsSink::builder("nats://127.0.0.1:4222").subject_prefix("a..b"),
            NatsSink::builder("nats://127.0.0.1:4222").subject_prefix(""),
            NatsSink::builder("nats://127.0.0.1:4222").timeout(Duration::ZERO),
            NatsSink::builder("http://[::1"),
        ] {
            let shown = format!("{builder:?}");
            let error = builder.build().expect_err(&shown);
            assert!(
                error.to_string().starts_with("invalid nats sink settings"),
                "{error}"
            );
        }
    }
}
