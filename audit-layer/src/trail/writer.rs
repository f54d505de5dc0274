//! The background writer: takes events from the queue in batches and hands them to the sinks.
//!
//! It runs on a thread of its own with a single-threaded runtime, so sinks may block (file
//! I/O) without stalling the application's runtime, and a busy application cannot starve the
//! trail. Each sink keeps its own position in the list of pending events: a failing sink is
//! retried with backoff from where it stopped while the others go on, and an event leaves
//! memory only once every sink has it. The number of pending events is bounded; when a sink
//! is down long enough to reach the bound, the writer stops taking events from the queue,
//! the queue fills, and requests wait: backpressure, not loss.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{Counters, Item, WriterState};
use crate::error::AuditError;
use crate::event::AuditEvent;
use crate::sink::Sink;

#[derive(Clone, Debug)]
pub(crate) struct WriterSettings {
    pub(crate) batch_size: usize,
    pub(crate) max_pending: usize,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) failing_after: u32,
    pub(crate) shutdown_timeout: Duration,
    /// How often sinks get [`Sink::flush`].
    pub(crate) flush_interval: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            batch_size: 512,
            max_pending: 8192,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            failing_after: 3,
            shutdown_timeout: Duration::from_secs(30),
            flush_interval: Duration::from_secs(1),
        }
    }
}

type Reply = oneshot::Sender<Result<(), AuditError>>;

pub(crate) struct Writer {
    items: mpsc::Receiver<Item>,
    stop: oneshot::Receiver<Reply>,
    sinks: Vec<SinkSlot>,
    /// Events accepted but not yet written to every sink, oldest first.
    pending: Vec<AuditEvent>,
    /// Events written to every sink and dropped from `pending`.
    delivered: u64,
    /// Flush requests: answer once `delivered` reaches the ticket.
    waiters: Vec<(u64, Reply)>,
    received: Vec<Item>,
    counters: Arc<Counters>,
    state: watch::Sender<WriterState>,
    settings: WriterSettings,
}

struct SinkSlot {
    sink: Box<dyn Sink>,
    /// Index in `pending` of the first event this sink does not have.
    position: usize,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl SinkSlot {
    fn failing_error(&self, pending: u64) -> AuditError {
        AuditError::SinkFailing {
            sink: self.sink.name().to_owned(),
            error: self.last_error.clone(),
            pending,
        }
    }
}

impl Writer {
    pub(crate) fn new(
        items: mpsc::Receiver<Item>,
        stop: oneshot::Receiver<Reply>,
        sinks: Vec<Box<dyn Sink>>,
        counters: Arc<Counters>,
        state: watch::Sender<WriterState>,
        settings: WriterSettings,
    ) -> Self {
        Self {
            items,
            stop,
            sinks: sinks
                .into_iter()
                .map(|sink| SinkSlot {
                    sink,
                    position: 0,
                    failures: 0,
                    retry_at: None,
                    last_error: String::new(),
                })
                .collect(),
            pending: Vec::new(),
            delivered: 0,
            waiters: Vec::new(),
            received: Vec::with_capacity(settings.batch_size),
            counters,
            state,
            settings,
        }
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

    async fn run(mut self) {
        let mut flush_timer = tokio::time::interval(self.settings.flush_interval);
        flush_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.settings.max_pending.saturating_sub(self.pending.len());
            let retry_at = self.next_retry();
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
                    self.take_received();
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
                _ = flush_timer.tick() => self.flush_sinks().await,
            }
            self.deliver().await;
            self.settle();
        }
    }

    /// Gives every sink its periodic [`Sink::flush`].
    async fn flush_sinks(&mut self) {
        for slot in &mut self.sinks {
            if let Err(error) = slot.sink.flush().await {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "audit", sink = slot.sink.name(), %error, "audit sink flush failed");
            }
        }
    }

    fn take_received(&mut self) {
        for item in self.received.drain(..) {
            match item {
                Item::Event(event) => self.pending.push(event),
                Item::Flush(reply) => {
                    let ticket = self.delivered + self.pending.len() as u64;
                    self.waiters.push((ticket, reply));
                }
            }
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.sinks
            .iter()
            .filter(|slot| slot.position < self.pending.len())
            .filter_map(|slot| slot.retry_at)
            .min()
    }

    /// Hands every sink the events it does not have yet, in batches, skipping sinks that are
    /// waiting out a backoff.
    async fn deliver(&mut self) {
        let now = Instant::now();
        for slot in &mut self.sinks {
            if slot.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            while slot.position < self.pending.len() {
                let end = (slot.position + self.settings.batch_size).min(self.pending.len());
                let batch = &self.pending[slot.position..end];
                match slot.sink.write_batch(batch).await {
                    Ok(()) => {
                        if slot.failures > 0 {
                            tracing::info!(
                                target: "audit",
                                sink = slot.sink.name(),
                                failures = slot.failures,
                                "audit sink recovered; no event was lost"
                            );
                        }
                        slot.position = end;
                        slot.failures = 0;
                        slot.retry_at = None;
                    }
                    Err(error) => {
                        slot.failures += 1;
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        let exponent = slot.failures.saturating_sub(1).min(16);
                        let backoff = self
                            .settings
                            .backoff_initial
                            .saturating_mul(1 << exponent)
                            .min(self.settings.backoff_max);
                        slot.retry_at = Some(Instant::now() + backoff);
                        slot.last_error = error.to_string();
                        tracing::error!(
                            target: "audit",
                            sink = slot.sink.name(),
                            %error,
                            attempt = slot.failures,
                            waiting = self.pending.len() - slot.position,
                            retry_in_ms = backoff.as_millis() as u64,
                            "audit sink write failed; its events are kept and retried"
                        );
                        break;
                    }
                }
            }
        }
    }

    /// Drops events every sink has, answers flushes, and publishes the health state.
    fn settle(&mut self) {
        let done = self
            .sinks
            .iter()
            .map(|slot| slot.position)
            .min()
            .unwrap_or(self.pending.len());
        if done > 0 {
            self.pending.drain(..done);
            for slot in &mut self.sinks {
                slot.position -= done;
            }
            self.delivered += done as u64;
            self.counters
                .written
                .fetch_add(done as u64, Ordering::Relaxed);
        }
        let failing = self
            .sinks
            .iter()
            .find(|slot| slot.failures >= self.settings.failing_after)
            .map(|slot| slot.failing_error((self.pending.len() - slot.position) as u64));
        let delivered = self.delivered;
        let mut index = 0;
        while index < self.waiters.len() {
            let ticket = self.waiters[index].0;
            let answer = if ticket <= delivered {
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
        self.state.send_if_modified(|state| {
            let changed = state.failing != failing;
            state.failing = failing;
            changed
        });
    }

    /// Shutdown: take everything still queued, deliver it (retrying up to the shutdown
    /// timeout), close the sinks, and answer.
    async fn finish(mut self, reply: Option<Reply>) {
        self.items.close();
        while let Some(item) = self.items.recv().await {
            self.received.push(item);
        }
        self.take_received();
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        loop {
            self.deliver().await;
            self.settle();
            if self.pending.is_empty() {
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
            if let Err(error) = slot.sink.close().await {
                tracing::error!(target: "audit", sink = slot.sink.name(), %error, "audit sink failed to close");
                if result.is_ok() {
                    result = Err(AuditError::Close {
                        sink: slot.sink.name().to_owned(),
                        error: error.to_string(),
                    });
                }
            }
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
        let Some(slot) = self.sinks.iter().min_by_key(|slot| slot.position) else {
            return AuditError::Closed;
        };
        let first_missing = slot.position;
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
