//! `mcr run`: load the config, start the relay, then serve signals, file changes, control
//! requests, metric scrapes and stats ticks until told to stop.
//!
//! The main thread is the control thread: signals (a `signal-hook` thread), file events (the
//! `notify` thread), control-socket requests and scrapes all arrive as [`Event`]s on one
//! channel, so every read and change of relay state happens on this one thread.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use signal_hook::consts::SIGHUP;

use crate::config::{Config, IfName, RelaySettings};
use crate::control::{self, Call, Command, ReloadOutcome, Reply, Status};
use crate::limits::Descriptors;
use crate::links;
use crate::membership::Limits;
use crate::querier::Queriers;
use crate::relay::Relay;
use crate::stackdrop::{Drops, StackDrop};
use crate::stats::Snapshot;
use crate::table::interface_names;

mod start;
use start::{
    announce_ready, fit_descriptors, open_queriers, ready_status, spawn_signals, watch_links,
    worker_count, worker_exit_events,
};

/// Options of `mcr run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Write a JSON snapshot of all counters here at every stats tick and at exit.
    pub stats_json: Option<PathBuf>,
}

/// Why `mcr run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Start(#[from] crate::relay::StartError),
    #[error("signal handling: {0}")]
    Signals(std::io::Error),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Privilege(#[from] crate::privilege::PrivilegeError),
    #[error("worker {0} stopped ({1}); exiting so the service manager restarts mcr")]
    WorkerDied(usize, String),
    #[error("{0}")]
    Descriptors(String),
}

enum Event {
    Signal(i32),
    /// The config file was completely rewritten, renamed over, or re-linked.
    FileChanged,
    Control(Call),
    Scrape(mpsc::SyncSender<(Snapshot, Status)>),
    /// rtnetlink reported a link or address change (or lost messages).
    LinksChanged,
    /// A worker's loop ended by itself: an error from poll or io_uring, or a panic.
    WorkerDied(usize, String),
    /// An IGMP query arrived on this interface index from this address.
    QueryHeard(u32, std::net::Ipv4Addr),
}

/// How long file events are collected before one reload runs. Only complete writes count
/// (close after write, rename onto the file, new symlink), so this only has to merge the
/// rare burst of several complete writes; it adds directly to reload latency (target
/// < 100 ms from rename to the first packet of a new flow), so it is short.
pub const DEBOUNCE: Duration = Duration::from_millis(25);

/// How long link events are collected before the interfaces are re-read: creating or moving
/// an interface sends a burst of messages (new link, up, addresses) within a few ms.
const LINK_SETTLE: Duration = Duration::from_millis(20);
/// When a link change could not be applied (a ring or a join refused), try again after this.
const LINK_RETRY: Duration = Duration::from_secs(1);

/// How often counters are sampled for the rates `mcr stats` shows.
const RATE_SAMPLE: Duration = Duration::from_secs(1);

/// The control thread's own state next to the relay.
struct State {
    config_path: PathBuf,
    /// The config behind the running table; link changes recompile it.
    config: Config,
    started: Instant,
    /// Content of the file behind the running table; an identical file is a no-op.
    applied: Vec<u8>,
    /// The latest file rejected for its content (parse or validation errors) and those
    /// errors. The same bytes again — the file watch and `mcr reload` both seeing one
    /// save — are the same rejection: answered again, logged and counted once.
    rejected: Option<(Vec<u8>, Vec<String>)>,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload: Option<String>,
    stats_interval: Option<Duration>,
    /// The latest counter sample, for rates.
    sample: Option<(Snapshot, Instant)>,
    /// Flow and output states at the latest sample, for logging changes once.
    states: HashMap<String, String>,
    /// The IGMP querier's elections and socket; `None` with `querier = "off"`.
    queriers: Option<Queriers>,
    /// The `[[flow]]` blocks of the file read last, so a reload parses only what changed.
    parse_cache: crate::config::ParseCache,
    /// The nftables table that keeps relayed datagrams out of the IP stack.
    stack_drop: StackDrop,
    /// When an active role taken with a lease falls back to standby (see `role`).
    role_lease: Option<Instant>,
}

