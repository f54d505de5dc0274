//! [`TrailReader`]: a trail read in order from a cursor, each line checked against the one
//! before it: what a follower ships (a database, a broker, an index, a SIEM), and only what
//! verifies.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::chain::{ChainKey, GENESIS, parse_line};
use super::layout::{self, TrailFile};
use super::verify::{Fault, FaultKind};
use crate::event::{AuditEvent, Timestamp};

/// One line of the trail, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrailLine {
    /// Its place in the chain.
    pub seq: u64,
    /// Its hash, which the next line links to.
    pub hash: String,
    /// The whole line without its newline: one JSON object, `seq`, `prev_hash` and `hash`
    /// first.
    pub json: String,
}

impl TrailLine {
    /// The event's time, found without parsing the line: `time` is the first member after
    /// `id`, and a quote inside a string is escaped, so the line's first `,"time":"` is the
    /// event's own.
    pub fn time(&self) -> Option<Timestamp> {
        const KEY: &str = ",\"time\":\"";
        let start = self.json.find(KEY)? + KEY.len();
        let end = start + self.json[start..].find('"')?;
        Timestamp::parse(&self.json[start..end]).ok()
    }

    /// The event the line holds (without its `seq`, `prev_hash` and `hash`).
    pub fn event(&self) -> Result<AuditEvent, serde_json::Error> {
        serde_json::from_str(&self.json)
    }
}

/// Reads a trail directory in order from a seq, and goes on as the trail grows, across
/// rotations and compression. Each line must link to the one before it (its `prev_hash`,
/// its seq, its hash over its content, keyed if the chain is): a line that does not is a
/// [`Fault`], returned at every read from then on, and nothing past it is read.
///
/// A line still being written (no newline yet) is not read until it is whole. Events a
/// retention purge deleted before the cursor reached them are a [`FaultKind::MissingFile`].
///
/// ```
/// use audit_layer::file::{JsonlFileSink, TrailReader};
/// # use audit_layer::sink::Sink;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let mut sink = JsonlFileSink::new(dir.path());
/// # let event = audit_layer::AuditEvent::new(audit_layer::Category::System, "a", audit_layer::Outcome::Success, audit_layer::Actor::service("s"));
/// # sink.write_batch(&[event.clone(), event]).await?;
/// let mut reader = TrailReader::new(dir.path(), 0, None);
/// let lines = reader.read(100)?;
/// assert_eq!(lines.iter().map(|line| line.seq).collect::<Vec<_>>(), [0, 1]);
/// assert!(reader.read(100)?.is_empty(), "nothing more until the trail grows");
/// assert_eq!(reader.next_seq(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TrailReader {
    dir: PathBuf,
    key: Option<ChainKey>,
    next_seq: u64,
    /// The hash of the line before `next_seq`, once known.
    prev_hash: Option<String>,
    /// The file of the next line (its stem, which compression keeps) and where in its
    /// content the next line starts.
    position: Option<(String, u64)>,
    /// The fault met, returned from then on.
    fault: Option<Fault>,
    /// The hash the line before `next_seq` must have (a copy's last line).
    expect_prev: Option<String>,
    /// The gzipped file being read, decompressed: its stem and content.
    unzipped: Option<(String, Vec<u8>)>,
}

/// How much of a file one read takes at first.
const CHUNK: usize = 1 << 20;

/// The line of `seq` as stored (without its newline), found in the one file that holds it;
/// `None` if the trail does not hold it. Nothing is checked: what proves the line is the
/// caller's (a Merkle proof, the chain).
pub(crate) fn line_at(dir: &Path, seq: u64) -> io::Result<Option<String>> {
    // The last file that starts at or before it.
    let files = layout::list(dir)?;
    let mut holder = None;
    for file in &files {
        let first = file
            .first_line()?
            .as_deref()
            .and_then(parse_line)
            .map(|line| line.seq);
        match first {
            Some(first) if first <= seq => holder = Some(file),
            Some(_) => break,
            None => {}
        }
    }
    let Some(file) = holder else {
        return Ok(None);
    };
    if !file.gzipped {
        return line_in(&fs::File::open(&file.path)?, seq);
    }
    let content = file.read()?;
    for line in layout::without_padding(&content).split(|b| *b == b'\n') {
        match parse_line(line).map(|parsed| parsed.seq) {
            Some(found) if found == seq => {
                return String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(io::Error::other);
            }
            Some(found) if found > seq => break,
            _ => {}
        }
    }
    Ok(None)
}

