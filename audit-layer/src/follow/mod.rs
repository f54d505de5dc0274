//! Followers: stores that copy the file trail from a cursor of their own, so that a store's
//! outage never becomes the application's.
//!
//! The file trail ([`JsonlFileSink`](crate::file::JsonlFileSink)) is the system of record:
//! an event whose response waits for durability waits for the file only. Each follower
//! reads the trail in order on a thread of its own, from the cursor it keeps where it ships
//! (the seq after the last line it holds), and ships lines in batches, at least once, made
//! exactly once by the line's seq and event id. A store that is down only makes its
//! follower fall behind: nothing waits for it, memory stays bounded (the trail on disk is
//! the backlog), and it catches up from its cursor when the store returns, also after a
//! restart of the application.
//!
//! - Only lines synced to disk are shipped, each checked against the one before it (see
//!   [`TrailReader`](crate::file::TrailReader)). A line that does not verify (torn,
//!   altered) stops the follower there: it never ships past it, the trail's health says so,
//!   and an `alert` event `audit.follower.stopped` is recorded.
//! - Lag, per follower, in events and seconds: [`AuditTrail::followers`](crate::AuditTrail::followers),
//!   [`AuditTrail::health`](crate::AuditTrail::health) (Degraded while a follower is retrying,
//!   stopped, or further behind than the threshold), the metrics `audit_follower_*`, and
//!   `audit followers DIR` (each follower writes its status into `DIR/followers/`).
//! - Retention spares what a follower has not shipped, unless told otherwise
//!   ([`JsonlFileSinkBuilder::retention_spares_followers`](crate::file::JsonlFileSinkBuilder::retention_spares_followers)).
//!
//! [`PostgresSink`](crate::sink::postgres::PostgresSink) and
//! [`NatsSink`](crate::sink::nats::NatsSink) are followers when added with
//! [`AuditTrailBuilder::follower`](crate::AuditTrailBuilder::follower), and sinks, written to
//! by the trail's writer, when added with [`sink`](crate::AuditTrailBuilder::sink): the
//! direct mode, for a deployment with no persistent local disk, where the remote store is
//! the durable record and its outage holds back the trail (then the failure policy
//! applies).
//!
//! # Writing a follower
//!
//! ```
//! use audit_layer::file::{JsonlFileSink, TrailLine};
//! use audit_layer::follow::{Cursor, Follower};
//! use audit_layer::sink::{BoxFuture, SinkError};
//! use audit_layer::AuditTrail;
//!
//! /// Keeps the lines in memory; a real follower ships them, and its cursor is where they
//! /// are stored.
//! #[derive(Debug, Default)]
//! struct Lines {
//!     lines: Vec<TrailLine>,
//! }
//!
//! impl Follower for Lines {
//!     fn name(&self) -> &str {
//!         "lines"
//!     }
//!
//!     fn cursor<'a>(&'a mut self, _trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
//!         Box::pin(async move {
//!             Ok(match self.lines.last() {
//!                 Some(last) => Cursor::after(last.seq, last.hash.clone()),
//!                 None => Cursor::empty(),
//!             })
//!         })
//!     }
//!
//!     fn ship<'a>(
//!         &'a mut self,
//!         _trail: &'a str,
//!         lines: &'a [TrailLine],
//!     ) -> BoxFuture<'a, Result<(), SinkError>> {
//!         Box::pin(async move {
//!             self.lines.extend_from_slice(lines);
//!             Ok(())
//!         })
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let audit = AuditTrail::builder()
//!     .sink(JsonlFileSink::new(dir.path()))
//!     .follower(Lines::default())
//!     .build()?;
//! # drop(audit);
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::Path;

use crate::file::{Checkpoint, TrailLine};
use crate::sink::{BoxFuture, SinkError};

mod checkpoints;
#[cfg(any(feature = "postgres", feature = "nats"))]
pub(crate) mod fields;
#[cfg(feature = "siem")]
mod local_cursor;
mod runner;
mod status;

pub use self::status::{FOLLOWERS_DIR, FollowerState, FollowerStatus, read_follower_statuses};

