//! Receipts: one event, its inclusion proof and the signed tree head that covers it, in one
//! JSON document that anyone holding the log's public key checks offline.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::checkpoint::TreeHead;
use super::consistency::decode_hashes;
use super::cosignature::{Cosigned, cosignatures};
use super::files::TreeFiles;
use super::follower::{cosigned_note, newest_signed_head, timestamps_of};
use super::note::{NoteError, NoteVerifier};
use super::{ProofError, leaf_hash, verify_inclusion};

/// What a receipt's `format` says.
pub const RECEIPT_FORMAT: &str = "audit-receipt/1";

/// Proof that one event is in a trail: the event's line as stored, its place in the
/// trail's Merkle tree, the hashes that lead from it to the tree's root, and the tree head
/// the log signed. It reveals no other event (only hashes of subtrees).
///
/// ```no_run
/// use audit_layer::file::PublicKey;
/// use audit_layer::merkle::{NoteVerifier, Receipt};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let receipt = Receipt::make("./audit-log".as_ref(), 1234)?;
/// let json = serde_json::to_string(&receipt)?;
/// // ... handed to an auditor, who holds the log's public key:
/// let log = NoteVerifier::new("audit.example.com/orders", &PublicKey::from_file("signing.pub")?)?;
/// let receipt: Receipt = serde_json::from_str(&json)?;
/// let head = receipt.verify(&log)?;
/// println!("in the log at size {}", head.size);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Receipt {
    /// [`RECEIPT_FORMAT`].
    pub format: String,
    /// The event's line, as stored in the trail (without its newline).
    pub event: String,
    /// The line's leaf in the tree.
    pub leaf_index: u64,
    /// The size of the tree the proof is for: the signed head's.
    pub tree_size: u64,
    /// The inclusion proof, leaf first, each hash in base64.
    pub inclusion: Vec<String>,
    /// The signed tree head (a C2SP checkpoint note), with the witnesses' cosignatures.
    pub checkpoint: String,
    /// RFC 3161 tokens (DER in base64) of the head's text by time-stamping authorities,
    /// when the trail has them ([`timestamped`](Self::timestamped) checks one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamps: Vec<String>,
}

/// Why a receipt could not be made, or does not hold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The trail has no Merkle tree (no [`TreeFollower`](super::TreeFollower)).
    #[error("the trail has no Merkle tree: add a TreeFollower to its AuditTrail")]
    NoTree,
    /// No signed head covers the event yet (the next checkpoint will).
    #[error("no signed tree head covers seq {0} yet: it comes with the trail's next checkpoint")]
    NotCovered(u64),
    /// The trail does not hold the event.
    #[error("the trail does not hold seq {0}")]
    NoEvent(u64),
    /// Reading the trail or its tree failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a receipt of this format.
    #[error("not an {RECEIPT_FORMAT} receipt: {0}")]
    Format(String),
    /// The proof does not hold.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The signed head does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// No timestamp of the head by the authority given holds.
    #[cfg(feature = "timestamp")]
    #[error("no timestamp of the tree head by {authority} holds{reasons}")]
    Untimestamped {
        /// The authority's subject.
        authority: String,
        /// Why each token given was refused (with a leading `: `).
        reasons: String,
    },
    /// Fewer witnesses cosigned the head than required.
    #[error("{found} of the witnesses given cosigned the tree head, {required} required")]
    Witnesses {
        /// Valid cosignatures by the witnesses given.
        found: usize,
        /// How many were required.
        required: usize,
    },
}

