//! The runtime of `#[sensitive]` handlers: generated code calls these; they are not a stable
//! API of their own.

use std::future::Future;
use std::marker::PhantomData;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use super::diff::{recorded_change, recorded_state};
use super::{AuditSnapshot, Auditable, Snapshot, target_of};
use crate::layer::context::AuditContext;
use crate::layer::matched_route;

/// What the attribute says about one handler.
pub trait SensitiveMeta: 'static {
    /// The event's action.
    const ACTION: &'static str;
    /// Answer 503 instead of running the handler when the before-state cannot be read.
    const REFUSE_ON_LOAD_ERROR: bool;
}

/// The first extractor of a sensitive handler: marks the request's event `sensitive` with its
/// action *before* the other extractors run, so that a request they reject (403 from an
/// authorization extractor, 400 from a bad body) is still recorded as this action, denied or
/// failed. Without the audit layer it refuses with 500: a sensitive action never runs
/// unaudited.
#[derive(Debug)]
pub struct SensitiveRoute<M> {
    context: AuditContext,
    _meta: PhantomData<fn() -> M>,
}

impl<S, M> FromRequestParts<S> for SensitiveRoute<M>
where
    S: Send + Sync,
    M: SensitiveMeta,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(context) = parts.extensions.get::<AuditContext>().cloned() else {
            tracing::error!(
                target: "audit",
                action = M::ACTION,
                "a sensitive handler was called without the audit layer in front of it; refused"
            );
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "this action cannot be audited, so it was not performed",
            )
                .into_response());
        };
        context.adopt_late_actor(&parts.extensions);
        context.set_action(M::ACTION);
        context.mark_sensitive();
        if context.shared().intake.refuses_sensitive() {
            // Fail closed: the action is not performed while it cannot be audited.
            const REASON: &str = "refused: the audit trail cannot record this action now";
            context.refuse(REASON);
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "this action cannot be audited right now, so it was not performed; try again later",
            )
                .into_response());
        }
        if let Some(route) = matched_route(&parts.extensions) {
            context
                .shared()
                .note_sensitive_route(parts.method.as_str(), route, M::ACTION);
        }
        Ok(Self {
            context,
            _meta: PhantomData,
        })
    }
}

impl<M: SensitiveMeta> SensitiveRoute<M> {
    /// Reads the before-state of `key`.
    pub async fn load_before<R, S>(self, state: &S, key: &R::Key) -> Pending<R>
    where
        R: Snapshot<S>,
    {
        let mut pending = Pending::new(self.context, M::REFUSE_ON_LOAD_ERROR);
        pending.key = Some(key.to_string());
        match R::load(state, key).await {
            Ok(found) => pending.before = found.map(|r| pending.snapshot(&r)),
            Err(error) => pending
                .errors
                .push(format!("before-state load failed: {error}")),
        }
        pending
    }

    /// A creation: there is no before-state.
    pub fn creating<R: Auditable>(self) -> Pending<R> {
        Pending::new(self.context, M::REFUSE_ON_LOAD_ERROR)
    }
}

/// A sensitive call between its before-state and its after-state. Dropped unfinished (the
/// handler panicked or was cancelled), it still records the before-state.
#[derive(Debug)]
pub struct Pending<R> {
    context: AuditContext,
    before: Option<AuditSnapshot>,
    key: Option<String>,
    errors: Vec<String>,
    refuse_on_error: bool,
    finished: bool,
    _resource: PhantomData<fn() -> R>,
}

impl<R: Auditable> Pending<R> {
    fn new(context: AuditContext, refuse_on_error: bool) -> Self {
        Self {
            context,
            before: None,
            key: None,
            errors: Vec::new(),
            refuse_on_error,
            finished: false,
            _resource: PhantomData,
        }
    }

    fn snapshot(&self, resource: &R) -> AuditSnapshot {
        resource
            .audit_snapshot()
            .redacted_for_trail(&self.context.shared().config.secret_names)
    }

