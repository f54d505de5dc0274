//! [`JsonlFileSink`] and its builder: the settings of a file trail.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::chain::ChainKey;
use super::checkpoint::CheckpointKey;
use super::clock::{Clock, SystemClock};
use super::mirror::CheckpointMirror;
use super::progress::{TrailProgress, TrailSource};
use crate::event::AuditEvent;
use crate::sink::{BoxFuture, Sink, SinkError};

use super::trail::FileTrail;

/// The name of the generated signing key in a trail directory.
pub const GENERATED_KEY: &str = "signing.key";
/// The name of the generated signing key's public half in a trail directory.
pub const GENERATED_PUBLIC_KEY: &str = "signing.pub";
/// The name of the file that holds a trail directory's id (see
/// [`JsonlFileSinkBuilder::trail_id`]).
pub const TRAIL_ID: &str = "trail.id";
/// The name of the lock file that keeps a trail directory to one writing sink at a time.
pub const LOCK_FILE: &str = "audit.lock";

/// Appends events as chained JSON Lines to the files of one trail directory.
///
/// Building it does no I/O. The trail is opened on the writer's thread by
/// [`Sink::open`] (which [`build_checked`](crate::AuditTrailBuilder::build_checked) calls,
/// to fail at start-up) or by the first batch: the directory is created, its lock
/// ([`LOCK_FILE`]) taken, a crash recovered from and the chain continued. A directory that
/// cannot be opened (not a directory, written by another sink, a trail that cannot be
/// continued) fails the sink until it can, as a sink whose server is down does.
pub struct JsonlFileSink {
    settings: JsonlFileSinkBuilder,
    name: String,
    /// The open trail, once opened.
    trail: Option<FileTrail>,
}

impl JsonlFileSink {
    /// A sink writing into `dir` with the default settings (see [`JsonlFileSinkBuilder`]).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self::builder(dir).build()
    }

    /// Configures a sink writing into `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> JsonlFileSinkBuilder {
        JsonlFileSinkBuilder {
            dir: dir.as_ref().to_path_buf(),
            clock: Arc::new(SystemClock),
            chain_key: None,
            signing_key: None,
            checkpoint_every_events: 10_000,
            checkpoint_every: Duration::from_secs(60),
            rotate_bytes: 64 * 1024 * 1024,
            gzip: false,
            retention: Some(Duration::from_secs(365 * 86_400)),
            retention_bytes: None,
            preallocate: 0,
            mirror: None,
            spare_for_followers: true,
            trail_id: None,
            progress: Arc::default(),
        }
    }

    /// The directory of the trail.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// What a follower of this trail reads, and the progress it shares with it.
    pub(crate) fn source(&self) -> TrailSource {
        TrailSource {
            dir: self.settings.dir.clone(),
            key: self.settings.chain_key.clone(),
            progress: Arc::clone(&self.settings.progress),
            spares_followers: self.settings.spare_for_followers,
        }
    }

    /// The open trail, opened first if it is not.
    fn trail(&mut self) -> io::Result<&mut FileTrail> {
        let trail = match self.trail.take() {
            Some(trail) => trail,
            None => FileTrail::open(&self.settings)?,
        };
        Ok(self.trail.insert(trail))
    }
}

/// Settings of a [`JsonlFileSink`]; every method takes and returns the builder.
#[must_use = "call `build()` to get the sink"]
#[derive(Clone)]
pub struct JsonlFileSinkBuilder {
    pub(crate) dir: PathBuf,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) chain_key: Option<ChainKey>,
    pub(crate) signing_key: Option<CheckpointKey>,
    pub(crate) checkpoint_every_events: u64,
    pub(crate) checkpoint_every: Duration,
    pub(crate) rotate_bytes: u64,
    pub(crate) gzip: bool,
    pub(crate) retention: Option<Duration>,
    pub(crate) retention_bytes: Option<u64>,
    pub(crate) preallocate: u64,
    pub(crate) mirror: Option<Arc<Mutex<dyn CheckpointMirror>>>,
    pub(crate) spare_for_followers: bool,
    pub(crate) trail_id: Option<String>,
    pub(crate) progress: Arc<TrailProgress>,
}

impl JsonlFileSinkBuilder {
    /// Makes the chain an HMAC-SHA256 chain under `key`: then whoever can write the files
    /// cannot recompute it. Verification needs the same key.
    pub fn chain_key(mut self, key: ChainKey) -> Self {
        self.chain_key = Some(key);
        self
    }

    /// The key that signs checkpoints. Without one, the key in `signing.key` in the trail
    /// directory is used, generated (with `signing.pub`) on first use: fine for a demo, but a
    /// key stored beside the trail protects it only against accidents. In production, load
    /// it from your secret store ([`CheckpointKey::from_hex`]) and keep the public key where
    /// verifiers can trust it.
    pub fn signing_key(mut self, key: CheckpointKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// A checkpoint after this many events or this much time, whichever comes first (10,000
    /// events or 60 s by default), besides those at rotation and shutdown.
    pub fn checkpoint_every(mut self, events: u64, interval: Duration) -> Self {
        self.checkpoint_every_events = events.max(1);
        self.checkpoint_every = interval;
        self
    }

    /// Starts a new file of the day when the current one would pass this size (64 MiB by
    /// default).
    pub fn rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = bytes.max(1);
        self
    }

