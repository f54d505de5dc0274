//! Complete, tamper-evident audit trails for axum and tower applications, with one layer.
//!
//! [`AuditLayer`](layer::AuditLayer) records, for every request, who did what, from where, when, and how it
//! ended, as one structured, versioned [`AuditEvent`] (`audit/1`). Events go through a
//! bounded queue to a background writer that hands them to [sinks](sink): JSON Lines files,
//! `tracing`, memory, or your own. The request path never does I/O, and no event is silently
//! lost.
//!
//! # Quickstart
//!
//! ```no_run
//! use audit_layer::AuditTrail;
//! use audit_layer::file::JsonlFileSink;
//! use axum::{Router, routing::get};
//! use std::net::SocketAddr;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let audit = AuditTrail::builder()
//!         .sink(JsonlFileSink::new("./audit-log"))
//!         .trusted_proxies(["10.0.0.0/8"])
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
//! The event flows one way: the [`layer`] captures a request, [`redact`] scrubs the event,
//! the delivery queue and writer behind [`AuditTrail`] hand it to the [`sink`]s, and the
//! [`file`](mod@file) trail is the tamper-evident record of it.
//!
//! - At the root: what an application writes: [`AuditTrail`] and its builder, the
//!   [`AuditContext`] extractor, [`Actor`], [`AuditEvent`] for events that are not a
//!   request's, the policies, [`Auditable`] and `#[sensitive]`.
//! - [`layer`]: the middleware ([`AuditLayer`](layer::AuditLayer)), trusted proxies, actor
//!   resolvers.
//! - [`event`]: the parts of the `audit/1` schema.
//! - [`redact`]: what is never recorded, and bounds.
//! - [`sink`]: the [`Sink`](sink::Sink) trait, and the memory, `tracing`, PostgreSQL and
//!   NATS sinks.
//! - [`file`](mod@file): the JSON Lines trail: chain, checkpoints, verification, reading it back.
//! - [`sensitive`](mod@sensitive): before/after state of admin handlers.
//! - [`detect`]: detectors that raise `alert` events (brute-force logins, privilege grants).
//! - [`testing`]: a sink that fails on command, for testing your failure handling.
//!
//! Imports run the way the event flows: `event` and `redact` below everything; `layer`
//! (capture) above them; `sensitive` above `layer` (its handlers use the request's
//! context); the delivery queue, admission and writer below `layer`, and `sink` and `file`
//! below them. Only the trail's handle and builder, which put the pieces together, reach
//! across.
//!
//! # Cargo features
//!
//! - `axum` (default): reads axum's `ConnectInfo` and `MatchedPath`; [`AuditContext`] and
//!   [`RequestId`] are extractors.
//! - `derive` (default): re-exports the `audit-derive` macros.
//! - `postgres`: [`PostgresSink`](sink::postgres::PostgresSink), a row per event in a PostgreSQL table.
//! - `nats`: [`NatsSink`](sink::nats::NatsSink), a message per event on a NATS JetStream stream.
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
        feature = "nats",
        feature = "index"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]
// The library must not panic on bad input; tests may unwrap (see clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod auth;
#[cfg(feature = "collector")]
pub mod collect;
pub mod coverage;
mod delivery;
pub mod detect;
mod error;
pub mod event;
pub mod file;
pub mod follow;
pub mod format;
#[cfg(feature = "index")]
pub mod index;
pub mod layer;
pub mod merkle;
pub mod redact;
pub mod sensitive;
#[cfg(feature = "siem")]
pub mod siem;
pub mod sink;
pub mod testing;
#[cfg(any(feature = "postgres", feature = "siem"))]
mod tls;
#[cfg(feature = "viewer")]
pub mod viewer;

pub use self::delivery::policy::{Durability, FailurePolicy, Overflow};
pub use self::delivery::{AuditStats, AuditTrail, AuditTrailBuilder, Health};
pub use self::error::{AuditError, BoxError, ConfigError};
pub use self::event::actor::{Actor, ActorKind};
pub use self::event::model::{AuditEvent, Category, Outcome};
pub use self::layer::context::AuditContext;
pub use self::layer::request_id::RequestId;
pub use self::sensitive::auditable::Auditable;

/// `#[derive(Auditable)]`: see the [`sensitive`](mod@crate::sensitive) module.
#[cfg(feature = "derive")]
pub use audit_derive::Auditable;
/// `#[sensitive(...)]` on an axum handler: see the [`sensitive`](mod@crate::sensitive) module.
#[cfg(all(feature = "derive", feature = "axum"))]
pub use audit_derive::sensitive;

/// What generated code uses. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::sensitive::auditable::Auditable;
    pub use crate::sensitive::{
        AuditSnapshot, FieldRef, Snapshot, SnapshotValue, ViaAuditable, ViaAuditableCollection,
        ViaSerialize,
    };
    pub use serde::Serialize;

    #[cfg(feature = "axum")]
    pub use crate::sensitive::handler::{
        CaptureBody, Pending, SensitiveMeta, SensitiveOutput, SensitiveRoute, owned_key, typed,
    };
    #[cfg(feature = "axum")]
    pub use axum::response::{IntoResponse, Response};
}