#[cfg(feature = "siem")]
pub(crate) use self::local_cursor::LocalCursor;
pub(crate) use self::runner::{FollowerSettings, Followers, Recorder};

/// A store that copies the file trail, from a cursor it keeps where it ships. See the
/// [module docs](self).
///
/// # Contract
///
/// - `trail` is the trail's id ([`JsonlFileSinkBuilder::trail_id`](crate::file::JsonlFileSinkBuilder::trail_id)):
///   a store may hold the lines of many trails, each under its own id.
/// - `cursor` reads, from the store, the seq and hash of the last line it holds of the
///   trail ([`Cursor::empty`] for none). It is called before the first batch and after
///   every failed one: the store, not the follower's memory, says where to go on from, so
///   a batch whose commit went through unseen is not shipped twice. The hash is checked
///   against the trail's own line: a store that holds another trail under this id is a
///   fault, not a place to go on from.
/// - `ship` stores lines that follow the cursor, in order. `Ok` means they are stored
///   as durably as the store promises and the cursor has moved past them. A store that
///   cannot make a batch atomic must make it idempotent (by `seq` or the event id).
/// - Both run on the follower's own thread, never on the application's runtime; they may
///   block briefly, and should bound their own waits (a timeout per batch).
pub trait Follower: Send + 'static {
    /// A short name for logs, metric labels and status (`postgres:db/audit_events`). Read
    /// once, when the trail is built.
    fn name(&self) -> &str;

    /// The last line of `trail` the store holds.
    fn cursor<'a>(&'a mut self, trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>>;

    /// Stores `lines` of `trail`, which follow the cursor, in order.
    fn ship<'a>(
        &'a mut self,
        trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Whether the store keeps the trail's signed checkpoints too (a collector checks the
    /// lines it receives against them). Default `false`: a follower that says `true` gets
    /// each checkpoint through [`ship_checkpoints`](Self::ship_checkpoints) once the lines
    /// it covers are shipped. Read once, when the follower starts.
    fn takes_checkpoints(&self) -> bool {
        false
    }

    /// The `seq_to` of the last checkpoint of `trail` the store holds, `None` for none.
    /// Called after [`cursor`](Self::cursor) when the follower takes checkpoints.
    fn checkpoint_cursor<'a>(
        &'a mut self,
        trail: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, SinkError>> {
        let _ = trail;
        Box::pin(async { Ok(None) })
    }

    /// Stores `checkpoints` of `trail`, in order, each after the last the store holds and
    /// covering only lines already shipped.
    fn ship_checkpoints<'a>(
        &'a mut self,
        trail: &'a str,
        checkpoints: &'a [Checkpoint],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let _ = (trail, checkpoints);
        Box::pin(async { Ok(()) })
    }

    /// Called once, on the follower's thread, before the first [`cursor`](Self::cursor),
    /// with the trail's directory: a follower whose receiver cannot say what it holds keeps
    /// its cursor there. An error is retried as a failed cursor read is. The default does
    /// nothing.
    fn start(&mut self, trail_dir: &Path) -> Result<(), SinkError> {
        let _ = trail_dir;
        Ok(())
    }

    /// Releases resources when the trail stops. The default does nothing.
    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Where a store's copy of a trail ends, from [`Follower::cursor`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cursor {
    /// The seq of the first line the store does not hold.
    pub next_seq: u64,
    /// The hash of the line before it, which the store holds; `None` for an empty store.
    pub last_hash: Option<String>,
}

impl Cursor {
    /// A store that holds no line of the trail.
    pub fn empty() -> Self {
        Self {
            next_seq: 0,
            last_hash: None,
        }
    }

    /// A store whose last line of the trail is `seq`, hashed `hash`.
    pub fn after(seq: u64, hash: impl Into<String>) -> Self {
        Self {
            next_seq: seq + 1,
            last_hash: Some(hash.into()),
        }
    }
}

impl fmt::Debug for dyn Follower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("name", &self.name())
            .finish()
    }
}
