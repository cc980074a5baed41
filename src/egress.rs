//! Egress: how a worker sends. Each output has an [`OutputPath`] through its interface's
//! shared [`InterfaceSockets`]; each worker has one io_uring ([`Egress`]) that sends on them in
//! batches.
//!
//! A worker queues one send per (packet, output) pointing straight into the receive ring's
//! memory (no copy in user space), then submits the whole batch with one `io_uring_enter` and
//! reaps the completions before it hands the ring frames back to the kernel. Two kinds of send:
//!
//! - **frame** (`egress = "packet"`, the default): `IORING_OP_SENDMSG` on the interface's
//!   `AF_PACKET` socket with two iovecs, the headers [`frame::FrameTemplate`] wrote into this
//!   send's slot and the payload in the ring. No route lookup, no IP output, no dst churn per
//!   packet — the UDP path spent 45 % of the worker there (docs/BENCHMARKS.md);
//! - **datagram**: `IORING_OP_SENDMSG` of the payload on the interface's UDP socket, naming the
//!   output's group and port and carrying its TTL and TOS as `IP_TTL`/`IP_TOS` control
//!   messages (IPv6: `IPV6_HOPLIMIT`/`IPV6_TCLASS`), for `egress = "udp"`, for datagrams
//!   larger than the output MTU, for unicast and for non-Ethernet outputs.
//!
//! Sends carry `MSG_DONTWAIT`: a full socket buffer or queue completes at once with
//! `-EAGAIN`/`-ENOBUFS` (counted as `egress_full`) instead of parking the request, so every
//! send of a batch has completed when `flush` returns and memory never grows with backlog.
//!
//! Slot memory: slot `i` (headers, iovecs, address, control messages, msghdrs) belongs to the `i`-th send queued since the
//! last flush; the kernel reads it while that send is issued, inside `flush`, and it is reused
//! only after `flush` returned. The slots are one boxed slice that never moves or grows.
#![allow(unsafe_code)]

pub mod frame;
pub mod output;

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

use frame::MAX_HEADER_LEN;
pub use output::{Destination, InterfaceSockets, OutputPath, Route};

/// Room for two `int` control messages (`IP_TTL`, `IP_TOS`), aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// One send's headers and the kernel-facing descriptors that point at them, all set once in
/// [`Egress::new`]: `msg` (a frame) names `iov` = [`header`, payload]; `dgram` (an IPv4
/// datagram) names `addr`, `iov[1]` = [payload] and `control`; `dgram6` likewise with
/// `addr6` and `control6`. Per send only the headers and their length, the payload iovec, the
/// address and the two control values are written.
struct Slot {
    header: [u8; MAX_HEADER_LEN],
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
    addr: libc::sockaddr_in,
    control: Control,
    dgram: libc::msghdr,
    /// Offsets in `control` of the `IP_TTL` and `IP_TOS` values.
    ttl_at: usize,
    tos_at: usize,
    addr6: libc::sockaddr_in6,
    control6: Control,
    dgram6: libc::msghdr,
    /// Offsets in `control6` of the `IPV6_HOPLIMIT` and `IPV6_TCLASS` values.
    hops_at: usize,
    tclass_at: usize,
}

/// One worker's io_uring for sends.
pub struct Egress {
    ring: IoUring,
    queued: usize,
    slots: Box<[Slot]>,
    /// Flushes so far: the number of the batch being filled. Memory a send of this batch
    /// points into must not change until the count moves.
    flushes: u64,
}

