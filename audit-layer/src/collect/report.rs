//! [`InstanceReport`]: what the central store holds of one instance's trail.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::verdict::InstanceState;
use crate::event::Timestamp;

/// What a collector stored of one instance's trail, read from the central store
/// ([`PostgresSink::instances`](crate::sink::postgres::PostgresSink::instances)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct InstanceReport {
    /// The instance's trail id.
    pub trail: String,
    /// The highest seq the collector has gone past (stored, or given up on as missing).
    pub last_seq: Option<u64>,
    /// Lines stored.
    pub lines: u64,
    /// Seqs missing from the store: never arrived within the grace time, or refused.
    pub missing: u64,
    /// Lines and checkpoints refused, and gaps given up on; each raised an alert.
    pub faults: u64,
    /// The last of them, in words.
    pub last_fault: Option<String>,
    /// The time of the newest event stored.
    pub last_event_time: Option<Timestamp>,
    /// When a collector last stored anything of the instance.
    pub updated: SystemTime,
    /// How late the newest event was when it was stored: the instance's lag behind the
    /// central store, as of `updated`.
    pub lag: Option<Duration>,
    /// Lines that arrived ahead of a missing one are waiting for it (up to the grace time).
    pub waiting: bool,
    /// The `seq_to` of the last signed checkpoint that verified against the stored lines.
    pub sealed_to: Option<u64>,
    /// Checkpoints that verified.
    pub checkpoints: u64,
    /// The size of the newest Merkle tree head of the instance that verified: each held
    /// the one before it, and ended at a stored line.
    pub tree_size: Option<u64>,
    /// Tree heads that verified.
    pub tree_heads: u64,
}

impl InstanceReport {
    pub(crate) fn new(trail: String, state: InstanceState, updated: SystemTime) -> Self {
        let lag = state
            .last_time
            .and_then(|time| updated.duration_since(time.as_system_time()).ok());
        Self {
            trail,
            last_seq: state.last_seq,
            lines: state.lines,
            missing: state.missing,
            faults: state.faults,
            last_fault: state.last_fault,
            last_event_time: state.last_time,
            updated,
            lag,
            waiting: state.waiting_since.is_some(),
            sealed_to: state.checkpoint.map(|checkpoint| checkpoint.seq_to),
            checkpoints: state.checkpoints,
            tree_size: state.tree.map(|head| head.size),
            tree_heads: state.tree_heads,
        }
    }
}

impl fmt::Display for InstanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |seq: Option<u64>| seq.map_or_else(|| "-".to_owned(), |seq| seq.to_string());
        write!(
            f,
            "{}: last seq {}, {} line(s), {} missing, {} fault(s), sealed to {} ({} checkpoint(s))",
            self.trail,
            seq(self.last_seq),
            self.lines,
            self.missing,
            self.faults,
            seq(self.sealed_to),
            self.checkpoints,
        )?;
        if let Some(size) = self.tree_size {
            write!(f, ", tree of {size} ({} head(s))", self.tree_heads)?;
        }
        if let Some(lag) = self.lag {
            write!(f, ", lag {:.1} s", lag.as_secs_f64())?;
        }
        if self.waiting {
            f.write_str(", waiting for a missing line")?;
        }
        if let Some(fault) = &self.last_fault {
            write!(f, "; last fault: {fault}")?;
        }
        Ok(())
    }
}
