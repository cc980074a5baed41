//! The forwarding table: a validated [`Config`] compiled for the packet path against the
//! host's interfaces as they are now ([`LinkView`]).
//!
//! Invariants:
//! - a `Table` is never mutated after it is published; a reload or a link change compiles a
//!   new one and swaps it in whole (`arc-swap`), so a worker sees either the old or the new
//!   table, never a mix;
//! - lookup is O(1): one hash probe by (input ifindex, group, UDP port, source), plus a second
//!   probe for the any-source entry only when some flow on the table is source-specific;
//! - a flow whose input interface does not exist is *waiting*: it is not in the index, needs
//!   no ring and no membership. An output whose interface is missing, down or without an
//!   IPv4 address is waiting too: it has no socket and the packet path skips it;
//! - outputs send through their interface's shared sockets ([`InterfaceSockets`]), opened
//!   once per output interface and built for the [`LinkFacts`] they record; a new table
//!   reuses them only while the egress mode and those facts are unchanged, so a frame never
//!   leaves with a stale MAC, MTU or source address. Descriptors therefore grow with output
//!   interfaces, not outputs. Counters belong to the output's spec: they survive reloads and
//!   link changes alike.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::config::{self, Config, EgressMode, IfName};
use crate::egress::{InterfaceSockets, OutputPath};
use crate::links::{LinkFacts, LinkView};
use crate::loopguard::{self, LoopGuard};
use crate::membership::Membership;
use crate::stats::{FlowStats, InputStats, OutputStats};

/// What compiling needs from the outside world: an output interface's sockets. A seam, so
/// the table logic is testable without root or real interfaces.
pub trait Env {
    fn open_interface(
        &mut self,
        name: &IfName,
        link: &LinkFacts,
        mode: EgressMode,
        v6: bool,
        source: Option<IpAddr>,
    ) -> io::Result<InterfaceSockets>;

    /// The sockets of routed unicast outputs (no interface).
    fn open_routed(
        &mut self,
        mode: EgressMode,
        v6: bool,
        source: Option<IpAddr>,
    ) -> io::Result<InterfaceSockets>;
}

/// Why a config could not be compiled on this host.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(
        "flow `{flow}`: cannot open output sockets on `{interface}` (for {group}:{port}): {source}"
    )]
    OutputSocket {
        flow: String,
        interface: String,
        group: IpAddr,
        port: u16,
        source: io::Error,
    },
}

/// Why an output is not sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Its interface does not exist.
    Missing,
    /// Its interface exists but is administratively down.
    Down,
    /// Its interface has no address of the output's family (`true`: IPv6, counting only
    /// addresses past duplicate address detection): the kernel would pick the unspecified
    /// address (or another interface's) as the source, and receivers drop such frames as
    /// martians.
    NoAddress(bool),
    /// Its sockets could not be opened for a reason the link may cure (errno name).
    Unreachable(String),
}

impl Waiting {
    pub fn describe(&self) -> String {
        match self {
            Waiting::Missing => "interface missing".into(),
            Waiting::Down => "interface down".into(),
            Waiting::NoAddress(v6) => {
                let family = if *v6 { "IPv6" } else { "IPv4" };
                format!("no {family} address on the interface; add one, or set the output's source")
            }
            Waiting::Unreachable(e) => format!("cannot open: {e}"),
        }
    }
}

/// One output of a flow: open and sending, or waiting for its interface.
#[derive(Debug)]
pub struct OutputEntry {
    pub spec: config::Output,
    /// `None` while the output waits; the packet path skips it.
    pub path: Option<OutputPath>,
    /// Why the output does not send (`None`: it does, through `path`, whose sockets record
    /// the facts they were opened for).
    pub waiting: Option<Waiting>,
    pub stats: Arc<OutputStats>,
}

/// One input of a flow (a merged flow has several).
#[derive(Debug)]
pub struct InputEntry {
    pub spec: config::Input,
    /// The interface's index; `None` while it does not exist.
    pub ifindex: Option<u32>,
    /// What this path delivered (kept across compiles while the input stays).
    pub stats: Arc<InputStats>,
}

/// One flow: its input match and outputs.
#[derive(Debug)]
pub struct FlowEntry {
    pub spec: config::Flow,
    /// The first input interface's index; `None` while it does not exist.
    pub ifindex: Option<u32>,
    /// Every input, the first included, in the config's order.
    pub inputs: Vec<InputEntry>,
    pub stats: Arc<FlowStats>,
    pub outputs: Vec<OutputEntry>,
    /// No input packet for this long makes the flow `idle` (the flow's or `[relay]`'s).
    pub idle_after: std::time::Duration,
    /// The loop guard's window in its ticks ([`loopguard::window_ticks`]); 0 = off.
    pub loop_window: u16,
    /// RTP monitoring (`rtp = true`): the stream's state, kept across compiles while the
    /// input stays, and the payload's clock rate.
    pub rtp: Option<(Arc<crate::rtp::Monitor>, u32)>,
}

