//! [`NatsCheckpointMirror`]: the file trail's checkpoints, also kept as messages of a NATS
//! JetStream stream.

use async_nats::jetstream::{self, stream};

use super::{is_forbidden_in_subject, without_credentials};
use crate::error::ConfigError;
use crate::file::mirror::{MIRROR_TIMEOUT, Publish, PublishingThread};
use crate::file::{Checkpoint, CheckpointMirror};

/// The stream used when none is given.
pub const DEFAULT_CHECKPOINT_STREAM: &str = "AUDIT_CHECKPOINTS";

/// Publishes each checkpoint of a file trail as a message on
/// `audit-checkpoints.<trail>` of a JetStream stream ([`DEFAULT_CHECKPOINT_STREAM`], created
/// if need be), with the checkpoint's trail and `seq_to` as its message id, so a retry is
/// stored once.
///
/// A thread of its own does the I/O, as for
/// [`PostgresCheckpointMirror`](crate::sink::postgres::PostgresCheckpointMirror). Give the
/// application credentials that may publish to the subject but not purge or delete from the
/// stream, and the messages are out of the reach of whoever holds the trail directory.
/// `audit verify DIR --against-checkpoint nats://... --mirror-trail NAME` checks the trail
/// against the newest message.
///
/// ```no_run
/// use audit_layer::file::JsonlFileSink;
/// use audit_layer::sink::nats::NatsCheckpointMirror;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mirror = NatsCheckpointMirror::new("nats://nats:4222", "billing-eu-1")?;
/// let sink = JsonlFileSink::builder("./audit-log").checkpoint_mirror(mirror).build();
/// # Ok(()) }
/// ```
pub struct NatsCheckpointMirror {
    thread: PublishingThread,
}

/// Where messages go, and the connection once made.
struct Target {
    url: String,
    stream: String,
    subject: String,
    trail: String,
    name: String,
    jetstream: Option<jetstream::Context>,
}

impl NatsCheckpointMirror {
    /// A mirror on `url`'s stream [`DEFAULT_CHECKPOINT_STREAM`] for the trail named `trail`
    /// (letters, digits, `-` and `_`). Checks the settings; connects on the first
    /// checkpoint.
    pub fn new(url: &str, trail: &str) -> Result<Self, ConfigError> {
        let target = Target::parse(url, trail)?;
        let thread =
            PublishingThread::start(target.name.clone(), target).map_err(ConfigError::Writer)?;
        Ok(Self { thread })
    }

    /// The newest checkpoint of `trail` on `url`, if any: what `audit verify
    /// --against-checkpoint` checks a trail against.
    pub async fn newest(url: &str, trail: &str) -> Result<Option<Checkpoint>, ConfigError> {
        let target = Target::parse(url, trail)?;
        let unreachable = |reason: String| ConfigError::Unreachable {
            sink: target.name.clone(),
            reason,
        };
        let jetstream = target.connect().await.map_err(unreachable)?;
        let stream = match jetstream.get_stream(&target.stream).await {
            Ok(stream) => stream,
            Err(error) => {
                return Err(unreachable(format!(
                    "no stream `{}`: {error}",
                    target.stream
                )));
            }
        };
        let message = match stream
            .get_last_raw_message_by_subject(&target.subject)
            .await
        {
            Ok(message) => message,
            Err(error)
                if error.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                return Ok(None);
            }
            Err(error) => return Err(unreachable(error.to_string())),
        };
        serde_json::from_slice(&message.payload)
            .map(Some)
            .map_err(|e| unreachable(format!("a message that is not a checkpoint: {e}")))
    }
}

impl std::fmt::Debug for NatsCheckpointMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCheckpointMirror")
            .field("name", &self.thread.name())
            .finish_non_exhaustive()
    }
}

impl CheckpointMirror for NatsCheckpointMirror {
    fn name(&self) -> &str {
        self.thread.name()
    }

    fn publish(&mut self, checkpoint: &Checkpoint) -> std::io::Result<()> {
        self.thread.hand_over(checkpoint);
        Ok(())
    }
}

impl Publish for Target {
    async fn publish(&mut self, checkpoint: &Checkpoint) -> Result<(), String> {
        if self.jetstream.is_none() {
            let jetstream = self.connect().await?;
            jetstream
                .get_or_create_stream(stream::Config {
                    name: self.stream.clone(),
                    subjects: vec!["audit-checkpoints.>".to_owned()],
                    storage: stream::StorageType::File,
                    duplicate_window: std::time::Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot create stream `{}`: {e}", self.stream))?;
            self.jetstream = Some(jetstream);
        }
        let Some(jetstream) = &self.jetstream else {
            return Err("not connected".to_owned());
        };
        let payload = serde_json::to_vec(checkpoint).map_err(|e| e.to_string())?;
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(format!("{}-{}", self.trail, checkpoint.seq_to))
            .expected_stream(&self.stream);
        jetstream
            .send_publish(self.subject.clone(), message)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn disconnect(&mut self) {
        self.jetstream = None;
    }
}

impl Target {
    fn parse(url: &str, trail: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Sink {
            sink: "nats checkpoint mirror",
            reason,
        };
        if url.trim().is_empty() {
            return Err(invalid("no server URL".to_owned()));
        }
        let valid_trail = !trail.is_empty()
            && trail.len() <= 128
            && trail
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_trail || trail.chars().any(is_forbidden_in_subject) {
            return Err(invalid(format!(
                "`{trail}` is not a trail name: 1 to 128 letters, digits, `-` or `_`"
            )));
        }
        Ok(Self {
            name: format!(
                "nats:{}/{DEFAULT_CHECKPOINT_STREAM}",
                without_credentials(url)
            ),
            url: url.to_owned(),
            stream: DEFAULT_CHECKPOINT_STREAM.to_owned(),
            subject: format!("audit-checkpoints.{trail}"),
            trail: trail.to_owned(),
            jetstream: None,
        })
    }

    async fn connect(&self) -> Result<jetstream::Context, String> {
        let client = async_nats::ConnectOptions::new()
            .name("audit-layer-checkpoint-mirror")
            .connection_timeout(MIRROR_TIMEOUT)
            .request_timeout(Some(MIRROR_TIMEOUT))
            .connect(self.url.as_str())
            .await
            .map_err(|error| format!("cannot connect: {error}"))?;
        Ok(jetstream::ContextBuilder::new()
            .timeout(MIRROR_TIMEOUT)
            .build(client))
    }
}
