//! The background writer: takes events from the queue in batches and hands them to the sinks.
//!
//! It runs on a thread of its own with a single-threaded runtime, so sinks may block (file
//! I/O) without stalling the application's runtime, and a busy application cannot starve the
//! trail. Sinks are served at the same time, so one waiting on its server (a database
//! commit) does not hold back another's writes. Each sink keeps its own position in the list
//! of pending events: a failing sink is retried with backoff from where it stopped while the
//! others go on, and an event leaves memory only once every sink has it. The number of
//! pending events is bounded; when a sink is down long enough to reach the bound, the writer
//! stops taking events from the queue, the queue fills, and the failure policy applies:
//! backpressure, never silent loss.
//!
//! Durability: a sink is synced after a batch that holds a [`Durability::Synced`] event
//! (whose request waits for it), every sync interval when it has unsynced events, and when
//! enough have piled up. Requests that arrive while a sync runs share the next one: group
//! commit.
//!
//! [`Durability::Synced`]: crate::delivery::policy::Durability::Synced

use std::collections::VecDeque;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::gather::gather_time;
use super::queue::{Ack, Counters, Item, Synced, WriterState};
use super::slot::{Round, SinkSlot, guarded};
use super::spare::{Recycler, SpareEvents};
use crate::detect::Detector;
use crate::error::{AuditError, panic_message};
use crate::event::{AuditEvent, Category};
use crate::redact::{SecretNames, scrub};
use crate::sink::{Sink, SinkError};

#[derive(Clone, Debug)]
pub(crate) struct WriterSettings {
    /// Alerts are synced in the round that raises them (the durability of `alert` events).
    pub(crate) sync_alerts: bool,
    pub(crate) batch_size: usize,
    pub(crate) max_pending: usize,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) failing_after: u32,
    pub(crate) shutdown_timeout: Duration,
    /// Unsynced events are synced at least this often.
    pub(crate) sync_interval: Duration,
    /// ...or as soon as this many are unsynced.
    pub(crate) sync_batch: u64,
    /// How often sinks get [`Sink::flush`] (checkpoints and other periodic work).
    pub(crate) tick_interval: Duration,
    /// How long ordinary events are gathered before a write.
    pub(crate) write_delay: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            sync_alerts: true,
            batch_size: 512,
            max_pending: 8192,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            failing_after: 3,
            shutdown_timeout: Duration::from_secs(30),
            sync_interval: Duration::from_millis(100),
            sync_batch: 4096,
            tick_interval: Duration::from_secs(1),
            write_delay: Duration::from_millis(2),
        }
    }
}

type Reply = oneshot::Sender<Result<(), AuditError>>;
type OpenReply = oneshot::Sender<Vec<(String, SinkError)>>;

pub(crate) struct Writer {
    items: mpsc::Receiver<Item>,
    /// Notified when something must not wait out the write delay.
    wake: Arc<Notify>,
    stop: oneshot::Receiver<Reply>,
    sinks: Vec<SinkSlot>,
    /// Events accepted but not yet written to every sink, oldest first.
    pending: Vec<AuditEvent>,
    /// The number of events ever accepted before `pending[0]` (the global index of
    /// `pending[0]`).
    base: u64,
    /// One past the global index of the last event that must be synced before its
    /// response leaves.
    durable_upto: u64,
    /// Requests waiting for their event to be synced, by global index.
    acks: VecDeque<AwaitingSync>,
    /// Flush requests: answer once every event before the ticket is written.
    waiters: Vec<(u64, Reply)>,
    /// Requests to open every sink (a checked start).
    opens: Vec<OpenReply>,
    received: Vec<Item>,
    /// Hands the memory of written events back to the layer.
    recycler: Recycler,
    detectors: Vec<Box<dyn Detector>>,
    /// The alerts the detectors raise about one event, before they are accepted.
    alerts: Vec<AuditEvent>,
    /// For the alerts and `audit.gap` events made here: every event is scrubbed.
    secret_names: SecretNames,
    counters: Arc<Counters>,
    state: watch::Sender<WriterState>,
    settings: WriterSettings,
    last_tick: Instant,
    /// When the last round took its events from the queue: with the number it took, the
    /// rate at which events arrive, which sets how long the next round gathers.
    last_receive: Instant,
}

