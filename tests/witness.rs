//! A witness cosigns a log's checkpoints only as the log grows: it refuses a rollback, a
//! truncated or forked tree, another log, a bad signature, and a request from a stale size
//! (answering with the size it holds); its cosignatures verify, and any change to the
//! cosigned note is caught; `audit witness` serves it over HTTP.

mod common;

use audit_layer::file::CheckpointKey;
use audit_layer::merkle::{
    MerkleTree, NoteVerifier, TreeHead, Witness, WitnessError, add_checkpoint_request, cosignatures,
};

const LOG: &str = "audit.example.com/orders";

fn tree(leaves: u64, fork_at: Option<u64>) -> MerkleTree {
    let mut tree = MerkleTree::new();
    for n in 0..leaves {
        let leaf = if Some(n) == fork_at {
            format!("{{\"seq\":{n},\"action\":\"user.delete\"}}")
        } else {
            format!("{{\"seq\":{n},\"action\":\"http.request\"}}")
        };
        tree.push(leaf.as_bytes());
    }
    tree
}

fn signed(tree: &MerkleTree, size: u64, key: &CheckpointKey) -> String {
    TreeHead {
        origin: LOG.to_owned(),
        size,
        root: tree.root_at(size).unwrap(),
    }
    .sign(key)
    .unwrap()
}

/// Asks `witness` to cosign `tree` at `size`, from the size it is told the witness holds.
fn ask(
    witness: &Witness,
    tree: &MerkleTree,
    old: u64,
    size: u64,
    key: &CheckpointKey,
) -> Result<String, WitnessError> {
    let proof = tree.consistency_proof(old, size).unwrap();
    let request = add_checkpoint_request(old, &proof, &signed(tree, size, key));
    witness.add_checkpoint(&request, 1_800_000_000 + size)
}

#[test]
fn a_witness_cosigns_growth_and_refuses_rollbacks_and_forks() {
    let state = tempfile::tempdir().unwrap();
    let log_key = CheckpointKey::generate().unwrap();
    let witness_key = CheckpointKey::generate().unwrap();
    let log = NoteVerifier::new(LOG, &log_key.public_key()).unwrap();
    let witness = Witness::new("witness.example.net", witness_key.clone(), state.path())
        .unwrap()
        .log(log.clone());
    let honest = tree(300, None);

    // First sight: trusted; then growth, each proven from the size held.
    let line = ask(&witness, &honest, 0, 100, &log_key).expect("first checkpoint");
    let note = format!("{}{line}", signed(&honest, 100, &log_key));
    let found = cosignatures(&note, &[witness.verifier()]).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].witness, "witness.example.net");
    assert_eq!(found[0].time, 1_800_000_100);
    ask(&witness, &honest, 100, 250, &log_key).expect("growth");
    assert_eq!(witness.held_size(LOG).unwrap(), 250);
    // The same checkpoint again: cosigned again (nothing changed).
    ask(&witness, &honest, 250, 250, &log_key).expect("the same size again");

    // A stale old size: 409 with the size held, so the log proves from there.
    let error = ask(&witness, &honest, 100, 300, &log_key).unwrap_err();
    assert!(
        matches!(
            error,
            WitnessError::Conflict {
                claimed: 100,
                held: 250
            }
        ),
        "{error}"
    );
    assert_eq!(error.status(), 409);

    // A rollback: a smaller tree (the log cut its tail), whatever old size it claims.
    let rollback = honest.consistency_proof(200, 200).unwrap();
    let request = add_checkpoint_request(250, &rollback, &signed(&honest, 200, &log_key));
    let error = witness.add_checkpoint(&request, 1).unwrap_err();
    assert!(matches!(error, WitnessError::Inconsistent(_)), "{error}");
    assert_eq!(error.status(), 422);

    // A fork: leaf 120 rewritten, the tree grown past what was cosigned.
    let forked = tree(300, Some(120));
    let error = ask(&witness, &forked, 250, 300, &log_key).unwrap_err();
    assert!(matches!(error, WitnessError::Inconsistent(_)), "{error}");
    // Same size, another root: a fork too.
    let error = ask(&witness, &forked, 250, 250, &log_key).unwrap_err();
    assert!(matches!(error, WitnessError::Inconsistent(_)), "{error}");
    assert_eq!(
        witness.held_size(LOG).unwrap(),
        250,
        "nothing refused was kept"
    );

    // Another log, a checkpoint signed by another key.
    let stranger = CheckpointKey::generate().unwrap();
    let error = ask(&witness, &honest, 250, 300, &stranger).unwrap_err();
    assert!(matches!(error, WitnessError::Signature(_)), "{error}");
    assert_eq!(error.status(), 403);
    let other = TreeHead {
        origin: "audit.example.com/other".into(),
        size: 1,
        root: honest.root_at(1).unwrap(),
    }
    .sign(&log_key)
    .unwrap();
    let error = witness
        .add_checkpoint(&add_checkpoint_request(0, &[], &other), 1)
        .unwrap_err();
    assert!(matches!(error, WitnessError::UnknownLog(_)), "{error}");
    assert_eq!(error.status(), 404);
    for bad in ["", "old x\n\n", "old 1\nnot base64\n\nnote"] {
        assert_eq!(
            witness.add_checkpoint(bad, 1).unwrap_err().status(),
            400,
            "{bad:?}"
        );
    }

    // What it holds survives a restart of the witness.
    let again = Witness::new("witness.example.net", witness_key, state.path())
        .unwrap()
        .log(log);
    assert_eq!(again.held_size(LOG).unwrap(), 250);
    ask(&again, &honest, 250, 300, &log_key).expect("growth after a restart");
    let error = ask(&again, &forked, 300, 300, &log_key).unwrap_err();
    assert!(matches!(error, WitnessError::Inconsistent(_)));
}

