//! The index's SQLite database: its schema, its cursor, and the rows it adds.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::IndexError;
use crate::event::Timestamp;
use crate::file::{ChainKey, TRAIL_ID, TrailLine, TrailReader, search_text};

/// The index's folder, in the trail directory.
pub const INDEX_DIR: &str = "index";
/// The index's database file, in [`INDEX_DIR`].
const DATABASE: &str = "events.sqlite";
/// The schema this build writes and reads.
const SCHEMA_VERSION: &str = "1";
/// Lines read from the trail, and added in one transaction, at a time by
/// [`TrailIndex::catch_up`].
const CATCH_UP_BATCH: usize = 4096;
/// The same for a new index's build, whose transactions are cheap without the indexes.
const BUILD_BATCH: usize = 65_536;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time INTEGER,
    actor_id TEXT,
    actor_name TEXT,
    action TEXT,
    outcome TEXT,
    category TEXT,
    target TEXT,
    ip BLOB,
    request_id TEXT,
    line TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5 (
    text, content = '', contentless_delete = 1, tokenize = 'ascii', detail = 'none'
);
";

/// The column indexes: made with the schema, and again after a new index's build (SQLite
/// builds an index from sorted rows far faster than it adds rows to it one by one).
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_actor_id ON events (actor_id);
CREATE INDEX IF NOT EXISTS events_actor_name ON events (actor_name) WHERE actor_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_action ON events (action);
CREATE INDEX IF NOT EXISTS events_category ON events (category);
CREATE INDEX IF NOT EXISTS events_target ON events (target) WHERE target IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_ip ON events (ip) WHERE ip IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_request_id ON events (request_id) WHERE request_id IS NOT NULL;
";

/// What a new index's build drops first, and [`INDEXES`] makes again once it is done.
const DROP_INDEXES: &str = "
DROP INDEX IF EXISTS events_time;
DROP INDEX IF EXISTS events_actor_id;
DROP INDEX IF EXISTS events_actor_name;
DROP INDEX IF EXISTS events_action;
DROP INDEX IF EXISTS events_category;
DROP INDEX IF EXISTS events_target;
DROP INDEX IF EXISTS events_ip;
DROP INDEX IF EXISTS events_request_id;
";

/// An index of one trail's events, in `DIR/index/events.sqlite`: by time, actor, action,
/// outcome, category, target, source IP, request id, and the words of the scrubbed event.
///
/// It holds only verified lines of the trail, each whole, and its cursor (the trail's id,
/// and the seq and hash of the last line it holds) in the same transaction as the lines, so
/// it never holds half a batch nor a line twice. Deleted, it is rebuilt from the files;
/// lines retention deleted leave it too ([`forget_before`](Self::forget_before)).
/// [`IndexFollower`](super::IndexFollower) keeps it up to date while the application runs;
/// [`catch_up`](Self::catch_up) does it from the files alone (`audit index DIR`).
#[derive(Debug)]
pub struct TrailIndex {
    connection: Connection,
    path: PathBuf,
}

/// Where a trail's index goes.
pub fn index_path(trail_dir: &Path) -> PathBuf {
    trail_dir.join(INDEX_DIR).join(DATABASE)
}

