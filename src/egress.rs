//! Egress: how a worker sends. Each output has an [`OutputSocket`]; each worker has one
//! io_uring ([`Egress`]) that sends on them in batches.
//!
//! A worker queues one send per (packet, output) pointing straight into the receive ring's
//! memory (no copy in user space), then submits the whole batch with one `io_uring_enter` and
//! reaps the completions before it hands the ring frames back to the kernel. Two kinds of send:
//!
//! - **frame** (`egress = "packet"`, the default): `IORING_OP_SENDMSG` on the output's
//!   `AF_PACKET` socket with two iovecs, the headers [`frame::FrameTemplate`] wrote into this
//!   send's slot and the payload in the ring. No route lookup, no IP output, no dst churn per
//!   packet — the UDP path spent 45 % of the worker there (docs/BENCHMARKS.md);
//! - **datagram**: `IORING_OP_SEND` of the payload on the output's connected UDP socket, for
//!   `egress = "udp"`, for datagrams larger than the output MTU and for non-Ethernet outputs.
//!
//! Sends carry `MSG_DONTWAIT`: a full socket buffer or queue completes at once with
//! `-EAGAIN`/`-ENOBUFS` (counted as `egress_full`) instead of parking the request, so every
//! send of a batch has completed when `flush` returns and memory never grows with backlog.
//!
//! Slot memory: slot `i` (headers, iovecs, msghdr) belongs to the `i`-th send queued since the
//! last flush; the kernel reads it while that send is issued, inside `flush`, and it is reused
//! only after `flush` returned. The slots are one boxed slice that never moves or grows.
#![allow(unsafe_code)]

pub mod frame;
pub mod output;

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

use frame::HEADER_LEN;
pub use output::{OutputSocket, Route};

/// A frame send's headers and the kernel-facing descriptors that point at them: `msg` names
/// `iov`, `iov[0]` is `header` (both set once in [`Egress::new`]); `iov[1]` is the payload.
struct Slot {
    header: [u8; HEADER_LEN],
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
}

/// One worker's io_uring for sends.
pub struct Egress {
    ring: IoUring,
    queued: usize,
    slots: Box<[Slot]>,
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
            header: [0; HEADER_LEN],
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2],
            // SAFETY: `msghdr` is plain data; all zeros (no name, no control) is valid.
            msg: unsafe { std::mem::zeroed() },
        };
        let mut slots: Box<[Slot]> = (0..ring.params().sq_entries()).map(|_| slot()).collect();
        // The descriptors point into their own slot, which never moves (boxed slice): set once.
        for slot in slots.iter_mut() {
            slot.iov[0] = libc::iovec {
                iov_base: slot.header.as_mut_ptr().cast(),
                iov_len: HEADER_LEN,
            };
            slot.msg.msg_iov = slot.iov.as_mut_ptr();
            slot.msg.msg_iovlen = 2;
        }
        Ok(Egress {
            ring,
            queued: 0,
            slots,
        })
    }

    /// Queues `payload` on `route`: a frame or a datagram (see the module docs). Returns
    /// `false`, queuing nothing, when the queue is full: flush and push again.
    ///
    /// # Safety
    /// `payload` must stay valid and unmodified, and the route's socket open, until the next
    /// [`Egress::flush`] returns: the kernel reads them during that call.
    #[inline]
    pub unsafe fn push_route(&mut self, route: Route<'_>, payload: &[u8], token: u64) -> bool {
        match route {
            // SAFETY: forwarded from the caller.
            Route::Datagram { fd } => unsafe { self.push(fd, payload, token) },
            // SAFETY: forwarded from the caller.
            Route::Frame { fd, template } => unsafe {
                self.push_frame(fd, template, payload, token)
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
        token: u64,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(self.queued) else {
            return false;
        };
        template.fill(&mut slot.header, payload.len());
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

    /// Queues a send of `buf` on `fd`; `token` comes back with its result. Returns `false`,
    /// queuing nothing, when the submission queue is full: flush and push again.
    ///
    /// # Safety
    /// `buf` must stay valid and unmodified, and `fd` open, until the next [`Egress::flush`]
    /// returns: the kernel reads them during that call.
    #[inline]
    pub unsafe fn push(&mut self, fd: RawFd, buf: &[u8], token: u64) -> bool {
        if self.queued == self.slots.len() {
            return false;
        }
        let entry = opcode::Send::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
            .flags(libc::MSG_DONTWAIT)
            .build()
            .user_data(token);
        // SAFETY: the caller keeps `buf` and `fd` alive until `flush`, which waits for every
        // queued entry to complete.
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn flush_reports_every_send_and_payloads_arrive_intact() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let mut egress = Egress::new(8).unwrap();
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
        let mut results = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            // SAFETY: `payloads` and `tx` outlive the flushes below.
            if !unsafe { egress.push(tx.as_raw_fd(), p, i as u64) } {
                egress.flush(|t, r| results.push((t, r))).unwrap();
                // SAFETY: as above.
                assert!(unsafe { egress.push(tx.as_raw_fd(), p, i as u64) });
            }
        }
        egress.flush(|t, r| results.push((t, r))).unwrap();
        assert_eq!(egress.queued(), 0);
        results.sort();
        let expect: Vec<(u64, i32)> = (0..20).map(|i| (i, 100 + i as i32)).collect();
        assert_eq!(results, expect);
        let mut buf = [0u8; 512];
        for p in &payloads {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &p[..]);
        }
    }

    #[test]
    fn a_failed_send_is_a_result_not_an_error() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap(); // not connected: send fails
        let mut egress = Egress::new(4).unwrap();
        let data = [1u8; 10];
        // SAFETY: `data` and `tx` outlive the flush.
        assert!(unsafe { egress.push(tx.as_raw_fd(), &data, 7) });
        let mut got = Vec::new();
        egress.flush(|t, r| got.push((t, r))).unwrap();
        assert_eq!(got, vec![(7, -libc::EDESTADDRREQ)]);
    }
}
