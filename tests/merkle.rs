//! The Merkle tree's roots and proofs against a reference written straight from RFC 9162's
//! definitions (MTH, PATH, PROOF, over the leaves themselves), for every tree size from 1
//! to a few thousand; Certificate Transparency's published test vectors; and every proof
//! refused once any byte of it, of the leaf or of a root is changed.

use audit_layer::merkle::{
    Hash, MerkleTree, ProofError, empty_root, leaf_hash, node_hash, verify_consistency,
    verify_inclusion,
};

/// RFC 9162 §2.1.1, as written: MTH(D[n]).
fn mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1, as written: PATH(m, D[n]).
fn path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        let mut proof = path(m, &leaves[..k]);
        proof.push(mth(&leaves[k..]));
        proof
    } else {
        let mut proof = path(m - k, &leaves[k..]);
        proof.push(mth(&leaves[..k]));
        proof
    }
}

/// RFC 9162 §2.1.4.1, as written: PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
fn consistency(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Vec<u8>], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            let mut proof = subproof(m, &leaves[..k], whole);
            proof.push(mth(&leaves[k..]));
            proof
        } else {
            let mut proof = subproof(m - k, &leaves[k..], false);
            proof.push(mth(&leaves[..k]));
            proof
        }
    }
    if m == 0 || m == leaves.len() {
        return Vec::new();
    }
    subproof(m, leaves, true)
}

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Leaves like the trail's: lines of different lengths.
fn leaves(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|n| {
            format!(
                "{{\"seq\":{n},\"action\":\"http.request\"{}}}",
                " ".repeat(n % 7)
            )
            .into_bytes()
        })
        .collect()
}

fn tree_of(leaves: &[Vec<u8>]) -> MerkleTree {
    let mut tree = MerkleTree::new();
    for leaf in leaves {
        tree.push(leaf);
    }
    tree
}

fn hex(text: &str) -> Hash {
    hex_bytes(text).try_into().expect("32 bytes")
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn certificate_transparency_vectors() {
    // From Certificate Transparency's own tests (RFC 6962 hashing, which RFC 9162 keeps).
    let leaves: Vec<Vec<u8>> = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|text| hex_bytes(text))
    .collect();
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let tree = tree_of(&leaves);
    assert_eq!(tree.root_at(0).expect("root"), empty_root());
    for (size, root) in roots.iter().enumerate() {
        assert_eq!(
            tree.root_at(size as u64 + 1).expect("root"),
            hex(root),
            "size {}",
            size + 1
        );
    }
    let paths: [(u64, u64, &[&str]); 4] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
    ];
    for (index, size, expected) in paths {
        let expected: Vec<Hash> = expected.iter().map(|text| hex(text)).collect();
        assert_eq!(tree.inclusion_proof(index, size).expect("proof"), expected);
    }
    let proofs: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, expected) in proofs {
        let expected: Vec<Hash> = expected.iter().map(|text| hex(text)).collect();
        let proof = tree.consistency_proof(old, new).expect("proof");
        assert_eq!(proof, expected, "{old} -> {new}");
        let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
        verify_consistency(old, new, &old_root, &new_root, &proof).expect("verifies");
    }
}

