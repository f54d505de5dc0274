//! Retention and compression of closed trail files.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::checkpoint::write_private;
use super::layout;
use super::recovery::seq_range;
use super::trail::{FileTrail, day_end, system_event};
use crate::event::Outcome;

impl FileTrail {
    /// Gzips every closed file that is not yet.
    pub(super) fn compress_closed_files(&mut self) -> io::Result<()> {
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
    pub(super) fn retention_sweep(&mut self) -> io::Result<()> {
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
            // A follower needs the lines from its cursor, and the one before, which its
            // store's last line is checked against when it resumes.
            if let Some(needed) = self
                .needed_by_followers()
                .filter(|needed| last + 1 >= *needed)
            {
                tracing::warn!(
                    target: "audit",
                    file = file.name(),
                    needed_from = needed,
                    "audit retention keeps a file a follower has not shipped yet"
                );
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

impl FileTrail {
    /// The first seq a follower still needs, if retention must spare it.
    fn needed_by_followers(&self) -> Option<u64> {
        if !self.settings.spare_for_followers {
            return None;
        }
        self.settings.progress.needed_from()
    }
}

/// Gzips a closed file: `.gz.tmp`, synced, renamed to `.gz`, then the original removed.
pub(super) fn compress(path: &Path) -> io::Result<()> {
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
