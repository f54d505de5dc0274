//! The JSON Lines file sink: one event per line, one file per UTC day.
//!
//! Files are named `audit-YYYY-MM-DD.jsonl` after the UTC day on which the batch was
//! written (an event's `time` is when its request *arrived*, so a request that straddles
//! midnight is in the next day's file). The directory is created with mode `0700` and files
//! with `0600`: an audit trail is read by auditors, not by every local user. Each batch is
//! one `write` to the file, so the kernel has it when the batch returns.
//!
//! A failed write is undone (the file is truncated back to its previous length) so that
//! the writer's retry does not duplicate half a batch; if even that fails, the next write
//! starts on a fresh line, so a torn line can never swallow the next event.
//!
//! # Example
//!
//! ```
//! use audit_layer::{AuditTrail, JsonlFileSink};
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let audit = AuditTrail::builder().sink(JsonlFileSink::new(dir.path())?).build()?;
//! let app = Router::new().route("/hello", get(|| async { "hello" })).layer(audit.layer());
//!
//! app.oneshot(http::Request::get("/hello").body(axum::body::Body::empty())?).await?;
//! audit.shutdown().await?;
//!
//! let file = std::fs::read_dir(dir.path())?.next().unwrap()?.path();
//! let text = std::fs::read_to_string(file)?;
//! assert_eq!(text.lines().count(), 1);
//! assert!(text.contains(r#""path":"/hello""#));
//! # Ok(()) }
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{BoxFuture, Sink, SinkError};
use crate::clock::{Clock, SystemClock};
use crate::event::{AuditEvent, Timestamp};

/// Appends events as JSON Lines to a file per UTC day in one directory.
pub struct JsonlFileSink {
    dir: PathBuf,
    name: String,
    clock: Arc<dyn Clock>,
    current: Option<DayFile>,
    buf: Vec<u8>,
    /// A failed write may have left a partial line that could not be removed.
    needs_newline: bool,
}

struct DayFile {
    day: String,
    file: File,
    len: u64,
}

impl JsonlFileSink {
    /// A sink writing into `dir`, created (mode `0700`) if missing.
    ///
    /// Fails if the directory cannot be created or is not a directory, so a misconfigured
    /// path is reported at start-up rather than at the first event.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir)?;
        Ok(Self {
            name: format!("jsonl:{}", dir.display()),
            dir,
            clock: Arc::new(SystemClock),
            current: None,
            buf: Vec::with_capacity(64 * 1024),
            needs_newline: false,
        })
    }

    /// Uses `clock` to choose the day file (for tests of day rotation).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The directory of the trail.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that events written at `time` go to.
    pub fn file_for(&self, time: SystemTime) -> PathBuf {
        self.dir.join(file_name(&day_of(time)))
    }

    /// Makes `current` the file of `day`, opening it if needed.
    fn open_day(&mut self, day: String) -> io::Result<()> {
        match &mut self.current {
            Some(current) if current.day == day => {}
            slot => {
                let mut file = open_private(&self.dir.join(file_name(&day)))?;
                let len = file.metadata()?.len();
                if len > 0 && !ends_with_newline(&mut file, len)? {
                    self.needs_newline = true;
                }
                *slot = Some(DayFile { day, file, len });
            }
        }
        Ok(())
    }

    /// Appends `buf` to the current day's file, all or nothing as far as possible.
    fn append_buf(&mut self) -> io::Result<()> {
        let day = day_of(self.clock.now());
        self.open_day(day)?;
        let needs_newline = self.needs_newline;
        let Some(current) = self.current.as_mut() else {
            return Err(io::Error::other("no day file is open"));
        };
        let prefix: &[u8] = if needs_newline { b"\n" } else { b"" };
        let buf = &self.buf;
        let result = current
            .file
            .write_all(prefix)
            .and_then(|()| current.file.write_all(buf));
        match result {
            Ok(()) => {
                current.len += (prefix.len() + buf.len()) as u64;
                self.needs_newline = false;
                Ok(())
            }
            Err(error) => {
                // Undo the partial batch so the retry does not duplicate it.
                if current.file.set_len(current.len).is_err() {
                    self.needs_newline = true;
                }
                Err(error)
            }
        }
    }
}

impl Sink for JsonlFileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.buf.clear();
            for event in events {
                serde_json::to_writer(&mut self.buf, event)?;
                self.buf.push(b'\n');
            }
            self.append_buf()?;
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            if let Some(current) = self.current.take() {
                current.file.sync_all()?;
            }
            Ok(())
        })
    }
}

impl fmt::Debug for JsonlFileSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlFileSink")
            .field("dir", &self.dir)
            .field("day", &self.current.as_ref().map(|c| &c.day))
            .finish_non_exhaustive()
    }
}

/// `YYYY-MM-DD` of a time, UTC.
fn day_of(time: SystemTime) -> String {
    let mut text = Timestamp::from(time).to_string();
    text.truncate(10);
    text
}

fn file_name(day: &str) -> String {
    format!("audit-{day}.jsonl")
}

fn ends_with_newline(file: &mut File, len: u64) -> io::Result<bool> {
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "audit directory {} exists and is not a directory",
                dir.display()
            ),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            target: "audit",
            dir = %dir.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "audit directory is readable by other users; 0700 is recommended"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if !fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "audit directory {} exists and is not a directory",
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Actor;
    use crate::clock::ManualClock;
    use crate::event::{Category, Outcome};
    use std::time::{Duration, UNIX_EPOCH};

    fn event(action: &'static str) -> AuditEvent {
        AuditEvent::new(
            Category::System,
            action,
            Outcome::Success,
            Actor::service("t"),
        )
    }

    #[tokio::test]
    async fn one_file_per_utc_day() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(86_400 - 1));
        let mut sink = JsonlFileSink::new(dir.path())
            .unwrap()
            .with_clock(clock.clone());
        sink.write_batch(&[event("a")]).await.unwrap();
        clock.advance(Duration::from_secs(1));
        sink.write_batch(&[event("b"), event("c")]).await.unwrap();
        let first = fs::read_to_string(dir.path().join("audit-1970-01-01.jsonl")).unwrap();
        let second = fs::read_to_string(dir.path().join("audit-1970-01-02.jsonl")).unwrap();
        assert_eq!(first.lines().count(), 1);
        assert_eq!(second.lines().count(), 2);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_not_glued_to_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(UNIX_EPOCH);
        fs::write(dir.path().join("audit-1970-01-01.jsonl"), b"{\"partial").unwrap();
        let mut sink = JsonlFileSink::new(dir.path()).unwrap().with_clock(clock);
        sink.write_batch(&[event("a")]).await.unwrap();
        let text = fs::read_to_string(dir.path().join("audit-1970-01-01.jsonl")).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "{\"partial");
        assert!(serde_json::from_str::<AuditEvent>(lines[1]).is_ok());
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, b"x").unwrap();
        let err = JsonlFileSink::new(&path).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
