//! The forwarding table: a validated [`Config`] compiled for the packet path.
//!
//! Invariants:
//! - a `Table` is never mutated after it is published; a reload compiles a new one and swaps it
//!   in whole (`arc-swap`), so a worker sees either the old or the new table, never a mix;
//! - lookup is O(1): one hash probe by (input ifindex, group, UDP port, source), plus a second
//!   probe for the any-source entry only when some flow on the table is source-specific;
//! - every output holds its own connected UDP socket; an unchanged flow or output in a new
//!   table shares the previous table's counters and sockets, so they survive reloads.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::config::{self, Config, EgressMode, IfName};
use crate::egress::OutputSocket;
use crate::membership::Membership;
use crate::stats::{FlowStats, OutputStats};

/// What compiling needs from the outside world: interface indexes and output sockets.
/// A seam, so the table logic is testable without root or real interfaces.
pub trait Env {
    fn ifindex(&mut self, name: &IfName) -> io::Result<u32>;
    fn open_output(
        &mut self,
        output: &config::Output,
        ifindex: u32,
        mode: EgressMode,
    ) -> io::Result<OutputSocket>;
}

/// Why a config could not be compiled on this host.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("flow `{flow}`: interface `{interface}` does not exist ({source}); create it or fix the config")]
    NoInterface {
        flow: String,
        interface: String,
        source: io::Error,
    },
    #[error(
        "flow `{flow}`: cannot open output socket on `{interface}` to {group}:{port}: {source}"
    )]
    OutputSocket {
        flow: String,
        interface: String,
        group: Ipv4Addr,
        port: u16,
        source: io::Error,
    },
}

/// One output of a flow, ready to send on.
#[derive(Debug)]
pub struct OutputEntry {
    pub spec: config::Output,
    pub ifindex: u32,
    pub socket: Arc<OutputSocket>,
    pub stats: Arc<OutputStats>,
}

/// One flow: its input match and outputs.
#[derive(Debug)]
pub struct FlowEntry {
    pub spec: config::Flow,
    pub ifindex: u32,
    pub stats: Arc<FlowStats>,
    pub outputs: Vec<OutputEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    ifindex: u32,
    group: u32,
    port: u16,
    /// 0 for any-source flows; 0.0.0.0 is never a valid source.
    source: u32,
}

/// The compiled, immutable forwarding table.
#[derive(Debug)]
pub struct Table {
    generation: u64,
    flows: Vec<FlowEntry>,
    index: FxHashMap<Key, u32>,
    has_ssm: bool,
}

impl Table {
    /// An empty table (no flows), e.g. before the first config is live.
    pub fn empty() -> Table {
        Table {
            generation: 0,
            flows: Vec::new(),
            index: FxHashMap::default(),
            has_ssm: false,
        }
    }

    /// Compiles `config`, reusing sockets and counters of `previous` where a flow or output is
    /// unchanged.
    pub fn compile(
        config: &Config,
        env: &mut dyn Env,
        previous: Option<&Table>,
        generation: u64,
    ) -> Result<Table, TableError> {
        let mut ifindexes: HashMap<&IfName, u32> = HashMap::new();
        fn resolve<'c>(
            cache: &mut HashMap<&'c IfName, u32>,
            env: &mut dyn Env,
            flow: &str,
            name: &'c IfName,
        ) -> Result<u32, TableError> {
            if let Some(&i) = cache.get(name) {
                return Ok(i);
            }
            let i = env
                .ifindex(name)
                .map_err(|source| TableError::NoInterface {
                    flow: flow.to_string(),
                    interface: name.to_string(),
                    source,
                })?;
            cache.insert(name, i);
            Ok(i)
        }

