//! Links: what the host's interfaces look like now, and a watch that says when that changes.
//!
//! A flow names interfaces; the table is compiled against the [`LinkFacts`] of each name at
//! that moment (index, admin state, MTU, link type and MAC, IPv4 addresses). A name without
//! facts does not exist: its flows and outputs wait for it.
//!
//! [`Watch`] subscribes to rtnetlink's link and IPv4-address groups and reports *that*
//! something changed, never *what*: the control thread re-reads the facts of every
//! interface the config names and recompiles only when they differ from those its table was
//! built with. That makes a lost event harmless — netlink(7) drops messages when the socket's
//! buffer overflows and says so with `ENOBUFS`; the answer is the same full re-read — and
//! keeps a single orchestrator: this module never touches relay state.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::IfName;
use crate::sys;

/// What the relay depends on of one interface. Two equal facts mean nothing that matters to a
/// ring, a membership, a socket or a frame template has changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    pub ifindex: u32,
    /// Administratively up (`IFF_UP`). A down interface cannot be sent on: its outputs wait.
    pub up: bool,
    pub mtu: u32,
    /// Link type (`ARPHRD_*`) and hardware address.
    pub link_type: u16,
    pub mac: [u8; 6],
    /// IPv4 addresses, sorted; the output sockets' source address comes from them.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses that finished duplicate address detection, sorted; IPv6 outputs'
    /// source address comes from them.
    pub ipv6: Vec<Ipv6Addr>,
    /// Whether a run of datagrams sent as one frame leaves as separate datagrams
    /// ([`crate::ethtool::cuts_runs`]); outputs on a link where it would not send one by one.
    pub cuts_runs: bool,
}

/// The facts of some interfaces by name; a name mapped to `None` does not exist.
pub type LinkView = BTreeMap<IfName, Option<LinkFacts>>;

/// Reads the facts of each of `names` in the calling thread's network namespace.
pub fn read<'a>(names: impl IntoIterator<Item = &'a IfName>) -> LinkView {
    let ipv6 = ipv6_addresses();
    let mut addrs: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    if let Ok(list) = nix::ifaddrs::getifaddrs() {
        for ifa in list {
            if let Some(a) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
                addrs.entry(ifa.interface_name).or_default().push(a.ip());
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let mut ipv4 = addrs.get(name.as_str()).cloned().unwrap_or_default();
            ipv4.sort();
            let mut facts = read_one(name.as_str(), ipv4).ok();
            if let Some(f) = facts.as_mut() {
                f.ipv6 = ipv6.get(name.as_str()).cloned().unwrap_or_default();
                f.ipv6.sort();
            }
            (name.clone(), facts)
        })
        .collect()
}

/// `IFA_F_DADFAILED`, `IFA_F_TENTATIVE`: addresses the kernel does not send from.
const IFA_F_UNUSABLE: u32 = 0x08 | 0x40;

/// Usable IPv6 addresses by interface name, from `/proc/net/if_inet6` (which, unlike
/// `getifaddrs`, says which addresses are still tentative); empty without IPv6.
fn ipv6_addresses() -> BTreeMap<String, Vec<Ipv6Addr>> {
    let mut addrs: BTreeMap<String, Vec<Ipv6Addr>> = BTreeMap::new();
    let text = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    for (addr, name) in text.lines().filter_map(parse_if_inet6) {
        addrs.entry(name.to_string()).or_default().push(addr);
    }
    addrs
}

/// One line of `/proc/net/if_inet6` ("addr32hex ifindex plen scope flags name"), if usable.
fn parse_if_inet6(line: &str) -> Option<(Ipv6Addr, &str)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [hex, _, _, _, flags, name] = fields[..] else {
        return None;
    };
    let addr = u128::from_str_radix(hex, 16)
        .ok()
        .filter(|_| hex.len() == 32)?;
    let flags = u32::from_str_radix(flags, 16).ok()?;
    (flags & IFA_F_UNUSABLE == 0).then_some((Ipv6Addr::from(addr), name))
}

fn read_one(name: &str, ipv4: Vec<Ipv4Addr>) -> io::Result<LinkFacts> {
    let ifindex = sys::ifindex(name)?;
    let flags = sys::ifflags(name)?;
    let mtu = sys::mtu(name)?;
    let (link_type, mac) = sys::hwaddr(name)?;
    Ok(LinkFacts {
        ifindex,
        up: flags & libc::IFF_UP != 0,
        mtu,
        link_type,
        mac,
        ipv4,
        ipv6: Vec::new(),
        cuts_runs: crate::ethtool::cuts_runs(name),
    })
}

/// rtnetlink multicast groups: link changes, IPv4 and IPv6 address changes (an IPv6 address
/// that finishes duplicate address detection is reported again, without `IFA_F_TENTATIVE`).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// A thread that calls `changed` whenever rtnetlink reports a link or address change
/// (and when it lost messages). Started before the first read of the facts, so no change
/// between that read and the subscription goes unseen.
pub struct Watch {
    _thread: std::thread::JoinHandle<()>,
}

impl Watch {
    pub fn spawn(changed: impl Fn() -> bool + Send + 'static) -> io::Result<Watch> {
        use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
        ))?;
        let _ = socket.set_rx_buf_sz(1 << 20);
        let thread = std::thread::Builder::new()
            .name("mcr-links".into())
            .spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match socket.recv(&mut &mut buf[..], 0) {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            log::debug!("rtnetlink: messages lost; re-reading every interface");
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::error!(
                                "rtnetlink watch stopped: {e}; interface changes need `mcr reload`"
                            );
                            return;
                        }
                    }
                    if !changed() {
                        return;
                    }
                }
            })?;
        Ok(Watch { _thread: thread })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_facts_and_a_missing_name_has_none() {
        let lo = IfName::new("lo").unwrap();
        let missing = IfName::new("mcr-nope0").unwrap();
        let view = read([&lo, &missing]);
        let facts = view[&lo].as_ref().expect("lo exists");
        assert!(facts.ifindex > 0 && facts.mtu > 0);
        assert!(facts.ipv4.contains(&Ipv4Addr::LOCALHOST) || !facts.up);
        assert_eq!(view[&missing], None);
    }

    #[test]
    fn if_inet6_lines_keep_only_usable_addresses() {
        let ok = "fe800000000000000000000000000001 02 40 20 80     eth0";
        assert_eq!(
            parse_if_inet6(ok),
            Some(("fe80::1".parse().unwrap(), "eth0"))
        );
        let tentative = "20010db8000000000000000000000002 03 40 00 c0  veth-a";
        assert_eq!(parse_if_inet6(tentative), None);
        let failed = "20010db8000000000000000000000002 03 40 00 08  veth-a";
        assert_eq!(parse_if_inet6(failed), None);
        assert_eq!(parse_if_inet6("garbage"), None);
        assert_eq!(parse_if_inet6("xyz 1 2 3 80 eth0"), None);
    }
}
