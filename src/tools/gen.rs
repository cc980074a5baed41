//! `gen`: sends probe datagrams to a range of multicast groups, paced or as fast as possible.
//!
//! Packet `n` of a run (counted over all streams) goes to group `n % group_count` with stream id
//! `stream_base + n % group_count` and sequence number `n / group_count`, so groups are served
//! round robin and each stream's sequence numbers are consecutive from 0. A packet whose send
//! fails is counted in [`GenReport::errors`] and its sequence number is not reused, so the sink
//! sees the gap.
//!
//! Pacing works in bursts: timer wake-ups cost 10–20 µs here, so the sender computes from the
//! monotonic clock how many packets are due, hands them to the kernel with `sendmmsg` (at most
//! [`MAX_BATCH`] per call), then sleeps until the next one is due — but at rates above 20k
//! packets/s for at least [`MIN_SLEEP_NS`], so each wake-up pays for a burst. At low rates every
//! packet leaves close to its own due time. The send timestamp in each probe is taken right
//! before the `sendmmsg` call that carries it.
//!
//! With `same_stream`, every group carries stream `stream_base`: each sequence number goes
//! once to every group (copies over redundant paths, for a merge).
//!
//! With `rtp`, each payload starts with an RTP header (RFC 3550: payload type 33, MPEG-TS;
//! SSRC `0x4d435200 + stream`; sequence number the probe's, modulo 2^16; timestamp the send
//! time on a 90 kHz clock) and the probe follows it. [`Impairments`] drop, duplicate or swap
//! packets on purpose, deterministically, and the report says which.
//!
//! The group's family picks the socket: `AF_INET` with `IP_MULTICAST_IF`/`_TTL`/`_LOOP` and
//! `IP_TOS`, or `AF_INET6` (`IPV6_V6ONLY`) with `IPV6_MULTICAST_IF`/`_HOPS`/`_LOOP` and
//! `IPV6_TCLASS` carrying the same byte. Pacing, batching, payload and round robin do not
//! depend on it.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;

use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub use super::impair::{Impaired, Impairments};
use super::{os, payload, Groups, MAX_BATCH, MAX_PAYLOAD};
use crate::sys;
use crate::wire::rtp;

/// The shortest sleep when packets are due faster than this apart.
pub const MIN_SLEEP_NS: u64 = 50_000;

/// Which interface multicast leaves through (`IP_MULTICAST_IF` / `IPV6_MULTICAST_IF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Egress {
    /// By interface name, resolved to an index (`ip_mreqn`); works without an IPv4 address.
    Name(String),
    /// By an address of the interface: an IPv4 address goes to `IP_MULTICAST_IF` as it is;
    /// otherwise (IPv6, which only takes an index) the interface holding it is looked up.
    Addr(IpAddr),
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    /// First group, IPv4 or IPv6; `group_count` consecutive groups are served round robin.
    pub group: IpAddr,
    pub group_count: u32,
    pub port: u16,
    pub interface: Egress,
    /// Source address to bind (port 0), of the group's family; the kernel picks one when `None`.
    pub bind: Option<IpAddr>,
    /// UDP payload bytes, `payload::HEADER_LEN..=MAX_PAYLOAD`.
    pub size: usize,
    /// Packets per stream.
    pub count: u64,
    /// Packets per second over all streams; 0 sends as fast as possible.
    pub rate: u64,
    /// IPv4 TTL or IPv6 hop limit of multicast datagrams.
    pub ttl: u8,
    /// The IPv4 TOS byte or IPv6 traffic class (DSCP << 2 | ECN) of every datagram.
    pub tos: u8,
    /// Stream id of the first group; group `i` carries stream `stream_base + i`.
    pub stream_base: u32,
    /// Each payload starts with an RTP header.
    pub rtp: bool,
    /// Every group carries the same stream (`stream_base`): packet `n` of each group is
    /// one copy of sequence number `n` — redundant paths for a merge.
    pub same_stream: bool,
    /// What to do to the packets on purpose (single-stream runs only).
    pub impair: Impairments,
}

