//! Pure accounting for the sink: per-stream sequence tracking and latency statistics.
//!
//! Both are fed one value per packet and never allocate per packet except to grow (the
//! sequence bitmap as higher numbers arrive, the latency reservoir up to its cap).

use std::collections::VecDeque;

use serde::Serialize;

/// How a sequence number relates to what the stream delivered before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before and not below the highest so far.
    New,
    /// Not seen before, but below the highest so far: it was overtaken.
    Reordered,
    /// Seen before — or so far below the tracking window that it cannot be told apart from a
    /// duplicate (it is then counted as one and never as a new packet).
    Duplicate,
}

/// Per-stream sequence accounting over a sliding bitmap of seen numbers.
///
/// The bitmap grows with the highest sequence number and is capped at `window_words` 64-bit
/// words (64 × that many numbers): when a number beyond the window arrives, the oldest words
/// are forgotten. Counters are kept incrementally, so forgetting never changes `lost`.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Bit `b` of `words[k]` is set when sequence `(base_word + k) * 64 + b` was seen.
    words: VecDeque<u64>,
    base_word: u64,
    window_words: usize,
    lowest: u64,
    highest: Option<u64>,
    unique: u64,
    duplicates: u64,
    reordered: u64,
}

/// Default window: 2^20 words = 8 MiB per stream, 67M sequence numbers of reordering depth.
pub const DEFAULT_WINDOW_WORDS: usize = 1 << 20;

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker::with_window(DEFAULT_WINDOW_WORDS)
    }
}

impl SeqTracker {
    pub fn with_window(window_words: usize) -> SeqTracker {
        SeqTracker {
            words: VecDeque::new(),
            base_word: 0,
            window_words: window_words.max(1),
            lowest: u64::MAX,
            highest: None,
            unique: 0,
            duplicates: 0,
            reordered: 0,
        }
    }

