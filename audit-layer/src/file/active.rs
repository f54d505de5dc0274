//! The trail file being appended to: preallocation, appends, and cutting back a failed write.

use std::fs;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::layout;
use super::private::open_private;

/// The file being appended to.
pub(super) struct ActiveFile {
    pub(super) day: String,
    pub(super) part: u32,
    pub(super) path: PathBuf,
    pub(super) handle: File,
    /// The end of the last line: where the next write goes.
    pub(super) len: u64,
    /// The file's size: above `len` when zeros were preallocated after it.
    pub(super) size: u64,
    /// How far ahead of its lines the file is zero-filled
    /// ([`JsonlFileSinkBuilder::preallocate`]). When above 0, lines are written at their
    /// offset, to go over the zeros; otherwise through `O_APPEND`. Both are safe because
    /// the directory lock keeps it to one writer; appending is kept where it is enough, so
    /// that even a writer that bypassed the lock (a filesystem that cannot lock) would
    /// interleave lines, which verify reports, rather than overwrite them.
    pub(super) preallocate: u64,
    /// Zero-filling failed (a disk too full for the zeros may still hold the lines): not
    /// tried again for this file.
    pub(super) preallocation_failed: bool,
    /// What the file is, to tell whether its path still names it.
    pub(super) identity: FileIdentity,
}

/// A file's device and inode (where the platform has them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileIdentity(u64, u64);

impl FileIdentity {
    pub(super) fn of(metadata: &fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self(metadata.dev(), metadata.ino())
        }
        #[cfg(not(unix))]
        {
            let _ = metadata;
            Self(0, 0)
        }
    }
}

impl ActiveFile {
    /// Opens (or creates) a trail file to continue it. A file left with preallocated zeros
    /// has had them cut off at start ([`trim_padding`]).
    pub(super) fn open(dir: &Path, day: &str, part: u32, preallocate: u64) -> io::Result<Self> {
        let path = dir.join(layout::file_name(day, part));
        let handle = open_private(&path, preallocate == 0)?;
        let metadata = handle.metadata()?;
        let len = metadata.len();
        Ok(Self {
            identity: FileIdentity::of(&metadata),
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

    pub(super) fn stem(&self) -> String {
        layout::file_name(&self.day, self.part)
    }

    /// Appends `bytes` after the last line.
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
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
    pub(super) fn zero_fill_for(&mut self, end: u64, limit: u64) {
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
    pub(super) fn close(&mut self) -> io::Result<()> {
        if self.size > self.len {
            self.cut_to(self.len)?;
        }
        self.handle.sync_all()
    }

    /// Cuts the file back to `len`: a failed write's partial line, or the zeros after the
    /// last line when the file is closed.
    pub(super) fn cut_to(&mut self, len: u64) -> io::Result<()> {
        self.handle.set_len(len)?;
        self.len = len;
        self.size = len;
        Ok(())
    }
}

/// Writes all of `bytes` at `offset`.
#[cfg(unix)]
pub(super) fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

/// Writes all of `bytes` at `offset`.
#[cfg(not(unix))]
pub(super) fn write_all_at(mut file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// Cuts off the zeros a file sink preallocated after the last line of `path` and returns
/// the length that remains. They hold no data, so nothing is recorded.
pub(super) fn trim_padding(path: &Path) -> io::Result<u64> {
    let len = layout::lines_end(path)?;
    if len < fs::metadata(path)?.len() {
        truncate(path, len)?;
    }
    Ok(len)
}

pub(super) fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}
