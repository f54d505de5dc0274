//! The queue between the layer and the writer: what travels on it, and its sending end
//! ([`Intake`]), shared by every layer, the handle and detached senders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::gap::Gap;
use super::handle::{AuditStats, Health};
use super::policy::DeliveryPolicy;
use super::spare::SpareEvents;
use crate::error::AuditError;
use crate::event::AuditEvent;
use crate::redact::{Scrubbed, SecretNames};

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
    /// foreign arena, under that arena's lock (a measurable share of a durable POST's
    /// server time under `perf`).
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

/// The sending end of the queue: how an event gets in, and what the writer reports back.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(super) policy: DeliveryPolicy,
    /// For events that did not come through the layer's scrub (`AuditTrail::record`).
    pub(super) secret_names: SecretNames,
    pub(super) queue: mpsc::Sender<Item>,
    /// Cuts the writer's write delay short (see [`Intake::sent`]).
    pub(super) wake_writer: Arc<Notify>,
    pub(super) counters: Arc<Counters>,
    pub(super) state: watch::Receiver<WriterState>,
    /// The memory of written events, for the next requests' events.
    pub(super) spare_events: Arc<SpareEvents>,
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
    /// The queue is full: wait on this, then [`Intake::send_with`].
    Full(Scrubbed, Option<Ack>, Reserve),
}

impl AsRef<Intake> for Intake {
    fn as_ref(&self) -> &Intake {
        self
    }
}

impl Intake {
    /// How events are delivered.
    pub(crate) fn policy(&self) -> &DeliveryPolicy {
        &self.policy
    }

    /// The memory of written events, for the next requests' events.
    pub(crate) fn spare_events(&self) -> &SpareEvents {
        &self.spare_events
    }

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

    /// Whether a sensitive request is refused before its handler runs: the policy may refuse,
    /// and the trail cannot take an event now (the queue is full or a sink keeps failing).
    #[cfg(feature = "axum")]
    pub(crate) fn refuses_sensitive(&self) -> bool {
        self.policy.failure.may_refuse()
            && (self.queue.capacity() == 0 || self.state.borrow().failing.is_some())
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
        Scrubbed::new(event, &self.secret_names)
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

/// Enqueues from a place that cannot wait (a dropped future): when the queue is full, a
/// task (or, outside a runtime, a thread) waits for room instead. `owner` holds the
/// [`Intake`], and is kept alive while the event waits.
pub(crate) fn enqueue_detached<S>(owner: &Arc<S>, event: Scrubbed)
where
    S: AsRef<Intake> + Send + Sync + 'static,
{
    let Err(TryEnqueue::Full(event, _, reserve)) = (**owner).as_ref().try_enqueue(event, None)
    else {
        return;
    };
    let mut detached = DetachedEvent {
        owner: Arc::clone(owner),
        event: Some(event),
    };
    let wait = async move {
        let room = reserve.await;
        let Some(event) = detached.event.take() else {
            return;
        };
        let intake = (*detached.owner).as_ref();
        match room {
            Ok(permit) => intake.send_with(permit, event, None),
            Err(_) => intake.lost(&event),
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

/// An event of a dropped request waiting, off the request's path, for room in the queue.
/// Dropped before it got in (its runtime shut down first, or no thread could be started to
/// wait), it tries the queue once more, and if there is still no room it is counted as lost
/// and logged in full: never dropped silently.
struct DetachedEvent<S: AsRef<Intake>> {
    owner: Arc<S>,
    event: Option<Scrubbed>,
}

impl<S: AsRef<Intake>> Drop for DetachedEvent<S> {
    fn drop(&mut self) {
        let Some(event) = self.event.take() else {
            return;
        };
        let intake = (*self.owner).as_ref();
        if let Err(TryEnqueue::Full(event, ..)) = intake.try_enqueue(event, None) {
            intake.log_lost(
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
