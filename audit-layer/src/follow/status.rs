//! What a follower reports: [`FollowerStatus`], kept in a cell its thread updates and the
//! trail's handle reads.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::Timestamp;

/// Where a follower is, from [`AuditTrail::followers`](crate::AuditTrail::followers) (or,
/// for another process's trail, `audit followers DIR`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FollowerStatus {
    /// The follower's name.
    pub name: String,
    /// The first seq its store does not hold, once read from the store.
    pub cursor: Option<u64>,
    /// One past the last seq the trail has on disk: what the follower may ship.
    pub synced: u64,
    /// Events on disk that the store does not hold yet.
    pub behind_events: u64,
    /// How long the oldest of them has waited (zero when caught up).
    #[serde(with = "seconds")]
    pub behind: Duration,
    /// Events shipped since the trail started.
    pub shipped: u64,
    /// What it is doing.
    pub state: FollowerState,
    /// When this status was taken.
    pub at: Timestamp,
}

/// What a follower is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FollowerState {
    /// Reading its cursor from the store for the first time.
    Starting,
    /// Shipping, or caught up and waiting for the trail to grow.
    Following,
    /// Its store failed; it retries with backoff from its cursor.
    Retrying {
        /// The store's last error.
        error: String,
        /// Failures in a row.
        failures: u32,
    },
    /// It met a line that does not verify and ships nothing past it.
    Stopped {
        /// The fault, as `audit verify` reports it.
        fault: String,
    },
    /// The trail was shut down.
    Closed,
}

impl FollowerStatus {
    /// Why this follower degrades the trail's health, if it does: retrying, stopped, or
    /// further behind than `threshold`.
    pub(crate) fn trouble(&self, threshold: Duration) -> Option<String> {
        let name = &self.name;
        let lag = format!(
            "{} event(s), {:.1} s behind",
            self.behind_events,
            self.behind.as_secs_f64()
        );
        match &self.state {
            FollowerState::Retrying { error, .. } => Some(format!(
                "audit follower `{name}` cannot ship ({error}); {lag}, retried from its cursor"
            )),
            FollowerState::Stopped { fault } => Some(format!(
                "audit follower `{name}` stopped at a line that does not verify: {fault}"
            )),
            _ if self.behind > threshold => Some(format!("audit follower `{name}` is {lag}")),
            _ => None,
        }
    }
}

/// What a follower's thread records as it goes; the lag is worked out when read, against
/// the trail's synced end then.
#[derive(Debug)]
pub(crate) struct StatusCell {
    name: String,
    inner: Mutex<Progress>,
    /// Where the status is written for `audit followers`.
    file: PathBuf,
    /// When it was last written: at most once a second, or at a change of state.
    published: Mutex<Option<(Instant, FollowerState)>>,
}

#[derive(Debug)]
struct Progress {
    cursor: Option<u64>,
    /// The time of the oldest line read but not shipped.
    oldest_unshipped: Option<Timestamp>,
    /// When the store last held everything synced: the lag's bound while the lines
    /// behind are not read yet (the store's cursor cannot be read).
    caught_up_at: Option<Timestamp>,
    shipped: u64,
    state: FollowerState,
}

impl StatusCell {
    pub(crate) fn new(name: &str, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            inner: Mutex::new(Progress {
                cursor: None,
                oldest_unshipped: None,
                caught_up_at: None,
                shipped: 0,
                state: FollowerState::Starting,
            }),
            file: status_file(dir, name),
            published: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut StatusUpdate<'_>)) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut StatusUpdate(&mut inner));
    }

    /// The status, with the lag against `synced`.
    pub(crate) fn status(&self, synced: u64) -> FollowerStatus {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Timestamp::now();
        let behind_events = synced.saturating_sub(inner.cursor.unwrap_or(0));
        let behind = match inner.oldest_unshipped.or(inner.caught_up_at) {
            Some(oldest) if behind_events > 0 => {
                Duration::from_micros(now.unix_micros().saturating_sub(oldest.unix_micros()))
            }
            _ => Duration::ZERO,
        };
        FollowerStatus {
            name: self.name.clone(),
            cursor: inner.cursor,
            synced,
            behind_events,
            behind,
            shipped: inner.shipped,
            state: inner.state.clone(),
            at: now,
        }
    }

    /// Writes the status where `audit followers DIR` reads it: a report, not a record, so
    /// it is replaced whole and not synced.
    pub(crate) fn publish(&self, synced: u64) {
        let status = self.status(synced);
        {
            let mut published = self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let due = published.as_ref().is_none_or(|(at, state)| {
                *state != status.state || now.duration_since(*at) >= Duration::from_secs(1)
            });
            if !due {
                return;
            }
            *published = Some((now, status.state.clone()));
        }
        let write = || -> std::io::Result<()> {
            if let Some(parent) = self.file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = self.file.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&status)?)?;
            std::fs::rename(&tmp, &self.file)
        };
        if let Err(error) = write() {
            tracing::debug!(target: "audit", follower = %self.name, %error, "could not write the follower's status file");
        }
    }
}

/// The changes a follower's thread makes to its status.
pub(crate) struct StatusUpdate<'a>(&'a mut Progress);

impl StatusUpdate<'_> {
    pub(crate) fn cursor(&mut self, cursor: u64) {
        self.0.cursor = Some(cursor);
    }

    pub(crate) fn oldest_unshipped(&mut self, time: Option<Timestamp>) {
        self.0.oldest_unshipped = time;
    }

    pub(crate) fn caught_up(&mut self) {
        self.0.caught_up_at = Some(Timestamp::now());
    }

    pub(crate) fn shipped(&mut self, count: u64) {
        self.0.shipped += count;
    }

    pub(crate) fn state(&mut self, state: FollowerState) {
        self.0.state = state;
    }

    pub(crate) fn is_starting(&self) -> bool {
        self.0.state == FollowerState::Starting
    }
}

/// The directory where followers write their status, in a trail directory.
pub const FOLLOWERS_DIR: &str = "followers";

/// `DIR/followers/<name>.json`, with the characters of the name that a file name cannot
/// hold (`/`, `:`) replaced.
pub(crate) fn status_file(dir: &Path, name: &str) -> PathBuf {
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(FOLLOWERS_DIR).join(format!("{file}.json"))
}

/// Every status written in `DIR/followers/`, by name.
pub fn read_follower_statuses(dir: &Path) -> std::io::Result<Vec<FollowerStatus>> {
    let folder = dir.join(FOLLOWERS_DIR);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut statuses = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let bytes = std::fs::read(&path)?;
            let status = serde_json::from_slice(&bytes).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {error}", path.display()),
                )
            })?;
            statuses.push(status);
        }
    }
    statuses.sort_by(|a: &FollowerStatus, b| a.name.cmp(&b.name));
    Ok(statuses)
}

/// A [`Duration`] as fractional seconds in JSON.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
