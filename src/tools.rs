//! Traffic tools: a paced multicast generator (`gen`) and a checking receiver (`sink`).
//!
//! They exist to measure mcr from the outside: `gen` stamps every datagram with a probe header
//! ([`payload`]: stream id, sequence number, send time on `CLOCK_MONOTONIC`, verifiable filler) and
//! `sink` reports exactly what arrived — per stream losses, duplicates, reordering, corruption,
//! TTL range and one-way latency. Both run on plain UDP sockets in whatever network namespace the
//! calling thread is in, and both batch their system calls (`sendmmsg`/`recvmmsg`, up to
//! [`MAX_BATCH`] datagrams per call) because a wake-up per packet is too expensive to reach a few
//! hundred thousand packets per second on a small VM.
//!
//! Invariants shared by both sides:
//! - a run addresses the contiguous group range `group .. group + group_count`; stream id
//!   `stream_base + i` always travels to group `i` of that range;
//! - sequence numbers start at 0 per stream and are consecutive at the sender, so every gap,
//!   repeat or step backwards the sink sees happened on the way.

pub mod gen;
pub mod payload;
pub mod sink;

#[cfg(test)]
mod netns_tests;
mod os;

use std::net::Ipv4Addr;

/// Most datagrams handed to one `sendmmsg` or returned by one `recvmmsg`.
pub const MAX_BATCH: usize = 64;

/// Largest UDP payload an IPv4 datagram can carry.
pub const MAX_PAYLOAD: usize = 65_507;

/// A validated, contiguous range of IPv4 multicast groups — or a single unicast address
/// (a unicast stream: nothing to join).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Groups {
    first: u32,
    count: u32,
}

impl Groups {
    /// `count` groups from `first` on; `None` unless `count >= 1` and every one is multicast,
    /// or `count` is 1 and `first` a unicast address.
    pub(crate) fn new(first: Ipv4Addr, count: u32) -> Option<Groups> {
        let start = u32::from(first);
        if count == 1 && !first.is_multicast() && !first.is_unspecified() && !first.is_broadcast() {
            return Some(Groups {
                first: start,
                count,
            });
        }
        let last = start.checked_add(count.checked_sub(1)?)?;
        (first.is_multicast() && Ipv4Addr::from(last).is_multicast()).then_some(Groups {
            first: start,
            count,
        })
    }

    pub(crate) fn count(self) -> u32 {
        self.count
    }

    /// Group `i` of the range (`i < count`).
    pub(crate) fn nth(self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.first.wrapping_add(i))
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Ipv4Addr> {
        (0..self.count).map(move |i| self.nth(i))
    }

    pub(crate) fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr).wrapping_sub(self.first) < self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ranges_must_stay_multicast() {
        let g = Groups::new(Ipv4Addr::new(239, 1, 1, 254), 3).unwrap();
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            [
                Ipv4Addr::new(239, 1, 1, 254),
                Ipv4Addr::new(239, 1, 1, 255),
                Ipv4Addr::new(239, 1, 2, 0)
            ]
        );
        assert!(g.contains(Ipv4Addr::new(239, 1, 2, 0)));
        assert!(!g.contains(Ipv4Addr::new(239, 1, 2, 1)));
        assert!(!g.contains(Ipv4Addr::new(239, 1, 1, 253)));
        assert!(Groups::new(Ipv4Addr::new(239, 1, 1, 1), 0).is_none());
        assert!(Groups::new(Ipv4Addr::new(10, 0, 0, 1), 2).is_none());
        assert!(
            Groups::new(Ipv4Addr::new(10, 0, 0, 1), 1).is_some(),
            "one unicast stream"
        );
        assert!(Groups::new(Ipv4Addr::new(0, 0, 0, 0), 1).is_none());
        assert!(Groups::new(Ipv4Addr::new(239, 255, 255, 255), 2).is_none());
        assert!(Groups::new(Ipv4Addr::new(255, 255, 255, 255), 2).is_none());
        assert!(Groups::new(Ipv4Addr::new(224, 0, 0, 0), 1 << 28).is_some());
    }
}
