//! Output sockets, shared per interface: every output on an interface sends through that
//! interface's [`InterfaceSockets`] — one UDP socket always, and with `egress = "packet"` one
//! `AF_PACKET` socket — so descriptors grow with output interfaces, not with outputs. What
//! differs between outputs travels with each send instead: a frame's headers come from the
//! output's own [`FrameTemplate`], a datagram names its group and port and carries its TTL
//! and TOS (the input's, or the output's DSCP) as control messages ([`Destination`]).
//! A unicast output (`address = …`) always sends datagrams: the kernel routes them out of the
//! interface (`IP_UNICAST_IF`) and resolves the receiver's MAC.
//!
//! Why a UDP socket even for frames: it is what fixes the source address and port. It is
//! connected once to a link-local group (224.0.0.1:9) out of its interface, so the kernel picks
//! the address its own UDP output would use there and reserves an ephemeral port; every frame
//! from the interface carries that pair. The connection is never used to send (each datagram
//! names its destination) and, as no datagram ever comes from 224.0.0.1:9, nothing queues on
//! the socket's receive side. The UDP socket remains the path for what a raw frame cannot
//! carry — a datagram larger than the output MTU (the kernel fragments it) and outputs on
//! interfaces that are not Ethernet (tun, GRE, loopback).
//!
//! The packet socket is opened with protocol 0, so it is never hooked into the receive path and
//! never receives anything; it only sends. It keeps the qdisc (no `PACKET_QDISC_BYPASS`), so
//! traffic control on the output still applies and a NIC's busy queue is buffered rather than
//! dropped.
//!
//! Lifetime: an output holds its interface's sockets through an `Arc`, and a table holds its
//! outputs, so sockets close only when the last table that names them is released — after
//! every worker has finished the batch that may still be sending on them.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::frame::FrameTemplate;
use crate::config::{self, EgressMode};
use crate::links::LinkFacts;
use crate::sys;

/// Send buffer per socket. Large enough to absorb a burst on a real NIC whose TX completions
/// lag; veth frees the buffer at once. Forced past `wmem_max` when the capability allows, as
/// all outputs of an interface now share it.
const SNDBUF: usize = 4 << 20;

/// What the UDP socket connects to, to learn (and reserve) its source address and port.
const PROBE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 9);
/// [`PROBE`] for IPv6: a group of global scope, so that source address selection (RFC 6724
/// rule 2, matching scope) picks the interface's global address when it has one — routers
/// never forward a datagram from a link-local source off its link — and its link-local
/// address otherwise (enough for link-scoped groups such as ff02::fb).
const PROBE_V6: Ipv6Addr = Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, 1);

/// `IPV6_TRANSPARENT` and `IPV6_UNICAST_IF` (`linux/in6.h`), absent from some libc versions.
const IPV6_TRANSPARENT: libc::c_int = 75;
const IPV6_UNICAST_IF: libc::c_int = 76;
/// `IPV6_MULTICAST_ALL` (Linux 4.20).
const IPV6_MULTICAST_ALL: libc::c_int = 29;

/// How one datagram leaves through an output.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// As an Ethernet frame on the packet socket `fd`, headers from `template`.
    Frame {
        fd: RawFd,
        template: &'a FrameTemplate,
    },
    /// As a datagram to `dest` on the interface's UDP socket `fd`.
    Datagram { fd: RawFd, dest: &'a Destination },
}

/// Where a datagram goes and the per-send options that make it the output's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// Group (or unicast receiver) and port, of the interface socket's family.
    pub addr: SocketAddr,
    /// `IP_TTL` (IPv6: `IPV6_HOPLIMIT`) for each send (the TTL the output sets).
    pub ttl: u8,
    /// The output's DSCP, or `None` to send with each input datagram's TOS byte
    /// ([`super::frame::out_tos`]).
    pub dscp: Option<u8>,
}

/// The sockets of one output interface, shared by all its outputs and all workers.
#[derive(Debug)]
pub struct InterfaceSockets {
    udp: OwnedFd,
    packet: Option<OwnedFd>,
    /// The UDP socket's own address and port: what every frame carries as its source.
    src: SocketAddr,
    /// The facts the sockets were opened for; a table reuses them only while these hold.
    /// `None`: not tied to an interface (routed unicast outputs).
    link: Option<LinkFacts>,
    mode: EgressMode,
    /// The source address the sockets were bound to (`None`: the interface's own).
    bound: Option<IpAddr>,
    /// IPv6 sockets (else IPv4): they serve the outputs of that family only.
    v6: bool,
}

