//! The running relay: the published table, the workers with their rings, and the group
//! memberships — started from a config, snapshotted for stats, and shut down in order.
//!
//! Invariants:
//! - every input interface of the published table has exactly one ring on every worker, all
//!   in one fanout group for that interface;
//! - rings are opened before groups are joined, so no packet the join attracts is missed;
//! - on shutdown, workers stop before groups are left.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{self, Config};
use crate::egress::InterfaceSockets;
use crate::ingress::{Fanout, Ring, RingSpec};
use crate::limits::RingBudget;
use crate::links::{LinkFacts, LinkView};
use crate::membership::Memberships;
use crate::ports::{Port, Ports};
use crate::role::Role;
use crate::stats::{FlowSnapshot, InputSnapshot, OutputSnapshot, Snapshot, WorkerStats};
use crate::table::{Env, Table, TableError};
use crate::worker::{Command, OnExit, Worker};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("cannot open receive ring on `{interface}`: {source} (mcr needs root or CAP_NET_RAW)")]
    Ring {
        interface: String,
        source: io::Error,
    },
    #[error("{0}")]
    RingMemory(String),
    #[error("cannot start worker {id}: {source}")]
    Worker { id: usize, source: io::Error },
    #[error("cannot join {group} on `{interface}`: {source}")]
    Join {
        interface: String,
        group: std::net::IpAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Port(#[from] crate::ports::PortError),
}

/// Why a reload was rejected; the running table stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("flow {flow:?} merges its inputs, which needs one worker, and this relay runs {workers}: set [relay] workers = 1 and restart (systemctl restart mcr), or remove the merge; the running table is kept")]
    MergeWorkers { flow: String, workers: usize },
    #[error(transparent)]
    Start(#[from] StartError),
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub generation: u64,
    pub flows_added: usize,
    pub flows_removed: usize,
    pub flows_changed: usize,
    pub joined: usize,
    pub left: usize,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generation {}: flows +{} -{} ~{}, groups joined {} left {}",
            self.generation,
            self.flows_added,
            self.flows_removed,
            self.flows_changed,
            self.joined,
            self.left
        )
    }
}

/// The host: real interfaces and real sockets.
pub struct Host;

impl Env for Host {
    fn open_interface(
        &mut self,
        name: &config::IfName,
        link: &LinkFacts,
        mode: config::EgressMode,
        v6: bool,
        source: Option<std::net::IpAddr>,
    ) -> io::Result<InterfaceSockets> {
        InterfaceSockets::open(name.as_str(), link, mode, v6, source)
    }

    fn open_routed(
        &mut self,
        mode: config::EgressMode,
        v6: bool,
        source: Option<std::net::IpAddr>,
    ) -> io::Result<InterfaceSockets> {
        InterfaceSockets::open_routed(mode, v6, source)
    }
}

pub struct Relay {
    table: Arc<ArcSwap<Table>>,
    /// Active or standby: read by every worker once per batch.
    role: Arc<Role>,
    workers: Vec<Worker>,
    /// Outlives the workers, so the final snapshot still has their counters.
    worker_stats: Vec<Arc<WorkerStats>>,
    memberships: Memberships,
    /// The UDP ports of unicast inputs (see `ports`).
    ports: Ports,
    /// Per input interface with rings: their geometry (one ring per worker).
    rings: HashMap<u32, RingSpec>,
    /// What all rings together may use (`[relay] ring_memory`, as of the last start or
    /// reload).
    ring_budget: RingBudget,
    /// (interface, MTU) pairs already warned about, so a warning is logged once.
    mtu_warned: std::collections::HashSet<(u32, u32)>,
}

