//! Complete, tamper-evident audit trails for axum and tower applications, with one layer.
//!
//! [`AuditLayer`] records, for every request, who did what, from where, when, and how it
//! ended, as one structured, versioned [`AuditEvent`] (`audit/1`). Events go through a
//! bounded queue to a background writer that hands them to [sinks](sink): JSON Lines files,
//! `tracing`, memory, or your own. The request path never does I/O, and no event is silently
//! lost.
//!
//! # Quickstart
//!
//! ```no_run
//! use audit_layer::{AuditTrail, JsonlFileSink};
//! use axum::{Router, routing::get};
//! use std::net::SocketAddr;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let audit = AuditTrail::builder()
//!         .sink(JsonlFileSink::new("./audit-log")?)
//!         .trusted_proxies(["10.0.0.0/8"])?
//!         .build()?; // starts the background writer
//!
//!     let app = Router::new()
//!         .route("/hello", get(|| async { "hello" }))
//!         .layer(audit.layer());
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!         .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!         .await?;
//!     audit.shutdown().await?; // drains every queued event to the sinks
//!     Ok(())
//! }
//! ```
//!
//! # Where things are
//!
//! - [`layer`]: the middleware and what it records for each way a request can end.
//! - [`event`]: the `audit/1` schema.
//! - [`actor`]: who acted, and where the layer looks for it.
//! - [`client_ip`]: the client address, and trusted proxies.
//! - [`context`]: [`AuditContext`], for handlers to name and enrich their event.
//! - [`redact`]: what is never recorded, and bounds.
//! - [`trail`]: the queue, the writer, flush and shutdown.
//! - [`sink`]: where events go.
//! - [`detect`]: detectors that raise `alert` events (brute-force logins, privilege grants).
//!
//! # Cargo features
//!
//! - `axum` (default): reads axum's `ConnectInfo` and `MatchedPath`; [`AuditContext`] and
//!   [`RequestId`] are extractors.
//! - `derive` (default): re-exports the `audit-derive` macros.
//! - `postgres`: [`PostgresSink`](sink::postgres), a row per event in a PostgreSQL table.
//! - `nats`: [`NatsSink`](sink::nats), a message per event on a NATS JetStream stream.
//! - `cli`: the `audit` command (`verify`, `query`, `tail`).

#![cfg_attr(docsrs, feature(doc_cfg))]
// Links to items behind features resolve only when those features are on. The docs are
// built, and their links checked, with all of them (CI's workspace build; docs.rs's
// `all-features`); a build with fewer would otherwise fail on those links alone.
#![cfg_attr(
    not(all(
        feature = "axum",
        feature = "derive",
        feature = "postgres",
        feature = "nats"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]
// The library must not panic on bad input; tests may unwrap (see clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod actor;
pub mod chain;
pub mod checkpoint;
pub mod client_ip;
pub mod clock;
pub mod context;
pub mod detect;
pub mod error;
pub mod event;
pub mod layer;
pub mod policy;
pub mod query;
pub mod redact;
pub mod request_id;
pub mod sensitive;
pub mod sink;
pub mod testing;
pub mod trail;
pub mod verify;

mod config;
mod files;

pub use self::actor::{Actor, ActorKind, ResolveActor};
pub use self::client_ip::{ForwardedHeader, TrustedProxies};
pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::context::AuditContext;
pub use self::error::{AuditError, BoxError, ConfigError};
pub use self::event::{
    AuditEvent, Category, Outcome, RequestInfo, ResponseInfo, SCHEMA, Source, Timestamp,
};
pub use self::layer::{AUDIT_ERROR_HEADER, Audit, AuditLayer, ResponseFuture};
pub use self::policy::{Durability, FailurePolicy, Overflow};
pub use self::redact::SecretNames;
pub use self::request_id::RequestId;
pub use self::sensitive::{AuditSnapshot, Auditable, Snapshot};
pub use self::sink::{
    BoxFuture, JsonlFileSink, JsonlFileSinkBuilder, MemorySink, Sink, SinkError, TracingSink,
};
#[cfg(feature = "nats")]
pub use self::sink::{NatsSink, NatsSinkBuilder};
#[cfg(feature = "postgres")]
pub use self::sink::{PostgresSink, PostgresSinkBuilder};
pub use self::trail::{AuditStats, AuditTrail, AuditTrailBuilder, Health, SensitiveRouteInfo};

/// `#[derive(Auditable)]`: see the [`sensitive`](mod@crate::sensitive) module.
#[cfg(feature = "derive")]
pub use audit_derive::Auditable;
/// `#[sensitive(...)]` on an axum handler: see the [`sensitive`](mod@crate::sensitive) module.
#[cfg(all(feature = "derive", feature = "axum"))]
pub use audit_derive::sensitive;

/// What generated code uses. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::sensitive::{
        AuditSnapshot, Auditable, FieldRef, Snapshot, SnapshotValue, ViaAuditable,
        ViaAuditableCollection, ViaSerialize,
    };
    pub use serde::Serialize;

    #[cfg(feature = "axum")]
    pub use crate::sensitive::handler::{
        CaptureBody, Pending, SensitiveMeta, SensitiveOutput, SensitiveRoute, owned_key, typed,
    };
    #[cfg(feature = "axum")]
    pub use axum::response::{IntoResponse, Response};
}
