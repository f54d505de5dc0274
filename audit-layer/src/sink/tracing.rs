//! A sink that emits one `tracing` event per audit event, for teams that already ship
//! `tracing` output to their log pipeline.
//!
//! Events have target `audit`, level INFO (WARN for `denied` and `error` outcomes), the main
//! fields as structured fields, and the whole event as JSON in the `event` field. Strings are
//! recorded with `Debug` formatting, so a control character in a value is escaped rather than
//! breaking a log line.
//!
//! This is a convenient copy of the trail, not a tamper-evident one: pair it with
//! [`JsonlFileSink`](crate::JsonlFileSink) when the trail itself matters.
//!
//! # Example
//!
//! ```
//! use audit_layer::AuditTrail;
//! use audit_layer::sink::TracingSink;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let audit = AuditTrail::builder().sink(TracingSink::new()).build()?;
//! # audit.shutdown().await?;
//! # Ok(()) }
//! ```

use super::{BoxFuture, Sink, SinkError};
use crate::event::{AuditEvent, Outcome, write_event};

/// Emits each audit event as a `tracing` event with target `audit`.
#[derive(Clone, Debug, Default)]
pub struct TracingSink {
    _private: (),
}

impl TracingSink {
    /// A new tracing sink.
    pub fn new() -> Self {
        Self::default()
    }
}

macro_rules! emit {
    ($level:expr, $event:expr, $json:expr) => {{
        let event = $event;
        let request = event.request.as_ref();
        tracing::event!(
            target: "audit",
            $level,
            id = %event.id,
            category = event.category.as_str(),
            action = ?event.action,
            outcome = event.outcome.as_str(),
            actor = ?event.actor.id,
            ip = ?event.source.as_ref().and_then(|s| s.ip),
            method = ?request.map(|r| &r.method),
            path = ?request.map(|r| &r.path),
            status = ?event.status(),
            target_resource = ?event.target,
            event = %$json,
            "audit event"
        )
    }};
}

impl Sink for TracingSink {
    fn name(&self) -> &str {
        "tracing"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for event in events {
                let mut json = Vec::with_capacity(1024);
                write_event(&mut json, event)?;
                // The encoder writes UTF-8 only.
                let json = String::from_utf8(json).map_err(SinkError::new)?;
                match event.outcome {
                    Outcome::Denied | Outcome::Error => emit!(tracing::Level::WARN, event, json),
                    _ => emit!(tracing::Level::INFO, event, json),
                }
            }
            Ok(())
        })
    }
}
