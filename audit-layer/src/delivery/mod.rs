//! The trail: a bounded queue, a background writer, and the handle that controls them.
//!
//! [`AuditTrail::builder`] configures the layer and the sinks; [`build`](AuditTrailBuilder::build)
//! starts the writer on a thread of its own and returns the [`AuditTrail`] handle.
//!
//! On the request path, an event is one `try_send` into a bounded queue: no file I/O and no
//! lock held across I/O. When the queue is full the request waits for room (backpressure);
//! nothing is dropped. The writer takes events in batches, hands each batch to every sink,
//! and retries a failing sink with backoff, keeping its events, until it recovers.
//! [`AuditTrail::flush`] waits until everything accepted before it is written;
//! [`AuditTrail::shutdown`] drains the queue and closes the sinks.
//!
//! # Example
//!
//! ```
//! use audit_layer::AuditTrail;
//! use audit_layer::file::JsonlFileSink;
//! use axum::{Router, routing::get};
//! use std::net::SocketAddr;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let audit = AuditTrail::builder()
//!     .sink(JsonlFileSink::new(dir.path()))
//!     .trusted_proxies(["10.0.0.0/8"])
//!     .skip_paths(["/health"])
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     .layer(audit.layer());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!     .with_graceful_shutdown(async { /* wait for a signal */ });
//! server.await?;
//! audit.shutdown().await?; // every queued event is in the sinks
//! # Ok(()) }
//! ```

mod admission;
mod builder;
mod gap;
mod gather;
mod handle;
pub(crate) mod policy;
mod queue;
mod slot;
mod spare;
mod writer;

pub(crate) use self::admission::{Admission, Delivered};
pub use self::builder::AuditTrailBuilder;
pub use self::handle::{AuditStats, AuditTrail, Health};
pub(crate) use self::queue::{Intake, enqueue_detached};
pub(crate) use self::spare::{EventStrings, Spare};