#[test]
fn roots_and_proofs_match_the_rfc_for_every_size() {
    const SIZES: usize = 2_100;
    let leaves = leaves(SIZES);
    let tree = tree_of(&leaves);
    assert_eq!(tree.len(), SIZES as u64);
    // The reference's roots, each size's from the one before (MTH itself is per size).
    for size in 1..=SIZES {
        let root = tree.root_at(size as u64).expect("root");
        // Small trees whole; larger ones at every size near a power of two and a spread.
        let checked = size <= 300
            || size.is_power_of_two()
            || (size + 1).is_power_of_two()
            || (size - 1).is_power_of_two()
            || size % 97 == 0;
        if checked {
            assert_eq!(root, mth(&leaves[..size]), "root of {size}");
        }
        // Every leaf's proof verifies against the tree's root, at every size.
        for (index, leaf) in leaves[..size].iter().enumerate() {
            let proof = tree
                .inclusion_proof(index as u64, size as u64)
                .expect("proof");
            verify_inclusion(&leaf_hash(leaf), index as u64, size as u64, &proof, &root)
                .unwrap_or_else(|e| panic!("leaf {index} of {size}: {e}"));
        }
        // And is the RFC's PATH itself, for smaller trees and some leaves of the rest.
        for index in [0, size / 3, size / 2, size - 1] {
            if checked {
                assert_eq!(
                    tree.inclusion_proof(index as u64, size as u64).unwrap(),
                    path(index, &leaves[..size]),
                    "PATH({index}, {size})"
                );
            }
        }
    }
}

#[test]
fn consistency_proofs_match_the_rfc_and_verify() {
    let leaves = leaves(2_100);
    let tree = tree_of(&leaves);
    // Every pair of sizes up to 160, against the RFC's PROOF.
    for new in 1..=160u64 {
        let new_root = tree.root_at(new).unwrap();
        for old in 0..=new {
            let proof = tree.consistency_proof(old, new).expect("proof");
            assert_eq!(
                proof,
                consistency(old as usize, &leaves[..new as usize]),
                "PROOF({old}, {new})"
            );
            let old_root = tree.root_at(old).unwrap();
            verify_consistency(old, new, &old_root, &new_root, &proof)
                .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
        }
    }
    // Larger trees: every earlier size into a few later ones, verified.
    for new in [1_023u64, 1_024, 1_025, 2_047, 2_048, 2_100] {
        let new_root = tree.root_at(new).unwrap();
        for old in 0..=new {
            let proof = tree.consistency_proof(old, new).expect("proof");
            let old_root = tree.root_at(old).unwrap();
            verify_consistency(old, new, &old_root, &new_root, &proof)
                .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
        }
    }
}

#[test]
fn a_changed_byte_anywhere_is_refused() {
    let leaves = leaves(300);
    let tree = tree_of(&leaves);
    for size in [1u64, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300] {
        let root = tree.root_at(size).unwrap();
        for index in [0, size / 2, size - 1] {
            let leaf = &leaves[index as usize];
            let proof = tree.inclusion_proof(index, size).unwrap();
            verify_inclusion(&leaf_hash(leaf), index, size, &proof, &root).expect("verifies");
            // Each byte of the leaf, of each proof hash and of the root.
            for byte in 0..leaf.len() {
                let mut changed = leaf.clone();
                changed[byte] ^= 1;
                assert!(
                    verify_inclusion(&leaf_hash(&changed), index, size, &proof, &root).is_err()
                );
            }
            for hash in 0..proof.len() {
                for byte in 0..32 {
                    let mut changed = proof.clone();
                    changed[hash][byte] ^= 0x80;
                    assert!(
                        verify_inclusion(&leaf_hash(leaf), index, size, &changed, &root).is_err()
                    );
                }
            }
            for byte in 0..32 {
                let mut changed = root;
                changed[byte] ^= 1;
                assert!(verify_inclusion(&leaf_hash(leaf), index, size, &proof, &changed).is_err());
            }
            // Another position, a hash too many or too few.
            if size > 1 {
                let other = (index + 1) % size;
                assert!(verify_inclusion(&leaf_hash(leaf), other, size, &proof, &root).is_err());
            }
            // (The size is not checked here: one root is the root of one size, which the
            // signed checkpoint binds to it.)
            let mut longer = proof.clone();
            longer.push(root);
            assert!(matches!(
                verify_inclusion(&leaf_hash(leaf), index, size, &longer, &root),
                Err(ProofError::Length { .. })
            ));
            if !proof.is_empty() {
                let shorter = &proof[..proof.len() - 1];
                assert!(verify_inclusion(&leaf_hash(leaf), index, size, shorter, &root).is_err());
            }
        }
        // A consistency proof from every tenth earlier size: each byte of it and of both roots.
        for old in (1..size).step_by(10) {
            let old_root = tree.root_at(old).unwrap();
            let proof = tree.consistency_proof(old, size).unwrap();
            verify_consistency(old, size, &old_root, &root, &proof).expect("verifies");
            for hash in 0..proof.len() {
                for byte in 0..32 {
                    let mut changed = proof.clone();
                    changed[hash][byte] ^= 0x80;
                    assert!(verify_consistency(old, size, &old_root, &root, &changed).is_err());
                }
            }
            for byte in 0..32 {
                let mut changed = old_root;
                changed[byte] ^= 1;
                assert!(verify_consistency(old, size, &changed, &root, &proof).is_err());
                let mut changed = root;
                changed[byte] ^= 1;
                assert!(verify_consistency(old, size, &old_root, &changed, &proof).is_err());
            }
        }
    }
}

