//! [`AuditLayer`] and the [`Audit`] service.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::record::{InFlight, client_uri, matched_route};
use super::shared::Shared;

/// Applies [`Audit`] to a service. Built by [`AuditTrail::layer`](crate::AuditTrail::layer).
#[derive(Clone)]
pub struct AuditLayer {
    shared: Arc<Shared>,
}

impl AuditLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Records one audit event per request served by the inner service.
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Audit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let config = &self.shared.config;
        // Most trails skip nothing: the path and route are looked up only when some are.
        if !config.skip.is_empty()
            && config.is_skipped(client_uri(&parts).path(), matched_route(&parts.extensions))
        {
            return ResponseFuture::passthrough(self.inner.call(Request::from_parts(parts, body)));
        }
        // A bug in capturing must neither fail the request nor lose its event.
        let shared = &self.shared;
        let record = panic::catch_unwind(AssertUnwindSafe(|| {
            InFlight::begin(Arc::clone(shared), &mut parts)
        }))
        .unwrap_or_else(|payload| {
            InFlight::capture_failed(Arc::clone(shared), &mut parts, payload.as_ref())
        });
        let request = Request::from_parts(parts, body);
        match panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ResponseFuture::running(future, record),
            Err(payload) => ResponseFuture::panicked(payload, record),
        }
    }
}
