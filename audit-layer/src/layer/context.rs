//! A request's audit context, for handlers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::shared::Shared;
use crate::event::actor::Actor;
use crate::event::{Category, Change, Outcome};
use crate::redact::{bound, bound_json, redact_json};

/// A handle on the event of the current request, to name and enrich it.
///
/// The layer puts an [`AuditContext`] in the request extensions of every audited request;
/// with the `axum` feature it is also an extractor. Whatever is set on it before the response
/// is ready ends up in that request's event: the action name, the target, the actor, labels
/// and details. Nothing in it waits or does I/O.
///
/// # Example
///
#[cfg_attr(feature = "axum", doc = "```")]
#[cfg_attr(not(feature = "axum"), doc = "```ignore")]
/// use audit_layer::{AuditContext, AuditTrail};
/// use audit_layer::sink::MemorySink;
/// use axum::{Router, routing::get};
/// use tower::ServiceExt;
///
/// async fn export(audit: AuditContext) -> &'static str {
///     audit.set_action("user.export");
///     audit.detail("format", "csv");
///     audit.detail("record_count", 3);
///     "id,name\n"
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = MemorySink::new();
/// let audit = AuditTrail::builder().sink(sink.clone()).build()?;
/// let app = Router::new().route("/export", get(export)).layer(audit.layer());
///
/// let request = http::Request::get("/export").body(axum::body::Body::empty())?;
/// app.oneshot(request).await?;
/// audit.flush().await?;
///
/// let event = &sink.request_events()[0];
/// assert_eq!(event.action, "user.export");
/// assert_eq!(event.details.as_ref().unwrap()["record_count"], 3);
/// # audit.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuditContext {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    annotations: Mutex<Annotations>,
    /// Whether the request's extensions held an [`Actor`] when the layer read them.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    actor_at_capture: bool,
}

impl fmt::Debug for AuditContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditContext")
            .field("annotations", &*self.lock())
            .finish()
    }
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
    pub(crate) before: Option<serde_json::Value>,
    pub(crate) after: Option<serde_json::Value>,
    pub(crate) changes: Option<Vec<Change>>,
    /// A sensitive handler refused the request: the trail could not take its event.
    pub(crate) refused: bool,
}

impl AuditContext {
    pub(crate) fn new(shared: Arc<Shared>, actor_at_capture: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                annotations: Mutex::new(Annotations::default()),
                actor_at_capture,
            }),
        }
    }

    /// Takes an [`Actor`] that a middleware inside the layer put in the request's
    /// extensions after the layer read them (an authentication middleware added to the
    /// router before the audit layer, so run after it): the extractors that see the extensions again adopt
    /// it, as [`set_actor`](Self::set_actor) would, unless an actor was set already. In
    /// debug builds this is logged once, with the fix: the request is recorded with its
    /// actor only where a handler extracts the context.
    #[cfg(feature = "axum")]
    pub(crate) fn adopt_late_actor(&self, extensions: &http::Extensions) {
        if self.inner.actor_at_capture {
            return;
        }
        let Some(actor) = extensions.get::<Actor>() else {
            return;
        };
        let mut notes = self.lock();
        if notes.actor.is_some() {
            return;
        }
        notes.actor = Some(actor.clone());
        drop(notes);
        #[cfg(debug_assertions)]
        {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    target: "audit",
                    "an `Actor` was put in the request's extensions after the audit layer read \
                     them (by a middleware inside the audit layer); it is recorded only for \
                     handlers that extract `AuditContext`. Add the authentication middleware \
                     after the audit layer, `.layer(audit.layer()).layer(auth)` (the last layer \
                     added runs first), or call `AuditContext::set_actor` in it"
                );
            });
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Annotations> {
        // A panic while holding this lock cannot leave the annotations half-written in a way
        // that matters more than losing them, so poisoning is ignored.
        self.inner
            .annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(feature = "axum")]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The names whose values are redacted.
    pub(crate) fn secret_names(&self) -> &crate::redact::SecretNames {
        &self.inner.shared.config.secret_names
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

    /// Sets why the action ended as it did. As every `reason`, it loses the common shapes of
    /// a secret in free text (`password=...`, `token: "..."`, a URL's password, `Bearer ...`):
    /// write "the password was too short", not "password: too short", whose next word would
    /// be taken for the password.
    pub fn set_reason(&self, reason: impl Into<String>) {
        self.lock().reason = Some(reason.into());
    }

    /// Adds a label; it wins over a trail-wide label of the same key. Under a secret name
    /// (`session_token`) its value is recorded as `[REDACTED]`; under any name, a URL in it
    /// loses its credentials (`amqp://app:[REDACTED]@mq`).
    pub fn label(&self, key: impl Into<String>, value: impl Into<String>) {
        self.lock().labels.insert(key.into(), value.into());
    }

    /// Adds one entry to the event's `details`. Fields named like secrets, here or at any
    /// depth of `value`, are recorded as `[REDACTED]`; every other string loses the common
    /// shapes of a secret in free text, as a `reason` does (an error's text can quote a
    /// connection string); strings and nesting are bounded.
    pub fn detail(&self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        self.lock()
            .details
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    /// Records a request body in `details.request_body`: parsed as JSON, secret-named fields
    /// redacted, strings bounded, at most 8 KiB in all.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn capture_body(&self, body: &[u8]) {
        const MAX: usize = 8 * 1024;
        let recorded = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(mut json) => {
                redact_json(&mut json, &self.inner.shared.config.secret_names);
                bound_json(&mut json, 0);
                let text = json.to_string();
                if text.len() > MAX {
                    serde_json::Value::String(bound(&text, MAX))
                } else {
                    json
                }
            }
            Err(_) if body.is_empty() => serde_json::Value::Null,
            Err(_) => serde_json::Value::String(format!("[{} bytes, not JSON]", body.len())),
        };
        self.detail("request_body", recorded);
    }

    /// Marks the request as refused because the trail cannot take events now.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn refuse(&self, reason: &str) {
        let mut notes = self.lock();
        notes.refused = true;
        notes.reason = Some(reason.to_owned());
    }

    /// Marks the event as `sensitive`, as a [`sensitive`](macro@crate::sensitive) handler's is.
    pub fn mark_sensitive(&self) {
        self.set_category(Category::Sensitive);
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
            let context = parts.extensions.get::<AuditContext>().cloned().ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "AuditContext needs the audit layer in front of this handler",
            ))?;
            context.adopt_late_actor(&parts.extensions);
            Ok(context)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for AuditContext {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            let context = parts.extensions.get::<AuditContext>().cloned();
            if let Some(context) = &context {
                context.adopt_late_actor(&parts.extensions);
            }
            Ok(context)
        }
    }
}
