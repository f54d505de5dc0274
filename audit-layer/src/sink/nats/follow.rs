//! [`NatsSink`] as a [`Follower`] of the file trail: each line a message on
//! `<prefix>.<trail>.<category>.<action>` whose payload is the whole chained line, with its
//! seq and hash in headers, and the cursor read back from the trail's last message.

use std::ops::ControlFlow;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{NatsSink, acknowledged, max_payload, send, shortened, wait_for, write_subject_parts};
use crate::file::{Checkpoint, TrailLine};
use crate::follow::fields::LineFields;
use crate::follow::{Cursor, Follower};
use crate::sink::{BoxFuture, SinkError};

/// The header that carries a message's seq in the trail.
pub const SEQ_HEADER: &str = "Audit-Seq";
/// The header that carries a message's hash in the trail.
pub const HASH_HEADER: &str = "Audit-Hash";
/// The header of a checkpoint's message, on `<prefix>.<trail>`: the checkpoint's `seq_to`.
pub const CHECKPOINT_HEADER: &str = "Audit-Checkpoint";

impl Follower for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn cursor<'a>(&'a mut self, trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move {
            let result = self.read_cursor(trail).await;
            if result.is_err() {
                self.jetstream = None;
            }
            result
        })
    }

    fn ship<'a>(
        &'a mut self,
        trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let count = format!("{} line(s)", lines.len());
            let result = acknowledged(self.timeout, &count, self.publish_lines(trail, lines)).await;
            if result.is_err() {
                self.start_afresh();
            }
            result
        })
    }

    fn start(&mut self, trail_dir: &std::path::Path) -> Result<(), SinkError> {
        self.trail_dir = Some(trail_dir.to_path_buf());
        Ok(())
    }

    fn takes_checkpoints(&self) -> bool {
        true
    }

    fn checkpoint_cursor<'a>(
        &'a mut self,
        trail: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, SinkError>> {
        Box::pin(async move {
            let result = self.read_checkpoint_cursor(trail).await;
            if result.is_err() {
                self.jetstream = None;
            }
            result
        })
    }

    fn ship_checkpoints<'a>(
        &'a mut self,
        trail: &'a str,
        checkpoints: &'a [Checkpoint],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let count = format!("{} checkpoint(s)", checkpoints.len());
            let timeout = self.timeout;
            let publishing = async {
                self.publish_checkpoints(trail, checkpoints).await?;
                // The tree heads signed by now go with them (a head signed later, with
                // the next checkpoints).
                self.publish_tree_heads(trail).await
            };
            let result = acknowledged(timeout, &count, publishing).await;
            if result.is_err() {
                self.start_afresh();
            }
            result
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.jetstream = None;
        Box::pin(async {})
    }
}

impl NatsSink {
    /// The seq and hash of the trail's last message on the stream.
    async fn read_cursor(&mut self, trail: &str) -> Result<Cursor, SinkError> {
        let subject = format!("{}.{trail}.>", self.subject_prefix);
        match self.last_message(&subject, "message").await? {
            Some(message) => cursor_of(&message),
            None => Ok(Cursor::empty()),
        }
    }

    /// The stream's last message on `subject` (`what` names it in errors), if any.
    pub(super) async fn last_message(
        &mut self,
        subject: &str,
        what: &str,
    ) -> Result<Option<jetstream::message::StreamMessage>, SinkError> {
        let jetstream = self.connected().await?;
        let reading = async {
            let stream = jetstream
                .get_stream_no_info(&self.stream)
                .await
                .map_err(|error| SinkError::new(format!("no stream `{}`: {error}", self.stream)))?;
            match stream.get_last_raw_message_by_subject(subject).await {
                Ok(message) => Ok(Some(message)),
                Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    Ok(None)
                }
                Err(error) => Err(SinkError::new(format!(
                    "cannot read the last {what}: {error}"
                ))),
            }
        };
        tokio::time::timeout(self.timeout, reading)
            .await
            .map_err(|_| SinkError::new(format!("no last {what} within {:?}", self.timeout)))?
    }

    async fn publish_lines(&mut self, trail: &str, lines: &[TrailLine]) -> Result<(), SinkError> {
        let jetstream = self.connected().await?;
        self.acks.clear();
        let max_payload = max_payload(&jetstream);
        let prefix = format!("{}.{trail}", self.subject_prefix);
        for line in lines {
            let fields = LineFields::of(line).map_err(|error| {
                SinkError::new(format!("a trail line that is not an event: {error}"))
            })?;
            write_subject_parts(&mut self.subject, &prefix, fields.category, &fields.action);
            let payload = if line.json.len() > max_payload {
                // The file trail keeps it whole; the message says what it lacks.
                let event = line.event().map_err(SinkError::from)?;
                serde_json::to_vec(&shortened(&event, line.json.len(), max_payload))?
            } else {
                line.json.as_bytes().to_vec()
            };
            let message = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(payload))
                // Deduplicated by the line's place in its trail: a retried line is stored
                // once, and two lines are never taken for one.
                .message_id(format!("{trail}-{}", line.seq))
                .header(SEQ_HEADER, line.seq.to_string().as_str())
                .header(HASH_HEADER, line.hash.as_str())
                .expected_stream(&self.stream);
            send(&jetstream, &mut self.acks, self.subject.clone(), message).await?;
        }
        wait_for(&mut self.acks).await
    }
}

