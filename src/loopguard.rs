//! Loop guard: relays configured into a loop (A maps G1→G2, B maps G2→G1) must not circulate
//! a packet forever.
//!
//! The IP TTL cannot stop such a loop without breaking what mcr is for: many sources send
//! with TTL 1, mcr must relay those, and a relay that resets TTL 1 to its output's `ttl` makes
//! every countdown start again. The guard looks at what does not change around a loop instead,
//! the payload: a looped copy carries the same UDP payload as the original, but comes back
//! from another sender (the relay that sent it round), soon after. So a flow remembers, per
//! payload fingerprint, the sender that delivered it and when; the same payload from a
//! *different* sender within the flow's window is counted as `loop` and not forwarded. A
//! sender repeating its own payload (padding, keep-alives, null packets) is never affected.
//!
//! Invariants:
//! - one fixed table of [`SLOTS`] atomic words for the whole relay, allocated once and shared
//!   by every worker and every table generation: no allocation, lock or syscall per packet;
//!   one full-payload hash, one load and at most one store;
//! - a slot packs a 24-bit fingerprint tag, a 24-bit sender fold and a 16-bit timestamp in
//!   units of 2^20 ns (≈1.05 ms), so one relaxed load or store reads or writes an entry
//!   whole. Workers racing on a slot can only lose an entry, which lets one looped copy
//!   through; the copy comes round again and is caught then;
//! - false positives need two senders to deliver byte-identical payloads to the same flow
//!   within the window (counted as `loop`, visible per flow); a flow where that is normal
//!   sets `loop_guard = "off"`.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rustc_hash::FxHasher;

/// Entries in the guard's table: 512 KiB, enough for every payload relayed within the window
/// up to a few hundred thousand packets per second before older entries are overwritten.
pub const SLOTS: usize = 1 << 16;

/// Bit width of one timestamp unit: 2^20 ns ≈ 1.05 ms.
const TICK_SHIFT: u32 = 20;

/// Largest window that the 16-bit timestamp can hold with margin (half its range is ~34 s).
pub const MAX_WINDOW: Duration = Duration::from_secs(10);

/// A timestamp this far in the "future" (another worker's batch read the clock a little
/// later) still counts as recent.
const SKEW_TICKS: i16 = 64;

/// The relay-wide table of recently relayed payloads.
pub struct LoopGuard {
    slots: Box<[AtomicU64]>,
}

