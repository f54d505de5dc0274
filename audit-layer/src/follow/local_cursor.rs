//! A cursor kept beside the trail, for followers whose receiver cannot say what it holds
//! (syslog, webhooks): `DIR/followers/<name>.cursor`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::follow::Cursor;
use crate::follow::status::status_file;
use crate::sink::SinkError;

/// The seq after the last line the receiver confirmed, and that line's hash, in a file
/// replaced whole (written beside it, then renamed), so that a crash leaves the old cursor
/// or the new one, never a torn one. Made with the follower, opened by its
/// [`Follower::start`](crate::follow::Follower::start).
#[derive(Debug)]
pub(crate) struct LocalCursor {
    follower: String,
    /// The file and the cursor it holds, once opened.
    opened: Option<(PathBuf, Cursor)>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    next_seq: u64,
    last_hash: Option<String>,
}

impl LocalCursor {
    /// The cursor of follower `follower`, not yet opened.
    pub(crate) fn new(follower: &str) -> Self {
        Self {
            follower: follower.to_owned(),
            opened: None,
        }
    }

    /// Opens (or starts) the cursor in trail directory `dir`.
    pub(crate) fn open(&mut self, dir: &Path) -> Result<(), SinkError> {
        let path = status_file(dir, &self.follower).with_extension("cursor");
        let at = match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes).map_err(|error| {
                    SinkError::new(format!(
                        "{}: not a follower cursor: {error}",
                        path.display()
                    ))
                })?;
                Cursor {
                    next_seq: stored.next_seq,
                    last_hash: stored.last_hash,
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Cursor::empty(),
            Err(error) => return Err(SinkError::new(format!("{}: {error}", path.display()))),
        };
        self.opened = Some((path, at));
        Ok(())
    }

    /// Where the receiver's copy ends.
    pub(crate) fn get(&self) -> Result<Cursor, SinkError> {
        self.opened
            .as_ref()
            .map(|(_, at)| at.clone())
            .ok_or_else(|| SinkError::new(format!("{}: not started", self.follower)))
    }

    /// Records that the receiver holds every line up to `seq`, hashed `hash`. A cursor
    /// that cannot be saved is logged, not returned: the receiver has the lines, and a
    /// cursor left behind only sends them again.
    pub(crate) fn confirm(&mut self, seq: u64, hash: &str) {
        let Some((path, at)) = self.opened.as_mut() else {
            return;
        };
        if at.next_seq > seq {
            return;
        }
        match save(path, seq, hash) {
            Ok(()) => *at = Cursor::after(seq, hash),
            Err(error) => {
                tracing::warn!(target: "audit", follower = %self.follower, %error, "cannot save the follower's cursor");
            }
        }
    }
}

fn save(path: &Path, seq: u64, hash: &str) -> std::io::Result<()> {
    let stored = Stored {
        next_seq: seq + 1,
        last_hash: Some(hash.to_owned()),
    };
    let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("cursor.new");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    drop(file);
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_reopen_and_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let name = "syslog:tcp://host:514";
        let mut cursor = LocalCursor::new(name);
        assert!(
            cursor
                .get()
                .unwrap_err()
                .to_string()
                .contains("not started")
        );
        cursor.open(dir.path()).unwrap();
        assert_eq!(cursor.get().unwrap(), Cursor::empty());
        cursor.confirm(9, "abc");
        cursor.confirm(3, "old");
        let mut reopened = LocalCursor::new(name);
        reopened.open(dir.path()).unwrap();
        assert_eq!(reopened.get().unwrap(), Cursor::after(9, "abc"));
        let (path, _) = reopened.opened.as_ref().unwrap();
        std::fs::write(path, b"{torn").unwrap();
        let err = LocalCursor::new(name).open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a follower cursor"), "{err}");
    }
}