impl State {
    fn status(&self, relay: &Relay) -> Status {
        let table = relay.table();
        let mut groups = std::collections::BTreeMap::new();
        for (ifindex, n) in relay.joined() {
            let name = table
                .input_name(ifindex)
                .map_or_else(|| format!("ifindex-{ifindex}"), |n| n.to_string());
            groups.insert(name, n);
        }
        let mut status = Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            config_path: self.config_path.display().to_string(),
            config_hash: control::fnv1a(&self.applied),
            generation: table.generation(),
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            last_reload: self.last_reload.clone(),
            workers: relay.worker_count(),
            groups,
            helper_sockets: relay.helper_sockets(),
            ring_bytes: relay.ring_memory().0,
            ring_memory: relay.ring_memory().1,
            interfaces: table
                .links()
                .iter()
                .map(|(name, f)| (name.to_string(), f.as_ref().map(Into::into)))
                .collect(),
            ..Status::default()
        };
        status.set_health(&relay.snapshot());
        if let Some(q) = &self.queriers {
            status.queriers = q.describe(Instant::now());
        }
        status.ingress_drop = self.stack_drop.describe();
        status.role = relay.role().name().to_string();
        status.role_lease_seconds = self
            .role_lease
            .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64());
        status.ingress_drop_keys = self.stack_drop.keys();
        status
    }

    /// Logs every flow and output whose state changed since the previous sample (not the
    /// first state seen: waiting interfaces are logged by [`log_waiting`], and every flow
    /// starts idle).
    fn note_states(&mut self, snap: &Snapshot) {
        let mut now = HashMap::with_capacity(self.states.len());
        for f in &snap.flows {
            let key = format!("flow {}", f.name);
            if let Some(old) = self.states.get(&key).filter(|&old| *old != f.state) {
                log::info!("{key}: {old} -> {}", f.state);
            }
            now.insert(key, f.state.clone());
            for o in &f.outputs {
                let key = format!(
                    "flow {} output {} {}:{}",
                    f.name, o.interface, o.group, o.port
                );
                if let Some(old) = self.states.get(&key).filter(|&old| *old != o.state) {
                    log::info!("{key}: {old} -> {}", o.state);
                }
                now.insert(key, o.state.clone());
            }
        }
        self.states = now;
    }

    /// Counters now, with rates over the latest sampling period.
    fn stats(&self, relay: &Relay) -> Snapshot {
        let mut snap = relay.snapshot();
        if let Some((prev, at)) = &self.sample {
            snap.set_rates(prev, at.elapsed());
        }
        snap
    }

    /// Reads, validates and applies the config file; on any error the running table stays.
    fn reload(&mut self, relay: &mut Relay) -> ReloadOutcome {
        let started = Instant::now();
        let path = self.config_path.clone();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                let errors = vec![format!("{}: cannot read: {e}", path.display())];
                return self.count(ReloadOutcome::Rejected { errors });
            }
        };
        if bytes == self.applied {
            log::info!("reload: {} unchanged, nothing to do", path.display());
            return ReloadOutcome::Unchanged;
        }
        if let Some((_, errors)) = self.rejected.as_ref().filter(|(b, _)| *b == bytes) {
            log::info!(
                "reload: {} is the file already rejected, nothing to do",
                path.display()
            );
            let errors = errors.clone();
            return ReloadOutcome::Rejected { errors };
        }
        let outcome = self.apply(relay, &path, bytes);
        if matches!(outcome, ReloadOutcome::Applied { .. }) {
            log::debug!(
                "reload took {:.1} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        self.count(outcome)
    }

    /// Counts and logs an attempt that read new bytes (or could not read the file).
    fn count(&mut self, outcome: ReloadOutcome) -> ReloadOutcome {
        match &outcome {
            ReloadOutcome::Applied { summary } => {
                self.reloads_ok += 1;
                self.last_reload = Some(format!("applied: {summary}"));
                log::info!("reloaded: {summary}");
            }
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Rejected { errors } => {
                self.reloads_failed += 1;
                self.last_reload = Some(format!("rejected: {}", errors.join("; ")));
                for e in errors {
                    log::error!("reload rejected: {e}");
                }
            }
        }
        outcome
    }

    /// Parses `bytes` and applies them to the relay; the running table stays on any error.
    fn apply(&mut self, relay: &mut Relay, path: &Path, bytes: Vec<u8>) -> ReloadOutcome {
        let rejected = |errors: Vec<String>| ReloadOutcome::Rejected { errors };
        let config = match self.parse_cache.parse_bytes(&bytes, path) {
            Ok(c) => {
                c.warnings.iter().for_each(|w| log::warn!("{w}"));
                c
            }
            Err(errors) => {
                let errors: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
                // Only content errors are remembered: the same bytes fail the same way.
                // A failure to apply (a join refused) may pass on the next try.
                self.rejected = Some((bytes, errors.clone()));
                return rejected(errors);
            }
        };
        let need = Descriptors::estimate(&config, relay.worker_count(), Limits::read());
        if let Err(e) = need.fit(crate::limits::open_files()) {
            return rejected(vec![format!("{}: {e}", path.display())]);
        }
        warn_unapplied(&self.config.relay, &config.relay, relay);
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::MonotonicUsec(i128::from(crate::stats::monotonic_ns() / 1000)),
        ]);
        let before = relay.table().missing();
        let links = links::read(interface_names(&config));
        let result = relay.reload(&config, &links);
        log_waiting(&before, &relay.table().missing());
        let summary = ready_status(relay);
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&summary),
        ]);
        match result {
            Ok(summary) => {
                self.applied = bytes;
                self.rejected = None;
                self.stats_interval = config.relay.stats_interval;
                self.config = config;
                self.sync_queriers(relay);
                self.sync_stack_drop(relay);
                ReloadOutcome::Applied {
                    summary: summary.to_string(),
                }
            }
            Err(e) => rejected(vec![format!("{}: {e}", path.display())]),
        }
    }
}

