//! One output's sockets: a connected UDP socket always, and with `egress = "packet"` an
//! `AF_PACKET` socket bound to the output interface plus the [`FrameTemplate`] for its frames.
//!
//! Why both: the UDP socket is what fixes the source address and port (the kernel picks them
//! at `connect()` and keeps the port reserved, so the frames mcr builds carry exactly what the
//! kernel's own UDP output would), and it remains the path for what a raw frame cannot carry —
//! a datagram larger than the output MTU (the kernel fragments it) and outputs on interfaces
//! that are not Ethernet (tun, GRE, loopback).
//!
//! The packet socket is opened with protocol 0, so it is never hooked into the receive path and
//! never receives anything; it only sends. It keeps the qdisc (no `PACKET_QDISC_BYPASS`), so
//! traffic control on the output still applies and a NIC's busy queue is buffered rather than
//! dropped.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::frame::FrameTemplate;
use crate::config::{self, EgressMode};
use crate::sys;

/// Send buffer per output socket. Large enough to absorb a burst on a real NIC whose TX
/// completions lag; veth frees the buffer at once.
const SNDBUF: usize = 4 << 20;

/// How one datagram leaves through an output.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// As an Ethernet frame on the packet socket `fd`, headers from `template`.
    Frame {
        fd: RawFd,
        template: &'a FrameTemplate,
    },
    /// As a datagram on the connected UDP socket `fd`.
    Datagram { fd: RawFd },
}

/// The sockets that send to one output's group and port through one interface.
#[derive(Debug)]
pub struct OutputSocket {
    udp: OwnedFd,
    packet: Option<PacketPath>,
    mode: EgressMode,
}

#[derive(Debug)]
struct PacketPath {
    fd: OwnedFd,
    template: FrameTemplate,
}

impl OutputSocket {
    /// Opens the sockets for `output` on interface `ifindex`. With [`EgressMode::Packet`] on an
    /// interface that is not Ethernet, only the UDP socket is opened (logged at debug level).
    pub fn open(
        output: &config::Output,
        ifindex: u32,
        mode: EgressMode,
    ) -> io::Result<OutputSocket> {
        let udp = open_udp(output, ifindex)?;
        let packet = match mode {
            EgressMode::Udp => None,
            EgressMode::Packet => open_packet(output, ifindex, &udp)?,
        };
        Ok(OutputSocket { udp, packet, mode })
    }

    /// An unconnected UDP socket, for table tests that need a real fd but no network.
    #[cfg(test)]
    pub fn unconnected_for_tests(mode: EgressMode) -> io::Result<OutputSocket> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        Ok(OutputSocket {
            udp: socket.into(),
            packet: None,
            mode,
        })
    }

    /// The egress mode this output was opened for.
    pub fn mode(&self) -> EgressMode {
        self.mode
    }

    /// Whether frames go through `AF_PACKET` ("packet") or every send through UDP ("udp").
    pub fn path_name(&self) -> &'static str {
        match self.packet {
            Some(_) => "packet",
            None => "udp",
        }
    }

    /// How a datagram with a `payload_len`-byte payload leaves.
    #[inline]
    pub fn route(&self, payload_len: usize) -> Route<'_> {
        match &self.packet {
            Some(p) if p.template.fits(payload_len) => Route::Frame {
                fd: p.fd.as_raw_fd(),
                template: &p.template,
            },
            _ => Route::Datagram {
                fd: self.udp.as_raw_fd(),
            },
        }
    }
}

fn open_udp(output: &config::Output, ifindex: u32) -> io::Result<OwnedFd> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), None)?;
    sys::set_multicast_if(socket.as_fd(), ifindex)?;
    socket.set_multicast_loop_v4(false)?;
    socket.set_multicast_all_v4(false)?;
    socket.set_multicast_ttl_v4(u32::from(output.ttl))?;
    set_sndbuf(&socket, output);
    let dest = SocketAddrV4::new(output.group, output.port);
    socket.connect(&dest.into())?;
    Ok(socket.into())
}

fn set_sndbuf(socket: &socket2::Socket, output: &config::Output) {
    if socket.set_send_buffer_size(SNDBUF).is_err() {
        // Not fatal: the kernel default still works, with less burst headroom.
        log::debug!("SO_SNDBUF {SNDBUF} refused on output {}", output.interface);
    }
}

/// The packet socket and frame template, or `None` when the interface is not Ethernet.
fn open_packet(
    output: &config::Output,
    ifindex: u32,
    udp: &OwnedFd,
) -> io::Result<Option<PacketPath>> {
    let name = output.interface.as_str();
    let (link, mac) = sys::hwaddr(name)?;
    if link != sys::ARPHRD_ETHER {
        log::debug!("output {output}: link type {link} is not Ethernet; sending through UDP");
        return Ok(None);
    }
    let mtu = sys::mtu(name)?;
    let local = socket2::SockRef::from(udp).local_addr()?;
    let src = local
        .as_socket_ipv4()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
    let template = FrameTemplate::new(
        mac,
        src,
        SocketAddrV4::new(output.group, output.port),
        output.ttl,
        mtu,
    );
    // Protocol 0: bound, but never registered for receiving.
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Every frame starts with a virtio_net_hdr asking for the UDP checksum (see `frame`).
    sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1i32)?;
    set_sndbuf(&socket2::SockRef::from(&fd), output);
    sys::bind_packet(fd.as_fd(), ifindex, 0)?;
    Ok(Some(PacketPath { fd, template }))
}
