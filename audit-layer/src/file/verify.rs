//! Verification of a file trail.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::chain::{self, ChainKey, GENESIS, parse_line};
use super::checkpoint::{Checkpoint, PublicKey, read_checkpoints};
use super::layout::{self, CHECKPOINTS, TrailFile};
use crate::event::Timestamp;

/// What to verify with.
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// The HMAC key of a keyed chain.
    pub chain_key: Option<ChainKey>,
    /// The public key that signed the checkpoints.
    pub public_key: Option<PublicKey>,
    /// Called with (bytes done, bytes in all) as files are read.
    pub progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
    /// A checkpoint of this trail kept where its writer cannot rewrite it (a
    /// [`CheckpointMirror`](super::CheckpointMirror)'s copy): the trail must still hold what
    /// it covers, unchanged. Its signature is checked with `public_key` when one is given.
    pub against_checkpoint: Option<Checkpoint>,
}

impl fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("chain_key", &self.chain_key)
            .field("public_key", &self.public_key)
            .field("against_checkpoint", &self.against_checkpoint)
            .finish_non_exhaustive()
    }
}

/// What a successful verification covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Trail files read.
    pub files: usize,
    /// Events verified.
    pub events: u64,
    /// The first seq of the trail (above 0 when retention purged the oldest files).
    pub first_seq: Option<u64>,
    /// The last seq of the trail.
    pub last_seq: Option<u64>,
    /// The time of the first event.
    pub first_time: Option<Timestamp>,
    /// The time of the last event.
    pub last_time: Option<Timestamp>,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Whether their signatures were checked against a public key.
    pub signatures_checked: bool,
    /// Events after the last checkpoint, which no signature covers yet.
    pub unsealed: u64,
    /// The time of the first of them.
    pub unsealed_since: Option<Timestamp>,
}

/// The kind of a [`Fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// A line changed.
    Modified,
    /// A line is missing.
    Deleted,
    /// A line was added.
    Inserted,
    /// Lines are out of order.
    Reordered,
    /// The end of the trail is missing.
    Truncated,
    /// A file is missing.
    MissingFile,
    /// A checkpoint's signature is wrong.
    BadCheckpointSignature,
    /// A checkpoint is malformed or inconsistent.
    BadCheckpoint,
    /// The chain key is missing or wrong.
    WrongKey,
    /// A file cannot be read.
    Unreadable,
    /// The trail no longer holds what a checkpoint kept elsewhere covers: its tail was
    /// removed or rewritten, checkpoints included.
    RolledBack,
    /// A copy of the trail holds a line at some seq that is not the trail's: the two
    /// diverged (another trail of the same name, or the trail was rewritten).
    Forked,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Truncated => "truncated",
            Self::MissingFile => "missing file",
            Self::BadCheckpointSignature => "bad checkpoint signature",
            Self::BadCheckpoint => "bad checkpoint",
            Self::WrongKey => "wrong key",
            Self::Unreadable => "unreadable",
            Self::RolledBack => "rolled back",
            Self::Forked => "forked",
        })
    }
}

/// The first problem verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fault {
    /// What kind of problem.
    pub kind: FaultKind,
    /// The file it is in.
    pub file: Option<String>,
    /// The line (1-based) in that file.
    pub line: Option<u64>,
    /// The seq concerned: the one expected at that place.
    pub seq: Option<u64>,
    /// A sentence about it.
    pub detail: String,
}

