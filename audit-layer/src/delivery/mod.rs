//! The trail: a bounded queue, a background writer, and the handle that controls them.
//!
//! [`AuditTrail::builder`] configures the layer and the sinks; [`build`](AuditTrailBuilder::build)
//! starts the writer on a thread of its own and returns the [`AuditTrail`] handle.
//!
//! On the request path, an event is one `try_send` into a bounded queue: no file I/O and no
//! lock held across I/O. When the queue is full the request waits for room (backpressure);
//! nothing is dropped. The writer takes events in batches, hands each batch to every sink,
//! and retries a failing sink with backoff, keeping its events, until it recovers.
//! [`AuditTrail::flush`] waits until everything accepted before it is written;
//! [`AuditTrail::shutdown`] drains the queue and closes the sinks.
//!
//! # Example
//!
//! ```
//! use audit_layer::AuditTrail;
//! use audit_layer::file::JsonlFileSink;
//! use axum::{Router, routing::get};
//! use std::net::SocketAddr;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let audit = AuditTrail::builder()
//!     .sink(JsonlFileSink::new(dir.path())?)
//!     .trusted_proxies(["10.0.0.0/8"])
//!     .skip_paths(["/health"])
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     .layer(audit.layer());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!     .with_graceful_shutdown(async { /* wait for a signal */ });
//! server.await?;
//! audit.shutdown().await?; // every queued event is in the sinks
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::actor::Actor;
use crate::config::Config;
use crate::error::AuditError;
use crate::event::{AuditEvent, Category, Outcome};
use crate::layer::AuditLayer;
use crate::redact::Scrubbed;

mod builder;
mod gap;
pub(crate) mod policy;
mod spare;
mod writer;

use self::gap::Gap;
pub(crate) use self::spare::{EventStrings, Spare, SpareEvents};

pub use self::builder::AuditTrailBuilder;

/// The handle of a running audit trail.
///
/// Keep it for the life of the server (share it in an `Arc` if handlers need it) and call
/// [`shutdown`](Self::shutdown) after the server stops. Dropping it without `shutdown` logs a
/// warning and drains the queue for up to five seconds, blocking the dropping thread.
#[must_use = "dropping the AuditTrail stops the trail; call `shutdown().await` when the server stops"]
pub struct AuditTrail {
    shared: Arc<Shared>,
    state: watch::Receiver<WriterState>,
    stop: Mutex<Option<StopHandle>>,
}

struct StopHandle {
    request: oneshot::Sender<oneshot::Sender<Result<(), AuditError>>>,
    finished: std::sync::mpsc::Receiver<()>,
}

impl AuditTrail {
    /// Starts configuring a trail.
    pub fn builder() -> AuditTrailBuilder {
        AuditTrailBuilder::new()
    }

    /// The layer that records every request it serves into this trail. Clone it freely.
    pub fn layer(&self) -> AuditLayer {
        AuditLayer::new(self.shared.clone())
    }