/// A request waiting for its event to be synced.
struct AwaitingSync {
    /// The event's global index.
    index: u64,
    ack: Ack,
    /// The event, once every sink has it (written, maybe not yet synced).
    event: Option<Box<AuditEvent>>,
}

impl Writer {
    pub(crate) fn new(
        items: mpsc::Receiver<Item>,
        wake: Arc<Notify>,
        stop: oneshot::Receiver<Reply>,
        sinks: Vec<Box<dyn Sink>>,
        counters: Arc<Counters>,
        state: watch::Sender<WriterState>,
        settings: WriterSettings,
    ) -> Self {
        let now = Instant::now();
        Self {
            items,
            wake,
            stop,
            sinks: sinks
                .into_iter()
                .map(|sink| SinkSlot {
                    label: metrics::SharedString::from_shared(Arc::from(sink.name())),
                    sink,
                    written: 0,
                    synced: 0,
                    last_sync: now,
                    failures: 0,
                    retry_at: None,
                    last_error: String::new(),
                })
                .collect(),
            pending: Vec::new(),
            base: 0,
            durable_upto: 0,
            acks: VecDeque::new(),
            waiters: Vec::new(),
            opens: Vec::new(),
            received: Vec::with_capacity(settings.batch_size),
            recycler: Recycler::new(Arc::default()),
            detectors: Vec::new(),
            alerts: Vec::new(),
            secret_names: SecretNames::default(),
            counters,
            state,
            settings,
            last_tick: now,
            last_receive: now,
        }
    }

    /// Where the layer finds the memory of the events this writer is done with.
    pub(crate) fn spare_events(&self) -> Arc<SpareEvents> {
        self.recycler.spare_events()
    }

    /// The detectors that see each accepted event, and the secret names their alerts are
    /// scrubbed with.
    pub(crate) fn with_detectors(
        mut self,
        detectors: Vec<Box<dyn Detector>>,
        secret_names: SecretNames,
    ) -> Self {
        self.detectors = detectors;
        self.secret_names = secret_names;
        self
    }

