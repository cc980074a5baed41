//! `sink`: joins a range of multicast groups, receives probes and reports what arrived.
//!
//! One UDP socket bound to `0.0.0.0:port` receives everything; the joins are held by
//! [`Memberships`] helper sockets, so the receiving socket keeps `IP_MULTICAST_ALL` on (the
//! default) and instead filters by each datagram's destination address (`IP_PKTINFO`):
//! anything not addressed to an asked group is counted as `foreign` and otherwise ignored.
//!
//! IPv6 groups work the same way with the IPv6 names of every piece: an `IPV6_V6ONLY` socket
//! bound to `[::]:port` with `IPV6_MULTICAST_ALL` on (the default), helper sockets from [`mld`], and the
//! destination, hop limit and traffic class from `IPV6_PKTINFO`, `IPV6_HOPLIMIT` and
//! `IPV6_TCLASS`. The report does not say which family it saw: the hop limit counts as the TTL
//! and the traffic class as the TOS byte.
//!
//! Accounting is per stream id (from the payload): a [`SeqTracker`] tells new, reordered and
//! duplicate sequence numbers apart and derives losses; latency is `CLOCK_MONOTONIC` at receipt
//! (read once per `recvmmsg` batch) minus the probe's send time.

mod stats;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use super::os::{self, Received};
use super::{payload, Groups, MAX_BATCH, MAX_PAYLOAD};
use crate::membership::{Membership, Memberships};
use crate::sys;

pub use stats::{Latency, LatencyStats, Seen, SeqTracker};

/// Receive buffer asked for with `SO_RCVBUFFORCE` (falls back to `SO_RCVBUF`, capped by
/// `net.core.rmem_max`).
pub const RCVBUF_BYTES: usize = 32 << 20;

/// How often an idle receive wakes up to check the timeouts.
const TICK: Duration = Duration::from_millis(50);

/// Per-datagram receive buffer: any UDP payload fits; the extra cache line staggers buffers
/// so that 64 of them do not all map to the same cache sets.
const SLOT: usize = (MAX_PAYLOAD + 1).next_multiple_of(64) + 64;

/// Control messages of an IPv4 datagram: `IP_PKTINFO`, `IP_TTL` and `IP_TOS` (one byte).
const CONTROL_V4: usize = os::cmsg_space(std::mem::size_of::<libc::in_pktinfo>())
    + os::cmsg_space(std::mem::size_of::<libc::c_int>())
    + os::cmsg_space(1);

/// Control messages of an IPv6 datagram: `IPV6_PKTINFO`, `IPV6_HOPLIMIT` and `IPV6_TCLASS`
/// (both `int`).
const CONTROL_V6: usize = os::cmsg_space(std::mem::size_of::<libc::in6_pktinfo>())
    + 2 * os::cmsg_space(std::mem::size_of::<libc::c_int>());

/// Control buffer per datagram, for either family.
const CONTROL: usize = if CONTROL_V4 > CONTROL_V6 {
    CONTROL_V4
} else {
    CONTROL_V6
};

// Each datagram's control buffer starts CONTROL bytes after the previous one: the kernel
// writes aligned cmsghdrs there, so the stride must keep that alignment.
const _: () = assert!(CONTROL % std::mem::align_of::<libc::cmsghdr>() == 0);

#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// First group, IPv4 or IPv6; `group_count` consecutive groups are joined.
    pub group: IpAddr,
    pub group_count: u32,
    pub port: u16,
    /// Interface name to join on.
    pub interface: String,
    /// Source-specific joins (SSM) from this source, of the group's family.
    pub source: Option<IpAddr>,
    /// Stop once this many packets (total, all groups) were received.
    pub count: Option<u64>,
    /// Stop when no packet arrived for this long after the first one.
    pub idle_timeout: Duration,
    /// Stop when nothing arrived for this long before the first packet.
    pub first_timeout: Duration,
    /// Created, empty, once every group is joined and the socket is receiving.
    pub ready_file: Option<PathBuf>,
    /// Payloads start with an RTP header (`gen --rtp`): measure each stream's RTP quality
    /// as the relay's monitor does ([`crate::rtp`]) and check the probe behind it.
    pub rtp: bool,
}

