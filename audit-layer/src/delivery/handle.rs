//! [`AuditTrail`]: the handle that records, flushes, reports and stops a trail.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{oneshot, watch};

use super::AuditTrailBuilder;
use super::queue::{Item, WriterState, enqueue_detached};
use crate::error::AuditError;
use crate::event::actor::Actor;
use crate::event::{AuditEvent, Category, Outcome};
use crate::file::TrailSource;
use crate::follow::{FollowerStatus, Followers};
use crate::layer::AuditLayer;
use crate::layer::shared::SensitiveRouteInfo;
use crate::layer::shared::Shared;

/// The handle of a running audit trail.
///
/// Keep it for the life of the server (share it in an `Arc` if handlers need it) and call
/// [`shutdown`](Self::shutdown) after the server stops. Dropping it without `shutdown` logs a
/// warning and drains the queue for up to five seconds, blocking the dropping thread.
#[must_use = "dropping the AuditTrail stops the trail; call `shutdown().await` when the server stops"]
pub struct AuditTrail {
    shared: Arc<Shared>,
    followers: Option<Followers>,
    /// The first file trail among the sinks (what followers and the viewer read).
    file_trail: Option<TrailSource>,
    state: watch::Receiver<WriterState>,
    stop: Mutex<Option<StopHandle>>,
}

/// How the handle stops the writer, and learns that it has.
pub(super) struct StopHandle {
    pub(super) request: oneshot::Sender<oneshot::Sender<Result<(), AuditError>>>,
    pub(super) finished: std::sync::mpsc::Receiver<()>,
}

impl AuditTrail {
    /// The handle of a writer just started.
    pub(super) fn new(
        shared: Arc<Shared>,
        followers: Option<Followers>,
        file_trail: Option<TrailSource>,
        state: watch::Receiver<WriterState>,
        stop: StopHandle,
    ) -> Self {
        Self {
            shared,
            followers,
            file_trail,
            state,
            stop: Mutex::new(Some(stop)),
        }
    }

    /// Starts configuring a trail.
    pub fn builder() -> AuditTrailBuilder {
        AuditTrailBuilder::new()
    }

    /// Records events of the library's own workers (a collector's alerts) into this trail,
    /// without waiting, for as long as the trail runs.
    #[cfg_attr(not(feature = "collector"), allow(dead_code))]
    pub(crate) fn recorder(&self) -> crate::follow::Recorder {
        super::builder::recorder(&self.shared)
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
        self.shared.intake.record(event).await
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
                .intake
                .queue
                .send(Item::Flush(reply))
                .await
                .map_err(|_| AuditError::Closed)?;
            self.shared.intake.wake_writer.notify_one();
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
        let _ = self
            .shared
            .intake
            .record(lifecycle_event("audit.stop"))
            .await;
        let Some(stop) = self.take_stop() else {
            return Err(AuditError::Closed);
        };
        let (reply, answer) = oneshot::channel();
        if stop.request.send(reply).is_err() {
            return Err(AuditError::Closed);
        }
        // The writer may be waiting out its write delay.
        self.shared.intake.wake_writer.notify_one();
        let result = answer.await.unwrap_or(Err(AuditError::Closed));
        if let Some(followers) = &self.followers {
            followers.stop().await;
        }
        result
    }

    /// Counters of the trail so far.
    pub fn stats(&self) -> AuditStats {
        self.shared.intake.stats()
    }

    /// Whether the trail keeps up: [`Health::Failing`] when a sink keeps failing or the
    /// queue is full (the failure policy is engaged), [`Health::Degraded`] while a sink is
    /// being retried or a follower is retrying, stopped or behind (see
    /// [`follower_lag_threshold`](crate::AuditTrailBuilder::follower_lag_threshold)),
    /// [`Health::Healthy`] otherwise.
    pub fn health(&self) -> Health {
        let health = self.shared.intake.health();
        if health != Health::Healthy {
            return health;
        }
        match self.followers.as_ref().and_then(Followers::trouble) {
            Some(reason) => Health::Degraded { reason },
            None => Health::Healthy,
        }
    }