    /// Gzips each file once it is closed (off by default).
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Deletes files whose day ended more than `age` ago (365 days by default; `None` keeps
    /// everything), once a checkpoint covers them.
    pub fn retention(mut self, age: Option<Duration>) -> Self {
        self.retention = age;
        self
    }

    /// The trail's id: what its followers file its events under (the `trail` column in
    /// PostgreSQL, a subject token in NATS), so that the trails of many instances can share
    /// one table or stream. 1 to 64 letters, digits, `-` or `_` (`web-1`).
    ///
    /// By default an id is generated when the directory is first opened and kept in its
    /// [`TRAIL_ID`] file. A trail keeps its id: opening a directory whose stored id differs
    /// fails, as does an invalid id.
    pub fn trail_id(mut self, id: impl Into<String>) -> Self {
        self.trail_id = Some(id.into());
        self
    }

    /// Whether retention spares the files that a follower of the trail has not shipped yet
    /// (`true` by default): a store that is down for long keeps the trail from shrinking,
    /// and nothing is lost. With `false`, retention deletes them on schedule and the
    /// follower records an `audit.gap` event naming what it never shipped, then goes on
    /// from the oldest event left: for a disk that must not fill whatever a store does.
    pub fn retention_spares_followers(mut self, spare: bool) -> Self {
        self.spare_for_followers = spare;
        self
    }

    /// Deletes the oldest files while the trail is larger than `bytes` (unbounded by
    /// default), once a checkpoint covers them. The file being written is never deleted.
    pub fn retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }

    /// Zero-fills the file being written this many bytes ahead of its last line (off, `0`,
    /// by default), so that most syncs leave the file's size alone.
    ///
    /// A sync of a file that grew must also write its new size: a second write to the disk
    /// before the cache flush. Over zeros already written, a sync writes only the new lines.
    /// Where requests wait for their event's sync (`#[sensitive]` handlers, logins and
    /// alerts, whose [`Durability`](crate::Durability) is `Synced` by default), each sync
    /// then returns sooner (about twice as fast on ext4; BENCHMARKS.md has the figures).
    /// The zeros are written, and synced, once per that many bytes: 1 MiB (about 1,700
    /// events) is a good value.
    ///
    /// The file being written then ends in zero bytes until it is closed: they are cut off
    /// at rotation and shutdown, and at the next start after a crash. `audit verify`,
    /// `audit tail` and [`for_each_event`](crate::file::for_each_event) skip them; tools that follow a file by its size
    /// (`tail -f`) do not see new lines until the file is closed. Lines are then written at
    /// their offset rather than appended, which is safe because the directory has one
    /// writer: a second sink on it fails to open (see [`LOCK_FILE`]).
    pub fn preallocate(mut self, bytes: u64) -> Self {
        self.preallocate = bytes;
        self
    }

    /// Publishes each checkpoint also to `mirror`, where the trail's writer cannot rewrite
    /// it: then `audit verify --against-checkpoint` detects a rollback of the trail's tail
    /// (see [`CheckpointMirror`]).
    pub fn checkpoint_mirror(mut self, mirror: impl CheckpointMirror) -> Self {
        self.mirror = Some(Arc::new(Mutex::new(mirror)));
        self
    }

    /// The clock that picks day files, ages files and times checkpoints (for tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The sink, not yet opened (see [`JsonlFileSink`]).
    pub fn build(self) -> JsonlFileSink {
        JsonlFileSink {
            name: format!("jsonl:{}", self.dir.display()),
            settings: self,
            trail: None,
        }
    }
}

impl fmt::Debug for JsonlFileSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlFileSinkBuilder")
            .field("dir", &self.dir)
            .field("keyed_chain", &self.chain_key.is_some())
            .field("checkpoint_every_events", &self.checkpoint_every_events)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("rotate_bytes", &self.rotate_bytes)
            .field("gzip", &self.gzip)
            .field("retention", &self.retention)
            .field("retention_bytes", &self.retention_bytes)
            .field("preallocate", &self.preallocate)
            .field("spare_for_followers", &self.spare_for_followers)
            .field("trail_id", &self.trail_id)
            .field(
                "mirror",
                &self.mirror.as_ref().map(|m| {
                    m.lock()
                        .map_or_else(|_| "(poisoned)".to_owned(), |m| m.name().to_owned())
                }),
            )
            .finish_non_exhaustive()
    }
}

impl Sink for JsonlFileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { self.trail().map(drop).map_err(SinkError::from) })
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.trail()?.append(events).map_err(SinkError::from) })
    }

    fn sync(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { self.trail()?.sync().map_err(SinkError::from) })
    }

    fn tick(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        // A trail not yet opened has nothing due.
        Box::pin(async move {
            match &mut self.trail {
                Some(trail) => trail.tick().map_err(SinkError::from),
                None => Ok(()),
            }
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            match &mut self.trail {
                Some(trail) => trail.close().map_err(SinkError::from),
                None => Ok(()),
            }
        })
    }
}

impl fmt::Debug for JsonlFileSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlFileSink")
            .field("dir", &self.settings.dir)
            .field("open", &self.trail.is_some())
            .finish_non_exhaustive()
    }
}