/// The SSRC of stream `stream` with `rtp`.
pub fn ssrc(stream: u32) -> u32 {
    0x4d43_5200_u32.wrapping_add(stream)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenReport {
    /// Datagrams the kernel accepted.
    pub sent: u64,
    /// Sends that failed transiently (e.g. `ENOBUFS`); counted, not retried.
    pub errors: u64,
    pub seconds: f64,
    /// `sent / seconds`.
    pub pps: f64,
    /// What the impairments did.
    #[serde(flatten)]
    pub impaired: Impaired,
}

impl fmt::Display for GenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} errors={} seconds={:.3} pps={:.0}",
            self.sent, self.errors, self.seconds, self.pps
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(
        "payload size {size} is outside {}..={MAX_PAYLOAD} bytes (with --rtp: {}..)",
        payload::HEADER_LEN,
        payload::HEADER_LEN + rtp::HEADER_LEN
    )]
    Size { size: usize },
    #[error("{count} groups from {group} on are not all multicast (need 1 or more in 224.0.0.0/4 or ff00::/8; or one unicast address)")]
    Groups { group: IpAddr, count: u32 },
    #[error("bind address {bind} is not of the same family as group {group}")]
    BindFamily { bind: IpAddr, group: IpAddr },
    #[error("impairments apply to single-stream runs; drop --group-count or the impairment")]
    ImpairedStreams,
    #[error("{count} packets per stream over {group_count} streams is too many")]
    Count { count: u64, group_count: u32 },
    #[error("egress interface {name:?}: {source}")]
    Interface { name: String, source: io::Error },
    #[error("setting up the send socket ({what}): {source}")]
    Socket {
        what: &'static str,
        source: io::Error,
    },
    #[error("send failed after {sent} packets: {source}")]
    Send { sent: u64, source: io::Error },
}

/// Sends the whole run and reports what the kernel accepted.
pub fn run(opts: &GenOptions) -> Result<GenReport, GenError> {
    if !(min_size(opts.rtp)..=MAX_PAYLOAD).contains(&opts.size) {
        return Err(GenError::Size { size: opts.size });
    }
    if opts.group_count != 1 && !opts.impair.is_none() {
        return Err(GenError::ImpairedStreams);
    }
    if let Some(bind) = opts.bind.filter(|b| b.is_ipv6() != opts.group.is_ipv6()) {
        return Err(GenError::BindFamily {
            bind,
            group: opts.group,
        });
    }
    let groups = Groups::new(opts.group, opts.group_count).ok_or(GenError::Groups {
        group: opts.group,
        count: opts.group_count,
    })?;
    let total = opts
        .count
        .checked_mul(u64::from(groups.count()))
        .ok_or(GenError::Count {
            count: opts.count,
            group_count: groups.count(),
        })?;
    let (socket, scope) = open_socket(opts, groups)?;
    // Only a paced run sleeps; tighten the timer so wake-ups land close to due times.
    let _slack = (opts.rate > 0).then(|| SlackGuard::set(1));

    let mut sender = Sender::new(&socket, opts, groups, scope);
    sender.total = total;
    let pacer = Pacer::new(payload::monotonic_ns(), opts.rate, total);
    let mut next = 0u64;
    while next < total {
        let now = payload::monotonic_ns();
        let due = pacer.due(now);
        if due > next {
            let n = (due - next).min(MAX_BATCH as u64) as usize;
            sender.send(next, n)?;
            next += n as u64;
        } else {
            sleep_until(pacer.wake_at(next, now));
        }
    }
    let seconds = payload::monotonic_ns().saturating_sub(pacer.start_ns) as f64 / 1e9;
    let pps = if seconds > 0.0 {
        sender.sent as f64 / seconds
    } else {
        0.0
    };
    Ok(GenReport {
        sent: sender.sent,
        errors: sender.errors,
        seconds,
        pps,
        impaired: sender.impaired,
    })
}

/// The smallest payload: a probe header, behind an RTP header with `rtp`.
fn min_size(rtp: bool) -> usize {
    payload::HEADER_LEN + if rtp { rtp::HEADER_LEN } else { 0 }
}