    /// Records an event that is not a request's (a background job, a system event), waiting
    /// for room in the queue if it is full.
    ///
    /// The event is redacted and bounded as the layer's own are: secret-named labels,
    /// `details`, `before`/`after` fields, changed fields, query parameters and route
    /// parameters (with `request.route` set) become `[REDACTED]`, credential headers are
    /// dropped, and every string is cut to its bound. The `reason`, the strings in `details`
    /// and the recorded headers' values lose the common shapes of a secret in free text
    /// (`password=...`, a URL's password, `Bearer ...`); the `target` is only bounded: keep
    /// secrets out of `target`, `reason` and `details` all the same. In labels, `before`,
    /// `after` and the changes' values, a URL's credentials are redacted whatever the
    /// field's name, and a change whose values differed only in what was redacted is
    /// recorded as a redacted change (changed, never what to).
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.shared.record(event).await
    }

    /// Waits until every event accepted before this call is written to every sink.
    ///
    /// Returns an error, without waiting further, while a sink keeps failing; its events are
    /// kept and retried, and a later `flush` succeeds once it recovers.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        let mut state = self.state.clone();
        let wait = async {
            self.shared
                .queue
                .send(Item::Flush(reply))
                .await
                .map_err(|_| AuditError::Closed)?;
            self.shared.wake_writer.notify_one();
            answer.await.unwrap_or(Err(AuditError::Closed))
        };
        tokio::select! {
            biased;
            result = wait => result,
            error = failure(&mut state) => Err(error),
        }
    }

    /// Stops the trail: refuses new events, writes every queued one, closes the sinks and
    /// stops the writer. Call it after the server has stopped serving; a second call returns
    /// [`AuditError::Closed`].
    ///
    /// Events offered after shutdown (a request still in flight) are not silently dropped:
    /// each is logged in full at ERROR level and counted in [`AuditStats::lost`].
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        if self.stop.lock().map(|s| s.is_none()).unwrap_or(true) {
            return Err(AuditError::Closed);
        }
        // Stopping the trail is itself an event (OWASP: audit start and stop).
        let _ = self.shared.record(lifecycle_event("audit.stop")).await;
        let Some(stop) = self.take_stop() else {
            return Err(AuditError::Closed);
        };
        let (reply, answer) = oneshot::channel();
        if stop.request.send(reply).is_err() {
            return Err(AuditError::Closed);
        }
        // The writer may be waiting out its write delay.
        self.shared.wake_writer.notify_one();
        answer.await.unwrap_or(Err(AuditError::Closed))
    }

    /// Counters of the trail so far.
    pub fn stats(&self) -> AuditStats {
        self.shared.stats()
    }

    /// Whether the trail keeps up: [`Health::Failing`] when a sink keeps failing or the
    /// queue is full (the failure policy is engaged), [`Health::Degraded`] while a sink is
    /// being retried, [`Health::Healthy`] otherwise.
    pub fn health(&self) -> Health {
        self.shared.health()
    }

    /// The routes served by sensitive handlers that have been called so far, with their
    /// actions.
    pub fn sensitive_routes(&self) -> Vec<SensitiveRouteInfo> {
        self.shared
            .sensitive_routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Opens every sink on the writer's thread, where they will run; the sinks that failed,
    /// by name, with why.
    async fn open_sinks(&self) -> Vec<(String, crate::sink::SinkError)> {
        let (reply, answer) = oneshot::channel();
        if self.shared.queue.send(Item::Open(reply)).await.is_err() {
            return vec![("writer".to_owned(), crate::sink::SinkError::new("stopped"))];
        }
        self.shared.wake_writer.notify_one();
        answer
            .await
            .unwrap_or_else(|_| vec![("writer".to_owned(), crate::sink::SinkError::new("stopped"))])
    }

    /// Records `audit.start`: the trail is running (OWASP: audit start and stop).
    fn record_start(&self) {
        // The queue is empty and at least one slot long, so this cannot wait.
        self.shared
            .enqueue_detached(self.shared.scrub(Box::new(lifecycle_event("audit.start"))));
    }

    /// Stops a trail that never started recording: its writer ends, nothing is written.
    async fn abandon(self) {
        let Some(stop) = self.take_stop() else {
            return;
        };
        let (reply, answer) = oneshot::channel();
        if stop.request.send(reply).is_ok() {
            self.shared.wake_writer.notify_one();
            let _ = answer.await;
        }
    }

    fn take_stop(&self) -> Option<StopHandle> {
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for AuditTrail {
    fn drop(&mut self) {
        let Some(stop) = self.take_stop() else { return };
        tracing::warn!(
            target: "audit",
            "AuditTrail dropped without `shutdown()`; draining the audit queue for up to 5 s"
        );
        let (reply, _answer) = oneshot::channel();
        let sent = stop.request.send(reply).is_ok();
        self.shared.wake_writer.notify_one();
        if sent
            && stop
                .finished
                .recv_timeout(std::time::Duration::from_secs(5))
                .is_err()
        {
            tracing::error!(
                target: "audit",
                "the audit writer did not finish within 5 s; it keeps running until the process exits"
            );
        }
    }
}

impl fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditTrail")
            .field("stats", &self.stats())
            .field(
                "running",
                &self.stop.lock().map(|s| s.is_some()).unwrap_or(false),
            )
            .finish()
    }
}

