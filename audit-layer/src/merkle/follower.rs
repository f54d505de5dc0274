//! The tree as a follower of the trail: it adds each line as a leaf, and at each of the
//! trail's signed checkpoints signs the tree's head at the same line.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::TreeHead;
use super::files::{MERKLE_DIR, TreeFiles};
#[cfg(feature = "siem")]
use super::note::NoteVerifier;
use crate::file::{Checkpoint, CheckpointKey, TrailLine};
use crate::follow::{Cursor, Follower};
use crate::sink::{BoxFuture, SinkError};

/// The signed tree heads, one JSON object a line, in the tree's folder.
const SIGNED_HEADS: &str = "checkpoints.jsonl";
/// The witnesses' cosignatures of those heads, one JSON object a line.
pub(super) const COSIGNATURES: &str = "cosignatures.jsonl";
/// Time-stamping authorities' RFC 3161 tokens of those heads, one JSON object a line.
pub(super) const TIMESTAMPS: &str = "timestamps.jsonl";

/// Keeps the trail's Merkle tree in `DIR/merkle/` ([`TreeFiles`]) as a follower, on a
/// thread of its own, and signs the tree's head (a C2SP checkpoint: origin, size, root)
/// with the trail's checkpoint key at each of the trail's checkpoints, covering the same
/// lines. The heads are kept in `DIR/merkle/checkpoints.jsonl` ([`signed_heads`]).
///
/// Kept off the trail's writer: a leaf hash reads the whole line again (about 0.6 µs for
/// a line of 640 bytes, most of what the writer spends on an event).
///
/// With the feature `siem`, [`TreeFollowerBuilder::witness`] sends each new head to
/// witnesses over HTTP (C2SP `tlog-witness`) and keeps their cosignatures
/// ([`cosignatures_of`]), which receipts carry: then whoever holds the directory and the
/// key cannot roll the trail back without the witnesses refusing. With `timestamp` too,
/// [`TreeFollowerBuilder::timestamps`] has each new head stamped by an RFC 3161
/// time-stamping authority ([`timestamps_of`]).
///
/// ```
/// use audit_layer::AuditTrail;
/// use audit_layer::file::{CheckpointKey, JsonlFileSink};
/// use audit_layer::merkle::TreeFollower;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let key = CheckpointKey::generate()?;
/// let audit = AuditTrail::builder()
///     .sink(JsonlFileSink::builder(dir.path()).signing_key(key.clone()).build())
///     .follower(TreeFollower::new("audit.example.com/orders", key)?)
///     .build()?;
/// # drop(audit);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TreeFollower {
    origin: String,
    key: CheckpointKey,
    /// The tree and its folder, once started.
    opened: Option<(PathBuf, TreeFiles)>,
    #[cfg(feature = "siem")]
    witnesses: Vec<super::witnessing::Witnessed>,
    #[cfg(all(feature = "siem", feature = "timestamp"))]
    stampers: Vec<super::timestamping::Stamper>,
}

/// The settings of a [`TreeFollower`], checked by [`build`](Self::build).
#[derive(Debug)]
#[must_use = "a builder does nothing until `build()`"]
pub struct TreeFollowerBuilder {
    origin: String,
    key: CheckpointKey,
    #[cfg(feature = "siem")]
    witnesses: Vec<(String, NoteVerifier)>,
    #[cfg(all(feature = "siem", feature = "timestamp"))]
    stampers: Vec<(String, super::TimestampAuthority)>,
}

impl TreeFollowerBuilder {
    /// Sends each new tree head to the witness at `url` (its `add-checkpoint` endpoint, as
    /// `https://witness.example.net/add-checkpoint`), whose cosignatures `witness` checks.
    #[cfg(feature = "siem")]
    pub fn witness(mut self, url: &str, witness: NoteVerifier) -> Self {
        self.witnesses.push((url.to_owned(), witness));
        self
    }