impl Relay {
    /// Compiles `config` against `links`, opens rings, starts `workers` threads and joins the
    /// input groups. Flows whose interfaces are missing wait; they do not stop the start.
    /// `on_worker_exit` is told when a worker ends by itself (see [`OnExit`]).
    pub fn start(
        config: &Config,
        links: &LinkView,
        workers: usize,
        on_worker_exit: OnExit,
    ) -> Result<Relay, StartError> {
        let table = Table::compile(config, links, &mut Host, None, 1)?;
        let inputs = table.input_ifindexes();
        let ring_budget = RingBudget {
            total: config.relay.ring_memory,
        };
        let mut rings: Vec<Vec<Ring>> = (0..workers).map(|_| Vec::new()).collect();
        let mut specs = HashMap::new();
        for &ifindex in &inputs {
            let in_use = ring_bytes(&specs, workers);
            let (spec, opened) =
                open_rings(&table, ifindex, workers, ring_budget, inputs.len(), in_use)?;
            specs.insert(ifindex, spec);
            for (w, ring) in opened.into_iter().enumerate() {
                rings[w].push(ring);
            }
        }
        let shared = Arc::new(ArcSwap::from_pointee(table));
        let role = Arc::new(Role::new(config.relay.role_standby));
        let mut started = Vec::with_capacity(workers);
        for (id, rings) in rings.into_iter().enumerate() {
            let w = Worker::spawn(
                id,
                shared.clone(),
                role.clone(),
                rings,
                on_worker_exit.clone(),
            )
            .map_err(|source| StartError::Worker { id, source })?;
            started.push(w);
        }
        let mut relay = Relay {
            table: shared,
            role,
            worker_stats: started.iter().map(|w| w.stats().clone()).collect(),
            workers: started,
            memberships: Memberships::kernel(),
            ports: Ports::default(),
            rings: specs,
            ring_budget,
            mtu_warned: Default::default(),
        };
        let table = relay.table.load_full();
        for m in table.memberships() {
            if let Err(source) = relay.memberships.join(m) {
                let interface = table.input_name(m.ifindex).map(|n| n.to_string());
                relay.shutdown();
                return Err(StartError::Join {
                    interface: interface.unwrap_or_default(),
                    group: m.group,
                    source,
                });
            }
        }
        if let Err(e) = relay
            .ports
            .bind_new(&unicast_ports(&table, config.relay.local_delivery))
        {
            relay.shutdown();
            return Err(e.into());
        }
        Ok(relay)
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Active (forwards) or standby (receives, sends nothing).
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// Applies `config` live against the interfaces as `links` describes them (a config
    /// reload, or the same config after the links changed): compile, open rings for new
    /// interfaces, join new groups, publish the table, leave groups no longer used, release
    /// unused rings. Any failure before the publish undoes what was done and leaves the
    /// running table untouched.
    pub fn reload(
        &mut self,
        config: &Config,
        links: &LinkView,
    ) -> Result<ReloadSummary, ReloadError> {
        use crate::reload::{diff, Change};
        if let Some(f) = config.flows.iter().find(|f| f.merge) {
            if self.workers.len() > 1 {
                return Err(ReloadError::MergeWorkers {
                    flow: f.name.clone(),
                    workers: self.workers.len(),
                });
            }
        }
        let old = self.table.load_full();
        let new = Table::compile(config, links, &mut Host, Some(&old), old.generation() + 1)?;
        let changes = diff(&old.needs(), &new.needs());
        let inputs = new.input_ifindexes();
        let budget = RingBudget {
            total: config.relay.ring_memory,
        };
        let mut staying: HashMap<u32, RingSpec> = (self.rings.iter())
            .filter(|(ifindex, _)| inputs.contains(ifindex))
            .map(|(&ifindex, &spec)| (ifindex, spec))
            .collect();
        let mut rings = Vec::new();
        for change in &changes {
            if let Change::AddInterface(ifindex) = *change {
                let workers = self.workers.len();
                let in_use = ring_bytes(&staying, workers);
                let (spec, opened) =
                    open_rings(&new, ifindex, workers, budget, inputs.len(), in_use)?;
                staying.insert(ifindex, spec);
                rings.push((ifindex, spec, opened));
            }
        }
        let mut joined = Vec::new();
        for change in &changes {
            if let Change::Join(m) = *change {
                if let Err(source) = self.memberships.join(m) {
                    for &m in &joined {
                        let _ = self.memberships.leave(m);
                    }
                    let interface = new.input_name(m.ifindex).map(|n| n.to_string());
                    return Err(StartError::Join {
                        interface: interface.unwrap_or_default(),
                        group: m.group,
                        source,
                    }
                    .into());
                }
                joined.push(m);
            }
        }
        let default_local = config.relay.local_delivery;
        let unused_ports = match self.ports.bind_new(&unicast_ports(&new, default_local)) {
            Ok(unused) => unused,
            Err(e) => {
                for &m in &joined {
                    let _ = self.memberships.leave(m);
                }
                return Err(StartError::from(e).into());
            }
        };
        // Committed: nothing below can fail, so the budget the new rings were sized by is now
        // the one in force.
        self.ring_budget = budget;
        for (ifindex, spec, per_worker) in rings {
            self.rings.insert(ifindex, spec);
            for (worker, ring) in self.workers.iter().zip(per_worker) {
                worker.send(Command::AddRing(ring));
            }
        }
        self.warn_outgrown_rings(&new);
        let mut summary = ReloadSummary {
            generation: new.generation(),
            joined: joined.len(),
            ..ReloadSummary::default()
        };
        for f in new.flows() {
            match old.flow_by_name(&f.spec.name) {
                None => summary.flows_added += 1,
                Some(o) if o.spec != f.spec => summary.flows_changed += 1,
                Some(_) => {}
            }
        }
        summary.flows_removed = old
            .flows()
            .iter()
            .filter(|o| new.flow_by_name(&o.spec.name).is_none())
            .count();
        let new = Arc::new(new);
        self.table.store(new.clone());
        for worker in &self.workers {
            worker.wake();
        }
        self.ports.release(&unused_ports);
        self.refilter(&old, &new);
        for change in &changes {
            match *change {
                Change::Leave(m) => match self.memberships.leave(m) {
                    Ok(_) => summary.left += 1,
                    // A deleted interface took its memberships with it.
                    Err(_) if !new.has_interface(m.ifindex) => summary.left += 1,
                    Err(e) => log::warn!("leaving {} on ifindex {}: {e}", m.group, m.ifindex),
                },
                Change::RemoveInterface(ifindex) => {
                    self.rings.remove(&ifindex);
                    for worker in &self.workers {
                        worker.send(Command::RemoveRing(ifindex));
                    }
                }
                _ => {}
            }
        }
        Ok(summary)
    }

    /// Gives the rings of every interface that kept its rings but whose unicast inputs
    /// changed the socket filter for the new ones. After the publish: a new input's first
    /// datagrams may meet the old filter (and the stack, which drops them), a removed one's
    /// last the new table (`no_match`).
    fn refilter(&self, old: &Table, new: &Table) {
        for &ifindex in self.rings.keys() {
            let unicast = new.unicast_inputs(ifindex);
            if !old.has_interface(ifindex) || old.unicast_inputs(ifindex) == unicast {
                continue;
            }
            let filter = Arc::new(crate::ingress::filter::program(&unicast));
            for worker in &self.workers {
                worker.send(Command::SetFilter(ifindex, filter.clone()));
            }
        }
    }

    /// Logs, once per (interface, MTU), an input whose MTU grew past what its ring slots
    /// hold: larger datagrams arrive cut short and are counted `truncated` until a restart
    /// opens rings sized for the new MTU (rings are not replaced live: a second ring on the
    /// interface would deliver some datagrams twice, closing the old one first would lose
    /// some).
    fn warn_outgrown_rings(&mut self, table: &Table) {
        for (&ifindex, spec) in &self.rings {
            let max = spec.max_mtu();
            let Some(name) = table.input_name(ifindex) else {
                continue;
            };
            let Some(Some(facts)) = table.links().get(name) else {
                continue;
            };
            if facts.ifindex == ifindex
                && facts.mtu > max
                && self.mtu_warned.insert((ifindex, facts.mtu))
            {
                log::warn!(
                    "input `{name}`: MTU raised to {} but its receive rings hold frames for MTU {max}; \
                     larger datagrams are counted `truncated` until mcr restarts (systemctl restart mcr)",
                    facts.mtu
                );
            }
        }
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Memberships held, per interface index.
    pub fn joined(&self) -> HashMap<u32, usize> {
        let mut per = HashMap::new();
        for m in self.memberships.held() {
            *per.entry(m.ifindex).or_insert(0) += 1;
        }
        per
    }

    /// Bytes held by receive rings, and the `ring_memory` budget they are held to.
    pub fn ring_memory(&self) -> (u64, u64) {
        (
            ring_bytes(&self.rings, self.workers.len()),
            self.ring_budget.total,
        )
    }

    pub fn helper_sockets(&self) -> usize {
        self.memberships.sockets()
    }

    /// Every counter, now.
    pub fn snapshot(&self) -> Snapshot {
        let table = self.table.load();
        let now_ns = crate::stats::monotonic_ns();
        let mut snap = Snapshot {
            flows: table
                .flows()
                .iter()
                .map(|f| {
                    let mut s = FlowSnapshot::read(&f.spec.name, &f.stats, now_ns);
                    s.state = f.state(now_ns).name().to_string();
                    s.rtp = f.rtp.as_ref().map(|(m, _)| m.snapshot());
                    if f.spec.merge {
                        s.inputs = InputSnapshot::read_all(
                            f.inputs
                                .iter()
                                .map(|i| (&i.spec, &*i.stats, f.input_state(i, now_ns).name())),
                        );
                        s.recovered = s.inputs.iter().map(|i| i.only_this_path).sum();
                    }
                    s.outputs = f
                        .outputs
                        .iter()
                        .map(|o| OutputSnapshot {
                            egress: o.path.as_ref().map_or("", |p| p.path_name()).to_string(),
                            state: match &o.waiting {
                                None => "up".to_string(),
                                Some(w) => format!("waiting: {}", w.describe()),
                            },
                            ..OutputSnapshot::read(
                                o.spec.interface_name(),
                                o.spec.group,
                                o.spec.port,
                                &o.stats,
                            )
                        })
                        .collect();
                    s
                })
                .collect(),
            ..Snapshot::default()
        };
        snap.add_workers(self.worker_stats.iter().map(Arc::as_ref));
        snap
    }

    /// Stops the workers, leaves every group, and returns the final counters.
    pub fn shutdown(mut self) -> Snapshot {
        for w in self.workers.drain(..) {
            w.stop();
        }
        let snap = self.snapshot();
        for m in self.memberships.held() {
            if let Err(e) = self.memberships.leave(m) {
                log::warn!("leaving {} on ifindex {}: {e}", m.group, m.ifindex);
            }
        }
        snap
    }
}

/// Bytes the rings in `specs` hold, one per worker each.
fn ring_bytes(specs: &HashMap<u32, RingSpec>, workers: usize) -> u64 {
    specs.values().map(|s| s.bytes() as u64).sum::<u64>() * workers as u64
}

/// One ring per worker on `ifindex`, in one new fanout group, and the spec they share: as
/// large as `budget` allows with `inputs` input interfaces and `in_use` bytes held already.
fn open_rings(
    table: &Table,
    ifindex: u32,
    workers: usize,
    budget: RingBudget,
    inputs: usize,
    in_use: u64,
) -> Result<(RingSpec, Vec<Ring>), StartError> {
    let name = table.input_name(ifindex);
    let mtu = name
        .and_then(|n| table.links().get(n)?.as_ref())
        .map_or(1500, |f| f.mtu);
    let name = name.map_or_else(String::new, |n| n.to_string());
    let spec = budget
        .spec(mtu, workers, inputs, in_use)
        .map_err(StartError::RingMemory)?;
    if spec.frame_count < crate::limits::RING_FRAMES {
        log::info!(
            "input `{name}`: receive rings of {} frames ({} each, {workers} worker(s)) to stay \
             within ring_memory = \"{}\"",
            spec.frame_count,
            crate::config::format_size(spec.bytes() as u64),
            crate::config::format_size(budget.total)
        );
    }
    let mut fanout = Fanout::for_workers(workers);
    let filter = crate::ingress::filter::program(&table.unicast_inputs(ifindex));
    let rings = (0..workers)
        .map(|_| {
            Ring::open(ifindex, spec, &mut fanout, &filter).map_err(|source| StartError::Ring {
                interface: name.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((spec, rings))
}

/// The ports `table`'s unicast inputs need held: those whose flow (else `[relay]`,
/// `default_local`) does not leave them to a local process, on interfaces that exist.
fn unicast_ports(table: &Table, default_local: bool) -> BTreeSet<Port> {
    table
        .inputs()
        .filter(|(f, i)| i.spec.unicast && !f.spec.local_delivery.unwrap_or(default_local))
        .filter_map(|(_, i)| Some((i.spec.group, i.spec.port, i.ifindex?)))
        .collect()
}
