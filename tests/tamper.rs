//! Every single change to a stored trail is detected, with the right kind and seq named:
//! a property test over many generated trails and random changes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use audit_layer::file::{
    ChainKey, Checkpoint, CheckpointKey, Fault, FaultKind, JsonlFileSink, ManualClock,
    VerifyOptions, verify_trail,
};
use audit_layer::sink::Sink;
use audit_layer::{Actor, AuditEvent, Category, Outcome};
use common::trail::OpenNow;
use proptest::prelude::*;

/// A generated trail and what verifies it.
struct Trail {
    dir: tempfile::TempDir,
    key: CheckpointKey,
    chain_key: Option<ChainKey>,
}

impl Trail {
    fn options(&self) -> VerifyOptions {
        VerifyOptions {
            chain_key: self.chain_key.clone(),
            public_key: Some(self.key.public_key()),
            ..VerifyOptions::default()
        }
    }

    fn verify(&self) -> Result<audit_layer::file::VerifyReport, Fault> {
        verify_trail(self.dir.path(), &self.options())
    }

    fn files(&self) -> Vec<PathBuf> {
        common::trail_files(self.dir.path())
    }

    /// Every line of the trail: (file, index in file, seq).
    fn lines(&self) -> Vec<(PathBuf, usize, u64)> {
        let mut out = Vec::new();
        for file in self.files() {
            let text = fs::read_to_string(&file).unwrap();
            for (index, line) in text.lines().enumerate() {
                let seq = serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
                    .as_u64()
                    .unwrap();
                out.push((file.clone(), index, seq));
            }
        }
        out
    }
}

fn event(i: usize) -> AuditEvent {
    AuditEvent::new(
        Category::Request,
        "http.request",
        Outcome::Success,
        Actor::user(format!("u{i}")),
    )
    .with_target(format!("item:{i}"))
    .with_detail("n", i)
}

/// Writes `count` events in batches of one to three, rotating every `rotate_bytes`.
fn build(
    count: usize,
    checkpoint_every: u64,
    rotate_bytes: u64,
    chain_key: Option<ChainKey>,
) -> Trail {
    let dir = tempfile::tempdir().unwrap();
    let key = CheckpointKey::generate().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_790_000_000));
    let mut builder = JsonlFileSink::builder(dir.path())
        .signing_key(key.clone())
        .checkpoint_every(checkpoint_every, Duration::from_secs(3600))
        .rotate_bytes(rotate_bytes)
        .clock(clock);
    if let Some(chain_key) = &chain_key {
        builder = builder.chain_key(chain_key.clone());
    }
    let mut sink = builder.open_now().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut written = 0;
        while written < count {
            let size = (written % 3 + 1).min(count - written);
            let batch: Vec<_> = (written..written + size).map(event).collect();
            sink.write_batch(&batch).await.unwrap();
            written += size;
        }
        sink.close().await.unwrap();
    });
    Trail {
        dir,
        key,
        chain_key,
    }
}

fn rewrite_lines(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let mut out = lines.join("\n");
    if !lines.is_empty() {
        out.push('\n');
    }
    fs::write(path, out).unwrap();
}

fn line_text(path: &Path, index: usize) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .nth(index)
        .unwrap()
        .to_owned()
}

fn expect(fault: &Fault, kind: FaultKind, seq: u64) {
    assert_eq!((fault.kind, fault.seq), (kind, Some(seq)), "{fault}");
}

/// One change to apply, with random numbers resolved against the trail's layout.
#[derive(Clone, Debug)]
enum Change {
    FlipByte { at: u64, to: u8 },
    DeleteLine { at: u64 },
    InsertCopy { at: u64, of: u64 },
    InsertJunk { at: u64 },
    Swap { a: u64, b: u64 },
    Truncate { keep: u64 },
    RemoveFile { at: u64 },
    ForgeCheckpoint { at: u64, field: u8 },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<u64>(), any::<u8>()).prop_map(|(at, to)| Change::FlipByte { at, to }),
        any::<u64>().prop_map(|at| Change::DeleteLine { at }),
        (any::<u64>(), any::<u64>()).prop_map(|(at, of)| Change::InsertCopy { at, of }),
        any::<u64>().prop_map(|at| Change::InsertJunk { at }),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Change::Swap { a, b }),
        any::<u64>().prop_map(|keep| Change::Truncate { keep }),
        any::<u64>().prop_map(|at| Change::RemoveFile { at }),
        (any::<u64>(), 0u8..3).prop_map(|(at, field)| Change::ForgeCheckpoint { at, field }),
    ]
}