impl TrailIndex {
    /// Opens the index of the trail in `trail_dir`, making it if there is none.
    pub fn open(trail_dir: &Path) -> Result<Self, IndexError> {
        let path = index_path(trail_dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| IndexError::io(parent, e))?;
        }
        let connection = Connection::open(&path).map_err(|e| IndexError::sqlite(&path, e))?;
        let index = Self { connection, path };
        // Connections opening a new index at once (the follower, a reader) may find it
        // locked while another switches it to WAL, which SQLite reports at once rather than
        // waiting: each tries again, a little later.
        let mut attempts = 0;
        loop {
            match index.prepare_schema() {
                Err(IndexError::Sqlite { error, .. })
                    if attempts < 100
                        && error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                result => return result.map(|()| index),
            }
        }
    }

    /// Opens the index of the trail in `trail_dir` if it has one.
    pub fn open_existing(trail_dir: &Path) -> Result<Option<Self>, IndexError> {
        if index_path(trail_dir).is_file() {
            Self::open(trail_dir).map(Some)
        } else {
            Ok(None)
        }
    }

    fn prepare_schema(&self) -> Result<(), IndexError> {
        let sqlite = |e| IndexError::sqlite(&self.path, e);
        // WAL: readers (`audit query`, the viewer) do not block the follower. NORMAL: a
        // power cut may lose the last batches, never corrupt the file; the cursor goes back
        // with them.
        // First: another connection (the follower, a reader) may hold a lock a moment.
        self.connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        self.connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        self.connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        // Inserts into the indexes touch pages all over them: a larger cache than SQLite's
        // 2 MiB saves re-reading them (64 MiB, a quarter faster on the bench).
        self.connection
            .pragma_update(None, "cache_size", -65_536)
            .map_err(sqlite)?;
        self.connection.execute_batch(SCHEMA).map_err(sqlite)?;
        // Also after a build that stopped before it made them again.
        self.connection.execute_batch(INDEXES).map_err(sqlite)?;
        // `OR IGNORE`: a reader opening the index while the follower makes it may get there
        // first; either way one version is written, then read back.
        self.connection
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('version', ?1)",
                [SCHEMA_VERSION],
            )
            .map_err(sqlite)?;
        let version: Option<String> = self
            .connection
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(sqlite)?;
        match version.as_deref() {
            Some(SCHEMA_VERSION) => {}
            other => {
                let other = other.unwrap_or("none");
                return Err(IndexError::Schema(format!(
                    "{}: schema version {other}, this build reads {SCHEMA_VERSION}: delete the \
                     file to rebuild it from the trail",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }

    /// The file the index is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The trail the index holds lines of, and the seq and hash of its last line; `None`
    /// when it holds none.
    pub fn cursor(&self) -> Result<Option<(String, u64, String)>, IndexError> {
        let get = |key: &str| -> Result<Option<String>, IndexError> {
            self.connection
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(|e| IndexError::sqlite(&self.path, e))
        };
        let (Some(trail), Some(seq), Some(hash)) = (get("trail")?, get("seq")?, get("hash")?)
        else {
            return Ok(None);
        };
        let seq = seq.parse().map_err(|_| {
            IndexError::Schema(format!("{}: a cursor seq of {seq:?}", self.path.display()))
        })?;
        Ok(Some((trail, seq, hash)))
    }

    /// Adds `lines` of `trail`, which follow the cursor, in one transaction with the new
    /// cursor. A line that is not an event's JSON is an error, and nothing is added.
    pub fn append(&mut self, trail: &str, lines: &[TrailLine]) -> Result<(), IndexError> {
        let Some(last) = lines.last() else {
            return Ok(());
        };
        let path = self.path.clone();
        let sqlite = |e| IndexError::sqlite(&path, e);
        let transaction = self.connection.transaction().map_err(sqlite)?;
        {
            let mut event = transaction
                .prepare_cached(
                    "INSERT INTO events (seq, time, actor_id, actor_name, action, outcome, \
                     category, target, ip, request_id, line) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sqlite)?;
            let mut words = transaction
                .prepare_cached("INSERT INTO words (rowid, text) VALUES (?1, ?2)")
                .map_err(sqlite)?;
            for line in lines {
                let value: Value = serde_json::from_str(&line.json).map_err(|e| {
                    IndexError::Line(format!("seq {}: not an event: {e}", line.seq))
                })?;
                let seq = i64::try_from(line.seq)
                    .map_err(|_| IndexError::Line(format!("seq {} is too large", line.seq)))?;
                let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
                let time = text("/time")
                    .and_then(|t| Timestamp::parse(t).ok())
                    .and_then(|t| i64::try_from(t.unix_micros()).ok());
                let ip = text("/source/ip")
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .map(ip_key);
                event
                    .execute(params![
                        seq,
                        time,
                        text("/actor/id"),
                        text("/actor/name"),
                        text("/action"),
                        text("/outcome"),
                        text("/category"),
                        text("/target"),
                        ip,
                        text("/request/id"),
                        line.json,
                    ])
                    .map_err(sqlite)?;
                words
                    .execute(params![seq, search_text(&value)])
                    .map_err(sqlite)?;
            }
            let mut cursor = transaction
                .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
                .map_err(sqlite)?;
            cursor.execute(["trail", trail]).map_err(sqlite)?;
            cursor
                .execute(params!["seq", last.seq.to_string()])
                .map_err(sqlite)?;
            cursor.execute(["hash", &last.hash]).map_err(sqlite)?;
        }
        transaction.commit().map_err(sqlite)
    }

    /// Removes the events before `seq` (those retention deleted from the trail), and
    /// returns how many went.
    pub fn forget_before(&mut self, seq: u64) -> Result<u64, IndexError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let path = self.path.clone();
        let sqlite = |e| IndexError::sqlite(&path, e);
        let transaction = self.connection.transaction().map_err(sqlite)?;
        transaction
            .execute("DELETE FROM words WHERE rowid < ?1", [seq])
            .map_err(sqlite)?;
        let removed = transaction
            .execute("DELETE FROM events WHERE seq < ?1", [seq])
            .map_err(sqlite)?;
        transaction.commit().map_err(sqlite)?;
        Ok(removed as u64)
    }

    /// Indexes the lines of the trail in `trail_dir` that follow the cursor (all of them
    /// for a new index), checking each against the one before it, and removes the events
    /// retention deleted. Returns how many lines it added.
    ///
    /// A new index is built without its column indexes, which are made at the end from the
    /// sorted rows: many times faster on a large trail. Readers meanwhile get the same
    /// answers, from a scan of the index's rows.
    pub fn catch_up(&mut self, trail_dir: &Path, key: Option<ChainKey>) -> Result<u64, IndexError> {
        let new = self.cursor()?.is_none();
        if !new {
            return self.add_from(trail_dir, key, CATCH_UP_BATCH);
        }
        let path = self.path.clone();
        let sqlite = |e| IndexError::sqlite(&path, e);
        self.connection
            .execute_batch(DROP_INDEXES)
            .map_err(sqlite)?;
        let added = self.add_from(trail_dir, key, BUILD_BATCH);
        // Whatever happened: an index without them would answer slowly ever after.
        let made = self.connection.execute_batch(INDEXES).map_err(sqlite);
        let added = added?;
        made?;
        // The build's pages into the database file, and the log back to nothing (a reader
        // may hold it a moment: then it shrinks later, on its own).
        let _ = self
            .connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(added)
    }

    /// [`catch_up`](Self::catch_up)'s reading and adding, `batch` lines a transaction.
    fn add_from(
        &mut self,
        trail_dir: &Path,
        key: Option<ChainKey>,
        batch: usize,
    ) -> Result<u64, IndexError> {
        let id_file = trail_dir.join(TRAIL_ID);
        let trail = std::fs::read_to_string(&id_file)
            .map_err(|e| IndexError::io(&id_file, e))?
            .trim()
            .to_owned();
        let mut reader = match self.cursor()? {
            Some((indexed, seq, hash)) => {
                if indexed != trail {
                    return Err(IndexError::Schema(format!(
                        "{}: holds trail {indexed}, the directory's is {trail}: delete it to \
                         rebuild it",
                        self.path.display()
                    )));
                }
                TrailReader::after(trail_dir, seq, &hash, key)
            }
            None => match TrailReader::from_oldest(trail_dir, key) {
                Ok(Some((reader, _))) => reader,
                Ok(None) => return Ok(0),
                Err(fault) => return Err(IndexError::Trail(fault)),
            },
        };
        let mut added = 0;
        loop {
            let lines = reader.read(batch).map_err(IndexError::Trail)?;
            if lines.is_empty() {
                break;
            }
            self.append(&trail, &lines)?;
            added += lines.len() as u64;
        }
        if let Some(oldest) =
            crate::file::layout::oldest_seq(trail_dir).map_err(|e| IndexError::io(trail_dir, e))?
        {
            self.forget_before(oldest)?;
        }
        Ok(added)
    }

    /// How many events the index holds, and the size of its files in bytes.
    pub fn stats(&self) -> Result<(u64, u64), IndexError> {
        let events: i64 = self
            .connection
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .map_err(|e| IndexError::sqlite(&self.path, e))?;
        let mut bytes = 0;
        for suffix in ["", "-wal"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            bytes += std::fs::metadata(PathBuf::from(name)).map_or(0, |m| m.len());
        }
        Ok((u64::try_from(events).unwrap_or(0), bytes))
    }
}

/// An address as the index orders it: its family (4 or 6), then its bytes, so that a
/// network is one range and the families never mix.
pub(crate) fn ip_key(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => [&[4u8][..], &v4.octets()].concat(),
        IpAddr::V6(v6) => [&[6u8][..], &v6.octets()].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::JsonlFileSink;
    use crate::sink::Sink;
    use crate::{Actor, AuditEvent, Category, Outcome};

    async fn write_trail(dir: &Path, count: usize) {
        let events: Vec<_> = (0..count)
            .map(|n| {
                AuditEvent::new(
                    Category::Request,
                    "http.request",
                    Outcome::Success,
                    Actor::user(format!("user-{}", n % 7)),
                )
            })
            .collect();
        let mut sink = JsonlFileSink::new(dir);
        sink.write_batch(&events).await.unwrap();
        sink.close().await.unwrap();
    }

    fn column_indexes(index: &TrailIndex) -> usize {
        index
            .connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'events_%'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .unwrap() as usize
    }

    #[tokio::test]
    async fn a_new_index_gets_its_column_indexes_after_its_build_even_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        write_trail(dir.path(), 300).await;
        let mut index = TrailIndex::open(dir.path()).unwrap();
        assert_eq!(column_indexes(&index), 8);
        assert_eq!(index.catch_up(dir.path(), None).unwrap(), 300);
        assert_eq!(column_indexes(&index), 8);
        let plan: String = index
            .connection
            .query_row(
                "EXPLAIN QUERY PLAN SELECT seq FROM events WHERE actor_id = 'user-3'",
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("events_actor_id"), "{plan}");

        // A trail altered before it was indexed: the build stops at the fault, and the index
        // still has its column indexes.
        let altered = tempfile::tempdir().unwrap();
        write_trail(altered.path(), 300).await;
        let file = crate::file::trail_files(altered.path()).unwrap().remove(0);
        let text = std::fs::read_to_string(&file).unwrap();
        let line = text.lines().find(|line| line.contains("user-3")).unwrap();
        let seq = serde_json::from_str::<Value>(line).unwrap()["seq"]
            .as_u64()
            .unwrap();
        std::fs::write(&file, text.replacen("user-3", "user-9", 1)).unwrap();
        let mut index = TrailIndex::open(altered.path()).unwrap();
        assert!(index.catch_up(altered.path(), None).is_err());
        assert_eq!(column_indexes(&index), 8);
        let (_, held, _) = index.cursor().unwrap().unwrap();
        assert_eq!(held, seq - 1, "it holds the lines before the fault");
    }
}
