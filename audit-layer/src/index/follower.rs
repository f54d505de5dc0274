//! The index as a follower of the trail.

use std::path::{Path, PathBuf};

use super::store::TrailIndex;
use crate::file::TrailLine;
use crate::follow::{Cursor, Follower};
use crate::sink::{BoxFuture, SinkError};

/// Keeps the trail's [`TrailIndex`] up to date, as a follower: on a thread of its own,
/// from the cursor the index holds, so it catches up after a restart and never holds the
/// application back. Events retention deleted leave the index as their files go.
///
/// ```
/// use audit_layer::AuditTrail;
/// use audit_layer::file::JsonlFileSink;
/// use audit_layer::index::IndexFollower;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let audit = AuditTrail::builder()
///     .sink(JsonlFileSink::new(dir.path()))
///     .follower(IndexFollower::new())
///     .build()?;
/// # drop(audit);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct IndexFollower {
    /// The trail directory and its index, once started.
    opened: Option<(PathBuf, TrailIndex)>,
    /// The oldest seq the trail held when last looked.
    oldest: Option<u64>,
}

impl IndexFollower {
    /// A follower that keeps the index in the trail directory's `index/`.
    pub fn new() -> Self {
        Self::default()
    }

    fn index(&mut self) -> Result<(&Path, &mut TrailIndex), SinkError> {
        self.opened
            .as_mut()
            .map(|(dir, index)| (dir.as_path(), index))
            .ok_or_else(|| SinkError::new("index: not started"))
    }

    /// Removes what retention deleted, when the oldest file changed.
    fn forget_deleted(&mut self) -> Result<(), SinkError> {
        let (dir, _) = self.index()?;
        let oldest = crate::file::layout::oldest_seq(dir)
            .map_err(|e| SinkError::new(format!("{}: {e}", dir.display())))?;
        if oldest == self.oldest {
            return Ok(());
        }
        if let Some(seq) = oldest {
            let (_, index) = self.index()?;
            index.forget_before(seq).map_err(SinkError::new)?;
        }
        self.oldest = oldest;
        Ok(())
    }
}

impl Follower for IndexFollower {
    fn name(&self) -> &str {
        "index"
    }

    fn start(&mut self, trail_dir: &Path) -> Result<(), SinkError> {
        let index = TrailIndex::open(trail_dir).map_err(SinkError::new)?;
        self.opened = Some((trail_dir.to_path_buf(), index));
        Ok(())
    }

    fn cursor<'a>(&'a mut self, trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move {
            let (_, index) = self.index()?;
            Ok(match index.cursor().map_err(SinkError::new)? {
                Some((indexed, seq, hash)) if indexed == trail => Cursor::after(seq, hash),
                Some((indexed, ..)) => {
                    return Err(SinkError::new(format!(
                        "{}: holds trail {indexed}, not {trail}: delete it to rebuild it",
                        index.path().display()
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
            let (_, index) = self.index()?;
            index.append(trail, lines).map_err(SinkError::new)?;
            self.forget_deleted()
        })
    }
}
