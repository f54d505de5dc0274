//! The Merkle tree on the trail's scale: the cost of adding a line (its leaf hash and the
//! nodes it completes) against writing it, and the time and size of an inclusion and a
//! consistency proof in a tree of 10,000,000 leaves.
//!
//! Then what the tree's upkeep costs the file sink: events/s through an `AuditTrail` with a
//! `JsonlFileSink` alone and with a `TreeFollower`, runs alternated in one process (target:
//! under 5%). Then receipts (`merkle::Receipt::make`: the line, its proof and the signed
//! head) from a real trail written through an `AuditTrail` with a `TreeFollower`.
//!
//! ```sh
//! cargo bench --bench merkle                                    # 10,000,000 leaves, 1,000,000-event trail
//! AUDIT_BENCH_MERKLE_LEAVES=1000000 AUDIT_BENCH_RECEIPT_EVENTS=10000000 cargo bench --bench merkle
//! AUDIT_BENCH_UPKEEP_EVENTS=200000 cargo bench --bench merkle   # events per upkeep run (default 500,000)
//! ```
//!
//! Under `cargo test --benches` it runs once on 10,000 leaves and events, unoptimized.

use std::time::{Duration, Instant};

use audit_layer::file::{CheckpointKey, JsonlFileSink};
use audit_layer::merkle::{
    MerkleTree, NoteVerifier, Receipt, TreeFollower, leaf_hash, signed_heads, verify_consistency,
    verify_inclusion,
};
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};

/// A line as long as the trail's average (~640 bytes).
fn line(n: u64) -> Vec<u8> {
    let mut line = format!("{{\"seq\":{n},\"action\":\"http.request\",").into_bytes();
    line.resize(640, b'x');
    line
}

fn main() {
    let measured = std::env::args().any(|arg| arg == "--bench");
    let leaves: u64 = match std::env::var("AUDIT_BENCH_MERKLE_LEAVES") {
        Ok(text) => text.parse().expect("AUDIT_BENCH_MERKLE_LEAVES: a number"),
        Err(_) if measured => 10_000_000,
        Err(_) => 10_000,
    };
    let lines: Vec<Vec<u8>> = (0..1024).map(line).collect();

    // What the tree adds per line: its leaf hash (SHA-256 of ~640 bytes) and the nodes.
    let mut tree = MerkleTree::new();
    let started = Instant::now();
    for n in 0..leaves {
        tree.push(&lines[(n % 1024) as usize]);
    }
    let took = started.elapsed();
    println!(
        "merkle/append: {leaves} lines of 640 bytes in {:.2} s: {:.0} ns a line, {:.0} lines/s",
        took.as_secs_f64(),
        took.as_nanos() as f64 / leaves as f64,
        leaves as f64 / took.as_secs_f64()
    );

    let root = tree.root();
    let mut times = Vec::new();
    let mut longest = 0;
    for k in 0..1000u64 {
        let index = k * 7_919_993 % leaves;
        let started = Instant::now();
        let proof = tree.inclusion_proof(index, leaves).expect("proof");
        times.push(started.elapsed());
        longest = longest.max(proof.len());
        let leaf = leaf_hash(&lines[(index % 1024) as usize]);
        verify_inclusion(&leaf, index, leaves, &proof, &root).expect("verifies");
    }
    times.sort();
    println!(
        "merkle/inclusion_proof: median {:.1} µs, p99 {:.1} µs (target 1 ms); at most {longest} \
         hashes, {} bytes (log2 of {leaves}: {:.1})",
        micros(times[times.len() / 2]),
        micros(times[times.len() * 99 / 100]),
        longest * 32,
        (leaves as f64).log2()
    );

    let old = leaves * 2 / 3 + 1;
    let started = Instant::now();
    let proof = tree.consistency_proof(old, leaves).expect("proof");
    let took = started.elapsed();
    verify_consistency(
        old,
        leaves,
        &tree.root_at(old).expect("root"),
        &root,
        &proof,
    )
    .expect("verifies");
    println!(
        "merkle/consistency_proof: {old} to {leaves}: {:.1} µs, {} hashes",
        micros(took),
        proof.len()
    );
    drop(tree);

    let events: u64 = match std::env::var("AUDIT_BENCH_UPKEEP_EVENTS") {
        Ok(text) => text.parse().expect("AUDIT_BENCH_UPKEEP_EVENTS: a number"),
        Err(_) if measured => 500_000,
        Err(_) => 5_000,
    };
    upkeep(events);

    let events: u64 = match std::env::var("AUDIT_BENCH_RECEIPT_EVENTS") {
        Ok(text) => text.parse().expect("AUDIT_BENCH_RECEIPT_EVENTS: a number"),
        Err(_) if measured => 1_000_000,
        Err(_) => 10_000,
    };
    receipts(events);
}