/// Applies a change and checks what verification says about it.
fn apply_and_check(trail: &Trail, change: &Change) {
    let lines = trail.lines();
    let total = lines.len() as u64;
    let pick = |n: u64, range: u64| (n % range) as usize;
    match *change {
        Change::FlipByte { at, to } => {
            // A byte of the event files, counted across them in order.
            let files = trail.files();
            let sizes: Vec<u64> = files
                .iter()
                .map(|f| fs::metadata(f).unwrap().len())
                .collect();
            let mut offset = at % sizes.iter().sum::<u64>();
            let (file, size) = files
                .iter()
                .zip(&sizes)
                .find(|(_, size)| {
                    let here = offset < **size;
                    if !here {
                        offset -= **size;
                    }
                    here
                })
                .unwrap();
            let _ = size;
            let mut bytes = fs::read(file).unwrap();
            let original = bytes[offset as usize];
            bytes[offset as usize] = if to == original {
                to.wrapping_add(1)
            } else {
                to
            };
            // The line holding the byte (a newline belongs to the line it ends).
            let index = bytes[..offset as usize]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            let seq = lines
                .iter()
                .find(|(f, i, _)| f == file && *i == index)
                .unwrap()
                .2;
            fs::write(file, bytes).unwrap();
            let fault = trail.verify().unwrap_err();
            expect(&fault, FaultKind::Modified, seq);
        }
        Change::DeleteLine { at } => {
            let (file, index, seq) = lines[pick(at, total)].clone();
            rewrite_lines(&file, |l| {
                l.remove(index);
            });
            let fault = trail.verify().unwrap_err();
            let kind = if seq + 1 == total {
                FaultKind::Truncated
            } else {
                FaultKind::Deleted
            };
            expect(&fault, kind, seq);
        }
        Change::InsertCopy { at, of } => {
            // Before line `at` (or after the last line), a copy of line `of`.
            let position = pick(at, total + 1);
            let copied = &lines[pick(of, total)];
            let copy = line_text(&copied.0, copied.1);
            let (file, index, expected) = match lines.get(position) {
                Some((file, index, seq)) => (file.clone(), *index, *seq),
                None => {
                    let (file, index, seq) = lines.last().unwrap().clone();
                    (file, index + 1, seq + 1)
                }
            };
            rewrite_lines(&file, |l| l.insert(index, copy));
            let fault = trail.verify().unwrap_err();
            assert_eq!(fault.kind, FaultKind::Inserted, "{fault}");
            // A copy of the line just before is the same line twice: either is "the" copy.
            let duplicate_of_previous = copied.2 + 1 == expected;
            assert!(
                fault.seq == Some(expected)
                    || (duplicate_of_previous && fault.seq == Some(copied.2)),
                "{fault} (expected seq {expected})"
            );
        }
        Change::InsertJunk { at } => {
            let position = pick(at, total + 1);
            let (file, index, expected) = match lines.get(position) {
                Some((file, index, seq)) => (file.clone(), *index, *seq),
                None => {
                    let (file, index, seq) = lines.last().unwrap().clone();
                    (file, index + 1, seq + 1)
                }
            };
            rewrite_lines(&file, |l| {
                l.insert(index, r#"{"note":"added by hand"}"#.to_owned())
            });
            let fault = trail.verify().unwrap_err();
            expect(&fault, FaultKind::Inserted, expected);
        }
        Change::Swap { a, b } => {
            let (i, j) = (pick(a, total), pick(b, total));
            if i == j {
                return;
            }
            let (first, second) = (lines[i.min(j)].clone(), lines[i.max(j)].clone());
            let (text_first, text_second) =
                (line_text(&first.0, first.1), line_text(&second.0, second.1));
            rewrite_lines(&first.0, |l| l[first.1] = text_second.clone());
            rewrite_lines(&second.0, |l| l[second.1] = text_first.clone());
            let fault = trail.verify().unwrap_err();
            expect(&fault, FaultKind::Reordered, first.2);
        }
        Change::Truncate { keep } => {
            let keep = pick(keep, total);
            for (file, index, _) in lines[keep..].iter().rev() {
                rewrite_lines(file, |l| {
                    l.truncate(*index);
                });
            }
            let fault = trail.verify().unwrap_err();
            expect(&fault, FaultKind::Truncated, keep as u64);
        }
        Change::RemoveFile { at } => {
            let files = trail.files();
            let file = &files[pick(at, files.len() as u64)];
            let first_seq = lines.iter().find(|(f, _, _)| f == file).unwrap().2;
            fs::remove_file(file).unwrap();
            let fault = trail.verify().unwrap_err();
            expect(&fault, FaultKind::MissingFile, first_seq);
            assert_eq!(fault.file.as_deref(), file.file_name().unwrap().to_str());
        }
        Change::ForgeCheckpoint { at, field } => {
            let path = trail.dir.path().join("checkpoints.jsonl");
            let mut checkpoints: Vec<Checkpoint> = fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let count = checkpoints.len() as u64;
            let forged = &mut checkpoints[pick(at, count)];
            match field {
                0 => forged.seq_to += 1,
                1 => forged.last_hash = "0".repeat(64),
                _ => forged.file_len += 1,
            }
            let text: String = checkpoints
                .iter()
                .map(|cp| serde_json::to_string(cp).unwrap() + "\n")
                .collect();
            fs::write(&path, text).unwrap();
            let fault = trail.verify().unwrap_err();
            assert_eq!(fault.kind, FaultKind::BadCheckpointSignature, "{fault}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_single_change_is_detected(
        count in 6usize..40,
        checkpoint_every in 1u64..8,
        rotate in prop_oneof![Just(u64::MAX), 1500u64..4000],
        change in change(),
    ) {
        let trail = build(count, checkpoint_every, rotate, None);
        trail.verify().expect("an untouched trail verifies");
        apply_and_check(&trail, &change);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn keyed_chains_detect_changes_too(count in 6usize..20, change in change()) {
        let trail = build(count, 4, 2500, Some(ChainKey::new(b"chain secret".to_vec())));
        trail.verify().expect("an untouched keyed trail verifies");
        apply_and_check(&trail, &change);
    }
}

#[test]
fn a_keyed_chain_is_rejected_with_the_wrong_key_or_none() {
    let trail = build(10, 3, u64::MAX, Some(ChainKey::new(b"right".to_vec())));
    trail.verify().unwrap();
    let mut options = trail.options();
    options.chain_key = Some(ChainKey::new(b"wrong".to_vec()));
    assert_eq!(
        verify_trail(trail.dir.path(), &options).unwrap_err().kind,
        FaultKind::WrongKey
    );
    options.chain_key = None;
    assert_eq!(
        verify_trail(trail.dir.path(), &options).unwrap_err().kind,
        FaultKind::WrongKey
    );
}

#[test]
fn a_wholly_replaced_trail_is_detected() {
    // An attacker rewrites every event and recomputes the (unkeyed) chain: the signed
    // checkpoints no longer match.
    let original = build(12, 4, u64::MAX, None);
    let forged = build(12, 4, u64::MAX, None);
    for (from, to) in forged.files().iter().zip(original.files()) {
        fs::copy(from, to).unwrap();
    }
    let fault = original.verify().unwrap_err();
    assert_eq!(fault.kind, FaultKind::Modified, "{fault}");
    assert!(fault.detail.contains("signed checkpoint"), "{fault}");
    // ...and bringing their own checkpoints fails the signature check.
    fs::copy(
        forged.dir.path().join("checkpoints.jsonl"),
        original.dir.path().join("checkpoints.jsonl"),
    )
    .unwrap();
    assert_eq!(
        original.verify().unwrap_err().kind,
        FaultKind::BadCheckpointSignature
    );
    // ...and removing the checkpoints leaves nothing to authenticate the trail.
    fs::remove_file(original.dir.path().join("checkpoints.jsonl")).unwrap();
    assert_eq!(
        original.verify().unwrap_err().kind,
        FaultKind::BadCheckpoint
    );
}

#[test]
fn a_forged_line_with_a_valid_hash_is_an_insertion() {
    // Unkeyed, an attacker can compute a line's hash; inserting it still breaks the chain.
    let trail = build(8, 100, u64::MAX, None);
    let file = &trail.files()[0];
    let fifth = line_text(file, 4);
    let value: serde_json::Value = serde_json::from_str(&fifth).unwrap();
    let prev_hash = value["prev_hash"].as_str().unwrap();
    let event = br#"{"schema":"audit/1","action":"forged"}"#;
    let hash = audit_layer::file::link_hash(None, prev_hash, 4, event);
    let forged = format!(
        r#"{{"seq":4,"prev_hash":"{prev_hash}","hash":"{hash}","schema":"audit/1","action":"forged"}}"#
    );
    rewrite_lines(file, |l| l.insert(4, forged));
    let fault = trail.verify().unwrap_err();
    assert_eq!(
        (fault.kind, fault.seq, fault.line),
        (FaultKind::Inserted, Some(4), Some(5)),
        "{fault}"
    );
}
