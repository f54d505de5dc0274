//! The trail's signed Merkle tree heads (kept by a [`TreeFollower`](crate::merkle::TreeFollower)
//! beside the trail) as messages on `<prefix>.<trail>:tree`, each with what a collector
//! needs to check it against what it already holds: the line the head ends at and its
//! inclusion proof, and a consistency proof from the head published before it.
//!
//! The subject is outside the lines' (`<prefix>.<trail>.>`) and the checkpoints'
//! (`<prefix>.<trail>`): `:` is in no trail id, and each cursor reads its own subject.

use async_nats::jetstream;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{NatsSink, send, wait_for};
use crate::merkle::{TreeFiles, TreeHead, newest_signed_head};
use crate::sink::SinkError;

/// The header of a tree head's message: the tree's size.
pub const TREE_SIZE_HEADER: &str = "Audit-Tree-Size";

/// What ends a trail's token in the subject of its tree heads.
pub(crate) const TREE_SUFFIX: &str = ":tree";

/// A signed tree head as published, with its proofs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PublishedHead {
    /// The trail's seq of the tree's last leaf.
    pub(crate) seq_to: u64,
    /// The signed note (C2SP checkpoint).
    pub(crate) note: String,
    /// The line at `seq_to`, the tree's last leaf.
    pub(crate) last_line: String,
    /// Its inclusion proof in the head's tree, in base64.
    pub(crate) last_leaf: Vec<String>,
    /// The size of the head published before this one (0: none).
    pub(crate) old_size: u64,
    /// The consistency proof from that size to this head's, in base64.
    pub(crate) consistency: Vec<String>,
}

/// The subject of a trail's tree heads.
pub(crate) fn tree_subject(prefix: &str, trail: &str) -> String {
    format!("{prefix}.{trail}{TREE_SUFFIX}")
}

impl NatsSink {
    /// Publishes the newest tree head, if the trail has a tree and it is newer than the last
    /// one published, proven from that one (the heads between add nothing a collector
    /// checks). A head that cannot be read or proven here is logged and left for the next
    /// call: the lines and checkpoints go on regardless.
    pub(super) async fn publish_tree_heads(&mut self, trail: &str) -> Result<(), SinkError> {
        let Some(dir) = self.trail_dir.clone() else {
            return Ok(());
        };
        let files = match TreeFiles::open_existing(&dir) {
            Ok(Some(files)) => files,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(target: "audit", %error, "nats: cannot read the trail's tree");
                return Ok(());
            }
        };
        let published = match self.tree_published {
            Some(size) => size,
            None => self.read_tree_cursor(trail).await?,
        };
        let head = match newest_signed_head(&dir) {
            Ok(Some(head)) if head.size > published => head,
            Ok(_) => return Ok(()),
            Err(error) => {
                tracing::warn!(target: "audit", %error, "nats: cannot read the tree's heads");
                return Ok(());
            }
        };
        let message = match published_head(&files, &dir, &head, published) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(target: "audit", size = head.size, %error, "nats: cannot prove a tree head");
                return Ok(());
            }
        };
        let jetstream = self.connected().await?;
        self.acks.clear();
        let message = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(serde_json::to_vec(&message)?))
            .message_id(format!("{trail}-tree-{}", head.size))
            .header(TREE_SIZE_HEADER, head.size.to_string().as_str())
            .expected_stream(&self.stream);
        let subject = tree_subject(&self.subject_prefix, trail);
        send(&jetstream, &mut self.acks, subject, message).await?;
        wait_for(&mut self.acks).await?;
        self.tree_published = Some(head.size);
        Ok(())
    }

    /// The size of the last tree head on the stream (0: none).
    async fn read_tree_cursor(&mut self, trail: &str) -> Result<u64, SinkError> {
        let subject = tree_subject(&self.subject_prefix, trail);
        let Some(message) = self.last_message(&subject, "tree head").await? else {
            return Ok(0);
        };
        message
            .headers
            .get(TREE_SIZE_HEADER)
            .and_then(|value| value.as_str().parse().ok())
            .ok_or_else(|| {
                SinkError::new(format!(
                    "the last message on {} has no `{TREE_SIZE_HEADER}` header",
                    message.subject
                ))
            })
    }
}

/// The message of `head`, proven from the head of size `previous`.
fn published_head(
    files: &TreeFiles,
    dir: &std::path::Path,
    head: &crate::merkle::SignedHead,
    previous: u64,
) -> Result<PublishedHead, String> {
    let size = TreeHead::parse(&head.note).map_err(|e| e.to_string())?.size;
    if size != head.size || size == 0 {
        return Err(format!(
            "a head of size {} whose note says {size}",
            head.size
        ));
    }
    let last_line = crate::file::line_at(dir, head.seq_to)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the trail no longer holds seq {}", head.seq_to))?;
    let encode =
        |hashes: Vec<crate::merkle::Hash>| hashes.iter().map(|h| BASE64.encode(h)).collect();
    let last_leaf = files
        .inclusion_proof(size - 1, size)
        .map_err(|e| e.to_string())?;
    let consistency = if previous == 0 {
        Vec::new()
    } else {
        files
            .consistency_proof(previous, size)
            .map_err(|e| e.to_string())?
    };
    Ok(PublishedHead {
        seq_to: head.seq_to,
        note: head.note.clone(),
        last_line,
        last_leaf: encode(last_leaf),
        old_size: previous,
        consistency: encode(consistency),
    })
}
