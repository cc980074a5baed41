//! IGMP and MLD group memberships, held by pools of helper sockets.
//!
//! mcr reads packets below the IP stack, so a membership is not needed to *receive*; it is
//! needed so that the kernel sends IGMP reports (switches with IGMP snooping and upstream
//! routers then forward the group) and programs the NIC's multicast filter.
//!
//! The kernel caps IPv4 memberships per socket (`net.ipv4.igmp_max_memberships`, 20 by default)
//! and sources per group per socket (`net.ipv4.igmp_max_msf`, 10). IPv6 has no count: each
//! membership is charged to the socket's option memory (`net.core.optmem_max`, 128 KiB on
//! current kernels, 20 KiB before 6.9): 56 bytes for a group and 24 + 16 per source (in blocks
//! of ten) for its source list, and sources per group are capped by `net.ipv6.mld_max_msf`
//! (64). Rather than asking operators to raise sysctls, each interface gets a pool of helper
//! sockets per family and every join goes to the first socket with room. Invariants:
//! - no socket ever holds more groups, or more sources for one group, than [`Limits`] allows;
//! - a group is never held in any-source and source-specific mode on the same socket (the
//!   kernel refuses that mix);
//! - joins are reference counted: two flows sharing an input join once, and the group is left
//!   only when the last user leaves. A socket left empty is closed.
//!
//! Helper sockets are never bound, so they never receive a datagram and their queues stay
//! empty; `IP_MULTICAST_ALL` is off on them for good measure.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys;

/// Per-socket membership limits of the current network namespace, per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// IPv4 groups per socket (`net.ipv4.igmp_max_memberships`).
    pub max_memberships: usize,
    /// IPv4 sources per group per socket (`net.ipv4.igmp_max_msf`).
    pub max_sources: usize,
    /// IPv6 groups per socket: the option memory (`net.core.optmem_max`) over
    /// [`V6_BYTES_PER_GROUP`].
    pub max_memberships_v6: usize,
    /// IPv6 sources per group per socket: `net.ipv6.mld_max_msf`, at most
    /// [`V6_SOURCES_PER_GROUP`].
    pub max_sources_v6: usize,
}

/// Option memory budgeted per IPv6 group on a helper socket: the group's `ipv6_mc_socklist`
/// (56 bytes) and a source list of up to [`V6_SOURCES_PER_GROUP`] (24 + 16 × 10), rounded
/// up, so a socket full of source-specific groups still fits `optmem_max`.
pub const V6_BYTES_PER_GROUP: usize = 256;
/// Sources per IPv6 group per helper socket, so [`V6_BYTES_PER_GROUP`] holds.
pub const V6_SOURCES_PER_GROUP: usize = 10;

impl Limits {
    /// The kernel defaults, used when the sysctls cannot be read (`optmem_max` as before
    /// Linux 6.9, the smaller).
    pub const DEFAULT: Limits = Limits {
        max_memberships: 20,
        max_sources: 10,
        max_memberships_v6: 20_480 / V6_BYTES_PER_GROUP,
        max_sources_v6: V6_SOURCES_PER_GROUP,
    };

    /// Reads the limits of the calling thread's network namespace.
    pub fn read() -> Limits {
        let read = |name: &str, fallback: usize| {
            std::fs::read_to_string(format!("/proc/sys/net/{name}"))
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(fallback)
        };
        let d = Self::DEFAULT;
        let optmem = read("core/optmem_max", d.max_memberships_v6 * V6_BYTES_PER_GROUP);
        Limits {
            max_memberships: read("ipv4/igmp_max_memberships", d.max_memberships),
            max_sources: read("ipv4/igmp_max_msf", d.max_sources),
            max_memberships_v6: (optmem / V6_BYTES_PER_GROUP).max(1),
            max_sources_v6: read("ipv6/mld_max_msf", d.max_sources_v6).min(V6_SOURCES_PER_GROUP),
        }
    }

    /// (groups per socket, sources per group per socket) for `group`'s family.
    pub fn of(&self, group: IpAddr) -> (usize, usize) {
        match group {
            IpAddr::V4(_) => (self.max_memberships, self.max_sources),
            IpAddr::V6(_) => (self.max_memberships_v6, self.max_sources_v6),
        }
    }
}

/// One membership: a group on an interface, optionally restricted to one source (SSM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Membership {
    pub ifindex: u32,
    pub group: IpAddr,
    /// Same family as `group`.
    pub source: Option<IpAddr>,
}

impl Membership {
    /// The helper-socket pool that holds it: per interface and family.
    fn pool(&self) -> (u32, bool) {
        (self.ifindex, self.group.is_ipv6())
    }
}