impl NatsSink {
    async fn read_checkpoint_cursor(&mut self, trail: &str) -> Result<Option<u64>, SinkError> {
        let subject = checkpoint_subject(&self.subject_prefix, trail);
        let Some(message) = self.last_message(&subject, "checkpoint").await? else {
            return Ok(None);
        };
        let seq_to = message
            .headers
            .get(CHECKPOINT_HEADER)
            .and_then(|value| value.as_str().parse().ok())
            .ok_or_else(|| {
                SinkError::new(format!(
                    "the last message on {} has no `{CHECKPOINT_HEADER}` header",
                    message.subject
                ))
            })?;
        Ok(Some(seq_to))
    }

    async fn publish_checkpoints(
        &mut self,
        trail: &str,
        checkpoints: &[Checkpoint],
    ) -> Result<(), SinkError> {
        let jetstream = self.connected().await?;
        self.acks.clear();
        let subject = checkpoint_subject(&self.subject_prefix, trail);
        for checkpoint in checkpoints {
            let message = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(serde_json::to_vec(checkpoint)?))
                .message_id(format!("{trail}-checkpoint-{}", checkpoint.seq_to))
                .header(CHECKPOINT_HEADER, checkpoint.seq_to.to_string().as_str())
                .expected_stream(&self.stream);
            send(&jetstream, &mut self.acks, subject.clone(), message).await?;
        }
        wait_for(&mut self.acks).await
    }

    /// Shows `visit` each line of `trail` that the stream holds, in order, as its message
    /// carries it, until it says to stop: for `audit verify --against` ([`CopyCheck`]).
    ///
    /// [`CopyCheck`]: crate::file::CopyCheck
    pub async fn for_each_copied_line(
        &mut self,
        trail: &str,
        mut visit: impl FnMut(TrailLine) -> ControlFlow<()>,
    ) -> Result<(), SinkError> {
        let jetstream = self.connected().await?;
        let unreadable = |error: &dyn std::fmt::Display| {
            SinkError::new(format!("cannot read stream `{}`: {error}", self.stream))
        };
        let stream = jetstream
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|error| unreadable(&error))?;
        let mut messages = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: format!("{}.{trail}.>", self.subject_prefix),
                ..Default::default()
            })
            .await
            .map_err(|error| unreadable(&error))?
            .messages()
            .await
            .map_err(|error| unreadable(&error))?;
        loop {
            // An empty copy delivers nothing: a quiet second is its end.
            let message = match tokio::time::timeout(Duration::from_secs(1), messages.next()).await
            {
                Err(_) | Ok(None) => return Ok(()),
                Ok(Some(Err(error))) => return Err(unreadable(&error)),
                Ok(Some(Ok(message))) => message,
            };
            let last = message.info().map_or(true, |info| info.pending == 0);
            let cursor = cursor_from(message.headers.as_ref(), &message.subject)?;
            let line = TrailLine {
                seq: cursor.next_seq - 1,
                hash: cursor.last_hash.unwrap_or_default(),
                json: String::from_utf8_lossy(&message.payload).into_owned(),
            };
            if visit(line).is_break() || last {
                return Ok(());
            }
        }
    }
}

/// The subject of a trail's checkpoints: `<prefix>.<trail>`, outside the lines' subjects
/// (`<prefix>.<trail>.>`), so that the cursor of the lines is never a checkpoint.
pub(crate) fn checkpoint_subject(prefix: &str, trail: &str) -> String {
    format!("{prefix}.{trail}")
}

/// The seq and hash a message carries.
fn cursor_of(message: &jetstream::message::StreamMessage) -> Result<Cursor, SinkError> {
    cursor_from(Some(&message.headers), &message.subject)
}

/// The seq and hash in a message's headers.
fn cursor_from(
    headers: Option<&async_nats::HeaderMap>,
    subject: &str,
) -> Result<Cursor, SinkError> {
    let header = |name: &str| {
        headers
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str().to_owned())
            .ok_or_else(|| {
                SinkError::new(format!(
                    "a message of the trail ({subject}) has no `{name}` header: another \
                     publisher uses the follower's subjects"
                ))
            })
    };
    let seq = header(SEQ_HEADER)?;
    let seq = seq
        .parse()
        .map_err(|_| SinkError::new(format!("`{SEQ_HEADER}: {seq}` is not a seq")))?;
    Ok(Cursor::after(seq, header(HASH_HEADER)?))
}