/// The file sink's events/s alone and with a `TreeFollower` beside it (on its own thread,
/// sharing the machine's cores), three runs of each, alternated.
fn upkeep(events: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut followed = Vec::new();
    for round in 0..6 {
        let with_tree = round % 2 == 1;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = CheckpointKey::generate().expect("key");
        let (written, caught_up) = runtime.block_on(async {
            let mut builder = AuditTrail::builder()
                .sink(
                    JsonlFileSink::builder(dir.path())
                        .signing_key(key.clone())
                        .build(),
                )
                .follower_drain(Duration::from_secs(600));
            if with_tree {
                builder = builder.follower(
                    TreeFollower::new("bench.example/trail", key.clone()).expect("follower"),
                );
            }
            let trail = builder.build().expect("trail");
            let started = Instant::now();
            for n in 0..events {
                trail.record(event(n)).await.expect("record");
            }
            trail.flush().await.expect("flush");
            let written = started.elapsed();
            trail.shutdown().await.expect("shutdown");
            (written, started.elapsed())
        });
        rates[usize::from(with_tree)].push(events as f64 / written.as_secs_f64());
        if with_tree {
            followed.push(events as f64 / caught_up.as_secs_f64());
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (alone, with_tree) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "merkle/upkeep: the file sink {alone:.0} events/s alone, {with_tree:.0} with a TreeFollower \
         ({:+.1}%; target under 5% less); the tree caught up at {:.0} events/s",
        (with_tree / alone - 1.0) * 100.0,
        median(&mut followed)
    );
}

fn event(n: u64) -> AuditEvent {
    AuditEvent::new(
        Category::Request,
        "http.request",
        Outcome::Success,
        Actor::user(format!("user{}", n % 10_000)),
    )
    .with_target(format!("item:{n}"))
}

/// A trail of `events` written through an `AuditTrail` whose `TreeFollower` keeps its tree,
/// then receipts of lines spread over it.
fn receipts(events: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = CheckpointKey::generate().expect("key");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let trail = AuditTrail::builder()
            .sink(
                JsonlFileSink::builder(dir.path())
                    .signing_key(key.clone())
                    .build(),
            )
            .follower(TreeFollower::new("bench.example/trail", key.clone()).expect("follower"))
            .follower_drain(Duration::from_secs(600))
            .build()
            .expect("trail");
        for n in 0..events {
            trail.record(event(n)).await.expect("record");
        }
        trail.shutdown().await.expect("shutdown");
    });
    println!(
        "merkle/trail: {events} events written and followed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let log = NoteVerifier::new("bench.example/trail", &key.public_key()).expect("verifier");
    let last = signed_heads(dir.path())
        .expect("heads")
        .last()
        .expect("a head")
        .size;
    let mut times = Vec::new();
    let mut bytes = 0;
    for k in 0..200u64 {
        let seq = 1 + k * 7_919_993 % (last - 1);
        let started = Instant::now();
        let receipt = Receipt::make(dir.path(), seq).expect("receipt");
        times.push(started.elapsed());
        bytes = bytes.max(serde_json::to_string(&receipt).expect("json").len());
        receipt.verify(&log).expect("verifies");
    }
    times.sort();
    println!(
        "merkle/receipt: {last} events: median {:.0} µs, p99 {:.0} µs (target 1 ms); at most {bytes} bytes of JSON",
        micros(times[times.len() / 2]),
        micros(times[times.len() * 99 / 100]),
    );
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
