//! RTP stream quality: what one flow's sequence numbers, SSRC and timestamps say about its
//! path (RFC 3550 §6.4.1 and appendix A.1, A.8), kept per flow by the packet path and by
//! `mcr sink` alike — one algorithm, so the relay's figures and a receiver's compare
//! exactly.
//!
//! Per RTP packet, in arrival order:
//! - another SSRC than the stream's: `ssrc_changes` (not on the first packet) and a fresh
//!   start at this packet;
//! - the highest sequence number seen again, or an older one already seen within the last
//!   window's numbers ([`WINDOW`] by default): a `duplicate`;
//! - newer than the highest by `d` (< [`MAX_DROPOUT`]): the `d − 1` numbers skipped are
//!   `lost` until they arrive;
//! - older than the highest, within the window, not seen yet: `reordered`, and one fewer
//!   `lost` — so a swap of two packets counts one reordered and none lost;
//! - a jump forward of [`MAX_DROPOUT`] or more, or back by the window or more: a sender
//!   restart (or a stray packet from long ago): `seq_resets`, and a fresh start there.
//!
//! `jitter` is RFC 3550's interarrival jitter (A.8), in nanoseconds: the mean deviation of
//! the difference in transit time between consecutive packets, smoothed by 1/16, over every
//! packet that is not a duplicate. Converting the RTP timestamp to time needs the payload's
//! clock rate, which the flow states (`rtp_clock_rate`, 90 kHz by default: video and
//! MPEG-TS).
//!
//! Cost: the state is 16 words and the window's bits (1024 by default: 256 bytes in all),
//! the in-order case a dozen loads and stores to them.
//! The relay's state is atomic words (relaxed loads and stores, no read-modify-write)
//! written by one worker at a time: a flow's datagrams all hash to one worker (fanout by
//! addresses and ports). Two senders of one any-source flow may hash to two workers; their
//! RTP streams are then one flow's SSRC changes anyway, and the figures for it approximate.

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::wire::rtp::Rtp;

/// Sequence numbers remembered behind the highest, to tell a late packet from a duplicate,
/// unless a merged flow sets its own (`merge_window`).
pub const WINDOW: u16 = 1024;
/// Bounds of a window: powers of two (so it divides the 16-bit sequence space and a slot
/// means the same number on every lap), far below half the space.
pub const WINDOW_RANGE: (u16, u16) = (64, 16384);
/// A jump forward this large is a restart, not a gap (RFC 3550 A.1's `MAX_DROPOUT`).
pub const MAX_DROPOUT: u16 = 3000;
/// The RTP clock of a flow that states none: 90 kHz (RFC 3551 video, RFC 2250 MPEG-TS).
pub const DEFAULT_CLOCK_RATE: u32 = 90_000;

mod cell {
    /// Low 32 bits: the SSRC; bit 32: a stream has started.
    pub const SSRC: usize = 0;
    pub const MAX_SEQ: usize = 1;
    pub const LAST_ARRIVAL: usize = 2;
    pub const LAST_TS: usize = 3;
    /// Jitter in nanoseconds, times 16 (RFC 3550 A.8's fixed point).
    pub const JITTER16: usize = 4;
    pub const PACKETS: usize = 5;
    /// An `i64`: late packets subtract what their gap added.
    pub const LOST: usize = 6;
    pub const DUPLICATES: usize = 7;
    pub const REORDERED: usize = 8;
    pub const SSRC_CHANGES: usize = 9;
    pub const SEQ_RESETS: usize = 10;
    pub const NOT_RTP: usize = 11;
    /// The window's bits, one per sequence number modulo the window.
    pub const BITMAP: usize = 16;
}

/// Where a tracker keeps its words: atomics in the relay, cells in a receiver.
pub trait Words {
    fn word(&self, i: usize) -> u64;
    fn set_word(&self, i: usize, v: u64);
}

impl Words for [AtomicU64] {
    #[inline]
    fn word(&self, i: usize) -> u64 {
        self[i].load(Relaxed)
    }
    #[inline]
    fn set_word(&self, i: usize, v: u64) {
        self[i].store(v, Relaxed)
    }
}

impl Words for [Cell<u64>] {
    #[inline]
    fn word(&self, i: usize) -> u64 {
        self[i].get()
    }
    #[inline]
    fn set_word(&self, i: usize, v: u64) {
        self[i].set(v)
    }
}

/// What a packet was to its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first time this sequence number arrived (in order, late, or a fresh start).
    New,
    /// Seen before within the window.
    Duplicate,
    /// The payload is not RTP.
    NotRtp,
}

