//! Keeping relayed datagrams out of the host's IP stack.
//!
//! The helper sockets' memberships make the kernel accept every relayed group, so each
//! datagram mcr relays is also walked up the IP stack to UDP demultiplexing, only to be
//! dropped there for want of a socket: about a microsecond of softirq work per packet, more
//! than mcr itself spends. mcr's receive rings are packet taps (`ETH_P_ALL`), which see a
//! frame before the netdev ingress hook; a drop on that hook therefore costs mcr nothing
//! and spares the stack the rest.
//!
//! So mcr owns one nftables table, `netdev mcr_<pid>`, with per input interface one ingress
//! chain and two hash sets per family (any-source `group . port`, source-specific
//! `source . group . port`; the IPv6 ones, `asm6_*` and `ssm6_*`, only when an IPv6 flow
//! needs them), filled with exactly the relayed flows' keys:
//!
//! ```text
//! table netdev mcr_1234 {
//!     set asm_eth0 { type ipv4_addr . inet_service; elements = { 239.1.1.1 . 5001 } }
//!     set ssm_eth0 { type ipv4_addr . ipv4_addr . inet_service; }
//!     chain in_eth0 {
//!         type filter hook ingress device "eth0" priority filter; policy accept;
//!         ip daddr . udp dport @asm_eth0 counter drop
//!         ip saddr . ip daddr . udp dport @ssm_eth0 counter drop   # only with SSM flows
//!     }
//! }
//! ```
//!
//! It sees only UDP to a relayed (group, port) — and source, for a source-specific flow —
//! on that flow's input interface: IGMP and MLD, other groups and ports, other interfaces
//! and non-first fragments (which carry no UDP header) are never touched. For IPv6,
//! `meta l4proto` and the transport offset are the kernel's walk past extension headers. A flow with
//! `local_delivery = true` puts no key in for its (interface, group, port), so a local
//! application still gets every datagram of that group and port.
//!
//! The table is owned by mcr's netlink socket (`NFT_TABLE_F_OWNER`): the kernel deletes it
//! the moment that socket closes, so a relay that crashes or is killed leaves nothing
//! behind. Every change — a reload, an interface that comes or goes — replaces the whole
//! table in one nftables transaction, so a packet sees the old drops or the new ones, never
//! a mix. A transaction that fails closes the socket (removing the table: no drop is
//! better than a stale one) and the next change tries again on a fresh one. Where nf_tables
//! or `CAP_NET_ADMIN` is missing, mcr says so once and relays as before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::IfName;
use crate::nft::{self, Base, Batch, Expr, Meta, FAMILY_NETDEV};
use crate::table::Table;

/// The drops one table needs: per input interface, the relayed flows' keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drops {
    interfaces: BTreeMap<IfName, Keys>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Keys {
    /// The interface the chain is bound to; a new index (the interface was re-created)
    /// means a new chain.
    ifindex: u32,
    /// Per [`Kind`], its keys: `[source .] group . port`, each field padded to 4 bytes as
    /// nf_tables registers hold them.
    sets: [BTreeSet<Vec<u8>>; 4],
}

/// The four kinds of key: family × any-source or source-specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Asm4,
    Ssm4,
    Asm6,
    Ssm6,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Asm4, Kind::Ssm4, Kind::Asm6, Kind::Ssm6];

    fn of(group: IpAddr, source: Option<IpAddr>) -> Kind {
        match (group.is_ipv6(), source.is_some()) {
            (false, false) => Kind::Asm4,
            (false, true) => Kind::Ssm4,
            (true, false) => Kind::Asm6,
            (true, true) => Kind::Ssm6,
        }
    }

    fn v6(self) -> bool {
        matches!(self, Kind::Asm6 | Kind::Ssm6)
    }

    fn ssm(self) -> bool {
        matches!(self, Kind::Ssm4 | Kind::Ssm6)
    }

    /// The set's name on `ifname`.
    fn set_name(self, ifname: &IfName) -> String {
        let prefix = ["asm", "ssm", "asm6", "ssm6"][self as usize];
        format!("{prefix}_{ifname}")
    }

    /// The key's nftables type and length.
    fn key_type(self) -> (u32, u32) {
        let (addr, len) = if self.v6() {
            (nft::TYPE_IPV6_ADDR, 16)
        } else {
            (nft::TYPE_IPV4_ADDR, 4)
        };
        let addrs = if self.ssm() { 2 } else { 1 };
        let mut types = vec![addr; addrs];
        types.push(nft::TYPE_INET_SERVICE);
        (nft::concat_type(&types), len * addrs as u32 + 4)
    }
}

