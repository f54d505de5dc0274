//! Per-request annotations: what a handler or inner middleware adds to its request's event.
//!
//! The layer puts an [`AuditContext`] in the request extensions of every audited request;
//! with the `axum` feature it is also an extractor. Whatever is set on it before the response
//! is ready ends up in that request's event: the action name, the target, the actor, labels
//! and details. Nothing in it waits or does I/O.
//!
//! # Example
//!
//! ```
//! use audit_layer::{AuditContext, AuditTrail, MemorySink};
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//!
//! async fn export(audit: AuditContext) -> &'static str {
//!     audit.set_action("user.export");
//!     audit.detail("format", "csv");
//!     audit.detail("record_count", 3);
//!     "id,name\n"
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = MemorySink::new();
//! let audit = AuditTrail::builder().sink(sink.clone()).build()?;
//! let app = Router::new().route("/export", get(export)).layer(audit.layer());
//!
//! let request = http::Request::get("/export").body(axum::body::Body::empty())?;
//! app.oneshot(request).await?;
//! audit.flush().await?;
//!
//! let event = &sink.events()[0];
//! assert_eq!(event.action, "user.export");
//! assert_eq!(event.details.as_ref().unwrap()["record_count"], 3);
//! # audit.shutdown().await?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::actor::Actor;
use crate::event::{Category, Outcome};

/// A handle on the event of the current request, to name and enrich it.
#[derive(Clone, Debug, Default)]
pub struct AuditContext {
    annotations: Arc<Mutex<Annotations>>,
}

/// What handlers added to one request's event.
#[derive(Debug, Default)]
pub(crate) struct Annotations {
    pub(crate) action: Option<Cow<'static, str>>,
    pub(crate) category: Option<Category>,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) actor: Option<Actor>,
    pub(crate) target: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl AuditContext {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Annotations> {
        // A panic while holding this lock cannot leave the annotations half-written in a way
        // that matters more than losing them, so poisoning is ignored.
        self.annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn take(&self) -> Annotations {
        std::mem::take(&mut *self.lock())
    }

    /// Names the action (`user.role.change`) instead of `http.request`.
    pub fn set_action(&self, action: impl Into<Cow<'static, str>>) {
        self.lock().action = Some(action.into());
    }

    /// Sets the category (for example [`Category::Auth`] for a login).
    pub fn set_category(&self, category: Category) {
        self.lock().category = Some(category);
    }

    /// Overrides the outcome the response status would give (a failed login answered 401
    /// is a `failure` of `auth.login`, not a `denied` request).
    pub fn set_outcome(&self, outcome: Outcome) {
        self.lock().outcome = Some(outcome);
    }

    /// Names who acted, for middleware or handlers inside the audit layer (a login handler
    /// naming the user it just authenticated).
    pub fn set_actor(&self, actor: Actor) {
        self.lock().actor = Some(actor);
    }

    /// Sets what the action was applied to (`user:7`).
    pub fn set_target(&self, target: impl Into<String>) {
        self.lock().target = Some(target.into());
    }

    /// Sets why the action ended as it did.
    pub fn set_reason(&self, reason: impl Into<String>) {
        self.lock().reason = Some(reason.into());
    }

    /// Adds a label; it wins over a trail-wide label of the same key.
    pub fn label(&self, key: impl Into<String>, value: impl Into<String>) {
        self.lock().labels.insert(key.into(), value.into());
    }

    /// Adds one entry to the event's `details`.
    pub fn detail(&self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        self.lock()
            .details
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::StatusCode;
    use http::request::Parts;
    use std::convert::Infallible;

    use super::AuditContext;

    impl<S: Send + Sync> FromRequestParts<S> for AuditContext {
        type Rejection = (StatusCode, &'static str);

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            // Missing means the layer is not in front of this handler: a wiring bug that must
            // be loud, not an event silently recorded nowhere.
            parts.extensions.get::<AuditContext>().cloned().ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "AuditContext needs the audit layer in front of this handler",
            ))
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for AuditContext {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<AuditContext>().cloned())
        }
    }
}
