//! The open-descriptor limit: raised as far as the process may, and a config that cannot fit
//! refused at start with what to change, instead of failing half-way with `EMFILE`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use crate::config::{Config, EgressMode, IfName};
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
    /// Output sockets: a UDP socket each, plus an `AF_PACKET` socket with `egress = "packet"`.
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
        let outputs: usize = config.flows.iter().map(|f| f.outputs.len()).sum();
        let mut groups: BTreeMap<&IfName, BTreeSet<_>> = BTreeMap::new();
        for f in &config.flows {
            groups
                .entry(&f.input.interface)
                .or_default()
                .insert((f.input.group, f.input.source));
        }
        let per_socket = limits.max_memberships.max(1);
        let helpers: usize = groups.values().map(|g| g.len().div_ceil(per_socket)).sum();
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
            "this config needs about {} open files ({} for output sockets, {} receive rings, \
             {} group-holding sockets, {} for workers, {SPARE} spare) but the limit is {limit}: \
             raise it (LimitNOFILE= in the systemd unit, `ulimit -n` in a shell), or use \
             fewer outputs or egress = \"udp\" (one socket per output instead of two)",
            self.total(),
            self.outputs,
            self.rings,
            self.helpers,
            self.workers
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
                outputs: 400,
                rings: 2,
                helpers: 5,
                workers: 4
            }
        );
        assert_eq!(d.total(), 411 + SPARE);
        let udp = Descriptors::estimate(&config(100, "udp"), 2, Limits::DEFAULT);
        assert_eq!(udp.outputs, 200);
    }

    #[test]
    fn a_config_that_cannot_fit_says_what_to_change() {
        let d = Descriptors::estimate(&config(500, "packet"), 1, Limits::DEFAULT);
        assert!(d.fit(1_000_000).is_ok());
        let e = d.fit(1024).unwrap_err();
        assert!(e.contains("needs about 2156 open files"), "{e}");
        assert!(e.contains("LimitNOFILE="), "{e}");
    }
}
