//! Coalescing under load: when packets arrive faster than one per round, a worker waits a
//! moment (`[relay] batch_delay`) before its next round, so the round finds more frames in
//! its rings. A larger round costs less per packet: one `io_uring_enter` for all its sends,
//! and one send for each output's run of datagrams (`egress` runs, UDP segmentation). It is
//! what a NIC's interrupt moderation does for the kernel, decided from the rings' own
//! receive timestamps:
//!
//! - a round waits only when, at the rate its frames arrived since the previous round's
//!   last one, the delay gathers at least [`MIN_GATHER`] packets. At low rates (a 1k pps
//!   stream, a 50k pps stream with a 30 µs delay) no round ever waits, so latency there is
//!   what it was; under load a packet waits at most one delay (plus the timer's slack, which
//!   the worker sets to [`TIMER_SLACK`]);
//! - a round that filled half a batch or more never waits: the worker is behind;
//! - a delay of zero turns coalescing off.
//!
//! Pure decisions, no I/O: the worker sleeps.
#![forbid(unsafe_code)]

use std::time::Duration;

/// A round waits only if the delay gathers at least this many packets at the recent rate.
pub const MIN_GATHER: u64 = 4;

/// Timer slack the worker asks for, so a wait of tens of microseconds is not stretched by
/// the default 50 µs.
pub const TIMER_SLACK: Duration = Duration::from_micros(2);

/// One worker's view of its recent rounds.
#[derive(Debug, Default)]
pub struct Coalesce {
    /// Receive timestamp (ns) of the last frame of the previous round that took any.
    last_arrival: u64,
}

impl Coalesce {
    /// After a round that took `frames` frames (out of at most `batch`), the last of them
    /// received at `last_arrival_ns` (the ring's timestamp): how long to wait before the
    /// next round, if at all, given the configured `delay`.
    #[inline]
    pub fn after_round(
        &mut self,
        frames: usize,
        batch: usize,
        last_arrival_ns: u64,
        delay: Duration,
    ) -> Option<Duration> {
        if frames == 0 {
            return None;
        }
        let previous = std::mem::replace(&mut self.last_arrival, last_arrival_ns);
        if delay.is_zero() || frames * 2 >= batch || previous == 0 {
            return None;
        }
        // `frames` arrived within `span`: waiting `delay` gathers delay × frames / span.
        let span = last_arrival_ns.saturating_sub(previous);
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let gathers = delay_ns.saturating_mul(frames as u64) >= span.saturating_mul(MIN_GATHER);
        (span > 0 && gathers).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const DELAY: Duration = Duration::from_micros(30);

    /// Rounds of `frames` each, `gap_ns` apart per frame; what each round after the first
    /// decides.
    fn rounds(frames: usize, gap_ns: u64, n: usize, delay: Duration) -> Vec<Option<Duration>> {
        let mut c = Coalesce::default();
        let mut t = 1_000_000_000;
        (0..n)
            .map(|_| {
                t += gap_ns * frames as u64;
                c.after_round(frames, 64, t, delay)
            })
            .skip(1)
            .collect()
    }

    #[test]
    fn low_rates_never_wait() {
        // 1k pps and 50k pps, one frame a round: a 30 µs delay would gather 0.03 and 1.5.
        assert!(rounds(1, 1_000 * US, 10, DELAY).iter().all(Option::is_none));
        assert!(rounds(1, 20 * US, 10, DELAY).iter().all(Option::is_none));
    }

    #[test]
    fn high_rates_wait_the_delay() {
        // 230k pps (4.3 µs apart): 30 µs gathers 7.
        let r = rounds(1, 4_300, 10, DELAY);
        assert!(r.iter().all(|d| *d == Some(DELAY)), "{r:?}");
        // Exactly MIN_GATHER per delay: waits; just below: does not.
        assert!(rounds(2, 7_500, 3, DELAY).iter().all(|d| *d == Some(DELAY)));
        assert!(rounds(2, 7_501, 3, DELAY).iter().all(Option::is_none));
    }

    #[test]
    fn a_worker_behind_or_switched_off_never_waits() {
        assert!(rounds(32, 100, 5, DELAY).iter().all(Option::is_none));
        assert!(rounds(1, 100, 5, Duration::ZERO)
            .iter()
            .all(Option::is_none));
    }

    #[test]
    fn the_first_round_an_empty_one_and_a_clock_step_back_never_wait() {
        let mut c = Coalesce::default();
        assert_eq!(
            c.after_round(3, 64, 5_000, DELAY),
            None,
            "nothing to compare with"
        );
        assert_eq!(c.after_round(0, 64, 0, DELAY), None);
        // The empty round left the last arrival alone: 3 more within 3 µs → wait.
        assert_eq!(c.after_round(3, 64, 8_000, DELAY), Some(DELAY));
        // CLOCK_REALTIME stepped back: no rate to trust.
        assert_eq!(c.after_round(3, 64, 1_000, DELAY), None);
    }
}