#[test]
fn a_rewritten_or_truncated_history_has_no_consistency_proof() {
    let leaves = leaves(64);
    let honest = tree_of(&leaves);
    // The same first 40 leaves but one, then more: a fork at leaf 17.
    let mut forked_leaves = leaves.clone();
    forked_leaves[17] = b"{\"seq\":17,\"action\":\"user.delete\"}".to_vec();
    let forked = tree_of(&forked_leaves);
    let old_root = honest.root_at(40).unwrap();
    for new in 40..=64 {
        let proof = forked.consistency_proof(40, new).unwrap();
        assert!(
            verify_consistency(40, new, &old_root, &forked.root_at(new).unwrap(), &proof).is_err(),
            "a fork passed as an extension at {new}"
        );
    }
    // Truncation: a smaller tree cannot be shown to extend a larger one.
    assert!(matches!(
        honest.consistency_proof(50, 40),
        Err(ProofError::Size { .. })
    ));
    assert!(verify_consistency(50, 40, &honest.root_at(50).unwrap(), &old_root, &[]).is_err());
    // Sizes the tree does not have, and leaves past the size.
    assert!(matches!(honest.root_at(65), Err(ProofError::Size { .. })));
    assert!(matches!(
        honest.inclusion_proof(64, 64),
        Err(ProofError::Index { .. })
    ));
    assert!(matches!(
        honest.inclusion_proof(0, 65),
        Err(ProofError::Size { .. })
    ));
    // Equal sizes: the roots must agree.
    assert!(verify_consistency(40, 40, &old_root, &old_root, &[]).is_ok());
    assert!(verify_consistency(40, 40, &old_root, &honest.root_at(41).unwrap(), &[]).is_err());
}

#[test]
fn proofs_grow_with_the_logarithm_of_the_size() {
    let mut tree = MerkleTree::new();
    for n in 0..(1u64 << 16) {
        tree.push_hash(leaf_hash(&n.to_le_bytes()));
    }
    for size in [2u64, 1 << 8, 1 << 12, 1 << 16] {
        let longest = (0..size)
            .step_by((size as usize / 64).max(1))
            .map(|index| tree.inclusion_proof(index, size).unwrap().len())
            .max()
            .unwrap();
        assert_eq!(longest, size.ilog2() as usize, "size {size}");
    }
    let proof = tree.consistency_proof(40_000, 1 << 16).unwrap();
    assert!(proof.len() <= 2 * 16, "{}", proof.len());
}

#[test]
fn a_root_read_in_one_pass_is_the_trees() {
    let leaves = leaves(300);
    let tree = tree_of(&leaves);
    for size in 0..=300 {
        let (counted, root) = audit_layer::merkle::root_of(&leaves[..size]);
        assert_eq!(counted, size as u64);
        assert_eq!(root, tree.root_at(size as u64).unwrap(), "size {size}");
    }
}
