//! The file trail: a tamper-evident trail of one event per line, the system of record.
//!
//! - **Files**: `audit-YYYY-MM-DD.jsonl` per UTC day of writing, `audit-YYYY-MM-DD.N.jsonl`
//!   when a day's file reaches the size limit; closed files optionally gzipped. The directory
//!   is created with mode `0700` and files with `0600`.
//! - **Chain**: every line carries `seq`, `prev_hash` and `hash` ([`link_hash`]); the
//!   chain continues across files and restarts.
//! - **Checkpoints**: every N events or T seconds, at each rotation and at shutdown, a signed
//!   checkpoint goes to `checkpoints.jsonl` ([`Checkpoint`]).
//! - **One writer**: the sink holds an exclusive lock on `audit.lock` in the directory while
//!   it is open; a second sink on the same directory, in this process or another, fails to
//!   open ([`std::io::ErrorKind::ResourceBusy`]). The kernel releases the lock when the
//!   process ends, so a crash leaves nothing to remove. A lock held by this same process is
//!   waited for up to a quarter of a second first: a child process being started keeps a
//!   copy of the lock until it runs its program, which would otherwise fail a restart.
//! - **Recovery**: a torn last line left by a crash is moved aside into a `.torn` file at
//!   start, and a `system` event `audit.recovery` records it.
//! - **Preallocation** (off by default): the file being written can be zero-filled ahead
//!   of its last line, so that syncs need not record a new file size
//!   ([`JsonlFileSinkBuilder::preallocate`]); the zeros are cut off when the file closes.
//! - **Retention**: files older than the retention age (365 days by default) or beyond the
//!   size budget are deleted once a checkpoint covers them, and each purge is recorded as a
//!   `system` event `audit.retention.purge`, so the trail still verifies.
//!
//! Each batch is one `write`; a failed write is undone (the file is truncated back and the
//! chain rewound) so the writer's retry does not duplicate half a batch. Verify a trail with
//! `audit verify DIR` or [`verify_trail`].
//!
//! # Example
//!
//! ```
//! use audit_layer::AuditTrail;
//! use audit_layer::file::{JsonlFileSink, VerifyOptions, verify_trail};
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let audit = AuditTrail::builder().sink(JsonlFileSink::new(dir.path())).build()?;
//! let app = Router::new().route("/hello", get(|| async { "hello" })).layer(audit.layer());
//!
//! app.oneshot(http::Request::get("/hello").body(axum::body::Body::empty())?).await?;
//! audit.shutdown().await?;
//!
//! let report = verify_trail(dir.path(), &VerifyOptions::default())?;
//! assert_eq!(report.events, 3); // audit.start, the request, audit.stop
//! assert!(report.checkpoints >= 1);
//! assert_eq!(report.unsealed, 0); // shutdown seals the trail
//! # Ok(()) }
//! ```

mod active;
pub(crate) mod chain;
mod checkpoint;
mod clock;
mod copy;
pub(crate) mod layout;
mod lock;
pub(crate) mod mirror;
mod private;
mod progress;
mod query;
mod reader;
mod recovery;
mod removal;
mod retention;
mod sink;
mod trail;
mod verify;

pub(crate) use self::chain::parse_line;
pub use self::chain::{ChainKey, GENESIS, LinkHash, link_hash};
pub use self::checkpoint::{Checkpoint, CheckpointKey, KeyError, PublicKey};
pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::copy::{CopyCheck, CopyReport};
pub use self::mirror::{CheckpointMirror, DirectoryMirror};
pub use self::query::{
    Filter, Page, for_each_event, lines_end, search_text, search_words, trail_files,
};
pub(crate) use self::reader::line_at;
pub use self::reader::{TrailLine, TrailReader};
pub use self::sink::{
    GENERATED_KEY, GENERATED_PUBLIC_KEY, JsonlFileSink, JsonlFileSinkBuilder, LOCK_FILE, TRAIL_ID,
};
pub use self::verify::{Fault, FaultKind, VerifyOptions, VerifyReport, verify_trail};

pub(crate) use self::progress::TrailSource;

/// What the `audit` command shares with the library. Not a public API.
#[doc(hidden)]
pub use self::query::{
    display_json_line, display_text, parse_ip, parse_time, table_header, table_row,
};