impl Fault {
    pub(crate) fn new(kind: FaultKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            file: None,
            line: None,
            seq: None,
            detail: detail.into(),
        }
    }

    pub(crate) fn at(mut self, file: &str, line: Option<u64>, seq: Option<u64>) -> Self {
        self.file = Some(file.to_owned());
        self.line = line;
        self.seq = seq;
        self
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(file) = &self.file {
            write!(f, ": {file}")?;
        }
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for Fault {}

/// Verifies the trail in `dir`: the hash chain, the signed checkpoints, and the files.
///
/// [`verify_trail`] reads every file of a trail directory in order and stops at the first
/// [`Fault`], naming its file, line and seq and what kind it is:
///
/// | kind | what was found |
/// |---|---|
/// | `modified` | a line whose hash does not match its content, that does not link to the line before, or that contradicts a signed checkpoint |
/// | `deleted` | a gap in `seq` |
/// | `inserted` | a line that repeats a `seq` already seen, or that does not belong to the chain while the next line continues it |
/// | `reordered` | a line ahead of its place, whose missing predecessor comes later |
/// | `truncated` | the trail ends before the last seq a signed checkpoint covers |
/// | `missing file` | a file that checkpoints name is gone |
/// | `bad checkpoint signature` | a checkpoint whose signature fails, or whose chain of signatures is broken |
/// | `bad checkpoint` | a checkpoint that does not parse or whose ranges do not follow |
/// | `wrong key` | a keyed chain verified without the key, or the other way round |
/// | `unreadable` | a file that cannot be read |
///
/// Without a public key the checkpoints' signatures are not checked, only their consistency
/// with the trail: pass the public key from a place an attacker cannot write.
///
/// Zero bytes after the last line of the last file are skipped: the space a sink with
/// [`preallocate`](crate::file::JsonlFileSinkBuilder::preallocate) zero-filled ahead, which holds
/// no data (lines overwritten with zeros there are a truncation, reported as one when a
/// checkpoint covers them). After any other file's lines, zeros are reported.
///
/// # Example
///
/// ```
/// use audit_layer::file::{FaultKind, VerifyOptions, verify_trail};
///
/// let dir = tempfile::tempdir()?;
/// let damaged = r#"{"seq":0,"prev_hash":"?","hash":"?","schema":"audit/1"}"#;
/// std::fs::write(dir.path().join("audit-2026-11-22.jsonl"), format!("{damaged}\n"))?;
/// let fault = verify_trail(dir.path(), &VerifyOptions::default()).unwrap_err();
/// assert_eq!(fault.kind, FaultKind::Modified);
/// assert_eq!(fault.line, Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify_trail(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, Fault> {
    let unreadable =
        |what: &str, e: std::io::Error| Fault::new(FaultKind::Unreadable, format!("{what}: {e}"));
    if !dir.is_dir() {
        return Err(Fault::new(
            FaultKind::Unreadable,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let checkpoints = read_checkpoints(dir).map_err(|e| {
        Fault::new(FaultKind::BadCheckpoint, e.to_string()).at(CHECKPOINTS, None, None)
    })?;
    check_checkpoints(&checkpoints, options)?;
    if let Some(against) = &options.against_checkpoint {
        check_mirrored(against, options)?;
    }
    let trail_files = layout::list(dir).map_err(|e| unreadable(&dir.display().to_string(), e))?;
    let total_bytes = trail_files
        .iter()
        .map(|f| f.path.metadata().map_or(0, |m| m.len()))
        .sum();

    // Where the chain starts: the genesis, or after retention purged the oldest files, the
    // seq the last checkpoint names, linked to the hash sealed just before it.
    let first_seq = checkpoints.last().map_or(0, |cp| cp.first_seq);
    let start_hash = if first_seq == 0 {
        GENESIS.to_owned()
    } else {
        checkpoints
            .iter()
            .find(|cp| cp.seq_to + 1 == first_seq)
            .map_or_else(String::new, |cp| cp.last_hash.clone())
    };
    let mut walk = Walk {
        against: options.against_checkpoint.as_ref(),
        first_unsealed: checkpoints.last().map_or(0, |cp| cp.seq_to + 1),
        key: options.chain_key.as_ref(),
        sealed: checkpoints.iter().map(|cp| (cp.seq_to, cp)).collect(),
        checkpoints: &checkpoints,
        present: trail_files.iter().map(TrailFile::stem).collect(),
        next_seq: first_seq,
        prev_hash: start_hash,
        prev_prev_hash: String::new(),
        report: VerifyReport {
            files: trail_files.len(),
            checkpoints: checkpoints.len(),
            signatures_checked: options.public_key.is_some(),
            ..VerifyReport::default()
        },
    };
    let mut done = 0;
    for (index, file) in trail_files.iter().enumerate() {
        let bytes = file.read().map_err(|e| unreadable(&file.name(), e))?;
        let later = &trail_files[index + 1..];
        // Only the file being written may end in preallocated zeros: every other one was cut
        // back when it was closed, so zeros there are damage, and reported as such.
        let content = if later.is_empty() && !file.gzipped {
            layout::without_padding(&bytes)
        } else {
            &bytes
        };
        walk.file(file, content, later)?;
        done += file.path.metadata().map_or(0, |m| m.len());
        if let Some(progress) = &options.progress {
            progress(done, total_bytes);
        }
    }
    if options.public_key.is_some() && checkpoints.is_empty() && walk.report.events > 0 {
        return Err(Fault::new(
            FaultKind::BadCheckpoint,
            "no signed checkpoint covers the trail, so it cannot be authenticated",
        )
        .at(CHECKPOINTS, None, None));
    }
    walk.finish(trail_files.last())
}

/// Checks a checkpoint kept elsewhere on its own: what it is, and who signed it.
fn check_mirrored(checkpoint: &Checkpoint, options: &VerifyOptions) -> Result<(), Fault> {
    let fault = |kind, detail: &str| {
        Err(Fault::new(
            kind,
            format!("the checkpoint kept elsewhere: {detail}"),
        ))
    };
    if checkpoint.kind != "checkpoint" {
        return fault(FaultKind::BadCheckpoint, "not a checkpoint");
    }
    if let Some(key) = &options.public_key
        && (checkpoint.key_id != key.key_id() || !checkpoint.verify(key))
    {
        return fault(
            FaultKind::BadCheckpointSignature,
            "its signature does not match the given public key",
        );
    }
    Ok(())
}

/// Checks the checkpoints among themselves: signatures, links, ranges.
fn check_checkpoints(checkpoints: &[Checkpoint], options: &VerifyOptions) -> Result<(), Fault> {
    let algorithm = chain::algorithm(options.chain_key.as_ref());
    let mut previous: Option<&Checkpoint> = None;
    for (index, cp) in checkpoints.iter().enumerate() {
        let fault = |kind, detail: String| {
            Err(Fault::new(kind, detail).at(CHECKPOINTS, Some(index as u64 + 1), Some(cp.seq_to)))
        };
        if cp.kind != "checkpoint" {
            return fault(
                FaultKind::BadCheckpoint,
                format!("unknown record type `{}`", cp.kind),
            );
        }
        if let Some(key) = &options.public_key {
            if cp.key_id != key.key_id() {
                return fault(
                    FaultKind::BadCheckpointSignature,
                    format!(
                        "signed by key {} , not by the given public key {}",
                        cp.key_id,
                        key.key_id()
                    ),
                );
            }
            if !cp.verify(key) {
                return fault(
                    FaultKind::BadCheckpointSignature,
                    "the signature does not match".into(),
                );
            }
        }
        match previous {
            None if cp.prev_signature.is_some() => {
                return fault(
                    FaultKind::BadCheckpointSignature,
                    "the first checkpoint refers to an earlier one that is gone".into(),
                );
            }
            Some(prev) if cp.prev_signature != prev.signature => {
                return fault(
                    FaultKind::BadCheckpointSignature,
                    "does not carry the previous checkpoint's signature".into(),
                );
            }
            Some(prev) if cp.seq_from != prev.seq_to + 1 || cp.seq_to < cp.seq_from => {
                return fault(
                    FaultKind::BadCheckpoint,
                    format!(
                        "covers seq {}..={} after a checkpoint ending at {}",
                        cp.seq_from, cp.seq_to, prev.seq_to
                    ),
                );
            }
            _ => {}
        }
        let key_id = options.chain_key.as_ref().map(ChainKey::id);
        if cp.chain == algorithm && cp.chain_key_id.is_some() && cp.chain_key_id != key_id {
            return fault(
                FaultKind::WrongKey,
                "the chain was written with another key".into(),
            );
        }
        if cp.chain != algorithm {
            let hint = if cp.chain == "hmac-sha256" {
                "the trail's chain is keyed (hmac-sha256): pass its key"
            } else {
                "the trail's chain is not keyed (sha256): verify without a key"
            };
            return fault(FaultKind::WrongKey, hint.into());
        }
        previous = Some(cp);
    }
    Ok(())
}

/// The state of a walk through the trail's lines.
struct Walk<'a> {
    /// A checkpoint kept elsewhere ([`VerifyOptions::against_checkpoint`]).
    against: Option<&'a Checkpoint>,
    /// The seq after the last checkpoint's.
    first_unsealed: u64,
    key: Option<&'a ChainKey>,
    /// Checkpoints by the seq they end at.
    sealed: HashMap<u64, &'a Checkpoint>,
    checkpoints: &'a [Checkpoint],
    /// The stems of the files present.
    present: HashSet<String>,
    next_seq: u64,
    prev_hash: String,
    /// The hash before `prev_hash`: tells an inserted line from the original it copies.
    prev_prev_hash: String,
    report: VerifyReport,
}

impl Walk<'_> {
    fn file(&mut self, file: &TrailFile, bytes: &[u8], later: &[TrailFile]) -> Result<(), Fault> {
        let name = file.name();
        let stem = file.stem();
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        // A file ends with a newline, so the last piece is empty; a non-empty last piece is
        // a line cut short, which fails to parse below.
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut offset: u64 = 0;
        for (index, line) in lines.iter().enumerate() {
            let number = index as u64 + 1;
            let expected = self.next_seq;
            let fault = |kind, seq: u64, detail: &str| {
                Err(Fault::new(kind, detail).at(&name, Some(number), Some(seq)))
            };
            let next = lines.get(index + 1).and_then(|l| parse_line(l));
            let Some(parsed) = parse_line(line) else {
                // Junk the chain goes on around was inserted; a damaged line of the chain
                // still names its place.
                let next_continues = next
                    .as_ref()
                    .is_some_and(|n| n.seq == expected && n.prev_hash == self.prev_hash);
                let appended = next.is_none() && later.is_empty() && !looks_chained(line);
                return if next_continues || appended {
                    fault(
                        FaultKind::Inserted,
                        expected,
                        "a line that is not part of the chain",
                    )
                } else {
                    fault(FaultKind::Modified, expected, "not a chained audit line")
                };
            };
            if parsed.expected_hash(self.key) != parsed.hash {
                return fault(
                    FaultKind::Modified,
                    expected,
                    "its hash does not match its content",
                );
            }
            match parsed.seq.cmp(&expected) {
                Ordering::Equal => {
                    if parsed.prev_hash != self.prev_hash {
                        return fault(
                            FaultKind::Modified,
                            expected,
                            "does not link to the line before it (one of them was rewritten)",
                        );
                    }
                }
                Ordering::Greater => {
                    // This line is early: a copy inserted here (the chain goes on as if it
                    // were not there), lines swapped (what belongs here comes later), or
                    // lines gone.
                    let skipping_continues = next
                        .as_ref()
                        .is_some_and(|n| n.seq == expected && n.prev_hash == self.prev_hash);
                    if skipping_continues
                        && seq_appears_later(parsed.seq, &lines[index + 1..], later)
                    {
                        return fault(FaultKind::Inserted, expected, "a copy of a later line");
                    }
                    if seq_appears_later(expected, &lines[index + 1..], later) {
                        return fault(FaultKind::Reordered, expected, "lines are out of order");
                    }
                    if index == 0
                        && let Some(missing) = self.missing_file(expected)
                    {
                        return Err(missing);
                    }
                    return fault(
                        FaultKind::Deleted,
                        expected,
                        &format!(
                            "seq {expected} is missing: the next line has seq {}",
                            parsed.seq
                        ),
                    );
                }
                Ordering::Less => {
                    // A seq seen before. If it claims the same place as the line before it,
                    // that line was the insertion.
                    if parsed.seq + 1 == expected
                        && parsed.prev_hash == self.prev_prev_hash
                        && index > 0
                    {
                        return Err(Fault::new(
                            FaultKind::Inserted,
                            "a line that claims the place of the next one",
                        )
                        .at(&name, Some(number - 1), Some(parsed.seq)));
                    }
                    return fault(
                        FaultKind::Inserted,
                        expected,
                        "repeats a seq that came before",
                    );
                }
            }
            offset += line.len() as u64 + 1;
            if let Some(against) = self.against
                && against.seq_to == parsed.seq
                && against.last_hash != parsed.hash
            {
                return fault(
                    FaultKind::RolledBack,
                    parsed.seq,
                    &format!(
                        "differs from the checkpoint of {} kept elsewhere (the trail was \
                         rewritten from here)",
                        against.time
                    ),
                );
            }
            if parsed.seq == self.first_unsealed {
                self.report.unsealed_since = time_of(line);
            }
            if let Some(cp) = self.sealed.get(&parsed.seq) {
                if cp.last_hash != parsed.hash {
                    return fault(
                        FaultKind::Modified,
                        parsed.seq,
                        "does not match the signed checkpoint (the trail was rewritten)",
                    );
                }
                // The chain already matched `last_hash`, which covers every line before it.
                if cp.file != stem || cp.file_len != offset {
                    return fault(
                        FaultKind::Modified,
                        parsed.seq,
                        "the file's content does not match the signed checkpoint",
                    );
                }
            }
            if self.report.first_seq.is_none() {
                self.report.first_seq = Some(parsed.seq);
                self.report.first_time = time_of(line);
            }
            self.report.last_seq = Some(parsed.seq);
            self.report.events += 1;
            self.next_seq = parsed.seq + 1;
            self.prev_prev_hash = std::mem::replace(&mut self.prev_hash, parsed.hash.to_owned());
            if index + 1 == lines.len() {
                self.report.last_time = time_of(line);
            }
        }
        Ok(())
    }

    /// The fault of a file that a checkpoint at or after `seq` names and that is gone.
    fn missing_file(&self, seq: u64) -> Option<Fault> {
        let file = self
            .checkpoints
            .iter()
            .filter(|cp| cp.seq_to >= seq)
            .map(|cp| &cp.file)
            .find(|file| !self.present.contains(*file))?;
        Some(
            Fault::new(
                FaultKind::MissingFile,
                format!("{file}, which signed checkpoints name, is gone"),
            )
            .at(file, None, Some(seq)),
        )
    }

    fn finish(mut self, last_file: Option<&TrailFile>) -> Result<VerifyReport, Fault> {
        let next = self.next_seq;
        if let Some(against) = self.against
            && next <= against.seq_to
        {
            let file = last_file.map_or_else(|| "(no trail file)".to_owned(), TrailFile::name);
            return Err(Fault::new(
                FaultKind::RolledBack,
                format!(
                    "the trail ends before seq {}, which the checkpoint of {} kept elsewhere \
                     covers: its tail was removed",
                    against.seq_to, against.time
                ),
            )
            .at(&file, None, Some(next)));
        }
        if let Some(last) = self.checkpoints.last() {
            if next <= last.seq_to {
                if let Some(missing) = self.missing_file(next) {
                    return Err(missing);
                }
                let file = last_file.map_or_else(|| "(no trail file)".to_owned(), TrailFile::name);
                return Err(Fault::new(
                    FaultKind::Truncated,
                    format!(
                        "the trail ends before seq {}, which a signed checkpoint covers",
                        last.seq_to
                    ),
                )
                .at(&file, None, Some(next)));
            }
            self.report.unsealed = next - 1 - last.seq_to;
        } else {
            self.report.unsealed = self.report.events;
        }
        Ok(self.report)
    }
}

/// Whether `seq` is the seq of a line after these, in this file or a later one.
fn seq_appears_later(seq: u64, rest: &[&[u8]], later: &[TrailFile]) -> bool {
    let has_seq = |line: &[u8]| parse_line(line).is_some_and(|p| p.seq == seq);
    rest.iter().any(|line| has_seq(line))
        || later.iter().any(|file| {
            file.read()
                .is_ok_and(|bytes| bytes.split(|b| *b == b'\n').any(has_seq))
        })
}

/// Whether a line that does not parse still has the shape of a chained line (one changed
/// byte can break one of these marks, not all of them).
fn looks_chained(line: &[u8]) -> bool {
    let marks: [&[u8]; 3] = [b"\"prev_hash\":\"", b"\",\"hash\":\"", b"\"schema\":\""];
    marks
        .iter()
        .any(|mark| line.windows(mark.len()).any(|w| w == *mark))
}

/// The `time` field of a line, if it parses.
fn time_of(line: &[u8]) -> Option<Timestamp> {
    #[derive(serde::Deserialize)]
    struct Time {
        time: Timestamp,
    }
    serde_json::from_slice::<Time>(line).ok().map(|t| t.time)
}
