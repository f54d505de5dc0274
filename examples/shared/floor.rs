//! Measuring aids for `load_server`: the least that any layer, and any per-request record
//! handed to another thread, can cost on this machine. Not audit trails: nothing here is
//! redacted, chained, written or guaranteed.
//!
//! - [`FloorLayer::identity`] (`floor-layer`): a layer that passes each request through and
//!   does nothing else. What axum charges for a route having a layer at all (the layered
//!   route is boxed again) plus one more future around the handler's.
//! - [`FloorLayer::handoff`] (`floor-handoff`): a layer that records, for each request, its
//!   method, path, peer, status, time and duration in one allocated record, and queues it
//!   (`try_send`, bounded) to a thread that drains the queue every 2 ms, as the trail's
//!   writer does, and drops what it takes. The cheapest form of "every request becomes a
//!   record on another thread", with none of the event model.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::ConnectInfo;
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tokio::sync::mpsc;
use tower::{Layer, Service};

/// The queue's capacity, as the trail's default.
const CAPACITY: usize = 8192;

/// How often the draining thread wakes, as the trail's default write delay.
const DRAIN_INTERVAL: Duration = Duration::from_millis(2);

/// One request, as the handoff floor records it.
#[expect(
    dead_code,
    reason = "built and queued to be measured; nothing reads it"
)]
struct Record {
    time: SystemTime,
    method: Method,
    path: String,
    peer: Option<SocketAddr>,
    status: u16,
    duration: Duration,
}

/// What the handoff floor counted, once its layer is gone.
pub(crate) struct HandoffCounts {
    /// Records the draining thread took.
    pub(crate) drained: u64,
    /// Records dropped because the queue was full.
    pub(crate) dropped: u64,
}

/// Where a handoff floor's records go; shared by every request, as the trail's queue is.
struct Handoff {
    queue: mpsc::Sender<Box<Record>>,
    dropped: Arc<AtomicU64>,
}

/// The draining thread of a handoff floor.
pub(crate) struct Drain {
    thread: JoinHandle<u64>,
    // Not the queue's sender: the thread ends when the layer's copies are gone.
    dropped: Arc<AtomicU64>,
}

impl Drain {
    /// Waits for every copy of the layer to be dropped, then for the thread to drain.
    pub(crate) fn finish(self) -> HandoffCounts {
        HandoffCounts {
            drained: self.thread.join().unwrap_or(0),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub(crate) struct FloorLayer {
    handoff: Option<Arc<Handoff>>,
}

impl FloorLayer {
    /// Passes requests through.
    pub(crate) fn identity() -> Self {
        Self { handoff: None }
    }

    /// Hands a record of each request to a draining thread.
    pub(crate) fn handoff() -> (Self, Drain) {
        let (queue, mut receiver) = mpsc::channel::<Box<Record>>(CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let handoff = Arc::new(Handoff {
            queue,
            dropped: Arc::clone(&dropped),
        });
        let thread = std::thread::spawn(move || {
            let mut drained = 0u64;
            loop {
                std::thread::sleep(DRAIN_INTERVAL);
                loop {
                    match receiver.try_recv() {
                        Ok(record) => {
                            // Looked at, so that the optimizer keeps what builds it.
                            std::hint::black_box(&record);
                            drained += 1;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return drained,
                    }
                }
            }
        });
        let layer = Self {
            handoff: Some(handoff),
        };
        (layer, Drain { thread, dropped })
    }
}

impl<S> Layer<S> for FloorLayer {
    type Service = Floor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Floor {
            inner,
            handoff: self.handoff.clone(),
        }
    }
}

/// The service of [`FloorLayer`].
#[derive(Clone)]
pub(crate) struct Floor<S> {
    inner: S,
    handoff: Option<Arc<Handoff>>,
}

/// A request's record until its response.
struct Capture {
    start: Instant,
    record: Box<Record>,
    handoff: Arc<Handoff>,
}

impl<S, B, ResBody> Service<Request<B>> for Floor<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let capture = self.handoff.as_ref().map(|handoff| Capture {
            start: Instant::now(),
            record: Box::new(Record {
                time: SystemTime::now(),
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
                peer: request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0),
                status: 0,
                duration: Duration::ZERO,
            }),
            handoff: Arc::clone(handoff),
        });
        FloorFuture {
            inner: self.inner.call(request),
            capture,
        }
    }
}

pin_project! {
    /// The response future of [`Floor`].
    pub(crate) struct FloorFuture<F> {
        #[pin]
        inner: F,
        capture: Option<Capture>,
    }
}

impl<F, ResBody, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(Capture {
            start,
            mut record,
            handoff,
        }) = this.capture.take()
        {
            record.status = output
                .as_ref()
                .map_or(0, |response| response.status().as_u16());
            record.duration = start.elapsed();
            if handoff.queue.try_send(record).is_err() {
                handoff.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Poll::Ready(output)
    }
}
