//! What the collector does with an instance's signed Merkle tree head: accept it only if
//! the tree holds the one accepted before it (a consistency proof from it) and ends at a
//! line the store holds, so that an instance cannot rewrite what the central store took
//! and go on proving events from the rewritten tree. No I/O here, as in `verdict`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::verdict::{ArrivedLine, InstanceState, Rules, check_own};
use crate::file::chain::parse_line;
use crate::file::{Fault, FaultKind};
use crate::merkle::{
    Hash, NoteVerifier, TreeHead, decode_hashes, leaf_hash, verify_consistency, verify_inclusion,
};
use crate::sink::nats::PublishedHead;

/// The newest tree head of an instance that verified (kept in its state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldHead {
    pub(crate) size: u64,
    /// The root, in base64.
    pub(crate) root: String,
    pub(crate) seq_to: u64,
    /// The signed note, as the instance signed it.
    pub(crate) note: String,
}

/// What to do with one tree head.
#[derive(Debug)]
pub(crate) enum HeadVerdict {
    /// It verified and is now the one held.
    Accepted,
    /// Already held, or older than the one held: nothing to do.
    Known,
    /// It ends at a line not stored yet, or is proven from a head not held yet: again later.
    Later,
    /// It does not verify.
    Refused(Fault),
}

/// Decides over `head` for `trail`, given the store's `state` and the hash it keeps for the
/// head's last line (`stored_hash`, `None` if it has none), and updates `state`.
pub(crate) fn decide_head(
    trail: &str,
    state: &mut InstanceState,
    head: &PublishedHead,
    stored_hash: Option<&str>,
    rules: &Rules,
) -> HeadVerdict {
    let verdict = check(trail, state, head, stored_hash, rules);
    match &verdict {
        Ok(HeadVerdict::Accepted) => state.tree_heads += 1,
        Err(fault) => {
            state.faults += 1;
            state.last_fault = Some(format!(
                "{} at seq {}: {}",
                fault.kind, head.seq_to, fault.detail
            ));
        }
        Ok(_) => {}
    }
    verdict.unwrap_or_else(HeadVerdict::Refused)
}

