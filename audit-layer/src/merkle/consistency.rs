//! Consistency proofs between two signed tree heads: the later tree holds the earlier one
//! unchanged, so the log only grew between them.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::checkpoint::TreeHead;
use super::cosignature::Cosigned;
use super::files::TreeFiles;
use super::follower::{cosigned_note, signed_heads};
use super::note::NoteVerifier;
use super::receipt::{ReceiptError, witnessed};
use super::{Hash, verify_consistency};

/// What a consistency proof's `format` says.
pub const CONSISTENCY_FORMAT: &str = "audit-consistency/1";

/// Two signed tree heads of one log and the proof that the later tree holds the earlier
/// one: checked offline with the log's verifier key alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsistencyProof {
    /// [`CONSISTENCY_FORMAT`].
    pub format: String,
    /// The earlier signed head, with the witnesses' cosignatures.
    pub old_checkpoint: String,
    /// The later signed head, with the witnesses' cosignatures.
    pub new_checkpoint: String,
    /// The proof's hashes, in base64.
    pub proof: Vec<String>,
}

impl ConsistencyProof {
    /// The proof between the signed heads of sizes `old` and `new` of the trail in
    /// `trail_dir`.
    pub fn make(trail_dir: &Path, old: u64, new: u64) -> Result<Self, ReceiptError> {
        let files = TreeFiles::open_existing(trail_dir)?.ok_or(ReceiptError::NoTree)?;
        let heads = signed_heads(trail_dir)?;
        let note = |size: u64| {
            let head = heads.iter().find(|head| head.size == size).ok_or_else(|| {
                ReceiptError::Format(format!("no signed tree head of size {size}"))
            })?;
            Ok::<_, ReceiptError>(cosigned_note(trail_dir, head)?)
        };
        let proof = files.consistency_proof(old, new)?;
        Ok(Self {
            format: CONSISTENCY_FORMAT.to_owned(),
            old_checkpoint: note(old)?,
            new_checkpoint: note(new)?,
            proof: proof.iter().map(|hash| BASE64.encode(hash)).collect(),
        })
    }

    /// Checks both heads' signatures and the proof; the two heads.
    pub fn verify(&self, log: &NoteVerifier) -> Result<(TreeHead, TreeHead), ReceiptError> {
        if self.format != CONSISTENCY_FORMAT {
            return Err(ReceiptError::Format(format!("format {:?}", self.format)));
        }
        let old = TreeHead::open(&self.old_checkpoint, log)?;
        let new = TreeHead::open(&self.new_checkpoint, log)?;
        let proof = decode_hashes(&self.proof).map_err(|e| ReceiptError::Format(e.to_owned()))?;
        verify_consistency(old.size, new.size, &old.root, &new.root, &proof)?;
        Ok((old, new))
    }

    /// Checks that at least `required` of the `witnesses` cosigned the later head; which
    /// did (see [`Receipt::witnessed`](super::Receipt::witnessed)).
    pub fn witnessed(
        &self,
        witnesses: &[NoteVerifier],
        required: usize,
    ) -> Result<Vec<Cosigned>, ReceiptError> {
        witnessed(&self.new_checkpoint, witnesses, required)
    }
}

/// Proof hashes from base64.
pub(crate) fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, &'static str> {
    hashes
        .iter()
        .map(|hash| {
            BASE64
                .decode(hash)
                .ok()
                .and_then(|bytes| Hash::try_from(bytes).ok())
                .ok_or("a proof hash is not 32 bytes in base64")
        })
        .collect()
}
