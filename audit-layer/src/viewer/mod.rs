//! The audit viewer: a router an application nests behind its own admin guard, with
//! server-rendered pages of the trail, no build step and no external resource.
//!
//! ```
//! use audit_layer::viewer::Viewer;
//!
//! let admin_only: axum::Router = axum::Router::new()
//!     .nest("/admin/audit", Viewer::new("./audit-log").router());
//! // .route_layer(your admin guard), then `.layer(audit.layer())`: the viewer records who
//! // looked at what, through the audit layer in front of it.
//! ```
//!
//! [`AuditTrail::viewer`](crate::AuditTrail::viewer) gives the viewer of a running trail's
//! own files, with its chain key.
//!
//! Pages: the events, newest first, paged by cursor, with filters for actor, action,
//! outcome, category, target, source IP, request id, time range and free text, all in the
//! URL so a view can be shared; and one event in full, with a sensitive event's changes
//! field by field. They read the trail's index when it has one (see
//! [`index`](crate::index)) and the files after its cursor, or the files alone.
//!
//! Every view is itself an audit event (`audit.view`, with the view in its details): the
//! viewer needs the audit layer in front of it, and answers 500 without it. Everything
//! shown is escaped, bidi and control characters included, and every response carries a
//! Content-Security-Policy that allows nothing but the viewer's own style sheet.

mod chain;
mod event;
mod events;
mod export;
mod html;
mod live;
mod params;
mod status;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;

use crate::coverage::CoverageReport;
use crate::file::ChainKey;

/// The action of the audit event of each page the viewer shows.
pub const VIEW: &str = "audit.view";
/// The action of the audit event of each export.
pub const EXPORT: &str = "audit.export";

/// Records the view in the request's audit event: the viewer's every page is audited.
fn viewed(audit: &crate::AuditContext, view: &'static str) {
    audit.set_action(VIEW);
    audit.detail("view", view);
}

/// The viewer of one trail. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Viewer {
    dir: PathBuf,
    page_size: usize,
    coverage: Option<CoverageReport>,
    chain_key: Option<ChainKey>,
}

/// What every page handler gets.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    page_size: usize,
    coverage: Option<CoverageReport>,
    chain: Mutex<chain::Chain>,
}

impl Viewer {
    /// A viewer of the trail in `dir`, 50 events to a page.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            page_size: 50,
            coverage: None,
            chain_key: None,
        }
    }

    /// The HMAC key of a keyed chain, without which its links cannot be checked.
    pub fn chain_key(mut self, key: ChainKey) -> Self {
        self.chain_key = Some(key);
        self
    }

    /// The application's route report, whose gaps the status page shows.
    pub fn coverage(mut self, report: CoverageReport) -> Self {
        self.coverage = Some(report);
        self
    }

    /// Events per page (1 to 1,000).
    pub fn page_size(mut self, events: usize) -> Self {
        self.page_size = events.clamp(1, 1_000);
        self
    }

    /// The viewer's routes, to nest: `/` (the events), `/alerts`, `/actors/{id}` (a
    /// timeline), `/targets/{target}` (a history, and the state as of `?at=`),
    /// `/events/{seq}` (one event), `/export.csv` and `/export.ndjson` (a filtered view),
    /// `/status` (followers, coverage) and `/viewer.css`.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let shared = Arc::new(Shared {
            dir: self.dir,
            page_size: self.page_size,
            coverage: self.coverage,
            chain: Mutex::new(chain::Chain::new(self.chain_key)),
        });
        Router::new()
            .route("/", get(events::all))
            .route("/alerts", get(events::alerts))
            .route("/actors/{actor}", get(events::actor))
            .route("/targets/{target}", get(events::target))
            .route("/events/{seq}", get(event::page))
            .route("/export.csv", get(export::csv))
            .route("/export.ndjson", get(export::ndjson))
            .route("/status", get(status::page))
            .route("/live", get(live::stream))
            .route("/viewer.css", get(style))
            .route("/viewer.js", get(script))
            .with_state(shared)
    }
}

async fn script() -> axum::response::Response {
    html::secured(
        axum::http::StatusCode::OK,
        "text/javascript; charset=utf-8",
        html::SCRIPT.to_owned(),
    )
}

async fn style() -> axum::response::Response {
    html::secured(
        axum::http::StatusCode::OK,
        "text/css; charset=utf-8",
        html::STYLE.to_owned(),
    )
}

/// Where the viewer is nested (`/admin/audit`), from the request's original URI and the one
/// the nested router sees, for links that work wherever it is.
fn base(original: &axum::http::Uri, nested: &axum::http::Uri) -> String {
    let full = original.path();
    let inner = nested.path();
    let base = if inner == "/" {
        full.strip_suffix('/').unwrap_or(full)
    } else {
        full.strip_suffix(inner).unwrap_or("")
    };
    base.to_owned()
}

/// The events page's path: the base itself (a nested router's `/`), or `/` at the root.
fn home(base: &str) -> String {
    if base.is_empty() {
        "/".to_owned()
    } else {
        base.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_what_the_nesting_stripped() {
        let uri = |text: &str| text.parse::<axum::http::Uri>().expect("uri");
        assert_eq!(base(&uri("/admin/audit"), &uri("/")), "/admin/audit");
        assert_eq!(base(&uri("/admin/audit/"), &uri("/")), "/admin/audit");
        assert_eq!(
            base(&uri("/admin/audit/events/3"), &uri("/events/3")),
            "/admin/audit"
        );
        assert_eq!(base(&uri("/events/3"), &uri("/events/3")), "");
    }
}