    /// Starts the writer on its own thread; `finished` is signalled when it has stopped.
    pub(crate) fn spawn(self, finished: std::sync::mpsc::Sender<()>) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                runtime.block_on(self.run());
                let _ = finished.send(());
            })?;
        Ok(())
    }

    /// The global index one past the last accepted event.
    fn accepted(&self) -> u64 {
        self.base + self.pending.len() as u64
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.settings.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.settings.max_pending.saturating_sub(self.pending.len());
            let retry_at = self.next_retry();
            let mut received = 0;
            let mut received_over = Duration::ZERO;
            tokio::select! {
                biased;
                reply = &mut self.stop => {
                    self.finish(reply.ok()).await;
                    return;
                }
                count = self.items.recv_many(&mut self.received, room.min(self.settings.batch_size)), if room > 0 => {
                    if count == 0 {
                        // Every sender is gone; nothing more can arrive.
                        self.finish(None).await;
                        return;
                    }
                    received = count;
                    let now = Instant::now();
                    received_over = now.saturating_duration_since(self.last_receive);
                    self.last_receive = now;
                    self.take_received();
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
                _ = tick.tick() => {}
            }
            self.open_sinks().await;
            self.record_gap();
            self.deliver().await;
            self.sync(false).await;
            self.periodic_tick().await;
            self.settle();
            if received > 0 && received < self.settings.batch_size {
                self.gather(gather_time(
                    self.settings.write_delay,
                    received,
                    received_over,
                ))
                .await;
            }
        }
    }

    /// Lets ordinary events gather for `time` (see [`gather_time`]), unless something
    /// urgent arrives.
    ///
    /// While the writer is not waiting on the queue, a send does not wake its thread: at a
    /// high rate that saves a wake-up (a syscall and a context switch) per event. Senders
    /// notify `wake` for what must not wait: an event whose response waits for its sync, a
    /// flush, a queue past half full.
    async fn gather(&mut self, time: Duration) {
        if time.is_zero() || !self.acks.is_empty() || !self.waiters.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            () = self.wake.notified() => {}
            () = tokio::time::sleep(time) => {}
        }
    }

    fn take_received(&mut self) {
        metrics::histogram!("audit_batch_size").record(self.received.len() as f64);
        // Taken out while detectors look at each event; put back to keep its capacity.
        let mut received = std::mem::take(&mut self.received);
        for item in received.drain(..) {
            match item {
                Item::Event(event, ack) => {
                    let index = self.base + self.pending.len() as u64;
                    if let Some(ack) = ack {
                        self.durable_upto = index + 1;
                        self.acks.push_back(AwaitingSync {
                            index,
                            ack,
                            event: None,
                        });
                    }
                    self.pending.push(self.recycler.unbox(event.into_inner()));
                    if !self.detectors.is_empty() {
                        self.detect();
                    }
                }
                Item::Open(reply) => self.opens.push(reply),
                Item::Flush(reply) => {
                    let ticket = self.base + self.pending.len() as u64;
                    self.waiters.push((ticket, reply));
                }
            }
        }
        self.received = received;
        metrics::gauge!("audit_queue_depth")
            .set((self.items.max_capacity() - self.items.capacity()) as f64);
    }

    /// Shows the event just accepted to every detector. Their alerts are accepted right
    /// after it (and synced this round, unless alerts are configured as batched); alerts
    /// themselves are not shown to detectors.
    fn detect(&mut self) {
        let Some(event) = self.pending.last() else {
            return;
        };
        if event.category == Category::Alert {
            return;
        }
        for detector in &mut self.detectors {
            let raised = self.alerts.len();
            let observed = panic::catch_unwind(AssertUnwindSafe(|| {
                detector.observe(event, &mut self.alerts)
            }));
            if let Err(payload) = observed {
                // A detector's bug must not stop the trail, nor lose the event it looked at.
                self.alerts.truncate(raised);
                tracing::error!(
                    target: "audit",
                    detector = detector.name(),
                    panic = panic_message(payload.as_ref()),
                    "an audit detector panicked; it is skipped for this event"
                );
            }
            let count = self.alerts.len() - raised;
            if count > 0 {
                metrics::counter!("audit_alerts_total", "detector" => detector.name().to_owned())
                    .increment(count as u64);
            }
        }
        for mut alert in self.alerts.drain(..) {
            // A detector is the application's code: what it writes is scrubbed as every
            // event is (its reason may quote a login's body).
            alert.category = Category::Alert;
            scrub(&mut alert, &self.secret_names);
            tracing::warn!(
                target: "audit",
                action = %alert.action,
                reason = alert.reason.as_deref().unwrap_or_default(),
                "audit alert"
            );
            self.pending.push(alert);
            if self.settings.sync_alerts {
                self.durable_upto = self.base + self.pending.len() as u64;
            }
        }
    }

    /// Events dropped or refused while the trail could not take them are recorded as one
    /// `audit.gap` event, as soon as every sink works again.
    fn record_gap(&mut self) {
        if self.sinks.iter().any(|slot| slot.failures > 0) {
            return;
        }
        let gap = self
            .counters
            .gap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_event();
        if let Some(mut event) = gap {
            scrub(&mut event, &self.secret_names);
            tracing::warn!(target: "audit", reason = ?event.reason, "recording an audit gap");
            self.pending.push(event);
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        let accepted = self.accepted();
        self.sinks
            .iter()
            .filter(|slot| slot.written < accepted || slot.synced < slot.written)
            .filter_map(|slot| slot.retry_at)
            .min()
    }

    /// Hands every sink the events it does not have yet, in batches, skipping sinks that are
    /// waiting out a backoff. Sinks are served at the same time: while one waits on its
    /// server, another writes.
    async fn deliver(&mut self) {
        let now = Instant::now();
        let (sinks, round) = self.round();
        join_each(
            sinks
                .iter_mut()
                .filter(|slot| !slot.waiting(now))
                .map(|slot| slot.deliver(&round)),
        )
        .await;
    }

    /// Syncs each sink that holds unsynced events someone waits for, or that has waited
    /// long enough, or has too many; `all` syncs every sink with unsynced events. Sinks are
    /// synced at the same time.
    async fn sync(&mut self, all: bool) {
        let now = Instant::now();
        let (sinks, round) = self.round();
        join_each(
            sinks
                .iter_mut()
                .filter(|slot| slot.synced < slot.written && !slot.waiting(now))
                .map(|slot| slot.sync(&round, all, now)),
        )
        .await;
    }

    /// The sinks, and what each one's part of a round reads.
    fn round(&mut self) -> (&mut [SinkSlot], Round<'_>) {
        let round = Round {
            pending: &self.pending,
            base: self.base,
            durable_upto: self.durable_upto,
            settings: &self.settings,
            counters: &self.counters,
        };
        (&mut self.sinks, round)
    }

    /// Opens every sink for each request to, and answers with the failures.
    async fn open_sinks(&mut self) {
        for reply in std::mem::take(&mut self.opens) {
            let mut failures = Vec::new();
            for slot in &mut self.sinks {
                if let Err(error) = guarded(|| slot.sink.open()).await {
                    failures.push((slot.sink.name().to_owned(), error));
                }
            }
            let _ = reply.send(failures);
        }
    }

    async fn periodic_tick(&mut self) {
        if self.last_tick.elapsed() < self.settings.tick_interval {
            return;
        }
        self.last_tick = Instant::now();
        for slot in &mut self.sinks {
            if let Err(error) = guarded(|| slot.sink.tick()).await {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "audit", sink = slot.sink.name(), %error, "audit sink tick failed");
            }
        }
    }

    /// Drops events every sink has, answers flushes and acks, and publishes the health.
    fn settle(&mut self) {
        let written = self
            .sinks
            .iter()
            .map(|s| s.written)
            .min()
            .unwrap_or(self.accepted());
        let synced = self
            .sinks
            .iter()
            .map(|s| s.synced)
            .min()
            .unwrap_or(self.accepted());
        let done = (written - self.base) as usize;
        if done > 0 {
            // Events someone waits for go back with the answer; the memory of the rest goes
            // back to the layer.
            let mut waiting = self.acks.partition_point(|w| w.index < self.base);
            for (index, event) in (self.base..).zip(self.pending.drain(..done)) {
                match self.acks.get_mut(waiting) {
                    Some(w) if w.index == index => {
                        w.event = Some(self.recycler.rebox(event));
                        waiting += 1;
                    }
                    _ => self.recycler.recycle(event),
                }
            }
            self.recycler.hand_back(self.pending.len());
            self.base = written;
            self.counters
                .written
                .fetch_add(done as u64, Ordering::Relaxed);
            metrics::counter!("audit_events_written_total").increment(done as u64);
        }
        while self.acks.front().is_some_and(|w| w.index < synced) {
            if let Some(w) = self.acks.pop_front() {
                let _ = w.ack.send(Synced {
                    result: Ok(()),
                    event: w.event,
                });
            }
        }
        let accepted = self.accepted();
        for slot in &self.sinks {
            // How far behind each sink is: a slow database or broker shows here first.
            metrics::gauge!("audit_sink_pending_events", "sink" => slot.label.clone())
                .set((accepted - slot.written) as f64);
        }
        let failing = self
            .sinks
            .iter()
            .find(|slot| slot.failures >= self.settings.failing_after)
            .map(|slot| slot.failing_error(accepted - slot.written.min(slot.synced)));
        // The health is published before any flush hears of a failure: a caller told that
        // its flush failed must not then read a healthy trail.
        let degraded = self.sinks.iter().any(|slot| slot.failures > 0);
        self.state.send_if_modified(|state| {
            let changed = state.failing != failing || state.degraded != degraded;
            state.failing.clone_from(&failing);
            state.degraded = degraded;
            changed
        });
        let mut index = 0;
        while index < self.waiters.len() {
            let ticket = self.waiters[index].0;
            let answer = if ticket <= written {
                Some(Ok(()))
            } else {
                failing.clone().map(Err)
            };
            match answer {
                Some(answer) => {
                    let (_, reply) = self.waiters.swap_remove(index);
                    let _ = reply.send(answer);
                }
                None => index += 1,
            }
        }
    }

    /// Shutdown: take everything still queued, deliver and sync it (retrying up to the
    /// shutdown timeout), close and drop the sinks, and answer.
    async fn finish(mut self, reply: Option<Reply>) {
        self.items.close();
        while let Some(item) = self.items.recv().await {
            self.received.push(item);
        }
        self.take_received();
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        loop {
            self.record_gap();
            self.deliver().await;
            self.sync(true).await;
            self.settle();
            let accepted = self.accepted();
            if self.sinks.iter().all(|s| s.synced == accepted) {
                break;
            }
            match self.next_retry() {
                Some(at) if at < deadline => tokio::time::sleep_until(at).await,
                _ => break,
            }
        }
        let mut result = Ok(());
        if !self.pending.is_empty() {
            result = Err(self.give_up());
        }
        for slot in &mut self.sinks {
            if let Err(error) = guarded(|| slot.sink.close()).await {
                tracing::error!(target: "audit", sink = slot.sink.name(), %error, "audit sink failed to close");
                if result.is_ok() {
                    result = Err(AuditError::Close {
                        sink: slot.sink.name().to_owned(),
                        error: error.to_string(),
                    });
                }
            }
        }
        // Dropped before anyone hears of the shutdown: a sink's resources (a trail
        // directory's lock, a pool's connections) are free once `shutdown()` returns.
        self.sinks.clear();
        for w in self.acks.drain(..) {
            let _ = w.ack.send(Synced {
                result: result.clone(),
                event: w.event,
            });
        }
        for (_, waiter) in self.waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    /// The last resort for events a sink never took: standard error, one JSON line each,
    /// so they reach whatever collects the process's output instead of vanishing.
    fn give_up(&mut self) -> AuditError {
        // The sink furthest behind has every event some sink is missing.
        let Some(slot) = self.sinks.iter().min_by_key(|slot| slot.written) else {
            return AuditError::Closed;
        };
        let first_missing = (slot.written - self.base) as usize;
        let error = AuditError::Undelivered {
            sink: slot.sink.name().to_owned(),
            error: slot.last_error.clone(),
            count: (self.pending.len() - first_missing) as u64,
        };
        tracing::error!(target: "audit", %error, "audit shutdown gave up on a failing sink");
        let stderr = std::io::stderr();
        let mut out = stderr.lock();
        for event in &self.pending[first_missing..] {
            if let Ok(json) = serde_json::to_string(event) {
                let _ = writeln!(out, "audit-undelivered {json}");
            }
        }
        error
    }
}

/// Awaits the futures at the same time. A single one (one sink, the usual case) is awaited
/// as it is: `join_all` would allocate for it at every round.
async fn join_each<F: Future<Output = ()>>(mut futures: impl Iterator<Item = F>) {
    let Some(first) = futures.next() else {
        return;
    };
    match futures.next() {
        None => first.await,
        Some(second) => {
            join_all([first, second].into_iter().chain(futures)).await;
        }
    }
}
