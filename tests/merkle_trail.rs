//! The Merkle tree kept beside a real trail by its follower: every line a leaf, a signed
//! tree head at each of the trail's checkpoints, proofs from the files, and a tree that
//! goes on growing consistently after a restart.

mod common;

use std::time::Duration;

use audit_layer::file::{Checkpoint, CheckpointKey, JsonlFileSink, TrailLine, TrailReader};
use audit_layer::merkle::{
    MerkleTree, NoteVerifier, TreeFiles, TreeFollower, TreeHead, leaf_hash, signed_heads,
    verify_consistency, verify_inclusion,
};
use audit_layer::{AuditTrail, Category};

const ORIGIN: &str = "audit.example.com/orders";

async fn run(dir: &std::path::Path, key: &CheckpointKey, events: usize) {
    let trail = AuditTrail::builder()
        .sink(
            JsonlFileSink::builder(dir)
                .signing_key(key.clone())
                .checkpoint_every(100, Duration::from_secs(3600))
                .build(),
        )
        .follower(TreeFollower::new(ORIGIN, key.clone()).expect("follower"))
        .build()
        .expect("trail");
    let events = common::services::sample_events(events, Category::Request, "http.request");
    for (n, event) in events.into_iter().enumerate() {
        trail.record(event).await.expect("record");
        // Batches of 25: a checkpoint every fourth.
        if n % 25 == 24 {
            trail.flush().await.expect("flush");
        }
    }
    trail.shutdown().await.expect("shutdown");
}

fn trail_lines(dir: &std::path::Path) -> Vec<TrailLine> {
    TrailReader::new(dir, 0, None).read(100_000).expect("read")
}

fn trail_checkpoints(dir: &std::path::Path) -> Vec<Checkpoint> {
    std::fs::read_to_string(dir.join("checkpoints.jsonl"))
        .expect("checkpoints")
        .lines()
        .map(|line| serde_json::from_str(line).expect("checkpoint"))
        .collect()
}

#[tokio::test]
async fn the_tree_follows_the_trail_and_signs_its_head_at_each_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = CheckpointKey::generate().expect("key");
    run(dir.path(), &key, 450).await;

    let lines = trail_lines(dir.path());
    let mut memory = MerkleTree::new();
    for line in &lines {
        memory.push(line.json.as_bytes());
    }
    let files = TreeFiles::open(dir.path()).expect("tree");
    assert_eq!(files.len(), lines.len() as u64, "every line is a leaf");
    assert_eq!(files.root_at(files.len()).unwrap(), memory.root());

    // A head for each of the trail's checkpoints, at the same line, signed by the log.
    let heads = signed_heads(dir.path()).expect("heads");
    let checkpoints = trail_checkpoints(dir.path());
    assert!(checkpoints.len() >= 5, "{}", checkpoints.len());
    assert_eq!(
        heads.iter().map(|head| head.seq_to).collect::<Vec<_>>(),
        checkpoints.iter().map(|c| c.seq_to).collect::<Vec<_>>()
    );
    assert_eq!(heads.last().unwrap().seq_to, lines.last().unwrap().seq);
    let log = NoteVerifier::new(ORIGIN, &key.public_key()).expect("verifier");
    for head in &heads {
        let opened = TreeHead::open(&head.note, &log).expect("a valid signed head");
        assert_eq!(opened.origin, ORIGIN);
        assert_eq!(opened.size, head.size);
        assert_eq!(opened.root, memory.root_at(head.size).unwrap());
        // A line proven in it from the files alone.
        let index = head.size / 2;
        let proof = files.inclusion_proof(index, head.size).expect("proof");
        verify_inclusion(
            &leaf_hash(lines[index as usize].json.as_bytes()),
            index,
            head.size,
            &proof,
            &opened.root,
        )
        .expect("the line is in the signed tree");
    }
    // Another key does not pass for the log's.
    let other = CheckpointKey::generate().expect("key");
    let stranger = NoteVerifier::new(ORIGIN, &other.public_key()).expect("verifier");
    assert!(TreeHead::open(&heads[0].note, &stranger).is_err());
}

#[tokio::test]
async fn after_a_restart_the_tree_goes_on_and_only_grows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = CheckpointKey::generate().expect("key");
    run(dir.path(), &key, 230).await;
    let first = signed_heads(dir.path()).expect("heads");
    run(dir.path(), &key, 170).await;
    let heads = signed_heads(dir.path()).expect("heads");
    assert!(heads.len() > first.len());
    assert_eq!(
        &heads[..first.len()],
        &first[..],
        "earlier heads are kept as they were"
    );

    let lines = trail_lines(dir.path());
    let files = TreeFiles::open(dir.path()).expect("tree");
    assert_eq!(
        files.len(),
        lines.len() as u64,
        "each line once, across the restart"
    );
    let log = NoteVerifier::new(ORIGIN, &key.public_key()).expect("verifier");
    let old = TreeHead::open(&first.last().unwrap().note, &log).expect("head");
    let new = TreeHead::open(&heads.last().unwrap().note, &log).expect("head");
    let proof = files.consistency_proof(old.size, new.size).expect("proof");
    verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .expect("the later tree holds the earlier one");
}
