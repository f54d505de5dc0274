//! Helpers for testing what your application does when its audit trail has trouble.
//!
//! [`FaultySink`] wraps any sink and, on command, fails its writes or syncs (with the error
//! kind you choose, `StorageFull` by default: a full disk), stalls them, and counts them
//! (done, and held by a stall: [`Faults::held`]).
//!
//! # Example
//!
//! ```
//! use audit_layer::testing::FaultySink;
//! use audit_layer::AuditTrail;
//! use audit_layer::sink::MemorySink;
//! use std::time::Duration;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (sink, faults) = FaultySink::new(MemorySink::new());
//! let audit = AuditTrail::builder()
//!     .sink(sink)
//!     .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
//!     .failing_after(1)
//!     .build()?;
//! faults.fail_writes(u64::MAX);
//! audit.record(audit_layer::AuditEvent::new(
//!     audit_layer::Category::System, "job.run", audit_layer::Outcome::Success,
//!     audit_layer::Actor::service("cron"),
//! )).await?;
//! assert!(audit.flush().await.is_err()); // the disk is full
//! faults.heal();
//! audit.shutdown().await?; // retried: nothing was lost
//! assert!(faults.writes() >= 1);
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::event::AuditEvent;
use crate::sink::{BoxFuture, Sink, SinkError};

/// A sink that fails, stalls and counts on command; see the [module docs](self).
pub struct FaultySink<S> {
    inner: S,
    name: String,
    control: Faults,
}

/// The remote control of a [`FaultySink`]; clones control the same sink.
#[derive(Clone)]
pub struct Faults {
    state: Arc<State>,
}

struct State {
    fail_writes: AtomicU64,
    fail_syncs: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    error_kind: Mutex<io::ErrorKind>,
    stalled: Mutex<bool>,
    resumed: Condvar,
    /// Writes and syncs waiting for [`Faults::resume`] right now.
    held: AtomicU64,
}

impl<S: Sink> FaultySink<S> {
    /// Wraps `inner`; faults start switched off.
    pub fn new(inner: S) -> (Self, Faults) {
        let control = Faults {
            state: Arc::new(State {
                fail_writes: AtomicU64::new(0),
                fail_syncs: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                error_kind: Mutex::new(io::ErrorKind::StorageFull),
                stalled: Mutex::new(false),
                resumed: Condvar::new(),
                held: AtomicU64::new(0),
            }),
        };
        let name = format!("faulty:{}", inner.name());
        (
            Self {
                inner,
                name,
                control: control.clone(),
            },
            control,
        )
    }
}

impl Faults {
    /// Fails the next `count` writes (`u64::MAX`: until [`heal`](Self::heal)).
    pub fn fail_writes(&self, count: u64) {
        self.state.fail_writes.store(count, Ordering::SeqCst);
    }

    /// Fails the next `count` syncs (`u64::MAX`: until [`heal`](Self::heal)).
    pub fn fail_syncs(&self, count: u64) {
        self.state.fail_syncs.store(count, Ordering::SeqCst);
    }

    /// The kind of the injected errors (`StorageFull` by default).
    pub fn error_kind(&self, kind: io::ErrorKind) {
        *self
            .state
            .error_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = kind;
    }

    /// Makes writes and syncs block until [`resume`](Self::resume).
    pub fn stall(&self) {
        *self
            .state
            .stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
    }

    /// Lets stalled writes and syncs go on.
    pub fn resume(&self) {
        *self
            .state
            .stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        self.state.resumed.notify_all();
    }

    /// Stops every injected failure and stall.
    pub fn heal(&self) {
        self.fail_writes(0);
        self.fail_syncs(0);
        self.resume();
    }

    /// How many writes and syncs a stall holds right now. A test waits for it to be 1 to
    /// know that the writer is held, with what it took from the queue, before it fills the
    /// queue: otherwise the writer may still take an event and free a slot.
    pub fn held(&self) -> u64 {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Successful writes (batches) so far.
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// Successful syncs so far.
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::SeqCst)
    }

    /// Blocks while stalled (the sink runs on the trail's writer thread, so it may block).
    fn wait_if_stalled(&self) {
        let mut stalled = self
            .state
            .stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !*stalled {
            return;
        }
        self.state.held.fetch_add(1, Ordering::SeqCst);
        while *stalled {
            stalled = self
                .state
                .resumed
                .wait(stalled)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.state.held.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether to fail this call, consuming one planned failure.
    fn should_fail(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u64::MAX => Some(u64::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }

    fn error(&self, what: &str) -> SinkError {
        let kind = *self
            .state
            .error_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        SinkError::from(io::Error::new(kind, format!("injected {what} failure")))
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("writes", &self.writes())
            .field("syncs", &self.syncs())
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for FaultySink<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultySink")
            .field("name", &self.name)
            .field("faults", &self.control)
            .finish_non_exhaustive()
    }
}

impl<S: Sink> Sink for FaultySink<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.control.wait_if_stalled();
            if Faults::should_fail(&self.control.state.fail_writes) {
                return Err(self.control.error("write"));
            }
            self.inner.write_batch(events).await?;
            self.control.state.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn sync(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.control.wait_if_stalled();
            if Faults::should_fail(&self.control.state.fail_syncs) {
                return Err(self.control.error("sync"));
            }
            self.inner.sync().await?;
            self.control.state.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn open(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        self.inner.open()
    }

    fn tick(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        self.inner.tick()
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        self.inner.close()
    }
}