impl State {
    /// Starts or ends querier elections to match the running table's IPv4 input interfaces
    /// (IGMP only: IPv6 inputs rely on the network's MLD querier).
    fn sync_queriers(&mut self, relay: &Relay) {
        let Some(q) = &mut self.queriers else { return };
        let table = relay.table();
        let inputs = table
            .inputs()
            .filter(|(_, i)| i.spec.group.is_ipv4() && !i.spec.unicast)
            .filter_map(|(_, i)| Some((i.ifindex?, i.spec.interface.clone())))
            .collect();
        q.sync(&inputs, Instant::now());
    }

    fn sync_stack_drop(&mut self, relay: &Relay) {
        sync_stack_drop(
            &mut self.stack_drop,
            relay,
            self.config.relay.local_delivery,
        );
    }

    /// Re-reads every interface the running config names and, if anything the table depends
    /// on changed, recompiles the same config against them (same all-or-nothing rules as a
    /// reload). Returns false when the change could not be applied and should be retried.
    fn follow_links(&mut self, relay: &mut Relay) -> bool {
        let links = links::read(interface_names(&self.config));
        let table = relay.table();
        if &links == table.links() {
            return true;
        }
        let before = table.missing();
        drop(table);
        match relay.reload(&self.config, &links) {
            Ok(summary) => {
                log::info!("interfaces changed: {summary}");
                self.sync_queriers(relay);
                self.sync_stack_drop(relay);
                log_waiting(&before, &relay.table().missing());
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&ready_status(relay))]);
                true
            }
            Err(e) => {
                log::error!(
                    "interfaces changed but could not be applied: {e}; retrying in {}s",
                    LINK_RETRY.as_secs()
                );
                false
            }
        }
    }
}

/// Makes the ingress drop match the running table: at start and right after every change of
/// it, in the same control-thread step, so no drop outlives the flow it was for.
fn sync_stack_drop(stack_drop: &mut StackDrop, relay: &Relay, default_local: bool) {
    let started = Instant::now();
    stack_drop.sync(Drops::of(&relay.table(), default_local));
    log::debug!(
        "ingress drop synced in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}

impl State {
    /// A control request's role: standby, active until changed, or active for `lease` (then
    /// standby unless renewed). A renewal only moves the deadline.
    fn set_role(
        &mut self,
        relay: &Relay,
        standby: bool,
        lease: Option<Duration>,
    ) -> control::RoleChange {
        self.role_lease = lease.map(|l| Instant::now() + l);
        let mut change = switch_role(relay, standby);
        change.lease_seconds = lease.map(|l| l.as_secs_f64());
        change
    }
}

/// Makes the relay active or standby (see `role`), logs a change and tells systemd.
fn switch_role(relay: &Relay, standby: bool) -> control::RoleChange {
    let changed = relay.role().set_standby(standby);
    let role = relay.role().name();
    if changed {
        if standby {
            log::warn!("role: standby — sending nothing; rings and groups stay, so `mcr active` takes over at once");
        } else {
            log::info!("role: active — forwarding");
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&ready_status(relay))]);
    }
    control::RoleChange {
        role: role.to_string(),
        changed,
        lease_seconds: None,
    }
}

