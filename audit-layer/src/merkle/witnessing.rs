//! Sending the trail's new tree heads to witnesses over HTTP (C2SP `tlog-witness`), and
//! keeping the cosignatures they answer with.

use std::fmt;
use std::path::Path;

use super::cosignature::cosignatures;
use super::files::{MERKLE_DIR, TreeFiles};
use super::follower::{HeadCosignature, SignedHead, append_lines};
use super::note::NoteVerifier;
use super::witness::add_checkpoint_request;
use crate::siem::http::{Target, TargetSettings};

/// A witness the follower sends heads to, and the size it holds as far as the follower
/// knows (a `409` answer corrects it).
pub(super) struct Witnessed {
    target: Target,
    verifier: NoteVerifier,
    held: u64,
}

impl fmt::Debug for Witnessed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Witnessed")
            .field("target", &self.target.name)
            .field("witness", &self.verifier.name())
            .field("held", &self.held)
            .finish()
    }
}

impl Witnessed {
    pub(super) fn new(url: &str, verifier: NoteVerifier) -> Result<Self, String> {
        if !verifier.is_witness() {
            return Err(format!(
                "{}: a witness's key is a cosignature key (type 0x04)",
                verifier.name()
            ));
        }
        Ok(Self {
            target: TargetSettings::default().build(url, "witness")?,
            verifier,
            held: 0,
        })
    }
}

/// Sends `head` to each witness, from the size it holds, and keeps the cosignatures that
/// verify. A witness that is down or refuses is logged, not retried: the next head goes
/// to it again, with a proof from what it holds.
pub(super) async fn send(witnesses: &mut [Witnessed], dir: &Path, head: &SignedHead) {
    for witness in witnesses {
        // A second try when the witness answers `409` with the size it holds.
        for _ in 0..2 {
            match ask(witness, dir, head).await {
                Ok(Some(lines)) => {
                    if let Err(error) = append_lines(
                        &dir.join(MERKLE_DIR).join(super::follower::COSIGNATURES),
                        &lines,
                    ) {
                        tracing::warn!(target: "audit", %error, "cannot keep a witness's cosignature");
                    }
                    witness.held = head.size;
                    break;
                }
                Ok(None) => continue,
                Err(reason) => {
                    tracing::warn!(
                        target: "audit",
                        witness = %witness.target.name,
                        size = head.size,
                        %reason,
                        "a witness did not cosign the trail's tree head"
                    );
                    break;
                }
            }
        }
    }
}

/// One request: the cosignature lines to keep, `None` to try again from the size the
/// witness said it holds, or why it failed.
async fn ask(
    witness: &mut Witnessed,
    dir: &Path,
    head: &SignedHead,
) -> Result<Option<Vec<u8>>, String> {
    if witness.held > head.size {
        return Err(format!(
            "it holds a tree of {}, larger than this head's {}: the trail was rolled back",
            witness.held, head.size
        ));
    }
    let files = TreeFiles::open_existing(dir)
        .map_err(|e| e.to_string())?
        .ok_or("the tree is gone")?;
    let proof = files
        .consistency_proof(witness.held, head.size)
        .map_err(|e| e.to_string())?;
    let body = add_checkpoint_request(witness.held, &proof, &head.note);
    let (status, answer) = witness
        .target
        .exchange(body.into_bytes(), "text/plain; charset=utf-8", None)
        .await
        .map_err(|(error, _)| error.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    match status.as_u16() {
        200 => {
            let mut kept = Vec::new();
            for line in answer.lines().filter(|line| !line.is_empty()) {
                let cosigned = format!("{}{line}\n", head.note);
                let valid = cosignatures(&cosigned, std::slice::from_ref(&witness.verifier))
                    .is_ok_and(|found| !found.is_empty());
                if valid {
                    let record = HeadCosignature {
                        size: head.size,
                        witness: witness.verifier.name().to_owned(),
                        line: format!("{line}\n"),
                    };
                    kept.extend(serde_json::to_vec(&record).map_err(|e| e.to_string())?);
                    kept.push(b'\n');
                }
            }
            if kept.is_empty() {
                return Err("it answered no cosignature that verifies".to_owned());
            }
            Ok(Some(kept))
        }
        409 => {
            let held = answer
                .trim()
                .parse()
                .map_err(|_| format!("it answered 409 without a size: {answer}"))?;
            if held == witness.held {
                return Err(format!("it answered 409 for the size it holds, {held}"));
            }
            witness.held = held;
            Ok(None)
        }
        status => Err(format!("it answered {status}: {}", answer.trim())),
    }
}
