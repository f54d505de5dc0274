//! [`ResponseFuture`]: runs the inner future, builds the request's event, and hands it to the
//! delivery (see [`Admission`]), which decides when the response may go.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::record::InFlight;
use super::shared::Shared;
use crate::delivery::{Admission, Delivered, enqueue_detached};
use crate::error::panic_message;
use crate::event::actor::Actor;

/// The header set on a response replaced by 503 because its event could not be made durable.
pub const AUDIT_ERROR_HEADER: &str = "x-audit-error";

pin_project! {
    /// Response future of [`Audit`](super::Audit).
    ///
    /// Resolves once the inner future has, the request's event is in the queue and, for a
    /// [durable](crate::Durability::Synced) event, synced. Dropped before that, it
    /// still queues the event: as `cancelled` if the response was not ready.
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        record: RecordGuard,
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
        // The response is ready; the async actor resolver has not answered yet.
        Resolving { output: Option<F::Output> },
        // The response is ready; its event is on its way into the queue.
        Delivering { admission: Admission<Shared>, output: Option<F::Output> },
        Done,
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
            record: RecordGuard(None),
        }
    }

    pub(crate) fn running(future: F, record: InFlight) -> Self {
        Self {
            state: State::Running { future },
            record: RecordGuard(Some(record)),
        }
    }

    pub(crate) fn panicked(payload: Box<dyn Any + Send>, record: InFlight) -> Self {
        Self {
            state: State::Panicked {
                payload: Some(payload),
            },
            record: RecordGuard(Some(record)),
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
        let (mut admission, output) = loop {
            break match this.state.as_mut().project() {
                StateProj::Passthrough { future } => return future.poll(cx),
                StateProj::Running { future } => {
                    // The resolver's look-up runs beside the inner service.
                    let resolved = this.record.poll_actor(cx).is_ready();
                    match panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(output)) if !resolved => {
                            this.state.set(State::Resolving {
                                output: Some(output),
                            });
                            continue;
                        }
                        Ok(Poll::Ready(output)) => this.record.complete(output),
                        Err(payload) => {
                            // Drop the panicked future first: its destructors may still
                            // annotate the event (a sensitive handler's before-state).
                            this.state.set(State::Done);
                            this.record.complete_panic(payload)
                        }
                    }
                }
                StateProj::Panicked { payload } => match payload.take() {
                    Some(payload) => this.record.complete_panic(payload),
                    None => polled_after_completion(),
                },
                StateProj::Resolving { output } => {
                    std::task::ready!(this.record.poll_actor(cx));
                    let output = output.take().unwrap_or_else(|| polled_after_completion());
                    this.record.complete(output)
                }
                StateProj::Delivering { admission, output } => {
                    let delivered = std::task::ready!(admission.poll(cx));
                    let output = output.take().unwrap_or_else(|| polled_after_completion());
                    this.state.set(State::Done);
                    return Poll::Ready(respond(delivered, output));
                }
                StateProj::Done => polled_after_completion(),
            };
        };
        let delivered = match admission.as_mut().map(|admission| admission.poll(cx)) {
            None => Delivered::Accepted,
            Some(Poll::Ready(delivered)) => delivered,
            Some(Poll::Pending) => {
                let admission = admission
                    .take()
                    .unwrap_or_else(|| polled_after_completion());
                this.state.set(State::Delivering {
                    admission,
                    output: Some(output),
                });
                return Poll::Pending;
            }
        };
        this.state.set(State::Done);
        Poll::Ready(respond(delivered, output))
    }
}

fn respond<B: Default, E>(
    delivered: Delivered,
    output: Result<Response<B>, E>,
) -> Result<Response<B>, E> {
    match delivered {
        Delivered::Accepted => output,
        Delivered::NotDurable => not_durable(output),
    }
}

fn polled_after_completion() -> ! {
    panic!("`audit_layer::layer::ResponseFuture` polled after completion")
}

/// A successful response whose event is not durable becomes a 503: a sensitive action is
/// never answered 2xx while its audit record could still be lost. The event itself stays
/// queued, and is written when the trail recovers.
fn not_durable<B: Default, E>(output: Result<Response<B>, E>) -> Result<Response<B>, E> {
    let original = output?;
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    for (name, value) in original.headers() {
        if name.as_str().eq_ignore_ascii_case("x-request-id") {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response.headers_mut().insert(
        AUDIT_ERROR_HEADER,
        HeaderValue::from_static("event-not-durable"),
    );
    tracing::error!(
        target: "audit",
        status = original.status().as_u16(),
        "a durable audit event could not be synced in time; the response was replaced by 503"
    );
    Ok(response)
}

/// The request's record until its event is built; dropped while holding it (the future was
/// dropped before the response was ready), it queues a `cancelled` event.
struct RecordGuard(Option<InFlight>);

impl RecordGuard {
    /// Polls the async actor resolver's look-up; ready when there is none left.
    fn poll_actor(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(record) => record.poll_actor(cx),
            None => Poll::Ready(()),
        }
    }

    /// Builds the event of a finished inner future, stamps the response, and starts the
    /// event's delivery.
    fn complete<B, E: fmt::Display>(
        &mut self,
        mut output: Result<Response<B>, E>,
    ) -> (Option<Admission<Shared>>, Result<Response<B>, E>) {
        let Some(record) = self.0.take() else {
            return (None, output);
        };
        let refused = record.refused();
        let (shared, event) = match &mut output {
            Ok(response) => {
                stamp_request_id(response, &record);
                let actor = response.extensions().get::<Actor>().cloned();
                record.respond(response.status(), actor)
            }
            Err(error) => record.fail(None, error.to_string()),
        };
        (Some(Admission::start(shared, event, refused)), output)
    }

    /// Builds the event of a panic and answers 500, or resumes unwinding if the trail does
    /// not catch panics.
    fn complete_panic<B: Default, E>(
        &mut self,
        payload: Box<dyn Any + Send>,
    ) -> (Option<Admission<Shared>>, Result<Response<B>, E>) {
        let Some(record) = self.0.take() else {
            panic::resume_unwind(payload)
        };
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        stamp_request_id(&mut response, &record);
        let reason = format!("panic: {}", panic_message(payload.as_ref()));
        let (shared, event) = record.fail(Some(StatusCode::INTERNAL_SERVER_ERROR), reason);
        if !shared.config.catch_panics {
            enqueue_detached(&shared, event);
            panic::resume_unwind(payload);
        }
        (Some(Admission::start(shared, event, false)), Ok(response))
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            let (shared, event) = record.cancel();
            enqueue_detached(&shared, event);
        }
    }
}

