//! Each follower's thread: read the trail from the store's cursor, ship, repeat; and
//! [`Followers`], the set of them that the trail's handle starts, reads and stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::SharedString;
use tokio::sync::watch;
use tokio::time::Instant;

use super::checkpoints::CheckpointFeed;
use super::status::{FollowerState, FollowerStatus, StatusCell};
use super::{Cursor, Follower};
use crate::error::panic_message;
use crate::event::actor::Actor;
use crate::event::{AuditEvent, Category, Outcome};
use crate::file::{Fault, FaultKind, TrailLine, TrailReader, TrailSource};
use crate::sink::SinkError;

/// Records an event of the followers (an alert, a gap) into the trail they follow.
pub(crate) type Recorder = Arc<dyn Fn(AuditEvent) + Send + Sync>;

#[derive(Clone, Debug)]
pub(crate) struct FollowerSettings {
    /// The most lines per batch.
    pub(crate) batch_size: usize,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    /// Health is Degraded while a follower is further behind.
    pub(crate) lag_threshold: Duration,
    /// How long shutdown lets followers ship what is left.
    pub(crate) drain: Duration,
}

impl Default for FollowerSettings {
    fn default() -> Self {
        Self {
            batch_size: 4096,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            lag_threshold: Duration::from_secs(60),
            drain: Duration::from_secs(5),
        }
    }
}

/// The running followers of a trail.
#[derive(Debug)]
pub(crate) struct Followers {
    cells: Vec<Arc<StatusCell>>,
    synced: watch::Receiver<u64>,
    /// `Some(deadline)`: ship what is left until then, and stop.
    stop: watch::Sender<Option<Instant>>,
    /// Each follower's thread says here when it has stopped.
    done: Vec<watch::Receiver<bool>>,
    settings: FollowerSettings,
}

impl Followers {
    /// Starts a thread per follower.
    pub(crate) fn start(
        followers: Vec<Box<dyn Follower>>,
        source: &TrailSource,
        record: &Recorder,
        settings: FollowerSettings,
    ) -> std::io::Result<Self> {
        let (stop, stop_rx) = watch::channel(None);
        let mut cells = Vec::new();
        let mut done = Vec::new();
        for follower in followers {
            let cell = Arc::new(StatusCell::new(follower.name(), &source.dir));
            let (done_tx, done_rx) = watch::channel(false);
            let runner = Runner {
                takes_checkpoints: follower.takes_checkpoints(),
                label: SharedString::from_shared(Arc::from(follower.name())),
                follower,
                source: source.clone(),
                synced: source.progress.watch_synced(),
                cursor_slot: source.progress.add_cursor(),
                cell: Arc::clone(&cell),
                record: Arc::clone(record),
                stop: stop_rx.clone(),
                settings: settings.clone(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (panic_cell, panic_record) = (Arc::clone(&cell), Arc::clone(record));
            std::thread::Builder::new()
                .name("audit-follower".into())
                .spawn(move || {
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        runtime.block_on(runner.run());
                    }));
                    if let Err(payload) = ran {
                        // A follower's bug stops it; the trail and the other followers go on.
                        panicked(&panic_cell, &panic_record, panic_message(payload.as_ref()));
                    }
                    let _ = done_tx.send(true);
                })?;
            cells.push(cell);
            done.push(done_rx);
        }
        Ok(Self {
            cells,
            synced: source.progress.watch_synced(),
            stop,
            done,
            settings,
        })
    }

    pub(crate) fn statuses(&self) -> Vec<FollowerStatus> {
        let synced = *self.synced.borrow();
        self.cells.iter().map(|cell| cell.status(synced)).collect()
    }

    /// Why the followers degrade the trail's health, if they do.
    pub(crate) fn trouble(&self) -> Option<String> {
        let troubles: Vec<String> = self
            .statuses()
            .iter()
            .filter_map(|status| status.trouble(self.settings.lag_threshold))
            .collect();
        (!troubles.is_empty()).then(|| troubles.join("; "))
    }

    /// Lets the followers ship what the trail holds, for up to the drain time, and stops
    /// them; whatever is left is shipped from their cursors at the next start.
    pub(crate) async fn stop(&self) {
        self.stop
            .send_replace(Some(Instant::now() + self.settings.drain));
        for done in &self.done {
            let mut done = done.clone();
            let _ = done.wait_for(|done| *done).await;
        }
    }

    /// Stops the followers at once, without waiting for them.
    pub(crate) fn stop_now(&self) {
        self.stop.send_replace(Some(Instant::now()));
    }
}

