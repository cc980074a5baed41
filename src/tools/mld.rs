//! The sink's IPv6 (MLD) group memberships, held by helper sockets that fill up in turn.
//!
//! IPv4 joins go through [`crate::membership`], whose pools respect the per-socket counts
//! `net.ipv4.igmp_max_memberships` and `igmp_max_msf`. IPv6 has no count per socket; instead
//! every join is charged to the socket's option memory (`sock_kmalloc`, capped by
//! `net.core.optmem_max`, per network namespace): on Linux 6.18 (x86-64) 56 bytes per group, and
//! a source-specific join adds a 184-byte source list (room for 10 sources). At the current
//! default `optmem_max` of 131072 one socket therefore holds 2340 any-source or 546
//! source-specific groups before the kernel answers `ENOMEM` (at the older default of 20480:
//! 365 and 85). Sources per group on one socket are capped by the host-wide
//! `net.ipv6.mld_max_msf` (64; `ENOBUFS` past it), which one source per group never reaches.
//!
//! Rather than predicting capacity from kernel struct sizes, a socket takes joins until the
//! kernel says it is full (`ENOMEM` or `ENOBUFS`), and that join moves to a fresh socket.
//! Invariants:
//! - every membership is held by exactly one socket, and only the last socket has room;
//! - a fresh socket that refuses a join is a real error, never a reason to open another;
//! - helper sockets are never bound, so they never receive a datagram, and have
//!   `IPV6_MULTICAST_ALL` off; dropping [`Joins`] closes them, which leaves every group.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, OwnedFd};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::sys;

/// One IPv6 membership: a group on an interface, optionally from one source only (SSM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Join {
    pub ifindex: u32,
    pub group: Ipv6Addr,
    pub source: Option<Ipv6Addr>,
}

/// The kernel side of a join, a seam so that the spreading is testable without root.
pub(crate) trait Backend {
    type Socket;
    fn open(&mut self) -> io::Result<Self::Socket>;
    fn join(&mut self, socket: &Self::Socket, j: &Join) -> io::Result<()>;
    /// Drops whatever a join refused for lack of room left on `socket` (best effort).
    fn forget(&mut self, socket: &Self::Socket, j: &Join);
}

/// Memberships held for the length of a sink run.
pub(crate) struct Joins<B: Backend = Kernel> {
    backend: B,
    sockets: Vec<B::Socket>,
}

impl Joins<Kernel> {
    pub(crate) fn kernel() -> Self {
        Joins {
            backend: Kernel,
            sockets: Vec::new(),
        }
    }
}

impl<B: Backend> Joins<B> {
    /// Joins on the last helper socket, or on a new one when that one is full.
    pub(crate) fn join(&mut self, j: Join) -> io::Result<()> {
        if let Some(last) = self.sockets.last() {
            match self.backend.join(last, &j) {
                Ok(()) => return Ok(()),
                Err(e) if is_full(&e) => self.backend.forget(last, &j),
                Err(e) => return Err(e),
            }
        }
        let socket = self.backend.open()?;
        self.backend.join(&socket, &j)?;
        self.sockets.push(socket);
        Ok(())
    }

    /// Helper sockets open.
    pub(crate) fn sockets(&self) -> usize {
        self.sockets.len()
    }
}

/// The answers that mean "this socket has no room left", not "this join is wrong".
fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::ENOBUFS))
}

/// Real helper sockets, joined with the RFC 3678 options by interface index.
pub(crate) struct Kernel;

impl Backend for Kernel {
    type Socket = OwnedFd;