/// The key of a flow's input: `[source .] group . port`, padded as registers hold them.
fn key(group: IpAddr, source: Option<IpAddr>, port: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(36);
    for addr in source.into_iter().chain([group]) {
        match addr {
            IpAddr::V4(a) => k.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => k.extend_from_slice(&a.octets()),
        }
    }
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    k
}

impl Drops {
    /// What `table` relays, less what must still reach local sockets: a flow's
    /// `local_delivery` (else `default_local`) keeps every key of its (interface, group,
    /// port) out, whichever flow on it asked.
    pub fn of(table: &Table, default_local: bool) -> Drops {
        let local: BTreeSet<(&IfName, IpAddr, u16)> = table
            .inputs()
            .filter(|(f, _)| f.spec.local_delivery.unwrap_or(default_local))
            .map(|(_, i)| (&i.spec.interface, i.spec.group, i.spec.port))
            .collect();
        let mut interfaces: BTreeMap<IfName, Keys> = BTreeMap::new();
        for (_, i) in table.inputs() {
            let input = &i.spec;
            let Some(ifindex) = i.ifindex else { continue };
            if local.contains(&(&input.interface, input.group, input.port)) {
                continue;
            }
            let keys = interfaces.entry(input.interface.clone()).or_default();
            keys.ifindex = ifindex;
            let kind = Kind::of(input.group, input.source);
            keys.sets[kind as usize].insert(key(input.group, input.source, input.port));
        }
        Drops { interfaces }
    }

    /// Keys in all (one per relayed flow key).
    pub fn keys(&self) -> usize {
        self.interfaces
            .values()
            .flat_map(|k| k.sets.iter())
            .map(BTreeSet::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
    }

    /// Writes the table `name` holding these drops into `batch`.
    fn build(&self, batch: &mut Batch, name: &str) {
        let f = FAMILY_NETDEV;
        batch.new_table(f, name);
        for (ifname, keys) in &self.interfaces {
            let chain = format!("in_{ifname}");
            // IPv4's sets always (empty when unused, as before IPv6); IPv6's when needed.
            let wanted = |kind: Kind| !kind.v6() || !keys.sets[kind as usize].is_empty();
            for kind in Kind::ALL.into_iter().filter(|&k| wanted(k)) {
                let (key_type, key_len) = kind.key_type();
                let set = kind.set_name(ifname);
                batch.new_set(f, name, &set, key_type, key_len);
                let elements = keys.sets[kind as usize].iter().map(Vec::as_slice);
                batch.add_elements(f, name, &set, elements);
            }
            batch.new_ingress_chain(f, name, &chain, ifname.as_str());
            // A rule per non-empty set: every other UDP packet of the family on the
            // interface is looked up once per rule.
            for kind in Kind::ALL {
                if !keys.sets[kind as usize].is_empty() {
                    batch.add_rule(f, name, &chain, &rule(&kind.set_name(ifname), kind));
                }
            }
        }
    }
}

const ETHERTYPE_IPV4: [u8; 2] = 0x0800u16.to_be_bytes();
const ETHERTYPE_IPV6: [u8; 2] = 0x86ddu16.to_be_bytes();
const IPPROTO_UDP: [u8; 1] = [17];

/// `meta protocol ip[6] meta l4proto udp [ip saddr .] ip daddr . udp dport @set counter drop`
/// (`ip6 saddr`, `ip6 daddr` for IPv6).
fn rule(set: &str, kind: Kind) -> Vec<Expr<'_>> {
    let ethertype = if kind.v6() {
        &ETHERTYPE_IPV6
    } else {
        &ETHERTYPE_IPV4
    };
    let mut e = vec![
        Expr::Meta {
            key: Meta::Protocol,
            dreg: nft::REG_1,
        },
        Expr::CmpEq {
            sreg: nft::REG_1,
            data: ethertype,
        },
        Expr::Meta {
            key: Meta::L4Proto,
            dreg: nft::REG_1,
        },
        Expr::CmpEq {
            sreg: nft::REG_1,
            data: &IPPROTO_UDP,
        },
    ];
    // A field takes as many 32-bit registers as it has words; the key's are consecutive.
    let mut reg = 0;
    let mut load = |base, offset, len: u32| {
        e.push(Expr::Payload {
            base,
            offset,
            len,
            dreg: Expr::reg32(reg),
        });
        reg += len.div_ceil(4);
    };
    let (saddr, daddr, len) = if kind.v6() { (8, 24, 16) } else { (12, 16, 4) };
    if kind.ssm() {
        load(Base::Network, saddr, len);
    }
    load(Base::Network, daddr, len);
    load(Base::Transport, 2, 2); // udp dport
    e.push(Expr::Lookup {
        set,
        sreg: Expr::reg32(0),
    });
    e.push(Expr::Counter);
    e.push(Expr::Drop);
    e
}

