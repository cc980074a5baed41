//! Limits a config meets at run time: the open-descriptor limit, raised as far as the process
//! may, and the memory of the receive rings; a config that cannot fit is refused at start (or
//! its reload rejected) with what to change, instead of failing half-way with `EMFILE` or
//! `ENOMEM`.

use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHashSet};
use std::io;

use crate::config::{format_size, Config, EgressMode, IfName};
use crate::ingress::RingSpec;
use crate::membership::Limits;

/// Descriptors kept free for everything that is not per flow: the control socket and its
/// clients, the metrics endpoint and its connections, netlink, inotify, the IGMP socket,
/// logging, `/proc` reads during a reload.
pub const SPARE: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_nofile() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard.max(soft))
}

/// The soft open-file limit in force (unlimited if it cannot be read).
pub fn open_files() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(u64::MAX, |(soft, _)| soft)
}

/// What a config's relay holds open, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptors {
    /// Output sockets, per output interface and source address (shared by their outputs): a
    /// UDP socket, plus an `AF_PACKET` socket with `egress = "packet"`.
    pub outputs: u64,
    /// One receive ring per worker per input interface.
    pub rings: u64,
    /// Helper sockets holding the input groups, `limits.max_memberships` groups each.
    pub helpers: u64,
    /// An io_uring and an eventfd per worker.
    pub workers: u64,
}

impl Descriptors {
    /// An upper estimate for `config` run by `workers` workers.
    pub fn estimate(config: &Config, workers: usize, limits: Limits) -> Descriptors {
        let per_output = match config.relay.egress {
            EgressMode::Packet => 2,
            EgressMode::Udp => 1,
        };
        let interfaces: BTreeSet<(Option<&IfName>, bool, _)> = (config.flows.iter())
            .flat_map(|f| {
                (f.outputs.iter()).map(|o| (o.interface.as_ref(), o.group.is_ipv6(), o.source))
            })
            .collect();
        let outputs = interfaces.len();
        let memberships: FxHashSet<_> = (config.flows.iter())
            .flat_map(|f| f.inputs())
            .map(|i| (&i.interface, i.group, i.source))
            .collect();
        let mut groups: FxHashMap<&IfName, usize> = FxHashMap::default();
        for (interface, _, _) in memberships {
            *groups.entry(interface).or_default() += 1;
        }
        let per_socket = limits.max_memberships.max(1);
        let helpers: usize = groups.values().map(|n| n.div_ceil(per_socket)).sum();
        Descriptors {
            outputs: (outputs * per_output) as u64,
            rings: (groups.len() * workers) as u64,
            helpers: helpers as u64,
            workers: 2 * workers as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.outputs + self.rings + self.helpers + self.workers + SPARE
    }

    /// `Err` with what to change when the total does not fit under `limit`.
    pub fn fit(&self, limit: u64) -> Result<(), String> {
        if self.total() <= limit {
            return Ok(());
        }
        Err(format!(
            "this config needs about {} open files ({} for output interfaces' sockets, {} \
             receive rings, {} group-holding sockets, {} for workers, {SPARE} spare) but the \
             limit is {limit}: raise it (LimitNOFILE= in the systemd unit, `ulimit -n` in a \
             shell), or use fewer workers, input groups or interfaces",
            self.total(),
            self.outputs,
            self.rings,
            self.helpers,
            self.workers
        ))
    }
}

/// Frames per receive ring when the budget allows: 4096 × 2 KiB = 8 MiB per (worker,
/// interface) at MTU 1500, which holds ~20 ms at 200k pps while a worker is busy elsewhere.
pub const RING_FRAMES: u32 = 4096;

/// The fewest frames a ring may have: ~2.5 ms at 200k pps. Below this a budget is refused
/// rather than rings opened that overflow at the first scheduling hiccup.
pub const MIN_RING_FRAMES: u32 = 512;

/// `[relay] ring_memory`: how large receive rings may be, all together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingBudget {
    pub total: u64,
}

