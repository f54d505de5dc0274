//! What the collector does with what arrived for one instance, given what the central store
//! holds: store it, drop it as a duplicate, wait for the lines before it, or refuse it and
//! say why. No I/O here: the store reads the state before and writes it after, under one
//! lock per instance, so that collectors running side by side decide in turn.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::Timestamp;
use crate::file::chain::parse_line;
use crate::file::{ChainKey, Checkpoint, Fault, FaultKind, GENESIS, PublicKey};

/// What the central store knows of one instance's trail (kept as JSON in the store).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct InstanceState {
    /// The highest seq stored, and its hash: where the chain goes on from.
    pub(crate) last_seq: Option<u64>,
    pub(crate) last_hash: Option<String>,
    /// Lines stored.
    pub(crate) lines: u64,
    /// Seqs given up on: never arrived within the grace time, or refused.
    pub(crate) missing: u64,
    /// Lines or checkpoints refused.
    pub(crate) faults: u64,
    /// The last refusal, in words.
    pub(crate) last_fault: Option<String>,
    /// The time of the newest event stored.
    pub(crate) last_time: Option<Timestamp>,
    /// Since when lines ahead of the store have been waiting for the ones before them.
    pub(crate) waiting_since: Option<Timestamp>,
    /// The last checkpoint that verified, and how many have.
    pub(crate) checkpoint: Option<Checkpoint>,
    pub(crate) checkpoints: u64,
    /// The newest Merkle tree head of the instance that verified, and how many have.
    pub(crate) tree: Option<super::tree::HeldHead>,
    pub(crate) tree_heads: u64,
}

/// One line that arrived: its seq and hash as the message files them, and the line.
#[derive(Clone, Debug)]
pub(crate) struct ArrivedLine {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) json: String,
}

/// What to do with each arrival, by its index among the lines or the checkpoints. What is
/// neither stored nor left for later is done with: a duplicate, or refused.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    /// Lines to store, in seq order.
    pub(crate) store: Vec<usize>,
    /// Checkpoints to store, in order.
    pub(crate) store_checkpoints: Vec<usize>,
    /// Lines that must wait: ahead of a gap that may still close.
    pub(crate) later: Vec<usize>,
    /// Checkpoints that must wait: they cover lines not stored yet.
    pub(crate) later_checkpoints: Vec<usize>,
    /// What was refused or given up on; each is an alert.
    pub(crate) faults: Vec<Fault>,
}

/// The collector's settings that decisions depend on.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    pub(crate) chain_key: Option<ChainKey>,
    /// Keys that sign the instances' checkpoints; empty: signatures are not checked.
    pub(crate) public_keys: Vec<PublicKey>,
    /// How long lines wait for a missing one before it is given up as a gap.
    pub(crate) gap_grace: Duration,
}

