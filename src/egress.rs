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
//! Until `flush`, a queued frame's slot may still grow into a run (more iovecs, new
//! lengths): the ring has no `SQPOLL` thread, so the kernel reads no entry before
//! `io_uring_enter`.
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
    /// `[headers, payload]`; a frame run appends its further payloads.
    iov: [libc::iovec; 1 + MAX_RUN],
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
    /// The send's token (a run's: its first datagram's).
    token: u64,
    /// Payload bytes this send carries (a run: all its datagrams').
    payload: u32,
    /// Datagrams this send carries (more than one: a frame run).
    packets: u16,
    /// A frame run's segment length and TOS; `segment` 0 once it takes no more.
    segment: u16,
    tos: u8,
}

/// Most datagrams one frame send carries as a run (UDP segmentation offload): the kernel's
/// `UDP_MAX_SEGMENTS` was 64 before Linux 6.16 raised it, and a ring batch is no larger.
pub const MAX_RUN: usize = 64;

/// Entries of the open-run table: direct-mapped by template address, so finding an
/// output's run is O(1) however many outputs a batch sends to; two outputs that collide only
/// lose runs, never order.
const OPEN_RUNS: usize = 64;

/// The latest frame send of one (socket, template) in batch `batch`: where the next payload
/// of that output may join. An entry of an earlier batch is empty.
#[derive(Clone, Copy)]
struct OpenRun {
    template: *const frame::FrameTemplate,
    fd: RawFd,
    slot: u32,
    batch: u64,
}