/// The line of `seq` in an uncompressed trail file, found by bisecting its bytes (lines are
/// in seq order): a few small reads, however large the file.
fn line_in(file: &fs::File, seq: u64) -> io::Result<Option<String>> {
    use std::os::unix::fs::FileExt as _;
    const PROBE: usize = 4096;
    let len = file.metadata()?.len();
    let read_at = |offset: u64, size: usize| -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; size.min(len.saturating_sub(offset) as usize)];
        file.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    };
    // The seq of the first line starting after `offset` and where it starts; `u64::MAX`
    // in the zeros a sink preallocates after its last line; `None` inside a line longer
    // than the probe.
    let line_after = |offset: u64| -> io::Result<Option<(u64, u64)>> {
        let bytes = read_at(offset, PROBE)?;
        if bytes.iter().all(|b| *b == 0) {
            return Ok(Some((u64::MAX, offset)));
        }
        let Some(newline) = bytes.iter().position(|b| *b == b'\n') else {
            return Ok(None);
        };
        let start = offset + newline as u64 + 1;
        let head = read_at(start, 64)?;
        Ok(Some((parse_seq(&head).unwrap_or(u64::MAX), start)))
    };
    // `low` starts a line at or before the wanted one; `high` is past it.
    let (mut low, mut high) = (0u64, len);
    while high - low > PROBE as u64 * 4 {
        let middle = low + (high - low) / 2;
        match line_after(middle)? {
            Some((found, start)) if found <= seq => low = start,
            Some(_) => high = middle,
            // A line longer than the probe: read on from `low`.
            None => break,
        }
    }
    let mut offset = low;
    let mut chunk = 1 << 16;
    loop {
        let bytes = read_at(offset, chunk)?;
        let content = layout::without_padding(&bytes);
        let mut consumed = 0;
        for line in content.split_inclusive(|b| *b == b'\n') {
            let Some(text) = line.strip_suffix(b"\n") else {
                break;
            };
            match parse_seq(text) {
                Some(found) if found == seq => {
                    return String::from_utf8(text.to_vec())
                        .map(Some)
                        .map_err(io::Error::other);
                }
                Some(found) if found > seq => return Ok(None),
                _ => {}
            }
            consumed += line.len();
        }
        if offset + bytes.len() as u64 >= len || content.len() < bytes.len() {
            return Ok(None);
        }
        if consumed == 0 {
            // One line longer than the chunk.
            chunk *= 2;
        }
        offset += consumed as u64;
    }
}

