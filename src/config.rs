//! The operator's configuration file: reading, parsing and validating it.
//!
//! The file walks raw → validated: `raw` mirrors the TOML as written
//! (unknown keys rejected, every value with its byte span), and `validate`
//! turns it into the types below, which the rest of mcr consumes.
//!
//! Invariants of a [`Config`] returned by [`Config::load`] or
//! [`Config::parse`]:
//! - every group is multicast, IPv4 (224.0.0.0/4) or IPv6 (ff00::/8, of link scope or
//!   wider), every `source` and unicast `address` a unicast address of its group's family
//!   (an input's source of the input group's, an output's of the output's destination's),
//!   every port is 1–65535 and every ttl (IPv6: hop limit) 1–255;
//! - every interface name is one the Linux kernel would accept (this module
//!   does not check that the interface exists; that is done at run time);
//! - flow names are unique, non-empty, at most 64 characters of
//!   `[A-Za-z0-9_.-]`, so they are safe as metric labels;
//! - no two flows share an input (interface, group, port, source);
//! - every flow has at least one output and no two of its outputs share
//!   (interface, group, port);
//! - no output's (interface, group, port) is any flow's input, whatever the
//!   source, so the relay never feeds on its own traffic.
//!
//! The fields are public so that other modules can destructure these values
//! and tests can build them; the invariants above are guaranteed for values
//! produced by `load`/`parse`. [`IfName`] keeps its own invariant always.
//!
//! On failure, every problem in the file is reported at once, each with its
//! file, line and column and a hint on how to fix it.

mod address;
mod blocks;
mod error;
mod ifname;
mod raw;
mod validate;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use blocks::ParseCache;
pub use error::{ConfigError, ConfigErrors};
pub use ifname::IfName;

/// TTL of relayed packets when an output sets none.
///
/// 1 is the multicast default of RFC 1112 and of the Linux kernel
/// (`IP_MULTICAST_TTL`): packets stay on the segment the output interface is
/// attached to. Sending them further through multicast routers is a decision
/// the operator makes explicitly by raising `ttl` on that output.
pub const DEFAULT_TTL: u8 = 1;
/// TTL of a unicast output that sets none: the kernel's `net.ipv4.ip_default_ttl`, so the
/// datagrams are routed as any host's would be.
pub const DEFAULT_UNICAST_TTL: u8 = 64;

/// How often statistics are logged when `stats_interval` is not set.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(10);

/// Bounds of a non-zero `stats_interval`: a line more often than every 100 ms is a busy
/// loop, less often than daily is never read.
pub const STATS_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(86_400));

/// Most workers: each owns one socket in every input's fanout group, and the kernel allows
/// 256 sockets per group (`PACKET_FANOUT_MAX`).
pub const MAX_WORKERS: usize = 256;

/// How long a flow may go without an input packet before it is `idle`, unless
/// `[relay] idle_after` or the flow's own `idle_after` says otherwise.
pub const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(5);

/// Bounds of `idle_after`: shorter than a stats sample is noise, longer than a day is
/// never noticed.
pub const IDLE_AFTER_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(86_400));

/// How long a relayed payload is remembered to recognise a looped copy of it (see
/// `loopguard`), unless `[relay] loop_guard` or the flow's own says otherwise. Far longer
/// than any loop's round trip, short enough that two senders repeating each other's bytes
/// are rare within it.
pub const DEFAULT_LOOP_GUARD: Duration = Duration::from_secs(1);

/// Bounds of a `loop_guard` window: one clock tick of the guard up to what its 16-bit
/// timestamp holds with margin.
pub const LOOP_GUARD_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), crate::loopguard::MAX_WINDOW);

/// All receive rings together may use this much memory unless `[relay] ring_memory` says
/// otherwise: 32 rings of the full 8 MiB (16 input interfaces on a 2-CPU host), and beyond
/// that every ring gets an equal share, down to [`MIN_RING_FRAMES`].
pub const DEFAULT_RING_MEMORY: u64 = 256 << 20;

/// Bounds of `ring_memory`: one minimal ring up to what no host should lock in rings.
pub const RING_MEMORY_RANGE: (u64, u64) = (1 << 20, 64 << 30);

