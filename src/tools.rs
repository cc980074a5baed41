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
//! - a run addresses the contiguous group range `group .. group + group_count`, all IPv4
//!   (224.0.0.0/4) or all IPv6 (ff00::/8) — or one unicast address; stream id `stream_base + i`
//!   always travels to group `i` of that range;
//! - the family of the group decides everything else: an IPv6 run uses `AF_INET6` sockets and
//!   IPv6 addresses throughout (bind, source), and the report has the same fields either way
//!   (`ttl_*` then holds the hop limit, `dscp_*` the upper six bits of the traffic class).
//! - sequence numbers start at 0 per stream and are consecutive at the sender, so every gap,
//!   repeat or step backwards the sink sees happened on the way.

pub mod gen;
pub mod impair;
pub mod payload;
pub mod sink;

#[cfg(test)]
mod netns_tests;
mod os;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most datagrams handed to one `sendmmsg` or returned by one `recvmmsg`.
pub const MAX_BATCH: usize = 64;

/// Largest UDP payload an IPv4 datagram can carry; IPv6 runs use the same limit.
pub const MAX_PAYLOAD: usize = 65_507;

/// A validated, contiguous range of multicast groups of one family — or a single unicast
/// address (a unicast stream: nothing to join).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Groups {
    first: IpAddr,
    count: u32,
}

impl Groups {
    /// `count` groups from `first` on; `None` unless `count >= 1` and every one is multicast
    /// (224.0.0.0/4 or ff00::/8, so a range never leaves its block or wraps around), or `count`
    /// is 1 and `first` a unicast address.
    pub(crate) fn new(first: impl Into<IpAddr>, count: u32) -> Option<Groups> {
        let first = first.into();
        if count == 1 && is_unicast(first) {
            return Some(Groups { first, count });
        }
        let last = offset(first, count.checked_sub(1)?)?;
        (first.is_multicast() && last.is_multicast()).then_some(Groups { first, count })
    }

    pub(crate) fn count(self) -> u32 {
        self.count
    }

    pub(crate) fn is_ipv6(self) -> bool {
        self.first.is_ipv6()
    }

    /// Group `i` of the range (`i < count`).
    pub(crate) fn nth(self, i: u32) -> IpAddr {
        offset(self.first, i).unwrap_or(self.first)
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = IpAddr> {
        (0..self.count).map(move |i| self.nth(i))
    }

    pub(crate) fn contains(self, addr: IpAddr) -> bool {
        match (self.first, addr) {
            (IpAddr::V4(first), IpAddr::V4(a)) => {
                u32::from(a).wrapping_sub(u32::from(first)) < self.count
            }
            (IpAddr::V6(first), IpAddr::V6(a)) => {
                u128::from(a).wrapping_sub(u128::from(first)) < u128::from(self.count)
            }
            _ => false,
        }
    }
}

/// `addr + i` in its family; `None` past the end of the address space.
fn offset(addr: IpAddr, i: u32) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) => u32::from(a)
            .checked_add(i)
            .map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        IpAddr::V6(a) => u128::from(a)
            .checked_add(u128::from(i))
            .map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    }
}

/// An address one host can send a unicast stream to. IPv4-mapped IPv6 addresses are refused:
/// the tools' IPv6 sockets are `IPV6_V6ONLY`, and such a stream is IPv4 on the wire anyway.
fn is_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !a.is_multicast() && !a.is_unspecified() && !a.is_broadcast(),
        IpAddr::V6(a) => !a.is_multicast() && !a.is_unspecified() && a.to_ipv4_mapped().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn group_ranges_must_stay_multicast() {
        let g = Groups::new(Ipv4Addr::new(239, 1, 1, 254), 3).unwrap();
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            [v4(239, 1, 1, 254), v4(239, 1, 1, 255), v4(239, 1, 2, 0)]
        );
        assert!(!g.is_ipv6());
        assert!(g.contains(v4(239, 1, 2, 0)));
        assert!(!g.contains(v4(239, 1, 2, 1)));
        assert!(!g.contains(v4(239, 1, 1, 253)));
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

    #[test]
    fn ipv6_group_ranges_count_up_and_stay_in_ff00_8() {
        let g = Groups::new(v6("ff3e::1:fffe"), 3).unwrap();
        assert!(g.is_ipv6());
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            [v6("ff3e::1:fffe"), v6("ff3e::1:ffff"), v6("ff3e::2:0")]
        );
        assert_eq!(g.nth(2), v6("ff3e::2:0"));
        assert!(g.contains(v6("ff3e::2:0")));
        assert!(!g.contains(v6("ff3e::2:1")));
        assert!(!g.contains(v6("ff3e::1:fffd")));
        // The same low bits in the other family are a different address.
        assert!(!g.contains(v4(0, 1, 255, 254)));
        let v4g = Groups::new(Ipv4Addr::new(239, 1, 1, 1), 2).unwrap();
        assert!(!v4g.contains(v6("::ef01:101")));

        // The top of the address space is the end of ff00::/8: a range may reach it, not wrap.
        let top = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
        assert!(Groups::new(top, 2).is_some());
        assert!(Groups::new(top, 3).is_none());
        assert!(Groups::new(v6("ff00::"), u32::MAX).is_some());
        // Starting below ff00::/8 is not multicast, whatever the count.
        assert!(Groups::new(v6("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 2).is_none());
        assert!(Groups::new(v6("ff15::1"), 0).is_none());
    }

    #[test]
    fn one_ipv6_unicast_address_is_a_stream() {
        let g = Groups::new(v6("fd99::2"), 1).unwrap();
        assert!(g.contains(v6("fd99::2")) && !g.contains(v6("fd99::3")));
        assert!(Groups::new(v6("fd99::2"), 2).is_none(), "only one unicast");
        assert!(Groups::new(v6("::"), 1).is_none());
        assert!(
            Groups::new(v6("::ffff:10.0.0.1"), 1).is_none(),
            "IPv4-mapped: use the IPv4 address"
        );
        assert!(Groups::new(v6("fe80::1"), 1).is_some());
    }
}