impl InterfaceSockets {
    /// Opens the sockets of family IPv6 (`v6`) or IPv4 for the interface `link` describes,
    /// sending from `source` (bound with `IP_TRANSPARENT`, so it need not be an address of
    /// this host) or, with `None`, from the address the kernel picks on the interface. With
    /// [`EgressMode::Packet`] on an interface that is not Ethernet, only the UDP socket is
    /// opened (logged at debug level).
    pub fn open(
        name: &str,
        link: &LinkFacts,
        mode: EgressMode,
        v6: bool,
        source: Option<IpAddr>,
    ) -> io::Result<InterfaceSockets> {
        let (udp, src) = open_udp(name, Some(link.ifindex), v6, source)?;
        let packet = match mode {
            EgressMode::Packet if link.link_type == sys::ARPHRD_ETHER => {
                Some(open_packet(name, link.ifindex)?)
            }
            EgressMode::Packet => {
                log::debug!(
                    "output interface {name}: link type {} is not Ethernet; sending through UDP",
                    link.link_type
                );
                None
            }
            EgressMode::Udp => None,
        };
        Ok(InterfaceSockets {
            udp,
            packet,
            src,
            link: Some(link.clone()),
            mode,
            bound: source,
            v6,
        })
    }

    /// The sockets of routed unicast outputs (no `interface`): one UDP socket tied to no
    /// interface, so the kernel's routing table picks the way out per destination and its
    /// neighbour table the MAC. Sends from `source` if given (as for [`InterfaceSockets::open`]).
    pub fn open_routed(
        mode: EgressMode,
        v6: bool,
        source: Option<IpAddr>,
    ) -> io::Result<InterfaceSockets> {
        let (udp, src) = open_udp(crate::config::ROUTED, None, v6, source)?;
        Ok(InterfaceSockets {
            udp,
            packet: None,
            src,
            link: None,
            mode,
            bound: source,
            v6,
        })
    }

    /// An unconnected UDP socket and no packet socket, for table tests that need real
    /// descriptors but no network.
    #[cfg(test)]
    pub fn unconnected_for_tests(link: &LinkFacts, mode: EgressMode, v6: bool) -> io::Result<Self> {
        let domain = if v6 {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
        let src = if v6 {
            SocketAddr::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into(), 40000)
        } else {
            SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).into(), 40000)
        };
        Ok(InterfaceSockets {
            udp: socket.into(),
            packet: None,
            src,
            link: Some(link.clone()),
            mode,
            bound: None,
            v6,
        })
    }

    /// Whether these sockets serve an interface as `link` describes it, in `mode`, for the
    /// family `v6`, from `source`.
    pub fn serves(
        &self,
        link: Option<&LinkFacts>,
        mode: EgressMode,
        v6: bool,
        source: Option<IpAddr>,
    ) -> bool {
        self.link.as_ref() == link && self.mode == mode && self.v6 == v6 && self.bound == source
    }

    /// The egress mode the sockets were opened for.
    pub fn mode(&self) -> EgressMode {
        self.mode
    }

    /// The path for `output` through these sockets.
    pub fn output(self: &Arc<Self>, output: &config::Output) -> OutputPath {
        debug_assert_eq!(
            output.group.is_ipv6(),
            self.v6,
            "an output uses its family's sockets"
        );
        let addr = match output.group {
            // A link-local unicast receiver is on this interface's link.
            IpAddr::V6(a) => {
                let scope = self.link.as_ref().map_or(0, |l| l.ifindex);
                SocketAddr::V6(SocketAddrV6::new(a, output.port, 0, scope))
            }
            IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, output.port)),
        };
        // A unicast receiver's MAC is the neighbour table's business: through the UDP socket.
        let packet = self.packet.as_ref().filter(|_| !output.unicast);
        let template = packet.zip(self.link.as_ref()).map(|(_, link)| {
            FrameTemplate::new(link.mac, self.src, addr, output.ttl, output.dscp, link.mtu)
                .with_runs(link.cuts_runs)
        });
        OutputPath {
            sockets: self.clone(),
            template,
            dest: Destination {
                addr,
                ttl: output.ttl,
                dscp: output.dscp,
            },
        }
    }
}

/// How one output sends: its interface's shared sockets, its own frame headers and its own
/// destination and options.
#[derive(Debug)]
pub struct OutputPath {
    sockets: Arc<InterfaceSockets>,
    /// `Some` when the interface has a packet socket.
    template: Option<FrameTemplate>,
    dest: Destination,
}

impl OutputPath {
    /// The interface sockets this output shares.
    pub fn sockets(&self) -> &Arc<InterfaceSockets> {
        &self.sockets
    }