    /// Has each new tree head stamped by the RFC 3161 time-stamping authority at `url`,
    /// whose tokens are checked against `authority`'s certificate before they are kept.
    #[cfg(all(feature = "siem", feature = "timestamp"))]
    pub fn timestamps(mut self, url: &str, authority: super::TimestampAuthority) -> Self {
        self.stampers.push((url.to_owned(), authority));
        self
    }

    /// The follower, or what is wrong with its settings.
    pub fn build(self) -> Result<TreeFollower, crate::ConfigError> {
        let invalid = |reason: String| crate::ConfigError::Sink {
            sink: "merkle",
            reason,
        };
        // The origin names the signing key: the same rules.
        TreeHead {
            origin: self.origin.clone(),
            size: 0,
            root: super::empty_root(),
        }
        .sign(&self.key)
        .map_err(|e| invalid(format!("origin: {e}")))?;
        #[cfg(feature = "siem")]
        let witnesses = self
            .witnesses
            .into_iter()
            .map(|(url, witness)| super::witnessing::Witnessed::new(&url, witness))
            .collect::<Result<Vec<_>, String>>()
            .map_err(invalid)?;
        #[cfg(all(feature = "siem", feature = "timestamp"))]
        let stampers = self
            .stampers
            .into_iter()
            .map(|(url, authority)| super::timestamping::Stamper::new(&url, authority))
            .collect::<Result<Vec<_>, String>>()
            .map_err(invalid)?;
        Ok(TreeFollower {
            origin: self.origin,
            key: self.key,
            opened: None,
            #[cfg(feature = "siem")]
            witnesses,
            #[cfg(all(feature = "siem", feature = "timestamp"))]
            stampers,
        })
    }
}

/// A tree head signed at one of the trail's checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SignedHead {
    /// The last line it covers, as the trail's checkpoint.
    pub seq_to: u64,
    /// The tree's size at that line.
    pub size: u64,
    /// The signed note: the [`TreeHead`]'s text and the log's signature.
    pub note: String,
}

impl TreeFollower {
    /// A follower that signs the tree's heads as the log `origin` (a name without spaces,
    /// such as `audit.example.com/orders`: verifiers know the log by it) with `key`, the
    /// trail's checkpoint key.
    pub fn new(origin: &str, key: CheckpointKey) -> Result<Self, crate::ConfigError> {
        Self::builder(origin, key).build()
    }

    /// The same, with settings: witnesses, time-stamping authorities.
    pub fn builder(origin: &str, key: CheckpointKey) -> TreeFollowerBuilder {
        TreeFollowerBuilder {
            origin: origin.to_owned(),
            key,
            #[cfg(feature = "siem")]
            witnesses: Vec::new(),
            #[cfg(all(feature = "siem", feature = "timestamp"))]
            stampers: Vec::new(),
        }
    }

    fn opened(&mut self) -> Result<(&Path, &mut TreeFiles), SinkError> {
        self.opened
            .as_mut()
            .map(|(dir, files)| (dir.as_path(), files))
            .ok_or_else(|| SinkError::new("merkle: not started"))
    }
}

/// The newest tree head signed for the trail in `trail_dir`, read from the end of the
/// file: as quick with a million heads as with one.
pub fn newest_signed_head(trail_dir: &Path) -> io::Result<Option<SignedHead>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let path = trail_dir.join(MERKLE_DIR).join(SIGNED_HEADS);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // A head is a few hundred bytes; the last 64 KiB hold the newest whole.
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(1 << 16)))?;
    let mut tail = String::new();
    file.read_to_string(&mut tail)?;
    tail.lines()
        .rev()
        .find(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .map_err(|e| io::Error::other(format!("{}: line not read: {e}", path.display())))
        })
        .transpose()
}

/// A witness's cosignature of a signed head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeadCosignature {
    /// The head's size.
    pub size: u64,
    /// The witness's name.
    pub witness: String,
    /// The cosignature line, to add to the head's note.
    pub line: String,
}