/// How long a worker under load waits for more packets before a round, unless
/// `[relay] batch_delay` says otherwise (see `coalesce`): at 230k pps it gathers ~11 packets
/// per send; it never waits where it would gather fewer than 4 (below 80k pps).
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_micros(50);

/// Bounds of a non-zero `batch_delay`: below a microsecond the timer costs more than it
/// saves; a millisecond is the most latency coalescing may add.
pub const BATCH_DELAY_RANGE: (Duration, Duration) =
    (Duration::from_micros(1), Duration::from_millis(1));

/// A validated configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub relay: RelaySettings,
    pub flows: Vec<Flow>,
    /// What is valid but probably not meant, one `PATH:LINE:COL: warning: …` line each
    /// (`mcr check` prints them, `mcr run` logs them).
    pub warnings: Vec<String>,
}

/// The `[relay]` table, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// Number of workers; `None` means one per online CPU.
    pub workers: Option<NonZeroUsize>,
    /// Period of the statistics log line; `None` disables it.
    pub stats_interval: Option<Duration>,
    /// Reload the configuration when the file changes.
    pub watch: bool,
    /// Path of the local control socket (`mcr stats`, `mcr status`, `mcr reload`).
    pub control_socket: PathBuf,
    /// Address of the Prometheus endpoint; `None` serves no metrics.
    pub metrics: Option<SocketAddr>,
    /// Drop root for this user after opening what needs privilege (keeping only the
    /// capabilities reloads need).
    pub user: Option<String>,
    /// How outputs send: prebuilt frames through `AF_PACKET`, or the kernel's UDP stack.
    pub egress: EgressMode,
    /// A flow with no input packet for this long is `idle` (flows may override it).
    pub idle_after: Duration,
    /// IGMP querier on input interfaces.
    pub querier: QuerierMode,
    /// Interval between the general queries mcr sends as querier.
    pub query_interval: Duration,
    /// The loop guard's window for flows that set none; `None` turns it off.
    pub loop_guard: Option<Duration>,
    /// Bytes all receive rings (one per worker per input interface) may use together.
    pub ring_memory: u64,
    /// Under load, how long a worker waits for more packets before a round; zero: never.
    pub batch_delay: Duration,
    /// Whether relayed datagrams also go up the host's IP stack to local sockets (flows may
    /// override it); `false` drops them at the input interface's ingress hook, after mcr's
    /// ring has its copy (see `stackdrop`).
    pub local_delivery: bool,
    /// `role = "standby"`: start as the standby of a pair (receive, send nothing) until
    /// `mcr active`; the role then lives at run time, a reload does not change it.
    pub role_standby: bool,
}

/// How outputs send (`[relay] egress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EgressMode {
    /// mcr builds Ethernet/IPv4/UDP headers and sends the frame through an `AF_PACKET` socket
    /// on the output interface: no route lookup, no IP output path, no netfilter `OUTPUT`
    /// chain. Outputs on non-Ethernet interfaces, and datagrams larger than the output MTU,
    /// still go through the UDP socket.
    #[default]
    Packet,
    /// Every send goes through the output's UDP socket: the kernel routes it, fragments it
    /// when needed, and applies netfilter and IPsec policy as for any local traffic.
    Udp,
}

impl EgressMode {
    pub fn name(self) -> &'static str {
        match self {
            EgressMode::Packet => "packet",
            EgressMode::Udp => "udp",
        }
    }
}

/// `[relay] querier`: whether mcr acts as IGMP querier on its input interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QuerierMode {
    /// Never query.
    Off,
    /// RFC 3376 election: query unless a lower address is querying (the default).
    #[default]
    Auto,
    /// Always query, whatever else is heard.
    On,
}

impl QuerierMode {
    pub fn name(self) -> &'static str {
        match self {
            QuerierMode::Off => "off",
            QuerierMode::Auto => "auto",
            QuerierMode::On => "on",
        }
    }
}

/// The IGMP query interval unless `[relay] query_interval` says otherwise (RFC 3376).
pub const DEFAULT_QUERY_INTERVAL: Duration = Duration::from_secs(125);

