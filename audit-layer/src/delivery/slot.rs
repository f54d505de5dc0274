//! One sink's place in the writer: how far it has written and synced, its failures and
//! when it is retried, and the calls that run it, a panic included.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use futures_util::FutureExt as _;
use tokio::time::Instant;

use super::queue::Counters;
use super::writer::WriterSettings;
use crate::error::{AuditError, panic_message};
use crate::event::AuditEvent;
use crate::sink::{BoxFuture, Sink, SinkError};

pub(super) struct SinkSlot {
    pub(super) sink: Box<dyn Sink>,
    /// The sink's name as a metric label, made once: metrics are recorded every round, and
    /// cloning a shared string does not allocate.
    pub(super) label: metrics::SharedString,
    /// Global index of the first event this sink has not been given.
    pub(super) written: u64,
    /// Global index of the first event this sink has not synced.
    pub(super) synced: u64,
    pub(super) last_sync: Instant,
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
    pub(super) last_error: String,
}

impl SinkSlot {
    pub(super) fn failing_error(&self, waiting: u64) -> AuditError {
        AuditError::SinkFailing {
            sink: self.sink.name().to_owned(),
            error: self.last_error.clone(),
            pending: waiting,
        }
    }

    pub(super) fn fail(
        &mut self,
        error: &str,
        settings: &WriterSettings,
        counters: &Counters,
        what: &str,
    ) {
        self.failures += 1;
        counters.write_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("audit_sink_errors_total", "sink" => self.label.clone()).increment(1);
        let exponent = self.failures.saturating_sub(1).min(16);
        let backoff = settings
            .backoff_initial
            .saturating_mul(1 << exponent)
            .min(settings.backoff_max);
        self.retry_at = Some(Instant::now() + backoff);
        self.last_error = error.to_owned();
        tracing::error!(
            target: "audit",
            sink = self.sink.name(),
            %error,
            attempt = self.failures,
            retry_in_ms = backoff.as_millis() as u64,
            "audit sink {what} failed; its events are kept and retried"
        );
    }

    pub(super) fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                target: "audit",
                sink = self.sink.name(),
                failures = self.failures,
                "audit sink recovered; no event was lost"
            );
        }
        self.failures = 0;
        self.retry_at = None;
    }

    pub(super) fn waiting(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| at > now)
    }

    /// Writes every event this sink does not have yet, a batch at a time, until done or an
    /// error.
    pub(super) async fn deliver(&mut self, round: &Round<'_>) {
        let accepted = round.accepted();
        while self.written < accepted {
            let start = (self.written - round.base) as usize;
            let end = (start + round.settings.batch_size).min(round.pending.len());
            let started = std::time::Instant::now();
            let batch = &round.pending[start..end];
            match guarded(|| self.sink.write_batch(batch)).await {
                Ok(()) => {
                    metrics::histogram!("audit_write_seconds", "sink" => self.label.clone())
                        .record(started.elapsed().as_secs_f64());
                    // A write after a failed sync does not mean the sink works again:
                    // the sync that follows will tell.
                    if self.synced == self.written {
                        self.recovered();
                    }
                    self.written = round.base + end as u64;
                }
                Err(error) => {
                    self.fail(&error.to_string(), round.settings, round.counters, "write");
                    break;
                }
            }
        }
    }

    /// Syncs what this sink has written if it is due (or `all`).
    pub(super) async fn sync(&mut self, round: &Round<'_>, all: bool, now: Instant) {
        // A sink that failed is synced at once: only a sync can show it works again.
        let due = all
            || self.failures > 0
            || self.synced < round.durable_upto
            || self.written - self.synced >= round.settings.sync_batch
            || now.duration_since(self.last_sync) >= round.settings.sync_interval;
        if !due {
            return;
        }
        let started = std::time::Instant::now();
        match guarded(|| self.sink.sync()).await {
            Ok(()) => {
                metrics::histogram!("audit_sync_seconds", "sink" => self.label.clone())
                    .record(started.elapsed().as_secs_f64());
                round.counters.syncs.fetch_add(1, Ordering::Relaxed);
                self.synced = self.written;
                self.last_sync = now;
                // A sync of what was written before a write failed does not mean the
                // sink works again: only one that leaves nothing behind does.
                if self.written == round.accepted() {
                    self.recovered();
                }
            }
            Err(error) => self.fail(&error.to_string(), round.settings, round.counters, "sync"),
        }
    }
}

/// What every sink's part of one delivery or sync round reads.
pub(super) struct Round<'a> {
    pub(super) pending: &'a [AuditEvent],
    pub(super) base: u64,
    pub(super) durable_upto: u64,
    pub(super) settings: &'a WriterSettings,
    pub(super) counters: &'a Counters,
}

impl Round<'_> {
    /// The global index one past the last accepted event.
    pub(super) fn accepted(&self) -> u64 {
        self.base + self.pending.len() as u64
    }
}

/// Runs one call of a sink, a panic included: a sink that panics is a failing sink, whose
/// events wait and are retried like those of any sink that fails, not a dead writer thread
/// that would lose every event it holds and stop taking more.
pub(super) async fn guarded<'a>(
    call: impl FnOnce() -> BoxFuture<'a, Result<(), SinkError>>,
) -> Result<(), SinkError> {
    let future = panic::catch_unwind(AssertUnwindSafe(call)).map_err(panicked)?;
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| Err(panicked(payload)))
}

fn panicked(payload: Box<dyn std::any::Any + Send>) -> SinkError {
    SinkError::new(format!(
        "the sink panicked: {}",
        panic_message(payload.as_ref())
    ))
}