    /// Whether frames go through `AF_PACKET` ("packet") or every send through UDP ("udp").
    pub fn path_name(&self) -> &'static str {
        match self.template {
            Some(_) => "packet",
            None => "udp",
        }
    }

    /// How a datagram with a `payload_len`-byte payload leaves.
    #[inline]
    pub fn route(&self, payload_len: usize) -> Route<'_> {
        match (&self.template, &self.sockets.packet) {
            (Some(template), Some(fd)) if template.fits(payload_len) => Route::Frame {
                fd: fd.as_raw_fd(),
                template,
            },
            _ => Route::Datagram {
                fd: self.sockets.udp.as_raw_fd(),
                dest: &self.dest,
            },
        }
    }
}

/// The interface's UDP socket of family IPv6 (`v6`) or IPv4, bound to `source` if given,
/// connected to [`PROBE`] (IPv6: [`PROBE_V6`]) out of it, and its own address. Without an
/// interface (`ifindex` `None`, routed unicast outputs) it is tied to none and not
/// connected: the route is looked up per send, and its address is the bound one, if any.
fn open_udp(
    name: &str,
    ifindex: Option<u32>,
    v6: bool,
    source: Option<IpAddr>,
) -> io::Result<(OwnedFd, SocketAddr)> {
    use socket2::{Domain, Socket, Type};
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM.cloexec(), None)?;
    let fd = socket.as_fd();
    if v6 {
        socket.set_only_v6(true)?;
    }
    if let Some(source) = source {
        // Not necessarily an address of this host: the point is to send as the receivers'
        // side expects. IP_TRANSPARENT (CAP_NET_RAW, which mcr keeps) both allows the bind
        // and lets the route lookup accept the foreign source (FLOWI_FLAG_ANYSRC), which
        // IP_FREEBIND alone does not: connect() then fails with ENETUNREACH. IPv6 likewise.
        if v6 {
            sys::setsockopt(fd, libc::SOL_IPV6, IPV6_TRANSPARENT, &1i32)?;
        } else {
            sys::setsockopt(fd, libc::SOL_IP, libc::IP_TRANSPARENT, &1i32)?;
        }
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    let Some(ifindex) = ifindex else {
        set_sndbuf(fd, name);
        let any: IpAddr = if v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let src = socket.local_addr()?.as_socket();
        return Ok((socket.into(), src.unwrap_or(SocketAddr::new(any, 0))));
    };
    // Unicast outputs leave through this interface too, whatever the routing table prefers
    // (the route lookup is made with it as the output interface). IPv4 takes the index in
    // network byte order, and so does IPv6 (`ntohl` in `do_ipv6_setsockopt`).
    if v6 {
        socket.set_multicast_if_v6(ifindex)?;
        sys::setsockopt(fd, libc::IPPROTO_IPV6, IPV6_UNICAST_IF, &ifindex.to_be())?;
        socket.set_multicast_loop_v6(false)?;
        sys::setsockopt(fd, libc::IPPROTO_IPV6, IPV6_MULTICAST_ALL, &0i32)?;
    } else {
        sys::set_multicast_if(fd, ifindex)?;
        sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_UNICAST_IF, &ifindex.to_be())?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_multicast_all_v4(false)?;
    }
    set_sndbuf(fd, name);
    let probe = if v6 {
        SocketAddr::V6(SocketAddrV6::new(PROBE_V6, PROBE.port(), 0, ifindex))
    } else {
        SocketAddr::V4(PROBE)
    };
    socket.connect(&probe.into())?;
    let src = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
    // The frames carry the address itself; a link-local one's scope is the interface's.
    let src = match src {
        SocketAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0, 0)),
        a => a,
    };
    Ok((socket.into(), src))
}

fn set_sndbuf(fd: std::os::fd::BorrowedFd<'_>, name: &str) {
    let size = SNDBUF as libc::c_int;
    let forced = crate::privilege::with_net_admin(|| {
        sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &size)
    });
    if forced.is_err() && sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &size).is_err() {
        // Not fatal: the kernel default still works, with less burst headroom.
        log::debug!("SO_SNDBUF {SNDBUF} refused on output interface {name}");
    }
}

/// A send-only packet socket bound to `ifindex`, expecting a virtio header on every frame.
fn open_packet(name: &str, ifindex: u32) -> io::Result<OwnedFd> {
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
    set_sndbuf(fd.as_fd(), name);
    sys::bind_packet(fd.as_fd(), ifindex, 0)?;
    Ok(fd)
}
