//! A trail removed while it is written (`rm -rf` of the directory, or of the day's file):
//! noticed before the next write and the next sync, and undone from the open file.
//!
//! Unnoticed, every event would go on into a file no path names, acknowledged and lost. The
//! file being written is still open, so its whole content can be written back where it was.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::active::FileIdentity;
use super::lock::lock_dir;
use super::private::{create_private_dir, open_private};
use super::sink::{GENERATED_KEY, GENERATED_PUBLIC_KEY};
use super::trail::{FileTrail, system_event};
use crate::event::Outcome;

impl FileTrail {
    /// Checks that the file being written is still where it was written, and if it is not,
    /// recreates the directory, writes the file back from what is open, and records an
    /// `audit.recovery` event that says what happened; whether it did. Fails (the sink
    /// fails, and its events wait) while it cannot.
    pub(super) fn restore_if_removed(&mut self) -> io::Result<bool> {
        let Some(current) = &self.current else {
            return Ok(false);
        };
        if names_open_file(&current.path, current.identity)? {
            return Ok(false);
        }
        let (path, len, preallocate) = (current.path.clone(), current.len, current.preallocate);
        let source = current.handle.try_clone()?;
        let dir_was_removed = !self.dir.exists();
        create_private_dir(&self.dir)?;
        if dir_was_removed || !self.dir.join(super::sink::LOCK_FILE).exists() {
            // The old lock is on a file no path names: a second writer could take the new one.
            self._lock = lock_dir(&self.dir)?;
        }
        let displaced = path.exists().then(|| {
            let aside = path.with_extension(format!(
                "jsonl.displaced-{}",
                self.settings
                    .clock
                    .now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            ));
            fs::rename(&path, &aside).map(|()| aside)
        });
        let displaced = displaced.transpose()?;
        let restored = copy_back(source, len, &path, preallocate)?;
        restored.sync_all()?;
        if let Some(parent) = path.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        let identity = FileIdentity::of(&restored.metadata()?);
        if let Some(current) = self.current.as_mut() {
            current.handle = restored;
            current.size = len;
            current.preallocation_failed = false;
            current.identity = identity;
        }
        if self.settings.signing_key.is_none() && !self.dir.join(GENERATED_KEY).exists() {
            // The generated key went with the directory: the same key, written back, so
            // that the trail's checkpoints can still be checked with its public half.
            self.signer
                .save(
                    &self.dir.join(GENERATED_KEY),
                    &self.dir.join(GENERATED_PUBLIC_KEY),
                )
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let what = if dir_was_removed {
            format!("the trail directory {} was removed", self.dir.display())
        } else {
            format!("the trail file {} was removed", path.display())
        };
        let mut reason = format!(
            "{what} while it was written; the file being written was written back from the \
             open file ({len} bytes)"
        );
        if let Some(aside) = &displaced {
            reason.push_str(&format!(
                "; a different file found at its path was moved to {}",
                aside.display()
            ));
        }
        if dir_was_removed {
            reason.push_str("; earlier files and checkpoints in it are lost");
        }
        tracing::error!(target: "audit", dir = %self.dir.display(), "{reason}");
        self.system_events.push(system_event(
            "audit.recovery",
            Outcome::Error,
            reason,
            self.settings.clock.now(),
        ));
        Ok(true)
    }
}

/// Whether `path` names the open file of this `identity`.
fn names_open_file(path: &Path, identity: FileIdentity) -> io::Result<bool> {
    match fs::metadata(path) {
        Ok(named) => Ok(FileIdentity::of(&named) == identity),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// A new file at `path` with the first `len` bytes of the open file `source` (a clone of
/// the trail's handle: moving its offset is harmless, as lines are appended or written at
/// their offset).
fn copy_back(
    mut source: fs::File,
    len: u64,
    path: &Path,
    preallocate: u64,
) -> io::Result<fs::File> {
    source.seek(SeekFrom::Start(0))?;
    let mut restored = open_private(path, preallocate == 0)?;
    let copied = io::copy(&mut source.take(len), &mut restored)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the removed trail file held {copied} of its {len} bytes"),
        ));
    }
    Ok(restored)
}
