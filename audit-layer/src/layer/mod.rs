//! The middleware: [`AuditLayer`] wraps a service in [`Audit`], which records one event per
//! request.
//!
//! Exactly one event per request, whatever happens:
//!
//! | what happens | `outcome` | `response.status` | `reason` |
//! |---|---|---|---|
//! | a response (1xx-3xx) | `success` | its status | |
//! | a response 401 or 403 | `denied` | its status | |
//! | another 4xx response | `failure` | its status | |
//! | a 5xx response | `error` | its status | |
//! | the service returns `Err` | `error` | absent | the error's text |
//! | the handler panics | `error` | 500 | `panic: <message>` |
//! | the future is dropped first (client gone, timeout) | `cancelled` | absent | |
//!
//! An error's text and a panic's message are written by code that did not mean them for the
//! trail, and can quote a URL or a connection string: the values that follow a secret name
//! (`api_key=...`, `password: "..."`) or a credentials header (`Authorization: ...`), a URL's
//! password and `Bearer`/`Basic` credentials are `[REDACTED]` in every `reason`.
//!
//! The event is queued when the response *head* is ready: the layer does not wrap or wait
//! for the body, so streaming responses are not slowed down.
//!
//! # Panics and tower-http's `CatchPanic`
//!
//! By default the layer answers a panicking handler itself with an empty `500` (the response
//! body type must implement `Default`, as axum's `Body` and every tower-http body do), records
//! the panic message as the `reason`, and the server keeps serving. With tower-http's
//! `CatchPanicLayer` *inside* the audit layer, `CatchPanic` answers first and the event
//! records its `500` without the message; placed *outside*, it never sees the panic.
//! [`catch_panics(false)`](crate::AuditTrailBuilder::catch_panics) records the panic and then
//! lets it unwind, for applications that rely on an outer handler.
//!
//! Should capturing the request itself panic (a bug in this crate), the request is served
//! all the same, and its event records only what no bug could leave unredacted: the method,
//! the matched route as the path, the connection's peer, the request id, the actor from the
//! extensions or the resolver, the response. Its `reason` ends with `the audit layer failed
//! to capture the request (a bug; its panic is in the server's log)`: not the panic's
//! message, which could quote the request's text.
//!
//! # Where to put the layer
//!
//! `Router::layer(audit.layer())` wraps every route and the fallback, and sees the matched
//! route pattern (`request.route`). Wrapping the whole router from outside
//! (`ServiceBuilder::new().layer(audit.layer()).service(router)`) also records requests that
//! no route matched, but cannot see route patterns.
//!
//! # Example
//!
#![cfg_attr(feature = "axum", doc = "```")]
#![cfg_attr(not(feature = "axum"), doc = "```ignore")]
//! use audit_layer::{AuditTrail, Outcome};
//! use audit_layer::sink::MemorySink;
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = MemorySink::new();
//! let audit = AuditTrail::builder().sink(sink.clone()).build()?;
//! let app = Router::new()
//!     .route("/secret", get(|| async { StatusCode::FORBIDDEN }))
//!     .layer(audit.layer());
//!
//! let response = app.oneshot(Request::get("/secret").body(Body::empty())?).await?;
//! assert!(response.headers().contains_key("x-request-id"));
//! audit.flush().await?;
//!
//! let event = &sink.request_events()[0];
//! assert_eq!(event.outcome, Outcome::Denied);
//! assert_eq!(event.request.as_ref().unwrap().route.as_deref(), Some("/secret"));
//! # audit.shutdown().await?;
//! # Ok(()) }
//! ```

pub(crate) mod client_ip;
pub(crate) mod config;
pub(crate) mod context;
mod future;
mod record;
pub(crate) mod request_id;
mod service;
pub(crate) mod shared;

pub use self::client_ip::{ForwardedHeader, TrustedProxies};
pub use self::future::{AUDIT_ERROR_HEADER, ResponseFuture};
#[cfg(feature = "axum")]
pub(crate) use self::record::matched_route;
pub use self::service::{Audit, AuditLayer};