/// One RTP stream's state and counters.
#[derive(Debug)]
pub struct Tracker<W: ?Sized> {
    /// The window in sequence numbers, a power of two in [`WINDOW_RANGE`].
    window: u16,
    words: Box<W>,
}

/// The relay's tracker, shared by the workers through the flow's statistics.
pub type Monitor = Tracker<[AtomicU64]>;
/// A receiver's tracker, owned by one thread.
pub type LocalTracker = Tracker<[Cell<u64>]>;

/// Words a tracker with `window` needs.
fn len(window: u16) -> usize {
    cell::BITMAP + usize::from(window) / 64
}

/// `window` as a tracker takes it: a power of two within [`WINDOW_RANGE`].
fn valid_window(window: u16) -> u16 {
    window
        .clamp(WINDOW_RANGE.0, WINDOW_RANGE.1)
        .checked_next_power_of_two()
        .unwrap_or(WINDOW_RANGE.1)
}

impl Monitor {
    pub fn new(window: u16) -> Monitor {
        let window = valid_window(window);
        Tracker {
            window,
            words: (0..len(window)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LocalTracker {
    pub fn new(window: u16) -> LocalTracker {
        let window = valid_window(window);
        Tracker {
            window,
            words: (0..len(window)).map(|_| Cell::new(0)).collect(),
        }
    }
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new(WINDOW)
    }
}

impl Default for LocalTracker {
    fn default() -> LocalTracker {
        LocalTracker::new(WINDOW)
    }
}

/// A stream's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RtpSnapshot {
    /// RTP packets, duplicates included.
    pub packets: u64,
    pub lost: i64,
    pub duplicates: u64,
    pub reordered: u64,
    pub ssrc_changes: u64,
    pub seq_resets: u64,
    /// Datagrams of the flow that were not RTP.
    pub not_rtp: u64,
    /// RFC 3550 interarrival jitter, microseconds.
    pub jitter_us: f64,
}

impl<W: Words + ?Sized> Tracker<W> {
    /// The window in sequence numbers.
    pub fn window(&self) -> u16 {
        self.window
    }

    /// Takes one packet's RTP header (`None`: not RTP) that arrived at `arrival_ns` (any
    /// clock, consistently), of a payload clocked at `clock_rate` Hz.
    #[inline]
    pub fn record(&self, rtp: Option<Rtp>, arrival_ns: u64, clock_rate: u32) -> Seen {
        let w = &self.words;
        let Some(rtp) = rtp else {
            self.bump(cell::NOT_RTP);
            return Seen::NotRtp;
        };
        self.bump(cell::PACKETS);
        let state = w.word(cell::SSRC);
        if state >> 32 == 0 || state as u32 != rtp.ssrc {
            if state >> 32 != 0 {
                self.bump(cell::SSRC_CHANGES);
            }
            self.start(rtp, arrival_ns);
            return Seen::New;
        }
        let max = w.word(cell::MAX_SEQ) as u16;
        let ahead = rtp.seq.wrapping_sub(max);
        if ahead == 0 {
            self.bump(cell::DUPLICATES);
            return Seen::Duplicate;
        }
        if ahead < 0x8000 {
            if ahead >= MAX_DROPOUT {
                self.bump(cell::SEQ_RESETS);
                self.start(rtp, arrival_ns);
                return Seen::New;
            }
            let lost = w.word(cell::LOST).wrapping_add(u64::from(ahead - 1));
            w.set_word(cell::LOST, lost);
            if ahead >= self.window {
                for i in cell::BITMAP..len(self.window) {
                    w.set_word(i, 0);
                }
            } else {
                for skipped in 1..ahead {
                    self.set_bit(max.wrapping_add(skipped), false);
                }
            }
            self.set_bit(rtp.seq, true);
            w.set_word(cell::MAX_SEQ, u64::from(rtp.seq));
        } else {
            let behind = max.wrapping_sub(rtp.seq);
            if behind >= self.window {
                self.bump(cell::SEQ_RESETS);
                self.start(rtp, arrival_ns);
                return Seen::New;
            }
            if self.bit(rtp.seq) {
                self.bump(cell::DUPLICATES);
                return Seen::Duplicate;
            }
            self.set_bit(rtp.seq, true);
            w.set_word(cell::LOST, w.word(cell::LOST).wrapping_sub(1));
            self.bump(cell::REORDERED);
        }
        self.jitter(rtp, arrival_ns, clock_rate);
        Seen::New
    }

    /// The figures so far.
    pub fn snapshot(&self) -> RtpSnapshot {
        let w = &self.words;
        RtpSnapshot {
            packets: w.word(cell::PACKETS),
            lost: w.word(cell::LOST) as i64,
            duplicates: w.word(cell::DUPLICATES),
            reordered: w.word(cell::REORDERED),
            ssrc_changes: w.word(cell::SSRC_CHANGES),
            seq_resets: w.word(cell::SEQ_RESETS),
            not_rtp: w.word(cell::NOT_RTP),
            jitter_us: (w.word(cell::JITTER16) >> 4) as f64 / 1e3,
        }
    }

    #[inline]
    fn bump(&self, i: usize) {
        self.words.set_word(i, self.words.word(i).wrapping_add(1));
    }

    /// A fresh stream at this packet: everything older counts as seen, so a straggler of
    /// the old numbering is a duplicate, never a negative loss.
    fn start(&self, rtp: Rtp, arrival_ns: u64) {
        let w = &self.words;
        w.set_word(cell::SSRC, 1 << 32 | u64::from(rtp.ssrc));
        w.set_word(cell::MAX_SEQ, u64::from(rtp.seq));
        w.set_word(cell::LAST_ARRIVAL, arrival_ns);
        w.set_word(cell::LAST_TS, u64::from(rtp.timestamp));
        for i in cell::BITMAP..len(self.window) {
            w.set_word(i, u64::MAX);
        }
    }

    #[inline]
    fn jitter(&self, rtp: Rtp, arrival_ns: u64, clock_rate: u32) {
        let w = &self.words;
        let arrived = arrival_ns.wrapping_sub(w.word(cell::LAST_ARRIVAL)) as i64;
        let ticks = rtp.timestamp.wrapping_sub(w.word(cell::LAST_TS) as u32) as i32;
        let sent = i64::from(ticks) * 1_000_000_000 / i64::from(clock_rate.max(1));
        let d = arrived.wrapping_sub(sent).unsigned_abs();
        let j16 = w.word(cell::JITTER16);
        w.set_word(
            cell::JITTER16,
            j16.wrapping_add(d).wrapping_sub((j16 + 8) >> 4),
        );
        w.set_word(cell::LAST_ARRIVAL, arrival_ns);
        w.set_word(cell::LAST_TS, u64::from(rtp.timestamp));
    }

    #[inline]
    fn bit(&self, seq: u16) -> bool {
        let i = usize::from(seq & (self.window - 1));
        self.words.word(cell::BITMAP + i / 64) & (1 << (i % 64)) != 0
    }

    #[inline]
    fn set_bit(&self, seq: u16, on: bool) {
        let i = usize::from(seq & (self.window - 1));
        let word = cell::BITMAP + i / 64;
        let v = self.words.word(word);
        let bit = 1u64 << (i % 64);
        self.words
            .set_word(word, if on { v | bit } else { v & !bit });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Option<Rtp> {
        Some(Rtp {
            seq,
            timestamp: u32::from(seq).wrapping_mul(900),
            ssrc: 7,
            payload_type: 33,
        })
    }

    /// Feeds `seqs` 10 ms apart (the timestamps say the same at 90 kHz).
    fn feed(t: &LocalTracker, seqs: impl IntoIterator<Item = u16>) -> Vec<Seen> {
        seqs.into_iter()
            .map(|s| t.record(rtp(s), u64::from(s) * 10_000_000, DEFAULT_CLOCK_RATE))
            .collect()
    }

    #[test]
    fn gaps_duplicates_and_swaps_are_counted_once_each() {
        let t = LocalTracker::default();
        // 3 lost; 5 duplicated; 8 and 9 swapped; 12 arrives after 14 (late, not lost).
        feed(&t, [0, 1, 2, 4, 5, 5, 6, 7, 9, 8, 10, 11, 13, 14, 12, 15]);
        let s = t.snapshot();
        assert_eq!(
            (s.packets, s.lost, s.duplicates, s.reordered),
            (16, 1, 1, 2)
        );
        assert_eq!((s.ssrc_changes, s.seq_resets, s.not_rtp), (0, 0, 0));
        assert_eq!(s.jitter_us, 0.0, "arrivals exactly as the timestamps say");
    }

    #[test]
    fn a_late_copy_of_an_old_packet_is_a_duplicate_and_new_ones_are_new() {
        let t = LocalTracker::default();
        let seen = feed(&t, [10, 11, 12, 11, 13, 10]);
        assert_eq!(
            seen,
            [
                Seen::New,
                Seen::New,
                Seen::New,
                Seen::Duplicate,
                Seen::New,
                Seen::Duplicate
            ]
        );
        // Before the first packet counts as seen: never a negative loss.
        assert_eq!(feed(&t, [9]), [Seen::Duplicate]);
        assert_eq!(t.snapshot().lost, 0);
    }

    #[test]
    fn the_sequence_wraps_without_a_gap() {
        let t = LocalTracker::default();
        feed(&t, (65_530..=65_535).chain(0..10));
        let s = t.snapshot();
        assert_eq!(
            (s.packets, s.lost, s.duplicates, s.seq_resets),
            (16, 0, 0, 0)
        );
        feed(&t, [65_535, 12, 11]);
        let s = t.snapshot();
        assert_eq!((s.duplicates, s.lost, s.reordered), (1, 1, 1));
        // 10 was skipped, and its slot cleared although it held 64,522 one lap before.
        assert_eq!(feed(&t, [10]), [Seen::New]);
        assert_eq!((t.snapshot().lost, t.snapshot().reordered), (0, 2));
    }

    #[test]
    fn a_gap_as_wide_as_the_window_forgets_what_it_skipped() {
        let t = LocalTracker::default();
        feed(&t, [0, 1]);
        feed(&t, [1 + WINDOW + 5]);
        assert_eq!(t.snapshot().lost, i64::from(WINDOW) + 4);
        // A skipped number inside the window arrives late; one older than it is a reset.
        assert_eq!(feed(&t, [1020]), [Seen::New]);
        assert_eq!(t.snapshot().reordered, 1);
        assert_eq!(feed(&t, [5]), [Seen::New]);
        assert_eq!(t.snapshot().seq_resets, 1);
    }

    #[test]
    fn a_restart_by_ssrc_or_by_a_jump_starts_afresh_without_loss() {
        let t = LocalTracker::default();
        feed(&t, [100, 101]);
        let other = Rtp {
            ssrc: 8,
            ..rtp(40_000).unwrap()
        };
        assert_eq!(t.record(Some(other), 0, 90_000), Seen::New);
        let s = t.snapshot();
        assert_eq!((s.ssrc_changes, s.lost), (1, 0));
        let t = LocalTracker::default();
        feed(&t, [100, 101, 101 + MAX_DROPOUT, 102 + MAX_DROPOUT]);
        let s = t.snapshot();
        assert_eq!((s.seq_resets, s.lost, s.duplicates), (1, 0, 0));
    }

    #[test]
    fn jitter_follows_rfc_3550_a8() {
        let t = LocalTracker::default();
        // 1 ms apart in timestamps; arrivals alternate 1.1 / 0.9 ms apart: |D| = 0.1 ms.
        let mut arrival = 0u64;
        let mut expect = 0.0f64;
        for i in 0..200u16 {
            if i > 0 {
                arrival += if i % 2 == 0 { 900_000 } else { 1_100_000 };
                expect += (100_000.0 - expect) / 16.0;
            }
            let r = Rtp {
                timestamp: u32::from(i) * 90,
                ..rtp(i).unwrap()
            };
            t.record(Some(r), arrival, 90_000);
        }
        let got = t.snapshot().jitter_us;
        assert!(
            (got - expect / 1e3).abs() < 0.5,
            "{got} vs {}",
            expect / 1e3
        );
        assert!(got > 99.0, "{got}");
    }

    #[test]
    fn a_small_window_forgets_sooner_and_odd_windows_round_up() {
        let t = LocalTracker::new(64);
        feed(&t, [0, 1, 3]);
        feed(&t, [70]);
        // 2 is 68 behind: outside a 64-number window, a restart; inside the default one, late.
        assert_eq!(feed(&t, [2]), [Seen::New]);
        assert_eq!(t.snapshot().seq_resets, 1);
        assert_eq!(LocalTracker::new(1000).window(), 1024);
        assert_eq!(LocalTracker::new(1).window(), 64);
        assert_eq!(Monitor::new(u16::MAX).window(), 16384);
    }

    #[test]
    fn payloads_that_are_not_rtp_are_counted_apart() {
        let t = LocalTracker::default();
        assert_eq!(t.record(None, 0, 90_000), Seen::NotRtp);
        feed(&t, [1]);
        let s = t.snapshot();
        assert_eq!((s.not_rtp, s.packets), (1, 1));
    }
}