/// Logs interfaces that went missing (and the flows that now wait for them) and those that
/// came back; nothing when the set did not change.
fn log_waiting(before: &BTreeMap<IfName, Vec<String>>, after: &BTreeMap<IfName, Vec<String>>) {
    for (name, flows) in after {
        if before.get(name) != Some(flows) {
            log::warn!(
                "interface `{name}` does not exist; waiting for it: flows {}",
                flows.join(", ")
            );
        }
    }
    for (name, flows) in before {
        if !after.contains_key(name) {
            log::info!(
                "interface `{name}` is here; no longer waiting: flows {}",
                flows.join(", ")
            );
        }
    }
}

pub fn run(opts: &RunOptions) -> Result<(), RunError> {
    let mut parse_cache = crate::config::ParseCache::default();
    let (applied, config) = parse_cache.load(&opts.config)?;
    config.warnings.iter().for_each(|w| log::warn!("{w}"));
    let workers = worker_count(&config);
    if config.relay.user.is_some() && nix::unistd::getuid().is_root() {
        // Before the first thread: threads inherit the bounding set of their creator.
        crate::privilege::cut_bounding_set()?;
    }
    // Before the first thread too, so none holds CAP_NET_ADMIN effective: only the control
    // thread raises it, around an nftables transaction.
    crate::privilege::lower_net_admin();
    let (events, inbox) = mpsc::channel();
    let signal_handle = spawn_signals(events.clone())?;
    // Subscribe to link changes before the interfaces are first read, so none is missed.
    let _links = watch_links(&events);
    let links = links::read(interface_names(&config));
    fit_descriptors(&config, workers)?;
    let mut relay = Relay::start(&config, &links, workers, worker_exit_events(&events))?;
    log_waiting(&BTreeMap::new(), &relay.table().missing());
    let queriers = open_queriers(&config, &events);
    let mut services = match start_services(opts, &config, &events) {
        Ok(s) => s,
        Err(e) => {
            relay.shutdown();
            return Err(e);
        }
    };
    if let Some(user) = &config.relay.user {
        if let Err(e) = crate::privilege::drop_to(user) {
            relay.shutdown();
            return Err(e.into());
        }
        log::info!("running as user {user} with CAP_NET_RAW (and CAP_NET_ADMIN, permitted only)");
    }
    // Before READY=1: ready means the drop is in place too.
    let mut stack_drop = StackDrop::new();
    sync_stack_drop(&mut stack_drop, &relay, config.relay.local_delivery);
    announce_ready(&relay, &config, opts);

    let mut state = State {
        config_path: opts.config.clone(),
        stats_interval: config.relay.stats_interval,
        config,
        started: Instant::now(),
        applied,
        rejected: None,
        reloads_ok: 0,
        reloads_failed: 0,
        last_reload: None,
        sample: None,
        states: HashMap::new(),
        queriers,
        parse_cache,
        stack_drop,
        role_lease: None,
    };
    state.sync_queriers(&relay);
    let ended = serve(&mut state, &mut relay, &mut services, &inbox, opts);
    drop(services);
    if let Err(e) = &ended {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&e.to_string())]);
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    signal_handle.close();
    let snap = relay.shutdown();
    crate::statsfile::write(opts.stats_json.as_deref(), &snap);
    println!("final counters:");
    for line in snap.lines(None) {
        println!("  {line}");
    }
    log::info!(
        "stopped; groups left; reloads: {} applied, {} rejected",
        state.reloads_ok,
        state.reloads_failed
    );
    ended
}

/// What runs beside the relay and ends with it: the file watch and the control socket (the
/// metrics endpoint's thread lives as long as the process).
struct Services {
    watch: Option<crate::watch::ConfigWatch>,
    _control: Option<control::Server>,
}

/// A reload by any trigger (watch, SIGHUP, `mcr reload`): the file watch first follows the
/// config path's symlink chain again, in case a change re-pointed a link, so the next change
/// is seen wherever the chain now leads.
fn reload(state: &mut State, relay: &mut Relay, services: &mut Services) -> ReloadOutcome {
    if let Some(w) = &mut services.watch {
        w.refresh();
    }
    state.reload(relay)
}

