//! The one counting mechanism under every threshold detector: hits per key inside a sliding
//! window, one firing per burst, re-armed after a quiet spell, with a bounded key table.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use uuid::Uuid;

/// The keys a detector tracks at most, per count, by default.
pub(super) const DEFAULT_MAX_TRACKED: usize = 100_000;

/// What a burst fired with: how many hits counted, and their events, oldest first.
#[derive(Debug)]
pub(super) struct Fired {
    pub(super) count: usize,
    pub(super) events: Vec<Uuid>,
}

/// The time rules of a count, in microseconds of the events' own time.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    /// The sliding window the hits must fall within.
    pub(super) window: u64,
    /// How long a key must see no hit before it can fire again.
    pub(super) quiet: u64,
}

/// Hits per key. A hit may name an item (a username, say): then the count is of distinct
/// items, and with `per_item` set, only of items hit at most that many times (spraying
/// tries each account once or twice; more is brute force, counted elsewhere).
#[derive(Clone, Debug)]
pub(super) struct Bursts<K> {
    /// `None` turns the count off.
    pub(super) threshold: Option<u32>,
    pub(super) per_item: Option<u32>,
    pub(super) max_tracked: usize,
    /// Names the detector in the warning logged when the table is full.
    rule: &'static str,
    keys: HashMap<K, Track>,
}

#[derive(Clone, Debug, Default)]
struct Track {
    hits: VecDeque<Hit>,
    /// While a burst goes on: the time of its latest hit.
    burst_seen: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Hit {
    at: u64,
    item: Option<u64>,
    id: Uuid,
}

impl<K: Hash + Eq> Bursts<K> {
    pub(super) fn new(rule: &'static str, threshold: u32) -> Self {
        Self {
            threshold: (threshold > 0).then_some(threshold),
            per_item: None,
            max_tracked: DEFAULT_MAX_TRACKED,
            rule,
            keys: HashMap::new(),
        }
    }

    pub(super) fn set_threshold(&mut self, threshold: u32) {
        self.threshold = (threshold > 0).then_some(threshold);
    }

    /// How many keys are tracked now.
    #[cfg(test)]
    pub(super) fn tracked(&self) -> usize {
        self.keys.len()
    }

    /// Counts one hit of `key` (about `item`, when distinct items are counted) at `at`.
    /// Returns what fired when this hit completes a burst: once per burst, until `key` has
    /// been quiet for `span.quiet`.
    pub(super) fn hit(
        &mut self,
        key: K,
        item: Option<u64>,
        at: u64,
        span: Span,
        id: Uuid,
    ) -> Option<Fired> {
        let threshold = usize::try_from(self.threshold?).unwrap_or(usize::MAX);
        if !self.keys.contains_key(&key) && self.keys.len() >= self.max_tracked {
            self.make_room(at, span);
        }
        let track = self.keys.entry(key).or_default();
        if let Some(seen) = track.burst_seen {
            if at.saturating_sub(seen) <= span.quiet {
                track.burst_seen = Some(seen.max(at));
                return None;
            }
            track.burst_seen = None;
            track.hits.clear();
        }
        // Events arrive as their requests complete, not quite in time order: every hit
        // inside the window counts, wherever it is in the queue.
        track.hits.retain(|hit| inside(hit.at, at, span.window));
        track.hits.push_back(Hit { at, item, id });
        // A key repeating one item must not grow without bound.
        let room = threshold.saturating_mul(4).max(16);
        while track.hits.len() > room {
            track.hits.pop_front();
        }
        let counted = counted(&track.hits, self.per_item);
        if counted.len() < threshold {
            return None;
        }
        track.burst_seen = Some(at);
        track.hits.clear();
        Some(Fired {
            count: counted.len(),
            events: counted,
        })
    }

