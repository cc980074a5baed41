//! The UDP ports of unicast inputs, held by mcr.
//!
//! A unicast input (`address = …`) receives datagrams addressed to this host. mcr reads them
//! from its ring like any other, but the host's IP stack sees them too: with no socket on
//! the port the kernel would answer every one with ICMP port unreachable (a sender may then
//! stop sending), and any process could bind the port and compete for the feed. So for every
//! unicast input that does not ask for `local_delivery`, mcr binds a UDP socket to the
//! address and port and never reads it:
//! - no ICMP port unreachable, whatever else is configured (the ingress drop, when it is on,
//!   keeps the datagrams from reaching even this socket; when it is off, they fill its small
//!   receive buffer and the kernel drops the rest, silently);
//! - a port another process already holds is refused with a clear error (start or reload),
//!   never shared by accident; `local_delivery = true` on the flow leaves the port to that
//!   process and relays a copy of what it receives;
//! - an address that is not this host's is refused the same way.
//!
//! The control thread owns the sockets and syncs them with each table, all or nothing: new
//! ports are bound before the table is published, ports no longer used are closed after.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Socket, Type};

/// A unicast input's port: address, UDP port, and the input interface's index (the scope of
/// an IPv6 link-local address).
pub type Port = (IpAddr, u16, u32);

/// Why a port could not be held.
#[derive(Debug, thiserror::Error)]
#[error("cannot hold UDP port {port} on {address} for a unicast input: {source}{hint}")]
pub struct PortError {
    pub address: IpAddr,
    pub port: u16,
    pub source: io::Error,
    hint: &'static str,
}

/// The held ports.
#[derive(Debug, Default)]
pub struct Ports {
    held: BTreeMap<Port, Socket>,
}

impl Ports {
    /// Holds exactly `want`: binds the new ports (all of them, or none if one fails) and
    /// returns the ports no longer wanted, still open, for [`Ports::release`] after the
    /// table that stops using them is published.
    ///
    /// # Errors
    /// The first port that cannot be bound; nothing was changed.
    pub fn bind_new(&mut self, want: &BTreeSet<Port>) -> Result<Vec<Port>, PortError> {
        let new = want.iter().filter(|p| !self.held.contains_key(p));
        // Collected before any is held: a failure drops (closes) those bound so far.
        let bound = new
            .map(|&port| Ok((port, bind(port)?)))
            .collect::<Result<Vec<_>, PortError>>()?;
        self.held.extend(bound);
        Ok(self
            .held
            .keys()
            .filter(|p| !want.contains(p))
            .copied()
            .collect())
    }

    /// Closes `ports` (from [`Ports::bind_new`]).
    pub fn release(&mut self, ports: &[Port]) {
        for p in ports {
            self.held.remove(p);
        }
    }

    /// Number of ports held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A UDP socket bound to `port`, with the smallest receive buffer: it is never read.
fn bind((address, port, ifindex): Port) -> Result<Socket, PortError> {
    let fail = |source: io::Error| {
        let hint = match source.raw_os_error() {
            Some(libc::EADDRINUSE) => {
                "; another process holds it (`ss -ulpn` shows which): stop it, or set local_delivery = true on the flow to leave the port to it and relay a copy"
            }
            Some(libc::EADDRNOTAVAIL) => {
                "; it is not an address of this host: add it to the input interface, or correct the input's address"
            }
            _ => "",
        };
        PortError {
            address,
            port,
            source,
            hint,
        }
    };
    let (domain, addr) = match address {
        IpAddr::V4(_) => (Domain::IPV4, SocketAddr::new(address, port)),
        IpAddr::V6(a) => {
            let scope = if a.is_unicast_link_local() {
                ifindex
            } else {
                0
            };
            (
                Domain::IPV6,
                SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope)),
            )
        }
    };
    let socket = Socket::new(domain, Type::DGRAM.cloexec(), None).map_err(fail)?;
    if address.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    // The kernel rounds this up to its minimum; the buffer only ever holds what the ingress
    // drop did not stop.
    let _ = socket.set_recv_buffer_size(1);
    socket.bind(&addr.into()).map_err(fail)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(p: u16) -> Port {
        (IpAddr::from([127, 0, 0, 1]), p, 1)
    }

    #[test]
    fn binds_all_or_nothing_and_releases_what_is_no_longer_wanted() {
        let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = free.local_addr().unwrap().port();
        drop(free);
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = taken.local_addr().unwrap().port();
        let mut ports = Ports::default();
        let e = ports
            .bind_new(&[port(a), port(b)].into_iter().collect())
            .unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::EADDRINUSE));
        assert!(e.to_string().contains("another process holds it"), "{e}");
        assert!(ports.is_empty(), "nothing held after a failure");
        let gone = ports.bind_new(&[port(a)].into_iter().collect()).unwrap();
        assert!(gone.is_empty() && ports.len() == 1);
        assert!(
            std::net::UdpSocket::bind(("127.0.0.1", a)).is_err(),
            "the port is held"
        );
        let gone = ports.bind_new(&BTreeSet::new()).unwrap();
        assert_eq!(gone, [port(a)]);
        assert_eq!(ports.len(), 1, "held until released");
        ports.release(&gone);
        assert!(ports.is_empty());
        assert!(std::net::UdpSocket::bind(("127.0.0.1", a)).is_ok());
    }

    #[test]
    fn an_address_of_another_host_is_refused_with_what_to_do() {
        let e = bind((IpAddr::from([192, 0, 2, 77]), 6000, 1)).unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::EADDRNOTAVAIL));
        assert!(e.to_string().contains("not an address of this host"), "{e}");
    }
}