impl Egress {
    /// A ring with `entries` submission slots. Must be created on the thread that uses it
    /// (`SINGLE_ISSUER` + `DEFER_TASKRUN`).
    pub fn new(entries: u32) -> io::Result<Egress> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        let slot = || Slot {
            header: [0; MAX_HEADER_LEN],
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2],
            // SAFETY: `msghdr` and `sockaddr_in` are plain data; all zeros is valid.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            addr: unsafe { std::mem::zeroed() },
            control: Control([0; 64]),
            // SAFETY: as above.
            dgram: unsafe { std::mem::zeroed() },
            ttl_at: 0,
            tos_at: 0,
            // SAFETY: as above.
            addr6: unsafe { std::mem::zeroed() },
            control6: Control([0; 64]),
            // SAFETY: as above.
            dgram6: unsafe { std::mem::zeroed() },
            hops_at: 0,
            tclass_at: 0,
        };
        let mut slots: Box<[Slot]> = (0..ring.params().sq_entries()).map(|_| slot()).collect();
        // The descriptors point into their own slot, which never moves (boxed slice): set once.
        for slot in slots.iter_mut() {
            slot.iov[0] = libc::iovec {
                iov_base: slot.header.as_mut_ptr().cast(),
                iov_len: 0, // per frame: the template's length
            };
            slot.msg.msg_iov = slot.iov.as_mut_ptr();
            slot.msg.msg_iovlen = 2;
            slot.addr.sin_family = libc::AF_INET as libc::sa_family_t;
            slot.dgram.msg_name = (&raw mut slot.addr).cast();
            slot.dgram.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            slot.dgram.msg_iov = (&raw mut slot.iov[1]).cast();
            slot.dgram.msg_iovlen = 1;
            let ip = [libc::IP_TTL, libc::IP_TOS];
            let (ttl_at, tos_at) =
                control_messages(&mut slot.dgram, &mut slot.control, libc::IPPROTO_IP, ip);
            slot.ttl_at = ttl_at;
            slot.tos_at = tos_at;
            slot.addr6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            slot.dgram6.msg_name = (&raw mut slot.addr6).cast();
            slot.dgram6.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
            slot.dgram6.msg_iov = (&raw mut slot.iov[1]).cast();
            slot.dgram6.msg_iovlen = 1;
            let ip6 = [libc::IPV6_HOPLIMIT, libc::IPV6_TCLASS];
            let (hops_at, tclass_at) = control_messages(
                &mut slot.dgram6,
                &mut slot.control6,
                libc::IPPROTO_IPV6,
                ip6,
            );
            slot.hops_at = hops_at;
            slot.tclass_at = tclass_at;
        }
        Ok(Egress {
            ring,
            queued: 0,
            flushes: 0,
            slots,
        })
    }

    /// Queues `payload` (from an input datagram with TOS byte `tos`) on `route`: a frame or a
    /// datagram (see the module docs). Returns `false`, queuing nothing, when the queue is
    /// full: flush and push again.
    ///
    /// # Safety
    /// `payload` must stay valid and unmodified, and the route's socket open, until the next
    /// [`Egress::flush`] returns: the kernel reads them during that call.
    #[inline]
    pub unsafe fn push_route(
        &mut self,
        route: Route<'_>,
        payload: &[u8],
        tos: u8,
        token: u64,
    ) -> bool {
        match route {
            // SAFETY: forwarded from the caller.
            Route::Datagram { fd, dest } => unsafe {
                self.push_datagram(fd, dest, payload, tos, token)
            },
            // SAFETY: forwarded from the caller.
            Route::Frame { fd, template } => unsafe {
                self.push_frame(fd, template, payload, tos, token)
            },
        }
    }

    /// Queues a frame: headers from `template` in this send's slot, then `payload`.
    ///
    /// # Safety
    /// As for [`Egress::push_route`].
    #[inline]
    unsafe fn push_frame(
        &mut self,
        fd: RawFd,
        template: &frame::FrameTemplate,
        payload: &[u8],
        tos: u8,
        token: u64,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(self.queued) else {
            return false;
        };
        slot.iov[0].iov_len = template.fill(&mut slot.header, payload.len(), tos);
        slot.iov[1] = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let entry = opcode::SendMsg::new(types::Fd(fd), &slot.msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(token);
        // SAFETY: the slot (headers, iovecs, msghdr) is not touched again before `flush` has
        // waited for this entry (module docs); `payload` and `fd` are the caller's promise.
        let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        self.queued += usize::from(pushed);
        pushed
    }

    /// Queues a datagram of `payload` to `dest` on the UDP socket `fd`; `token` comes back
    /// with its result. Returns `false`, queuing nothing, when the submission queue is full:
    /// flush and push again.
    ///
    /// # Safety
    /// As for [`Egress::push_route`].
    #[inline]
    unsafe fn push_datagram(
        &mut self,
        fd: RawFd,
        dest: &Destination,
        payload: &[u8],
        tos: u8,
        token: u64,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(self.queued) else {
            return false;
        };
        let ttl = libc::c_int::from(dest.ttl).to_ne_bytes();
        let tos = libc::c_int::from(frame::out_tos(dest.dscp, tos)).to_ne_bytes();
        let msg = match dest.addr {
            SocketAddr::V4(a) => {
                slot.addr.sin_port = a.port().to_be();
                slot.addr.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                slot.control.0[slot.ttl_at..slot.ttl_at + 4].copy_from_slice(&ttl);
                slot.control.0[slot.tos_at..slot.tos_at + 4].copy_from_slice(&tos);
                &raw const slot.dgram
            }
            SocketAddr::V6(a) => {
                slot.addr6.sin6_port = a.port().to_be();
                slot.addr6.sin6_addr.s6_addr = a.ip().octets();
                slot.addr6.sin6_scope_id = a.scope_id();
                slot.control6.0[slot.hops_at..slot.hops_at + 4].copy_from_slice(&ttl);
                slot.control6.0[slot.tclass_at..slot.tclass_at + 4].copy_from_slice(&tos);
                &raw const slot.dgram6
            }
        };
        slot.iov[1] = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let entry = opcode::SendMsg::new(types::Fd(fd), msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(token);
        // SAFETY: as in `push_frame`: the slot is not touched again before `flush` has waited
        // for this entry; `payload` and `fd` are the caller's promise.
        let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        self.queued += usize::from(pushed);
        pushed
    }

    /// Number of sends queued since the last flush.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Submits everything queued with one `io_uring_enter`, waits until all of it completed
    /// (with `MSG_DONTWAIT` that is inline) and reports each `(token, result)`.
    pub fn flush(&mut self, mut on_complete: impl FnMut(u64, i32)) -> io::Result<()> {
        let mut outstanding = self.queued;
        while outstanding > 0 {
            match self.ring.submit_and_wait(outstanding) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {} // CQ overflow: reap below
                Err(e) => return Err(e),
            }
            for cqe in self.ring.completion() {
                on_complete(cqe.user_data(), cqe.result());
                outstanding -= 1;
            }
        }
        self.queued = 0;
        self.flushes += 1;
        Ok(())
    }

    /// The batch being filled (see `flushes`).
    pub fn batch(&self) -> u64 {
        self.flushes
    }
}

