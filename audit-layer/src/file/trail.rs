//! The state machine behind [`JsonlFileSink`](super::JsonlFileSink): the active file, the
//! chain, checkpoints, rotation, recovery and retention.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::chain::{self, ChainKey, LinkHash, parse_line};
use super::checkpoint::{Checkpoint, CheckpointKey, read_checkpoints, write_private};
use super::layout::{self, CHECKPOINTS, TrailFile};
use super::sink::{GENERATED_KEY, GENERATED_PUBLIC_KEY, JsonlFileSinkBuilder, LOCK_FILE};
use crate::actor::Actor;
use crate::event::{AuditEvent, Category, Outcome, Timestamp, write_event_members};

const DAY: Duration = Duration::from_secs(86_400);

pub(super) struct FileTrail {
    dir: PathBuf,
    name: String,
    settings: JsonlFileSinkBuilder,
    signer: CheckpointKey,
    current: Option<ActiveFile>,
    next_seq: u64,
    last_hash: LinkHash,
    /// The first seq still in the trail (above 0 after a retention purge).
    first_seq: u64,
    last_checkpoint: Option<Checkpoint>,
    /// Events written since the last checkpoint.
    unsealed: u64,
    last_checkpoint_at: SystemTime,
    /// Events of the trail itself (recovery, purge) waiting to be written.
    system_events: Vec<AuditEvent>,
    buf: Vec<u8>,
    /// A failed write may have left a partial line that could not be removed.
    needs_newline: bool,
    /// The directory's writer lock ([`lock_dir`]), released when the sink is dropped.
    _lock: Option<File>,
}

/// The file being appended to.
struct ActiveFile {
    day: String,
    part: u32,
    path: PathBuf,
    handle: File,
    /// The end of the last line: where the next write goes.
    len: u64,
    /// The file's size: above `len` when zeros were preallocated after it.
    size: u64,
    /// How far ahead of its lines the file is zero-filled
    /// ([`JsonlFileSinkBuilder::preallocate`]). When above 0, lines are written at their
    /// offset, to go over the zeros; otherwise through `O_APPEND`. Both are safe because
    /// the directory lock keeps it to one writer; appending is kept where it is enough, so
    /// that even a writer that bypassed the lock (a filesystem that cannot lock) would
    /// interleave lines, which verify reports, rather than overwrite them.
    preallocate: u64,
    /// Zero-filling failed (a disk too full for the zeros may still hold the lines): not
    /// tried again for this file.
    preallocation_failed: bool,
}

impl ActiveFile {
    /// Opens (or creates) a trail file to continue it. A file left with preallocated zeros
    /// has had them cut off at start ([`trim_padding`]).
    fn open(dir: &Path, day: &str, part: u32, preallocate: u64) -> io::Result<Self> {
        let path = dir.join(layout::file_name(day, part));
        let handle = open_private(&path, preallocate == 0)?;
        let len = handle.metadata()?.len();
        Ok(Self {
            day: day.to_owned(),
            part,
            path,
            handle,
            len,
            size: len,
            preallocate,
            preallocation_failed: false,
        })
    }

    fn stem(&self) -> String {
        layout::file_name(&self.day, self.part)
    }