/// An event of the trail's own life.
pub(crate) fn lifecycle_event(action: &'static str) -> AuditEvent {
    AuditEvent::new(
        Category::System,
        action,
        Outcome::Success,
        Actor::service("audit"),
    )
}

/// How well the trail keeps up, from [`AuditTrail::health`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Events are written as they come.
    Healthy,
    /// A sink failed and is being retried; nothing is refused or dropped yet.
    Degraded {
        /// What is wrong.
        reason: String,
    },
    /// A sink keeps failing or the queue is full: the failure policy is engaged.
    Failing {
        /// What is wrong.
        reason: String,
    },
}

impl Health {
    /// Whether this is [`Health::Failing`].
    pub fn is_failing(&self) -> bool {
        matches!(self, Self::Failing { .. })
    }
}

/// Waits until the writer reports a failing sink, or stops.
async fn failure(state: &mut watch::Receiver<WriterState>) -> AuditError {
    loop {
        if let Some(error) = state.borrow_and_update().failing.clone() {
            return error;
        }
        if state.changed().await.is_err() {
            return AuditError::Closed;
        }
    }
}

/// Counters of a trail, from [`AuditTrail::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditStats {
    /// Events accepted into the queue.
    pub accepted: u64,
    /// Events written to every sink.
    pub written: u64,
    /// Failed sink writes (each is retried).
    pub write_errors: u64,
    /// Events that could not be accepted because the trail was shut down, or because the
    /// runtime stopped while a dropped request's event waited for room in a full queue; each
    /// was logged in full at ERROR level.
    pub lost: u64,
    /// Events waiting in the queue now.
    pub queued: u64,
    /// Ordinary events dropped by the [`DropWithGap`](crate::delivery::policy::Overflow::DropWithGap)
    /// policy (each recorded in an `audit.gap` event).
    pub dropped: u64,
    /// Sensitive requests refused because the trail could not take their event.
    pub refused: u64,
    /// Syncs of sinks (with group commit, far fewer than durable events).
    pub syncs: u64,
    /// Events that found the queue full: their sender (a request, or
    /// [`AuditTrail::record`]) waited for room, or the failure policy dropped or refused
    /// them. Above zero, the trail did not keep up at some point.
    pub queue_full: u64,
}

/// What travels from the layer to the writer.
// Events are moved into the queue's slots either way; boxing them would add an allocation
// per request to save a few hundred bytes per slot on the rare flush marker.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Item {
    /// An event, and who waits for it to be synced.
    Event(Scrubbed, Option<Ack>),
    /// Answer once everything before this item is written.
    Flush(oneshot::Sender<Result<(), AuditError>>),
    /// Open every sink, and answer with those that failed.
    Open(oneshot::Sender<Vec<(String, crate::sink::SinkError)>>),
}

/// Answers a request waiting for its event to be synced.
pub(crate) type Ack = oneshot::Sender<Synced>;

/// The answer to a request waiting for its event to be synced.
#[derive(Debug)]
pub(crate) struct Synced {
    pub(crate) result: Result<(), AuditError>,
    /// The event, once every sink has it: it goes back to be emptied on the request's
    /// thread, where what it holds was allocated, and kept there as a spare. Freed on the
    /// writer's thread instead, its few dozen allocations each take glibc's slow path for a
    /// foreign arena, under that arena's lock (7.6% of a durable POST's server time in a
    /// `perf` profile; BENCHMARKS.md, fourth round).
    pub(crate) event: Option<Box<AuditEvent>>,
}

/// What the writer tells the handle.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriterState {
    /// Set while a sink keeps failing.
    pub(crate) failing: Option<AuditError>,
    /// Set while a sink is being retried.
    pub(crate) degraded: bool,
}

/// A route served by a sensitive handler, as the layer has seen it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub struct SensitiveRouteInfo {
    /// The HTTP method.
    pub method: String,
    /// The route pattern (`/admin/users/{id}/role`).
    pub route: String,
    /// The handler's action (`user.role.change`).
    pub action: String,
}