impl std::fmt::Debug for LoopGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopGuard")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Default for LoopGuard {
    fn default() -> Self {
        LoopGuard {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// A flow's guard window in timestamp units; 0 means the guard is off for the flow.
pub fn window_ticks(window: Option<Duration>) -> u16 {
    match window {
        None => 0,
        Some(w) => {
            let ticks = w.min(MAX_WINDOW).as_nanos() >> TICK_SHIFT;
            ticks.clamp(1, i16::MAX as u128) as u16
        }
    }
}

impl LoopGuard {
    /// Records that flow `flow` received `payload` from `sender` in a batch read at `now_ns`,
    /// and returns true if it is a looped copy: the same payload reached this flow from a
    /// different sender within `window` ticks (see [`window_ticks`]; 0 = off, never true).
    #[inline]
    pub fn looped(&self, flow: u32, sender: u64, payload: &[u8], now_ns: u64, window: u16) -> bool {
        if window == 0 {
            return false;
        }
        let mut h = FxHasher::default();
        h.write_u32(flow);
        h.write(payload);
        let hash = h.finish();
        let slot = &self.slots[hash as usize & (SLOTS - 1)];
        // The top bit makes a written entry differ from an empty (zero) slot.
        let tag = (hash >> 40) | 0x80_0000;
        let from = fold_sender(sender);
        let now = (now_ns >> TICK_SHIFT) as u16;
        let old = slot.load(Relaxed);
        if old >> 40 == tag && (old >> 16) & 0xff_ffff != from {
            let age = now.wrapping_sub(old as u16) as i16;
            if (-SKEW_TICKS..=window as i16).contains(&age) {
                // Keep the original sender's entry: the next round is caught the same way.
                return true;
            }
        }
        slot.store(tag << 40 | from << 16 | u64::from(now), Relaxed);
        false
    }
}

/// The sender as the guard keys it: address and UDP source port. An IPv4 sender is kept
/// whole (32 + 16 bits); an IPv6 address is folded to 48 bits first — two senders of one
/// flow colliding there only lets a looped copy through once more.
#[inline]
pub fn sender(addr: std::net::IpAddr, port: u16) -> u64 {
    match addr {
        std::net::IpAddr::V4(a) => u64::from(u32::from(a)) << 16 | u64::from(port),
        std::net::IpAddr::V6(a) => {
            let x = u128::from(a);
            let folded = ((x >> 64) as u64 ^ x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            folded << 16 | u64::from(port)
        }
    }
}

/// 48 bits of sender folded to 24 (multiplicative hashing, so nearby addresses differ).
#[inline]
fn fold_sender(sender: u64) -> u64 {
    sender.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MS: u64 = 1_000_000;

    fn s(last: u8, port: u16) -> u64 {
        sender(Ipv4Addr::new(10, 0, 0, last).into(), port)
    }

    #[test]
    fn a_copy_from_another_sender_within_the_window_is_a_loop() {
        let g = LoopGuard::default();
        let w = window_ticks(Some(Duration::from_secs(1)));
        let t0 = 5_000 * MS;
        assert!(!g.looped(0, s(1, 5000), b"payload", t0, w));
        assert!(g.looped(0, s(2, 40000), b"payload", t0 + 3 * MS, w));
        // Every further round is caught too: the original's entry is kept.
        assert!(g.looped(0, s(2, 40000), b"payload", t0 + 6 * MS, w));
        assert!(g.looped(0, s(3, 40000), b"payload", t0 + 9 * MS, w));
    }

    #[test]
    fn the_same_sender_repeating_itself_is_never_a_loop() {
        let g = LoopGuard::default();
        let w = window_ticks(Some(Duration::from_secs(1)));
        for i in 0..1000 {
            assert!(!g.looped(3, s(1, 5000), &[0xff; 1316], i * MS, w));
        }
    }

    #[test]
    fn another_port_on_the_same_host_is_another_sender() {
        let g = LoopGuard::default();
        let w = window_ticks(Some(Duration::from_secs(1)));
        assert!(!g.looped(0, s(1, 5000), b"x", MS, w));
        assert!(g.looped(0, s(1, 5001), b"x", 2 * MS, w));
    }

    #[test]
    fn flows_and_payloads_are_kept_apart() {
        let g = LoopGuard::default();
        let w = window_ticks(Some(Duration::from_secs(1)));
        assert!(!g.looped(0, s(1, 5000), b"red", MS, w));
        // The same payload on another flow (a redundant feed) is not a loop.
        assert!(!g.looped(1, s(2, 5000), b"red", MS, w));
        // One byte apart, anywhere in the payload, is another payload.
        let mut long = vec![7u8; 1400];
        assert!(!g.looped(0, s(1, 5000), &long, MS, w));
        long[700] ^= 1;
        assert!(!g.looped(0, s(2, 5000), &long, MS, w));
    }

    #[test]
    fn outside_the_window_or_off_nothing_is_a_loop() {
        let g = LoopGuard::default();
        let w = window_ticks(Some(Duration::from_millis(100)));
        assert!(!g.looped(0, s(1, 5000), b"p", 1_000 * MS, w));
        assert!(!g.looped(0, s(2, 5000), b"p", 1_200 * MS, w));
        assert!(!g.looped(0, s(3, 5000), b"q", 1_000 * MS, 0));
        assert!(!g.looped(0, s(4, 5000), b"q", 1_001 * MS, 0));
        // Across the 16-bit clock's wrap (~68.7 s) a recent entry stays recent.
        let wrap = (1u64 << 16 << TICK_SHIFT) - 10 * MS;
        assert!(!g.looped(0, s(1, 5000), b"w", wrap, w));
        assert!(g.looped(0, s(2, 5000), b"w", wrap + 20 * MS, w));
        // A clock read slightly later by another worker still counts as recent.
        assert!(!g.looped(0, s(1, 5000), b"v", 50_000 * MS, w));
        assert!(g.looped(0, s(2, 5000), b"v", 49_990 * MS, w));
    }

    #[test]
    fn windows_convert_to_ticks_within_bounds() {
        assert_eq!(window_ticks(None), 0);
        assert_eq!(window_ticks(Some(Duration::from_nanos(1))), 1);
        assert_eq!(window_ticks(Some(Duration::from_secs(1))), 953);
        assert_eq!(
            window_ticks(Some(Duration::from_secs(3600))),
            window_ticks(Some(MAX_WINDOW))
        );
        assert!(window_ticks(Some(MAX_WINDOW)) < i16::MAX as u16);
    }
}