    /// Appends `bytes` after the last line.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.preallocate > 0 {
            write_all_at(&self.handle, bytes, self.len)?;
        } else {
            (&self.handle).write_all(bytes)?;
        }
        self.len += bytes.len() as u64;
        self.size = self.size.max(self.len);
        Ok(())
    }

    /// Before lines that will end at `end`: zero-fills the file that far and its
    /// preallocation beyond, up to `limit` (the rotation size: beyond it, the zeros would
    /// only be cut off again), so that writes up to there do not change its size. Only an
    /// optimization: if the zeros cannot be written, the file goes on without them.
    fn zero_fill_for(&mut self, end: u64, limit: u64) {
        if self.preallocate == 0 || self.preallocation_failed || end <= self.size {
            return;
        }
        let (len, target) = (self.len, (end + self.preallocate).min(limit.max(end)));
        if let Err(error) = self.write_zeros_to(target) {
            tracing::warn!(target: "audit", file = %self.path.display(), %error, "could not zero-fill the trail file ahead; writing it without");
            self.preallocation_failed = true;
            let _ = self.cut_to(len);
        }
    }

    fn write_zeros_to(&mut self, target: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while self.size < target {
            let chunk = (target - self.size).min(ZEROS.len() as u64) as usize;
            write_all_at(&self.handle, &ZEROS[..chunk], self.size)?;
            self.size += chunk as u64;
        }
        Ok(())
    }

    /// Cuts off the preallocated zeros, if any, and syncs the file: what it holds is then
    /// plain JSON Lines.
    fn close(&mut self) -> io::Result<()> {
        if self.size > self.len {
            self.cut_to(self.len)?;
        }
        self.handle.sync_all()
    }

    /// Cuts the file back to `len`: a failed write's partial line, or the zeros after the
    /// last line when the file is closed.
    fn cut_to(&mut self, len: u64) -> io::Result<()> {
        self.handle.set_len(len)?;
        self.len = len;
        self.size = len;
        Ok(())
    }
}