/// Where the control socket lives unless `[relay] control_socket` says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/mcr/control.sock";

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            workers: None,
            stats_interval: Some(DEFAULT_STATS_INTERVAL),
            watch: true,
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            metrics: None,
            user: None,
            egress: EgressMode::Packet,
            idle_after: DEFAULT_IDLE_AFTER,
            querier: QuerierMode::Auto,
            query_interval: DEFAULT_QUERY_INTERVAL,
            loop_guard: Some(DEFAULT_LOOP_GUARD),
            ring_memory: DEFAULT_RING_MEMORY,
            batch_delay: DEFAULT_BATCH_DELAY,
            local_delivery: false,
            role_standby: false,
        }
    }
}

/// One `[[flow]]`: traffic received on `input` is sent to every output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    pub name: String,
    /// This flow's `idle_after`, if it sets one; else `[relay] idle_after` applies.
    pub idle_after: Option<Duration>,
    /// This flow's `loop_guard`, if it sets one (`Some(None)` = off); else `[relay]`'s.
    pub loop_guard: Option<Option<Duration>>,
    /// This flow's `local_delivery`, if it sets one; else `[relay] local_delivery` applies.
    pub local_delivery: Option<bool>,
    /// RTP monitoring (`rtp = true`, implied by `merge`): the payload's RTP clock rate in
    /// Hz; `None` = off.
    pub rtp: Option<u32>,
    /// `merge = "rtp"`: each RTP sequence number is forwarded once, from whichever input
    /// delivers it first (see `merge`).
    pub merge: bool,
    /// `merge_window`: sequence numbers a merge remembers (a power of two); `None` =
    /// [`crate::rtp::WINDOW`].
    pub merge_window: Option<u16>,
    /// `merge_delay`: how long a packet after a gap waits for the gap to fill before the
    /// missing numbers are given up (the playout buffer); zero (the default) forwards every
    /// first copy at once.
    pub merge_delay: Duration,
    /// The first input (`input`, or the first of `inputs`).
    pub input: Input,
    /// The other inputs of a merged flow (`inputs = [ … ]` after the first).
    pub more_inputs: Vec<Input>,
    pub outputs: Vec<Output>,
}

impl Flow {
    /// Every input: the first, then the other paths of a merged flow.
    pub fn inputs(&self) -> impl Iterator<Item = &Input> {
        std::iter::once(&self.input).chain(&self.more_inputs)
    }
}

/// Bounds of a non-zero `merge_delay`: ST 2022-7's skew classes reach 450 ms.
pub const MERGE_DELAY_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(1));

/// Most inputs of one merged flow (ST 2022-7 has two; a few more cost nothing).
pub const MAX_MERGE_INPUTS: usize = 4;

/// Where a flow's traffic is received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Input {
    pub interface: IfName,
    /// A multicast group, or with `unicast` an address of this host on `interface`.
    pub group: IpAddr,
    /// `address = …` in the file: datagrams to this host's unicast address and port (a
    /// contribution feed over a unicast link). mcr holds the port (a bound UDP socket, so no
    /// other process takes it and the kernel never answers with ICMP port unreachable).
    pub unicast: bool,
    pub port: u16,
    /// Source-specific multicast: accept only this sender (same family as `group`). `None`
    /// is any sender.
    pub source: Option<IpAddr>,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.group, self.port)?;
        if self.unicast {
            f.write_str(" (unicast)")?;
        }
        if let Some(source) = self.source {
            write!(f, " from {source}")?;
        }
        write!(f, " on {}", self.interface)
    }
}

/// Where a flow's traffic is sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Output {
    /// The interface to send on; `None` only for a unicast output that leaves the choice to
    /// the kernel's routing table ("routed").
    pub interface: Option<IfName>,
    /// The destination: a multicast group, or with `unicast` one receiver's address. Its
    /// family is the output's, whatever the input's (a flow may translate).
    pub group: IpAddr,
    /// `address = …` in the file: a unicast destination, sent through the interface's UDP
    /// socket whatever `egress` says (the kernel resolves the receiver's MAC).
    pub unicast: bool,
    pub port: u16,
    /// IPv4 TTL or IPv6 hop limit: one key for both families (RFC 8200 renamed the field,
    /// not its meaning), so a flow's outputs read alike whatever family each sends.
    pub ttl: u8,
    /// DSCP (0–63) the output's datagrams carry in the IPv4 TOS byte's (IPv6 traffic class's)
    /// upper six bits;
    /// `None` keeps each input datagram's own (the default).
    pub dscp: Option<u8>,
    /// The source address the output's datagrams carry; `None`: the interface's own (the
    /// address the kernel would choose there). Same family as `group`.
    pub source: Option<IpAddr>,
}