/// What a flow is doing, as `mcr stats`, `mcr status` and the metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlowState {
    /// A packet arrived within `idle_after`.
    Active,
    /// No packet within `idle_after` (or none yet).
    Idle,
    /// The input interface does not exist.
    Waiting,
}

impl FlowState {
    pub const ALL: [FlowState; 3] = [FlowState::Active, FlowState::Idle, FlowState::Waiting];

    pub fn name(self) -> &'static str {
        match self {
            FlowState::Active => "active",
            FlowState::Idle => "idle",
            FlowState::Waiting => "waiting",
        }
    }
}

impl FlowEntry {
    /// The flow's state at `now_ns` ([`crate::stats::monotonic_ns`]).
    pub fn state(&self, now_ns: u64) -> FlowState {
        use std::sync::atomic::Ordering::Relaxed;
        if self.inputs.iter().all(|i| i.ifindex.is_none()) {
            return FlowState::Waiting;
        }
        self.seen_state(self.stats.last_seen_ns.load(Relaxed), now_ns)
    }

    /// The state of one path of a merged flow, by its own last packet.
    pub fn input_state(&self, input: &InputEntry, now_ns: u64) -> FlowState {
        use std::sync::atomic::Ordering::Relaxed;
        if input.ifindex.is_none() {
            return FlowState::Waiting;
        }
        self.seen_state(input.stats.last_seen_ns.load(Relaxed), now_ns)
    }

    /// Active when `last` (0 = never) lies within `idle_after` of `now_ns`.
    fn seen_state(&self, last: u64, now_ns: u64) -> FlowState {
        let idle_ns = u64::try_from(self.idle_after.as_nanos()).unwrap_or(u64::MAX);
        if last == 0 || now_ns.saturating_sub(last) > idle_ns {
            FlowState::Idle
        } else {
            FlowState::Active
        }
    }
}

/// What a lookup finds: a flow's index and which of its inputs matched, in one word (the
/// input in the top 4 bits; validation keeps flows far below 2^28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit(u32);

impl Hit {
    fn new(flow: usize, input: usize) -> Hit {
        debug_assert!(flow < 1 << 28 && input < 16);
        Hit(flow as u32 | (input as u32) << 28)
    }

    #[inline]
    pub fn flow(self) -> u32 {
        self.0 & 0x0fff_ffff
    }

    #[inline]
    pub fn input(self) -> usize {
        (self.0 >> 28) as usize
    }
}

/// A flow's input as the packet path looks it up. Addresses of both families in one width:
/// IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), which no IPv6 datagram carries as a group
/// and validation refuses as a source, so the families never meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    ifindex: u32,
    port: u16,
    group: u128,
    /// 0 for any-source flows; the unspecified address is never a valid source.
    source: u128,
}

/// The compiled, immutable forwarding table.
#[derive(Debug)]
pub struct Table {
    generation: u64,
    flows: Vec<FlowEntry>,
    index: FxHashMap<Key, Hit>,
    /// Flow index by name, so reloads and stats stay linear in the number of flows.
    by_name: FxHashMap<String, u32>,
    has_ssm: bool,
    /// The facts of every interface the config names, as compiled against.
    links: LinkView,
    /// Payloads relayed recently; one for the relay's life, handed from table to table.
    guard: Arc<LoopGuard>,
    /// The sockets of every (output interface, source) that has them, shared by its outputs.
    senders: BTreeMap<SenderKey, Arc<InterfaceSockets>>,
    /// `[relay] batch_delay`: how long a worker under load waits before a round.
    batch_delay: Duration,
}

/// Every interface a config names, inputs and outputs.
pub fn interface_names(config: &Config) -> BTreeSet<&IfName> {
    config
        .flows
        .iter()
        .flat_map(|f| {
            (f.inputs().map(|i| &i.interface))
                .chain(f.outputs.iter().filter_map(|o| o.interface.as_ref()))
        })
        .collect()
}