impl SinkOptions {
    /// Options with the default timeouts (2 s idle, 30 s before the first packet).
    pub fn new(
        group: impl Into<IpAddr>,
        group_count: u32,
        port: u16,
        interface: &str,
    ) -> SinkOptions {
        SinkOptions {
            group: group.into(),
            group_count,
            port,
            interface: interface.to_owned(),
            source: None,
            count: None,
            idle_timeout: Duration::from_secs(2),
            first_timeout: Duration::from_secs(30),
            ready_file: None,
            rtp: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    pub stream: u32,
    /// Destination address of the stream's first packet.
    pub group: IpAddr,
    pub received: u64,
    pub bytes: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Lowest sequence number seen.
    pub first_seq: u64,
    /// Highest sequence number seen.
    pub last_seq: u64,
    /// The stream's RTP figures (`--rtp`), by the relay's algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtp: Option<crate::rtp::RtpSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkReport {
    /// Datagrams addressed to an asked group (including corrupt ones).
    pub received: u64,
    /// UDP payload bytes of those datagrams.
    pub bytes: u64,
    pub streams: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Datagrams that failed [`payload::check`].
    pub corrupt: u64,
    /// Datagrams for a group that was not asked for (or without a destination address).
    pub foreign: u64,
    /// IPv4 TTL or IPv6 hop limit seen, lowest and highest.
    pub ttl_min: Option<u8>,
    pub ttl_max: Option<u8>,
    /// DSCP (the upper six bits of the IPv4 TOS byte or IPv6 traffic class) seen, lowest and
    /// highest.
    pub dscp_min: Option<u8>,
    pub dscp_max: Option<u8>,
    pub latency_us: Option<Latency>,
    /// Sorted by stream id.
    pub per_stream: Vec<StreamReport>,
}

impl fmt::Display for SinkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} bytes={} streams={} lost={} duplicates={} reordered={} corrupt={}",
            self.received,
            self.bytes,
            self.streams,
            self.lost,
            self.duplicates,
            self.reordered,
            self.corrupt
        )?;
        match (self.ttl_min, self.ttl_max) {
            (Some(lo), Some(hi)) => write!(f, " ttl={lo}..{hi}")?,
            _ => write!(f, " ttl=-")?,
        }
        match (self.dscp_min, self.dscp_max) {
            (Some(lo), Some(hi)) => write!(f, " dscp={lo}..{hi}")?,
            _ => write!(f, " dscp=-")?,
        }
        match &self.latency_us {
            Some(l) => write!(
                f,
                " latency_us avg={:.1} p50={:.1} p99={:.1} max={:.1}",
                l.avg, l.p50, l.p99, l.max
            ),
            None => write!(f, " latency_us avg=- p50=- p99=- max=-"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{count} groups from {group} on are not all multicast (need 1 or more in 224.0.0.0/4 or ff00::/8; or one unicast address)")]
    Groups { group: IpAddr, count: u32 },
    #[error("source {ssm_source} is not of the same family as group {group}")]
    SourceFamily { ssm_source: IpAddr, group: IpAddr },
    #[error("port 0 cannot be received on")]
    Port,
    #[error("interface {name:?}: {source}")]
    Interface { name: String, source: io::Error },
    #[error("setting up the receive socket ({what}): {source}")]
    Socket {
        what: &'static str,
        source: io::Error,
    },
    #[error("joining {group}{} on {interface}: {source}", source_suffix(.ssm_source))]
    Join {
        group: IpAddr,
        ssm_source: Option<IpAddr>,
        interface: String,
        source: io::Error,
    },
    #[error("creating ready file {}: {source}", .path.display())]
    ReadyFile { path: PathBuf, source: io::Error },
    #[error("receive failed after {received} packets: {source}")]
    Receive { received: u64, source: io::Error },
}

fn source_suffix(source: &Option<IpAddr>) -> String {
    source
        .map(|s| format!(" from source {s}"))
        .unwrap_or_default()
}

/// Joins, receives until a stop condition, and reports.
pub fn run(opts: &SinkOptions) -> Result<SinkReport, SinkError> {
    let groups = Groups::new(opts.group, opts.group_count).ok_or(SinkError::Groups {
        group: opts.group,
        count: opts.group_count,
    })?;
    if let Some(source) = opts.source.filter(|s| s.is_ipv6() != groups.is_ipv6()) {
        return Err(SinkError::SourceFamily {
            ssm_source: source,
            group: opts.group,
        });
    }
    if opts.port == 0 {
        return Err(SinkError::Port);
    }
    let ifindex = sys::ifindex(&opts.interface).map_err(|source| SinkError::Interface {
        name: opts.interface.clone(),
        source,
    })?;
    let socket = open_socket(groups.is_ipv6(), opts.port, tick(opts))?;
    // Held until the end of the run: dropping it closes the helper sockets, which leaves.
    let joins = join(opts, groups, ifindex)?;
    log::info!(
        "sink joined {} groups from {} on {} ({} helper sockets)",
        groups.count(),
        opts.group,
        opts.interface,
        joins.sockets()
    );
    if let Some(path) = &opts.ready_file {
        std::fs::File::create(path).map_err(|source| SinkError::ReadyFile {
            path: path.clone(),
            source,
        })?;
    }
    let mut tally = Tally::new(groups);
    tally.rtp = opts.rtp;
    receive(&socket, opts, &mut tally)?;
    drop(joins);
    Ok(tally.report())
}

/// Joins every multicast group of the run (a unicast address needs none) through the
/// relay's own helper-socket pools, which know both families' per-socket limits. The range
/// is of one family, and [`run`] checked that the source is of the same.
fn join(opts: &SinkOptions, groups: Groups, ifindex: u32) -> Result<Memberships, SinkError> {
    let mut memberships = Memberships::kernel();
    for group in groups.iter().filter(IpAddr::is_multicast) {
        let m = Membership {
            ifindex,
            group,
            source: opts.source,
        };
        memberships.join(m).map_err(|source| SinkError::Join {
            group,
            ssm_source: opts.source,
            interface: opts.interface.clone(),
            source,
        })?;
    }
    Ok(memberships)
}

/// The receive-timeout tick: short enough to honour both timeouts, never zero (which would
/// mean "block forever").
fn tick(opts: &SinkOptions) -> Duration {
    TICK.min(opts.idle_timeout)
        .min(opts.first_timeout)
        .max(Duration::from_millis(1))
}

fn open_socket(ipv6: bool, port: u16, tick: Duration) -> Result<Socket, SinkError> {
    let err = |what| move |source| SinkError::Socket { what, source };
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    socket
        .set_reuse_address(true)
        .map_err(err("SO_REUSEADDR"))?;
    let fd = socket.as_fd();
    let force = libc::c_int::try_from(RCVBUF_BYTES).unwrap_or(libc::c_int::MAX);
    if let Err(e) = sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &force) {
        log::debug!("SO_RCVBUFFORCE refused ({e}); asking for SO_RCVBUF");
        socket
            .set_recv_buffer_size(RCVBUF_BYTES)
            .map_err(err("SO_RCVBUF"))?;
    }
    match sys::getsockopt::<libc::c_int>(fd, libc::SOL_SOCKET, libc::SO_RCVBUF) {
        Ok(bytes) => log::debug!("sink receive buffer: {bytes} bytes"),
        Err(e) => log::debug!("cannot read SO_RCVBUF: {e}"),
    }
    let on: libc::c_int = 1;
    let any = if ipv6 {
        socket.set_only_v6(true).map_err(err("IPV6_V6ONLY"))?;
        let v6 = libc::IPPROTO_IPV6;
        sys::setsockopt(fd, v6, libc::IPV6_RECVPKTINFO, &on).map_err(err("IPV6_RECVPKTINFO"))?;
        sys::setsockopt(fd, v6, libc::IPV6_RECVHOPLIMIT, &on).map_err(err("IPV6_RECVHOPLIMIT"))?;
        sys::setsockopt(fd, v6, libc::IPV6_RECVTCLASS, &on).map_err(err("IPV6_RECVTCLASS"))?;
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, &on).map_err(err("IP_PKTINFO"))?;
        sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVTTL, &on).map_err(err("IP_RECVTTL"))?;
        sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVTOS, &on).map_err(err("IP_RECVTOS"))?;
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    socket
        .set_read_timeout(Some(tick))
        .map_err(err("SO_RCVTIMEO"))?;
    socket
        .bind(&SocketAddr::new(any, port).into())
        .map_err(err("bind"))?;
    Ok(socket)
}