    fn open(&mut self) -> io::Result<OwnedFd> {
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, None)?;
        socket.set_multicast_all_v6(false)?;
        Ok(socket.into())
    }

    fn join(&mut self, socket: &OwnedFd, j: &Join) -> io::Result<()> {
        let fd = socket.as_fd();
        match j.source {
            None => {
                let req = libc::group_req {
                    gr_interface: j.ifindex,
                    gr_group: storage(j.group),
                };
                sys::setsockopt(fd, libc::IPPROTO_IPV6, libc::MCAST_JOIN_GROUP, &req)
            }
            Some(source) => {
                let req = libc::group_source_req {
                    gsr_interface: j.ifindex,
                    gsr_group: storage(j.group),
                    gsr_source: storage(source),
                };
                sys::setsockopt(fd, libc::IPPROTO_IPV6, libc::MCAST_JOIN_SOURCE_GROUP, &req)
            }
        }
    }

    fn forget(&mut self, socket: &OwnedFd, j: &Join) {
        // A source-specific join is two steps in the kernel (the group in INCLUDE mode, then
        // the source); when only the second ran out of room, the first stays behind.
        if j.source.is_some() {
            let req = libc::group_req {
                gr_interface: j.ifindex,
                gr_group: storage(j.group),
            };
            let _ = sys::setsockopt(
                socket.as_fd(),
                libc::IPPROTO_IPV6,
                libc::MCAST_LEAVE_GROUP,
                &req,
            );
        }
    }
}

/// An IPv6 `sockaddr_storage` for `group_req` and `group_source_req`.
fn storage(addr: Ipv6Addr) -> libc::sockaddr_storage {
    SockAddr::from(SocketAddrV6::new(addr, 0, 0, 0)).as_storage()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sockets that take `room` joins each, then answer like the kernel's option memory.
    struct Fake {
        room: usize,
        per_socket: Vec<usize>,
        forgotten: usize,
        refuse: Option<i32>,
    }

    impl Fake {
        fn new(room: usize) -> Fake {
            Fake {
                room,
                per_socket: Vec::new(),
                forgotten: 0,
                refuse: None,
            }
        }
    }

    impl Backend for Fake {
        type Socket = usize;
        fn open(&mut self) -> io::Result<usize> {
            self.per_socket.push(0);
            Ok(self.per_socket.len() - 1)
        }
        fn join(&mut self, socket: &usize, _: &Join) -> io::Result<()> {
            if let Some(errno) = self.refuse {
                return Err(io::Error::from_raw_os_error(errno));
            }
            let held = &mut self.per_socket[*socket];
            if *held == self.room {
                return Err(io::Error::from_raw_os_error(libc::ENOMEM));
            }
            *held += 1;
            Ok(())
        }
        fn forget(&mut self, _: &usize, _: &Join) {
            self.forgotten += 1;
        }
    }

    fn join(i: u16) -> Join {
        Join {
            ifindex: 2,
            group: Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x77, i),
            source: Some(Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1)),
        }
    }

    #[test]
    fn a_full_socket_hands_the_join_to_a_fresh_one() {
        let mut j = Joins {
            backend: Fake::new(4),
            sockets: Vec::new(),
        };
        for i in 0..10 {
            j.join(join(i)).unwrap();
        }
        assert_eq!(j.sockets(), 3);
        assert_eq!(j.backend.per_socket, [4, 4, 2]);
        assert_eq!(j.backend.forgotten, 2, "each refused join is cleaned up");
    }

    #[test]
    fn a_fresh_socket_that_refuses_is_an_error_not_another_socket() {
        let mut j = Joins {
            backend: Fake::new(0),
            sockets: Vec::new(),
        };
        let e = j.join(join(0)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
        assert_eq!(j.sockets(), 0);
        assert_eq!(
            j.backend.per_socket.len(),
            1,
            "one socket tried, then closed"
        );
    }

    #[test]
    fn other_errors_are_not_a_full_socket() {
        let mut j = Joins {
            backend: Fake::new(4),
            sockets: Vec::new(),
        };
        j.join(join(0)).unwrap();
        j.backend.refuse = Some(libc::ENODEV);
        let e = j.join(join(1)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        assert_eq!((j.sockets(), j.backend.forgotten), (1, 0));
    }

    #[test]
    fn the_storage_is_an_ipv6_socket_address() {
        let s = storage(Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 1, 1));
        assert_eq!(i32::from(s.ss_family), libc::AF_INET6);
    }
}