/// One width for both families' addresses in a [`Key`].
#[inline]
fn key_addr(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Outputs share sockets per output interface (`None`: routed unicast outputs), family
/// (`true`: IPv6) and source address (`None`: the interface's).
pub type SenderKey = (Option<IfName>, bool, Option<IpAddr>);

/// The sockets of output interface `key.0` sending from `key.1`, as `link` describes the
/// interface: the previous table's while they serve it unchanged, else new ones; `Ok(Err(_))`
/// when its outputs wait (missing, down, no address to send from, or not ready), `Err` for a
/// failure no link change cures.
fn open_sender(
    key: &SenderKey,
    link: Option<LinkFacts>,
    mode: EgressMode,
    previous: Option<&Table>,
    env: &mut dyn Env,
) -> io::Result<Result<Arc<InterfaceSockets>, Waiting>> {
    let (name, v6, source) = key;
    let Some(name) = name else {
        // Routed: tied to no interface, so nothing about one can make it wait.
        if let Some(old) = previous.and_then(|p| p.senders.get(key)) {
            if old.serves(None, mode, *v6, *source) {
                return Ok(Ok(old.clone()));
            }
        }
        return env.open_routed(mode, *v6, *source).map(|s| Ok(Arc::new(s)));
    };
    let no_address = |l: &LinkFacts| {
        source.is_none()
            && if *v6 {
                l.ipv6.is_empty()
            } else {
                l.ipv4.is_empty()
            }
    };
    let link = match link {
        None => return Ok(Err(Waiting::Missing)),
        Some(l) if !l.up => return Ok(Err(Waiting::Down)),
        Some(l) if no_address(&l) => return Ok(Err(Waiting::NoAddress(*v6))),
        Some(l) => l,
    };
    if let Some(old) = previous.and_then(|p| p.senders.get(key)) {
        if old.serves(Some(&link), mode, *v6, *source) {
            return Ok(Ok(old.clone()));
        }
    }
    match env.open_interface(name, &link, mode, *v6, *source) {
        Ok(sockets) => Ok(Ok(Arc::new(sockets))),
        Err(e) if link_not_ready(&e) => Ok(Err(Waiting::Unreachable(e.to_string()))),
        Err(e) => Err(e),
    }
}

/// Errors that mean "the interface is not ready", not "the config is wrong".
fn link_not_ready(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH | libc::ENETDOWN | libc::ENODEV | libc::ENXIO | libc::EADDRNOTAVAIL)
    )
}

impl Table {
    /// An empty table (no flows), e.g. before the first config is live.
    pub fn empty() -> Table {
        Table {
            generation: 0,
            flows: Vec::new(),
            index: FxHashMap::default(),
            by_name: FxHashMap::default(),
            has_ssm: false,
            links: LinkView::new(),
            guard: Arc::default(),
            senders: BTreeMap::new(),
            batch_delay: Duration::ZERO,
        }
    }