/// The socket of a run and, for IPv6, the egress interface index (the scope of link-local
/// destinations and bind addresses).
fn open_socket(opts: &GenOptions, groups: Groups) -> Result<(Socket, u32), GenError> {
    let err = |what| move |source| GenError::Socket { what, source };
    let domain = if groups.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    let interface_error = |name: String| move |source| GenError::Interface { name, source };
    let scope = if groups.is_ipv6() {
        socket.set_only_v6(true).map_err(err("IPV6_V6ONLY"))?;
        socket
            .set_multicast_loop_v6(false)
            .map_err(err("IPV6_MULTICAST_LOOP"))?;
        socket
            .set_multicast_hops_v6(u32::from(opts.ttl))
            .map_err(err("IPV6_MULTICAST_HOPS"))?;
        socket
            .set_tclass_v6(u32::from(opts.tos))
            .map_err(err("IPV6_TCLASS"))?;
        let ifindex = egress_index(&opts.interface)?;
        socket
            .set_multicast_if_v6(ifindex)
            .map_err(interface_error(egress_name(&opts.interface)))?;
        ifindex
    } else {
        socket
            .set_multicast_loop_v4(false)
            .map_err(err("IP_MULTICAST_LOOP"))?;
        socket
            .set_multicast_ttl_v4(u32::from(opts.ttl))
            .map_err(err("IP_MULTICAST_TTL"))?;
        socket.set_tos(u32::from(opts.tos)).map_err(err("IP_TOS"))?;
        match &opts.interface {
            Egress::Addr(IpAddr::V4(addr)) => socket
                .set_multicast_if_v4(addr)
                .map_err(interface_error(addr.to_string()))?,
            other => {
                let ifindex = egress_index(other)?;
                sys::set_multicast_if(socket.as_fd(), ifindex)
                    .map_err(interface_error(egress_name(other)))?;
            }
        }
        0
    };
    if let Some(addr) = opts.bind {
        socket
            .bind(&sockaddr(addr, 0, scope))
            .map_err(err("bind"))?;
    }
    // One group: a connected socket skips the per-datagram route lookup.
    if groups.count() == 1 {
        socket
            .connect(&sockaddr(opts.group, opts.port, scope))
            .map_err(err("connect"))?;
    }
    Ok((socket, scope))
}

/// The index of the egress interface, by name or by one of its addresses.
fn egress_index(egress: &Egress) -> Result<u32, GenError> {
    let index = match egress {
        Egress::Name(name) => sys::ifindex(name),
        Egress::Addr(addr) => index_of_address(*addr),
    };
    index.map_err(|source| GenError::Interface {
        name: egress_name(egress),
        source,
    })
}

fn egress_name(egress: &Egress) -> String {
    match egress {
        Egress::Name(name) => name.clone(),
        Egress::Addr(addr) => addr.to_string(),
    }
}

/// The interface that holds `addr`, in the calling thread's network namespace.
fn index_of_address(addr: IpAddr) -> io::Result<u32> {
    let found = nix::ifaddrs::getifaddrs()?.find(|ifa| {
        let Some(a) = &ifa.address else { return false };
        match addr {
            IpAddr::V4(v4) => a.as_sockaddr_in().is_some_and(|s| s.ip() == v4),
            IpAddr::V6(v6) => a.as_sockaddr_in6().is_some_and(|s| s.ip() == v6),
        }
    });
    match found {
        Some(ifa) => sys::ifindex(&ifa.interface_name),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no interface has this address",
        )),
    }
}

/// A socket address; an IPv6 one that needs a scope (link-local unicast, or a multicast group
/// of interface- or link-local scope) gets the egress interface's.
fn sockaddr(addr: IpAddr, port: u16, scope: u32) -> SockAddr {
    match addr {
        IpAddr::V4(a) => SocketAddr::from((a, port)).into(),
        IpAddr::V6(a) => {
            let needs_scope = a.is_unicast_link_local()
                || (a.is_multicast() && matches!(a.octets()[1] & 0x0f, 1 | 2));
            let scope = if needs_scope { scope } else { 0 };
            SocketAddrV6::new(a, port, 0, scope).into()
        }
    }
}

/// Turns elapsed time into a number of due packets, and picks the next wake-up.
#[derive(Debug, Clone, Copy)]
struct Pacer {
    start_ns: u64,
    /// Packets per second; 0 means everything is due at once.
    rate: u64,
    total: u64,
}

impl Pacer {
    fn new(start_ns: u64, rate: u64, total: u64) -> Pacer {
        Pacer {
            start_ns,
            rate,
            total,
        }
    }

    /// How many packets (from the first) should have left by `now`: packet `n` is due at
    /// `start + n / rate`, so packet 0 leaves immediately.
    fn due(&self, now: u64) -> u64 {
        if self.rate == 0 {
            return self.total;
        }
        let elapsed = u128::from(now.saturating_sub(self.start_ns));
        let due = elapsed * u128::from(self.rate) / 1_000_000_000 + 1;
        due.min(u128::from(self.total)) as u64
    }

