//! How long the writer lets ordinary events gather before a round: one wake-up per batch,
//! not per request.

use std::time::Duration;

/// The events a round of the writer should hold: below this, a round's fixed cost (its
/// wake-up, timer and `write` call, 25 to 28 us of CPU on the machine of `BENCHMARKS.md`)
/// outweighs the events' own.
const ROUND_EVENTS: u32 = 64;

/// How many times the write delay a round may gather for while events arrive slowly.
const MAX_GATHER_STRETCH: u32 = 5;

/// How long the next round gathers ordinary events, from how many the last round took
/// (`received`) and over how long they arrived (`received_over`): the time
/// [`ROUND_EVENTS`] take at that rate, at least the write delay and at most
/// [`MAX_GATHER_STRETCH`] times it.
///
/// At a few thousand requests a second, a 2 ms delay would wake the writer 500 times a
/// second for a dozen events each; stretched, about 100 times. At high rates the write
/// delay stands, which keeps each batch small enough to stay in the cache. The rate, not
/// the count alone, decides: a round stretched to take 64 events must not make the next
/// one short again.
pub(super) fn gather_time(
    write_delay: Duration,
    received: usize,
    received_over: Duration,
) -> Duration {
    let received = u32::try_from(received).unwrap_or(u32::MAX).max(1);
    (received_over.saturating_mul(ROUND_EVENTS) / received)
        .clamp(write_delay, write_delay.saturating_mul(MAX_GATHER_STRETCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_round_gathers_for_the_write_delay() {
        assert_eq!(gather_time(2 * MS, 64, 2 * MS), 2 * MS);
        assert_eq!(gather_time(2 * MS, 500, 2 * MS), 2 * MS);
    }

    #[test]
    fn a_stretched_round_stays_stretched_while_the_rate_holds() {
        // 64 events over 10 ms: the next round gathers 10 ms again, not 2.
        assert_eq!(gather_time(2 * MS, 64, 10 * MS), 10 * MS);
        assert_eq!(gather_time(2 * MS, 48, 6 * MS), 8 * MS);
    }

    #[test]
    fn a_slow_trickle_stretches_the_wait_to_the_time_a_full_round_takes() {
        // 16 events in 2 ms: 64 take 8 ms.
        assert_eq!(gather_time(2 * MS, 16, 2 * MS), 8 * MS);
        // 32 events in 3 ms: 6 ms.
        assert_eq!(gather_time(2 * MS, 32, 3 * MS), 6 * MS);
    }

    #[test]
    fn the_stretch_is_bounded_by_five_write_delays() {
        // One event after an hour of silence.
        assert_eq!(gather_time(2 * MS, 1, Duration::from_secs(3600)), 10 * MS);
        assert_eq!(gather_time(20 * MS, 3, 2 * MS * 1000), 100 * MS);
    }

    #[test]
    fn a_quick_partial_round_still_gathers_for_the_write_delay() {
        // 32 events in 0.5 ms: 64 would take 1 ms, less than the delay.
        assert_eq!(gather_time(2 * MS, 32, MS / 2), 2 * MS);
    }

    #[test]
    fn no_write_delay_means_no_gathering() {
        assert_eq!(
            gather_time(Duration::ZERO, 1, Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(gather_time(Duration::ZERO, 100, MS), Duration::ZERO);
    }

    #[test]
    fn extreme_settings_saturate_instead_of_panicking() {
        assert_eq!(gather_time(Duration::MAX, 1, Duration::MAX), Duration::MAX);
        assert_eq!(gather_time(2 * MS, 0, Duration::MAX), 10 * MS);
        assert_eq!(gather_time(2 * MS, usize::MAX, MS), 2 * MS);
    }
}