/// Decides what to do with `lines` and `checkpoints` that arrived for `trail`, given what the
/// store holds (`state`, and `stored`: the hash the store keeps for each seq at or below
/// its last one that arrived again), and updates `state` as if the decision were carried out.
pub(crate) fn decide(
    trail: &str,
    state: &mut InstanceState,
    lines: &[ArrivedLine],
    checkpoints: &[Checkpoint],
    stored: &HashMap<u64, String>,
    rules: &Rules,
    now: Timestamp,
) -> Decision {
    let mut decision = Decision::default();
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by_key(|&index| lines[index].seq);
    let fault = |kind, seq, detail: String| Fault::new(kind, detail).at(trail, None, Some(seq));
    let mut last_seq_in_batch = None;
    for index in order {
        let line = &lines[index];
        if last_seq_in_batch == Some(line.seq) {
            // The same seq twice in one batch (a redelivery): the first one decides.
            continue;
        }
        last_seq_in_batch = Some(line.seq);
        let own = check_own(trail, line, rules.chain_key.as_ref());
        match state.last_seq {
            Some(last) if line.seq <= last => {
                match (stored.get(&line.seq), own) {
                    // An altered copy of a stored line, its claimed hash left as it was.
                    (_, Err(detail)) => {
                        decision
                            .faults
                            .push(fault(FaultKind::Modified, line.seq, detail));
                    }
                    (Some(hash), Ok(_)) if *hash == line.hash => {}
                    (Some(_), _) => decision.faults.push(fault(
                        FaultKind::Forked,
                        line.seq,
                        format!(
                            "seq {} arrived again with another hash: the instance's trail was \
                             rewritten, or another trail uses its id",
                            line.seq
                        ),
                    )),
                    // A seq given up on arrives at last: it fills its hole.
                    (None, Ok(_)) => {
                        state.missing = state.missing.saturating_sub(1);
                        state.lines += 1;
                        decision.store.push(index);
                    }
                }
                continue;
            }
            _ => {}
        }
        let expected = state.last_seq.map_or(0, |last| last + 1);
        if line.seq > expected {
            let waited = state
                .waiting_since
                .map(|since| now.unix_micros().saturating_sub(since.unix_micros()));
            match waited {
                Some(waited) if waited >= rules.gap_grace.as_micros() as u64 => {
                    decision.faults.push(fault(
                        FaultKind::Deleted,
                        expected,
                        format!(
                            "seq {expected}..={} never arrived within {}",
                            line.seq - 1,
                            humantime::format_duration(rules.gap_grace)
                        ),
                    ));
                    state.missing += line.seq - expected;
                }
                _ => {
                    state.waiting_since.get_or_insert(now);
                    decision.later.push(index);
                    continue;
                }
            }
        }
        let linked = line.seq > expected
            || match &state.last_hash {
                Some(hash) => own.as_deref().is_ok_and(|prev| prev == hash),
                None => own.as_deref().is_ok_and(|prev| prev == GENESIS),
            };
        match own {
            Err(detail) => {
                decision
                    .faults
                    .push(fault(FaultKind::Modified, line.seq, detail));
                state.missing += 1;
            }
            Ok(_) if !linked => {
                decision.faults.push(fault(
                    FaultKind::Forked,
                    line.seq,
                    format!(
                        "seq {} does not link to seq {}: a line between them was replaced, \
                         or the instance's trail was rewritten",
                        line.seq,
                        line.seq.wrapping_sub(1)
                    ),
                ));
                state.missing += 1;
            }
            Ok(_) => {
                state.lines += 1;
                if let Some(time) = event_time(&line.json) {
                    state.last_time = Some(time);
                }
                decision.store.push(index);
            }
        }
        // Refused or not, the chain goes on from the hash the line claims: the next line
        // links to it, so one altered line costs one hole, not the rest of the trail.
        state.last_seq = Some(line.seq);
        state.last_hash = Some(line.hash.clone());
        state.waiting_since = None;
    }
    if !decision.faults.is_empty() {
        state.faults += decision.faults.len() as u64;
    }
    for (index, checkpoint) in checkpoints.iter().enumerate() {
        match check_checkpoint(trail, state, checkpoint, stored, rules) {
            CheckpointVerdict::Store => {
                state.checkpoint = Some(checkpoint.clone());
                state.checkpoints += 1;
                decision.store_checkpoints.push(index);
            }
            CheckpointVerdict::Known => {}
            CheckpointVerdict::Later => decision.later_checkpoints.push(index),
            CheckpointVerdict::Refuse(kind, detail) => {
                decision.faults.push(fault(kind, checkpoint.seq_to, detail));
                state.faults += 1;
            }
        }
    }
    if let Some(last) = decision.faults.last() {
        state.last_fault = Some(match last.seq {
            Some(seq) => format!("{} at seq {seq}: {}", last.kind, last.detail),
            None => format!("{}: {}", last.kind, last.detail),
        });
    }
    decision
}

/// A line checked on its own: its fields match its message's, its hash its content, and
/// it names this trail. Gives the hash it links to.
pub(super) fn check_own(
    trail: &str,
    line: &ArrivedLine,
    key: Option<&ChainKey>,
) -> Result<String, String> {
    let parsed =
        parse_line(line.json.as_bytes()).ok_or_else(|| "it is not a line of a trail".to_owned())?;
    if parsed.seq != line.seq || parsed.hash != line.hash {
        return Err("the line's own seq or hash is not the one its message carries".to_owned());
    }
    if parsed.expected_hash(key) != parsed.hash {
        return Err(format!(
            "its hash does not match its content: the line was altered{}",
            if key.is_none() {
                " (or its chain is keyed, and the collector has no key)"
            } else {
                ""
            }
        ));
    }
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow, default)]
        trail: Option<&'a str>,
    }
    match serde_json::from_str::<Named<'_>>(&line.json) {
        Ok(Named { trail: Some(named) }) if named != trail => Err(format!(
            "the line belongs to trail `{named}`, not `{trail}`"
        )),
        _ => Ok(parsed.prev_hash.to_owned()),
    }
}