        let mode = config.relay.egress;
        let mut flows = Vec::with_capacity(config.flows.len());
        let mut index = FxHashMap::default();
        for flow in &config.flows {
            let ifindex = resolve(&mut ifindexes, env, &flow.name, &flow.input.interface)?;
            let old = previous.and_then(|p| p.flow_by_name(&flow.name));
            let stats = match old {
                Some(o) if o.spec.input == flow.input && o.ifindex == ifindex => o.stats.clone(),
                _ => Arc::default(),
            };
            let mut outputs = Vec::with_capacity(flow.outputs.len());
            for out in &flow.outputs {
                let out_ifindex = resolve(&mut ifindexes, env, &flow.name, &out.interface)?;
                let reused = old.and_then(|o| {
                    o.outputs.iter().find(|e| {
                        e.spec == *out && e.ifindex == out_ifindex && e.socket.mode() == mode
                    })
                });
                let (socket, stats) = match reused {
                    Some(e) => (e.socket.clone(), e.stats.clone()),
                    None => {
                        let socket = env.open_output(out, out_ifindex, mode).map_err(|source| {
                            TableError::OutputSocket {
                                flow: flow.name.clone(),
                                interface: out.interface.to_string(),
                                group: out.group,
                                port: out.port,
                                source,
                            }
                        })?;
                        (Arc::new(socket), Arc::default())
                    }
                };
                outputs.push(OutputEntry {
                    spec: out.clone(),
                    ifindex: out_ifindex,
                    socket,
                    stats,
                });
            }
            let key = Key {
                ifindex,
                group: u32::from(flow.input.group),
                port: flow.input.port,
                source: flow.input.source.map_or(0, u32::from),
            };
            // Validation already rejected duplicate inputs; the first flow wins regardless.
            index.entry(key).or_insert(flows.len() as u32);
            flows.push(FlowEntry {
                spec: flow.clone(),
                ifindex,
                stats,
                outputs,
            });
        }
        let has_ssm = flows.iter().any(|f| f.spec.input.source.is_some());
        Ok(Table {
            generation,
            flows,
            index,
            has_ssm,
        })
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
        self.flows.iter().find(|f| f.spec.name == name)
    }

    /// The flow a datagram belongs to: a source-specific flow for its source if there is one,
    /// else the any-source flow for its group and port.
    #[inline]
    pub fn lookup(&self, ifindex: u32, src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Option<u32> {
        let mut key = Key {
            ifindex,
            group: u32::from(dst),
            port,
            source: 0,
        };
        if self.has_ssm {
            key.source = u32::from(src);
            if let Some(&i) = self.index.get(&key) {
                return Some(i);
            }
            key.source = 0;
        }
        self.index.get(&key).copied()
    }

    /// Input interfaces in use, by index.
    pub fn input_ifindexes(&self) -> BTreeSet<u32> {
        self.flows.iter().map(|f| f.ifindex).collect()
    }

    /// The memberships the inputs need, one per distinct (interface, group, source).
    pub fn memberships(&self) -> BTreeSet<Membership> {
        self.flows
            .iter()
            .map(|f| Membership {
                ifindex: f.ifindex,
                group: f.spec.input.group,
                source: f.spec.input.source,
            })
            .collect()
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
        self.flows
            .iter()
            .find(|f| f.ifindex == ifindex)
            .map(|f| &f.spec.input.interface)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Interfaces `ethN` have index N+1; sockets are plain unconnected UDP sockets.
    #[derive(Default)]
    struct FakeEnv {
        opened: usize,
    }

    impl Env for FakeEnv {
        fn ifindex(&mut self, name: &IfName) -> io::Result<u32> {
            name.as_str()
                .strip_prefix("eth")
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| n + 1)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
        }
        fn open_output(
            &mut self,
            _: &config::Output,
            _: u32,
            mode: EgressMode,
        ) -> io::Result<OutputSocket> {
            self.opened += 1;
            OutputSocket::unconnected_for_tests(mode)
        }
    }

    fn config(src: &str) -> Config {
        Config::parse(src, Path::new("test.toml")).expect("valid config")
    }

    const TWO_FLOWS: &str = r#"
        [[flow]]
        name = "a"
        input = { interface = "eth0", group = "239.1.1.1", port = 5001 }
        outputs = [ { interface = "eth1", group = "239.9.9.9", port = 5099 } ]
        [[flow]]
        name = "b"
        input = { interface = "eth0", group = "239.1.1.2", port = 5001, source = "10.0.0.5" }
        outputs = [ { interface = "eth1", group = "239.9.9.10", port = 5099 },
                    { interface = "eth2", group = "239.9.9.10", port = 5099 } ]
        [[flow]]
        name = "c"
        input = { interface = "eth0", group = "239.1.1.2", port = 5001 }
        outputs = [ { interface = "eth1", group = "239.9.9.11", port = 5099 } ]
    "#;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn lookup_matches_interface_group_port_and_prefers_the_source_specific_flow() {
        let t = Table::compile(&config(TWO_FLOWS), &mut FakeEnv::default(), None, 1).unwrap();
        let any = ip("10.9.9.9");
        assert_eq!(t.lookup(1, any, ip("239.1.1.1"), 5001), Some(0));
        assert_eq!(
            t.lookup(2, any, ip("239.1.1.1"), 5001),
            None,
            "wrong interface"
        );
        assert_eq!(t.lookup(1, any, ip("239.1.1.1"), 5002), None, "wrong port");
        assert_eq!(t.lookup(1, any, ip("239.1.1.3"), 5001), None, "wrong group");
        assert_eq!(
            t.lookup(1, ip("10.0.0.5"), ip("239.1.1.2"), 5001),
            Some(1),
            "SSM flow"
        );
        assert_eq!(
            t.lookup(1, any, ip("239.1.1.2"), 5001),
            Some(2),
            "other sources: ASM flow"
        );
        assert_eq!(t.flow(1).unwrap().outputs.len(), 2);
        assert_eq!(t.input_ifindexes().into_iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.memberships().len(), 3);
    }

    #[test]
    fn an_ssm_only_flow_does_not_match_other_sources() {
        let src = r#"
            [[flow]]
            name = "s"
            input = { interface = "eth0", group = "232.1.1.1", port = 9, source = "10.0.0.1" }
            outputs = [ { interface = "eth1", group = "239.9.9.9", port = 9 } ]
        "#;
        let t = Table::compile(&config(src), &mut FakeEnv::default(), None, 1).unwrap();
        assert_eq!(t.lookup(1, ip("10.0.0.1"), ip("232.1.1.1"), 9), Some(0));
        assert_eq!(t.lookup(1, ip("10.0.0.2"), ip("232.1.1.1"), 9), None);
    }

    #[test]
    fn unchanged_flows_and_outputs_keep_counters_and_sockets_across_compiles() {
        let mut env = FakeEnv::default();
        let old = Table::compile(&config(TWO_FLOWS), &mut env, None, 1).unwrap();
        assert_eq!(env.opened, 4);
        old.flows[0].stats.add(100, 1);
        let changed = TWO_FLOWS.replace("239.9.9.11", "239.9.9.12");
        let new = Table::compile(&config(&changed), &mut env, Some(&old), 2).unwrap();
        assert_eq!(
            env.opened, 5,
            "only flow c's changed output gets a new socket"
        );
        assert!(Arc::ptr_eq(&old.flows[0].stats, &new.flows[0].stats));
        assert!(Arc::ptr_eq(
            &old.flows[1].outputs[1].socket,
            &new.flows[1].outputs[1].socket
        ));
        assert!(
            Arc::ptr_eq(&old.flows[2].stats, &new.flows[2].stats),
            "input unchanged"
        );
        assert!(!Arc::ptr_eq(
            &old.flows[2].outputs[0].stats,
            &new.flows[2].outputs[0].stats
        ));
        assert_eq!(new.generation(), 2);
    }

    #[test]
    fn changing_the_egress_mode_reopens_every_output() {
        let mut env = FakeEnv::default();
        let old = Table::compile(&config(TWO_FLOWS), &mut env, None, 1).unwrap();
        assert_eq!(old.flows[0].outputs[0].socket.mode(), EgressMode::Packet);
        let udp = format!("[relay]\negress = \"udp\"\n{TWO_FLOWS}");
        let new = Table::compile(&config(&udp), &mut env, Some(&old), 2).unwrap();
        assert_eq!(env.opened, 8, "all four outputs opened again");
        assert_eq!(new.flows[0].outputs[0].socket.mode(), EgressMode::Udp);
        assert!(
            Arc::ptr_eq(&old.flows[0].stats, &new.flows[0].stats),
            "flow counters stay: the input did not change"
        );
    }

    #[test]
    fn a_missing_interface_names_the_flow() {
        let src = TWO_FLOWS.replace("eth2", "nope0");
        let err = Table::compile(&config(&src), &mut FakeEnv::default(), None, 1).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("flow `b`") && msg.contains("`nope0` does not exist"),
            "{msg}"
        );
    }
}
