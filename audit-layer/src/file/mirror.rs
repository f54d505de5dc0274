//! [`CheckpointMirror`]: each new checkpoint, also kept where the trail's writer cannot
//! rewrite it unnoticed.
//!
//! Whoever holds the trail directory and its signing key can cut the trail's tail and its
//! checkpoints, and what is left verifies. A copy of the newest checkpoint kept elsewhere
//! (another disk or host, a write-once bucket, a database the application cannot delete
//! from) turns that rollback into a fault: `audit verify --against-checkpoint COPY`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::layout::CHECKPOINTS;
use super::private::{create_private_dir, open_private};

/// Where each checkpoint the file trail writes is published too, in order, on the
/// writer's thread.
///
/// A publication that fails is logged and retried with the next checkpoint (the newest is
/// what a verifier needs); it never fails the trail.
pub trait CheckpointMirror: Send + 'static {
    /// A name for logs.
    fn name(&self) -> &str;

    /// Publishes a checkpoint just written and synced in the trail.
    fn publish(&mut self, checkpoint: &Checkpoint) -> io::Result<()>;
}

/// A second directory: each checkpoint is appended, as one line, to its `checkpoints.jsonl`
/// and synced. Put it on another disk or host, where the trail's writer cannot write
/// (an append-only mount, a different account's share), one directory per trail.
///
/// ```
/// use audit_layer::file::{DirectoryMirror, JsonlFileSink};
///
/// # let dir = tempfile::tempdir()?;
/// let sink = JsonlFileSink::builder(dir.path().join("trail"))
///     .checkpoint_mirror(DirectoryMirror::new(dir.path().join("mirror")))
///     .build();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct DirectoryMirror {
    dir: PathBuf,
    name: String,
}

impl DirectoryMirror {
    /// A mirror appending to `dir/checkpoints.jsonl` (the directory is created if need be).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().to_path_buf();
        Self {
            name: format!("dir:{}", dir.display()),
            dir,
        }
    }
}

impl CheckpointMirror for DirectoryMirror {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, checkpoint: &Checkpoint) -> io::Result<()> {
        create_private_dir(&self.dir)?;
        let mut line = serde_json::to_vec(checkpoint)?;
        line.push(b'\n');
        let mut file = open_private(&self.dir.join(CHECKPOINTS), true)?;
        file.write_all(&line)?;
        file.sync_data()?;
        File::open(&self.dir)?.sync_all()
    }
}

/// How long a publication, or the last one when the trail closes, may take.
#[cfg_attr(not(any(feature = "postgres", feature = "nats")), allow(dead_code))]
pub(crate) const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long after a failed publication the next try comes.
#[cfg_attr(not(any(feature = "postgres", feature = "nats")), allow(dead_code))]
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// A mirror's way of storing one checkpoint, asynchronously (a database, a broker).
#[cfg_attr(not(any(feature = "postgres", feature = "nats")), allow(dead_code))]
pub(crate) trait Publish: Send + 'static {
    /// Stores `checkpoint`, connecting first if need be; storing it twice is harmless.
    fn publish(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> impl std::future::Future<Output = Result<(), String>>;

    /// Forgets the connection after a failure: the next publication connects anew.
    fn disconnect(&mut self);
}

/// A thread that publishes checkpoints for a mirror whose I/O is async: the trail's writer
/// hands it the newest checkpoint and goes on. A checkpoint that cannot be published is
/// logged and tried again 5 s later, unless a newer one came meanwhile (the newest is what
/// a verifier needs). The last one is waited for, up to [`MIRROR_TIMEOUT`], when the mirror
/// is dropped with the trail.
#[cfg_attr(not(any(feature = "postgres", feature = "nats")), allow(dead_code))]
pub(crate) struct PublishingThread {
    name: String,
    shared: std::sync::Arc<Handover>,
    stopped: std::sync::mpsc::Receiver<()>,
}

/// What the writer hands over, and the thread takes.
#[derive(Default)]
struct Handover {
    state: std::sync::Mutex<Pending>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct Pending {
    newest: Option<Checkpoint>,
    closing: bool,
}

#[cfg_attr(not(any(feature = "postgres", feature = "nats")), allow(dead_code))]
impl PublishingThread {
    pub(crate) fn start(name: String, publisher: impl Publish) -> io::Result<Self> {
        let shared = std::sync::Arc::new(Handover::default());
        let (done, stopped) = std::sync::mpsc::channel();
        let thread_shared = std::sync::Arc::clone(&shared);
        let thread_name = name.clone();
        std::thread::Builder::new()
            .name("audit-checkpoint-mirror".into())
            .spawn(move || {
                publish_until_closed(&thread_name, publisher, &thread_shared);
                let _ = done.send(());
            })?;
        Ok(Self {
            name,
            shared,
            stopped,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Hands `checkpoint` over, in place of any older one not yet published.
    pub(crate) fn hand_over(&self, checkpoint: &Checkpoint) {
        self.shared.lock().newest = Some(checkpoint.clone());
        self.shared.wake.notify_one();
    }
}

impl Handover {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for PublishingThread {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        // The trail's last checkpoint, written as it closes, is published before it ends.
        let bound = MIRROR_TIMEOUT + std::time::Duration::from_secs(1);
        if self.stopped.recv_timeout(bound).is_err() {
            tracing::error!(
                target: "audit",
                mirror = %self.name,
                "the checkpoint mirror did not publish the trail's last checkpoint in time"
            );
        }
    }
}

/// Waits for a checkpoint and publishes the newest; once closing, publishes what is left
/// once and returns.
fn publish_until_closed(name: &str, mut publisher: impl Publish, shared: &Handover) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(target: "audit", mirror = %name, %error, "cannot start the checkpoint mirror");
            return;
        }
    };
    loop {
        let (checkpoint, closing) = {
            let mut pending = shared.lock();
            while pending.newest.is_none() && !pending.closing {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            (pending.newest.take(), pending.closing)
        };
        if let Some(checkpoint) = checkpoint {
            let published = runtime.block_on(async {
                tokio::time::timeout(MIRROR_TIMEOUT, publisher.publish(&checkpoint))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("no answer within {} s", MIRROR_TIMEOUT.as_secs()))
                    })
            });
            if let Err(error) = published {
                publisher.disconnect();
                metrics::counter!("audit_checkpoint_mirror_errors_total").increment(1);
                tracing::error!(
                    target: "audit",
                    mirror = %name,
                    seq_to = checkpoint.seq_to,
                    %error,
                    "could not publish a checkpoint to the mirror; trying again"
                );
                if !closing {
                    shared.lock().newest.get_or_insert(checkpoint);
                    std::thread::sleep(RETRY);
                }
            }
        }
        if closing && shared.lock().newest.is_none() {
            return;
        }
    }
}
