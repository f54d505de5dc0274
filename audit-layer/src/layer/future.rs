//! [`ResponseFuture`]: runs the inner future, then queues the request's event.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::record::InFlight;
use crate::actor::Actor;
use crate::event::AuditEvent;
use crate::trail::{Reserve, Shared, TryEnqueue};

pin_project! {
    /// Response future of [`Audit`](super::Audit).
    ///
    /// Resolves once the inner future has and the request's event is in the queue. Dropped
    /// before that, it still queues the event: as `cancelled` if the response was not ready.
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        event: EventGuard,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F>
    where
        F: Future,
    {
        // A skipped request: no event.
        Passthrough { #[pin] future: F },
        Running { #[pin] future: F },
        // The inner service panicked in `call`.
        Panicked { payload: Option<Box<dyn Any + Send>> },
        // The response is ready; the queue was full.
        Enqueueing { reserve: Reserve, output: Option<F::Output> },
        Done,
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
            event: EventGuard(Pending::Nothing),
        }
    }

    pub(crate) fn running(future: F, record: InFlight) -> Self {
        Self {
            state: State::Running { future },
            event: EventGuard(Pending::InFlight(record)),
        }
    }

    pub(crate) fn panicked(payload: Box<dyn Any + Send>, record: InFlight) -> Self {
        Self {
            state: State::Panicked {
                payload: Some(payload),
            },
            event: EventGuard(Pending::InFlight(record)),
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
    E: fmt::Display,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let output = match this.state.as_mut().project() {
                StateProj::Passthrough { future } => return future.poll(cx),
                StateProj::Running { future } => {
                    match panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(output)) => this.event.complete(output),
                        Err(payload) => {
                            // Drop the panicked future first: its destructors may still
                            // annotate the event (a sensitive handler's before-state).
                            this.state.set(State::Done);
                            this.event.complete_panic(payload)
                        }
                    }
                }
                StateProj::Panicked { payload } => match payload.take() {
                    Some(payload) => this.event.complete_panic(payload),
                    None => polled_after_completion(),
                },
                StateProj::Enqueueing { reserve, output } => {
                    match ready!(reserve.as_mut().poll(cx)) {
                        Ok(permit) => this.event.send(permit),
                        Err(_closed) => this.event.lost(),
                    }
                    let output = output.take();
                    this.state.set(State::Done);
                    return Poll::Ready(output.unwrap_or_else(|| polled_after_completion()));
                }
                StateProj::Done => polled_after_completion(),
            };
            match this.event.try_enqueue() {
                None => {
                    this.state.set(State::Done);
                    return Poll::Ready(output);
                }
                Some(reserve) => this.state.set(State::Enqueueing {
                    reserve,
                    output: Some(output),
                }),
            }
        }
    }
}

fn polled_after_completion() -> ! {
    panic!("`audit_layer::ResponseFuture` polled after completion")
}

/// A request's event until it is in the queue.
// Lives inline in the response future: boxing the built event would add an allocation per
// request to save stack space in a future that is already this size.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Nothing,
    InFlight(InFlight),
    Built {
        event: AuditEvent,
        shared: Arc<Shared>,
    },
}

/// Owns the pending event; if dropped while holding one, queues it anyway.
struct EventGuard(Pending);

impl EventGuard {
    fn take(&mut self) -> Pending {
        std::mem::replace(&mut self.0, Pending::Nothing)
    }

    /// Builds the event of a finished inner future and stamps the response.
    fn complete<B, E: fmt::Display>(
        &mut self,
        mut output: Result<Response<B>, E>,
    ) -> Result<Response<B>, E> {
        if let Pending::InFlight(record) = self.take() {
            let shared = Arc::clone(&record.shared);
            let event = match &mut output {
                Ok(response) => {
                    stamp_request_id(response, &record);
                    let actor = response.extensions().get::<Actor>().cloned();
                    record.respond(response.status(), actor)
                }
                Err(error) => record.fail(None, error.to_string()),
            };
            self.0 = Pending::Built { event, shared };
        }
        output
    }

    /// Builds the event of a panic and answers 500, or resumes unwinding if the trail does
    /// not catch panics.
    fn complete_panic<B: Default, E>(
        &mut self,
        payload: Box<dyn Any + Send>,
    ) -> Result<Response<B>, E> {
        let Pending::InFlight(record) = self.take() else {
            panic::resume_unwind(payload)
        };
        let shared = Arc::clone(&record.shared);
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        stamp_request_id(&mut response, &record);
        let reason = format!("panic: {}", panic_message(payload.as_ref()));
        let event = record.fail(Some(StatusCode::INTERNAL_SERVER_ERROR), reason);
        if !shared.config.catch_panics {
            shared.enqueue_detached(event);
            panic::resume_unwind(payload);
        }
        self.0 = Pending::Built { event, shared };
        Ok(response)
    }

    /// Queues the built event if there is room; otherwise keeps it and returns how to wait.
    fn try_enqueue(&mut self) -> Option<Reserve> {
        match self.take() {
            Pending::Built { event, shared } => match shared.try_enqueue(event) {
                Ok(()) => None,
                Err(TryEnqueue::Full(event, reserve)) => {
                    self.0 = Pending::Built { event, shared };
                    Some(reserve)
                }
            },
            other => {
                self.0 = other;
                None
            }
        }
    }

    fn send(&mut self, permit: tokio::sync::mpsc::OwnedPermit<crate::trail::Item>) {
        if let Pending::Built { event, shared } = self.take() {
            shared.send_with(permit, event);
        }
    }

    fn lost(&mut self) {
        if let Pending::Built { event, shared } = self.take() {
            shared.lost(&event);
        }
    }
}

impl Drop for EventGuard {
    fn drop(&mut self) {
        match self.take() {
            Pending::Nothing => {}
            Pending::InFlight(record) => {
                let shared = Arc::clone(&record.shared);
                shared.enqueue_detached(record.cancel());
            }
            Pending::Built { event, shared } => shared.enqueue_detached(event),
        }
    }
}

fn stamp_request_id<B>(response: &mut Response<B>, record: &InFlight) {
    if let Some(value) = record.request_id.to_header_value() {
        response
            .headers_mut()
            .insert(record.shared.config.request_id_header.clone(), value);
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic payload>")
}