/// The kernel side of a membership, a seam so the pool arithmetic is testable without root.
pub trait Backend {
    type Socket;
    /// A helper socket of the family of IPv6 when `v6`, else IPv4.
    fn open(&mut self, v6: bool) -> io::Result<Self::Socket>;
    fn join(&mut self, socket: &Self::Socket, m: &Membership) -> io::Result<()>;
    fn leave(&mut self, socket: &Self::Socket, m: &Membership) -> io::Result<()>;
}

/// How one socket holds one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AnySource,
    Sources(usize),
}

struct Slot<S> {
    socket: S,
    groups: HashMap<IpAddr, Mode>,
}

impl<S> Slot<S> {
    fn has_room(&self, m: &Membership, limits: Limits) -> bool {
        let (max_groups, max_sources) = limits.of(m.group);
        match (self.groups.get(&m.group), m.source) {
            (None, _) => self.groups.len() < max_groups,
            (Some(Mode::Sources(n)), Some(_)) => *n < max_sources,
            // A socket holds a group in one mode only, and an any-source join is never repeated.
            _ => false,
        }
    }

    fn add(&mut self, m: &Membership) {
        match m.source {
            None => {
                self.groups.insert(m.group, Mode::AnySource);
            }
            Some(_) => match self.groups.entry(m.group).or_insert(Mode::Sources(0)) {
                Mode::Sources(n) => *n += 1,
                Mode::AnySource => unreachable!("has_room rejects mixing modes"),
            },
        }
    }

    fn remove(&mut self, m: &Membership) {
        if let Some(Mode::Sources(n)) = self.groups.get_mut(&m.group) {
            if *n > 1 {
                *n -= 1;
                return;
            }
        }
        self.groups.remove(&m.group);
    }
}

/// All memberships of the relay, reference counted, spread over helper-socket pools.
pub struct Memberships<B: Backend = Kernel> {
    backend: B,
    limits: Limits,
    /// Per interface and family (IPv6?): its helper sockets. A slot index stays valid until
    /// the slot empties.
    pools: HashMap<(u32, bool), Vec<Slot<B::Socket>>>,
    /// Users of each membership and the socket that holds it.
    refs: HashMap<Membership, (usize, usize)>,
}

impl Memberships<Kernel> {
    /// A pool using real sockets and the namespace's current limits.
    pub fn kernel() -> Self {
        Memberships::new(Kernel, Limits::read())
    }
}

impl<B: Backend> Memberships<B> {
    pub fn new(backend: B, limits: Limits) -> Self {
        Memberships {
            backend,
            limits,
            pools: HashMap::new(),
            refs: HashMap::new(),
        }
    }

    /// Adds one user of `m`; joins in the kernel only for the first. Returns whether it joined.
    pub fn join(&mut self, m: Membership) -> io::Result<bool> {
        if let Some((users, _)) = self.refs.get_mut(&m) {
            *users += 1;
            return Ok(false);
        }
        let limits = self.limits;
        let pool = self.pools.entry(m.pool()).or_default();
        let slot = match pool.iter().position(|s| s.has_room(&m, limits)) {
            Some(i) => i,
            None => {
                let socket = self.backend.open(m.group.is_ipv6())?;
                pool.push(Slot {
                    socket,
                    groups: HashMap::new(),
                });
                pool.len() - 1
            }
        };
        let result = self.backend.join(&pool[slot].socket, &m);
        if let Err(e) = result {
            if pool[slot].groups.is_empty() {
                pool.remove(slot);
            }
            return Err(e);
        }
        pool[slot].add(&m);
        self.refs.insert(m, (1, slot));
        Ok(true)
    }

    /// Drops one user of `m`; leaves in the kernel when it was the last. Returns whether it left.
    pub fn leave(&mut self, m: Membership) -> io::Result<bool> {
        let Some((users, slot)) = self.refs.get_mut(&m) else {
            return Ok(false);
        };
        if *users > 1 {
            *users -= 1;
            return Ok(false);
        }
        let slot = *slot;
        self.refs.remove(&m);
        let pool = self
            .pools
            .get_mut(&m.pool())
            .expect("a held membership has a pool");
        let result = self.backend.leave(&pool[slot].socket, &m);
        pool[slot].remove(&m);
        if pool[slot].groups.is_empty() {
            // Closing the socket would leave anyway; removing the slot shifts later indices.
            pool.remove(slot);
            for (held, (_, s)) in self.refs.iter_mut() {
                if held.pool() == m.pool() && *s > slot {
                    *s -= 1;
                }
            }
        }
        if pool.is_empty() {
            self.pools.remove(&m.pool());
        }
        result.map(|()| true)
    }