impl FileTrail {
    pub(super) fn open(settings: JsonlFileSinkBuilder) -> io::Result<Self> {
        let dir = settings.dir.clone();
        create_private_dir(&dir)?;
        // Before anything reads or repairs the files: they may be another writer's.
        let lock = lock_dir(&dir)?;
        let signer = match &settings.signing_key {
            Some(key) => key.clone(),
            None => load_or_generate_key(&dir)?,
        };
        let mut system_events = Vec::new();
        system_events.extend(recover_checkpoints_file(&dir, settings.clock.now())?);
        let checkpoints = read_checkpoints(&dir)?;
        let last_checkpoint = checkpoints.last().cloned();
        remove_leftovers(&dir)?;

        let mut trail_files = layout::list(&dir)?;
        while let Some(last) = trail_files.last() {
            if last.gzipped || trim_padding(&last.path)? > 0 {
                break;
            }
            // An empty file left by a crash right after a rotation.
            fs::remove_file(&last.path)?;
            trail_files.pop();
        }
        if let Some(last) = trail_files.last().filter(|f| !f.gzipped) {
            system_events.extend(recover_torn_tail(last, settings.clock.now())?);
        }

        let (next_seq, last_hash) = match last_event(&trail_files)? {
            Some((seq, hash)) => (seq + 1, hash),
            // Every file was purged: continue from the last checkpoint.
            None => match &last_checkpoint {
                None => (0, LinkHash::GENESIS),
                Some(cp) => {
                    let hash = LinkHash::parse(&cp.last_hash).ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the last checkpoint's last_hash `{}` is not a hash",
                                cp.last_hash
                            ),
                        )
                    })?;
                    (cp.seq_to + 1, hash)
                }
            },
        };
        let first_seq = first_event(&trail_files)?.unwrap_or(next_seq);
        let sealed_to = last_checkpoint.as_ref().map(|cp| cp.seq_to);
        if let Some(sealed) = sealed_to.filter(|sealed| *sealed >= next_seq) {
            let reason = format!(
                "the trail ends at seq {} but a signed checkpoint covers up to seq {sealed}: \
                 events are missing",
                next_seq.wrapping_sub(1)
            );
            tracing::error!(target: "audit", dir = %dir.display(), "{reason}");
            system_events.push(system_event(
                "audit.recovery",
                Outcome::Error,
                reason,
                settings.clock.now(),
            ));
        }
        let unsealed = next_seq.saturating_sub(sealed_to.map_or(0, |s| s + 1));
        let current = match trail_files.last() {
            Some(last) if !last.gzipped => Some(ActiveFile::open(
                &dir,
                &last.day,
                last.part,
                settings.preallocate,
            )?),
            _ => None,
        };
        let now = settings.clock.now();
        let mut trail = Self {
            name: format!("jsonl:{}", dir.display()),
            dir,
            signer,
            current,
            next_seq,
            last_hash,
            first_seq,
            last_checkpoint,
            unsealed,
            last_checkpoint_at: now,
            system_events: Vec::new(),
            buf: Vec::with_capacity(64 * 1024),
            needs_newline: false,
            _lock: lock,
            settings,
        };
        if trail.settings.gzip {
            trail.compress_closed_files()?;
        }
        trail.retention_sweep()?;
        system_events.append(&mut trail.system_events);
        if !system_events.is_empty() {
            trail.append(&system_events)?;
        }
        // Seal whatever a crash left unsealed, and the recovery events.
        trail.checkpoint()?;
        Ok(trail)
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends events to the chain, as one write; then any event the trail itself has to
    /// record, and a checkpoint if one is due.
    pub(super) fn append(&mut self, events: &[AuditEvent]) -> io::Result<()> {
        self.append_chained(events)?;
        let mut seal_now = false;
        while !self.system_events.is_empty() {
            let own = std::mem::take(&mut self.system_events);
            if let Err(error) = self.append_chained_with(&own, false) {
                self.system_events = own;
                tracing::error!(target: "audit", %error, "could not record the trail's own events; retrying with the next batch");
                break;
            }
            // A purge or a recovery is sealed at once: checkpoints say where the trail starts.
            seal_now = true;
        }
        // The first events of a trail are sealed at once, so that a trail with events always
        // has a signed checkpoint and deleting `checkpoints.jsonl` cannot pass unnoticed.
        seal_now |= self.last_checkpoint.is_none();
        if seal_now || self.unsealed >= self.settings.checkpoint_every_events {
            self.checkpoint_or_log();
        }
        Ok(())
    }

    fn append_chained(&mut self, events: &[AuditEvent]) -> io::Result<()> {
        self.append_chained_with(events, true)
    }

    /// `rotate_by_size: false` for the trail's own events: a purge must not start a new file,
    /// or a small size limit would purge and rotate forever.
    fn append_chained_with(
        &mut self,
        events: &[AuditEvent],
        rotate_by_size: bool,
    ) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Chain into a buffer first: nothing changes unless the write succeeds.
        self.buf.clear();
        let key = self.settings.chain_key.as_ref();
        let mut seq = self.next_seq;
        let mut hash = self.last_hash;
        for event in events {
            hash = chain::append_line(&mut self.buf, key, seq, &hash, |out| {
                write_event_members(out, event)
            })?;
            seq += 1;
        }
        self.ensure_file(self.buf.len() as u64, rotate_by_size)?;
        let Some(current) = self.current.as_mut() else {
            return Err(io::Error::other("no trail file is open"));
        };
        let prefix: &[u8] = if self.needs_newline { b"\n" } else { b"" };
        let len = current.len;
        let end = len + (prefix.len() + self.buf.len()) as u64;
        current.zero_fill_for(end, self.settings.rotate_bytes);
        let written = current
            .append(prefix)
            .and_then(|()| current.append(&self.buf));
        if let Err(error) = written {
            // Undo the partial batch (and any zeros written for it) so the retry does not
            // duplicate it.
            if current.cut_to(len).is_err() {
                // The partial batch could not be removed: the next write starts a new line
                // after it (at the file's end through `O_APPEND`; at offsets, after where the
                // batch would have ended), leaving one damaged line that verify reports. Its
                // events are written again by the retry.
                if current.preallocate > 0 {
                    current.len = end;
                    current.size = current.size.max(end);
                }
                self.needs_newline = true;
            }
            return Err(error);
        }
        self.needs_newline = false;
        self.unsealed += seq - self.next_seq;
        self.next_seq = seq;
        self.last_hash = hash;
        Ok(())
    }

    /// Makes `current` the file the next `incoming` bytes go to, rotating by day and size.
    fn ensure_file(&mut self, incoming: u64, rotate_by_size: bool) -> io::Result<()> {
        let today = day_of(self.settings.clock.now());
        let (day, part) = match &self.current {
            // Never go back to an earlier day (a clock set back): the trail's order is the
            // files' order.
            Some(current) if current.day >= today => {
                if !rotate_by_size
                    || current.len == 0
                    || current.len + incoming <= self.settings.rotate_bytes
                {
                    return Ok(());
                }
                (current.day.clone(), current.part + 1)
            }
            _ => self.next_file_for(&today)?,
        };
        self.rotate_to(&day, part)
    }

    /// The file to continue a day in: its last part, or a new one if that is full or closed.
    fn next_file_for(&self, day: &str) -> io::Result<(String, u32)> {
        let last = layout::list(&self.dir)?
            .into_iter()
            .rfind(|f| f.day.as_str() >= day);
        Ok(match last {
            Some(f) if !f.gzipped && fs::metadata(&f.path)?.len() < self.settings.rotate_bytes => {
                (f.day, f.part)
            }
            Some(f) => (f.day, f.part + 1),
            None => (day.to_owned(), 0),
        })
    }

    fn rotate_to(&mut self, day: &str, part: u32) -> io::Result<()> {
        // Seal the file being closed: its last checkpoint records its whole content.
        self.checkpoint()?;
        if let Some(mut old) = self.current.take() {
            if let Err(error) = old.close() {
                self.current = Some(old);
                return Err(error);
            }
            if self.settings.gzip {
                compress(&old.path)?;
            }
        }
        self.current = Some(ActiveFile::open(
            &self.dir,
            day,
            part,
            self.settings.preallocate,
        )?);
        self.retention_sweep()
    }

    /// Makes every written event durable.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        match &self.current {
            Some(current) => current.handle.sync_data(),
            None => Ok(()),
        }
    }

    /// Periodic work: a checkpoint when the interval has passed with events unsealed.
    pub(super) fn tick(&mut self) -> io::Result<()> {
        let now = self.settings.clock.now();
        let due = now
            .duration_since(self.last_checkpoint_at)
            .is_ok_and(|elapsed| elapsed >= self.settings.checkpoint_every);
        if self.unsealed > 0 && due {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// At shutdown: the trail's own pending events, a final checkpoint, everything synced.
    pub(super) fn close(&mut self) -> io::Result<()> {
        if !self.system_events.is_empty() {
            let own = std::mem::take(&mut self.system_events);
            self.append_chained_with(&own, false)?;
        }
        self.checkpoint()?;
        if let Some(current) = &mut self.current {
            current.close()?;
        }
        Ok(())
    }

    fn checkpoint_or_log(&mut self) {
        if let Err(error) = self.checkpoint() {
            // The events are written; only their seal is late. It is retried at the next
            // batch, tick or shutdown.
            tracing::error!(target: "audit", dir = %self.dir.display(), %error, "could not write a checkpoint");
        }
    }

    /// Signs and appends a checkpoint covering every event written so far.
    fn checkpoint(&mut self) -> io::Result<()> {
        if self.unsealed == 0 {
            return Ok(());
        }
        let (file, file_len) = match &self.current {
            Some(current) if current.len > 0 => {
                current.handle.sync_data()?;
                (current.stem(), current.len)
            }
            _ => self.last_file_extent()?,
        };
        let previous = self.last_checkpoint.as_ref();
        let now = self.settings.clock.now();
        let mut checkpoint = Checkpoint {
            kind: "checkpoint".to_owned(),
            first_seq: self.first_seq,
            seq_from: previous.map_or(0, |cp| cp.seq_to + 1),
            seq_to: self.next_seq - 1,
            last_hash: self.last_hash.to_string(),
            file,
            file_len,
            file_sha256: None,
            time: Timestamp::from(now),
            chain: chain::algorithm(self.settings.chain_key.as_ref()).to_owned(),
            chain_key_id: self.settings.chain_key.as_ref().map(ChainKey::id),
            key_id: String::new(),
            prev_signature: previous.and_then(|cp| cp.signature.clone()),
            signature: None,
        };
        self.signer.sign(&mut checkpoint);
        let mut line = serde_json::to_vec(&checkpoint)?;
        line.push(b'\n');
        let path = self.dir.join(CHECKPOINTS);
        let mut file = open_private(&path, true)?;
        file.write_all(&line)?;
        file.sync_data()?;
        self.last_checkpoint = Some(checkpoint);
        self.unsealed = 0;
        self.last_checkpoint_at = now;
        Ok(())
    }

    /// Name and (uncompressed) length of the last non-empty trail file, read from disk.
    fn last_file_extent(&self) -> io::Result<(String, u64)> {
        let trail_files = layout::list(&self.dir)?;
        for file in trail_files.iter().rev() {
            let len = file.content_len()?;
            if len > 0 {
                return Ok((file.stem(), len));
            }
        }
        Err(io::Error::other(
            "no trail file holds the events to checkpoint",
        ))
    }

    fn compress_closed_files(&mut self) -> io::Result<()> {
        let active = self.current.as_ref().map(|c| c.path.clone());
        for file in layout::list(&self.dir)? {
            if !file.gzipped && Some(&file.path) != active.as_ref() {
                compress(&file.path)?;
            }
        }
        Ok(())
    }

    /// Deletes files past retention that a checkpoint covers, and queues an
    /// `audit.retention.purge` event naming them.
    fn retention_sweep(&mut self) -> io::Result<()> {
        let Some(sealed_to) = self.last_checkpoint.as_ref().map(|cp| cp.seq_to) else {
            return Ok(());
        };
        if self.settings.retention.is_none() && self.settings.retention_bytes.is_none() {
            return Ok(());
        }
        let active = self.current.as_ref().map(|c| c.path.clone());
        let trail_files = layout::list(&self.dir)?;
        let mut total: u64 = 0;
        for file in &trail_files {
            total += fs::metadata(&file.path)?.len();
        }
        let now = self.settings.clock.now();
        let mut purged = Vec::new();
        let mut range: Option<(u64, u64)> = None;
        for file in &trail_files {
            if Some(&file.path) == active.as_ref() {
                break;
            }
            let expired = self
                .settings
                .retention
                .is_some_and(|age| day_end(&file.day).is_some_and(|end| end + age <= now));
            let over_budget = self.settings.retention_bytes.is_some_and(|max| total > max);
            if !expired && !over_budget {
                break;
            }
            let Some((first, last)) = seq_range(file)? else {
                continue;
            };
            if last > sealed_to {
                break;
            }
            let size = fs::metadata(&file.path)?.len();
            fs::remove_file(&file.path)?;
            total = total.saturating_sub(size);
            range = Some((range.map_or(first, |r| r.0), last));
            purged.push(file.name());
        }
        if let Some((seq_from, seq_to)) = range {
            self.first_seq = seq_to + 1;
            tracing::info!(target: "audit", files = ?purged, seq_from, seq_to, "audit retention purged files");
            let event = system_event(
                "audit.retention.purge",
                Outcome::Success,
                format!(
                    "retention deleted {} file(s) holding seq {seq_from}..={seq_to}",
                    purged.len()
                ),
                now,
            )
            .with_detail("files", json!(purged))
            .with_detail("seq_from", seq_from)
            .with_detail("seq_to", seq_to);
            self.system_events.push(event);
        }
        Ok(())
    }
}

/// An event of the trail itself.
fn system_event(
    action: &'static str,
    outcome: Outcome,
    reason: String,
    now: SystemTime,
) -> AuditEvent {
    AuditEvent::at(
        Timestamp::from(now),
        Category::System,
        action,
        outcome,
        Actor::service("audit"),
    )
    .with_reason(reason)
}

/// `YYYY-MM-DD` of a time, UTC.
pub(crate) fn day_of(time: SystemTime) -> String {
    let mut text = Timestamp::from(time).to_string();
    text.truncate(10);
    text
}

/// The end of a UTC day.
fn day_end(day: &str) -> Option<SystemTime> {
    Timestamp::parse(&format!("{day}T00:00:00Z"))
        .ok()
        .map(|start| start.as_system_time() + DAY)
}

/// The seq of the last event of the trail and its hash.
fn last_event(trail_files: &[TrailFile]) -> io::Result<Option<(u64, LinkHash)>> {
    for file in trail_files.iter().rev() {
        if let Some(line) = file.last_line()? {
            let parsed = parse_line(&line).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the last line of {} is not a chained audit line",
                        file.name()
                    ),
                )
            })?;
            let hash = LinkHash::parse(parsed.hash).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the last line of {} has a malformed hash", file.name()),
                )
            })?;
            return Ok(Some((parsed.seq, hash)));
        }
    }
    Ok(None)
}

