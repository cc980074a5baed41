//! Ingress: one AF_PACKET socket with a mapped TPACKET_V2 receive ring per (worker, input
//! interface), all sockets of an interface in one `PACKET_FANOUT_HASH` group (with one
//! worker: no group).
//!
//! Why TPACKET_V2: the socket signals readiness per frame, so a worker that drains every ready
//! frame before sleeping wakes per packet when traffic is light (tens of µs added); under load
//! it coalesces by waiting `batch_delay` between rounds (`coalesce`). TPACKET_V3 hands over whole blocks and, at low rates, holds a packet
//! until its block times out (≈4 ms by default, ≈0.3 ms at 1 ms) — see docs/ARCHITECTURE.md.
//!
//! Why `FANOUT_HASH`: the hash covers addresses and ports, so a flow always lands on the same
//! worker and is never reordered. Why the socket filter and `PACKET_IGNORE_OUTGOING`: the
//! ring copies only multicast UDP (IPv4 to 224.0.0.0/4, IPv6 to ff00::/8, see [`filter`]),
//! and never a frame this host transmits — mcr can
//! never read its own output back. The filter is attached before the socket is bound, so no
//! unfiltered frame is ever queued.
//!
//! Ring memory: frame `i` starts at `i * frame_size` in the mapping. A frame whose status has
//! `TP_STATUS_USER` belongs to user space until [`Ring::release`] hands it back; the kernel
//! never writes to it meanwhile, which is what lets egress send straight out of it.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

pub mod filter;

/// `tpacket_versions::TPACKET_V2`.
const TPACKET_V2: i32 = 1;

/// Receive ring geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpec {
    /// Bytes per frame: a power of two holding the header, padding and the largest frame.
    pub frame_size: u32,
    /// Frames in the ring.
    pub frame_count: u32,
}

/// Where the kernel puts the MAC header in a V2 frame, rounded up generously:
/// TPACKET_ALIGN(tpacket2_hdr + sockaddr_ll + 16) is 80 for the network header.
const FRAME_OVERHEAD: u32 = 128;
/// Each ring block holds a whole number of frames and is at most this large.
const MAX_BLOCK: u32 = 1 << 17;
/// Ethernet header plus one 802.1Q tag.
const L2_HEADER: u32 = 18;

impl RingSpec {
    /// Frames sized for `mtu`, `frame_count` of them (rounded up to a whole block).
    pub fn for_mtu(mtu: u32, frame_count: u32) -> RingSpec {
        let frame_size = (mtu.max(576) + L2_HEADER + FRAME_OVERHEAD).next_power_of_two();
        let per_block = (MAX_BLOCK / frame_size).max(1);
        let frame_count = frame_count.max(per_block).div_ceil(per_block) * per_block;
        RingSpec {
            frame_size,
            frame_count,
        }
    }

    /// As [`RingSpec::for_mtu`], but with no more frames than whole blocks of `bytes` hold
    /// (possibly none).
    pub fn within(mtu: u32, frame_count: u32, bytes: u64) -> RingSpec {
        let full = RingSpec::for_mtu(mtu, frame_count);
        let per_block = u64::from(full.block_size() / full.frame_size);
        let fits = bytes / u64::from(full.block_size()) * per_block;
        RingSpec {
            frame_count: full
                .frame_count
                .min(u32::try_from(fits).unwrap_or(u32::MAX)),
            ..full
        }
    }

    /// The largest interface MTU whose frames (with one VLAN tag) fit a slot whole.
    pub fn max_mtu(&self) -> u32 {
        self.frame_size - L2_HEADER - FRAME_OVERHEAD
    }

    fn block_size(&self) -> u32 {
        self.frame_size
            .max(MAX_BLOCK.min(self.frame_size * (MAX_BLOCK / self.frame_size)))
    }

    pub fn bytes(&self) -> usize {
        self.frame_size as usize * self.frame_count as usize
    }
}

/// A frame handed to user space.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'r> {
    /// The captured bytes, starting at the Ethernet header.
    pub data: &'r [u8],
    /// The frame's length on the wire; larger than `data.len()` when truncated.
    pub wire_len: u32,
    /// The kernel stripped an 802.1Q tag with a VLAN ID (the frame belongs to a VLAN, not
    /// this interface). A priority tag (VLAN ID 0) does not count: the kernel treats such a
    /// frame as untagged, and so does mcr.
    pub vlan_tagged: bool,
    /// The ring's flags vouch for the checksums: the NIC verified them
    /// (`TP_STATUS_CSUM_VALID`) or this host generated the packet and offload fills them in
    /// (`TP_STATUS_CSUMNOTREADY`). Otherwise nobody has checked them yet.
    pub checksum_trusted: bool,
    /// When the kernel took the frame in (`CLOCK_REALTIME`, software timestamp).
    pub sec: u32,
    pub nsec: u32,
}

