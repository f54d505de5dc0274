//! A sink that keeps events in memory, for tests.
//!
//! # Example
//!
//! ```
//! use audit_layer::AuditTrail;
//! use audit_layer::sink::MemorySink;
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = MemorySink::new();
//! let audit = AuditTrail::builder().sink(sink.clone()).build()?;
//! let app = Router::new().route("/hello", get(|| async { "hello" })).layer(audit.layer());
//!
//! app.oneshot(http::Request::get("/hello").body(axum::body::Body::empty())?).await?;
//! audit.flush().await?;
//!
//! let events = sink.request_events();
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].request.as_ref().unwrap().path, "/hello");
//! # audit.shutdown().await?;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{BoxFuture, Sink, SinkError};
use crate::event::AuditEvent;

/// Keeps every event it is given; clones share the same events.
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<AuditEvent>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<AuditEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the events recorded so far, in order.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.lock().clone()
    }

    /// The events of requests recorded so far: everything but the trail's own `system`
    /// events (`audit.start`, `audit.stop`, ...).
    pub fn request_events(&self) -> Vec<AuditEvent> {
        self.events_where(|e| e.request.is_some())
    }

    /// The events recorded so far that match `predicate`.
    pub fn events_where(&self, predicate: impl Fn(&AuditEvent) -> bool) -> Vec<AuditEvent> {
        self.lock()
            .iter()
            .filter(|e| predicate(e))
            .cloned()
            .collect()
    }

    /// The events of one action (`user.role.change`).
    pub fn events_of(&self, action: &str) -> Vec<AuditEvent> {
        self.events_where(|e| e.action == action)
    }

    /// The event of the request with this id, if recorded.
    pub fn event_for_request(&self, request_id: &str) -> Option<AuditEvent> {
        self.lock()
            .iter()
            .find(|e| e.request_id() == Some(request_id))
            .cloned()
    }

    /// How many events were recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Removes and returns the events recorded so far.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.lock())
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        self.lock().extend_from_slice(events);
        Box::pin(async { Ok(()) })
    }
}