/// The seq at the start of a chained line (`{"seq":N,...`).
fn parse_seq(head: &[u8]) -> Option<u64> {
    let digits = head.strip_prefix(b"{\"seq\":")?;
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

impl TrailReader {
    /// A reader of the trail in `dir` from `from_seq` (0: the whole trail), checking a chain
    /// keyed with `key` if it is. No I/O until the first read.
    pub fn new(dir: impl AsRef<Path>, from_seq: u64, key: Option<ChainKey>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            key,
            next_seq: from_seq,
            prev_hash: (from_seq == 0).then(|| GENESIS.to_owned()),
            position: None,
            fault: None,
            expect_prev: None,
            unzipped: None,
        }
    }

    /// A reader of the lines after `seq`, whose hash must be `hash`: a copy of the trail
    /// that ends at that line goes on from there, and a copy of another trail (or of one
    /// rewritten since) is a [`FaultKind::Forked`] at the first read.
    pub fn after(dir: impl AsRef<Path>, seq: u64, hash: &str, key: Option<ChainKey>) -> Self {
        let mut reader = Self::new(dir, seq + 1, key);
        reader.expect_prev = Some(hash.to_owned());
        reader
    }

    /// A reader from the oldest line the trail still holds, taking its link to the lines
    /// before it (which retention deleted) on trust; with that line's seq. `None` for a
    /// trail with no line.
    pub(crate) fn from_oldest(
        dir: impl AsRef<Path>,
        key: Option<ChainKey>,
    ) -> Result<Option<(Self, u64)>, Fault> {
        let dir = dir.as_ref();
        let unreadable =
            |what: &str, e: io::Error| Fault::new(FaultKind::Unreadable, format!("{what}: {e}"));
        let files = layout::list(dir).map_err(|e| unreadable(&dir.display().to_string(), e))?;
        let Some(oldest) = files.first() else {
            return Ok(None);
        };
        let first = oldest
            .first_line()
            .map_err(|e| unreadable(&oldest.name(), e))?;
        let Some(first) = first.as_deref().and_then(parse_line) else {
            return Ok(None);
        };
        let reader = Self {
            dir: dir.to_path_buf(),
            key,
            next_seq: first.seq,
            prev_hash: Some(first.prev_hash.to_owned()),
            position: Some((oldest.stem(), 0)),
            fault: None,
            expect_prev: None,
            unzipped: None,
        };
        Ok(Some((reader, first.seq)))
    }

    /// The seq of the next line to read: the cursor a follower stores.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Up to `max` lines from the cursor, in order, and moves the cursor past them; none
    /// when the trail holds no more yet. The lines before a fault are returned first, and
    /// the fault at the next read.
    pub fn read(&mut self, max: usize) -> Result<Vec<TrailLine>, Fault> {
        if let Some(fault) = &self.fault {
            return Err(fault.clone());
        }
        let mut lines = Vec::new();
        match self.read_into(&mut lines, max) {
            Ok(()) => Ok(lines),
            Err(fault) => {
                if fault.kind != FaultKind::Unreadable {
                    // A fault in the trail stays; a file that cannot be read now may be later.
                    self.fault = Some(fault.clone());
                }
                if lines.is_empty() {
                    Err(fault)
                } else {
                    Ok(lines)
                }
            }
        }
    }

    fn read_into(&mut self, lines: &mut Vec<TrailLine>, max: usize) -> Result<(), Fault> {
        let unreadable =
            |what: &str, e: io::Error| Fault::new(FaultKind::Unreadable, format!("{what}: {e}"));
        // Read a chunk at a time: the rest of a large file is not read for a few lines.
        let mut chunk = CHUNK;
        while lines.len() < max {
            let files = layout::list(&self.dir)
                .map_err(|e| unreadable(&self.dir.display().to_string(), e))?;
            let Some((index, offset)) = self.locate(&files)? else {
                return Ok(());
            };
            let file = &files[index];
            let (bytes, to_end) = self
                .content_from(file, offset, index + 1 == files.len(), chunk)
                .map_err(|e| unreadable(&file.name(), e))?;
            let mut consumed = 0;
            let mut cut_short = false;
            for line in bytes.split_inclusive(|b| *b == b'\n') {
                if lines.len() == max {
                    break;
                }
                let Some(text) = line.strip_suffix(b"\n") else {
                    cut_short = true;
                    break;
                };
                match self.check(file, text) {
                    Ok(line) => lines.push(line),
                    Err(fault) => {
                        self.position = Some((file.stem(), offset + consumed as u64));
                        return Err(fault);
                    }
                }
                consumed += line.len();
            }
            let later = index + 1 < files.len();
            if consumed == bytes.len() && to_end && later {
                self.position = Some((files[index + 1].stem(), 0));
                continue;
            }
            self.position = Some((file.stem(), offset + consumed as u64));
            if !to_end && lines.len() < max {
                // More of this file: the next chunk, larger if one line did not fit.
                if consumed == 0 {
                    chunk = chunk.saturating_mul(2);
                }
                continue;
            }
            if cut_short && to_end && later {
                // Only the newest file may end in a line still being written.
                return Err(Fault::new(FaultKind::Modified, "a line cut short").at(
                    &file.name(),
                    None,
                    Some(self.next_seq),
                ));
            }
            // The cursor is at the end of what the trail holds, or `max` lines are read.
            break;
        }
        Ok(())
    }

    /// Up to `limit` bytes of `file`'s content from `offset`, and whether they reach its
    /// end; for the newest file, without the zeros a sink preallocates after its last
    /// line. A gzipped file is decompressed once, and kept while it is being read.
    fn content_from(
        &mut self,
        file: &TrailFile,
        offset: u64,
        newest: bool,
        limit: usize,
    ) -> io::Result<(Vec<u8>, bool)> {
        let (mut bytes, to_end) = if file.gzipped {
            let stem = file.stem();
            let all = match &self.unzipped {
                Some((cached, all)) if *cached == stem => all,
                _ => &self.unzipped.insert((stem, file.read()?)).1,
            };
            let rest = all.get(offset as usize..).unwrap_or_default();
            let to_end = rest.len() <= limit;
            (rest[..rest.len().min(limit)].to_vec(), to_end)
        } else {
            let mut handle = fs::File::open(&file.path)?;
            handle.seek(SeekFrom::Start(offset))?;
            let mut bytes = Vec::new();
            handle.take(limit as u64 + 1).read_to_end(&mut bytes)?;
            let to_end = bytes.len() <= limit;
            bytes.truncate(limit);
            (bytes, to_end)
        };
        if newest {
            // Zeros are never part of a line: stripping them from any chunk is safe.
            let kept = layout::without_padding(&bytes).len();
            bytes.truncate(kept);
        }
        Ok((bytes, to_end))
    }

    /// Checks that `text` is the next line of the chain, and moves past it.
    fn check(&mut self, file: &TrailFile, text: &[u8]) -> Result<TrailLine, Fault> {
        let seq = self.next_seq;
        let fault = |kind, detail: &str| Fault::new(kind, detail).at(&file.name(), None, Some(seq));
        let Some(parsed) = parse_line(text) else {
            return Err(fault(FaultKind::Modified, "not a chained audit line"));
        };
        if parsed.seq != seq {
            let kind = if parsed.seq > seq {
                FaultKind::Deleted
            } else {
                FaultKind::Inserted
            };
            return Err(fault(
                kind,
                &format!("seq {seq} was expected, not {}", parsed.seq),
            ));
        }
        if self.prev_hash.as_deref() != Some(parsed.prev_hash) {
            return Err(fault(
                FaultKind::Modified,
                "does not link to the line before it (one of them was rewritten)",
            ));
        }
        if parsed.expected_hash(self.key.as_ref()).as_str() != parsed.hash {
            return Err(fault(
                FaultKind::Modified,
                "its hash does not match its content",
            ));
        }
        let json = String::from_utf8(text.to_vec())
            .map_err(|_| fault(FaultKind::Modified, "not UTF-8"))?;
        self.prev_hash = Some(parsed.hash.to_owned());
        self.next_seq = seq + 1;
        Ok(TrailLine {
            seq,
            hash: parsed.hash.to_owned(),
            json,
        })
    }

    /// The file (by index) and offset of the next line; `None` if the trail is empty. The
    /// first time, the file and line of `next_seq` are looked for.
    fn locate(&mut self, files: &[TrailFile]) -> Result<Option<(usize, u64)>, Fault> {
        if let Some((stem, offset)) = &self.position {
            return match files.iter().position(|f| &f.stem() == stem) {
                Some(index) => Ok(Some((index, *offset))),
                None => Err(Fault::new(
                    FaultKind::MissingFile,
                    format!("{stem}, being read, is gone"),
                )
                .at(stem, None, Some(self.next_seq))),
            };
        }
        if files.is_empty() {
            return Ok(None);
        }
        // The last file whose first seq is at or before the line before the cursor (whose
        // hash the cursor's line links to), or the cursor's line at the start of a trail.
        let wanted = self.next_seq.saturating_sub(1);
        let mut start = None;
        let mut oldest_seq = None;
        for (index, file) in files.iter().enumerate() {
            let first = file
                .first_line()
                .map_err(|e| Fault::new(FaultKind::Unreadable, format!("{}: {e}", file.name())))?
                .as_deref()
                .and_then(parse_line)
                .map(|line| line.seq);
            if index == 0 {
                oldest_seq = first;
            }
            match first {
                Some(seq) if seq <= wanted => start = Some(index),
                _ => {}
            }
        }
        let Some(index) = start else {
            // From the start of a trail whose first line is not seq 0: retention deleted
            // the lines before it (a line that is not a chained line is the check's to report).
            if self.next_seq == 0 && oldest_seq.is_none_or(|seq| seq == 0) {
                return Ok(Some((0, 0)));
            }
            return Err(Fault::new(
                FaultKind::MissingFile,
                format!("seq {} and the lines before it are gone", wanted),
            )
            .at(&files[0].name(), None, Some(self.next_seq)));
        };
        if self.next_seq == 0 {
            return Ok(Some((index, 0)));
        }
        // Within that file, the line before the cursor: its hash, and where the next starts.
        let file = &files[index];
        let (bytes, _) = self
            .content_from(file, 0, index + 1 == files.len(), usize::MAX / 2)
            .map_err(|e| Fault::new(FaultKind::Unreadable, format!("{}: {e}", file.name())))?;
        let mut offset = 0;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            offset += line.len() as u64;
            let parsed = parse_line(line.strip_suffix(b"\n").unwrap_or(line));
            if let Some(parsed) = parsed.filter(|p| p.seq == wanted) {
                if let Some(expected) = self.expect_prev.as_deref().filter(|h| *h != parsed.hash) {
                    return Err(Fault::new(
                        FaultKind::Forked,
                        format!(
                            "the copy ends with seq {wanted} hashed {expected}, but the trail's \
                             seq {wanted} is hashed {}: the copy holds another trail, or this \
                             one was rewritten",
                            parsed.hash
                        ),
                    )
                    .at(&file.name(), None, Some(wanted)));
                }
                self.prev_hash = Some(parsed.hash.to_owned());
                self.position = Some((file.stem(), offset));
                return Ok(Some((index, offset)));
            }
        }
        Err(Fault::new(
            FaultKind::Deleted,
            format!("seq {wanted}, before the cursor, is not in the trail"),
        )
        .at(&file.name(), None, Some(wanted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_found_by_bisecting_its_file_whatever_the_line_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.jsonl");
        let mut content = Vec::new();
        for seq in 100..3_100u64 {
            // Lengths from 30 bytes to past the probe, now and then.
            let padding = if seq % 500 == 0 {
                9_000
            } else {
                (seq % 97) as usize
            };
            content.extend_from_slice(
                format!("{{\"seq\":{seq},\"x\":\"{}\"}}\n", "p".repeat(padding)).as_bytes(),
            );
        }
        // Zeros a sink preallocated after the last line.
        content.extend_from_slice(&vec![0; 100_000]);
        std::fs::write(&path, &content).unwrap();
        let file = fs::File::open(&path).unwrap();
        for seq in (100..3_100u64).step_by(7).chain([100, 500, 1_000, 3_099]) {
            let line = line_in(&file, seq)
                .unwrap()
                .unwrap_or_else(|| panic!("seq {seq}"));
            assert!(
                line.starts_with(&format!("{{\"seq\":{seq},")),
                "{seq}: {line:.40}"
            );
        }
        for missing in [0, 99, 3_100, 10_000] {
            assert_eq!(line_in(&file, missing).unwrap(), None, "{missing}");
        }
    }
}
