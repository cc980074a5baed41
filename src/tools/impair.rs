//! Deterministic impairments `gen` applies to its own packets, so a test knows exactly what a
//! path lost, duplicated or reordered (this kernel has no `netem`): which packets of a batch
//! leave, in what order, and how often each.
//!
//! Packet `p` (the run's sequence number; single-stream runs only) is
//! - swapped with `p + 1` when `p % swap_every == swap_every − 1` (neither is then dropped
//!   or duplicated; at a batch's end `p` is carried into the next batch and sent after its
//!   first packet, [`CARRIED`] in the order);
//! - else dropped when `p % drop_every == drop_every − 1`, when `p` lies in `drop_range`, or
//!   with probability `drop_percent` by a hash of (`seed`, `p`) — the same seed drops the
//!   same packets on every run, another seed independently;
//! - else sent twice in a row when `p % dup_every == dup_every − 1`.

use serde::Serialize;

/// In a plan's order: the packet carried over from the previous batch (see [`Impaired::carry`]).
pub const CARRIED: usize = usize::MAX;

/// What to do to a run's packets; the default does nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impairments {
    pub drop_every: Option<u64>,
    pub dup_every: Option<u64>,
    pub swap_every: Option<u64>,
    /// Packets `start..end` are dropped (an outage of `(end − start) / rate` seconds).
    pub drop_range: Option<(u64, u64)>,
    /// Percent of packets dropped at random (by `seed`), 0–100.
    pub drop_percent: f64,
    pub seed: u64,
}

/// What was done, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Impaired {
    pub dropped: u64,
    pub duplicated: u64,
    pub swapped: u64,
    /// The sequence numbers dropped, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_seqs: Vec<u64>,
    /// A packet held back at a batch's end to follow the next one (a swap across batches).
    #[serde(skip)]
    pub carry: Option<u64>,
}

impl Impairments {
    pub fn is_none(&self) -> bool {
        *self == Impairments::default()
    }

    /// Appends to `order` the batch positions (0-based, packet `first + i` at `i`, or
    /// [`CARRIED`]) to send, in sending order, for packets `first .. first + n` of a run of
    /// `total`, and counts what it did.
    pub fn plan(
        &self,
        first: u64,
        n: usize,
        total: u64,
        order: &mut Vec<usize>,
        done: &mut Impaired,
    ) {
        let hit = |every: Option<u64>, p: u64| every.is_some_and(|e| e > 0 && p % e == e - 1);
        let mut i = 0;
        if done.carry.take().is_some() && n > 0 {
            order.extend([0, CARRIED]);
            done.swapped += 1;
            i = 1;
        }
        while i < n {
            let p = first + i as u64;
            if hit(self.swap_every, p) && p + 1 < total {
                if i + 1 < n {
                    order.extend([i + 1, i]);
                    done.swapped += 1;
                    i += 2;
                } else {
                    done.carry = Some(p);
                    i += 1;
                }
                continue;
            }
            if self.dropped(p) {
                done.dropped += 1;
                done.dropped_seqs.push(p);
            } else {
                order.push(i);
                if hit(self.dup_every, p) {
                    order.push(i);
                    done.duplicated += 1;
                }
            }
            i += 1;
        }
    }

    fn dropped(&self, p: u64) -> bool {
        let every = self.drop_every.is_some_and(|e| e > 0 && p % e == e - 1);
        let range = self.drop_range.is_some_and(|(a, b)| (a..b).contains(&p));
        every || range || (self.drop_percent > 0.0 && chance(self.seed, p) < self.drop_percent)
    }
}

/// A number in 0..100 fixed by (`seed`, `p`): splitmix64's finaliser.
fn chance(seed: u64, p: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(p)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % 1_000_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(imp: &Impairments, first: u64, n: usize) -> (Vec<u64>, Impaired) {
        let mut order = Vec::new();
        let mut done = Impaired::default();
        imp.plan(first, n, u64::MAX, &mut order, &mut done);
        (order.iter().map(|&i| first + i as u64).collect(), done)
    }

    #[test]
    fn nothing_sends_everything_in_order() {
        let (sent, done) = run(&Impairments::default(), 5, 4);
        assert_eq!(sent, [5, 6, 7, 8]);
        assert_eq!(done, Impaired::default());
    }

    #[test]
    fn every_nth_is_dropped_duplicated_or_swapped() {
        let imp = Impairments {
            drop_every: Some(4),
            dup_every: Some(5),
            swap_every: Some(7),
            ..Impairments::default()
        };
        let (sent, done) = run(&imp, 0, 12);
        // 3 and 11 dropped, 4 and 9 doubled, 6 and 7 swapped (7 is neither dropped nor dup).
        assert_eq!(sent, [0, 1, 2, 4, 4, 5, 7, 6, 8, 9, 9, 10]);
        assert_eq!((done.dropped, done.duplicated, done.swapped), (2, 2, 1));
        assert_eq!(done.dropped_seqs, [3, 11]);
        // A swap at the batch's end carries 6 into the next batch, after 7.
        let mut order = Vec::new();
        let mut done = Impaired::default();
        imp.plan(0, 7, 100, &mut order, &mut done);
        assert_eq!(order.last(), Some(&5));
        assert_eq!((done.swapped, done.carry), (0, Some(6)));
        order.clear();
        imp.plan(7, 2, 100, &mut order, &mut done);
        assert_eq!(order, [0, CARRIED, 1]);
        assert_eq!((done.swapped, done.carry), (1, None));
        // The run's last packet has nothing to swap with.
        let mut done = Impaired::default();
        imp.plan(0, 7, 7, &mut order, &mut done);
        assert_eq!(done.carry, None);
    }

    #[test]
    fn an_outage_drops_a_range_and_random_drops_follow_the_seed() {
        let imp = Impairments {
            drop_range: Some((10, 20)),
            ..Impairments::default()
        };
        assert_eq!(
            run(&imp, 0, 30).1.dropped_seqs,
            (10..20).collect::<Vec<_>>()
        );
        let random = |seed| Impairments {
            drop_percent: 5.0,
            seed,
            ..Impairments::default()
        };
        let a = run(&random(1), 0, 20_000).1;
        assert_eq!(
            a,
            run(&random(1), 0, 20_000).1,
            "the same seed, the same drops"
        );
        assert!((800..1200).contains(&a.dropped), "{}", a.dropped);
        let b = run(&random(2), 0, 20_000).1;
        let both = a
            .dropped_seqs
            .iter()
            .filter(|s| b.dropped_seqs.contains(s))
            .count();
        assert!(both < 120, "independent seeds overlap by ~5 %: {both}");
    }
}