/// A time-stamping authority's RFC 3161 token of a signed head's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeadTimestamp {
    /// The head's size.
    pub size: u64,
    /// The authority's certificate subject.
    pub authority: String,
    /// The `TimeStampToken`, DER in base64.
    pub token: String,
}

/// The tree heads signed so far for the trail in `trail_dir`, oldest first.
pub fn signed_heads(trail_dir: &Path) -> io::Result<Vec<SignedHead>> {
    read_lines(&trail_dir.join(MERKLE_DIR).join(SIGNED_HEADS))
}

/// The witnesses' cosignatures of the head of `size` (see [`TreeFollowerBuilder::witness`]).
pub fn cosignatures_of(trail_dir: &Path, size: u64) -> io::Result<Vec<HeadCosignature>> {
    records_of(
        &trail_dir.join(MERKLE_DIR).join(COSIGNATURES),
        size,
        |c: &HeadCosignature| c.size,
    )
}

/// A signed head's note with the witnesses' cosignatures of it added, as more signature
/// lines: what receipts and consistency proofs carry.
pub(super) fn cosigned_note(trail_dir: &Path, head: &SignedHead) -> io::Result<String> {
    let mut note = head.note.clone();
    for cosigned in cosignatures_of(trail_dir, head.size)? {
        note.push_str(&cosigned.line);
    }
    Ok(note)
}

/// The time-stamping authorities' tokens of the head of `size` (see
/// `TreeFollowerBuilder::timestamps`, with the features `siem` and `timestamp`).
pub fn timestamps_of(trail_dir: &Path, size: u64) -> io::Result<Vec<HeadTimestamp>> {
    records_of(
        &trail_dir.join(MERKLE_DIR).join(TIMESTAMPS),
        size,
        |t: &HeadTimestamp| t.size,
    )
}

/// The records of one head's `size` in a file of records appended head by head, in file
/// order: read from the end back to the first record of a smaller head, so that a receipt
/// of a recent head reads a few kilobytes of a file of millions of heads.
fn records_of<T: serde::de::DeserializeOwned>(
    path: &Path,
    size: u64,
    size_of: impl Fn(&T) -> u64,
) -> io::Result<Vec<T>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const CHUNK: u64 = 1 << 16;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let unreadable =
        |e: serde_json::Error| io::Error::other(format!("{}: line not read: {e}", path.display()));
    let mut found = Vec::new();
    // `end` is where the unread part ends; `partial` the start of a line cut by a chunk.
    let mut end = file.metadata()?.len();
    let mut partial = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut chunk = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&partial);
        // The first line may be cut, unless the chunk starts the file.
        let whole_from = if start == 0 {
            0
        } else {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None => {
                    partial = chunk;
                    end = start;
                    continue;
                }
            }
        };
        for line in chunk[whole_from..].split(|&b| b == b'\n').rev() {
            if line.is_empty() {
                continue;
            }
            let record: T = serde_json::from_slice(line).map_err(unreadable)?;
            match size_of(&record).cmp(&size) {
                std::cmp::Ordering::Less => {
                    found.reverse();
                    return Ok(found);
                }
                std::cmp::Ordering::Equal => found.push(record),
                std::cmp::Ordering::Greater => {}
            }
        }
        partial = chunk[..whole_from].to_vec();
        end = start;
    }
    found.reverse();
    Ok(found)
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .map_err(|e| io::Error::other(format!("{}: line not read: {e}", path.display())))
        })
        .collect()
}

/// Appends JSON lines to `path`, synced.
pub(super) fn append_lines(path: &Path, lines: &[u8]) -> Result<(), SinkError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SinkError::new(format!("{}: {e}", path.display())))?;
    file.write_all(lines)
        .and_then(|()| file.sync_data())
        .map_err(|e| SinkError::new(format!("{}: {e}", path.display())))
}

impl Follower for TreeFollower {
    fn name(&self) -> &str {
        "merkle"
    }