fn stamp_request_id<B>(response: &mut Response<B>, record: &InFlight) {
    response.headers_mut().insert(
        record.shared.config.request_id_header.clone(),
        record.request_id.header_value(),
    );
}

// Each state, driven by hand through a tower service: what the future returns, and where
// the event goes, when it is polled or dropped there.
#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::task::Poll;
    use std::time::Duration;

    use http::{Request, Response, StatusCode};
    use tower::{Layer, Service, ServiceExt};

    use crate::event::{Category, Outcome};
    use crate::sink::MemorySink;
    use crate::testing::FaultySink;
    use crate::{AuditTrail, Durability};

    type Body = String;

    fn service(
        trail: &AuditTrail,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
        trail
            .layer()
            .layer(tower::service_fn(|_: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::from("ok")))
            }))
    }

    fn request(path: &str) -> Request<Body> {
        Request::get(path).body(Body::new()).unwrap()
    }

    /// Polls once, without waiting.
    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        std::pin::Pin::new(future).poll(&mut std::task::Context::from_waker(waker))
    }

    #[tokio::test]
    async fn a_skipped_request_passes_through_without_an_event() {
        let sink = MemorySink::new();
        let trail = AuditTrail::builder()
            .sink(sink.clone())
            .skip_paths(["/health"])
            .build()
            .unwrap();
        let response = service(&trail).oneshot(request("/health")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("x-request-id"));
        trail.flush().await.unwrap();
        assert!(sink.request_events().is_empty());
        trail.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_durable_event_holds_its_response_until_synced() {
        let memory = MemorySink::new();
        let (sink, faults) = FaultySink::new(memory.clone());
        let trail = AuditTrail::builder()
            .sink(sink)
            .route_durability("/pay", Durability::Synced)
            .build()
            .unwrap();
        trail.flush().await.unwrap();
        faults.stall();
        let mut call = Box::pin(service(&trail).oneshot(request("/pay")));
        // Running, then Syncing: the response is ready, its event is not yet on disk.
        for _ in 0..50 {
            assert!(poll_once(&mut call).is_pending());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        faults.resume();
        let response = call.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        trail.flush().await.unwrap();
        let events = memory.request_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Success);
        trail.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_future_dropped_while_its_event_waits_for_room_still_delivers_it() {
        let memory = MemorySink::new();
        let (sink, faults) = FaultySink::new(memory.clone());
        let trail = AuditTrail::builder()
            .sink(sink)
            .queue_capacity(1)
            .batch_size(1)
            .build()
            .unwrap();
        trail.flush().await.unwrap();
        faults.stall();
        // The writer holds one event, the queue holds another: the third must wait.
        service(&trail).oneshot(request("/a")).await.unwrap();
        while faults.held() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        service(&trail).oneshot(request("/b")).await.unwrap();
        let mut call = Box::pin(service(&trail).oneshot(request("/c")));
        for _ in 0..10 {
            assert!(
                poll_once(&mut call).is_pending(),
                "Enqueueing waits for room"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(call);
        faults.resume();
        // A task now waits for room for the dropped request's event: it gets in once the
        // writer takes the others (audit.start, /a, /b, /c accepted).
        let accepted = async {
            while trail.stats().accepted < 4 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), accepted)
            .await
            .expect("the dropped request's event gets into the queue");
        trail.shutdown().await.unwrap();
        let paths: Vec<_> = memory
            .request_events()
            .iter()
            .map(|event| event.request.as_ref().unwrap().path.clone())
            .collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert_eq!(trail.stats().lost, 0);
    }

    #[tokio::test]
    async fn a_future_dropped_before_its_response_records_a_cancelled_request() {
        let sink = MemorySink::new();
        let trail = AuditTrail::builder().sink(sink.clone()).build().unwrap();
        let slow = trail
            .layer()
            .layer(tower::service_fn(|_: Request<Body>| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, Infallible>(Response::new(Body::new()))
            }));
        let mut call = Box::pin(slow.oneshot(request("/slow")));
        assert!(poll_once(&mut call).is_pending());
        drop(call);
        trail.flush().await.unwrap();
        let events = sink.request_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Cancelled);
        assert_eq!(events[0].category, Category::Request);
        trail.shutdown().await.unwrap();
    }
}