#[test]
fn a_cosigned_note_changed_anywhere_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let log_key = CheckpointKey::generate().unwrap();
    let log = NoteVerifier::new(LOG, &log_key.public_key()).unwrap();
    let witness = Witness::new(
        "witness.example.net",
        CheckpointKey::generate().unwrap(),
        state.path(),
    )
    .unwrap()
    .log(log);
    let honest = tree(40, None);
    let line = ask(&witness, &honest, 0, 40, &log_key).unwrap();
    let note = format!("{}{line}", signed(&honest, 40, &log_key));
    let verifier = witness.verifier();
    assert_eq!(
        NoteVerifier::parse(&verifier.to_string()).unwrap(),
        verifier
    );
    assert!(verifier.is_witness());
    // Each letter or digit of the checkpoint's text or of the witness's line (its name,
    // key id, time and signature): no valid cosignature is left. The log's own signature
    // line is not the witness's to check.
    let text_end = note.find("\n\n").unwrap();
    let witness_line = note.len() - line.len();
    let mut checked = 0;
    for at in (0..note.len()).filter(|&at| at < text_end || at >= witness_line) {
        if !note.is_char_boundary(at) || !note.as_bytes()[at].is_ascii_alphanumeric() {
            continue;
        }
        let mut changed = note.clone();
        let other = if note.as_bytes()[at] == b'x' {
            "y"
        } else {
            "x"
        };
        changed.replace_range(at..at + 1, other);
        let found = cosignatures(&changed, std::slice::from_ref(&verifier));
        assert!(
            !matches!(&found, Ok(list) if !list.is_empty()),
            "changed at {at}: {changed}"
        );
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
}