/// The table in the kernel and the socket that owns it.
pub struct StackDrop {
    /// `mcr_<pid>`: one table per relay process, so relays sharing a namespace never meet.
    name: String,
    socket: Option<nft::Socket>,
    /// What the kernel holds; `None`: no table.
    installed: Option<Drops>,
    /// Why the drop cannot be used at all (no nf_tables, no `CAP_NET_ADMIN`): said once.
    unavailable: Option<String>,
    /// The latest failure to apply, until a transaction goes through again.
    failed: Option<String>,
    seq: u32,
}

impl Default for StackDrop {
    fn default() -> Self {
        StackDrop::new()
    }
}

impl StackDrop {
    pub fn new() -> StackDrop {
        StackDrop {
            name: format!("mcr_{}", std::process::id()),
            socket: None,
            installed: None,
            unavailable: None,
            failed: None,
            seq: 1,
        }
    }

    /// The nftables table's name.
    pub fn table_name(&self) -> &str {
        &self.name
    }

    /// Makes the kernel's table hold exactly `want`, in one transaction; nothing is sent when
    /// it already does.
    pub fn sync(&mut self, want: Drops) {
        if self.unavailable.is_some() {
            return;
        }
        let unchanged = match &self.installed {
            Some(have) => *have == want,
            None => want.is_empty(),
        };
        if unchanged && self.failed.is_none() {
            return;
        }
        if self.installed.is_none() && want.is_empty() {
            self.failed = None;
            return;
        }
        let mut batch = Batch::new(self.seq);
        if self.installed.is_some() {
            batch.del_table(FAMILY_NETDEV, &self.name);
        }
        if !want.is_empty() {
            want.build(&mut batch, &self.name);
        }
        let batch = batch.finish();
        self.seq = batch.next_seq();
        log::debug!(
            "ingress drop: replacing table {} ({} keys, {} bytes of nftables batch)",
            self.name,
            want.keys(),
            batch.len()
        );
        match self.send(&batch) {
            Ok(()) => {
                if self.installed.is_none() && !want.is_empty() {
                    log::info!(
                        "relayed datagrams are dropped before the IP stack (nftables table netdev {}): {} keys on {} interfaces",
                        self.name,
                        want.keys(),
                        want.interfaces.len()
                    );
                }
                self.failed = None;
                self.installed = (!want.is_empty()).then_some(want);
            }
            Err(e) if self.installed.is_none() && is_unavailable(&e) => {
                let why = format!(
                    "{e}; relayed datagrams also go up the host's IP stack (give mcr CAP_NET_ADMIN and nf_tables to spare it)"
                );
                log::warn!("no ingress drop: {why}");
                self.unavailable = Some(why);
                self.socket = None;
            }
            Err(e) => {
                log::error!(
                    "ingress drop not updated: {e}; removed it (relayed datagrams go up the IP stack meanwhile), trying again at the next change"
                );
                // Closing the owning socket makes the kernel delete the table.
                self.socket = None;
                self.installed = None;
                self.failed = Some(e.to_string());
            }
        }
    }

