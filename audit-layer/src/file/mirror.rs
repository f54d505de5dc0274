//! [`CheckpointMirror`]: each new checkpoint, also kept where the trail's writer cannot
//! rewrite it unnoticed.
//!
//! Whoever holds the trail directory and its signing key can cut the trail's tail and its
//! checkpoints, and what is left verifies. A copy of the newest checkpoint kept elsewhere
//! (another disk or host, a write-once bucket, a database the application cannot delete
//! from) turns that rollback into a fault: `audit verify --against-checkpoint COPY`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::layout::CHECKPOINTS;
use super::private::{create_private_dir, open_private};

/// Where each checkpoint the file trail writes is published too, in order, on the
/// writer's thread.
///
/// A publication that fails is logged and retried with the next checkpoint (the newest is
/// what a verifier needs); it never fails the trail.
pub trait CheckpointMirror: Send + 'static {
    /// A name for logs.
    fn name(&self) -> &str;

    /// Publishes a checkpoint just written and synced in the trail.
    fn publish(&mut self, checkpoint: &Checkpoint) -> io::Result<()>;
}

/// A second directory: each checkpoint is appended, as one line, to its `checkpoints.jsonl`
/// and synced. Put it on another disk or host, where the trail's writer cannot write
/// (an append-only mount, a different account's share).
///
/// ```
/// use audit_layer::file::{DirectoryMirror, JsonlFileSink};
///
/// # let dir = tempfile::tempdir()?;
/// let sink = JsonlFileSink::builder(dir.path().join("trail"))
///     .checkpoint_mirror(DirectoryMirror::new(dir.path().join("mirror")))
///     .build();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct DirectoryMirror {
    dir: PathBuf,
    name: String,
}

impl DirectoryMirror {
    /// A mirror appending to `dir/checkpoints.jsonl` (the directory is created if need be).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().to_path_buf();
        Self {
            name: format!("dir:{}", dir.display()),
            dir,
        }
    }
}

impl CheckpointMirror for DirectoryMirror {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, checkpoint: &Checkpoint) -> io::Result<()> {
        create_private_dir(&self.dir)?;
        let mut line = serde_json::to_vec(checkpoint)?;
        line.push(b'\n');
        let mut file = open_private(&self.dir.join(CHECKPOINTS), true)?;
        file.write_all(&line)?;
        file.sync_data()?;
        File::open(&self.dir)?.sync_all()
    }
}