    /// Forgets keys with nothing inside the window and no burst going on; unless a quarter of
    /// the table is free again, forgets every key, so that keys expiring one at a time do not
    /// make every new key scan the whole table.
    fn make_room(&mut self, at: u64, span: Span) {
        // Not just the last hit: hits arrive a little out of time order.
        self.keys.retain(|_, track| {
            track.hits.iter().any(|hit| inside(hit.at, at, span.window))
                || track
                    .burst_seen
                    .is_some_and(|seen| at.saturating_sub(seen) <= span.quiet)
        });
        if self.keys.len() > self.max_tracked / 4 * 3 {
            tracing::warn!(
                target: "audit",
                detector = self.rule,
                tracked = self.keys.len(),
                "a detector tracks too many keys at once; its counts start again"
            );
            self.keys.clear();
        }
    }
}

/// Whether a hit at `then` is inside the window that ends at `now`.
fn inside(then: u64, now: u64, window: u64) -> bool {
    now.saturating_sub(then) < window
}

/// The events of the hits that count: every hit without an item; with items, one event per
/// distinct item (its latest), leaving out items hit more than `per_item` times.
fn counted(hits: &VecDeque<Hit>, per_item: Option<u32>) -> Vec<Uuid> {
    let mut counted = Vec::with_capacity(hits.len());
    for (n, hit) in hits.iter().enumerate() {
        let Some(item) = hit.item else {
            counted.push(hit.id);
            continue;
        };
        let later = hits
            .iter()
            .skip(n + 1)
            .any(|other| other.item == Some(item));
        if later {
            continue;
        }
        let times = hits.iter().filter(|other| other.item == Some(item)).count();
        if per_item.is_none_or(|most| times <= usize::try_from(most).unwrap_or(usize::MAX)) {
            counted.push(hit.id);
        }
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;
    const SPAN: Span = Span {
        window: 60 * SECOND,
        quiet: 60 * SECOND,
    };

    fn hits(bursts: &mut Bursts<u32>, key: u32, item: Option<u64>, seconds: &[u64]) -> usize {
        seconds
            .iter()
            .filter(|&&s| {
                bursts
                    .hit(key, item, s * SECOND, SPAN, Uuid::nil())
                    .is_some()
            })
            .count()
    }

    #[test]
    fn one_firing_per_burst_then_rearmed_after_quiet() {
        let mut bursts = Bursts::new("test", 3);
        // Fires at the third; hits every 30 s keep the burst going, silently.
        assert_eq!(hits(&mut bursts, 1, None, &[0, 1, 2]), 1);
        assert_eq!(hits(&mut bursts, 1, None, &[30, 60, 90, 120, 150]), 0);
        // 61 s of quiet: the next three fire again.
        assert_eq!(hits(&mut bursts, 1, None, &[211, 212]), 0);
        assert_eq!(hits(&mut bursts, 1, None, &[213]), 1);
    }

    #[test]
    fn distinct_items_count_once_and_repeated_ones_can_be_left_out() {
        let mut bursts = Bursts::new("test", 3);
        for item in [1, 1, 2, 2] {
            assert!(bursts.hit(7, Some(item), 0, SPAN, Uuid::nil()).is_none());
        }
        let fired = bursts.hit(7, Some(3), 1, SPAN, Uuid::nil());
        assert_eq!(fired.expect("three distinct").count, 3);

        let mut spraying = Bursts::new("test", 3);
        spraying.per_item = Some(1);
        for item in [1, 1, 2, 3] {
            assert!(spraying.hit(7, Some(item), 0, SPAN, Uuid::nil()).is_none());
        }
        assert!(spraying.hit(7, Some(4), 0, SPAN, Uuid::nil()).is_some());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_bound() {
        let mut bursts = Bursts::new("test", 5);
        bursts.max_tracked = 1_000;
        for key in 0..100_000 {
            bursts.hit(key, None, 0, SPAN, Uuid::nil());
            assert!(bursts.tracked() <= 1_000);
        }
        // One key repeating one item keeps a bounded history too.
        let mut repeated = Bursts::new("test", 5);
        for _ in 0..10_000 {
            repeated.hit(1, Some(9), 0, SPAN, Uuid::nil());
        }
        assert!(repeated.keys[&1].hits.len() <= 20);
    }
}
