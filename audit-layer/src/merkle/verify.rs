//! Checking proofs with nothing but the proof, the leaf and the roots: RFC 9162 §2.1.3.2
//! (inclusion) and §2.1.4.2 (consistency), step by step.

use super::{Hash, ProofError, node_hash};

/// Checks that the leaf with hash `leaf` is leaf `index` of the tree of `size` leaves whose
/// root is `root`, by its inclusion `proof`
/// ([`MerkleTree::inclusion_proof`](super::MerkleTree::inclusion_proof)).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::Index { index, size });
    }
    let expected = inclusion_length(index, size);
    if proof.len() != expected {
        return Err(ProofError::Length {
            got: proof.len(),
            expected,
        });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if snode == 0 {
            return Err(ProofError::Mismatch("the proof is longer than the path"));
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            // A right edge: climb past the levels where the node has no right sibling.
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Mismatch("the proof is shorter than the path"));
    }
    if hash != *root {
        return Err(ProofError::Mismatch(
            "the leaf is not in the tree of that root",
        ));
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` holds the tree of
/// `old_size` leaves with root `old_root` unchanged, by the consistency `proof`
/// ([`MerkleTree::consistency_proof`](super::MerkleTree::consistency_proof)).
///
/// An empty earlier tree is in every tree; equal sizes need equal roots and an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::Size {
            size: old_size,
            reason: format!("the earlier tree is larger than the later one, of {new_size}"),
        });
    }
    let expected = consistency_length(old_size, new_size);
    if proof.len() != expected {
        return Err(ProofError::Length {
            got: proof.len(),
            expected,
        });
    }
    if old_size == 0 {
        return Ok(());
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch("two roots for one size"))
        };
    }
    // The earlier tree is a complete subtree: its root is the first hash of the walk.
    let mut path = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut old = path[0];
    let mut new = path[0];
    for hash in &path[1..] {
        if snode == 0 {
            return Err(ProofError::Mismatch("the proof is longer than the path"));
        }
        if fnode & 1 == 1 || fnode == snode {
            old = node_hash(hash, &old);
            new = node_hash(hash, &new);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            new = node_hash(&new, hash);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Mismatch("the proof is shorter than the path"));
    }
    if old != *old_root {
        return Err(ProofError::Mismatch("the earlier root is not rebuilt"));
    }
    if new != *new_root {
        return Err(ProofError::Mismatch("the later root is not rebuilt"));
    }
    Ok(())
}

/// Hashes in an inclusion proof of leaf `index` of `size`: one per level where its path
/// has a sibling.
fn inclusion_length(index: u64, size: u64) -> usize {
    // Levels below the point where the index and the last leaf meet, plus the levels above
    // it where the path has a left sibling.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Hashes in a consistency proof from `old` to `new` leaves.
fn consistency_length(old: u64, new: u64) -> usize {
    if old == 0 || old == new {
        return 0;
    }
    let inner = 64 - ((old - 1) ^ (new - 1)).leading_zeros();
    let border = ((old - 1) >> inner).count_ones();
    let shift = (old - 1).trailing_ones().min(inner);
    // The earlier root stands for the first hash when it is a complete subtree.
    let first = usize::from(!old.is_power_of_two());
    (inner + border - shift) as usize + first
}