    /// When packet `n` is due (the first instant at which `due() > n`).
    fn due_time(&self, n: u64) -> u64 {
        let rate = u128::from(self.rate.max(1));
        let offset = (u128::from(n) * 1_000_000_000).div_ceil(rate);
        self.start_ns
            .saturating_add(offset.min(u128::from(u64::MAX)) as u64)
    }

    /// When to wake for packet `next`, given that nothing is due at `now`: its due time, but
    /// when packets are due less than [`MIN_SLEEP_NS`] apart, no sooner than that after `now`.
    fn wake_at(&self, next: u64, now: u64) -> u64 {
        let due = self.due_time(next);
        if self.rate > 1_000_000_000 / MIN_SLEEP_NS {
            due.max(now.saturating_add(MIN_SLEEP_NS))
        } else {
            due
        }
    }
}

fn sleep_until(deadline_ns: u64) {
    use nix::sys::time::TimeSpec;
    use nix::time::{clock_nanosleep, ClockId, ClockNanosleepFlags};
    let at = TimeSpec::new(
        (deadline_ns / 1_000_000_000) as libc::time_t,
        (deadline_ns % 1_000_000_000) as libc::c_long,
    );
    // EINTR or any other early return only means the pacing loop looks at the clock sooner.
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &at,
    );
}

/// Restores the thread's timer slack when a paced run ends.
struct SlackGuard(Option<u64>);

impl SlackGuard {
    fn set(ns: u64) -> SlackGuard {
        match os::set_timer_slack(ns) {
            Ok(old) => SlackGuard(Some(old)),
            Err(e) => {
                log::debug!("cannot lower timer slack, pacing will be coarser: {e}");
                SlackGuard(None)
            }
        }
    }
}

impl Drop for SlackGuard {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            let _ = os::set_timer_slack(old);
        }
    }
}

/// Builds batches of probes in a preallocated buffer and hands them to the kernel.
struct Sender<'a> {
    socket: &'a Socket,
    size: usize,
    /// `MAX_BATCH` payload slots of `size` bytes each.
    slots: Vec<u8>,
    /// Group index of each slot in the current batch (and of a carried packet's).
    slot_group: [u32; MAX_BATCH + 1],
    /// Packets in the run.
    total: u64,
    /// Per group destination; empty when the socket is connected.
    dests: Vec<SockAddr>,
    group_count: u64,
    stream_base: u32,
    same_stream: bool,
    /// Bytes before the probe: the RTP header, or none.
    rtp_len: usize,
    impair: Impairments,
    /// Batch positions in sending order (see [`Impairments::plan`]).
    order: Vec<usize>,
    impaired: Impaired,
    sent: u64,
    errors: u64,
}