/// The seq of the first event of the trail.
fn first_event(trail_files: &[TrailFile]) -> io::Result<Option<u64>> {
    for file in trail_files {
        if let Some((first, _)) = seq_range(file)? {
            return Ok(Some(first));
        }
    }
    Ok(None)
}

/// The first and last seq of a file.
fn seq_range(file: &TrailFile) -> io::Result<Option<(u64, u64)>> {
    let seq = |line: Option<Vec<u8>>| line.as_deref().and_then(parse_line).map(|l| l.seq);
    Ok(seq(file.first_line()?).zip(seq(file.last_line()?)))
}

/// Moves an unterminated or unreadable tail of the last file aside into a `.torn` file and
/// returns the `audit.recovery` event that records it. Reads the file back from its end,
/// only as far as its last complete audit line.
fn recover_torn_tail(file: &TrailFile, now: SystemTime) -> io::Result<Option<AuditEvent>> {
    let (start, tail) = layout::read_back(&file.path, |tail, at_start| {
        complete_lines_end(tail, at_start).is_some()
    })?;
    let good = complete_lines_end(&tail, true).unwrap_or(0);
    if good == tail.len() {
        return Ok(None);
    }
    let torn = move_aside(&file.path, &tail[good..], now)?;
    let offset = start + good as u64;
    truncate(&file.path, offset)?;
    let torn_bytes = (tail.len() - good) as u64;
    let reason = format!(
        "{} ended with {torn_bytes} byte(s) that are not a complete audit line (a write cut \
         short by a crash); they were moved to {torn}",
        file.name(),
    );
    tracing::warn!(target: "audit", "{reason}");
    Ok(Some(
        system_event("audit.recovery", Outcome::Success, reason, now)
            .with_detail("file", file.name())
            .with_detail("offset", offset)
            .with_detail("torn_bytes", torn_bytes)
            .with_detail("moved_to", torn),
    ))
}

