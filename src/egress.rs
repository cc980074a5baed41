//! Egress: per-output UDP sockets, and one io_uring per worker that sends on them in batches.
//!
//! A worker queues one `IORING_OP_SEND` per (packet, output) straight out of the receive ring's
//! memory (no copy), then submits the whole batch with one `io_uring_enter` and reaps the
//! completions before it hands the ring frames back to the kernel. Sends carry `MSG_DONTWAIT`:
//! a full socket buffer or queue completes at once with `-EAGAIN`/`-ENOBUFS` (counted as
//! `egress_full`) instead of parking the request, so every send of a batch has completed when
//! `flush` returns and memory never grows with backlog. Output sockets are `connect()`ed to
//! their group and port, so a send carries no address (the kernel still routes each
//! multicast send: `udp_sendmsg` does not use a connected socket's cached multicast route).
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types, IoUring};

use crate::config;
use crate::sys;

/// Send buffer per output socket. Large enough to absorb a burst on a real NIC whose TX
/// completions lag; veth frees the buffer at once.
const SNDBUF: usize = 4 << 20;

/// A UDP socket that sends to one output's group and port through one interface.
#[derive(Debug)]
pub struct OutputSocket {
    fd: OwnedFd,
}

impl OutputSocket {
    /// Opens and connects the socket for `output` on interface `ifindex`.
    pub fn open(output: &config::Output, ifindex: u32) -> io::Result<OutputSocket> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), None)?;
        let mreqn = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr { s_addr: 0 },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as i32,
        };
        sys::setsockopt(
            socket.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreqn,
        )?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_multicast_all_v4(false)?;
        socket.set_multicast_ttl_v4(u32::from(output.ttl))?;
        if socket.set_send_buffer_size(SNDBUF).is_err() {
            // Not fatal: the kernel default still works, with less burst headroom.
            log::debug!("SO_SNDBUF {SNDBUF} refused on output {}", output.interface);
        }
        let dest = SocketAddrV4::new(output.group, output.port);
        socket.connect(&dest.into())?;
        Ok(OutputSocket { fd: socket.into() })
    }

    /// An unconnected UDP socket, for table tests that need a real fd but no network.
    #[cfg(test)]
    pub fn unconnected_for_tests() -> io::Result<OutputSocket> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        Ok(OutputSocket { fd: socket.into() })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One worker's io_uring for sends.
pub struct Egress {
    ring: IoUring,
    queued: usize,
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
        Ok(Egress { ring, queued: 0 })
    }

    /// Queues a send of `buf` on `fd`; `token` comes back with its result. Returns `false`,
    /// queuing nothing, when the submission queue is full: flush and push again.
    ///
    /// # Safety
    /// `buf` must stay valid and unmodified, and `fd` open, until the next [`Egress::flush`]
    /// returns: the kernel reads them during that call.
    #[inline]
    pub unsafe fn push(&mut self, fd: RawFd, buf: &[u8], token: u64) -> bool {
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
