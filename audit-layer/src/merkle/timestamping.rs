//! Asking RFC 3161 time-stamping authorities to stamp the trail's new tree heads over HTTP,
//! and keeping the tokens that verify.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::checkpoint::TreeHead;
use super::files::MERKLE_DIR;
use super::follower::{HeadTimestamp, SignedHead, TIMESTAMPS, append_lines};
use super::timestamp::{TimestampAuthority, TimestampRequest, verify_timestamp};
use crate::siem::http::{Target, TargetSettings};

/// An authority the follower asks, and the certificate its tokens must verify against.
pub(super) struct Stamper {
    target: Target,
    authority: TimestampAuthority,
}

impl fmt::Debug for Stamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stamper")
            .field("target", &self.target.name)
            .field("authority", &self.authority.subject())
            .finish()
    }
}

impl Stamper {
    pub(super) fn new(url: &str, authority: TimestampAuthority) -> Result<Self, String> {
        Ok(Self {
            target: TargetSettings::default().build(url, "time-stamping authority")?,
            authority,
        })
    }
}

/// Has `head` stamped by each authority and keeps the tokens that verify. An authority
/// that is down or refuses is logged, not retried: the next head is stamped instead.
pub(super) async fn stamp(stampers: &[Stamper], dir: &Path, head: &SignedHead) {
    let mut kept = Vec::new();
    for stamper in stampers {
        match ask(stamper, head).await {
            Ok(record) => match serde_json::to_vec(&record) {
                Ok(line) => {
                    kept.extend(line);
                    kept.push(b'\n');
                }
                Err(error) => tracing::warn!(target: "audit", %error, "cannot keep a timestamp"),
            },
            Err(reason) => tracing::warn!(
                target: "audit",
                authority = %stamper.target.name,
                size = head.size,
                %reason,
                "a time-stamping authority did not stamp the trail's tree head"
            ),
        }
    }
    if !kept.is_empty()
        && let Err(error) = append_lines(&dir.join(MERKLE_DIR).join(TIMESTAMPS), &kept)
    {
        tracing::warn!(target: "audit", %error, "cannot keep a timestamp");
    }
}

async fn ask(stamper: &Stamper, head: &SignedHead) -> Result<HeadTimestamp, String> {
    let text = TreeHead::parse(&head.note)
        .map_err(|e| e.to_string())?
        .text();
    let request = TimestampRequest::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let body = request.to_der().map_err(|e| e.to_string())?;
    let (status, answer) = stamper
        .target
        .exchange(body, "application/timestamp-query", None)
        .await
        .map_err(|(error, _)| error.to_string())?;
    if status != http::StatusCode::OK {
        return Err(format!(
            "it answered {status}: {}",
            String::from_utf8_lossy(&answer).trim()
        ));
    }
    let token = request.token(&answer).map_err(|e| e.to_string())?;
    verify_timestamp(&token, text.as_bytes(), &stamper.authority).map_err(|e| e.to_string())?;
    Ok(HeadTimestamp {
        size: head.size,
        authority: stamper.authority.subject().to_owned(),
        token: BASE64.encode(token),
    })
}