/// Where the last complete audit line of `tail` (the end of a file) ends: after a crash a
/// file can end in a partial line, and also in whole lines of garbage (zeroed blocks).
/// `None` when `tail` does not reach back far enough to tell; with `at_start` (`tail` is
/// the whole file) it always tells, `Some(0)` when no line is an audit line.
fn complete_lines_end(tail: &[u8], at_start: bool) -> Option<usize> {
    let line_start = |end: usize| match tail[..end].iter().rposition(|b| *b == b'\n') {
        Some(i) => Some(i + 1),
        None => at_start.then_some(0),
    };
    let mut good = line_start(tail.len())?;
    while good > 0 {
        let start = line_start(good - 1)?;
        if parse_line(&tail[start..good - 1]).is_some() {
            return Some(good);
        }
        good = start;
    }
    Some(0)
}

/// The same for the checkpoints file.
fn recover_checkpoints_file(dir: &Path, now: SystemTime) -> io::Result<Option<AuditEvent>> {
    let path = dir.join(CHECKPOINTS);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let good = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if good == bytes.len() {
        return Ok(None);
    }
    let torn = move_aside(&path, &bytes[good..], now)?;
    truncate(&path, good as u64)?;
    let reason = format!(
        "{CHECKPOINTS} ended with {} byte(s) of an unfinished checkpoint; they were moved to {torn}",
        bytes.len() - good
    );
    tracing::warn!(target: "audit", "{reason}");
    Ok(Some(
        system_event("audit.recovery", Outcome::Success, reason, now)
            .with_detail("file", CHECKPOINTS)
            .with_detail("moved_to", torn),
    ))
}