    pub fn record(&mut self, seq: u64) -> Seen {
        let word = seq / 64;
        let bit = 1u64 << (seq % 64);
        if word < self.base_word {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        let mut index = (word - self.base_word) as usize;
        if index >= self.words.len() {
            self.slide_to(word);
            index = (word - self.base_word) as usize;
            self.words.resize(index + 1, 0);
        }
        let slot = &mut self.words[index];
        if *slot & bit != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        *slot |= bit;
        self.unique += 1;
        self.lowest = self.lowest.min(seq);
        match self.highest {
            Some(h) if seq < h => {
                self.reordered += 1;
                Seen::Reordered
            }
            _ => {
                self.highest = Some(seq);
                Seen::New
            }
        }
    }

    /// Forgets the oldest words so that `word` fits in the window.
    fn slide_to(&mut self, word: u64) {
        let window = self.window_words as u64;
        let Some(new_base) = (word + 1).checked_sub(window) else {
            return;
        };
        if new_base <= self.base_word {
            return;
        }
        let drop = new_base - self.base_word;
        if drop >= self.words.len() as u64 {
            self.words.clear();
        } else {
            self.words.drain(..drop as usize);
        }
        self.base_word = new_base;
    }

    /// Distinct sequence numbers seen.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// `(highest + 1) - unique`: numbers from 0 to the highest that never arrived.
    pub fn lost(&self) -> u64 {
        self.highest
            .map_or(0, |h| (u128::from(h) + 1 - u128::from(self.unique)) as u64)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Lowest sequence number seen, if any.
    pub fn lowest(&self) -> Option<u64> {
        self.highest.map(|_| self.lowest)
    }

    /// Highest sequence number seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// One-way latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Latency samples: exact count, average and maximum over every packet; percentiles over a
/// uniform reservoir sample of at most `cap` packets (all of them in runs below the cap).
#[derive(Debug, Clone)]
pub struct LatencyStats {
    count: u64,
    sum_ns: u128,
    max_ns: u64,
    /// Nanoseconds, saturated at `u32::MAX` (4.3 s); `max_ns` stays exact.
    samples: Vec<u32>,
    cap: usize,
    rng: u64,
}

/// Default reservoir: 20M samples, 80 MB at most.
pub const DEFAULT_SAMPLE_CAP: usize = 20_000_000;

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats::with_cap(DEFAULT_SAMPLE_CAP)
    }
}

impl LatencyStats {
    pub fn with_cap(cap: usize) -> LatencyStats {
        LatencyStats {
            count: 0,
            sum_ns: 0,
            max_ns: 0,
            samples: Vec::new(),
            cap: cap.max(1),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
        let sample = u32::try_from(ns).unwrap_or(u32::MAX);
        if self.samples.len() < self.cap {
            self.samples.push(sample);
        } else {
            // Reservoir sampling (algorithm R): keep packet `count` with probability cap/count.
            let j = self.next_random() % self.count;
            if let Some(slot) = self.samples.get_mut(j as usize) {
                *slot = sample;
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The summary, or `None` before the first sample. Reorders the reservoir.
    pub fn summary(&mut self) -> Option<Latency> {
        if self.count == 0 || self.samples.is_empty() {
            return None;
        }
        let us = |ns: f64| ns / 1000.0;
        Some(Latency {
            avg: us(self.sum_ns as f64 / self.count as f64),
            p50: us(f64::from(self.percentile(50.0))),
            p99: us(f64::from(self.percentile(99.0))),
            max: us(self.max_ns as f64),
        })
    }

    /// Nearest-rank percentile of the reservoir (`samples` must not be empty).
    fn percentile(&mut self, p: f64) -> u32 {
        let n = self.samples.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        *self.samples.select_nth_unstable(index).1
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: plenty for choosing reservoir slots.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut SeqTracker, seqs: &[u64]) -> Vec<Seen> {
        seqs.iter().map(|&s| t.record(s)).collect()
    }

    #[test]
    fn in_order_streams_lose_nothing() {
        let mut t = SeqTracker::default();
        for s in 0..10_000 {
            assert_eq!(t.record(s), Seen::New);
        }
        assert_eq!(
            (t.unique(), t.lost(), t.duplicates(), t.reordered()),
            (10_000, 0, 0, 0)
        );
        assert_eq!((t.lowest(), t.highest()), (Some(0), Some(9_999)));
    }

    #[test]
    fn gaps_duplicates_and_reordering_are_told_apart() {
        use Seen::*;
        let mut t = SeqTracker::default();
        let seen = feed(&mut t, &[0, 1, 3, 2, 2, 3, 7, 5, 0, 200]);
        assert_eq!(
            seen,
            [New, New, New, Reordered, Duplicate, Duplicate, New, Reordered, Duplicate, New]
        );
        // 0..=200 is 201 numbers, 7 distinct arrived (0 1 2 3 5 7 200).
        assert_eq!(t.unique(), 7);
        assert_eq!(t.lost(), 194);
        assert_eq!(t.duplicates(), 3);
        assert_eq!(t.reordered(), 2);
        // A late arrival fills its gap.
        assert_eq!(t.record(4), Reordered);
        assert_eq!(t.lost(), 193);
    }

    #[test]
    fn a_stream_joined_late_counts_the_numbers_before_it_as_lost() {
        let mut t = SeqTracker::default();
        feed(&mut t, &[1000, 1001, 1002]);
        assert_eq!(t.lost(), 1000);
        assert_eq!(t.lowest(), Some(1000));
    }

    #[test]
    fn an_empty_tracker_reports_nothing() {
        let t = SeqTracker::default();
        assert_eq!((t.lost(), t.lowest(), t.highest()), (0, None, None));
    }

    #[test]
    fn the_window_slides_without_changing_the_counts() {
        // Two words: 128 numbers of memory.
        let mut t = SeqTracker::with_window(2);
        for s in 0..1000 {
            assert_eq!(t.record(s), Seen::New);
        }
        assert!(t.words.len() <= 2);
        assert_eq!((t.unique(), t.lost()), (1000, 0));
        // Inside the window: still exact.
        assert_eq!(t.record(990), Seen::Duplicate);
        // Below the window: cannot be told from a duplicate, and is never counted as new.
        assert_eq!(t.record(5), Seen::Duplicate);
        assert_eq!((t.unique(), t.lost(), t.duplicates()), (1000, 0, 2));
    }

    #[test]
    fn absurd_sequence_numbers_cannot_exhaust_memory() {
        let mut t = SeqTracker::with_window(4);
        t.record(0);
        assert_eq!(t.record(u64::MAX), Seen::New);
        assert!(t.words.len() <= 4);
        assert_eq!(t.lost(), u64::MAX - 1);
        assert_eq!(t.record(u64::MAX), Seen::Duplicate);
        assert_eq!(t.record(u64::MAX - 1), Seen::Reordered);
        assert_eq!(t.record(1), Seen::Duplicate, "far below the window");
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let mut l = LatencyStats::default();
        assert_eq!(l.summary(), None);
        // 1..=100 µs
        for us in (1..=100u64).rev() {
            l.record(us * 1000);
        }
        let s = l.summary().unwrap();
        assert_eq!(
            s,
            Latency {
                avg: 50.5,
                p50: 50.0,
                p99: 99.0,
                max: 100.0
            }
        );
        assert_eq!(l.count(), 100);
    }

    #[test]
    fn latency_of_one_sample() {
        let mut l = LatencyStats::default();
        l.record(1500);
        assert_eq!(
            l.summary(),
            Some(Latency {
                avg: 1.5,
                p50: 1.5,
                p99: 1.5,
                max: 1.5
            })
        );
    }

    #[test]
    fn huge_latencies_keep_an_exact_max_and_average() {
        let mut l = LatencyStats::default();
        l.record(10_000_000_000);
        l.record(0);
        let s = l.summary().unwrap();
        assert_eq!(s.max, 10_000_000.0);
        assert_eq!(s.avg, 5_000_000.0);
        assert_eq!(
            s.p99,
            f64::from(u32::MAX) / 1000.0,
            "samples saturate at 4.3 s"
        );
    }

    #[test]
    fn the_reservoir_is_capped_and_stays_representative() {
        let mut l = LatencyStats::with_cap(1000);
        // 100k samples: the first half 10 µs, the second half 30 µs.
        for i in 0..100_000u64 {
            l.record(if i < 50_000 { 10_000 } else { 30_000 });
        }
        assert_eq!(l.samples.len(), 1000);
        let low = l.samples.iter().filter(|&&s| s == 10_000).count();
        assert!(
            (400..600).contains(&low),
            "reservoir is biased: {low} of 1000 from the first half"
        );
        let s = l.summary().unwrap();
        assert_eq!((s.avg, s.max, s.p99), (20.0, 30.0, 30.0));
    }
}
