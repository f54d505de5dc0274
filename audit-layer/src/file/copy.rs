//! [`CopyCheck`]: a copy of the trail (a follower's table or stream) checked line by line,
//! against its own chain and against the trail's files.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::chain::{ChainKey, parse_line};
use super::reader::{TrailLine, TrailReader};
use super::verify::{Fault, FaultKind};

/// Checks a copy of the trail, fed in seq order with [`check`](Self::check):
///
/// - its own chain: seqs without a gap, each line linked to the one before, each hash over
///   its line's content (when the copy keeps the line byte for byte: a `jsonb` column does
///   not, and its lines are compared with the trail's instead);
/// - against the trail's files, where they still hold the line: the same hash, so the same
///   content. A line missing, altered or added in the copy is a [`Fault`].
///
/// The trail may be ahead of the copy (a follower that is behind): [`CopyReport::behind`]
/// says by how much. A copy ahead of the trail is a [`FaultKind::Forked`].
///
/// ```
/// use audit_layer::file::{CopyCheck, JsonlFileSink, TrailReader};
/// # use audit_layer::sink::Sink;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let mut sink = JsonlFileSink::new(dir.path());
/// # let event = audit_layer::AuditEvent::new(audit_layer::Category::System, "a", audit_layer::Outcome::Success, audit_layer::Actor::service("s"));
/// # sink.write_batch(&[event.clone(), event.clone(), event]).await?;
/// // A copy that holds the trail's first two lines.
/// let copy = TrailReader::new(dir.path(), 0, None).read(2)?;
/// let mut check = CopyCheck::new(dir.path(), None);
/// for line in copy {
///     check.check(line)?;
/// }
/// let report = check.finish()?;
/// assert_eq!((report.lines, report.behind), (2, 1));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CopyCheck {
    /// The trail's directory; `None` to check the copy's own chain only.
    dir: Option<PathBuf>,
    key: Option<ChainKey>,
    /// The trail, read in step with the copy, once the copy's first seq is known.
    trail: Option<TrailReader>,
    /// Trail lines read ahead, from the copy's next seq on.
    ahead: VecDeque<TrailLine>,
    /// The first seq the trail's files still hold.
    trail_first: u64,
    /// The copy's last line: its seq and hash.
    last: Option<(u64, String)>,
    report: CopyReport,
}

/// What [`CopyCheck::finish`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Lines in the copy.
    pub lines: u64,
    /// The copy's first and last seq.
    pub first_seq: Option<u64>,
    /// Its last seq.
    pub last_seq: Option<u64>,
    /// Lines of the copy compared with the trail's own (the others are older than the
    /// trail's files: their own chain was checked).
    pub compared: u64,
    /// Lines of the copy whose hash was worked out again from their content; the others
    /// were kept as a `jsonb` document, and compared with the trail's line as JSON.
    pub rehashed: u64,
    /// Lines of the trail the copy does not hold yet.
    pub behind: u64,
}

impl CopyCheck {
    /// A check of a copy of the trail in `dir`, whose chain is keyed with `key` if it is.
    pub fn new(dir: impl AsRef<Path>, key: Option<ChainKey>) -> Self {
        Self {
            dir: Some(dir.as_ref().to_path_buf()),
            ..Self::own_chain(key)
        }
    }

    /// A check of a copy whose trail is gone: its own chain only, each line's hash worked
    /// out again from its content. It proves the copy consistent, not unaltered: without
    /// a chain key, whoever can write the copy can recompute a whole chain. A copy that
    /// does not keep its lines byte for byte (`jsonb`) cannot be checked this way.
    pub fn own_chain(key: Option<ChainKey>) -> Self {
        Self {
            dir: None,
            key,
            trail: None,
            ahead: VecDeque::new(),
            trail_first: 0,
            last: None,
            report: CopyReport::default(),
        }
    }