fn check(
    trail: &str,
    state: &mut InstanceState,
    head: &PublishedHead,
    stored_hash: Option<&str>,
    rules: &Rules,
) -> Result<HeadVerdict, Fault> {
    let fault = |kind, detail: String| Fault::new(kind, detail).at(trail, None, Some(head.seq_to));
    let origin = head.note.split('\n').next().unwrap_or_default();
    let opened = if rules.public_keys.is_empty() {
        TreeHead::parse(&head.note).map_err(|e| e.to_string())
    } else {
        rules
            .public_keys
            .iter()
            .filter_map(|key| NoteVerifier::new(origin, key).ok())
            .find_map(|log| TreeHead::open(&head.note, &log).ok())
            .ok_or_else(|| "not signed by any of the collector's keys".to_owned())
    };
    let tree = opened.map_err(|reason| {
        fault(
            FaultKind::BadCheckpointSignature,
            format!("a tree head that does not verify: {reason}"),
        )
    })?;
    let size = tree.size;
    if state.last_seq.is_none_or(|last| head.seq_to > last) {
        return Ok(HeadVerdict::Later);
    }
    if let Some(held) = &state.tree {
        if size < held.size {
            return Ok(HeadVerdict::Known);
        }
        if size == held.size {
            return if BASE64.encode(tree.root) == held.root {
                Ok(HeadVerdict::Known)
            } else {
                Err(fault(
                    FaultKind::Forked,
                    format!(
                        "a second tree head of size {size} with another root: the instance's \
                         trail was rewritten"
                    ),
                ))
            };
        }
    }

    // Its last leaf is the line the store holds at `seq_to`.
    let parsed = parse_line(head.last_line.as_bytes()).ok_or_else(|| {
        fault(
            FaultKind::BadCheckpoint,
            "a tree head whose last line is not a line".to_owned(),
        )
    })?;
    let line = ArrivedLine {
        seq: head.seq_to,
        hash: parsed.hash.to_owned(),
        json: head.last_line.clone(),
    };
    check_own(trail, &line, rules.chain_key.as_ref()).map_err(|detail| {
        fault(
            FaultKind::Modified,
            format!("the tree head's last line: {detail}"),
        )
    })?;
    match stored_hash {
        None => {
            return Err(fault(
                FaultKind::Deleted,
                format!(
                    "the tree head ends at seq {}, which the store does not hold",
                    head.seq_to
                ),
            ));
        }
        Some(stored) if stored != line.hash => {
            return Err(fault(
                FaultKind::Forked,
                format!(
                    "the tree head of size {size} ends at a line that is not the stored seq {}: \
                     the instance's trail was rewritten",
                    head.seq_to
                ),
            ));
        }
        Some(_) => {}
    }
    let proof = |hashes: &[String]| -> Result<Vec<Hash>, Fault> {
        decode_hashes(hashes).map_err(|error| fault(FaultKind::BadCheckpoint, error.to_owned()))
    };
    verify_inclusion(
        &leaf_hash(head.last_line.as_bytes()),
        size - 1,
        size,
        &proof(&head.last_leaf)?,
        &tree.root,
    )
    .map_err(|error| {
        fault(
            FaultKind::BadCheckpoint,
            format!("the tree head's last line is not its last leaf: {error}"),
        )
    })?;

    // The tree holds the one held before it.
    if let Some(held) = &state.tree {
        if head.old_size > held.size {
            return Ok(HeadVerdict::Later);
        }
        if head.old_size < held.size {
            return Err(fault(
                FaultKind::Forked,
                format!(
                    "a tree head of size {size} proven from size {}, not from the {} the store \
                     holds: the instance's tree started again",
                    head.old_size, held.size
                ),
            ));
        }
        let held_root = proof(std::slice::from_ref(&held.root))?;
        verify_consistency(
            held.size,
            size,
            &held_root[0],
            &tree.root,
            &proof(&head.consistency)?,
        )
        .map_err(|error| {
            fault(
                FaultKind::Forked,
                format!(
                    "the instance's tree of {size} does not hold the tree of {} the store \
                         holds ({error}): its trail was rewritten",
                    held.size
                ),
            )
        })?;
    }
    state.tree = Some(HeldHead {
        size,
        root: BASE64.encode(tree.root),
        seq_to: head.seq_to,
        note: head.note.clone(),
    });
    Ok(HeadVerdict::Accepted)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::collect::verdict::tests::{lines, rules};
    use crate::file::CheckpointKey;
    use crate::merkle::MerkleTree;

    const TRAIL: &str = "web-1";
    const ORIGIN: &str = "audit.example.com/web-1";

    /// The head of `leaves` at `size`, proven from `old`, as the instance publishes it.
    fn head(leaves: &[String], size: u64, old: u64, key: &CheckpointKey) -> PublishedHead {
        let mut tree = MerkleTree::new();
        for leaf in leaves {
            tree.push(leaf.as_bytes());
        }
        let encode = |hashes: Vec<Hash>| hashes.iter().map(|h| BASE64.encode(h)).collect();
        PublishedHead {
            seq_to: size - 1,
            note: TreeHead {
                origin: ORIGIN.to_owned(),
                size,
                root: tree.root_at(size).unwrap(),
            }
            .sign(key)
            .unwrap(),
            last_line: leaves[size as usize - 1].clone(),
            last_leaf: encode(tree.inclusion_proof(size - 1, size).unwrap()),
            old_size: old,
            consistency: if old == 0 {
                Vec::new()
            } else {
                encode(tree.consistency_proof(old, size).unwrap())
            },
        }
    }

    struct Store {
        state: InstanceState,
        hashes: HashMap<u64, String>,
        leaves: Vec<String>,
    }

    impl Store {
        /// A store holding `count` lines of the trail.
        fn new(count: u64) -> Self {
            let lines = lines(TRAIL, count);
            Self {
                state: InstanceState {
                    last_seq: Some(count - 1),
                    ..InstanceState::default()
                },
                hashes: lines.iter().map(|l| (l.seq, l.hash.clone())).collect(),
                leaves: lines.into_iter().map(|l| l.json).collect(),
            }
        }

        fn take(&mut self, head: &PublishedHead, key: &CheckpointKey) -> HeadVerdict {
            let stored = self.hashes.get(&head.seq_to).map(String::as_str);
            decide_head(
                TRAIL,
                &mut self.state,
                head,
                stored,
                &rules(vec![key.public_key()]),
            )
        }
    }

    fn refused(verdict: HeadVerdict) -> FaultKind {
        match verdict {
            HeadVerdict::Refused(fault) => fault.kind,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn growing_heads_are_accepted_in_turn_and_repeats_are_known() {
        let key = CheckpointKey::generate().unwrap();
        let mut store = Store::new(40);
        let leaves = store.leaves.clone();
        let mut old = 0;
        for size in [5, 12, 12, 31, 40] {
            let verdict = store.take(&head(&leaves, size, old, &key), &key);
            if size == old {
                assert!(matches!(verdict, HeadVerdict::Known), "{verdict:?}");
            } else {
                assert!(matches!(verdict, HeadVerdict::Accepted), "{verdict:?}");
            }
            old = size;
        }
        assert_eq!(store.state.tree.as_ref().unwrap().size, 40);
        assert_eq!(store.state.tree_heads, 4);
        // An older head again (a redelivery): nothing to do.
        let verdict = store.take(&head(&leaves, 12, 5, &key), &key);
        assert!(matches!(verdict, HeadVerdict::Known), "{verdict:?}");
        assert_eq!(store.state.faults, 0);
    }

    #[test]
    fn a_head_past_the_stored_lines_or_a_held_head_waits() {
        let key = CheckpointKey::generate().unwrap();
        let mut store = Store::new(20);
        let mut leaves = store.leaves.clone();
        leaves.extend(lines(TRAIL, 30).into_iter().skip(20).map(|l| l.json));
        let verdict = store.take(&head(&leaves, 25, 0, &key), &key);
        assert!(matches!(verdict, HeadVerdict::Later), "{verdict:?}");
        store.take(&head(&leaves, 8, 0, &key), &key);
        // Proven from 12, which the store has not taken yet.
        let verdict = store.take(&head(&leaves, 20, 12, &key), &key);
        assert!(matches!(verdict, HeadVerdict::Later), "{verdict:?}");
        assert_eq!(store.state.tree.as_ref().unwrap().size, 8);
    }

    #[test]
    fn a_rewritten_tree_is_refused() {
        let key = CheckpointKey::generate().unwrap();
        let mut store = Store::new(40);
        let leaves = store.leaves.clone();
        assert!(matches!(
            store.take(&head(&leaves, 12, 0, &key), &key),
            HeadVerdict::Accepted
        ));
        // The instance's tree with leaf 7 replaced (its lines as stored otherwise): the
        // head signs, ends at the stored line, but does not hold the tree held.
        let mut rewritten = leaves.clone();
        rewritten[7] = rewritten[7].replace("web-1", "web-X");
        assert_eq!(
            refused(store.take(&head(&rewritten, 30, 12, &key), &key)),
            FaultKind::Forked
        );
        // Another root for the size held.
        assert_eq!(
            refused(store.take(&head(&rewritten, 12, 0, &key), &key)),
            FaultKind::Forked
        );
        // A proof from a size smaller than the one held (the tree started again).
        assert_eq!(
            refused(store.take(&head(&leaves, 30, 5, &key), &key)),
            FaultKind::Forked
        );
        assert_eq!(store.state.tree.as_ref().unwrap().size, 12);
        assert_eq!(store.state.faults, 3);
        assert!(store.state.last_fault.is_some());
        // The honest growth still goes on.
        assert!(matches!(
            store.take(&head(&leaves, 30, 12, &key), &key),
            HeadVerdict::Accepted
        ));
    }

    #[test]
    fn a_head_that_does_not_match_the_store_or_its_signature_is_refused() {
        let key = CheckpointKey::generate().unwrap();
        let mut store = Store::new(20);
        let leaves = store.leaves.clone();
        // Signed by another key.
        let stranger = CheckpointKey::generate().unwrap();
        assert_eq!(
            refused(store.take(&head(&leaves, 10, 0, &stranger), &key)),
            FaultKind::BadCheckpointSignature
        );
        // Its last line altered: its hash no longer matches its content.
        let mut altered = head(&leaves, 10, 0, &key);
        altered.last_line = altered.last_line.replace("audit/1", "audit/2");
        assert_eq!(refused(store.take(&altered, &key)), FaultKind::Modified);
        // A last line that is not the one the store holds at its seq.
        let kept = store.hashes.insert(9, "0".repeat(64)).unwrap();
        assert_eq!(
            refused(store.take(&head(&leaves, 10, 0, &key), &key)),
            FaultKind::Forked
        );
        store.hashes.insert(9, kept);
        // A last line that is not the tree's last leaf.
        let mut misplaced = head(&leaves, 10, 0, &key);
        misplaced.last_line = leaves[8].clone();
        misplaced.seq_to = 8;
        assert_eq!(
            refused(store.take(&misplaced, &key)),
            FaultKind::BadCheckpoint
        );
        // A line the store does not hold (given up as missing).
        store.hashes.remove(&9);
        assert_eq!(
            refused(store.take(&head(&leaves, 10, 0, &key), &key)),
            FaultKind::Deleted
        );
        assert!(store.state.tree.is_none());
    }
}