fn receive(socket: &Socket, opts: &SinkOptions, tally: &mut Tally) -> Result<(), SinkError> {
    let mut bufs = vec![0u8; SLOT * MAX_BATCH];
    let mut control = vec![0u8; CONTROL * MAX_BATCH];
    let mut meta = [Received::default(); MAX_BATCH];
    let started = Instant::now();
    let mut last_packet: Option<Instant> = None;
    let limit = opts.count.unwrap_or(u64::MAX);
    loop {
        match os::recv_batch(
            socket.as_fd(),
            &mut bufs,
            SLOT,
            &mut control,
            CONTROL,
            &mut meta,
        ) {
            Ok(n) => {
                let now_ns = payload::monotonic_ns();
                let before = tally.received;
                let datagrams = bufs.chunks_exact(SLOT).zip(control.chunks_exact(CONTROL));
                for ((buf, ctl), r) in datagrams.zip(&meta).take(n) {
                    if tally.received >= limit {
                        break;
                    }
                    let payload = &buf[..r.len.min(buf.len())];
                    tally.datagram(
                        payload,
                        &ctl[..r.control_len.min(ctl.len())],
                        r.truncated,
                        now_ns,
                    );
                }
                if tally.received > before {
                    last_packet = Some(Instant::now());
                }
                if tally.received >= limit {
                    return Ok(());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(source) => {
                return Err(SinkError::Receive {
                    received: tally.received,
                    source,
                })
            }
        }
        let timed_out = match last_packet {
            Some(t) => t.elapsed() >= opts.idle_timeout,
            None => started.elapsed() >= opts.first_timeout,
        };
        if timed_out {
            return Ok(());
        }
    }
}

/// What the control messages say about one datagram, in either family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ancillary {
    /// Destination address (`IP_PKTINFO` / `IPV6_PKTINFO`).
    dst: Option<IpAddr>,
    /// TTL or hop limit (`IP_TTL` / `IPV6_HOPLIMIT`).
    ttl: Option<u8>,
    /// TOS byte or traffic class (`IP_TOS` / `IPV6_TCLASS`).
    tos: Option<u8>,
}

impl Ancillary {
    fn decode(control: &[u8]) -> Ancillary {
        let int = |data: &[u8]| {
            data.get(..4)
                .and_then(|t| t.try_into().ok())
                .map(i32::from_ne_bytes)
                .and_then(|t| u8::try_from(t).ok())
        };
        let mut a = Ancillary::default();
        for (level, kind, data) in os::cmsgs(control) {
            match (level, kind) {
                // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    a.dst = data
                        .get(8..12)
                        .and_then(|d| <[u8; 4]>::try_from(d).ok())
                        .map(|d| IpAddr::V4(Ipv4Addr::from(d)));
                }
                (libc::IPPROTO_IP, libc::IP_TTL) => a.ttl = int(data),
                (libc::IPPROTO_IP, libc::IP_TOS) => a.tos = data.first().copied(),
                // struct in6_pktinfo { in6_addr ipi6_addr; int ipi6_ifindex; }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    a.dst = data
                        .get(..16)
                        .and_then(|d| <[u8; 16]>::try_from(d).ok())
                        .map(|d| IpAddr::V6(Ipv6Addr::from(d)));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => a.ttl = int(data),
                (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => a.tos = int(data),
                _ => {}
            }
        }
        a
    }
}

/// Everything counted so far; fed one datagram at a time.
struct Tally {
    groups: Groups,
    received: u64,
    bytes: u64,
    corrupt: u64,
    foreign: u64,
    ttl: Option<(u8, u8)>,
    dscp: Option<(u8, u8)>,
    latency: LatencyStats,
    streams: HashMap<u32, StreamState>,
    /// Payloads start with an RTP header.
    rtp: bool,
}

struct StreamState {
    group: IpAddr,
    received: u64,
    bytes: u64,
    seqs: SeqTracker,
    rtp: Option<crate::rtp::LocalTracker>,
}

impl Tally {
    fn new(groups: Groups) -> Tally {
        Tally {
            groups,
            received: 0,
            bytes: 0,
            corrupt: 0,
            foreign: 0,
            ttl: None,
            dscp: None,
            latency: LatencyStats::default(),
            streams: HashMap::new(),
            rtp: false,
        }
    }

    fn datagram(&mut self, payload: &[u8], control: &[u8], truncated: bool, now_ns: u64) {
        let Ancillary { dst, ttl, tos } = Ancillary::decode(control);
        let Some(dst) = dst.filter(|&d| self.groups.contains(d)) else {
            self.foreign += 1;
            return;
        };
        self.received += 1;
        self.bytes += payload.len() as u64;
        if let Some(t) = ttl {
            self.ttl = Some(self.ttl.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
        }
        if let Some(d) = tos.map(|t| t >> 2) {
            self.dscp = Some(self.dscp.map_or((d, d), |(lo, hi)| (lo.min(d), hi.max(d))));
        }
        let (header, probe) = if self.rtp {
            let at = crate::wire::rtp::HEADER_LEN.min(payload.len());
            (Some(crate::wire::rtp::parse(payload)), &payload[at..])
        } else {
            (None, payload)
        };
        let probe = match payload::check(probe) {
            Ok(probe) if !truncated => probe,
            _ => {
                self.corrupt += 1;
                return;
            }
        };
        let stream = self
            .streams
            .entry(probe.stream)
            .or_insert_with(|| StreamState {
                group: dst,
                received: 0,
                bytes: 0,
                seqs: SeqTracker::default(),
                rtp: header.map(|_| crate::rtp::LocalTracker::default()),
            });
        stream.received += 1;
        stream.bytes += payload.len() as u64;
        stream.seqs.record(probe.seq);
        if let (Some(tracker), Some(header)) = (&stream.rtp, header) {
            tracker.record(header, now_ns, crate::rtp::DEFAULT_CLOCK_RATE);
        }
        self.latency.record(now_ns.saturating_sub(probe.sent_ns));
    }

    fn report(mut self) -> SinkReport {
        let mut per_stream: Vec<StreamReport> = self
            .streams
            .iter()
            .map(|(&id, s)| StreamReport {
                stream: id,
                group: s.group,
                received: s.received,
                bytes: s.bytes,
                lost: s.seqs.lost(),
                duplicates: s.seqs.duplicates(),
                reordered: s.seqs.reordered(),
                first_seq: s.seqs.lowest().unwrap_or(0),
                last_seq: s.seqs.highest().unwrap_or(0),
                rtp: s.rtp.as_ref().map(|t| t.snapshot()),
            })
            .collect();
        per_stream.sort_by_key(|s| s.stream);
        let sum = |f: fn(&StreamReport) -> u64| per_stream.iter().map(f).sum::<u64>();
        SinkReport {
            received: self.received,
            bytes: self.bytes,
            streams: per_stream.len() as u64,
            lost: sum(|s| s.lost),
            duplicates: sum(|s| s.duplicates),
            reordered: sum(|s| s.reordered),
            corrupt: self.corrupt,
            foreign: self.foreign,
            ttl_min: self.ttl.map(|t| t.0),
            ttl_max: self.ttl.map(|t| t.1),
            dscp_min: self.dscp.map(|d| d.0),
            dscp_max: self.dscp.map(|d| d.1),
            latency_us: self.latency.summary(),
            per_stream,
        }
    }
}

#[cfg(test)]
mod tests;
