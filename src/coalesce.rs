//! Coalescing under load: when packets arrive faster than one per round, a worker waits a
//! moment (`[relay] batch_delay`) before its next round, so the round finds more frames in
//! its rings. A larger round costs less per packet: one `io_uring_enter` for all its sends,
//! and one send for each output's run of datagrams (`egress` runs, UDP segmentation). It is
//! what a NIC's interrupt moderation does for the kernel, decided from the rings' own
//! receive timestamps:
//!
//! - a round waits only while the arrival rate, averaged over windows at least one delay
//!   long, makes the delay gather at least [`MIN_GATHER`] packets. Averaging over a whole
//!   delay keeps bursts from counting as a rate: a 50k pps stream sent in bursts of three
//!   every 60 µs looks like 3 packets per 60 µs, not 3 in 2 µs. At low rates (1k pps, 50k
//!   pps with the default 50 µs) no round ever waits, so latency and CPU there are what they
//!   were; under load a packet waits at most one delay (plus the timer's slack, which the
//!   worker sets to [`TIMER_SLACK`]);
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
    /// Receive timestamp (ns) where the current window started; 0: none yet.
    since: u64,
    /// Frames received after `since`, in rounds so far.
    frames: u64,
    /// The last full window's verdict: the rate makes waiting pay.
    on: bool,
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
        if frames == 0 || delay.is_zero() {
            return None;
        }
        if self.since == 0 || last_arrival_ns < self.since {
            // The first round, or CLOCK_REALTIME stepped back: start a window here.
            *self = Coalesce {
                since: last_arrival_ns,
                frames: 0,
                on: false,
            };
            return None;
        }
        self.frames += frames as u64;
        let span = last_arrival_ns - self.since;
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        if span >= delay_ns {
            // `frames` arrived within `span`: waiting `delay` gathers delay × frames / span.
            self.on = delay_ns.saturating_mul(self.frames) >= span.saturating_mul(MIN_GATHER);
            self.since = last_arrival_ns;
            self.frames = 0;
        }
        (self.on && frames * 2 < batch).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const DELAY: Duration = Duration::from_micros(50);

    /// `rounds` rounds, each taking the frames that arrived since the previous one: a burst of
    /// `burst` frames every `every_ns`; what each round decides.
    fn run(burst: usize, every_ns: u64, rounds: usize, delay: Duration) -> Vec<Option<Duration>> {
        let mut c = Coalesce::default();
        let mut t = 1_000_000_000;
        (0..rounds)
            .map(|_| {
                t += every_ns;
                c.after_round(burst, 64, t, delay)
            })
            .collect()
    }

    fn waits(decisions: &[Option<Duration>]) -> usize {
        decisions.iter().filter(|d| d.is_some()).count()
    }

    #[test]
    fn low_rates_never_wait() {
        // 1k pps one by one; 50k pps in bursts of 3 every 60 µs (as `mcr gen` paces it):
        // a 50 µs delay would gather 0.05 and 2.5.
        assert_eq!(waits(&run(1, 1_000 * US, 100, DELAY)), 0);
        assert_eq!(waits(&run(3, 60 * US, 100, DELAY)), 0);
        assert_eq!(waits(&run(1, 20 * US, 100, DELAY)), 0);
    }

    #[test]
    fn high_rates_wait_the_delay_once_a_window_has_shown_the_rate() {
        // 230k pps: 50 µs gathers 11.
        let d = run(1, 4_300, 100, DELAY);
        assert!(d[..11].iter().all(Option::is_none), "{d:?}");
        assert!(d[12..].iter().all(|w| *w == Some(DELAY)), "{d:?}");
        // Bursts of 10 every 25 µs (400k pps) wait too.
        assert!(waits(&run(10, 25 * US, 100, DELAY)) >= 95);
        // Exactly MIN_GATHER per delay waits; just below does not.
        assert!(waits(&run(4, 50 * US, 10, DELAY)) >= 8);
        assert_eq!(waits(&run(4, 50 * US + 1, 10, DELAY)), 0);
    }

    #[test]
    fn a_worker_behind_or_switched_off_never_waits() {
        assert_eq!(
            waits(&run(32, 10 * US, 20, DELAY)),
            0,
            "half a batch: behind"
        );
        assert_eq!(waits(&run(1, 100, 100, Duration::ZERO)), 0);
    }

    #[test]
    fn a_slowing_stream_stops_waiting_and_a_clock_step_starts_over() {
        let mut c = Coalesce::default();
        let mut t = 1_000_000_000;
        for _ in 0..50 {
            t += 4 * US;
            c.after_round(1, 64, t, DELAY);
        }
        assert_eq!(c.after_round(1, 64, t + 4 * US, DELAY), Some(DELAY));
        // The stream drops to 10k pps: the window that spans the change may still say yes
        // (one wait), every later one says no.
        t += 4 * US;
        let later: Vec<_> = (0..10)
            .map(|_| {
                t += 100 * US;
                c.after_round(1, 64, t, DELAY)
            })
            .collect();
        assert!(later[1..].iter().all(Option::is_none), "{later:?}");
        // An empty round changes nothing; CLOCK_REALTIME stepping back starts over.
        assert_eq!(c.after_round(0, 64, 0, DELAY), None);
        assert_eq!(c.after_round(3, 64, 1_000, DELAY), None);
        assert_eq!(c.since, 1_000);
    }
}