fn start_services(
    opts: &RunOptions,
    config: &Config,
    events: &mpsc::Sender<Event>,
) -> Result<Services, RunError> {
    let watcher = if config.relay.watch {
        let events = std::sync::Mutex::new(events.clone());
        crate::watch::ConfigWatch::start(&opts.config, move || {
            if let Ok(tx) = events.lock() {
                let _ = tx.send(Event::FileChanged);
            }
        })
    } else {
        None
    };
    let control_events = std::sync::Mutex::new(events.clone());
    let control = match control::serve(&config.relay.control_socket, move |call| {
        control_events
            .lock()
            .is_ok_and(|tx| tx.send(Event::Control(call)).is_ok())
    }) {
        Ok(server) => Some(server),
        Err(e) => {
            log::warn!(
                "no control socket at {}: {e}; `mcr stats/status/reload` will not reach this relay",
                config.relay.control_socket.display()
            );
            None
        }
    };
    if let Some(addr) = config.relay.metrics {
        let scrape_events = std::sync::Mutex::new(events.clone());
        let scrape = move || {
            let (tx, rx) = mpsc::sync_channel(1);
            scrape_events.lock().ok()?.send(Event::Scrape(tx)).ok()?;
            Some(rx)
        };
        let bound = crate::metrics::serve(addr, scrape)
            .map_err(|source| RunError::Metrics { addr, source })?;
        log::info!("metrics on http://{bound}/metrics");
    }
    Ok(Services {
        watch: watcher,
        _control: control,
    })
}

/// When the control thread next has something to do besides answering events.
struct Timers {
    stats_tick: Option<Instant>,
    sample: Instant,
    reload: Option<Instant>,
    links: Option<Instant>,
}

impl Timers {
    fn next(&self) -> Instant {
        [self.stats_tick, self.reload, self.links, Some(self.sample)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.sample)
    }
}