/// `audit witness` as a process: it prints where it listens and its key.
struct WitnessProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    verifier: NoteVerifier,
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(dir: &std::path::Path, log_public: &std::path::Path) -> WitnessProcess {
    use std::io::BufRead;
    let mut child = std::process::Command::new(common::demo::audit_binary())
        .args([
            "witness",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "witness.example.net",
        ])
        .arg("--key")
        .arg(dir.join("witness.key"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--log")
        .arg(format!("{LOG}={}", log_public.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start audit witness");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a line").expect("read");
    let addr = next()
        .strip_prefix("witness listening on ")
        .expect("the address")
        .parse()
        .expect("an address");
    let verifier = NoteVerifier::parse(next().strip_prefix("witness key: ").expect("the key"))
        .expect("a witness key");
    WitnessProcess {
        child,
        addr,
        verifier,
    }
}

/// POSTs an add-checkpoint body: the status and the body.
async fn post(addr: std::net::SocketAddr, body: &str) -> (u16, String) {
    let request = format!(
        "POST /add-checkpoint HTTP/1.1\r\nHost: witness\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = common::raw_http(addr, &request).await;
    let status = response[9..12].parse().expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn audit_witness_serves_the_protocol_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let log_key = CheckpointKey::generate().unwrap();
    let public = dir.path().join("log.pub");
    log_key.save(&dir.path().join("log.key"), &public).unwrap();
    let witness = start_witness(dir.path(), &public);
    assert!(witness.verifier.is_witness());
    let honest = tree(64, None);

    let note = signed(&honest, 20, &log_key);
    let (status, line) = post(witness.addr, &add_checkpoint_request(0, &[], &note)).await;
    assert_eq!(status, 200, "{line}");
    let cosigned = format!("{note}{line}");
    assert_eq!(
        cosignatures(&cosigned, std::slice::from_ref(&witness.verifier))
            .unwrap()
            .len(),
        1
    );

    // From a stale size: 409 and the size it holds, then from there: 200.
    let proof = honest.consistency_proof(10, 64).unwrap();
    let (status, held) = post(
        witness.addr,
        &add_checkpoint_request(10, &proof, &signed(&honest, 64, &log_key)),
    )
    .await;
    assert_eq!((status, held.trim()), (409, "20"));
    let proof = honest.consistency_proof(20, 64).unwrap();
    let (status, _) = post(
        witness.addr,
        &add_checkpoint_request(20, &proof, &signed(&honest, 64, &log_key)),
    )
    .await;
    assert_eq!(status, 200);
    // A fork: 422; garbage: 400.
    let forked = tree(64, Some(3));
    let (status, _) = post(
        witness.addr,
        &add_checkpoint_request(64, &[], &signed(&forked, 64, &log_key)),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = post(witness.addr, "old one\n\nnot a note").await;
    assert_eq!(status, 400);
}

/// A trail in `dir` whose tree heads go to the witness at `url`: `events` events, a
/// checkpoint every 100.
async fn witnessed_trail(
    dir: &std::path::Path,
    key: &CheckpointKey,
    url: &str,
    witness: &NoteVerifier,
    events: usize,
    action: &'static str,
) {
    use audit_layer::file::JsonlFileSink;
    use audit_layer::merkle::TreeFollower;
    let trail = audit_layer::AuditTrail::builder()
        .sink(
            JsonlFileSink::builder(dir)
                .signing_key(key.clone())
                .checkpoint_every(100, std::time::Duration::from_secs(3600))
                .build(),
        )
        .follower(
            TreeFollower::builder(LOG, key.clone())
                .witness(url, witness.clone())
                .build()
                .expect("follower"),
        )
        .build()
        .expect("trail");
    let events = common::services::sample_events(events, audit_layer::Category::Request, action);
    for (n, event) in events.into_iter().enumerate() {
        trail.record(event).await.expect("record");
        if n % 25 == 24 {
            trail.flush().await.expect("flush");
        }
    }
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn witnessed_receipts_and_a_rollback_by_the_key_holder_caught() {
    use audit_layer::merkle::ConsistencyProof;
    use audit_layer::merkle::{Receipt, ReceiptError, cosignatures_of, signed_heads};
    let state = tempfile::tempdir().unwrap();
    let log_key = CheckpointKey::generate().unwrap();
    let witness = Witness::new(
        "witness.example.net",
        CheckpointKey::generate().unwrap(),
        state.path(),
    )
    .unwrap()
    .log(NoteVerifier::new(LOG, &log_key.public_key()).unwrap());
    let verifier = witness.verifier();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/add-checkpoint", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, witness.router()).await });

    // The honest trail: every head cosigned, and its receipts carry the cosignature.
    let honest = tempfile::tempdir().unwrap();
    witnessed_trail(
        honest.path(),
        &log_key,
        &url,
        &verifier,
        300,
        "http.request",
    )
    .await;
    let heads = signed_heads(honest.path()).unwrap();
    let last = heads.last().unwrap();
    assert_eq!(cosignatures_of(honest.path(), last.size).unwrap().len(), 1);
    let log = NoteVerifier::new(LOG, &log_key.public_key()).unwrap();
    let receipt = Receipt::make(honest.path(), 150).unwrap();
    receipt.verify(&log).unwrap();
    let cosigned = receipt
        .witnessed(std::slice::from_ref(&verifier), 1)
        .unwrap();
    assert_eq!(cosigned[0].witness, "witness.example.net");
    // A consistency proof carries the cosignatures of its heads too.
    let growth = ConsistencyProof::make(honest.path(), heads[0].size, last.size).unwrap();
    growth.verify(&log).unwrap();
    let cosigned = growth
        .witnessed(std::slice::from_ref(&verifier), 1)
        .unwrap();
    assert_eq!(cosigned[0].witness, "witness.example.net");

    // The holder of the key rewrites history: a new trail, other events, the same log
    // name and key. Every head verifies with the log's key, but the witness, which holds
    // the honest tree, cosigns none of them: the receipts fail the witness check.
    let rewritten = tempfile::tempdir().unwrap();
    witnessed_trail(
        rewritten.path(),
        &log_key,
        &url,
        &verifier,
        200,
        "user.delete",
    )
    .await;
    let forged = Receipt::make(rewritten.path(), 150).unwrap();
    let forged_heads = signed_heads(rewritten.path()).unwrap();
    let forged_growth = ConsistencyProof::make(
        rewritten.path(),
        forged_heads[0].size,
        forged_heads.last().unwrap().size,
    )
    .unwrap();
    forged_growth
        .verify(&log)
        .expect("signed by the log's own key");
    assert!(
        forged_growth
            .witnessed(std::slice::from_ref(&verifier), 1)
            .is_err()
    );
    forged.verify(&log).expect("signed by the log's own key");
    assert!(matches!(
        forged.witnessed(std::slice::from_ref(&verifier), 1),
        Err(ReceiptError::Witnesses {
            found: 0,
            required: 1
        })
    ));
    for head in &forged_heads {
        assert!(
            cosignatures_of(rewritten.path(), head.size)
                .unwrap()
                .is_empty()
        );
    }

    // The same on the command line: `--witness` makes the forged receipt exit 1.
    let keys = tempfile::tempdir().unwrap();
    let public = keys.path().join("log.pub");
    log_key.save(&keys.path().join("log.key"), &public).unwrap();
    let check = |receipt: &Receipt, name: &str| {
        let path = keys.path().join(name);
        std::fs::write(&path, serde_json::to_string(receipt).unwrap()).unwrap();
        common::demo::run_audit([
            "verify-receipt".to_owned(),
            path.display().to_string(),
            "--public-key".to_owned(),
            public.display().to_string(),
            "--witness".to_owned(),
            verifier.to_string(),
        ])
    };
    let (code, stdout, stderr) = check(&receipt, "honest.json");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("cosigned by witness.example.net"),
        "{stdout}"
    );
    let (code, stdout, _) = check(&forged, "forged.json");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("0 of the witnesses given cosigned"),
        "{stdout}"
    );

    // `audit verify --witness`: the honest trail is its witnessed tree; the rewritten one
    // has no witnessed head at all.
    let verify = |dir: &std::path::Path| {
        common::demo::run_audit([
            "verify".to_owned(),
            dir.display().to_string(),
            "--public-key".to_owned(),
            public.display().to_string(),
            "--witness".to_owned(),
            verifier.to_string(),
        ])
    };
    let (code, stdout, stderr) = verify(honest.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("witnessed: the trail's first"), "{stdout}");
    let (code, _, stderr) = verify(rewritten.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("FAULT: witnesses"), "{stderr}");
    // The honest trail's files swapped for the rewritten ones, its tree and cosigned heads
    // kept: the lines are not the witnessed tree.
    for file in audit_layer::file::trail_files(honest.path()).unwrap() {
        std::fs::remove_file(file).unwrap();
    }
    for file in audit_layer::file::trail_files(rewritten.path()).unwrap() {
        std::fs::copy(&file, honest.path().join(file.file_name().unwrap())).unwrap();
    }
    let witnessed = audit_layer::merkle::check_witnessed(
        honest.path(),
        &log,
        std::slice::from_ref(&verifier),
        1,
    );
    assert!(
        matches!(witnessed, Err(ReceiptError::Proof(_))),
        "{witnessed:?}"
    );
    server.abort();
}
