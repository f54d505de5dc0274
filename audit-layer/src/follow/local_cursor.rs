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
/// or the new one, never a torn one.
#[derive(Debug)]
pub(crate) struct LocalCursor {
    path: PathBuf,
    at: Cursor,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    next_seq: u64,
    last_hash: Option<String>,
}

impl LocalCursor {
    /// Opens (or starts) the cursor of follower `name` in trail directory `dir`.
    pub(crate) fn open(dir: &Path, name: &str) -> Result<Self, SinkError> {
        let path = status_file(dir, name).with_extension("cursor");
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
        Ok(Self { path, at })
    }

    /// Where the receiver's copy ends.
    pub(crate) fn get(&self) -> Cursor {
        self.at.clone()
    }

    /// Records that the receiver holds every line up to `seq`, hashed `hash`.
    pub(crate) fn confirm(&mut self, seq: u64, hash: &str) -> Result<(), SinkError> {
        if self.at.next_seq > seq {
            return Ok(());
        }
        let stored = Stored {
            next_seq: seq + 1,
            last_hash: Some(hash.to_owned()),
        };
        let bytes = serde_json::to_vec(&stored).map_err(SinkError::new)?;
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = self.path.with_extension("cursor.new");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        drop(file);
        std::fs::rename(&temporary, &self.path)?;
        self.at = Cursor::after(seq, hash);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_reopen_and_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut cursor = LocalCursor::open(dir.path(), "syslog:tcp://host:514").unwrap();
        assert_eq!(cursor.get(), Cursor::empty());
        cursor.confirm(9, "abc").unwrap();
        cursor.confirm(3, "old").unwrap();
        let reopened = LocalCursor::open(dir.path(), "syslog:tcp://host:514").unwrap();
        assert_eq!(reopened.get(), Cursor::after(9, "abc"));
        std::fs::write(&reopened.path, b"{torn").unwrap();
        let err = LocalCursor::open(dir.path(), "syslog:tcp://host:514").unwrap_err();
        assert!(err.to_string().contains("not a follower cursor"), "{err}");
    }
}
