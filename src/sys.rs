//! Raw socket options the standard library, `socket2` and `nix` do not cover.
//!
//! This is one of the few modules allowed `unsafe`: each function hands the kernel a pointer to a
//! plain-old-data value and its exact size, nothing else. Callers pass `#[repr(C)]` structs from
//! `libc` (or integers); the kernel copies bytes in or out and never keeps the pointer.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub fn setsockopt<T: Copy>(fd: BorrowedFd<'_>, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference to a `Copy` (plain data) value of exactly
    // `size_of::<T>()` bytes; the kernel only reads that many bytes during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt` into a zero-initialised `T`; returns the value and the length the kernel wrote.
pub fn getsockopt<T: Copy>(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is writable storage of `len` bytes; the kernel writes at most `len` bytes
    // and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the storage was zero-initialised and every `T` used here (`libc` C structs and
    // integers) is valid for any bit pattern, including all zeros and partial writes.
    Ok(unsafe { value.assume_init() })
}

/// `addr` (port 0) as a `sockaddr_storage`, as the RFC 3678 group options take it.
pub fn sockaddr_storage(addr: std::net::IpAddr) -> libc::sockaddr_storage {
    // SAFETY: `sockaddr_storage` is plain data; all zeros is a valid (AF_UNSPEC) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let at = (&mut storage as *mut libc::sockaddr_storage).cast::<u8>();
    match addr {
        std::net::IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(a).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and suitably aligned for `sockaddr_in`;
            // this is the documented way to fill it.
            unsafe { std::ptr::write(at.cast::<libc::sockaddr_in>(), sin) };
        }
        std::net::IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for `sockaddr_in6`.
            unsafe { std::ptr::write(at.cast::<libc::sockaddr_in6>(), sin6) };
        }
    }
    storage
}

/// Interface index by name, in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(io::Error::from)
}

/// `ioctl(request)` on an `ifreq` naming interface `name`; returns the filled-in `ifreq`.
fn ifreq_ioctl(name: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: `ifreq` is plain data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: the SIOCGIF* requests used here read the NUL-terminated name and write one union
    // member inside `req`, which lives for the whole call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request as _, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// MTU of an interface by name (`SIOCGIFMTU`).
pub fn mtu(name: &str) -> io::Result<u32> {
    let req = ifreq_ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: after a successful SIOCGIFMTU the union holds `ifru_mtu`.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Sends the socket's multicast out of interface `ifindex` (`IP_MULTICAST_IF` with an
/// `ip_mreqn` by index: works on an interface without an IPv4 address).
pub fn set_multicast_if(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)
}

/// Interface flags (`SIOCGIFFLAGS`): `IFF_UP`, `IFF_RUNNING`, ...
pub fn ifflags(name: &str) -> io::Result<i32> {
    let req = ifreq_ioctl(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: after a successful SIOCGIFFLAGS the union holds `ifru_flags`.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }))
}

/// A socket's pending error (`SO_ERROR`), which reading clears; 0 when there is none.
pub fn take_socket_error(fd: BorrowedFd<'_>) -> io::Result<i32> {
    getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

/// `ARPHRD_ETHER`: the link type whose frames start with an Ethernet header.
pub const ARPHRD_ETHER: u16 = 1;

/// Link type (`ARPHRD_*`) and hardware address of an interface (`SIOCGIFHWADDR`); the address
/// is the first six bytes, meaningful for Ethernet-like links.
pub fn hwaddr(name: &str) -> io::Result<(u16, [u8; 6])> {
    let req = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: after a successful SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(&sa.sa_data) {
        *dst = src as u8;
    }
    Ok((sa.sa_family, mac))
}

/// Binds an `AF_PACKET` socket to interface `ifindex` for `protocol` (an `ETH_P_*` value in
/// host order; 0 binds for sending only: the socket is never hooked into the receive path).
pub fn bind_packet(fd: BorrowedFd<'_>, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: `sockaddr_ll` is plain data; all zeros is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid `sockaddr_ll` of the size passed, alive for the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `poll(2)` on raw descriptors the caller keeps open; returns the number ready (0 on timeout
/// or signal).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structs for the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINTR) {
        Ok(0)
    } else {
        Err(e)
    }
}
