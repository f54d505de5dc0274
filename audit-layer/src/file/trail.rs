//! The state machine behind [`JsonlFileSink`](super::JsonlFileSink): appending chained
//! lines, rotation and checkpoints. The file being written, recovery at start, retention,
//! the directory's lock and its private files each have a module of their own beside this.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::active::{ActiveFile, trim_padding};
use super::chain::{self, ChainKey, LinkHash};
use super::checkpoint::{Checkpoint, CheckpointKey, read_checkpoints};
use super::layout::{self, CHECKPOINTS};
use super::lock::lock_dir;
use super::private::{
    create_private_dir, load_or_create_trail_id, load_or_generate_key, open_private,
};
use super::recovery::{
    first_event, last_event, recover_checkpoints_file, recover_torn_tail, remove_leftovers,
};
use super::retention::compress;
use super::sink::JsonlFileSinkBuilder;
use crate::event::actor::Actor;
use crate::event::{AuditEvent, Category, Outcome, Timestamp, write_event_members};

const DAY: Duration = Duration::from_secs(86_400);

pub(super) struct FileTrail {
    pub(super) dir: PathBuf,
    pub(super) settings: JsonlFileSinkBuilder,
    pub(super) signer: CheckpointKey,
    /// The trail's id (`trail.id`).
    pub(super) id: String,
    /// `"trail":"<id>",`: the trail's id, the first member of every line's event, so that
    /// a line names its trail wherever it is copied, under its hash.
    pub(super) trail_member: Vec<u8>,
    pub(super) current: Option<ActiveFile>,
    pub(super) next_seq: u64,
    pub(super) last_hash: LinkHash,
    /// The first seq still in the trail (above 0 after a retention purge).
    pub(super) first_seq: u64,
    pub(super) last_checkpoint: Option<Checkpoint>,
    /// Events written since the last checkpoint.
    pub(super) unsealed: u64,
    pub(super) last_checkpoint_at: SystemTime,
    /// Events of the trail itself (recovery, purge) waiting to be written.
    pub(super) system_events: Vec<AuditEvent>,
    pub(super) buf: Vec<u8>,
    /// A failed write may have left a partial line that could not be removed.
    pub(super) needs_newline: bool,
    /// The directory's writer lock ([`lock_dir`]), released when the sink is dropped.
    pub(super) _lock: Option<File>,
}

impl FileTrail {
    pub(super) fn open(settings: &JsonlFileSinkBuilder) -> io::Result<Self> {
        let dir = settings.dir.clone();
        create_private_dir(&dir)?;
        // Before anything reads or repairs the files: they may be another writer's.
        let lock = lock_dir(&dir)?;
        let id = load_or_create_trail_id(&dir, settings.trail_id.as_deref())?;
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
            dir,
            signer,
            trail_member: format!("\"trail\":\"{id}\",").into_bytes(),
            id: id.clone(),
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
            settings: settings.clone(),
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
        // What an earlier process wrote may still be only in the page cache.
        if let Some(current) = &trail.current {
            current.handle.sync_data()?;
        }
        trail.settings.progress.opened(id, trail.next_seq);
        Ok(trail)
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
                out.extend_from_slice(&self.trail_member);
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

    /// Makes every written event durable, where the trail's path names it: a removed file
    /// is written back first ([`restore_if_removed`](Self::restore_if_removed)).
    pub(super) fn sync(&mut self) -> io::Result<()> {
        if self.restore_if_removed()? {
            // The recovery, recorded and sealed before anything is called durable.
            self.append(&[])?;
        }
        if let Some(current) = &self.current {
            current.handle.sync_data()?;
        }
        self.settings.progress.synced_to(self.next_seq);
        Ok(())
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
        self.settings.progress.synced_to(self.next_seq);
        Ok(())
    }

    /// Publishes a checkpoint to the mirror, if there is one. A failure is logged: the next
    /// checkpoint, which covers this one's events too, is published in its place.
    fn publish_to_mirror(&self, checkpoint: &Checkpoint) {
        let Some(mirror) = &self.settings.mirror else {
            return;
        };
        let mut mirror = mirror
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = mirror.publish(checkpoint) {
            metrics::counter!("audit_checkpoint_mirror_errors_total").increment(1);
            tracing::error!(
                target: "audit",
                mirror = mirror.name(),
                seq_to = checkpoint.seq_to,
                %error,
                "could not publish a checkpoint to the mirror; the next one will be"
            );
        }
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
                self.settings.progress.synced_to(self.next_seq);
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
            trail: Some(self.id.clone()),
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
        self.publish_to_mirror(&checkpoint);
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
}

/// An event of the trail itself.
pub(super) fn system_event(
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
pub(super) fn day_end(day: &str) -> Option<SystemTime> {
    Timestamp::parse(&format!("{day}T00:00:00Z"))
        .ok()
        .map(|start| start.as_system_time() + DAY)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use std::path::Path;

    use crate::file::{JsonlFileSink, ManualClock, VerifyOptions, verify_trail};

    fn events(from: u64, count: u64) -> Vec<AuditEvent> {
        (from..from + count)
            .map(|n| {
                AuditEvent::new(
                    Category::System,
                    "test.event",
                    Outcome::Success,
                    Actor::service("test"),
                )
                .with_detail("n", n)
            })
            .collect()
    }

    fn seqs(dir: &Path) -> Vec<u64> {
        layout::list(dir)
            .unwrap()
            .iter()
            .flat_map(|file| {
                let bytes = file.read().unwrap();
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(|line| chain::parse_line(line).unwrap().seq)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_chain_continues_across_a_reopen_and_the_closed_trail_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + DAY * 20_000);
        let settings = || JsonlFileSink::builder(dir.path()).clock(clock.clone());

        let mut trail = FileTrail::open(&settings()).unwrap();
        trail.append(&events(0, 3)).unwrap();
        trail.close().unwrap();
        drop(trail);
        let mut trail = FileTrail::open(&settings()).unwrap();
        trail.append(&events(3, 2)).unwrap();
        trail.close().unwrap();
        drop(trail);

        assert_eq!(seqs(dir.path()), vec![0, 1, 2, 3, 4]);
        let report = verify_trail(dir.path(), &VerifyOptions::default()).unwrap();
        assert_eq!(report.events, 5);
        assert_eq!(report.unsealed, 0, "close seals the trail");
    }

    #[test]
    fn a_new_day_and_a_full_file_each_start_a_file_and_the_chain_runs_through() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + DAY * 20_000);
        let mut trail = FileTrail::open(
            &JsonlFileSink::builder(dir.path())
                .clock(clock.clone())
                .rotate_bytes(600),
        )
        .unwrap();
        for batch in 0..4 {
            trail.append(&events(batch * 2, 2)).unwrap();
        }
        clock.advance(DAY);
        trail.append(&events(8, 1)).unwrap();
        trail.close().unwrap();
        drop(trail);

        let files = layout::list(dir.path()).unwrap();
        assert!(files.len() >= 3, "{files:?}");
        assert_ne!(files[0].day, files[files.len() - 1].day);
        assert_eq!(seqs(dir.path()), (0..9).collect::<Vec<_>>());
        verify_trail(dir.path(), &VerifyOptions::default()).unwrap();
    }

    #[test]
    fn a_second_writer_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileTrail::open(&JsonlFileSink::builder(dir.path())).unwrap();
        let error = FileTrail::open(&JsonlFileSink::builder(dir.path()))
            .err()
            .expect("the directory is locked");
        assert_eq!(error.kind(), io::ErrorKind::ResourceBusy, "{error}");
    }
}
