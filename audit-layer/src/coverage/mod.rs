//! Route coverage: which sensitive-looking routes record no more than their request, before
//! they ship.
//!
//! The router and its report need the `axum` feature (on by default); the trail scan and
//! the rules do not.
//!
//! axum does not list a router's routes, so this module offers the smallest honest change
//! that does: [`Router`] and its [`get`], [`post`], [`put`], [`patch`], [`delete`], …
//! are axum's, with an inventory. Swap the imports, and every `route`, `nest` and `merge` is
//! recorded with its methods and how its handler is audited, known from the handler's
//! extractors at compile time (a `#[sensitive]` handler takes a hidden extractor first; a
//! manual one takes [`AuditContext`](crate::AuditContext)). No traffic is needed.
//!
//! | Surface | What it gives |
//! |---|---|
//! | [`Router::coverage`] | a [`CoverageReport`] to assert on: `assert!(report.gaps().is_empty(), "{report}")` |
//! | [`Router::into_router`] | axum's router, after a warning in the log per gap (at start-up) |
//! | `serde_json::to_string(&report)` | the report as JSON, to serve to admins |
//! | [`TrailCoverage::scan`], `audit coverage DIR` | what the trail shows: sensitive-looking requests recorded as plain requests, and authentication events without a source IP |
//!
//! A gap is a route that [`CoverageRules`] finds sensitive-looking (state-changing under
//! `/admin`, or naming users, roles, passwords, keys, tokens, sessions, config, settings,
//! balance, payment, transfer or export) and that is neither `#[sensitive]`, manual, nor
//! exempted with a reason ([`MethodRouter::exempt`], [`CoverageRules::exempt`]).
//! Services (`route_service`, `nest_service`) are opaque: their handlers cannot be seen.
//!
//! Why not the alternatives: an OpenAPI document lists routes only as well as it is kept up
//! to date, and does not know which handlers audit; a registry of `#[sensitive]` handlers
//! knows those but not the routes that forgot the attribute, which are the point; what the
//! layer sees at run time covers only the routes that were called, which is what
//! [`TrailCoverage`] adds after the fact.

#[cfg(feature = "axum")]
mod report;
#[cfg(feature = "axum")]
mod router;
#[cfg(feature = "axum")]
mod routing;
mod rules;
mod trail;

#[cfg(feature = "axum")]
pub use report::{CoverageReport, RouteCoverage, RouteStatus};
#[cfg(feature = "axum")]
pub use router::Router;
#[cfg(feature = "axum")]
pub use routing::{MethodRouter, any, delete, get, head, options, patch, post, put};
pub use rules::CoverageRules;
pub use trail::{AuthWithoutIp, TrailCoverage, UnauditedRequests};