impl Receipt {
    /// The receipt of the line `seq` of the trail in `trail_dir`, against the newest tree
    /// head signed so far.
    pub fn make(trail_dir: &Path, seq: u64) -> Result<Self, ReceiptError> {
        let files = TreeFiles::open_existing(trail_dir)?.ok_or(ReceiptError::NoTree)?;
        let index = seq
            .checked_sub(files.first_seq())
            .ok_or(ReceiptError::NoEvent(seq))?;
        // Heads only grow: the newest covers every line any head covers.
        let head = newest_signed_head(trail_dir)?
            .filter(|head| head.size > index && head.size <= files.len())
            .ok_or(ReceiptError::NotCovered(seq))?;
        let event = crate::file::line_at(trail_dir, seq)?.ok_or(ReceiptError::NoEvent(seq))?;
        let proof = files.inclusion_proof(index, head.size)?;
        let checkpoint = cosigned_note(trail_dir, &head)?;
        Ok(Self {
            format: RECEIPT_FORMAT.to_owned(),
            event,
            leaf_index: index,
            tree_size: head.size,
            inclusion: proof.iter().map(|hash| BASE64.encode(hash)).collect(),
            checkpoint,
            timestamps: timestamps_of(trail_dir, head.size)?
                .into_iter()
                .map(|stamped| stamped.token)
                .collect(),
        })
    }

    /// Checks the receipt with nothing but the log's verifier key: the head's signature,
    /// and that the event's line is leaf `leaf_index` of the tree the head signs. Returns
    /// the head.
    pub fn verify(&self, log: &NoteVerifier) -> Result<TreeHead, ReceiptError> {
        if self.format != RECEIPT_FORMAT {
            return Err(ReceiptError::Format(format!("format {:?}", self.format)));
        }
        let head = TreeHead::open(&self.checkpoint, log)?;
        if head.size != self.tree_size {
            return Err(ReceiptError::Format(format!(
                "a proof for a tree of {}, with a head of {}",
                self.tree_size, head.size
            )));
        }
        let proof =
            decode_hashes(&self.inclusion).map_err(|e| ReceiptError::Format(e.to_owned()))?;
        verify_inclusion(
            &leaf_hash(self.event.as_bytes()),
            self.leaf_index,
            head.size,
            &proof,
            &head.root,
        )?;
        Ok(head)
    }

    /// The time at which `authority` stamped the head (the earliest of its tokens that
    /// holds). With the receipt itself [verified](Self::verify), the event was in the trail
    /// by then, whatever the log's key holder says since.
    #[cfg(feature = "timestamp")]
    pub fn timestamped(
        &self,
        authority: &super::TimestampAuthority,
    ) -> Result<super::Timestamp, ReceiptError> {
        let text = TreeHead::parse(&self.checkpoint)?.text();
        let mut reasons = Vec::new();
        let mut earliest: Option<super::Timestamp> = None;
        for token in &self.timestamps {
            let checked = BASE64
                .decode(token)
                .map_err(|e| e.to_string())
                .and_then(|token| {
                    super::verify_timestamp(&token, text.as_bytes(), authority)
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(stamp) if earliest.as_ref().is_none_or(|e| stamp.time < e.time) => {
                    earliest = Some(stamp);
                }
                Ok(_) => {}
                Err(reason) => reasons.push(reason),
            }
        }
        earliest.ok_or_else(|| ReceiptError::Untimestamped {
            authority: authority.subject().to_owned(),
            reasons: if reasons.is_empty() {
                ": the receipt carries no timestamp".to_owned()
            } else {
                format!(": {}", reasons.join("; "))
            },
        })
    }

    /// Checks that at least `required` of the `witnesses` (made with
    /// [`NoteVerifier::witness`]) cosigned the head; which did. With the receipt itself
    /// [verified](Self::verify), this is what makes a rollback by the log's own key
    /// detectable: the witnesses refuse to cosign a tree that does not hold the one they
    /// cosigned.
    pub fn witnessed(
        &self,
        witnesses: &[NoteVerifier],
        required: usize,
    ) -> Result<Vec<Cosigned>, ReceiptError> {
        witnessed(&self.checkpoint, witnesses, required)
    }
}

/// The cosignatures of `note` by the `witnesses`, if at least `required` of them.
pub(super) fn witnessed(
    note: &str,
    witnesses: &[NoteVerifier],
    required: usize,
) -> Result<Vec<Cosigned>, ReceiptError> {
    let found = cosignatures(note, witnesses)?;
    if found.len() < required {
        return Err(ReceiptError::Witnesses {
            found: found.len(),
            required,
        });
    }
    Ok(found)
}