/// The open-run entry of `template`.
#[inline]
fn open_run_index(template: *const frame::FrameTemplate) -> usize {
    ((template as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

/// One worker's io_uring for sends.
pub struct Egress {
    ring: IoUring,
    queued: usize,
    slots: Box<[Slot]>,
    /// Whether consecutive frames of an output are sent as one run (see [`runs_supported`]).
    runs: bool,
    open: [OpenRun; OPEN_RUNS],
    /// Flushes so far: the number of the batch being filled. Memory a send of this batch
    /// points into must not change until the count moves.
    flushes: u64,
    /// Sends submitted so far (a run counts once).
    sends: u64,
}

impl Egress {
    /// A ring with `entries` submission slots. Must be created on the thread that uses it
    /// (`SINGLE_ISSUER` + `DEFER_TASKRUN`).
    pub fn new(entries: u32, runs: bool) -> io::Result<Egress> {
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
            }; 1 + MAX_RUN],
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
            token: 0,
            payload: 0,
            packets: 0,
            segment: 0,
            tos: 0,
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
        let closed = OpenRun {
            template: std::ptr::null(),
            fd: -1,
            slot: 0,
            batch: u64::MAX,
        };
        Ok(Egress {
            ring,
            queued: 0,
            flushes: 0,
            sends: 0,
            slots,
            runs,
            open: [closed; OPEN_RUNS],
        })
    }

    /// Queues `payload` (from an input datagram with TOS byte `tos`) on `route`: a frame or a
    /// datagram (see the module docs). Returns `false`, queuing nothing, when the queue is
    /// full: flush and push again. `token` comes back with the result. A frame may join a run
    /// (see [`Egress::join_run`]), so a frame's token must hold its payload length in its low
    /// 16 bits: a run reports its first token with the run's total there.
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

    /// Queues a frame: headers from `template` in this send's slot, then `payload` — or, when
    /// the output's latest frame in this batch is a run that can take it, appends `payload`
    /// to that run (see [`Egress::join_run`]).
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
        let key: *const frame::FrameTemplate = template;
        let open = self.open[open_run_index(key)];
        let runs = self.runs && template.runs();
        let same = open.batch == self.flushes && open.template == key && open.fd == fd;
        if runs && same && self.join_run(open.slot as usize, template, payload, tos) {
            return true;
        }
        let at = self.queued;
        let Some(slot) = self.slots.get_mut(at) else {
            return false;
        };
        slot.iov[0].iov_len = template.fill(&mut slot.header, payload.len(), tos);
        slot.iov[1] = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        slot.msg.msg_iovlen = 2;
        slot.token = token;
        slot.payload = payload.len() as u32;
        slot.packets = 1;
        slot.segment = if payload.is_empty() {
            0
        } else {
            payload.len() as u16
        };
        slot.tos = tos;
        let entry = opcode::SendMsg::new(types::Fd(fd), &slot.msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(at as u64);
        // SAFETY: the slot (headers, iovecs, msghdr) is not touched again before `flush` has
        // waited for this entry, except by `join_run`, which only appends to it before the
        // batch is submitted (module docs); `payload` and `fd` are the caller's promise.
        let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        if pushed {
            self.queued += 1;
            if runs {
                self.open[open_run_index(key)] = OpenRun {
                    template: key,
                    fd,
                    slot: at as u32,
                    batch: self.flushes,
                };
            }
        }
        pushed
    }

    /// Appends `payload` to the run queued in slot `at` if it can carry it: same TOS, a
    /// payload no longer than the run's segments (a shorter one ends the run, as UDP
    /// segmentation allows only the last segment to be short), room for one more. The run's
    /// headers are rewritten for its new length; it is submitted with the batch.
    #[inline]
    fn join_run(
        &mut self,
        at: usize,
        template: &frame::FrameTemplate,
        payload: &[u8],
        tos: u8,
    ) -> bool {
        let slot = &mut self.slots[at];
        let segment = usize::from(slot.segment);
        let packets = usize::from(slot.packets);
        let total = slot.payload as usize;
        if segment == 0
            || slot.tos != tos
            || payload.len() > segment
            || payload.is_empty()
            || packets == MAX_RUN
            || total + payload.len() > frame::MAX_RUN_PAYLOAD
        {
            return false;
        }
        let total = total + payload.len();
        slot.iov[1 + packets] = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        slot.msg.msg_iovlen = 2 + packets;
        slot.packets += 1;
        slot.payload = total as u32;
        if payload.len() < segment {
            slot.segment = 0;
        }
        slot.iov[0].iov_len = template.fill_run(&mut slot.header, segment, total, tos);
        true
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
        slot.token = token;
        slot.payload = payload.len() as u32;
        slot.packets = 1;
        let entry = opcode::SendMsg::new(types::Fd(fd), msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(self.queued as u64);
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
    /// (with `MSG_DONTWAIT` that is inline) and reports each send as `(token, result,
    /// datagrams)`: a run reports its first token with the payload length of the whole run,
    /// and one result for all its datagrams.
    pub fn flush(&mut self, mut on_complete: impl FnMut(u64, i32, u16)) -> io::Result<()> {
        let mut outstanding = self.queued;
        while outstanding > 0 {
            match self.ring.submit_and_wait(outstanding) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {} // CQ overflow: reap below
                Err(e) => return Err(e),
            }
            for cqe in self.ring.completion() {
                let slot = &self.slots[cqe.user_data() as usize];
                // A frame's token holds its payload length in its low 16 bits (`push_route`):
                // a run's report carries the whole run's, which fits (≤ MAX_RUN_PAYLOAD).
                let token = if slot.packets > 1 {
                    slot.token & !0xffff | u64::from(slot.payload)
                } else {
                    slot.token
                };
                on_complete(token, cqe.result(), slot.packets);
                outstanding -= 1;
            }
        }
        self.sends += self.queued as u64;
        self.queued = 0;
        self.flushes += 1;
        Ok(())
    }

    /// Sends submitted so far; a run of datagrams sent as one counts once.
    pub fn sends(&self) -> u64 {
        self.sends
    }

    /// The batch being filled (see `flushes`).
    pub fn batch(&self) -> u64 {
        self.flushes
    }
}

/// Whether this kernel accepts a run of UDP datagrams in one packet-socket frame
/// (`VIRTIO_NET_HDR_GSO_UDP_L4` in the virtio header, Linux 6.2 and later). On older kernels
/// every datagram is its own send, as before runs existed.
pub fn runs_supported() -> bool {
    let Ok(release) = nix::sys::utsname::uname() else {
        return false;
    };
    kernel_at_least(&release.release().to_string_lossy(), (6, 2))
}

/// Whether a kernel release string ("6.18.44-fc", "6.1.0-28-amd64") is `want` or later.
fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
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
        let mut egress = Egress::new(8, true).unwrap();
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
                egress.flush(|t, r, _| results.push((t, r))).unwrap();
                // SAFETY: as above.
                assert!(unsafe { egress.push_route(route, p, tos, i as u64) });
            }
        }
        egress.flush(|t, r, _| results.push((t, r))).unwrap();
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

    /// Two output templates whose open-run entries differ (so the test does not depend on
    /// where the allocator put them).
    fn two_templates() -> (Box<frame::FrameTemplate>, Box<frame::FrameTemplate>) {
        let make = |port: u16| {
            Box::new(
                frame::FrameTemplate::new(
                    [2, 0, 0, 0, 0, 1],
                    "10.2.0.1:40000".parse().unwrap(),
                    SocketAddr::new("239.9.9.9".parse().unwrap(), port),
                    8,
                    None,
                    1500,
                )
                .with_runs(true),
            )
        };
        let a = make(5000);
        let mut kept = Vec::new();
        loop {
            let b = make(5001);
            if open_run_index(&*a) != open_run_index(&*b) {
                return (a, b);
            }
            kept.push(b); // keep it allocated so the next one lands elsewhere
        }
    }

    /// Queues `(template, payload length, tos)` frames and returns each send as
    /// (first token, payload bytes, datagrams). The socket is a UDP one, so every send fails
    /// (no destination), which is enough to see how the frames were grouped.
    fn grouping(runs: bool, frames: &[(&frame::FrameTemplate, usize, u8)]) -> Vec<(u64, u64, u16)> {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut egress = Egress::new(128, runs).unwrap();
        let payload = vec![7u8; 1472];
        let mut sends = Vec::new();
        for (i, (template, len, tos)) in frames.iter().enumerate() {
            let route = Route::Frame {
                fd: tx.as_raw_fd(),
                template,
            };
            let token = (i as u64) << 32 | *len as u64;
            // SAFETY: `payload` and `tx` outlive the flush below.
            assert!(unsafe { egress.push_route(route, &payload[..*len], *tos, token) });
        }
        egress
            .flush(|t, r, n| {
                assert!(r < 0, "a UDP socket cannot send a frame");
                sends.push((t >> 32, t & 0xffff, n));
            })
            .unwrap();
        assert_eq!(egress.sends(), sends.len() as u64);
        sends.sort();
        sends
    }

    #[test]
    fn consecutive_frames_of_an_output_join_one_run_until_they_cannot() {
        let (a, b) = two_templates();
        let (a, b) = (&*a, &*b);
        // Five alike, a shorter one ends the run, the next starts another.
        let f = [(a, 1000, 0); 5];
        let mut frames = f.to_vec();
        frames.extend([(a, 300, 0), (a, 1000, 0), (a, 1000, 0)]);
        assert_eq!(grouping(true, &frames), [(0, 5300, 6), (6, 2000, 2)]);
        // A longer one, or another TOS, starts a new run (which a shorter one may end).
        let frames = [
            (a, 500, 0),
            (a, 500, 0),
            (a, 600, 0),
            (a, 500, 0),
            (a, 500, 184),
        ];
        assert_eq!(
            grouping(true, &frames),
            [(0, 1000, 2), (2, 1100, 2), (4, 500, 1)]
        );
        // Two outputs interleaved: one run each, in order.
        let frames = [
            (a, 100, 0),
            (b, 100, 0),
            (a, 100, 0),
            (b, 100, 0),
            (a, 100, 0),
        ];
        assert_eq!(grouping(true, &frames), [(0, 300, 3), (1, 200, 2)]);
        // Empty payloads never join.
        assert_eq!(grouping(true, &[(a, 0, 0), (a, 0, 0)]).len(), 2);
        // Runs off, or not allowed on the output's link: one send per frame.
        assert_eq!(grouping(false, &[(a, 100, 0); 3]).len(), 3);
        let c = a.clone().with_runs(false);
        assert_eq!(grouping(true, &[(&c, 100, 0); 3]).len(), 3);
    }

    #[test]
    fn a_run_stops_at_max_run_datagrams_and_at_the_largest_ip_packet() {
        let (a, _) = two_templates();
        let a = &*a;
        let sends = grouping(true, &[(a, 100, 0); 70]);
        assert_eq!(sends, [(0, 6400, 64), (64, 600, 6)]);
        // 1400-byte payloads: 46 fit in 65,507 bytes.
        let sends = grouping(true, &[(a, 1400, 0); 50]);
        assert_eq!(sends, [(0, 46 * 1400, 46), (46, 4 * 1400, 4)]);
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v857", (6, 2)));
        assert!(kernel_at_least("6.2.0", (6, 2)));
        assert!(!kernel_at_least("6.1.0-28-amd64", (6, 2)));
        assert!(!kernel_at_least("5.19.17", (6, 2)));
        assert!(kernel_at_least("10.0", (6, 2)));
        assert!(!kernel_at_least("garbage", (6, 2)));
    }

    #[test]
    fn a_failed_send_is_a_result_not_an_error() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut egress = Egress::new(4, true).unwrap();
        let data = [1u8; 10];
        let dest = to("127.0.0.1:0".parse().unwrap(), 8, None); // port 0: EINVAL
        let route = Route::Datagram {
            fd: tx.as_raw_fd(),
            dest: &dest,
        };
        // SAFETY: `data`, `dest` and `tx` outlive the flush.
        assert!(unsafe { egress.push_route(route, &data, 0, 7) });
        let mut got = Vec::new();
        egress.flush(|t, r, _| got.push((t, r))).unwrap();
        assert_eq!(got, vec![(7, -libc::EINVAL)]);
    }
}