/// State shared by the handle, every layer and the writer.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) queue: mpsc::Sender<Item>,
    /// Cuts the writer's write delay short (see [`Shared::sent`]).
    pub(crate) wake_writer: Arc<Notify>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) state: watch::Receiver<WriterState>,
    /// Routes served by sensitive handlers, learned as they are called.
    pub(crate) sensitive_routes: Mutex<BTreeSet<SensitiveRouteInfo>>,
    /// The memory of written events, for the next requests' events.
    pub(crate) spare_events: Arc<SpareEvents>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) gap: Mutex<Gap>,
}

/// A future waiting for room in the queue.
pub(crate) type Reserve =
    crate::sink::BoxFuture<'static, Result<mpsc::OwnedPermit<Item>, mpsc::error::SendError<()>>>;

/// Why an event could not be enqueued at once.
pub(crate) enum TryEnqueue {
    /// The queue is full: wait on this, then [`Shared::send_with`].
    Full(Scrubbed, Option<Ack>, Reserve),
}

impl Shared {
    /// Enqueues without waiting, or says how to wait.
    pub(crate) fn try_enqueue(&self, event: Scrubbed, ack: Option<Ack>) -> Result<(), TryEnqueue> {
        let urgent = ack.is_some();
        match self.queue.try_send(Item::Event(event, ack)) {
            Ok(()) => {
                self.sent(urgent);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(Item::Event(event, ack))) => {
                self.count_queue_full();
                Err(TryEnqueue::Full(
                    event,
                    ack,
                    Box::pin(self.queue.clone().reserve_owned()),
                ))
            }
            Err(mpsc::error::TrySendError::Closed(Item::Event(event, _))) => {
                self.lost(&event);
                Ok(())
            }
            // Only events are sent here.
            Err(_) => Ok(()),
        }
    }

    /// Enqueues with a permit obtained from a [`Reserve`].
    pub(crate) fn send_with(
        &self,
        permit: mpsc::OwnedPermit<Item>,
        event: Scrubbed,
        ack: Option<Ack>,
    ) {
        let urgent = ack.is_some();
        permit.send(Item::Event(event, ack));
        self.sent(urgent);
    }

    /// Counts an accepted event, and wakes the writer when it must not wait out its write
    /// delay: the event's response waits for it, or the queue is past half full.
    fn sent(&self, urgent: bool) {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        if urgent || self.queue.capacity() <= self.queue.max_capacity() / 2 {
            self.wake_writer.notify_one();
        }
    }