    fn start(&mut self, trail_dir: &Path) -> Result<(), SinkError> {
        let files = TreeFiles::open(trail_dir).map_err(SinkError::new)?;
        self.opened = Some((trail_dir.to_path_buf(), files));
        Ok(())
    }

    fn cursor<'a>(&'a mut self, trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move {
            let (dir, files) = self.opened()?;
            Ok(match files.cursor() {
                Some((held, seq, hash)) if held == trail => Cursor::after(seq, hash),
                Some((held, ..)) => {
                    return Err(SinkError::new(format!(
                        "{}: holds the tree of trail {held}, not {trail}: move it away to \
                         make this trail's",
                        dir.join(MERKLE_DIR).display()
                    )));
                }
                None => Cursor::empty(),
            })
        })
    }

    fn ship<'a>(
        &'a mut self,
        trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let (_, files) = self.opened()?;
            files.append(trail, lines).map_err(SinkError::new)
        })
    }

    fn takes_checkpoints(&self) -> bool {
        true
    }

    fn checkpoint_cursor<'a>(
        &'a mut self,
        _trail: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, SinkError>> {
        Box::pin(async move {
            let (dir, _) = self.opened()?;
            let heads = signed_heads(dir).map_err(SinkError::new)?;
            Ok(heads.last().map(|head| head.seq_to))
        })
    }

    fn ship_checkpoints<'a>(
        &'a mut self,
        _trail: &'a str,
        checkpoints: &'a [Checkpoint],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let origin = self.origin.clone();
            let key = self.key.clone();
            let (dir, files) = self.opened()?;
            let mut lines = Vec::new();
            let mut newest = None;
            for checkpoint in checkpoints {
                // Lines before the tree's first (deleted before it was made) are not in it.
                let Some(index) = files.leaf_index(checkpoint.seq_to) else {
                    continue;
                };
                let size = index + 1;
                let head = TreeHead {
                    origin: origin.clone(),
                    size,
                    root: files.root_at(size).map_err(SinkError::new)?,
                };
                let signed = SignedHead {
                    seq_to: checkpoint.seq_to,
                    size,
                    note: head.sign(&key).map_err(SinkError::new)?,
                };
                let mut line = serde_json::to_vec(&signed).map_err(SinkError::new)?;
                line.push(b'\n');
                lines.extend_from_slice(&line);
                newest = Some(signed);
            }
            let Some(newest) = newest else {
                return Ok(());
            };
            append_lines(&dir.join(MERKLE_DIR).join(SIGNED_HEADS), &lines)?;
            #[cfg(feature = "siem")]
            {
                let dir = dir.to_path_buf();
                super::witnessing::send(&mut self.witnesses, &dir, &newest).await;
                #[cfg(feature = "timestamp")]
                super::timestamping::stamp(&self.stampers, &dir, &newest).await;
            }
            #[cfg(not(feature = "siem"))]
            let _ = newest;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_size_are_read_back_from_the_end_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut all = Vec::new();
        let mut text = String::new();
        // Lines of uneven length (some longer than a chunk), sizes growing, a few per size.
        for size in 1..=300u64 {
            for n in 0..(size % 4) {
                let record = HeadCosignature {
                    size,
                    witness: format!("w{n}"),
                    line: "x".repeat(((size * 7919 + n * 104_729) % 90_000) as usize),
                };
                text.push_str(&serde_json::to_string(&record).unwrap());
                text.push('\n');
                all.push(record);
            }
        }
        std::fs::write(&path, text).unwrap();
        for size in [0, 1, 2, 3, 150, 151, 299, 300, 301] {
            let expected: Vec<_> = all.iter().filter(|r| r.size == size).cloned().collect();
            let found = records_of(&path, size, |r: &HeadCosignature| r.size).unwrap();
            assert_eq!(found, expected, "size {size}");
        }
        assert!(
            records_of(&dir.path().join("none"), 1, |r: &HeadCosignature| r.size)
                .unwrap()
                .is_empty()
        );
    }
}