    /// Compiles `config` against `links` (which must hold every name the config uses),
    /// reusing sockets and counters of `previous` where a flow or output is unchanged.
    pub fn compile(
        config: &Config,
        links: &LinkView,
        env: &mut dyn Env,
        previous: Option<&Table>,
        generation: u64,
    ) -> Result<Table, TableError> {
        let facts = |name: &IfName| links.get(name).cloned().flatten();
        let mode = config.relay.egress;
        let mut flows = Vec::with_capacity(config.flows.len());
        let mut index = FxHashMap::default();
        // Per output interface: its sockets, or why its outputs wait.
        // Per (output interface, source): its sockets, or why its outputs wait.
        let mut senders: BTreeMap<SenderKey, Result<Arc<InterfaceSockets>, Waiting>> =
            BTreeMap::new();
        for flow in &config.flows {
            let ifindex = facts(&flow.input.interface).map(|f| f.ifindex);
            let old = previous.and_then(|p| p.flow_by_name(&flow.name));
            let kept = old.filter(|o| o.spec.input == flow.input && o.spec.merge == flow.merge);
            let stats = kept.map_or_else(Arc::default, |o| o.stats.clone());
            let rtp = flow.rtp.map(|rate| {
                let window = flow.merge_window.unwrap_or(crate::rtp::WINDOW);
                let monitor = (kept.and_then(|o| o.rtp.as_ref()))
                    .filter(|(m, _)| m.window() == window)
                    .map(|(m, _)| m.clone());
                (
                    monitor.unwrap_or_else(|| Arc::new(crate::rtp::Monitor::new(window))),
                    rate,
                )
            });
            let mut outputs = Vec::with_capacity(flow.outputs.len());
            for out in &flow.outputs {
                let old = old.and_then(|o| o.outputs.iter().find(|e| e.spec == *out));
                let name = out.interface.as_ref();
                let key = (name.cloned(), out.group.is_ipv6(), out.source);
                if !senders.contains_key(&key) {
                    let link = name.and_then(facts);
                    let opened =
                        open_sender(&key, link, mode, previous, env).map_err(|source| {
                            TableError::OutputSocket {
                                flow: flow.name.clone(),
                                interface: out.interface_name().to_string(),
                                group: out.group,
                                port: out.port,
                                source,
                            }
                        })?;
                    senders.insert(key.clone(), opened);
                }
                let (path, waiting) = match &senders[&key] {
                    Ok(sockets) => (Some(sockets.output(out)), None),
                    Err(waiting) => (None, Some(waiting.clone())),
                };
                outputs.push(OutputEntry {
                    spec: out.clone(),
                    path,
                    waiting,
                    stats: old.map_or_else(Arc::default, |o| o.stats.clone()),
                });
            }
            let mut inputs = Vec::with_capacity(1 + flow.more_inputs.len());
            for (n, input) in flow.inputs().enumerate() {
                let ifindex = facts(&input.interface).map(|f| f.ifindex);
                if let Some(ifindex) = ifindex {
                    let key = Key {
                        ifindex,
                        group: key_addr(input.group),
                        port: input.port,
                        source: input.source.map_or(0, key_addr),
                    };
                    // Validation already rejected duplicate inputs; the first flow wins.
                    index.entry(key).or_insert(Hit::new(flows.len(), n));
                }
                let old = old.and_then(|o| o.inputs.iter().find(|e| e.spec == *input));
                inputs.push(InputEntry {
                    spec: input.clone(),
                    ifindex,
                    stats: old.map_or_else(Arc::default, |o| o.stats.clone()),
                });
            }
            flows.push(FlowEntry {
                spec: flow.clone(),
                ifindex,
                inputs,
                stats,
                outputs,
                idle_after: flow.idle_after.unwrap_or(config.relay.idle_after),
                loop_window: loopguard::window_ticks(
                    flow.loop_guard.unwrap_or(config.relay.loop_guard),
                ),
                rtp,
            });
        }
        let has_ssm = flows.iter().any(|f| f.spec.input.source.is_some());
        let names = interface_names(config);
        let by_name = flows
            .iter()
            .enumerate()
            .map(|(i, f)| (f.spec.name.clone(), i as u32))
            .collect();
        Ok(Table {
            generation,
            flows,
            index,
            by_name,
            has_ssm,
            links: links
                .iter()
                .filter(|(n, _)| names.contains(n))
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect(),
            guard: previous.map_or_else(Arc::default, |p| p.guard.clone()),
            batch_delay: config.relay.batch_delay,
            senders: senders
                .into_iter()
                .filter_map(|(name, s)| Some((name, s.ok()?)))
                .collect(),
        })
    }

    /// Output interfaces with open sockets, and the sockets each shares among its outputs.
    pub fn senders(&self) -> &BTreeMap<SenderKey, Arc<InterfaceSockets>> {
        &self.senders
    }

    /// The loop guard the packet path consults for flows with a window.
    #[inline]
    pub fn guard(&self) -> &LoopGuard {
        &self.guard
    }

    /// How long a worker under load waits for more packets before a round (see `coalesce`).
    #[inline]
    pub fn batch_delay(&self) -> Duration {
        self.batch_delay
    }

    /// The facts of every interface the table's config names, as compiled against.
    pub fn links(&self) -> &LinkView {
        &self.links
    }

    /// Whether the interfaces this table was compiled against include index `ifindex`.
    pub fn has_interface(&self, ifindex: u32) -> bool {
        self.links.values().flatten().any(|f| f.ifindex == ifindex)
    }