    /// Where each follower is: its cursor, how far behind, what it is doing.
    pub fn followers(&self) -> Vec<FollowerStatus> {
        self.followers
            .as_ref()
            .map(Followers::statuses)
            .unwrap_or_default()
    }

    /// The directory of the trail's file trail (its first [`JsonlFileSink`]), if it has one.
    ///
    /// [`JsonlFileSink`]: crate::file::JsonlFileSink
    pub fn trail_dir(&self) -> Option<&std::path::Path> {
        self.file_trail.as_ref().map(|trail| trail.dir.as_path())
    }

    /// The [viewer](crate::viewer) of this trail's file trail, with its chain key: configure
    /// it, then nest its router behind the application's admin guard.
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_layer::AuditTrail;
    /// use audit_layer::file::JsonlFileSink;
    ///
    /// let audit = AuditTrail::builder().sink(JsonlFileSink::new("./audit-log")).build()?;
    /// let app: axum::Router = axum::Router::new()
    ///     .nest("/admin/audit", audit.viewer()?.router())
    ///     // .route_layer(your admin guard)
    ///     .layer(audit.layer());
    /// # Ok(()) }
    /// ```
    ///
    /// Fails with [`ConfigError::NoFileTrail`](crate::ConfigError::NoFileTrail) when the trail writes no files.
    #[cfg(feature = "viewer")]
    pub fn viewer(&self) -> Result<crate::viewer::Viewer, crate::error::ConfigError> {
        let trail = self
            .file_trail
            .as_ref()
            .ok_or(crate::error::ConfigError::NoFileTrail)?;
        let viewer = crate::viewer::Viewer::new(&trail.dir);
        Ok(match &trail.key {
            Some(key) => viewer.chain_key(key.clone()),
            None => viewer,
        })
    }

    /// The routes served by sensitive handlers that have been called so far, with their
    /// actions.
    pub fn sensitive_routes(&self) -> Vec<SensitiveRouteInfo> {
        self.shared.sensitive_routes()
    }

    /// Opens every sink on the writer's thread, where they will run; the sinks that failed,
    /// by name, with why.
    pub(super) async fn open_sinks(&self) -> Vec<(String, crate::sink::SinkError)> {
        let (reply, answer) = oneshot::channel();
        if self
            .shared
            .intake
            .queue
            .send(Item::Open(reply))
            .await
            .is_err()
        {
            return vec![("writer".to_owned(), crate::sink::SinkError::new("stopped"))];
        }
        self.shared.intake.wake_writer.notify_one();
        answer
            .await
            .unwrap_or_else(|_| vec![("writer".to_owned(), crate::sink::SinkError::new("stopped"))])
    }

    /// Records `audit.start`: the trail is running (OWASP: audit start and stop).
    pub(super) fn record_start(&self) {
        // The queue is empty and at least one slot long, so this cannot wait.
        let event = self
            .shared
            .intake
            .scrub(Box::new(lifecycle_event("audit.start")));
        enqueue_detached(&self.shared, event);
    }

    /// Stops a trail that never started recording: its writer ends, nothing is written.
    pub(super) async fn abandon(self) {
        if let Some(followers) = &self.followers {
            followers.stop_now();
        }
        let Some(stop) = self.take_stop() else {
            return;
        };
        let (reply, answer) = oneshot::channel();
        if stop.request.send(reply).is_ok() {
            self.shared.intake.wake_writer.notify_one();
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
        if let Some(followers) = &self.followers {
            followers.stop_now();
        }
        let Some(stop) = self.take_stop() else { return };
        tracing::warn!(
            target: "audit",
            "AuditTrail dropped without `shutdown()`; draining the audit queue for up to 5 s"
        );
        let (reply, _answer) = oneshot::channel();
        let sent = stop.request.send(reply).is_ok();
        self.shared.intake.wake_writer.notify_one();
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
