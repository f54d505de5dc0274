//! [`ResponseFuture`]: runs the inner future, then queues the request's event, and for a
//! durable event waits until it is synced.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::record::InFlight;
use crate::delivery::policy::{Durability, Overflow};
use crate::delivery::{Ack, Item, Reserve, Shared, SpareEvents, Synced, TryEnqueue};
use crate::error::panic_message;
use crate::event::AuditEvent;
use crate::event::actor::Actor;
use crate::redact::Scrubbed;

/// The header set on a response replaced by 503 because its event could not be made durable.
pub const AUDIT_ERROR_HEADER: &str = "x-audit-error";

pin_project! {
    /// Response future of [`Audit`](super::Audit).
    ///
    /// Resolves once the inner future has, the request's event is in the queue and, for a
    /// [durable](crate::delivery::policy::Durability::Synced) event, synced. Dropped before that, it
    /// still queues the event: as `cancelled` if the response was not ready.
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
        Enqueueing { reserve: Reserve, deadline: Option<Pin<Box<Sleep>>>, output: Option<F::Output> },
        // The event is queued; the response waits for its sync.
        Syncing { ack: oneshot::Receiver<Synced>, deadline: Option<Pin<Box<Sleep>>>, spares: Arc<SpareEvents>, output: Option<F::Output> },
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
            let (next, output) = match this.state.as_mut().project() {
                StateProj::Passthrough { future } => return future.poll(cx),
                StateProj::Running { future } => {
                    let output = match panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(output)) => this.event.complete(output),
                        Err(payload) => {
                            // Drop the panicked future first: its destructors may still
                            // annotate the event (a sensitive handler's before-state).
                            this.state.set(State::Done);
                            this.event.complete_panic(payload)
                        }
                    };
                    (this.event.enqueue(), output)
                }
                StateProj::Panicked { payload } => match payload.take() {
                    Some(payload) => {
                        let output = this.event.complete_panic(payload);
                        (this.event.enqueue(), output)
                    }
                    None => polled_after_completion(),
                },
                StateProj::Enqueueing {
                    reserve,
                    deadline,
                    output,
                } => {
                    let step = match reserve.as_mut().poll(cx) {
                        Poll::Ready(Ok(permit)) => this.event.send(permit),
                        Poll::Ready(Err(_closed)) => {
                            this.event.lost();
                            Step::Respond
                        }
                        Poll::Pending => match deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                            Some(Poll::Ready(())) => match this.event.overflow() {
                                Some(step) => step,
                                // Ordinary events under `FailClosed` keep waiting.
                                None => {
                                    *deadline = None;
                                    return Poll::Pending;
                                }
                            },
                            _ => return Poll::Pending,
                        },
                    };
                    (step, take_output(output))
                }
                StateProj::Syncing {
                    ack,
                    deadline,
                    spares,
                    output,
                } => {
                    let synced = match Pin::new(ack).poll(cx) {
                        Poll::Ready(Ok(Synced { result, event })) => {
                            // Emptied here, on the thread that allocated what it holds,
                            // and kept for the next request.
                            if let Some(event) = event {
                                spares.put_back(event);
                            }
                            result.is_ok()
                        }
                        Poll::Ready(_) => false,
                        Poll::Pending => match deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                            Some(Poll::Ready(())) => false,
                            _ => return Poll::Pending,
                        },
                    };
                    let output = take_output(output);
                    this.state.set(State::Done);
                    return Poll::Ready(if synced { output } else { not_durable(output) });
                }
                StateProj::Done => polled_after_completion(),
            };
            match next {
                Step::Respond => {
                    this.state.set(State::Done);
                    return Poll::Ready(output);
                }
                Step::Unavailable => {
                    this.state.set(State::Done);
                    return Poll::Ready(not_durable(output));
                }
                Step::Wait(reserve, deadline) => this.state.set(State::Enqueueing {
                    reserve,
                    deadline,
                    output: Some(output),
                }),
                Step::Sync(ack, deadline, spares) => this.state.set(State::Syncing {
                    ack,
                    deadline,
                    spares,
                    output: Some(output),
                }),
            }
        }
    }
}

