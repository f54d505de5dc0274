//! An embedded index of the trail, for investigations: one actor's history, a target's, a
//! request's, or the events holding some words, in milliseconds rather than a scan of every
//! file.
//!
//! [`TrailIndex`] is a SQLite database in the trail directory (`index/events.sqlite`): a
//! row per event with its time, actor id and name, action, outcome, category, target,
//! source IP and request id, each indexed, and an FTS5 table of the words of the scrubbed
//! event. [`IndexFollower`] keeps it up to date as a follower of the trail; `audit index
//! DIR` builds or catches it up from the files alone; `audit query` uses it when it is
//! there, and reads the files after its cursor, so its answers are the scan's.
//!
//! The index holds nothing the files do not: verified lines, whole, and the events
//! retention deleted leave it. It can be deleted at any time and rebuilt from the files.
//!
//! ```
//! use audit_layer::file::{Filter, JsonlFileSink, Page};
//! use audit_layer::index::TrailIndex;
//! # use audit_layer::sink::Sink;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let mut sink = JsonlFileSink::new(dir.path());
//! # let event = audit_layer::AuditEvent::new(audit_layer::Category::Sensitive, "user.role.change", audit_layer::Outcome::Success, audit_layer::Actor::user("7"));
//! # sink.write_batch(&[event]).await?;
//! let mut index = TrailIndex::open(dir.path())?;
//! index.catch_up(dir.path(), None)?;
//! let filter = Filter { actor: Some("7".into()), ..Filter::default() };
//! let newest = index.query(&filter, &Page::newest(50))?;
//! assert_eq!(newest.len(), 1);
//! // The next page: the events before the last one shown.
//! let older = index.query(&filter, &Page::newest(50).before(newest[0].seq))?;
//! assert!(older.is_empty());
//! # Ok(()) }
//! ```

mod answer;
mod follower;
mod search;
mod store;

use std::fmt;
use std::path::Path;

pub use answer::{Answered, search, search_page};
pub use follower::IndexFollower;
pub use store::{INDEX_DIR, TrailIndex, index_path};

use crate::file::Fault;

/// One stored line the index found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedLine {
    /// Its seq in the trail.
    pub seq: u64,
    /// The line, as in the trail's file.
    pub line: String,
}

/// Why the index cannot be opened, written or read.
#[derive(Debug)]
#[non_exhaustive]
pub enum IndexError {
    /// The database said no.
    Sqlite {
        /// The index's file.
        path: String,
        /// What SQLite said.
        error: rusqlite::Error,
    },
    /// A file could not be read or made.
    Io {
        /// Which.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The trail could not be read past a line (see `audit verify`).
    Trail(Fault),
    /// A line that holds no event.
    Line(String),
    /// An index of another schema, or of another trail.
    Schema(String),
}

impl IndexError {
    pub(crate) fn sqlite(path: &Path, error: rusqlite::Error) -> Self {
        Self::Sqlite {
            path: path.display().to_string(),
            error,
        }
    }

    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            error,
        }
    }
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path, error } => write!(f, "{path}: {error}"),
            Self::Io { path, error } => write!(f, "{path}: {error}"),
            Self::Trail(fault) => write!(f, "the trail: {fault}"),
            Self::Line(what) | Self::Schema(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for IndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sqlite { error, .. } => Some(error),
            Self::Io { error, .. } => Some(error),
            Self::Trail(fault) => Some(fault),
            Self::Line(_) | Self::Schema(_) => None,
        }
    }
}