/// Writes `bytes` to `<file>.<unix seconds>.torn` and returns that name.
fn move_aside(path: &Path, bytes: &[u8], now: SystemTime) -> io::Result<String> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = format!(
        "{}.{secs}.torn",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    write_private(&path.with_file_name(&name), bytes)?;
    Ok(name)
}

/// Cuts off the zeros a file sink preallocated after the last line of `path` and returns
/// the length that remains. They hold no data, so nothing is recorded.
fn trim_padding(path: &Path) -> io::Result<u64> {
    let len = layout::lines_end(path)?;
    if len < fs::metadata(path)?.len() {
        truncate(path, len)?;
    }
    Ok(len)
}

/// Writes all of `bytes` at `offset`.
#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

/// Writes all of `bytes` at `offset`.
#[cfg(not(unix))]
fn write_all_at(mut file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Removes half-written compressed files left by a crash.
fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".gz.tmp") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Gzips a closed file: `.gz.tmp`, synced, renamed to `.gz`, then the original removed.
fn compress(path: &Path) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz_path = PathBuf::from(gz_name);
    let mut tmp_name = gz_path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp_path = PathBuf::from(tmp_name);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&bytes)?;
    write_private(&tmp_path, &encoder.finish()?)?;
    fs::rename(&tmp_path, &gz_path)?;
    fs::remove_file(path)
}

