//! The tree: leaves appended one at a time, the hash of every complete subtree kept, so that
//! a root or a proof for any earlier size costs a logarithmic number of hashes.

use super::{Hash, ProofError, empty_root, leaf_hash, node_hash, split};

/// A Merkle tree of appended leaves (RFC 9162). See the [module docs](super).
///
/// It keeps the hash of every complete subtree: level 0 holds the leaves' hashes, level
/// `l` the hash of each aligned run of `2^l` leaves, about two hashes per leaf in all.
/// Roots and proofs for any size up to [`len`](Self::len) are computed from them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf: an event's line as stored, without its newline.
    pub fn push(&mut self, leaf: &[u8]) {
        self.push_hash(leaf_hash(leaf));
    }

    /// Appends a leaf by its [`leaf_hash`](super::leaf_hash).
    pub fn push_hash(&mut self, hash: Hash) {
        let mut level = 0;
        let mut hash = hash;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let nodes = &mut self.levels[level];
            nodes.push(hash);
            // A pair completes the subtree above it.
            if nodes.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            level += 1;
        }
    }

    /// How many leaves the tree holds.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree holds no leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root of the whole tree (of the empty tree: SHA-256 of nothing).
    pub fn root(&self) -> Hash {
        range(self, 0, self.len()).unwrap_or_else(|_| unreachable!("kept in memory"))
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        root_at(self, self.len(), size)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
    /// §2.1.3.1): the hashes that, with the leaf's, rebuild that tree's root.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        inclusion_proof(self, self.len(), index, size)
    }

    /// The consistency proof between the trees of the first `old` and the first `new`
    /// leaves (RFC 9162 §2.1.4.1): the hashes that rebuild both roots, showing that the
    /// later tree holds the earlier one unchanged. Empty when `old` is 0 or equals `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        consistency_proof(self, self.len(), old, new)
    }
}

impl Nodes for MerkleTree {
    fn node(&self, level: usize, index: u64) -> Result<Hash, ProofError> {
        Ok(self.levels[level][index as usize])
    }
}

/// Where the hashes of complete subtrees are kept: in memory, or in files.
pub(super) trait Nodes {
    /// The hash of the `index`th complete subtree of `2^level` leaves.
    fn node(&self, level: usize, index: u64) -> Result<Hash, ProofError>;
}

/// The root of the first `size` of the `len` leaves `nodes` holds.
pub(super) fn root_at(nodes: &impl Nodes, len: u64, size: u64) -> Result<Hash, ProofError> {
    check_size(size, len)?;
    range(nodes, 0, size)
}

/// See [`MerkleTree::inclusion_proof`].
pub(super) fn inclusion_proof(
    nodes: &impl Nodes,
    len: u64,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_size(size, len)?;
    if index >= size {
        return Err(ProofError::Index { index, size });
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// See [`MerkleTree::consistency_proof`].
pub(super) fn consistency_proof(
    nodes: &impl Nodes,
    len: u64,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_size(new, len)?;
    if old > new {
        return Err(ProofError::Size {
            size: old,
            reason: format!("the earlier tree is larger than the later one, of {new}"),
        });
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(nodes, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

fn check_size(size: u64, len: u64) -> Result<(), ProofError> {
    if size > len {
        return Err(ProofError::Size {
            size,
            reason: format!("the tree holds {len} leaves"),
        });
    }
    Ok(())
}

/// The root of leaves `start..end`, a subtree as RFC 9162 splits them: `start` is a
/// multiple of the largest power of two not above `end - start`.
fn range(nodes: &impl Nodes, start: u64, end: u64) -> Result<Hash, ProofError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros() as usize;
        return nodes.node(level, start >> level);
    }
    let k = split(n);
    Ok(node_hash(
        &range(nodes, start, start + k)?,
        &range(nodes, start + k, end)?,
    ))
}

/// PATH(index, D[start:end]): the siblings from the leaf up.
fn path(
    nodes: &impl Nodes,
    index: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if index < start + k {
        path(nodes, index, start, start + k, proof)?;
        proof.push(range(nodes, start + k, end)?);
    } else {
        path(nodes, index, start + k, end, proof)?;
        proof.push(range(nodes, start, start + k)?);
    }
    Ok(())
}

/// SUBPROOF(old, D[start:end], whole): `whole` while the earlier tree is the subtree's
/// own left edge, whose root the verifier already has.
fn subproof(
    nodes: &impl Nodes,
    old: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if old == n {
        if !whole {
            proof.push(range(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if old <= k {
        subproof(nodes, old, start, start + k, whole, proof)?;
        proof.push(range(nodes, start + k, end)?);
    } else {
        subproof(nodes, old - k, start + k, end, false, proof)?;
        proof.push(range(nodes, start, start + k)?);
    }
    Ok(())
}

/// The size and root of the tree of `leaves`, read once, in memory logarithmic in their
/// number (a [`MerkleTree`] keeps every node).
pub fn root_of<L: AsRef<[u8]>>(leaves: impl IntoIterator<Item = L>) -> (u64, Hash) {
    // The right edge: at each level, the subtree waiting for its right sibling.
    let mut edge: Vec<Option<Hash>> = Vec::new();
    let mut size = 0u64;
    for leaf in leaves {
        let mut hash = leaf_hash(leaf.as_ref());
        let mut level = 0;
        loop {
            if edge.len() == level {
                edge.push(None);
            }
            match edge[level].take() {
                Some(left) => {
                    hash = node_hash(&left, &hash);
                    level += 1;
                }
                None => {
                    edge[level] = Some(hash);
                    break;
                }
            }
        }
        size += 1;
    }
    // The smaller subtrees on the right join the larger ones on their left.
    let root = edge
        .iter()
        .flatten()
        .fold(None, |right: Option<Hash>, left| {
            Some(match right {
                None => *left,
                Some(right) => node_hash(left, &right),
            })
        })
        .unwrap_or_else(empty_root);
    (size, root)
}
