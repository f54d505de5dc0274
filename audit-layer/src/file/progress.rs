//! [`TrailProgress`]: what a trail's followers may read (what is on disk for good), and
//! what they still need (what retention must spare).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::watch;

use super::chain::ChainKey;

/// A trail as its followers see it: where it is, its chain's key, and its progress.
#[derive(Clone, Debug)]
pub(crate) struct TrailSource {
    pub(crate) dir: PathBuf,
    pub(crate) key: Option<ChainKey>,
    pub(crate) progress: Arc<TrailProgress>,
    /// Whether retention spares what followers have not shipped.
    pub(crate) spares_followers: bool,
}

/// Shared between a file trail and the followers that read it.
#[derive(Debug)]
pub(crate) struct TrailProgress {
    /// One past the last seq synced to disk. A follower reads below it only: a line still
    /// in the page cache could be lost by a crash and written again with other content.
    durable: watch::Sender<u64>,
    /// Each follower's cursor: the first seq its store does not hold yet.
    cursors: Mutex<Vec<Arc<AtomicU64>>>,
    /// The trail's id, once the trail is open.
    id: OnceLock<String>,
}

impl Default for TrailProgress {
    fn default() -> Self {
        Self {
            durable: watch::Sender::new(0),
            cursors: Mutex::default(),
            id: OnceLock::new(),
        }
    }
}

impl TrailProgress {
    /// Every seq below `next_seq` is synced.
    pub(crate) fn synced_to(&self, next_seq: u64) {
        self.durable.send_if_modified(|durable| {
            let moved = *durable != next_seq;
            *durable = next_seq;
            moved
        });
    }

    /// The trail is open, with this id, and every seq below `next_seq` synced. Wakes the
    /// followers, who wait for it.
    pub(crate) fn opened(&self, id: String, next_seq: u64) {
        let _ = self.id.set(id);
        self.durable.send_modify(|durable| *durable = next_seq);
    }

    /// The trail's id, once it is open.
    pub(crate) fn id(&self) -> Option<&str> {
        self.id.get().map(String::as_str)
    }

    /// Follows the synced end of the trail.
    pub(crate) fn watch_synced(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// A new follower's cursor, at 0 (it needs everything) until it knows better.
    pub(crate) fn add_cursor(&self) -> Arc<AtomicU64> {
        let cursor = Arc::new(AtomicU64::new(0));
        self.cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&cursor));
        cursor
    }

    /// The first seq some follower still needs; `None` without followers.
    pub(crate) fn needed_from(&self) -> Option<u64> {
        self.cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|cursor| cursor.load(Ordering::Acquire))
            .min()
    }
}