impl Frame<'_> {
    /// The arrival time in nanoseconds.
    #[inline]
    pub fn arrival_ns(&self) -> u64 {
        u64::from(self.sec) * 1_000_000_000 + u64::from(self.nsec)
    }
}

/// Kernel counters of one socket since the previous read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    pub packets: u32,
    pub drops: u32,
}

/// A bound, mapped receive ring on one interface.
pub struct Ring {
    fd: OwnedFd,
    map: NonNull<u8>,
    spec: RingSpec,
    head: usize,
    ifindex: u32,
}

// SAFETY: the mapping is owned exclusively by this `Ring` (nothing else holds its address), so
// moving the ring to another thread moves sole access with it.
unsafe impl Send for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.fd.as_raw_fd())
            .field("ifindex", &self.ifindex)
            .field("spec", &self.spec)
            .finish()
    }
}

/// A fanout group per interface; the first socket gets a kernel-assigned unique id, later
/// sockets join it. A relay with one worker has one socket per interface and no group: the
/// kernel then skips the per-packet flow hash (a flow dissection and a siphash, ~3 % of the
/// sending CPU at the single flow's maximum) that only chooses among members.
#[derive(Debug, Clone, Copy)]
pub struct Fanout {
    id: Option<u16>,
    alone: bool,
}

impl Fanout {
    /// The group of an interface's rings, one per worker.
    pub fn for_workers(workers: usize) -> Fanout {
        Fanout {
            id: None,
            alone: workers == 1,
        }
    }
}

impl Ring {
    /// Opens a ring on `ifindex` and joins (or founds) `fanout`.
    /// `filter` is the interface's socket filter ([`filter::program`]).
    pub fn open(
        ifindex: u32,
        spec: RingSpec,
        fanout: &mut Fanout,
        filter: &[libc::sock_filter],
    ) -> io::Result<Ring> {
        // Protocol 0: the socket receives nothing until it is bound, after the filter is set.
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let b = fd.as_fd();
        sys::setsockopt(b, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V2)?;
        sys::setsockopt(b, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32)?;
        attach_filter(fd.as_fd(), filter)?;
        let req = libc::tpacket_req {
            tp_block_size: spec.block_size(),
            tp_block_nr: (spec.bytes() / spec.block_size() as usize) as u32,
            tp_frame_size: spec.frame_size,
            tp_frame_nr: spec.frame_count,
        };
        sys::setsockopt(b, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        // SAFETY: maps the ring the kernel just allocated for this socket, exactly its size;
        // the result is checked before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                spec.bytes(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring = Ring {
            fd,
            map: NonNull::new(map.cast()).expect("mmap never returns null on success"),
            spec,
            head: 0,
            ifindex,
        };
        sys::bind_packet(ring.fd.as_fd(), ifindex, libc::ETH_P_ALL as u16)?;
        ring.join_fanout(fanout)?;
        Ok(ring)
    }