fn event_time(json: &str) -> Option<Timestamp> {
    #[derive(Deserialize)]
    struct Timed {
        time: Timestamp,
    }
    serde_json::from_str::<Timed>(json).ok().map(|t| t.time)
}

enum CheckpointVerdict {
    Store,
    /// Already stored.
    Known,
    /// Covers lines not stored yet.
    Later,
    Refuse(FaultKind, String),
}

fn check_checkpoint(
    trail: &str,
    state: &InstanceState,
    checkpoint: &Checkpoint,
    stored: &HashMap<u64, String>,
    rules: &Rules,
) -> CheckpointVerdict {
    use CheckpointVerdict::{Known, Later, Refuse, Store};
    let seq_to = checkpoint.seq_to;
    if checkpoint
        .trail
        .as_deref()
        .is_some_and(|named| named != trail)
    {
        return Refuse(
            FaultKind::BadCheckpoint,
            format!("the checkpoint of seq {seq_to} belongs to another trail"),
        );
    }
    if !rules.public_keys.is_empty()
        && !rules
            .public_keys
            .iter()
            .any(|key| key.key_id() == checkpoint.key_id && checkpoint.verify(key))
    {
        return Refuse(
            FaultKind::BadCheckpointSignature,
            format!(
                "the checkpoint of seq {seq_to} is not signed by any of the collector's keys \
                 (key id {})",
                checkpoint.key_id
            ),
        );
    }
    if let Some(last) = &state.checkpoint {
        if seq_to <= last.seq_to {
            return Known;
        }
        if checkpoint.seq_from == last.seq_to + 1 && checkpoint.prev_signature != last.signature {
            return Refuse(
                FaultKind::BadCheckpoint,
                format!(
                    "the checkpoint of seq {seq_to} does not follow the one of seq {}",
                    last.seq_to
                ),
            );
        }
    }
    if state.last_seq.is_none_or(|last| seq_to > last) {
        return Later;
    }
    let stored_hash = if state.last_seq == Some(seq_to) {
        state.last_hash.as_ref()
    } else {
        stored.get(&seq_to)
    };
    match stored_hash {
        Some(hash) if *hash != checkpoint.last_hash => Refuse(
            FaultKind::Modified,
            format!("seq {seq_to} is not the line its signed checkpoint covers"),
        ),
        _ => Store,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::file::chain::append_line;
    use crate::file::{CheckpointKey, LinkHash};

    const TRAIL: &str = "web-1";

    /// `count` chained lines of `trail`, from seq 0.
    pub(in crate::collect) fn lines(trail: &str, count: u64) -> Vec<ArrivedLine> {
        let mut prev = LinkHash::GENESIS;
        (0..count)
            .map(|seq| {
                let mut out = Vec::new();
                prev = append_line(&mut out, None, seq, &prev, |out| {
                    out.extend_from_slice(
                        format!(
                            "\"trail\":\"{trail}\",\"schema\":\"audit/1\",\
                             \"time\":\"2026-12-03T10:00:{:02}.000000Z\"}}",
                            seq % 60
                        )
                        .as_bytes(),
                    );
                    Ok::<_, ()>(())
                })
                .unwrap();
                out.pop();
                ArrivedLine {
                    seq,
                    hash: prev.to_string(),
                    json: String::from_utf8(out).unwrap(),
                }
            })
            .collect()
    }

    pub(in crate::collect) fn rules(keys: Vec<PublicKey>) -> Rules {
        Rules {
            chain_key: None,
            public_keys: keys,
            gap_grace: Duration::from_secs(30),
        }
    }

    fn at(seconds: u64) -> Timestamp {
        Timestamp::from_unix_micros(seconds * 1_000_000)
    }

    fn take(state: &mut InstanceState, lines: &[ArrivedLine], now: Timestamp) -> Decision {
        decide(
            TRAIL,
            state,
            lines,
            &[],
            &HashMap::new(),
            &rules(Vec::new()),
            now,
        )
    }

    fn seqs(lines: &[ArrivedLine], indexes: &[usize]) -> Vec<u64> {
        indexes.iter().map(|&index| lines[index].seq).collect()
    }

    #[test]
    fn lines_in_any_order_are_stored_in_seq_order_and_once() {
        let all = lines(TRAIL, 6);
        let mut state = InstanceState::default();
        let batch = [&all[2], &all[0], &all[1]].map(|line| ArrivedLine {
            seq: line.seq,
            hash: line.hash.clone(),
            json: line.json.clone(),
        });
        let decision = take(&mut state, &batch, at(0));
        assert_eq!(seqs(&batch, &decision.store), [0, 1, 2]);
        assert!(decision.faults.is_empty() && decision.later.is_empty());
        assert_eq!((state.last_seq, state.lines), (Some(2), 3));
        // A redelivery of stored lines: nothing stored twice.
        let stored = HashMap::from([(1, all[1].hash.clone()), (2, all[2].hash.clone())]);
        let decision = decide(
            TRAIL,
            &mut state,
            &all[1..4],
            &[],
            &stored,
            &rules(vec![]),
            at(1),
        );
        assert_eq!(seqs(&all[1..4], &decision.store), [3]);
        assert!(decision.faults.is_empty());
    }

    #[test]
    fn lines_after_a_gap_wait_for_the_grace_time_then_the_gap_is_named() {
        let all = lines(TRAIL, 6);
        let mut state = InstanceState::default();
        take(&mut state, &all[..2], at(0));
        let decision = take(&mut state, &all[4..], at(1));
        assert_eq!(decision.later, [0, 1], "seq 2 and 3 may still come");
        assert!(decision.store.is_empty() && decision.faults.is_empty());
        // They come: everything goes on.
        let decision = take(&mut state, &all[2..], at(2));
        assert_eq!(seqs(&all[2..], &decision.store), [2, 3, 4, 5]);
        assert!(state.waiting_since.is_none());

        let mut state = InstanceState::default();
        take(&mut state, &all[..2], at(0));
        take(&mut state, &all[4..], at(1));
        let decision = take(&mut state, &all[4..], at(40));
        assert_eq!(seqs(&all[4..], &decision.store), [4, 5]);
        assert_eq!(decision.faults.len(), 1);
        assert_eq!(decision.faults[0].kind, FaultKind::Deleted);
        assert_eq!(decision.faults[0].seq, Some(2));
        assert_eq!((state.missing, state.faults), (2, 1));
    }

    #[test]
    fn an_altered_line_is_refused_and_costs_one_hole() {
        let mut all = lines(TRAIL, 4);
        all[1].json = all[1].json.replace("audit/1", "audit/2");
        let mut state = InstanceState::default();
        let decision = take(&mut state, &all, at(0));
        assert_eq!(seqs(&all, &decision.store), [0, 2, 3]);
        assert_eq!(decision.faults.len(), 1);
        assert_eq!(decision.faults[0].kind, FaultKind::Modified);
        assert_eq!(decision.faults[0].seq, Some(1));
        assert_eq!((state.missing, state.faults, state.lines), (1, 1, 3));

        // An altered copy of a stored line, claiming the stored line's hash: refused, and
        // the stored line stands.
        let mut forged = all[2].clone();
        forged.json = forged.json.replace("audit/1", "audit/2");
        let stored = HashMap::from([(2, all[2].hash.clone())]);
        let decision = decide(
            TRAIL,
            &mut state,
            &[forged],
            &[],
            &stored,
            &rules(vec![]),
            at(1),
        );
        assert!(decision.store.is_empty());
        assert_eq!(decision.faults.len(), 1);
        assert_eq!(decision.faults[0].kind, FaultKind::Modified);
        assert_eq!((state.faults, state.lines), (2, 3));
    }

    #[test]
    fn a_line_of_another_trail_or_a_rewritten_chain_is_refused() {
        let other = lines("web-2", 2);
        let mut state = InstanceState::default();
        let decision = take(&mut state, &other, at(0));
        assert!(decision.store.is_empty());
        assert!(
            decision.faults[0]
                .detail
                .contains("belongs to trail `web-2`")
        );

        // A line that verifies on its own but does not link to the stored one.
        let all = lines(TRAIL, 3);
        // A line of `seq` that verifies on its own, linked to the genesis.
        let lone = |seq: u64| {
            let mut out = Vec::new();
            let hash = append_line(&mut out, None, seq, &LinkHash::GENESIS, |out| {
                out.extend_from_slice(b"\"trail\":\"web-1\",\"schema\":\"audit/1\"}");
                Ok::<_, ()>(())
            })
            .unwrap();
            out.pop();
            ArrivedLine {
                seq,
                hash: hash.to_string(),
                json: String::from_utf8(out).unwrap(),
            }
        };
        let mut state = InstanceState::default();
        take(&mut state, &all[..2], at(0));
        let decision = take(&mut state, &[lone(2)], at(1));
        assert!(decision.store.is_empty());
        assert_eq!(decision.faults[0].kind, FaultKind::Forked);
        // The same seq again, verifying on its own, with another hash than the one stored.
        let stored = HashMap::from([(1, all[1].hash.clone())]);
        let decision = decide(
            TRAIL,
            &mut state,
            &[lone(1)],
            &[],
            &stored,
            &rules(vec![]),
            at(2),
        );
        assert_eq!(decision.faults[0].kind, FaultKind::Forked);
    }

    fn signed(key: &CheckpointKey, line: &ArrivedLine, prev: Option<&Checkpoint>) -> Checkpoint {
        let mut checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
            "type": "checkpoint", "seq_from": prev.map_or(0, |p| p.seq_to + 1),
            "seq_to": line.seq, "last_hash": line.hash, "file": "f", "file_len": 1,
            "time": at(0), "chain": "sha256", "trail": TRAIL, "key_id": "",
            "prev_signature": prev.and_then(|p| p.signature.clone()),
        }))
        .unwrap();
        key.sign(&mut checkpoint);
        checkpoint
    }

    #[test]
    fn checkpoints_are_checked_against_their_key_the_stored_lines_and_the_one_before() {
        let key = CheckpointKey::generate().unwrap();
        let all = lines(TRAIL, 6);
        let first = signed(&key, &all[2], None);
        let second = signed(&key, &all[5], Some(&first));
        let rules = rules(vec![key.public_key()]);
        let mut state = InstanceState::default();
        // The checkpoint arrives before its lines: it waits.
        let checkpoints = [first.clone(), second.clone()];
        let decision = decide(
            TRAIL,
            &mut state,
            &all[..3],
            &checkpoints,
            &HashMap::new(),
            &rules,
            at(0),
        );
        assert_eq!(decision.store_checkpoints, [0]);
        assert_eq!(decision.later_checkpoints, [1]);
        let decision = decide(
            TRAIL,
            &mut state,
            &all[3..],
            &checkpoints[1..],
            &HashMap::new(),
            &rules,
            at(1),
        );
        assert_eq!(decision.store_checkpoints, [0]);
        assert_eq!(
            (
                state.checkpoints,
                state.checkpoint.as_ref().map(|c| c.seq_to)
            ),
            (2, Some(5))
        );

        // Another key, and a checkpoint that does not cover the stored line.
        let mut state = InstanceState::default();
        let stranger = signed(&CheckpointKey::generate().unwrap(), &all[2], None);
        let wrong_hash = {
            let mut line = ArrivedLine {
                seq: 2,
                hash: all[1].hash.clone(),
                json: String::new(),
            };
            line.json.clear();
            signed(&key, &line, None)
        };
        let decision = decide(
            TRAIL,
            &mut state,
            &all[..3],
            &[stranger, wrong_hash],
            &HashMap::new(),
            &rules,
            at(0),
        );
        let kinds: Vec<_> = decision.faults.iter().map(|fault| fault.kind).collect();
        assert_eq!(
            kinds,
            [FaultKind::BadCheckpointSignature, FaultKind::Modified]
        );
        assert!(decision.store_checkpoints.is_empty());
    }
}
