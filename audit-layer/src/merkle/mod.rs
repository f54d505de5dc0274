//! A Merkle tree over the trail's lines, as Certificate Transparency builds one (RFC 9162,
//! §2.1): proofs that one event is in the trail ([inclusion](MerkleTree::inclusion_proof))
//! and that a later trail only added to an earlier one
//! ([consistency](MerkleTree::consistency_proof)), each a logarithmic list of hashes that
//! anyone checks with [`verify_inclusion`] and [`verify_consistency`] and nothing else.
//!
//! Leaves are hashed as `SHA-256(0x00 || leaf)` and interior nodes as
//! `SHA-256(0x01 || left || right)`, so no leaf can pass for a node; the tree of `n` leaves
//! splits at the largest power of two below `n`. Any RFC 9162 (or RFC 6962) verifier
//! accepts these proofs.
//!
//! A tree's size and root are published as a [`TreeHead`]: a checkpoint in the C2SP
//! `tlog-checkpoint` form, signed as a C2SP signed note ([`sign_note`], [`open_note`],
//! [`NoteVerifier`]) with the trail's checkpoint key, so that transparency tooling and
//! witnesses read it.
//!
//! ```
//! use audit_layer::merkle::{MerkleTree, leaf_hash, verify_consistency, verify_inclusion};
//!
//! let mut tree = MerkleTree::new();
//! for line in ["first event", "second event", "third event"] {
//!     tree.push(line.as_bytes());
//! }
//! let root = tree.root();
//! let proof = tree.inclusion_proof(1, 3)?;
//! verify_inclusion(&leaf_hash(b"second event"), 1, 3, &proof, &root)?;
//!
//! let earlier = tree.root_at(2)?;
//! let proof = tree.consistency_proof(2, 3)?;
//! verify_consistency(2, 3, &earlier, &root, &proof)?;
//! # Ok::<(), audit_layer::merkle::ProofError>(())
//! ```

mod checkpoint;
mod consistency;
mod cosignature;
mod files;
mod follower;
mod note;
mod receipt;
#[cfg(feature = "timestamp")]
mod timestamp;
#[cfg(all(feature = "siem", feature = "timestamp"))]
mod timestamping;
mod tree;
mod verify;
mod witness;
mod witnessed;
#[cfg(feature = "siem")]
mod witnessing;

use sha2::{Digest, Sha256};

pub use self::checkpoint::TreeHead;
#[cfg(feature = "collector")]
pub(crate) use self::consistency::decode_hashes;
pub use self::consistency::{CONSISTENCY_FORMAT, ConsistencyProof};
pub use self::cosignature::{Cosigned, cosign, cosignatures};
pub use self::files::{MERKLE_DIR, TreeFiles};
pub use self::follower::{
    HeadCosignature, HeadTimestamp, SignedHead, TreeFollower, TreeFollowerBuilder, cosignatures_of,
    newest_signed_head, signed_heads, timestamps_of,
};
pub use self::note::{Note, NoteError, NoteVerifier, add_signature, open_note, sign_note};
pub use self::receipt::{RECEIPT_FORMAT, Receipt, ReceiptError};
#[cfg(feature = "timestamp")]
pub use self::timestamp::{
    Timestamp, TimestampAuthority, TimestampError, TimestampRequest, verify_timestamp,
};
pub use self::tree::{MerkleTree, root_of};
pub use self::verify::{verify_consistency, verify_inclusion};
pub use self::witness::{Witness, WitnessError, add_checkpoint_request};
pub use self::witnessed::{Witnessed, check_witnessed};

/// A SHA-256 hash: a leaf's, a node's or a root's.
pub type Hash = [u8; 32];

/// The hash of a leaf (an event's line as stored, without its newline): SHA-256 of
/// `0x00` and the leaf.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// The hash of an interior node: SHA-256 of `0x01`, the left child's hash and the right's.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof could not be made, or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A leaf index at or past the tree's size.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    Index {
        /// The leaf asked for.
        index: u64,
        /// The size of the tree asked of.
        size: u64,
    },
    /// A tree size larger than the tree holds, or sizes in the wrong order.
    #[error("no tree of {size} leaves here ({reason})")]
    Size {
        /// The size asked for.
        size: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The proof has the wrong number of hashes for the sizes it claims.
    #[error("the proof has {got} hashes, {expected} for these sizes")]
    Length {
        /// Hashes in the proof.
        got: usize,
        /// Hashes a proof for these sizes has.
        expected: usize,
    },
    /// The proof leads to another root: the leaf is not in that tree, or the later tree did
    /// not only add to the earlier one.
    #[error("the proof does not lead to the root: {0}")]
    Mismatch(&'static str),
    /// The tree's files could not be read.
    #[error("the tree's files cannot be read: {0}")]
    Io(String),
}

/// The largest power of two below `n` (`n` ≥ 2): where RFC 9162 splits a tree of `n`.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_the_largest_power_of_two_below() {
        let cases = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ];
        for (n, k) in cases {
            assert_eq!(split(n), k, "{n}");
        }
    }

    #[test]
    fn leaves_and_nodes_hash_apart() {
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let joined = [a, b].concat();
        assert_ne!(node_hash(&a, &b), leaf_hash(&joined));
    }
}