    /// The 503 to answer instead of running the handler, when the before-state could not be
    /// read and the handler asked to refuse in that case.
    pub fn refusal(&mut self) -> Option<Response> {
        if !self.refuse_on_error || self.errors.is_empty() {
            return None;
        }
        self.record(None);
        Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the current state could not be read, so this change cannot be audited; it was not made",
            )
                .into_response(),
        )
    }

    /// Reads the after-state of `key` and records the change.
    pub async fn load_after<S>(mut self, state: &S, key: &R::Key)
    where
        R: Snapshot<S>,
    {
        let after = match R::load(state, key).await {
            Ok(found) => found.map(|r| self.snapshot(&r)),
            Err(error) => {
                self.errors
                    .push(format!("after-state load failed: {error}"));
                None
            }
        };
        self.record(after);
    }

    /// A creation: the after-state is the resource the handler returned.
    pub fn created<T: SensitiveOutput<R>>(mut self, output: &T) {
        let after = output.created().map(|r| self.snapshot(r));
        self.record(after);
    }

    fn record(&mut self, after: Option<AuditSnapshot>) {
        self.finished = true;
        let before = self.before.take();
        let target = target_of::<R>(before.as_ref().or(after.as_ref()), self.key.as_deref());
        let change = recorded_change(before, after);
        let mut notes = self.context.lock();
        notes.before = change.before;
        notes.after = change.after;
        notes.changes = Some(change.changes);
        if notes.target.is_none() {
            notes.target = target;
        }
        if !self.errors.is_empty() && notes.reason.is_none() {
            notes.reason = Some(self.errors.join("; "));
        }
    }
}

impl<R> Drop for Pending<R> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let before = self.before.take();
        let mut notes = self.context.lock();
        notes.before = before.map(recorded_state);
        if !self.errors.is_empty() && notes.reason.is_none() {
            notes.reason = Some(self.errors.join("; "));
        }
    }
}

/// The resource a `create` handler returns: `Json<R>`, `(status, Json<R>)`, or a `Result` of
/// either.
#[diagnostic::on_unimplemented(
    message = "a `#[sensitive(create)]` handler must return the created `{R}`",
    label = "returns `{Self}`",
    note = "return `Json<{R}>`, `(StatusCode, Json<{R}>)`, or a `Result` of either"
)]
pub trait SensitiveOutput<R> {
    /// The created resource, if the handler succeeded.
    fn created(&self) -> Option<&R>;
}

impl<R> SensitiveOutput<R> for Json<R> {
    fn created(&self) -> Option<&R> {
        Some(&self.0)
    }
}

impl<R, A> SensitiveOutput<R> for (A, Json<R>) {
    fn created(&self) -> Option<&R> {
        Some(&self.1.0)
    }
}

impl<R, T: SensitiveOutput<R>, E> SensitiveOutput<R> for Result<T, E> {
    fn created(&self) -> Option<&R> {
        self.as_ref().ok().and_then(SensitiveOutput::created)
    }
}

/// Wraps a handler's body extractor to record the body (redacted, bounded) in
/// `details.request_body` before handing it on.
#[derive(Debug)]
pub struct CaptureBody<T>(pub T);

impl<S, T> FromRequest<S> for CaptureBody<T>
where
    S: Send + Sync,
    T: FromRequest<S>,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        // `Bytes` honours `DefaultBodyLimit`, as the wrapped extractor would have.
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(context) = parts.extensions.get::<AuditContext>() {
            context.capture_body(&bytes);
        }
        T::from_request(Request::from_parts(parts, Body::from(bytes)), state)
            .await
            .map(CaptureBody)
            .map_err(IntoResponse::into_response)
    }
}

/// An owned copy of a key, taken before the handler body may move the original.
pub fn owned_key<R: Snapshot<S>, S>(key: &R::Key) -> R::Key {
    key.clone()
}

/// Pins the output type of a handler body's async block, so `?` inside it converts errors
/// as it would in the original function.
pub fn typed<T, F: Future<Output = T>>(future: F) -> F {
    future
}