    /// Every membership currently held, in a stable order.
    pub fn held(&self) -> Vec<Membership> {
        let mut v: Vec<_> = self.refs.keys().copied().collect();
        v.sort();
        v
    }

    /// Number of helper sockets open on `ifindex`, both families.
    pub fn sockets_on(&self, ifindex: u32) -> usize {
        [false, true]
            .iter()
            .map(|&v6| self.pools.get(&(ifindex, v6)).map_or(0, Vec::len))
            .sum()
    }

    /// Number of helper sockets open in total.
    pub fn sockets(&self) -> usize {
        self.pools.values().map(Vec::len).sum()
    }
}

/// Real helper sockets: unbound UDP sockets joined with RFC 3678 options by interface index
/// (which, unlike `IP_ADD_SOURCE_MEMBERSHIP`, works on interfaces without an IPv4 address),
/// the same options for both families.
pub struct Kernel;

impl Backend for Kernel {
    type Socket = OwnedFd;

    fn open(&mut self, v6: bool) -> io::Result<OwnedFd> {
        let domain = if v6 {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
        if v6 {
            socket.set_only_v6(true)?;
            sys::setsockopt(
                socket.as_fd(),
                libc::IPPROTO_IPV6,
                IPV6_MULTICAST_ALL,
                &0i32,
            )?;
        } else {
            socket.set_multicast_all_v4(false)?;
        }
        Ok(socket.into())
    }

    fn join(&mut self, socket: &OwnedFd, m: &Membership) -> io::Result<()> {
        group_op(socket, m, true)
    }

    fn leave(&mut self, socket: &OwnedFd, m: &Membership) -> io::Result<()> {
        group_op(socket, m, false)
    }
}

/// `IPV6_MULTICAST_ALL` (Linux 4.20), absent from some libc versions.
const IPV6_MULTICAST_ALL: libc::c_int = 29;

fn group_op(socket: &OwnedFd, m: &Membership, join: bool) -> io::Result<()> {
    let fd = socket.as_fd();
    let level = if m.group.is_ipv6() {
        libc::IPPROTO_IPV6
    } else {
        libc::IPPROTO_IP
    };
    match m.source {
        None => {
            let req = libc::group_req {
                gr_interface: m.ifindex,
                gr_group: sys::sockaddr_storage(m.group),
            };
            let name = if join {
                libc::MCAST_JOIN_GROUP
            } else {
                libc::MCAST_LEAVE_GROUP
            };
            sys::setsockopt(fd, level, name, &req)
        }
        Some(source) => {
            let req = libc::group_source_req {
                gsr_interface: m.ifindex,
                gsr_group: sys::sockaddr_storage(m.group),
                gsr_source: sys::sockaddr_storage(source),
            };
            let name = if join {
                libc::MCAST_JOIN_SOURCE_GROUP
            } else {
                libc::MCAST_LEAVE_SOURCE_GROUP
            };
            sys::setsockopt(fd, level, name, &req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Mimics the kernel's per-socket accounting and refuses what the kernel would refuse.
    #[derive(Default)]
    struct Fake {
        opened: usize,
        per_socket: HashMap<usize, Vec<Membership>>,
        limits: Option<Limits>,
        joins: usize,
        leaves: usize,
    }

    impl Backend for Fake {
        type Socket = usize;
        fn open(&mut self, _v6: bool) -> io::Result<usize> {
            self.opened += 1;
            Ok(self.opened)
        }
        fn join(&mut self, s: &usize, m: &Membership) -> io::Result<()> {
            let limits = self.limits.unwrap();
            let held = self.per_socket.entry(*s).or_default();
            let groups: std::collections::HashSet<_> =
                held.iter().map(|h| (h.ifindex, h.group)).collect();
            let same_group: Vec<_> = held.iter().filter(|h| h.group == m.group).collect();
            if !groups.contains(&(m.ifindex, m.group)) && groups.len() >= limits.max_memberships {
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            if same_group
                .iter()
                .any(|h| h.source.is_none() != m.source.is_none())
            {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            if m.source.is_some() && same_group.len() >= limits.max_sources {
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            if held.contains(m) {
                return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
            }
            held.push(*m);
            self.joins += 1;
            Ok(())
        }
        fn leave(&mut self, s: &usize, m: &Membership) -> io::Result<()> {
            let held = self.per_socket.get_mut(s).unwrap();
            let i = held
                .iter()
                .position(|h| h == m)
                .expect("left what was joined");
            held.remove(i);
            self.leaves += 1;
            Ok(())
        }
    }

    fn pool(max_memberships: usize, max_sources: usize) -> Memberships<Fake> {
        let limits = Limits {
            max_memberships,
            max_sources,
            max_memberships_v6: max_memberships,
            max_sources_v6: max_sources,
        };
        let fake = Fake {
            limits: Some(limits),
            ..Fake::default()
        };
        Memberships::new(fake, limits)
    }

    fn asm(ifindex: u32, n: u32) -> Membership {
        Membership {
            ifindex,
            group: Ipv4Addr::from(0xef01_0000 + n).into(),
            source: None,
        }
    }

    #[test]
    fn three_hundred_groups_fit_in_fifteen_sockets_at_default_limits() {
        let mut p = pool(20, 10);
        for n in 0..300 {
            assert!(p.join(asm(7, n)).unwrap());
        }
        assert_eq!(p.sockets_on(7), 15);
        assert_eq!(p.held().len(), 300);
        for n in 0..300 {
            assert!(p.leave(asm(7, n)).unwrap());
        }
        assert_eq!(p.sockets(), 0);
        assert_eq!(p.backend.leaves, 300);
    }

    #[test]
    fn joins_are_reference_counted() {
        let mut p = pool(20, 10);
        assert!(p.join(asm(1, 1)).unwrap());
        assert!(!p.join(asm(1, 1)).unwrap());
        assert!(!p.leave(asm(1, 1)).unwrap());
        assert_eq!(p.backend.leaves, 0);
        assert!(p.leave(asm(1, 1)).unwrap());
        assert!(!p.leave(asm(1, 1)).unwrap(), "leaving twice is a no-op");
        assert_eq!(p.backend.joins, 1);
    }

    #[test]
    fn pools_are_per_interface() {
        let mut p = pool(2, 10);
        for n in 0..3 {
            p.join(asm(1, n)).unwrap();
            p.join(asm(2, n)).unwrap();
        }
        assert_eq!(p.sockets_on(1), 2);
        assert_eq!(p.sockets_on(2), 2);
    }

    #[test]
    fn sources_respect_msf_and_never_mix_with_any_source() {
        let mut p = pool(20, 3);
        let group = Ipv4Addr::new(232, 1, 1, 1).into();
        p.join(Membership {
            ifindex: 1,
            group,
            source: None,
        })
        .unwrap();
        for s in 0..7u32 {
            p.join(Membership {
                ifindex: 1,
                group,
                source: Some(Ipv4Addr::from(0x0a00_0001 + s).into()),
            })
            .unwrap();
        }
        // 1 any-source socket; 7 sources at 3 per socket on 3 more sockets.
        assert_eq!(p.sockets_on(1), 4);
    }

    #[test]
    fn leaving_from_a_middle_socket_keeps_indices_right() {
        let mut p = pool(2, 10);
        for n in 0..6 {
            p.join(asm(1, n)).unwrap();
        }
        // Empty the middle socket (groups 2 and 3), then leave the rest: every leave must hit
        // the socket that holds the group (the fake panics otherwise).
        p.leave(asm(1, 2)).unwrap();
        p.leave(asm(1, 3)).unwrap();
        assert_eq!(p.sockets_on(1), 2);
        for n in [0, 1, 4, 5] {
            assert!(p.leave(asm(1, n)).unwrap());
        }
        assert_eq!(p.sockets(), 0);
        // Room freed by leaves is reused before new sockets are opened.
        for n in 0..4 {
            p.join(asm(1, n)).unwrap();
        }
        assert_eq!(p.sockets_on(1), 2);
    }

    #[test]
    fn limits_fall_back_to_kernel_defaults() {
        let l = Limits::read();
        assert!(l.max_memberships > 0 && l.max_sources > 0);
        assert!(l.max_memberships_v6 > 0 && l.max_sources_v6 > 0);
        assert!(l.max_sources_v6 <= V6_SOURCES_PER_GROUP);
    }

    #[test]
    fn ipv6_groups_have_pools_of_their_own_sized_by_option_memory() {
        let limits = Limits {
            max_memberships: 20,
            max_sources: 10,
            max_memberships_v6: 131_072 / V6_BYTES_PER_GROUP,
            max_sources_v6: 10,
        };
        let fake = Fake {
            limits: Some(Limits {
                max_memberships: 512, // the fake applies one limit to both families
                ..limits
            }),
            ..Fake::default()
        };
        let mut p = Memberships::new(fake, limits);
        for n in 0..1000u16 {
            let v6 = Membership {
                ifindex: 3,
                group: Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 1, n).into(),
                source: None,
            };
            assert!(p.join(v6).unwrap());
        }
        p.join(asm(3, 1)).unwrap();
        // 1000 IPv6 groups at 512 per socket: 2 sockets; the IPv4 group on a third.
        assert_eq!(p.sockets_on(3), 3);
        assert_eq!(p.held().len(), 1001);
    }
}