fn take_output<T>(output: &mut Option<T>) -> T {
    output.take().unwrap_or_else(|| polled_after_completion())
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

/// What the future does next, once the event is built.
enum Step {
    Respond,
    /// Answer 503: the event could not be made durable.
    Unavailable,
    Wait(Reserve, Option<Pin<Box<Sleep>>>),
    /// Wait for the sync; then give the event's memory back to these spares.
    Sync(
        oneshot::Receiver<Synced>,
        Option<Pin<Box<Sleep>>>,
        Arc<SpareEvents>,
    ),
}

/// A request's event until it is in the queue.
enum Pending {
    Nothing,
    InFlight(InFlight),
    Built {
        event: Scrubbed,
        shared: Arc<Shared>,
        plan: Plan,
        ack: Option<Ack>,
    },
}

/// How an event is delivered.
#[derive(Clone, Copy)]
struct Plan {
    durable: bool,
    /// The event of a sensitive request refused because the trail could not take events.
    refused: bool,
}

impl Plan {
    fn of(event: &AuditEvent, shared: &Shared, refused: bool) -> Self {
        let request = event.request.as_ref();
        let level = shared.config.durability.level(
            event.category,
            request.and_then(|r| r.route.as_deref()),
            request.map(|r| r.path.as_str()),
        );
        Self {
            durable: !refused && level == Durability::Synced,
            refused,
        }
    }
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
            let refused = record.refused();
            let event = match &mut output {
                Ok(response) => {
                    stamp_request_id(response, &record);
                    let actor = response.extensions().get::<Actor>().cloned();
                    record.respond(response.status(), actor)
                }
                Err(error) => record.fail(None, error.to_string()),
            };
            let plan = Plan::of(&event, &shared, refused);
            self.0 = Pending::Built {
                event,
                shared,
                plan,
                ack: None,
            };
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
        let plan = Plan::of(&event, &shared, false);
        self.0 = Pending::Built {
            event,
            shared,
            plan,
            ack: None,
        };
        Ok(response)
    }

    /// Queues the built event if there is room; otherwise applies the failure policy.
    fn enqueue(&mut self) -> Step {
        let Pending::Built {
            event,
            shared,
            plan,
            ack: _,
        } = self.take()
        else {
            return Step::Respond;
        };
        let (ack, synced) = if plan.durable {
            let (ack, synced) = oneshot::channel();
            (Some(ack), Some(synced))
        } else {
            (None, None)
        };
        match shared.try_enqueue(event, ack) {
            Ok(()) => match synced {
                Some(synced) => Step::Sync(
                    synced,
                    sync_deadline(&shared),
                    Arc::clone(&shared.spare_events),
                ),
                None => Step::Respond,
            },
            Err(TryEnqueue::Full(event, ack, reserve)) => {
                let policy = shared.config.failure_policy;
                self.0 = Pending::Built {
                    event,
                    shared,
                    plan,
                    ack,
                };
                match policy.max_wait {
                    // A refusal answers at once; it is counted for the next gap event.
                    _ if plan.refused => self.overflow().unwrap_or(Step::Wait(reserve, None)),
                    None => Step::Wait(reserve, None),
                    Some(wait) if wait.is_zero() => {
                        self.overflow().unwrap_or(Step::Wait(reserve, None))
                    }
                    Some(wait) => Step::Wait(reserve, Some(Box::pin(tokio::time::sleep(wait)))),
                }
            }
        }
    }

    /// The queue stayed full for as long as the policy allows: what to do instead, or `None`
    /// to keep waiting (ordinary events under `FailClosed`).
    fn overflow(&mut self) -> Option<Step> {
        let Pending::Built {
            event,
            shared,
            plan,
            ack,
        } = self.take()
        else {
            return Some(Step::Respond);
        };
        if plan.refused {
            shared.count_gap(&event, true);
            return Some(Step::Respond);
        }
        if plan.durable {
            // Never dropped: it waits on its own, and the client is told it is not durable.
            shared.enqueue_detached(event);
            return Some(Step::Unavailable);
        }
        match shared.config.failure_policy.overflow {
            Overflow::DropWithGap => {
                shared.count_gap(&event, false);
                Some(Step::Respond)
            }
            _ => {
                self.0 = Pending::Built {
                    event,
                    shared,
                    plan,
                    ack,
                };
                None
            }
        }
    }

    /// Queues the event with a permit from the reserve future.
    fn send(&mut self, permit: tokio::sync::mpsc::OwnedPermit<Item>) -> Step {
        let Pending::Built {
            event,
            shared,
            plan,
            ..
        } = self.take()
        else {
            return Step::Respond;
        };
        if plan.durable {
            let (ack, synced) = oneshot::channel();
            shared.send_with(permit, event, Some(ack));
            Step::Sync(
                synced,
                sync_deadline(&shared),
                Arc::clone(&shared.spare_events),
            )
        } else {
            shared.send_with(permit, event, None);
            Step::Respond
        }
    }

    fn lost(&mut self) {
        if let Pending::Built { event, shared, .. } = self.take() {
            shared.lost(&event);
        }
    }
}

/// How long a response waits for its sync: without bound under a blocking policy.
fn sync_deadline(shared: &Shared) -> Option<Pin<Box<Sleep>>> {
    shared
        .config
        .failure_policy
        .may_refuse()
        .then(|| Box::pin(tokio::time::sleep(shared.config.durable_timeout)))
}

impl Drop for EventGuard {
    fn drop(&mut self) {
        match self.take() {
            Pending::Nothing => {}
            Pending::InFlight(record) => {
                let shared = Arc::clone(&record.shared);
                shared.enqueue_detached(record.cancel());
            }
            Pending::Built { event, shared, .. } => shared.enqueue_detached(event),
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