impl Output {
    /// The interface's name, or `routed` for a unicast output the kernel routes.
    pub fn interface_name(&self) -> &str {
        self.interface.as_ref().map_or(ROUTED, IfName::as_str)
    }
}

/// How messages, stats and metrics name the "interface" of a routed unicast output.
pub const ROUTED: &str = "routed";

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unicast = if self.unicast { " (unicast)" } else { "" };
        write!(
            f,
            "{}:{}{unicast} on {} ttl {}",
            self.group,
            self.port,
            self.interface_name(),
            self.ttl
        )?;
        if let Some(dscp) = self.dscp {
            write!(f, " dscp {dscp}")?;
        }
        if let Some(source) = self.source {
            write!(f, " from {source}")?;
        }
        Ok(())
    }
}

/// Counts for the "loaded configuration" log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub flows: usize,
    /// Distinct (interface, group, source) multicast inputs, i.e. group memberships.
    pub input_groups: usize,
    /// Distinct input interfaces.
    pub interfaces: usize,
    /// Flows whose datagrams also go to local sockets (`local_delivery`); the others' are
    /// dropped before the IP stack once mcr has them.
    pub local_delivery: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} flows, {} input groups on {} interfaces",
            self.flows, self.input_groups, self.interfaces
        )
    }
}

impl Config {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// Every problem found; a file that cannot be read is one error at line 0.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let bytes = std::fs::read(path)
            .map_err(|e| ConfigError::whole_file(path, format!("cannot read file: {e}")))?;
        Config::parse_bytes(&bytes, path)
    }

    /// [`Config::parse`] for a file's raw bytes: bytes that are not UTF-8 are an error at the
    /// first invalid one (TOML is UTF-8), as `mcr check`, start-up and reloads all see it.
    ///
    /// # Errors
    /// As [`Config::parse`], or the encoding error.
    pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Config, ConfigErrors> {
        match std::str::from_utf8(bytes) {
            Ok(source) => Config::parse(source, path),
            Err(e) => {
                let valid = e.valid_up_to();
                // The text before the bad byte is valid: position the error within it.
                let source = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
                Err(ConfigError::at(
                    path,
                    source,
                    valid..valid,
                    format!(
                        "byte 0x{:02x} is not UTF-8 text; a TOML file must be UTF-8 (convert it, e.g. with iconv)",
                        bytes[valid]
                    ),
                )
                .into())
            }
        }
    }

    /// Parses and validates `source`; `path` is only used in error messages.
    ///
    /// # Errors
    /// Every problem found, in file order: one TOML syntax, type or
    /// unknown-key error, or else every validation error at once.
    pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig = toml::from_str(source).map_err(|e| {
            // toml's messages may span lines; one error must stay on one line.
            let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
            match e.span() {
                Some(span) => ConfigError::at(path, source, span, message),
                None => ConfigError::whole_file(path, message),
            }
        })?;
        validate::validate(raw, source, path).map_err(ConfigErrors::new)
    }

    /// Counts flows, distinct input groups and distinct input interfaces.
    #[must_use]
    pub fn summary(&self) -> Summary {
        let groups: HashSet<_> = self
            .flows
            .iter()
            .flat_map(|f| f.inputs())
            .filter(|i| !i.unicast)
            .map(|i| (&i.interface, i.group, i.source))
            .collect();
        let interfaces: HashSet<_> = (self.flows.iter())
            .flat_map(|f| f.inputs())
            .map(|i| &i.interface)
            .collect();
        let local = self
            .flows
            .iter()
            .filter(|f| f.local_delivery.unwrap_or(self.relay.local_delivery))
            .count();
        Summary {
            flows: self.flows.len(),
            input_groups: groups.len(),
            interfaces: interfaces.len(),
            local_delivery: local,
        }
    }
}

/// A size such as `"256MiB"`: a whole number followed by `B`, `KiB`, `MiB` or `GiB`
/// (spaces between allowed); `None` if it is not one or overflows.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim_start() {
        "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    let n: u64 = number.parse().ok()?;
    n.checked_mul(1 << shift)
}

/// A size as [`parse_size`] reads it, in the largest unit that divides it.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0B".into(),
        b if b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests;