    /// Counts an event the policy lets go, for the next `audit.gap` event.
    pub(crate) fn count_gap(&self, event: &AuditEvent, refused: bool) {
        let counter = if refused {
            &self.counters.refused
        } else {
            &self.counters.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("audit_events_dropped_total", "reason" => if refused { "refused" } else { "policy" })
            .increment(1);
        self.counters
            .gap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(event, refused);
    }

    /// Whether the trail cannot take an event now: the queue is full or a sink keeps failing.
    #[cfg(feature = "axum")]
    pub(crate) fn is_congested(&self) -> bool {
        self.queue.capacity() == 0 || self.state.borrow().failing.is_some()
    }

    pub(crate) fn health(&self) -> Health {
        let state = self.state.borrow();
        if let Some(error) = &state.failing {
            return Health::Failing {
                reason: error.to_string(),
            };
        }
        if self.queue.capacity() == 0 {
            return Health::Failing {
                reason: "the audit queue is full".to_owned(),
            };
        }
        if state.degraded {
            return Health::Degraded {
                reason: "an audit sink failed and is being retried".to_owned(),
            };
        }
        Health::Healthy
    }

    /// Enqueues from a place that cannot wait (a dropped future): when the queue is full, a
    /// task (or, outside a runtime, a thread) waits for room instead.
    pub(crate) fn enqueue_detached(self: &Arc<Self>, event: Scrubbed) {
        match self.try_enqueue(event, None) {
            Ok(()) => {}
            Err(TryEnqueue::Full(event, _, reserve)) => {
                let mut waiting = Waiting {
                    shared: Arc::clone(self),
                    event: Some(event),
                };
                let wait = async move {
                    let room = reserve.await;
                    let Some(event) = waiting.event.take() else {
                        return;
                    };
                    match room {
                        Ok(permit) => waiting.shared.send_with(permit, event, None),
                        Err(_) => waiting.shared.lost(&event),
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(wait);
                    }
                    Err(_) => {
                        let spawned = std::thread::Builder::new()
                            .name("audit-enqueue".into())
                            .spawn(move || block_on_own_runtime(wait));
                        if let Err(error) = spawned {
                            tracing::error!(target: "audit", %error, "cannot start a thread to enqueue an audit event");
                        }
                    }
                }
            }
        }
    }

    /// Scrubs an event built by application code, waits for room, then enqueues.
    pub(crate) async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let event = self.scrub(Box::new(event));
        let item = match self.queue.try_send(Item::Event(event, None)) {
            Ok(()) => {
                self.sent(false);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Full(item)) => {
                self.count_queue_full();
                item
            }
            // The send below fails the same way, and says so.
            Err(mpsc::error::TrySendError::Closed(item)) => item,
        };
        match self.queue.send(item).await {
            Ok(()) => {
                self.sent(false);
                Ok(())
            }
            Err(mpsc::error::SendError(Item::Event(event, _))) => {
                self.lost(&event);
                Err(AuditError::Closed)
            }
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// `event`, through the one stage that redacts and bounds every event.
    pub(crate) fn scrub(&self, event: Box<AuditEvent>) -> Scrubbed {
        Scrubbed::new(event, &self.config.secret_names)
    }

    /// An event found the queue full (its sender waits, or the policy lets it go).
    fn count_queue_full(&self) {
        self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("audit_queue_full_total").increment(1);
    }

    /// An event that arrived after shutdown: never silent, it is logged in full.
    pub(crate) fn lost(&self, event: &AuditEvent) {
        self.log_lost(
            event,
            "audit trail is shut down; this audit event was not recorded in the trail",
        );
    }

    /// Counts an event that will never reach the trail, and logs it in full.
    fn log_lost(&self, event: &AuditEvent, why: &str) {
        self.counters.lost.fetch_add(1, Ordering::Relaxed);
        let json =
            serde_json::to_string(event).unwrap_or_else(|e| format!("<unserializable: {e}>"));
        tracing::error!(target: "audit", event = %json, "{why}");
    }

    /// Remembers that a sensitive handler serves this route.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn note_sensitive_route(&self, method: &str, route: &str, action: &str) {
        let mut routes = self
            .sensitive_routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = routes
            .iter()
            .any(|r| r.method == method && r.route == route && r.action == action);
        if !known {
            routes.insert(SensitiveRouteInfo {
                method: method.to_owned(),
                route: route.to_owned(),
                action: action.to_owned(),
            });
        }
    }

    pub(crate) fn stats(&self) -> AuditStats {
        AuditStats {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            written: self.counters.written.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            lost: self.counters.lost.load(Ordering::Relaxed),
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            queue_full: self.counters.queue_full.load(Ordering::Relaxed),
        }
    }
}

/// An event of a dropped request waiting, off the request's path, for room in the queue.
/// Dropped before it got in (its runtime shut down first, or no thread could be started to
/// wait), it tries the queue once more, and if there is still no room it is counted as lost
/// and logged in full: never dropped silently.
struct Waiting {
    shared: Arc<Shared>,
    event: Option<Scrubbed>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let Some(event) = self.event.take() else {
            return;
        };
        if let Err(TryEnqueue::Full(event, ..)) = self.shared.try_enqueue(event, None) {
            self.shared.log_lost(
                &event,
                "the runtime stopped while this audit event waited for room in the queue; \
                 it was not recorded in the trail",
            );
        }
    }
}

/// Runs a future to completion on a small runtime of its own (outside any runtime).
fn block_on_own_runtime<F: std::future::Future<Output = ()>>(future: F) {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            tracing::error!(target: "audit", %error, "cannot start a runtime to enqueue an audit event")
        }
    }
}