    /// Netlink checks `CAP_NET_ADMIN` twice for every message: in the credentials the
    /// socket was opened with, and in the task sending it. So the socket is opened, and
    /// every batch sent, with the capability raised.
    fn send(&mut self, batch: &nft::Finished) -> Result<(), nft::NftError> {
        let socket = &mut self.socket;
        crate::privilege::with_net_admin(|| {
            if socket.is_none() {
                *socket = Some(nft::Socket::open()?);
            }
            let socket = socket.as_mut().expect("opened above");
            socket.fit(batch.len());
            socket.apply(batch)
        })
    }

    /// One line for `mcr status`.
    pub fn describe(&self) -> String {
        if let Some(why) = &self.unavailable {
            return format!("off: {why}");
        }
        if let Some(why) = &self.failed {
            return format!("off: last update failed: {why}");
        }
        match &self.installed {
            Some(d) => format!(
                "on: {} keys on {} interfaces (nftables table netdev {})",
                d.keys(),
                d.interfaces.len(),
                self.name
            ),
            None => "off: no relayed flow to drop (none, or all with local_delivery)".into(),
        }
    }

    /// Keys the kernel holds now.
    pub fn keys(&self) -> usize {
        self.installed.as_ref().map_or(0, Drops::keys)
    }
}

/// Errors that mean nf_tables cannot be used here at all, not that this change failed.
fn is_unavailable(e: &nft::NftError) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPERM
                | libc::EACCES
                | libc::EPROTONOSUPPORT
                | libc::EAFNOSUPPORT
                | libc::EOPNOTSUPP
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::test_support::{compile, FakeEnv};

    fn drops(src: &str, default_local: bool) -> Vec<(String, Vec<String>)> {
        let table = compile(src, &mut FakeEnv::default(), None);
        let d = Drops::of(&table, default_local);
        d.interfaces
            .iter()
            .map(|(name, k)| {
                let keys = Kind::ALL
                    .into_iter()
                    .flat_map(|kind| k.sets[kind as usize].iter().map(move |key| (kind, key)))
                    .map(|(kind, key)| show(kind, key))
                    .collect();
                (format!("{name}@{}", k.ifindex), keys)
            })
            .collect()
    }

    /// A key as `nft list` shows it.
    fn show(kind: Kind, key: &[u8]) -> String {
        let len = if kind.v6() { 16 } else { 4 };
        let addr = |b: &[u8]| -> String {
            match <[u8; 16]>::try_from(b) {
                Ok(a) => std::net::Ipv6Addr::from(a).to_string(),
                Err(_) => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
            }
        };
        let mut fields: Vec<String> = key[..key.len() - 4].chunks(len).map(addr).collect();
        let port = &key[key.len() - 4..];
        fields.push(u16::from_be_bytes([port[0], port[1]]).to_string());
        fields.join(" . ")
    }

    /// A flow from `group`:5001 (from `source`, if given) on `interface`.
    fn flow(name: &str, interface: &str, group: &str, source: &str, extra: &str) -> String {
        let source = if source.is_empty() {
            String::new()
        } else {
            format!(", source = \"{source}\"")
        };
        format!(
            "[[flow]]\nname = \"{name}\"\n{extra}\ninput = {{ interface = \"{interface}\", group = \"{group}\", port = 5001{source} }}\noutputs = [ {{ interface = \"eth9\", group = \"239.9.9.9\", port = 9 }} ]\n"
        )
    }

    #[test]
    fn keys_are_the_relayed_flows_and_local_delivery_frees_a_whole_group_and_port() {
        let src = [
            flow("a", "eth0", "239.1.1.1", "", ""),
            flow("b", "eth0", "239.1.1.2", "10.0.0.5", ""),
            // Shares b's group and port with local delivery: b's key goes too.
            flow("c", "eth0", "239.1.1.2", "", "local_delivery = true"),
            flow("d", "eth1", "239.1.1.1", "", ""),
            // Its interface does not exist: no chain for it.
            flow("e", "wlan7", "239.1.1.1", "", ""),
        ]
        .concat();
        assert_eq!(
            drops(&src, false),
            [
                ("eth0@1".to_string(), vec!["239.1.1.1 . 5001".to_string()]),
                ("eth1@2".to_string(), vec!["239.1.1.1 . 5001".to_string()]),
            ]
        );
        // `[relay] local_delivery = true`: only flows that say false are dropped.
        let src = [
            flow("a", "eth0", "239.1.1.1", "", ""),
            flow(
                "b",
                "eth0",
                "239.1.1.2",
                "10.0.0.5",
                "local_delivery = false",
            ),
        ]
        .concat();
        assert_eq!(
            drops(&src, true),
            [(
                "eth0@1".to_string(),
                vec!["10.0.0.5 . 239.1.1.2 . 5001".to_string()]
            )]
        );
        assert!(drops(&src[..0], false).is_empty());
    }

    #[test]
    fn ipv6_flows_get_keys_of_their_own() {
        let src = [
            flow("a", "eth0", "ff05::1:1", "", ""),
            flow("b", "eth0", "ff3e::1:2", "2001:db8::5", ""),
            flow("c", "eth0", "239.1.1.1", "", ""),
        ]
        .concat();
        assert_eq!(
            drops(&src, false),
            [(
                "eth0@1".to_string(),
                vec![
                    "239.1.1.1 . 5001".to_string(),
                    "ff05::1:1 . 5001".to_string(),
                    "2001:db8::5 . ff3e::1:2 . 5001".to_string()
                ]
            )]
        );
        assert_eq!(Kind::Ssm6.key_type().1, 36);
        assert_eq!(Kind::Asm6.key_type().1, 20);
        assert_eq!(Kind::Asm4.key_type().1, 8);
    }
    #[test]
    fn rules_load_the_key_fields_into_consecutive_registers() {
        let r = rule("asm_x", Kind::Asm4);
        let loads: Vec<(u32, u32, u32)> = r
            .iter()
            .filter_map(|e| match e {
                Expr::Payload {
                    offset, len, dreg, ..
                } => Some((*offset, *len, *dreg)),
                _ => None,
            })
            .collect();
        assert_eq!(loads, [(16, 4, 8), (2, 2, 9)]);
        let r = rule("ssm_x", Kind::Ssm4);
        let loads = r
            .iter()
            .filter(|e| matches!(e, Expr::Payload { .. }))
            .count();
        assert_eq!(loads, 3);
        assert!(matches!(r.last(), Some(Expr::Drop)));
        // IPv6: 16-byte addresses take four registers each.
        let loads: Vec<(u32, u32, u32)> = rule("ssm6_x", Kind::Ssm6)
            .iter()
            .filter_map(|e| match e {
                Expr::Payload {
                    offset, len, dreg, ..
                } => Some((*offset, *len, *dreg)),
                _ => None,
            })
            .collect();
        assert_eq!(loads, [(8, 16, 8), (24, 16, 12), (2, 2, 16)]);
    }
}