    /// Interfaces that do not exist, with the flows that wait for them (as input or output).
    pub fn missing(&self) -> BTreeMap<IfName, Vec<String>> {
        let mut missing: BTreeMap<IfName, Vec<String>> = BTreeMap::new();
        for f in &self.flows {
            let names = (f.spec.inputs().map(|i| &i.interface))
                .chain(f.spec.outputs.iter().filter_map(|o| o.interface.as_ref()));
            for name in names {
                if self.links.get(name).is_none_or(Option::is_none) {
                    let flows = missing.entry(name.clone()).or_default();
                    if flows.last() != Some(&f.spec.name) {
                        flows.push(f.spec.name.clone());
                    }
                }
            }
        }
        missing
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn flows(&self) -> &[FlowEntry] {
        &self.flows
    }

    pub fn flow(&self, index: u32) -> Option<&FlowEntry> {
        self.flows.get(index as usize)
    }

    pub fn flow_by_name(&self, name: &str) -> Option<&FlowEntry> {
        self.flows.get(*self.by_name.get(name)? as usize)
    }

    /// The flow a datagram belongs to: a source-specific flow for its source if there is one,
    /// else the any-source flow for its group and port.
    #[inline]
    pub fn lookup(&self, ifindex: u32, src: IpAddr, dst: IpAddr, port: u16) -> Option<Hit> {
        let mut key = Key {
            ifindex,
            group: key_addr(dst),
            port,
            source: 0,
        };
        if self.has_ssm {
            key.source = key_addr(src);
            if let Some(&i) = self.index.get(&key) {
                return Some(i);
            }
            key.source = 0;
        }
        self.index.get(&key).copied()
    }

    /// Every input of every flow, with its flow.
    pub fn inputs(&self) -> impl Iterator<Item = (&FlowEntry, &InputEntry)> {
        self.flows
            .iter()
            .flat_map(|f| f.inputs.iter().map(move |i| (f, i)))
    }

    /// Input interfaces in use, by index.
    pub fn input_ifindexes(&self) -> BTreeSet<u32> {
        self.inputs().filter_map(|(_, i)| i.ifindex).collect()
    }

    /// The memberships the inputs need, one per distinct (interface, group, source); a
    /// unicast input needs none.
    pub fn memberships(&self) -> BTreeSet<Membership> {
        self.inputs()
            .filter(|(_, i)| !i.spec.unicast)
            .filter_map(|(_, i)| {
                Some(Membership {
                    ifindex: i.ifindex?,
                    group: i.spec.group,
                    source: i.spec.source,
                })
            })
            .collect()
    }

    /// The unicast inputs on interface `ifindex`, (address, port) sorted and distinct: what
    /// its rings' socket filter admits besides multicast.
    pub fn unicast_inputs(&self, ifindex: u32) -> Vec<(IpAddr, u16)> {
        let set: BTreeSet<(IpAddr, u16)> = self
            .inputs()
            .filter(|(_, i)| i.spec.unicast && i.ifindex == Some(ifindex))
            .map(|(_, i)| (i.spec.group, i.spec.port))
            .collect();
        set.into_iter().collect()
    }

    /// What this table needs from the host, for reload diffs.
    pub fn needs(&self) -> crate::reload::Needs {
        crate::reload::Needs {
            interfaces: self.input_ifindexes(),
            memberships: self.memberships(),
        }
    }

    /// Interface name of an input index, for logs.
    pub fn input_name(&self, ifindex: u32) -> Option<&IfName> {
        self.inputs()
            .find(|(_, i)| i.ifindex == Some(ifindex))
            .map(|(_, i)| &i.spec.interface)
    }
}

/// Tables compiled from config text against made-up interfaces, for unit tests here and in
/// modules that read tables.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::path::Path;

    /// Sockets are plain unconnected UDP sockets.
    #[derive(Default)]
    pub struct FakeEnv {
        pub opened: usize,
    }

    impl Env for FakeEnv {
        fn open_interface(
            &mut self,
            _: &IfName,
            link: &LinkFacts,
            mode: EgressMode,
            v6: bool,
            _: Option<IpAddr>,
        ) -> io::Result<InterfaceSockets> {
            self.opened += 1;
            InterfaceSockets::unconnected_for_tests(link, mode, v6)
        }

        fn open_routed(
            &mut self,
            mode: EgressMode,
            v6: bool,
            source: Option<IpAddr>,
        ) -> io::Result<InterfaceSockets> {
            self.opened += 1;
            InterfaceSockets::open_routed(mode, v6, source)
        }
    }

    /// Interfaces `ethN` exist, up, with index N+1; other names do not exist.
    pub fn links(config: &Config) -> LinkView {
        interface_names(config)
            .into_iter()
            .map(|name| {
                let facts = name
                    .as_str()
                    .strip_prefix("eth")
                    .and_then(|n| n.parse::<u32>().ok())
                    .map(|n| LinkFacts {
                        ifindex: n + 1,
                        up: true,
                        mtu: 1500,
                        link_type: 1,
                        mac: [2, 0, 0, 0, 0, n as u8],
                        ipv4: vec![Ipv4Addr::new(10, 0, n as u8, 1)],
                        ipv6: vec![Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n as u16 + 1)],
                        cuts_runs: true,
                    });
                (name.clone(), facts)
            })
            .collect()
    }

    pub fn compile(src: &str, env: &mut FakeEnv, previous: Option<&Table>) -> Table {
        let c = config(src);
        let generation = previous.map_or(1, |p| p.generation() + 1);
        Table::compile(&c, &links(&c), env, previous, generation).unwrap()
    }

    pub fn config(src: &str) -> Config {
        Config::parse(src, Path::new("test.toml")).expect("valid config")
    }
}

#[cfg(test)]
mod tests;