struct Runner {
    follower: Box<dyn Follower>,
    label: SharedString,
    source: TrailSource,
    synced: watch::Receiver<u64>,
    /// The cursor as retention sees it.
    cursor_slot: Arc<AtomicU64>,
    /// [`Follower::takes_checkpoints`], read once.
    takes_checkpoints: bool,
    cell: Arc<StatusCell>,
    record: Recorder,
    stop: watch::Receiver<Option<Instant>>,
    settings: FollowerSettings,
}

/// What the loop holds between steps.
#[derive(Default)]
struct Position {
    /// The store's cursor, once read; `None` again after a failed batch.
    cursor: Option<Cursor>,
    reader: Option<TrailReader>,
    /// Lines read and not yet shipped, from the cursor on.
    batch: Vec<TrailLine>,
    /// For a follower that takes checkpoints: those it does not hold yet. `None` until
    /// the store's checkpoint cursor is read, and again after a failed batch.
    checkpoints: Option<CheckpointFeed>,
    failures: u32,
}

impl Position {
    fn next_seq(&self) -> Option<u64> {
        self.cursor.as_ref().map(|cursor| cursor.next_seq)
    }
}

impl Runner {
    async fn run(mut self) {
        let mut at = Position::default();
        let trail = loop {
            // The trail's id is known once the writer has opened it.
            if let Some(id) = self.source.progress.id() {
                break Some(id.to_owned());
            }
            if self.stop.borrow().is_some() {
                break None;
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = self.synced.changed() => {}
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        if let Some(trail) = trail {
            self.follow(&trail, &mut at).await;
        }
        self.follower.close().await;
        self.cell
            .update(|status| status.state(FollowerState::Closed));
        self.cell.publish(*self.synced.borrow());
    }

    async fn follow(&mut self, trail: &str, at: &mut Position) {
        let mut started = false;
        loop {
            if self.finished(at) {
                // The trail's last checkpoint is written as it closes, after its lines.
                if at.cursor.is_some() {
                    let _ = self.ship_checkpoints(trail, at).await;
                }
                return;
            }
            if !started {
                if let Err(error) = self.follower.start(&self.source.dir) {
                    self.failed(at, &error).await;
                    continue;
                }
                started = true;
            }
            if at.cursor.is_none() {
                let read = until_stopped(&mut self.stop.clone(), self.follower.cursor(trail)).await;
                match read {
                    None => return,
                    Some(Ok(cursor)) => self.resume_at(at, cursor),
                    Some(Err(error)) => {
                        self.failed(at, &error).await;
                        continue;
                    }
                }
            }
            match self.ship_checkpoints(trail, at).await {
                None => return,
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    at.cursor = None;
                    self.failed(at, &error).await;
                    continue;
                }
            }
            if at.batch.is_empty() && !self.read(at).await {
                return;
            }
            if at.batch.is_empty() {
                continue;
            }
            // While the store works on this batch, the next one is read and checked.
            let synced = *self.synced.borrow();
            let room = self.settings.batch_size;
            let reader = at.reader.as_mut();
            let read_ahead = async {
                tokio::task::yield_now().await;
                let reader = reader?;
                let wanted = synced.saturating_sub(reader.next_seq()).min(room as u64);
                // A fault stays in the reader, and is met at the next read.
                (wanted > 0).then(|| reader.read(wanted as usize).unwrap_or_default())
            };
            let mut stop = self.stop.clone();
            let ship = until_stopped(&mut stop, self.follower.ship(trail, &at.batch));
            let (shipped, ahead) = tokio::join!(ship, read_ahead);
            match shipped {
                None => return,
                Some(Ok(())) => {
                    self.shipped(at);
                    at.batch = ahead.unwrap_or_default();
                    self.note_oldest(at);
                }
                Some(Err(error)) => {
                    // What was read ahead is read again after this batch: at most two
                    // batches are ever held, however long the store fails.
                    if ahead.is_some_and(|lines| !lines.is_empty()) {
                        at.reader = None;
                    }
                    at.cursor = None;
                    self.failed(at, &error).await;
                }
            }
        }
    }

    /// Ships the checkpoints whose lines the store holds, for a follower that takes them
    /// (reading the store's checkpoint cursor first, if it is not known). `None` if the
    /// follower is to stop.
    async fn ship_checkpoints(
        &mut self,
        trail: &str,
        at: &mut Position,
    ) -> Option<Result<(), SinkError>> {
        if !self.takes_checkpoints {
            return Some(Ok(()));
        }
        let Some(next_seq) = at.next_seq() else {
            return Some(Ok(()));
        };
        if at.checkpoints.is_none() {
            let held = self.follower.checkpoint_cursor(trail);
            match until_stopped(&mut self.stop.clone(), held).await? {
                Ok(held) => at.checkpoints = Some(CheckpointFeed::new(&self.source.dir, held)),
                Err(error) => return Some(Err(error)),
            }
        }
        let Some(feed) = at.checkpoints.as_mut() else {
            return Some(Ok(()));
        };
        let due = match feed.due(next_seq) {
            Ok(due) => due,
            Err(error) => {
                return Some(Err(SinkError::new(format!(
                    "cannot read the trail's checkpoints: {error}"
                ))));
            }
        };
        if due.is_empty() {
            return Some(Ok(()));
        }
        let shipped = self.follower.ship_checkpoints(trail, &due);
        let shipped = until_stopped(&mut self.stop.clone(), shipped).await?;
        if shipped.is_ok()
            && let Some(feed) = at.checkpoints.as_mut()
        {
            feed.shipped(&due);
        } else {
            at.checkpoints = None;
        }
        Some(shipped)
    }

    /// Whether to stop: shutdown has begun and the store has everything, or the drain
    /// time is over.
    fn finished(&self, at: &Position) -> bool {
        let Some(deadline) = *self.stop.borrow() else {
            return false;
        };
        let synced = *self.synced.borrow();
        at.next_seq().is_some_and(|next| next >= synced) || Instant::now() >= deadline
    }

    /// Goes on from the store's `cursor`: the lines already read from it are kept, anything
    /// else is read again (and the store's last line checked against the trail's).
    fn resume_at(&mut self, at: &mut Position, cursor: Cursor) {
        let next = cursor.next_seq;
        self.cursor_slot.store(next, Ordering::Release);
        at.batch.retain(|line| line.seq >= next);
        let continues = match at.batch.first() {
            Some(first) => first.seq == next,
            None => at.reader.as_ref().is_some_and(|r| r.next_seq() == next),
        };
        if !continues {
            at.batch.clear();
            at.reader = None;
        }
        at.cursor = Some(cursor);
        self.cell.update(|status| {
            status.cursor(next);
            if status.is_starting() {
                status.state(FollowerState::Following);
            }
        });
    }

    /// Reads the next batch of synced lines into `at.batch`, or waits for the trail to grow.
    /// `false` when the follower is to stop.
    async fn read(&mut self, at: &mut Position) -> bool {
        let Some(cursor) = &at.cursor else {
            return true;
        };
        let source = &self.source;
        let reader = at.reader.get_or_insert_with(|| match &cursor.last_hash {
            Some(hash) if cursor.next_seq > 0 => {
                TrailReader::after(&source.dir, cursor.next_seq - 1, hash, source.key.clone())
            }
            _ => TrailReader::new(&source.dir, cursor.next_seq, source.key.clone()),
        });
        let synced = *self.synced.borrow_and_update();
        let room = synced
            .saturating_sub(reader.next_seq())
            .min(self.settings.batch_size as u64) as usize;
        if reader.next_seq() > synced {
            // The trail is open, so `synced` is its whole length: the store holds lines
            // the trail does not.
            let fault = Fault::new(
                FaultKind::Forked,
                format!(
                    "the copy holds up to seq {}, the trail only {synced} line(s): the copy \
                     holds another trail, or this one lost its tail",
                    reader.next_seq() - 1,
                ),
            );
            return self.fault(at, fault).await;
        }
        if room > 0 {
            match reader.read(room) {
                Ok(lines) => at.batch = lines,
                Err(fault) => return self.fault(at, fault).await,
            }
        }
        if at.batch.is_empty() {
            self.caught_up(synced);
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = self.synced.changed() => {}
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        } else {
            self.note_oldest(at);
        }
        true
    }

    /// The time of the oldest line not yet shipped, for the lag in seconds.
    fn note_oldest(&self, at: &Position) {
        if let Some(oldest) = at.batch.first().and_then(TrailLine::time) {
            self.cell
                .update(|status| status.oldest_unshipped(Some(oldest)));
        }
    }

    fn caught_up(&self, synced: u64) {
        self.cell.update(|status| {
            status.oldest_unshipped(None);
            status.caught_up();
        });
        self.publish_metrics(synced);
    }

    fn shipped(&mut self, at: &mut Position) {
        let Some(last) = at.batch.last() else {
            return;
        };
        let next = last.seq + 1;
        let count = at.batch.len() as u64;
        at.cursor = Some(Cursor::after(last.seq, last.hash.clone()));
        at.batch.clear();
        at.failures = 0;
        self.cursor_slot.store(next, Ordering::Release);
        metrics::counter!("audit_follower_shipped_total", "follower" => self.label.clone())
            .increment(count);
        self.cell.update(|status| {
            status.cursor(next);
            status.shipped(count);
            status.oldest_unshipped(None);
            status.state(FollowerState::Following);
        });
        self.publish_metrics(*self.synced.borrow());
    }

    /// A failed cursor read or batch: reported, then retried after a backoff.
    async fn failed(&mut self, at: &mut Position, error: &SinkError) {
        at.failures = at.failures.saturating_add(1);
        let failures = at.failures;
        metrics::counter!("audit_follower_errors_total", "follower" => self.label.clone())
            .increment(1);
        if failures == 1 || failures.is_power_of_two() {
            tracing::warn!(target: "audit", follower = self.cell.name(), failures, %error, "audit follower cannot ship; retrying from its cursor");
        }
        self.cell.update(|status| {
            status.state(FollowerState::Retrying {
                error: error.to_string(),
                failures,
            });
        });
        self.publish_metrics(*self.synced.borrow());
        let backoff = self
            .settings
            .backoff_initial
            .saturating_mul(1 << failures.min(16).saturating_sub(1))
            .min(self.settings.backoff_max);
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
    }

    /// A line that does not verify, or a file that is gone. `false` when the follower is
    /// to stop.
    async fn fault(&mut self, at: &mut Position, fault: Fault) -> bool {
        match fault.kind {
            // A file that cannot be read now may be later.
            FaultKind::Unreadable => {
                self.failed(at, &SinkError::new(fault.to_string())).await;
                at.reader = None;
                true
            }
            FaultKind::MissingFile if !self.source.spares_followers => self.skip_purged(at),
            _ => {
                self.stopped(fault).await;
                false
            }
        }
    }

    /// Retention deleted lines this follower had not shipped (it was told not to spare
    /// them): the loss is recorded, and the follower goes on from the oldest line left.
    fn skip_purged(&mut self, at: &mut Position) -> bool {
        let cursor = at.next_seq().unwrap_or(0);
        match TrailReader::from_oldest(&self.source.dir, self.source.key.clone()) {
            Ok(Some((reader, oldest))) if oldest > cursor => {
                let name = self.cell.name();
                tracing::error!(target: "audit", follower = name, seq_from = cursor, seq_to = oldest - 1, "audit retention deleted events a follower never shipped");
                (self.record)(
                    AuditEvent::new(
                        Category::System,
                        "audit.gap",
                        Outcome::Failure,
                        Actor::service("audit"),
                    )
                    .with_reason(format!(
                        "follower `{name}` never shipped seq {cursor}..={}: retention deleted \
                         them first",
                        oldest - 1
                    ))
                    .with_detail("follower", name)
                    .with_detail("seq_from", cursor)
                    .with_detail("seq_to", oldest - 1),
                );
                at.reader = Some(reader);
                true
            }
            Ok(_) => true,
            Err(fault) => {
                tracing::error!(target: "audit", follower = self.cell.name(), %fault, "audit follower cannot find the oldest line left");
                true
            }
        }
    }

    /// Stops at a fault of the trail: reported, recorded as an alert, and nothing shipped
    /// past it until the process restarts. Waits for the trail's shutdown.
    async fn stopped(&mut self, fault: Fault) {
        let name = self.cell.name().to_owned();
        tracing::error!(target: "audit", follower = %name, %fault, "audit follower stopped at a line that does not verify");
        metrics::gauge!("audit_follower_stopped", "follower" => self.label.clone()).set(1.0);
        self.cell.update(|status| {
            status.state(FollowerState::Stopped {
                fault: fault.to_string(),
            });
        });
        self.publish_metrics(*self.synced.borrow());
        let mut alert = AuditEvent::new(
            Category::Alert,
            "audit.follower.stopped",
            Outcome::Failure,
            Actor::service("audit"),
        )
        .with_reason(format!(
            "follower `{name}` stopped: the trail does not verify ({fault}); nothing past it is \
             shipped"
        ))
        .with_detail("follower", name)
        .with_detail("fault", fault.kind.to_string());
        if let Some(seq) = fault.seq {
            alert = alert.with_detail("seq", seq);
        }
        (self.record)(alert);
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(Option::is_some).await;
    }

    fn publish_metrics(&self, synced: u64) {
        let status = self.cell.status(synced);
        metrics::gauge!("audit_follower_behind_events", "follower" => self.label.clone())
            .set(status.behind_events as f64);
        metrics::gauge!("audit_follower_behind_seconds", "follower" => self.label.clone())
            .set(status.behind.as_secs_f64());
        self.cell.publish(synced);
    }
}

/// A follower that panicked: reported as stopped, and recorded as an alert.
fn panicked(cell: &StatusCell, record: &Recorder, message: &str) {
    let name = cell.name().to_owned();
    tracing::error!(target: "audit", follower = %name, panic = message, "an audit follower panicked; it ships nothing more until the process restarts");
    cell.update(|status| {
        status.state(FollowerState::Stopped {
            fault: format!("the follower panicked: {message}"),
        });
    });
    record(
        AuditEvent::new(
            Category::Alert,
            "audit.follower.stopped",
            Outcome::Error,
            Actor::service("audit"),
        )
        .with_reason(format!("follower `{name}` panicked: {message}"))
        .with_detail("follower", name)
        .with_detail("fault", "panic"),
    );
}

/// `work`'s output, or `None` if the drain time ends first.
async fn until_stopped<T>(
    stop: &mut watch::Receiver<Option<Instant>>,
    work: impl Future<Output = T>,
) -> Option<T> {
    let deadline = async {
        loop {
            let deadline = *stop.borrow_and_update();
            match deadline {
                Some(at) => return tokio::time::sleep_until(at).await,
                None if stop.changed().await.is_err() => std::future::pending::<()>().await,
                None => {}
            }
        }
    };
    tokio::select! {
        output = work => Some(output),
        () = deadline => None,
    }
}