/// Lays out two control messages of `level` and `kinds` (`int` each: `IP_TTL` and `IP_TOS`,
/// or their IPv6 twins) in `control` and points `msg` at them; returns the offsets of their
/// values in `control`.
fn control_messages(
    msg: &mut libc::msghdr,
    control: &mut Control,
    level: libc::c_int,
    kinds: [libc::c_int; 2],
) -> (usize, usize) {
    let int = std::mem::size_of::<libc::c_int>() as u32;
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe { (libc::CMSG_SPACE(int) as usize, libc::CMSG_LEN(int) as usize) };
    assert!(2 * space <= control.0.len(), "control buffer too small");
    let base = control.0.as_mut_ptr();
    msg.msg_control = base.cast();
    msg.msg_controllen = 2 * space;
    let mut at = [0usize; 2];
    // SAFETY: `msg_control` points at `control`, which holds both messages (asserted above)
    // and is aligned for `cmsghdr` (`repr(align(8))`); CMSG_FIRSTHDR/NXTHDR stay inside
    // `msg_controllen`, and CMSG_DATA points into the message it is given.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        for (i, kind) in kinds.into_iter().enumerate() {
            assert!(!cmsg.is_null());
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = kind;
            (*cmsg).cmsg_len = len as _;
            at[i] = libc::CMSG_DATA(cmsg).offset_from(base) as usize;
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (at[0], at[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use std::net::UdpSocket;
    use std::os::fd::{AsFd, AsRawFd};

    fn to(addr: SocketAddr, ttl: u8, dscp: Option<u8>) -> Destination {
        Destination { addr, ttl, dscp }
    }

    #[test]
    fn flush_reports_every_send_and_payloads_arrive_intact_with_their_options() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx_fd = socket2::SockRef::from(&rx);
        rx_fd.set_recv_tos(true).unwrap();
        sys::setsockopt(rx.as_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, &1i32).unwrap();
        // One unconnected socket sends for every destination, as an interface's socket does.
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut egress = Egress::new(8).unwrap();
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
        // Odd sends set DSCP i, even ones keep the input's TOS (here i << 2 | ECT(1)).
        let dests: Vec<Destination> = (0..20u8)
            .map(|i| to(rx.local_addr().unwrap(), 1 + i, (i % 2 == 1).then_some(i)))
            .collect();
        let in_tos = |i: u8| i << 2 | 1;
        let mut results = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let route = Route::Datagram {
                fd: tx.as_raw_fd(),
                dest: &dests[i],
            };
            let tos = in_tos(i as u8);
            // SAFETY: `payloads`, `dests` and `tx` outlive the flushes below.
            if !unsafe { egress.push_route(route, p, tos, i as u64) } {
                egress.flush(|t, r| results.push((t, r))).unwrap();
                // SAFETY: as above.
                assert!(unsafe { egress.push_route(route, p, tos, i as u64) });
            }
        }
        egress.flush(|t, r| results.push((t, r))).unwrap();
        assert_eq!(egress.queued(), 0);
        results.sort();
        let expect: Vec<(u64, i32)> = (0..20).map(|i| (i, 100 + i as i32)).collect();
        assert_eq!(results, expect);
        for (i, (p, dest)) in payloads.iter().zip(&dests).enumerate() {
            let (got, ttl, tos) = recv_with_ttl_tos(&rx);
            assert_eq!(got, *p);
            let want = frame::out_tos(dest.dscp, in_tos(i as u8));
            assert_eq!(
                (ttl, tos),
                (Some(dest.ttl), Some(want)),
                "per-send options, {i}"
            );
        }
    }

    /// One datagram and the `IP_TTL`/`IP_TOS` values it arrived with.
    fn recv_with_ttl_tos(rx: &UdpSocket) -> (Vec<u8>, Option<u8>, Option<u8>) {
        let mut buf = [0u8; 512];
        let mut control = Control([0; 64]);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain data; all zeros is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len();
        // SAFETY: `msg` points at live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut msg, 0) };
        assert!(n >= 0, "{}", io::Error::last_os_error());
        let (mut ttl, mut tos) = (None, None);
        // SAFETY: the kernel filled `msg_control` with well-formed messages up to
        // `msg_controllen`; the macros stay within it.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_TTL) => ttl = Some(*data.cast::<i32>() as u8),
                    (libc::IPPROTO_IP, libc::IP_TOS) => tos = Some(*data),
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        (buf[..n as usize].to_vec(), ttl, tos)
    }

    #[test]
    fn a_failed_send_is_a_result_not_an_error() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut egress = Egress::new(4).unwrap();
        let data = [1u8; 10];
        let dest = to("127.0.0.1:0".parse().unwrap(), 8, None); // port 0: EINVAL
        let route = Route::Datagram {
            fd: tx.as_raw_fd(),
            dest: &dest,
        };
        // SAFETY: `data`, `dest` and `tx` outlive the flush.
        assert!(unsafe { egress.push_route(route, &data, 0, 7) });
        let mut got = Vec::new();
        egress.flush(|t, r| got.push((t, r))).unwrap();
        assert_eq!(got, vec![(7, -libc::EINVAL)]);
    }
}