/// Takes the directory's writer lock: an exclusive lock on its `audit.lock` file, which
/// the kernel releases when the file is closed, so a process that crashed leaves nothing
/// to clean up. A second writer, in this process or another, would fork the chain (or, with
/// preallocation, write over the first one's lines), so it is refused with
/// [`io::ErrorKind::ResourceBusy`]. Where the platform has no file locks
/// ([`io::ErrorKind::Unsupported`]), the sink opens without the lock and warns; any other
/// failure to lock (a network filesystem refusing locks) is an error, found at start-up
/// rather than guessed around.
///
/// The lock belongs to the open file: a child process that another thread of this process
/// is starting shares it from its fork until its exec closes it, and for that instant the
/// lock outlives the sink that took it. So a lock held by this very process is waited for,
/// up to [`OWN_LOCK_WAIT`], before it is refused: a restart in the process that shut the
/// trail down is not refused because a child was being started at the time.
fn lock_dir(dir: &Path) -> io::Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let mut file = open_private(&path, false)?;
    let waiting_since = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the error the next writer gets.
                file.set_len(0)?;
                writeln!(file, "{}", std::process::id())?;
                return Ok(Some(file));
            }
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder_is_us = holder == std::process::id().to_string();
                if holder_is_us && waiting_since.elapsed() < OWN_LOCK_WAIT {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let holder = match holder {
                    pid if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
                        format!(" (by process {pid})")
                    }
                    _ => String::new(),
                };
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is held{holder}: another sink is writing this trail directory, and \
                         two writers would fork its chain; give each process a directory of \
                         its own",
                        path.display()
                    ),
                ));
            }
            Err(fs::TryLockError::Error(error)) if error.kind() == io::ErrorKind::Unsupported => {
                tracing::warn!(target: "audit", dir = %dir.display(), %error, "cannot lock the trail directory on this filesystem: make sure one process only writes it");
                return Ok(None);
            }
            Err(fs::TryLockError::Error(error)) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!(
                        "cannot lock the trail directory's {}: {error}",
                        path.display()
                    ),
                ));
            }
        }
    }
}

/// How long a lock held by this process itself is waited for (see [`lock_dir`]): far
/// longer than a child process takes from its fork to its exec.
const OWN_LOCK_WAIT: Duration = Duration::from_millis(250);

fn load_or_generate_key(dir: &Path) -> io::Result<CheckpointKey> {
    let secret = dir.join(GENERATED_KEY);
    let to_io = |e: super::checkpoint::KeyError| io::Error::other(e.to_string());
    if secret.exists() {
        return CheckpointKey::from_file(&secret).map_err(to_io);
    }
    let key = CheckpointKey::generate().map_err(to_io)?;
    key.save(&secret, &dir.join(GENERATED_PUBLIC_KEY))
        .map_err(to_io)?;
    tracing::warn!(
        target: "audit",
        dir = %dir.display(),
        "generated a checkpoint signing key in the trail directory: fine for a demo; in \
         production pass one from a secret store (JsonlFileSinkBuilder::signing_key)"
    );
    Ok(key)
}

/// Opens `path` to write, creating it (mode `0600`): appending, or at offsets.
fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(append).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "audit directory {} exists and is not a directory",
                dir.display()
            ),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            target: "audit",
            dir = %dir.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "audit directory is readable by other users; 0700 is recommended"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if !fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "audit directory {} exists and is not a directory",
                dir.display()
            ),
        ));
    }
    Ok(())
}