    /// Checks the copy's next line (`json` as the copy keeps it, `seq` and `hash` as it
    /// files it).
    pub fn check(&mut self, line: TrailLine) -> Result<(), Fault> {
        let seq = line.seq;
        let fault = |kind, detail: String| Fault::new(kind, detail).at("copy", None, Some(seq));
        match &self.last {
            Some((last, _)) if seq <= *last => {
                return Err(fault(
                    FaultKind::Inserted,
                    format!("seq {seq} comes again after seq {last}"),
                ));
            }
            Some((last, _)) if seq != last + 1 => {
                return Err(fault(
                    FaultKind::Deleted,
                    format!("seq {}..={} are missing", last + 1, seq - 1),
                ));
            }
            _ => {}
        }
        // Its own chain, when the copy kept the line's bytes.
        let rehashed = match parse_line(line.json.as_bytes()) {
            Some(parsed) => {
                if parsed.seq != seq || parsed.hash != line.hash {
                    return Err(fault(
                        FaultKind::Modified,
                        "its seq or hash differs from the line's own".to_owned(),
                    ));
                }
                if let Some((_, last_hash)) = &self.last
                    && parsed.prev_hash != last_hash
                {
                    return Err(fault(
                        FaultKind::Modified,
                        "does not link to the line before it".to_owned(),
                    ));
                }
                parsed.expected_hash(self.key.as_ref()).as_str() == line.hash
            }
            None => false,
        };
        // Against the trail's line, where its files still hold it.
        match self.trail_line(seq)? {
            Some(original) => {
                if original.hash != line.hash {
                    return Err(fault(
                        FaultKind::Modified,
                        "its hash is not the trail's: the line was altered".to_owned(),
                    ));
                }
                if !rehashed && !same_json(&original.json, &line.json) {
                    return Err(fault(
                        FaultKind::Modified,
                        "its content is not the trail's".to_owned(),
                    ));
                }
                self.report.compared += 1;
            }
            None if !rehashed => {
                return Err(fault(
                    FaultKind::Modified,
                    "its hash does not match its content, and no file of the trail holds the \
                     line"
                        .to_owned(),
                ));
            }
            None => {}
        }
        if rehashed {
            self.report.rehashed += 1;
        }
        self.report.first_seq.get_or_insert(seq);
        self.report.last_seq = Some(seq);
        self.report.lines += 1;
        self.last = Some((seq, line.hash));
        Ok(())
    }

    /// The whole report, once every line of the copy was checked. A copy that lacks lines
    /// the trail's files hold before its first is a fault; lines after its last are
    /// [`CopyReport::behind`].
    pub fn finish(mut self) -> Result<CopyReport, Fault> {
        if self.dir.is_none() {
            return Ok(self.report);
        }
        let first = self.report.first_seq.unwrap_or(0);
        if self.report.lines == 0 {
            self.start_trail(0)?;
        }
        if first > self.trail_first && self.report.lines > 0 {
            return Err(Fault::new(
                FaultKind::Deleted,
                format!(
                    "the copy starts at seq {first}; the trail holds seq {}..={}",
                    self.trail_first,
                    first - 1
                ),
            )
            .at("copy", None, Some(self.trail_first)));
        }
        let mut behind = self.ahead.len() as u64;
        if let Some(reader) = &mut self.trail {
            loop {
                let lines = reader.read(65_536)?;
                if lines.is_empty() {
                    break;
                }
                behind += lines.len() as u64;
            }
        }
        self.report.behind = behind;
        Ok(self.report)
    }

    /// The trail's line `seq`, if its files still hold it; `Forked` if the trail ends
    /// before it.
    fn trail_line(&mut self, seq: u64) -> Result<Option<TrailLine>, Fault> {
        if self.dir.is_none() {
            return Ok(None);
        }
        if self.trail.is_none() {
            self.start_trail(seq)?;
        }
        if seq < self.trail_first {
            return Ok(None);
        }
        if self.ahead.is_empty()
            && let Some(reader) = &mut self.trail
        {
            self.ahead.extend(reader.read(4096)?);
        }
        match self.ahead.pop_front() {
            Some(line) if line.seq == seq => Ok(Some(line)),
            Some(line) => Err(Fault::new(
                FaultKind::Modified,
                format!("the trail's next line is seq {}, not {seq}", line.seq),
            )),
            None => Err(Fault::new(
                FaultKind::Forked,
                format!("the copy holds seq {seq}, which the trail does not"),
            )
            .at("copy", None, Some(seq))),
        }
    }

    /// Reads the trail from `seq`, or from its oldest line if retention deleted `seq`.
    fn start_trail(&mut self, seq: u64) -> Result<(), Fault> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let oldest = TrailReader::from_oldest(dir, self.key.clone())?;
        let (reader, first) = match oldest {
            Some((oldest, first)) if first >= seq => (oldest, first),
            Some((_, first)) => (TrailReader::new(dir, seq, self.key.clone()), first),
            None => (TrailReader::new(dir, seq, self.key.clone()), seq),
        };
        self.trail_first = first;
        self.trail = Some(reader);
        Ok(())
    }
}

/// Whether two lines hold the same JSON (a `jsonb` copy keeps the members, not their
/// order or spacing).
fn same_json(trail: &str, copy: &str) -> bool {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    matches!((parse(trail), parse(copy)), (Some(a), Some(b)) if a == b)
}