impl<'a> Sender<'a> {
    fn new(socket: &'a Socket, opts: &GenOptions, groups: Groups, scope: u32) -> Sender<'a> {
        let dests = if groups.count() == 1 {
            Vec::new()
        } else {
            groups
                .iter()
                .map(|g| sockaddr(g, opts.port, scope))
                .collect()
        };
        Sender {
            socket,
            size: opts.size,
            // One more than a batch: a packet carried into the next one (a swap).
            slots: vec![0; opts.size * (MAX_BATCH + 1)],
            slot_group: [0; MAX_BATCH + 1],
            total: 0,
            dests,
            group_count: u64::from(groups.count()),
            stream_base: opts.stream_base,
            same_stream: opts.same_stream,
            rtp_len: if opts.rtp { rtp::HEADER_LEN } else { 0 },
            impair: opts.impair.clone(),
            order: Vec::with_capacity(2 * MAX_BATCH),
            impaired: Impaired::default(),
            sent: 0,
            errors: 0,
        }
    }

    /// Writes packet `packet` of the run into slot `i`.
    fn write_probe(&mut self, i: usize, packet: u64) {
        let group = (packet % self.group_count) as u32;
        self.slot_group[i] = group;
        let stream = if self.same_stream {
            self.stream_base
        } else {
            self.stream_base.wrapping_add(group)
        };
        let seq = packet / self.group_count;
        let slot = &mut self.slots[i * self.size..(i + 1) * self.size];
        payload::write(&mut slot[self.rtp_len..], stream, seq, 0);
        if self.rtp_len > 0 {
            let header = rtp::Rtp {
                seq: seq as u16,
                timestamp: 0,
                ssrc: ssrc(stream),
                payload_type: 33,
            };
            rtp::write(slot, header);
        }
    }

    /// Sends packets `first .. first + n` of the run (`n <= MAX_BATCH`).
    fn send(&mut self, first: u64, n: usize) -> Result<(), GenError> {
        let n = n.min(MAX_BATCH);
        for i in 0..n {
            self.write_probe(i, first + i as u64);
        }
        self.order.clear();
        if self.impair.is_none() {
            self.order.extend(0..n);
        } else {
            self.impair
                .plan(first, n, self.total, &mut self.order, &mut self.impaired);
            for i in &mut self.order {
                if *i == super::impair::CARRIED {
                    *i = MAX_BATCH;
                }
            }
        }
        let mut done = 0;
        while done < self.order.len() {
            let now = payload::monotonic_ns();
            // The RTP timestamp: the send time on a 90 kHz clock.
            let ticks = (now / 100_000 * 9 + now % 100_000 * 9 / 100_000) as u32;
            for &i in &self.order[done..] {
                let slot = &mut self.slots[i * self.size..(i + 1) * self.size];
                payload::set_sent_ns(&mut slot[self.rtp_len..], now);
                if self.rtp_len > 0 {
                    slot[4..8].copy_from_slice(&ticks.to_be_bytes());
                }
            }
            let (slots, size, groups) = (&self.slots, self.size, &self.slot_group);
            let dests = &self.dests;
            let msgs = self.order[done..].iter().map(|&i| {
                (
                    &slots[i * size..(i + 1) * size],
                    dests.get(groups[i] as usize),
                )
            });
            match os::send_batch(self.socket.as_fd(), msgs) {
                Ok(0) => {
                    // Not expected from sendmmsg; count it so the loop always advances.
                    self.errors += 1;
                    done += 1;
                }
                Ok(k) => {
                    self.sent += k as u64;
                    done += k;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_transient(&e) => {
                    self.errors += 1;
                    done += 1;
                }
                Err(source) => {
                    return Err(GenError::Send {
                        sent: self.sent,
                        source,
                    })
                }
            }
        }
        if let Some(p) = self.impaired.carry {
            // Its slot is free now that this batch (which may have sent the previous one
            // carried) has left; it goes out after the next batch's first packet.
            self.write_probe(MAX_BATCH, p);
        }
        Ok(())
    }
}

/// Send failures that come from momentary pressure, not from a broken setup.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOBUFS | libc::EAGAIN | libc::ENOMEM | libc::ECONNREFUSED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn unpaced_runs_have_everything_due() {
        let p = Pacer::new(5, 0, 1000);
        assert_eq!(p.due(5), 1000);
    }

    #[test]
    fn paced_packets_are_due_at_n_over_rate() {
        let start = 10 * S;
        let p = Pacer::new(start, 1000, 5000);
        assert_eq!(p.due(start), 1);
        assert_eq!(p.due(start + 999_999), 1);
        assert_eq!(p.due(start + 1_000_000), 2);
        assert_eq!(p.due(start + S), 1001);
        assert_eq!(p.due(start + 100 * S), 5000, "never more than the run");
        assert_eq!(p.due(0), 1, "a clock before the start is not negative time");
        assert_eq!(p.due_time(0), start);
        assert_eq!(p.due_time(1), start + 1_000_000);
        for n in [1, 7, 999, 4999] {
            assert_eq!(p.due(p.due_time(n)), n + 1);
            assert_eq!(p.due(p.due_time(n) - 1), n);
        }
    }

    #[test]
    fn due_times_round_up_at_rates_that_do_not_divide_a_second() {
        let p = Pacer::new(0, 3, 10);
        assert_eq!(p.due_time(1), 333_333_334);
        assert_eq!(p.due(333_333_333), 1);
        assert_eq!(p.due(333_333_334), 2);
    }

    #[test]
    fn low_rates_wake_at_the_due_time_high_rates_in_bursts() {
        let slow = Pacer::new(0, 1000, 10);
        assert_eq!(slow.wake_at(3, 2_990_000), 3_000_000);
        let fast = Pacer::new(0, 300_000, 1_000_000);
        // Next packet due in 3.3 µs, but a wake-up costs more than that: sleep 50 µs.
        let now = fast.due_time(10) - 1;
        assert_eq!(fast.wake_at(10, now), now + MIN_SLEEP_NS);
        // After a long send the next due time may already be further out than the minimum.
        assert_eq!(fast.wake_at(100, 0), fast.due_time(100));
        // The boundary: 20k pps is 50 µs apart and wakes per packet.
        let edge = Pacer::new(0, 20_000, 10);
        assert_eq!(edge.wake_at(1, 49_000), 50_000);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let p = Pacer::new(u64::MAX - 10, 1_000_000_000, u64::MAX);
        assert_eq!(p.due_time(u64::MAX), u64::MAX);
        assert_eq!(p.due(u64::MAX), 11);
        let slow = Pacer::new(0, 1, u64::MAX);
        assert_eq!(slow.due_time(u64::MAX), u64::MAX);
    }

