//! The Merkle tree kept beside a real trail by its follower: every line a leaf, a signed
//! tree head at each of the trail's checkpoints, proofs from the files, and a tree that
//! goes on growing consistently after a restart.

mod common;

use std::time::Duration;

use audit_layer::file::{Checkpoint, CheckpointKey, JsonlFileSink, TrailLine, TrailReader};
use audit_layer::merkle::{
    MerkleTree, NoteVerifier, Receipt, ReceiptError, TreeFiles, TreeFollower, TreeHead, leaf_hash,
    signed_heads, verify_consistency, verify_inclusion,
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

/// `text` with its ASCII character at `at` replaced by another.
fn changed_at(text: &str, at: usize) -> Option<String> {
    let byte = *text.as_bytes().get(at)?;
    if !byte.is_ascii() || !text.is_char_boundary(at) {
        return None;
    }
    let other = if byte == b'x' { 'y' } else { 'x' };
    let mut changed = text.to_owned();
    changed.replace_range(at..at + 1, &other.to_string());
    Some(changed)
}

#[tokio::test]
async fn a_receipt_proves_one_event_offline_and_any_changed_byte_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = CheckpointKey::generate().expect("key");
    assert!(matches!(
        Receipt::make(dir.path(), 0),
        Err(ReceiptError::NoTree)
    ));
    run(dir.path(), &key, 300).await;
    let lines = trail_lines(dir.path());
    let log = NoteVerifier::new(ORIGIN, &key.public_key()).expect("verifier");
    for line in [&lines[0], &lines[137], lines.last().unwrap()] {
        let receipt = Receipt::make(dir.path(), line.seq).expect("receipt");
        assert_eq!(receipt.event, line.json, "the event as stored");
        let json = serde_json::to_string(&receipt).expect("json");
        // No other event's id is in it.
        for other in lines.iter().filter(|other| other.seq != line.seq) {
            let id = serde_json::from_str::<serde_json::Value>(&other.json).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_owned();
            assert!(
                !json.contains(&id),
                "seq {} in the receipt of {}",
                other.seq,
                line.seq
            );
        }
        let read: Receipt = serde_json::from_str(&json).expect("read back");
        let head = read.verify(&log).expect("the receipt holds");
        assert_eq!(head.size, lines.len() as u64);
    }

    // Each byte of the event, of each proof hash and of the signed head, changed in turn.
    let receipt = Receipt::make(dir.path(), lines[137].seq).expect("receipt");
    let mut refused = 0;
    for at in 0..receipt.event.len() {
        if let Some(event) = changed_at(&receipt.event, at) {
            let mut changed = receipt.clone();
            changed.event = event;
            assert!(changed.verify(&log).is_err(), "event byte {at}");
            refused += 1;
        }
    }
    for hash in 0..receipt.inclusion.len() {
        for at in 0..receipt.inclusion[hash].len() {
            if let Some(text) = changed_at(&receipt.inclusion[hash], at) {
                let mut changed = receipt.clone();
                changed.inclusion[hash] = text;
                assert!(changed.verify(&log).is_err(), "proof hash {hash} byte {at}");
                refused += 1;
            }
        }
    }
    for at in 0..receipt.checkpoint.len() {
        if let Some(note) = changed_at(&receipt.checkpoint, at) {
            let mut changed = receipt.clone();
            changed.checkpoint = note;
            assert!(changed.verify(&log).is_err(), "checkpoint byte {at}");
            refused += 1;
        }
    }
    assert!(refused > 500, "{refused}");
    // Another place in the tree, another log's key: refused.
    let mut moved = receipt.clone();
    moved.leaf_index += 1;
    assert!(moved.verify(&log).is_err());
    let other = CheckpointKey::generate().expect("key");
    let stranger = NoteVerifier::new(ORIGIN, &other.public_key()).expect("verifier");
    assert!(receipt.verify(&stranger).is_err());
    assert!(matches!(
        Receipt::make(dir.path(), lines.last().unwrap().seq + 1),
        Err(ReceiptError::NoEvent(_) | ReceiptError::NotCovered(_))
    ));
}

#[tokio::test]
async fn audit_prove_consistency_and_verify_receipt_on_the_command_line() {
    use common::demo::run_audit;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = CheckpointKey::generate().expect("key");
    run(dir.path(), &key, 260).await;
    let keys = tempfile::tempdir().expect("tempdir");
    let public = keys.path().join("log.pub");
    key.save(&keys.path().join("log.key"), &public)
        .expect("save");
    let out = keys.path().join("receipt.json");
    let dir_arg = dir.path().to_str().expect("utf-8");

    // By seq, and by event id.
    let lines = trail_lines(dir.path());
    let line = &lines[100];
    let (code, _, stderr) = run_audit(["prove", dir_arg, "100", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let verify = |path: &std::path::Path| {
        run_audit([
            "verify-receipt",
            path.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ])
    };
    let (code, stdout, stderr) = verify(&out);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("receipt holds") && stdout.contains("seq 100"),
        "{stdout}"
    );
    let id = serde_json::from_str::<serde_json::Value>(&line.json).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, by_id, _) = run_audit(["prove", dir_arg, &id]);
    assert_eq!(code, Some(0));
    assert_eq!(by_id, std::fs::read_to_string(&out).unwrap());

    // A changed receipt: exit 1, said plainly.
    let text = std::fs::read_to_string(&out).unwrap();
    let changed = keys.path().join("changed.json");
    std::fs::write(&changed, text.replacen("http.request", "http.requesT", 1)).unwrap();
    let (code, stdout, _) = verify(&changed);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("REFUSED"), "{stdout}");
    // Another log's name given: refused too.
    let (code, _, _) = run_audit([
        "verify-receipt",
        out.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
        "--origin",
        "audit.example.com/other",
    ]);
    assert_eq!(code, Some(1));

    // The trail only grew between two signed heads.
    let heads = signed_heads(dir.path()).expect("heads");
    let (old, new) = (
        heads[0].size.to_string(),
        heads.last().unwrap().size.to_string(),
    );
    let proof = keys.path().join("consistency.json");
    let (code, _, stderr) = run_audit([
        "consistency",
        dir_arg,
        &old,
        &new,
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, _) = verify(&proof);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("consistency holds"), "{stdout}");
    // Sizes no head was signed at, an event the trail does not hold: exit 2, with why.
    let unsigned = (1..)
        .find(|size| heads.iter().all(|head| head.size != *size))
        .unwrap();
    let (code, _, stderr) = run_audit(["consistency", dir_arg, &unsigned.to_string(), &new]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("no signed tree head of size {unsigned}")),
        "{stderr}"
    );
    let (code, _, stderr) = run_audit(["prove", dir_arg, "999999"]);
    assert_eq!(code, Some(2), "{stderr}");
}
