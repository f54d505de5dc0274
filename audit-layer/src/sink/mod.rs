//! Where events go: the [`Sink`] trait and the sinks that ship with the crate.
//!
//! The trail's writer hands events to every sink in batches, in the order they were accepted.
//! Sinks run on the trail's own writer thread, never on the application's runtime workers,
//! so a sink may do blocking file I/O.
//!
//! | sink | for |
//! |---|---|
//! | [`JsonlFileSink`](crate::file::JsonlFileSink) | the durable trail: one JSON object per line, a file per UTC day |
//! | [`PostgresSink`](postgres::PostgresSink) (feature `postgres`) | queries: a row per event in a PostgreSQL table |
//! | [`NatsSink`](nats::NatsSink) (feature `nats`) | streaming: a message per event on a NATS JetStream stream |
//! | [`TracingSink`] | teams that already ship `tracing` output |
//! | [`MemorySink`] | tests |
//!
//! # Writing a sink
//!
//! ```
//! use audit_layer::AuditEvent;
//! use audit_layer::sink::{BoxFuture, Sink, SinkError};
//!
//! /// Counts events; a real sink would send them somewhere.
//! #[derive(Debug, Default)]
//! struct CountingSink {
//!     seen: usize,
//! }
//!
//! impl Sink for CountingSink {
//!     fn name(&self) -> &str {
//!         "counting"
//!     }
//!
//!     fn write_batch<'a>(&'a mut self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), SinkError>> {
//!         Box::pin(async move {
//!             self.seen += events.len();
//!             Ok(())
//!         })
//!     }
//! }
//! # let _ = audit_layer::AuditTrail::builder().sink(CountingSink::default());
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::BoxError;
use crate::event::AuditEvent;

mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
mod tracing;

pub use self::memory::MemorySink;
pub use self::tracing::TracingSink;

/// A boxed, sendable future, as [`Sink`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for audit events.
///
/// # Contract
///
/// - `write_batch` gets the events in acceptance order. `Ok` means every event of the batch is
///   stored as durably as this sink promises.
/// - `Err` means the batch must be offered again: the writer retries it, with backoff, until
///   it succeeds; no event is skipped. A sink must therefore leave no part of a failed batch
///   visible (the file sink truncates what it wrote), or be idempotent by event id.
/// - `open` connects ahead of the first batch when the application asks for a checked start
///   ([`AuditTrailBuilder::build_checked`](crate::AuditTrailBuilder::build_checked)); a sink
///   must still connect on its own when a batch finds it unconnected.
/// - `sync` makes written events durable; `tick` is called periodically; `close` once, at
///   shutdown, after the last batch.
pub trait Sink: Send + 'static {
    /// A short name for logs, errors and metric labels (`jsonl:/var/log/audit`). The
    /// trail reads it once, when it is built, for its metric labels: keep it fixed.
    fn name(&self) -> &str;

    /// Stores a batch of events.
    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Makes every event written so far durable (`fdatasync` for a file). Called after a
    /// batch that holds an event whose response waits for it, and at least every sync
    /// interval otherwise. The default does nothing: for sinks whose writes are durable
    /// when they return (a database commit).
    fn sync(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    /// Connects to or opens what the sink writes into (a table, a stream, a trail
    /// directory), creating it if need be, as its first batch would: a start-up check that
    /// fails at once with the reason, rather than at the first event. The default does
    /// nothing: for sinks with nothing to reach.
    fn open(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    /// Periodic work, called by the writer about once a second (a due checkpoint). The
    /// default does nothing.
    fn tick(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    /// Releases resources at shutdown, after the last batch. The default does nothing.
    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

impl fmt::Debug for dyn Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("name", &self.name()).finish()
    }
}

/// A sink's failure to store a batch.
#[derive(Debug)]
pub struct SinkError {
    source: BoxError,
}

impl SinkError {
    /// Wraps any error.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self {
            source: error.into(),
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl From<std::io::Error> for SinkError {
    fn from(error: std::io::Error) -> Self {
        Self::new(error)
    }
}

impl From<serde_json::Error> for SinkError {
    fn from(error: serde_json::Error) -> Self {
        Self::new(error)
    }
}