/// The control thread's loop: every event, every timer, until a stop signal (`Ok`) or a
/// worker that died (`Err`: the relay no longer forwards everything, so it must not go on
/// looking healthy; systemd's `Restart=on-failure` brings a fresh one).
fn serve(
    state: &mut State,
    relay: &mut Relay,
    services: &mut Services,
    inbox: &mpsc::Receiver<Event>,
    opts: &RunOptions,
) -> Result<(), RunError> {
    let mut previous: Option<(Snapshot, Instant)> = None;
    let mut timers = Timers {
        stats_tick: state.stats_interval.map(|i| Instant::now() + i),
        sample: Instant::now(),
        reload: None,
        links: None,
    };
    loop {
        let query = state.queriers.as_ref().and_then(Queriers::next_wake);
        let next = [query, state.role_lease]
            .into_iter()
            .flatten()
            .fold(timers.next(), Instant::min);
        let timeout = next.saturating_duration_since(Instant::now());
        match inbox.recv_timeout(timeout) {
            Ok(Event::Signal(SIGHUP)) => {
                log::info!("SIGHUP: reloading {}", opts.config.display());
                reload(state, relay, services);
            }
            Ok(Event::Signal(s)) => {
                log::info!("signal {s}: shutting down");
                return Ok(());
            }
            Ok(Event::QueryHeard(ifindex, src)) => {
                if let Some(q) = &mut state.queriers {
                    q.heard(ifindex, src, relay.table().links(), Instant::now());
                }
            }
            Ok(Event::WorkerDied(id, reason)) => {
                let e = RunError::WorkerDied(id, reason);
                log::error!("{e}");
                return Err(e);
            }
            Ok(Event::FileChanged) => {
                timers
                    .reload
                    .get_or_insert_with(|| Instant::now() + DEBOUNCE);
            }
            Ok(Event::LinksChanged) => {
                timers
                    .links
                    .get_or_insert_with(|| Instant::now() + LINK_SETTLE);
            }
            Ok(Event::Control(call)) => {
                let reply = match call.command {
                    Command::Stats => Reply::Stats(state.stats(relay)),
                    Command::Status => Reply::Status(Box::new(state.status(relay))),
                    Command::Reload => Reply::Reload(reload(state, relay, services)),
                    Command::Active => Reply::Role(state.set_role(relay, false, None)),
                    Command::Standby => Reply::Role(state.set_role(relay, true, None)),
                    Command::Lease { ms } => {
                        let lease = Duration::from_millis(ms);
                        Reply::Role(state.set_role(relay, false, Some(lease)))
                    }
                };
                let _ = call.reply.send(reply);
            }
            Ok(Event::Scrape(reply)) => {
                let _ = reply.send((state.stats(relay), state.status(relay)));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let now = Instant::now();
        if state.role_lease.is_some_and(|t| t <= now) {
            state.role_lease = None;
            log::warn!("role lease expired without renewal (keepalived gone?): standby");
            switch_role(relay, true);
        }
        if timers.links.is_some_and(|t| t <= now) {
            timers.links = (!state.follow_links(relay)).then(|| now + LINK_RETRY);
        }
        if timers.reload.is_some_and(|t| t <= now) {
            timers.reload = None;
            reload(state, relay, services);
        }
        // A reload by any path may have turned the periodic stats line on or off.
        if timers.stats_tick.is_some() != state.stats_interval.is_some() {
            timers.stats_tick = state.stats_interval.map(|i| now + i);
        }
        if let Some(q) = state
            .queriers
            .as_mut()
            .filter(|_| query.is_some_and(|t| t <= now))
        {
            q.tick(relay.table().links(), now);
        }
        if timers.sample <= now {
            let snap = relay.snapshot();
            state.note_states(&snap);
            state.sample = Some((snap, now));
            timers.sample = now + RATE_SAMPLE;
        }
        if timers.stats_tick.is_some_and(|t| t <= now) {
            let snap = relay.snapshot();
            log_stats(&snap, previous.as_ref());
            crate::statsfile::write(opts.stats_json.as_deref(), &snap);
            previous = Some((snap, now));
            timers.stats_tick = state.stats_interval.map(|i| now + i);
        }
    }
}

/// One line per flow that moved since the previous tick, then the drop totals if any grew.
fn log_stats(snap: &Snapshot, previous: Option<&(Snapshot, Instant)>) {
    let prev = previous.map(|(s, t)| (s, t.elapsed()));
    let lines = snap.lines(prev);
    let (flow_lines, drop_line) = lines.split_at(lines.len() - 1);
    let prev_flows = prev.map(|(p, _)| p.by_name());
    for (line, flow) in flow_lines.iter().zip(&snap.flows) {
        let moved = prev_flows.as_ref().is_none_or(|p| {
            p.get(flow.name.as_str())
                .is_none_or(|f| f.packets != flow.packets)
        });
        if moved && flow.packets > 0 {
            log::info!("{line}");
        }
    }
    if prev.is_none_or(|(p, _)| p.drops != snap.drops || p.frames != snap.frames) {
        log::info!("{}", drop_line[0]);
    }
}

/// Logs each `[relay]` setting whose change this reload cannot apply, and what stays.
fn warn_unapplied(old: &RelaySettings, new: &RelaySettings, relay: &Relay) {
    if (old.querier, old.query_interval) != (new.querier, new.query_interval) {
        log::warn!(
            "querier and query_interval need a restart; keeping querier = {:?}, query_interval = {:?}",
            old.querier.name(),
            humantime::format_duration(old.query_interval).to_string()
        );
    }
    if let Some(w) = new.workers {
        if w.get() != relay.worker_count() {
            log::warn!(
                "workers = {w} needs a restart; keeping {} workers, applying the rest",
                relay.worker_count()
            );
        }
    }
    for key in needs_restart(old, new) {
        log::warn!("[relay] {key} changed: it takes effect at the next restart; applying the rest");
    }
    if old.role_standby != new.role_standby {
        log::warn!(
            "[relay] role only sets the role at start; the running relay stays {} (`mcr active` or `mcr standby` switch it)",
            relay.role().name()
        );
    }
    if old.ring_memory != new.ring_memory {
        log::warn!(
            "[relay] ring_memory changed: rings opened from now on (new input interfaces) \
             are held to it; rings already open keep their size until the next restart"
        );
    }
}

/// `[relay]` keys whose change a reload cannot apply (besides `workers`, `querier` and
/// `query_interval`, logged with the values kept): the listeners, the user switch and the
/// file watch are set up once at start.
fn needs_restart(old: &RelaySettings, new: &RelaySettings) -> Vec<&'static str> {
    [
        ("control_socket", old.control_socket != new.control_socket),
        ("metrics", old.metrics != new.metrics),
        ("user", old.user != new.user),
        ("watch", old.watch != new.watch),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_keys_a_reload_cannot_apply_are_named() {
        let old = RelaySettings::default();
        assert!(needs_restart(&old, &old.clone()).is_empty());
        let new = RelaySettings {
            control_socket: "/run/other.sock".into(),
            watch: false,
            stats_interval: None,
            ..old.clone()
        };
        assert_eq!(needs_restart(&old, &new), ["control_socket", "watch"]);
    }
}