    #[test]
    fn bad_options_are_rejected_before_any_socket() {
        let mut o = GenOptions {
            group: "239.1.1.1".parse().unwrap(),
            group_count: 1,
            port: 5000,
            interface: Egress::Name("lo".into()),
            bind: None,
            size: 23,
            count: 1,
            rate: 0,
            ttl: 1,
            tos: 0,
            stream_base: 0,
            rtp: false,
            same_stream: false,
            impair: Impairments::default(),
        };
        assert!(matches!(run(&o), Err(GenError::Size { size: 23 })));
        o.size = MAX_PAYLOAD + 1;
        assert!(matches!(run(&o), Err(GenError::Size { .. })));
        o.size = 100;
        o.group_count = 0;
        assert!(matches!(run(&o), Err(GenError::Groups { .. })));
        o.group_count = 2;
        o.count = u64::MAX;
        let e = run(&o).unwrap_err();
        assert!(matches!(e, GenError::Count { .. }), "{e}");
        o.count = 1;
        o.interface = Egress::Name("no-such-if-x".into());
        let e = run(&o).unwrap_err();
        assert!(e.to_string().contains("no-such-if-x"), "{e}");
    }

    #[test]
    fn bad_ipv6_options_are_rejected_before_sending() {
        let mut o = GenOptions {
            group: "ff3e::77:1".parse().unwrap(),
            group_count: 2,
            port: 5000,
            interface: Egress::Name("no-such-if-z".into()),
            bind: Some("10.0.0.1".parse().unwrap()),
            size: 100,
            count: 1,
            rate: 0,
            ttl: 1,
            tos: 0,
            stream_base: 0,
            rtp: false,
            same_stream: false,
            impair: Impairments::default(),
        };
        let e = run(&o).unwrap_err();
        assert!(matches!(e, GenError::BindFamily { .. }), "{e}");
        o.bind = Some("fd99::1".parse().unwrap());
        let e = run(&o).unwrap_err();
        assert!(e.to_string().contains("no-such-if-z"), "{e}");
        // An address no interface holds names no interface.
        o.interface = Egress::Addr("fd00:dead::1".parse().unwrap());
        let e = run(&o).unwrap_err();
        assert!(matches!(e, GenError::Interface { .. }), "{e}");
        assert!(e.to_string().contains("fd00:dead::1"), "{e}");
        // Two groups from the very last address would leave ff00::/8 (and the address space).
        o.group = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert!(matches!(run(&o), Err(GenError::Groups { .. })));
        o.group = "fd99::2".parse().unwrap();
        assert!(matches!(run(&o), Err(GenError::Groups { .. })));
    }

    #[test]
    fn ipv6_destinations_carry_the_egress_scope_only_where_it_means_something() {
        let scope_of = |a: &str| {
            sockaddr(a.parse().unwrap(), 5000, 7)
                .as_socket_ipv6()
                .unwrap()
                .scope_id()
        };
        assert_eq!(scope_of("ff02::1:3"), 7, "link-local scope");
        assert_eq!(scope_of("ff01::1"), 7, "interface-local scope");
        assert_eq!(scope_of("ff32::8000:1"), 7, "link-local SSM");
        assert_eq!(scope_of("fe80::1"), 7);
        assert_eq!(scope_of("ff3e::1"), 0, "global scope");
        assert_eq!(scope_of("ff15::1"), 0, "site scope");
        assert_eq!(scope_of("fd99::2"), 0);
        let v4 = sockaddr("239.1.1.1".parse().unwrap(), 5000, 7);
        assert_eq!(v4.as_socket(), Some("239.1.1.1:5000".parse().unwrap()));
    }

    #[test]
    fn report_displays_on_one_line() {
        let r = GenReport {
            sent: 10,
            errors: 1,
            seconds: 0.5,
            pps: 20.0,
            impaired: Impaired::default(),
        };
        assert_eq!(r.to_string(), "sent=10 errors=1 seconds=0.500 pps=20");
    }
}