impl RingBudget {
    /// The geometry of `workers` new rings on an interface of `mtu`, in a table with `inputs`
    /// input interfaces, while rings that stay hold `in_use` bytes: [`RING_FRAMES`] frames
    /// while that fits, else an equal share of the budget (or what is left of it), and `Err`
    /// saying what to change when that is below [`MIN_RING_FRAMES`].
    pub fn spec(
        &self,
        mtu: u32,
        workers: usize,
        inputs: usize,
        in_use: u64,
    ) -> Result<RingSpec, String> {
        let workers = workers.max(1) as u64;
        let share = self.total / (workers * inputs.max(1) as u64);
        let left = self.total.saturating_sub(in_use) / workers;
        let spec = RingSpec::within(mtu, RING_FRAMES, share.min(left));
        if spec.frame_count >= MIN_RING_FRAMES {
            return Ok(spec);
        }
        let least = RingSpec::for_mtu(mtu, MIN_RING_FRAMES).bytes() as u64;
        Err(format!(
            "ring_memory = \"{}\" cannot hold receive rings for {inputs} input interface(s) × \
             {workers} worker(s) at MTU {mtu} ({} in use by rings that stay; each ring needs at \
             least {}): raise [relay] ring_memory, set fewer workers, or restart so that \
             existing rings are sized again",
            format_size(self.total),
            format_size(in_use),
            format_size(least),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(flows: usize, egress: &str) -> Config {
        let mut s = format!("[relay]\negress = \"{egress}\"\n");
        for i in 0..flows {
            s += &format!(
                "[[flow]]\nname = \"f{i}\"\ninput = {{ interface = \"in0\", group = \"239.1.{}.{}\", port = 5000 }}\n\
                 outputs = [ {{ interface = \"out0\", group = \"239.2.{}.{}\", port = 5000 }}, \
                 {{ interface = \"out1\", group = \"239.2.{}.{}\", port = 5000 }} ]\n",
                i / 250, i % 250 + 1, i / 250, i % 250 + 1, i / 250, i % 250 + 1
            );
        }
        Config::parse(&s, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn estimate_counts_every_kind() {
        let d = Descriptors::estimate(&config(100, "packet"), 2, Limits::DEFAULT);
        assert_eq!(
            d,
            Descriptors {
                outputs: 4,
                rings: 2,
                helpers: 5,
                workers: 4
            }
        );
        assert_eq!(d.total(), 15 + SPARE);
        let udp = Descriptors::estimate(&config(100, "udp"), 2, Limits::DEFAULT);
        assert_eq!(udp.outputs, 2, "one UDP socket per output interface");
        let more = Descriptors::estimate(&config(1000, "packet"), 2, Limits::DEFAULT);
        assert_eq!(
            (more.outputs, more.helpers),
            (4, 50),
            "outputs share sockets"
        );
    }

    #[test]
    fn a_config_that_cannot_fit_says_what_to_change() {
        let d = Descriptors::estimate(&config(500, "packet"), 1, Limits::DEFAULT);
        assert!(d.fit(1024).is_ok());
        let e = d.fit(100).unwrap_err();
        assert!(e.contains("needs about 160 open files"), "{e}");
        assert!(e.contains("LimitNOFILE="), "{e}");
    }

    #[test]
    fn rings_are_full_size_until_the_budget_is_shared() {
        let budget = RingBudget { total: 256 << 20 };
        let full = budget.spec(1500, 2, 1, 0).unwrap();
        assert_eq!((full.frame_count, full.bytes()), (4096, 8 << 20));
        // 64 rings of 4 MiB fill 256 MiB.
        let shared = budget.spec(1500, 2, 32, 0).unwrap();
        assert_eq!(shared.bytes(), 4 << 20);
        // Jumbo frames take 16 KiB slots: 4096 of them would be 64 MiB.
        let jumbo = budget.spec(9000, 2, 1, 0).unwrap();
        assert!(
            jumbo.max_mtu() >= 9000 && jumbo.bytes() <= 128 << 20,
            "{jumbo:?}"
        );
        // What rings that stay already hold limits a new interface's share.
        let late = budget.spec(1500, 2, 2, 250 << 20).unwrap();
        assert_eq!(late.bytes(), 3 << 20);
        let err = budget.spec(1500, 2, 2, 255 << 20).unwrap_err();
        assert!(
            err.contains("ring_memory = \"256MiB\"") && err.contains("at least 1MiB"),
            "{err}"
        );
        assert!(RingBudget { total: 1 << 20 }.spec(1500, 1, 1, 0).is_ok());
        assert!(RingBudget { total: 1 << 20 }.spec(1500, 2, 1, 0).is_err());
    }
}