    fn join_fanout(&self, fanout: &mut Fanout) -> io::Result<()> {
        if fanout.alone {
            return Ok(());
        }
        let b = self.fd.as_fd();
        let mode = libc::PACKET_FANOUT_HASH;
        match fanout.id {
            Some(id) => {
                let arg = u32::from(id) | (mode << 16);
                sys::setsockopt(b, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
            }
            None => {
                let arg = (mode | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16;
                sys::setsockopt(b, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
                let got: u32 = sys::getsockopt(b, libc::SOL_PACKET, libc::PACKET_FANOUT)?;
                fanout.id = Some((got & 0xffff) as u16);
                Ok(())
            }
        }
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Replaces the socket filter (the kernel swaps it atomically: every frame meets the
    /// old program or the new one).
    pub fn set_filter(&self, filter: &[libc::sock_filter]) -> io::Result<()> {
        attach_filter(self.fd.as_fd(), filter)
    }

    /// Reads and clears the socket's pending error (`ENETDOWN` after its interface went down,
    /// `ENODEV` after it was deleted); 0 when there was none.
    pub fn take_error(&self) -> io::Result<i32> {
        sys::take_socket_error(self.fd.as_fd())
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn frame_ptr(&self, index: usize) -> *mut u8 {
        // SAFETY: `index < frame_count`, so the offset stays inside the mapping.
        unsafe { self.map.as_ptr().add(index * self.spec.frame_size as usize) }
    }

    fn status(&self, index: usize) -> &AtomicU32 {
        // SAFETY: every frame starts with a 16-byte-aligned `tpacket2_hdr` whose first field is
        // the `u32` status word the kernel and user space hand over with; the mapping lives as
        // long as `self`.
        unsafe { &*(self.frame_ptr(index) as *const AtomicU32) }
    }

    /// The `n`-th frame after the head, if the kernel has filled it.
    #[inline]
    pub fn frame(&self, n: usize) -> Option<Frame<'_>> {
        let count = self.spec.frame_count as usize;
        if n >= count {
            return None;
        }
        let index = (self.head + n) % count;
        let status = self.status(index).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the frame is user-owned (status checked with acquire ordering, so the
        // kernel's writes are visible) and its header is a `tpacket2_hdr` at the frame start.
        let hdr = unsafe { &*(self.frame_ptr(index) as *const libc::tpacket2_hdr) };
        let start = hdr.tp_mac as usize;
        let len = hdr.tp_snaplen as usize;
        let data = if start.saturating_add(len) <= self.spec.frame_size as usize {
            // SAFETY: the range lies inside this user-owned frame, which the kernel does not
            // write until `release`, and `release` needs `&mut self`, ending this borrow.
            unsafe { std::slice::from_raw_parts(self.frame_ptr(index).add(start), len) }
        } else {
            &[] // a header pointing outside its frame: parsed as malformed
        };
        Some(Frame {
            data,
            wire_len: hdr.tp_len,
            vlan_tagged: status & libc::TP_STATUS_VLAN_VALID != 0 && hdr.tp_vlan_tci & 0x0fff != 0,
            checksum_trusted: status & (libc::TP_STATUS_CSUM_VALID | libc::TP_STATUS_CSUMNOTREADY)
                != 0,
            sec: hdr.tp_sec,
            nsec: hdr.tp_nsec,
        })
    }

    /// Hands the first `n` frames after the head back to the kernel.
    #[inline]
    pub fn release(&mut self, n: usize) {
        let count = self.spec.frame_count as usize;
        for _ in 0..n.min(count) {
            self.status(self.head)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.head = (self.head + 1) % count;
        }
    }

    /// Packets and drops the kernel counted since the previous call (`PACKET_STATISTICS`).
    pub fn take_stats(&self) -> io::Result<RingStats> {
        let s: libc::tpacket_stats =
            sys::getsockopt(self.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS)?;
        Ok(RingStats {
            packets: s.tp_packets,
            drops: s.tp_drops,
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `open`; no frame borrow outlives `self`.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.spec.bytes());
        }
    }
}

/// Attaches `program` (see [`filter::program`]): multicast UDP of either family and the
/// interface's unicast inputs, never our own frames.
fn attach_filter(fd: std::os::fd::BorrowedFd<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program during the call; `program` outlives it.
    sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_geometry_fits_frames_and_blocks() {
        let s = RingSpec::for_mtu(1500, 4096);
        assert_eq!(s.frame_size, 2048);
        assert_eq!(s.frame_count, 4096);
        assert_eq!(s.block_size() % s.frame_size, 0);
        assert_eq!(s.bytes() % s.block_size() as usize, 0);
        assert!(
            s.max_mtu() >= 1500 && RingSpec::for_mtu(s.max_mtu() + 1, 4096).max_mtu() > s.max_mtu()
        );
        let half = RingSpec::within(1500, 4096, 4 << 20);
        assert_eq!((half.frame_count, half.bytes()), (2048, 4 << 20));
        let floored = RingSpec::within(1500, 4096, (4 << 20) - 1);
        assert_eq!(
            floored.frame_count % 64,
            0,
            "whole 128 KiB blocks of 64 frames"
        );
        assert!(floored.bytes() < 4 << 20);
        assert_eq!(
            RingSpec::within(1500, 4096, 1 << 40),
            s,
            "never more than asked"
        );
        assert_eq!(RingSpec::within(1500, 4096, 1000).frame_count, 0);
        let jumbo = RingSpec::for_mtu(9000, 100);
        assert_eq!(jumbo.frame_size, 16384);
        assert_eq!(
            jumbo.frame_count % (jumbo.block_size() / jumbo.frame_size),
            0
        );
        assert!(jumbo.frame_count >= 100);
    }
}
