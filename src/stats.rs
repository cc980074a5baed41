//! Counters for flows, outputs and drops, and their snapshots.
//!
//! Workers write, everyone else reads. Every counter is a relaxed atomic owned by an `Arc`
//! shared between the forwarding table (which workers use) and whoever reports; a flow is kept
//! on one worker by the fanout hash, so its counters do not bounce between cores. A table
//! compiled on reload reuses the `Arc`s of unchanged flows and outputs, so their counters
//! survive reloads.
//!
//! Drop reasons are a closed enum with `&'static str` names, so log and metric labels stay
//! bounded.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Why a received frame, or one of its copies, was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Drop {
    /// A multicast UDP datagram for no configured (interface, group, port, source).
    NoMatch,
    /// An IPv4 or IPv6 fragment; mcr does not reassemble, and never forwards half a datagram.
    Fragment,
    /// Lengths or header fields that do not add up.
    Malformed,
    /// Not UDP over IPv4 or IPv6 (the socket filter refuses most of it before the ring).
    Unsupported,
    /// IPv6 with an extension header mcr does not walk past: a routing header, AH, ESP,
    /// misplaced hop-by-hop options or more than four headers before UDP.
    Extension,
    /// Larger than the receive ring's frame, so only a prefix was captured.
    Truncated,
    /// The kernel found the receive ring full (from `PACKET_STATISTICS`).
    RingFull,
    /// A looped copy: a payload the flow relayed moments ago, back from another sender.
    Loop,
    /// A wrong IPv4 header or UDP checksum on a frame nobody had verified: corrupted on the
    /// way in, so never relayed with fresh, valid headers.
    Checksum,
    /// An output's socket buffer or queue was full (`EAGAIN`/`ENOBUFS`); never retried.
    EgressFull,
    /// Any other send error, also counted per output by errno.
    SendError,
    /// A datagram for a flow, taken in while the relay is standby: not sent (see `role`).
    Standby,
    /// A merged flow's copy of an RTP sequence number another path (or this one) had
    /// delivered already: the redundancy doing its job (see `merge`).
    Merged,
    /// A merged flow's first copy of a sequence number that arrived after the playout
    /// buffer had released the ones after it (its wait, `merge_delay`, was over): sending
    /// it would reorder the output.
    Late,
}

impl Drop {
    pub const ALL: [Drop; 14] = [
        Drop::NoMatch,
        Drop::Fragment,
        Drop::Malformed,
        Drop::Unsupported,
        Drop::Extension,
        Drop::Truncated,
        Drop::RingFull,
        Drop::Loop,
        Drop::Checksum,
        Drop::EgressFull,
        Drop::SendError,
        Drop::Standby,
        Drop::Merged,
        Drop::Late,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Drop::NoMatch => "no_match",
            Drop::Fragment => "fragment",
            Drop::Malformed => "malformed",
            Drop::Unsupported => "unsupported",
            Drop::Extension => "extension_header",
            Drop::Truncated => "truncated",
            Drop::RingFull => "ring_full",
            Drop::Loop => "loop",
            Drop::Checksum => "checksum",
            Drop::EgressFull => "egress_full",
            Drop::SendError => "send_error",
            Drop::Standby => "standby",
            Drop::Merged => "merged",
            Drop::Late => "late",
        }
    }
}

/// Counters of drops that belong to no flow, one set per worker.
#[derive(Debug, Default)]
pub struct DropCounters([AtomicU64; Drop::ALL.len()]);

impl DropCounters {
    #[inline]
    pub fn add(&self, reason: Drop, n: u64) {
        self.0[reason as usize].fetch_add(n, Relaxed);
    }

    pub fn get(&self, reason: Drop) -> u64 {
        self.0[reason as usize].load(Relaxed)
    }
}

/// What arrived for one flow.
#[derive(Debug, Default)]
pub struct FlowStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// [`monotonic_ns`] of the batch that carried the latest packet; 0 = never.
    pub last_seen_ns: AtomicU64,
    /// Looped copies dropped by the loop guard (not counted in `packets`).
    pub looped: AtomicU64,
}

impl FlowStats {
    /// Counts one packet of `bytes` payload bytes, seen in a batch read at `now_ns`.
    #[inline]
    pub fn add(&self, bytes: usize, now_ns: u64) {
        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
        self.last_seen_ns.store(now_ns, Relaxed);
    }
}

/// What one input of a flow delivered (a merged flow's paths are told apart by these).
#[derive(Debug, Default)]
pub struct InputStats {
    /// Datagrams that matched this input.
    pub packets: AtomicU64,
    /// Of those, sequence numbers this input delivered first (the ones forwarded).
    pub first: AtomicU64,
    /// Copies of a sequence number another input (or this one) had delivered: discarded.
    pub duplicates: AtomicU64,
    /// First copies that came after the playout buffer gave their number up: discarded.
    pub late: AtomicU64,
    /// [`monotonic_ns`] of the batch that carried the latest packet; 0 = never.
    pub last_seen_ns: AtomicU64,
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call: cheap enough once per batch).
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Largest errno counted individually; anything above lands in the last slot.
const MAX_ERRNO: usize = 134;

/// What left through one output, and what did not.
#[derive(Debug)]
pub struct OutputStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub egress_full: AtomicU64,
    pub send_errors: AtomicU64,
    by_errno: [AtomicU64; MAX_ERRNO + 1],
}

impl Default for OutputStats {
    fn default() -> Self {
        OutputStats {
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            egress_full: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            by_errno: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl OutputStats {
    /// Records one send's result as io_uring reports it — payload bytes sent, or a negative
    /// errno — for the `packets` datagrams it carried (a run: one result for all).
    #[inline]
    pub fn record(&self, result: i32, packets: u64) {
        if result >= 0 {
            self.packets.fetch_add(packets, Relaxed);
            self.bytes.fetch_add(result as u64, Relaxed);
            return;
        }
        let errno = -result;
        if errno == libc::EAGAIN || errno == libc::ENOBUFS {
            self.egress_full.fetch_add(packets, Relaxed);
        } else {
            self.send_errors.fetch_add(packets, Relaxed);
            self.by_errno[(errno as usize).min(MAX_ERRNO)].fetch_add(packets, Relaxed);
        }
    }

    /// Counts a copy dropped before it reached the kernel because the send queue was full.
    #[inline]
    pub fn queue_full(&self) {
        self.egress_full.fetch_add(1, Relaxed);
    }

    /// Non-zero send errors as (errno name, count).
    pub fn errors_by_errno(&self) -> Vec<(String, u64)> {
        self.by_errno
            .iter()
            .enumerate()
            .filter_map(|(errno, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (errno_name(errno as i32), n))
            })
            .collect()
    }
}

fn errno_name(errno: i32) -> String {
    let name = nix::errno::Errno::from_raw(errno);
    if name == nix::errno::Errno::UnknownErrno {
        format!("errno_{errno}")
    } else {
        format!("{name:?}")
    }
}

/// A point-in-time copy of every counter, for logs, files, the control socket and metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub flows: Vec<FlowSnapshot>,
    /// Drops by reason name; includes the per-output `egress_full` and `send_error` totals.
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Frames read from the receive rings (all workers).
    pub frames: u64,
    /// Frames read per worker, in worker order.
    pub workers: Vec<u64>,
    /// Sends submitted to the kernel (all workers): a run of datagrams sent as one counts
    /// once, so `frames / sends` is how many datagrams a send carried on average.
    #[serde(default)]
    pub sends: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowSnapshot {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
    pub outputs: Vec<OutputSnapshot>,
    /// Packets per second over the last sampling period (filled by the daemon).
    #[serde(default)]
    pub pps: f64,
    /// Payload megabits per second over the last sampling period.
    #[serde(default)]
    pub mbps: f64,
    /// Seconds since the last packet; `None` if none arrived yet.
    #[serde(default)]
    pub idle_seconds: Option<f64>,
    /// "active", "idle" (no packet within its `idle_after`) or "waiting" (its input
    /// interface does not exist).
    #[serde(default)]
    pub state: String,
    /// Looped copies the loop guard dropped (also in the `loop` drop total).
    #[serde(default)]
    pub looped: u64,
    /// RTP stream quality, for a flow with `rtp = true` (of the merged stream, for a
    /// merged flow: `lost` is what every path lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp: Option<crate::rtp::RtpSnapshot>,
    /// A merged flow's paths, in the config's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputSnapshot>,
    /// A merged pair's recovered packets: sequence numbers only one path delivered (the
    /// sum of `only_this_path`), which a single feed would have lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<u64>,
}

/// What one path of a merged flow delivered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InputSnapshot {
    pub interface: String,
    pub group: String,
    pub port: u16,
    pub packets: u64,
    /// Sequence numbers this path delivered first (forwarded).
    pub first: u64,
    /// Copies discarded: another path (or this one) had delivered them.
    pub duplicates: u64,
    /// First copies discarded because they came after their turn (`merge_delay`).
    #[serde(default)]
    pub late: u64,
    /// "active" (a packet within the flow's `idle_after`), "idle" or "waiting" (its
    /// interface does not exist). A merged flow with a path not active still forwards, from
    /// the others, but has lost its redundancy.
    #[serde(default)]
    pub state: String,
    /// With two paths: sequence numbers only this one delivered (its first copies the
    /// other never duplicated) — what the redundancy recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_this_path: Option<u64>,
}

impl InputSnapshot {
    /// The paths of a merged flow, each with its state, `only_this_path` filled for a pair.
    pub fn read_all<'a>(
        inputs: impl ExactSizeIterator<Item = (&'a crate::config::Input, &'a InputStats, &'a str)>,
    ) -> Vec<InputSnapshot> {
        let mut all: Vec<InputSnapshot> = inputs
            .map(|(spec, s, state)| InputSnapshot {
                state: state.to_string(),
                interface: spec.interface.to_string(),
                group: spec.group.to_string(),
                port: spec.port,
                packets: s.packets.load(Relaxed),
                first: s.first.load(Relaxed),
                duplicates: s.duplicates.load(Relaxed),
                late: s.late.load(Relaxed),
                only_this_path: None,
            })
            .collect();
        if let [a, b] = &mut all[..] {
            a.only_this_path = Some(a.first.saturating_sub(b.duplicates));
            b.only_this_path = Some(b.first.saturating_sub(a.duplicates));
        }
        all
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OutputSnapshot {
    pub interface: String,
    pub group: String,
    pub port: u16,
    pub packets: u64,
    pub bytes: u64,
    pub egress_full: u64,
    pub send_errors: u64,
    pub errors_by_errno: Vec<(String, u64)>,
    /// How the output sends: "packet" (frames through AF_PACKET) or "udp" (the UDP socket;
    /// datagrams above the MTU take it on either path). Empty from an older relay.
    #[serde(default)]
    pub egress: String,
    /// "up", or "waiting: interface missing|interface down|cannot open: …".
    #[serde(default)]
    pub state: String,
}

impl FlowSnapshot {
    pub fn read(name: &str, flow: &FlowStats, now_ns: u64) -> FlowSnapshot {
        let last = flow.last_seen_ns.load(Relaxed);
        FlowSnapshot {
            name: name.to_string(),
            packets: flow.packets.load(Relaxed),
            bytes: flow.bytes.load(Relaxed),
            looped: flow.looped.load(Relaxed),
            idle_seconds: (last > 0).then(|| now_ns.saturating_sub(last) as f64 / 1e9),
            ..FlowSnapshot::default()
        }
    }
}

impl OutputSnapshot {
    pub fn read(interface: &str, group: std::net::IpAddr, port: u16, s: &OutputStats) -> Self {
        OutputSnapshot {
            interface: interface.to_string(),
            group: group.to_string(),
            port,
            packets: s.packets.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            egress_full: s.egress_full.load(Relaxed),
            send_errors: s.send_errors.load(Relaxed),
            errors_by_errno: s.errors_by_errno(),
            egress: String::new(),
            state: String::new(),
        }
    }
}

/// Per-worker counters that belong to no flow.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub frames: AtomicU64,
    /// Sends submitted (see [`Snapshot::sends`]).
    pub sends: AtomicU64,
    pub drops: DropCounters,
}

impl Snapshot {
    /// Adds the workers' counters to `self.drops` and `self.frames`.
    pub fn add_workers<'a>(&mut self, workers: impl IntoIterator<Item = &'a WorkerStats>) {
        for reason in Drop::ALL {
            self.drops.entry(reason.name().to_string()).or_insert(0);
        }
        for w in workers {
            let frames = w.frames.load(Relaxed);
            self.frames += frames;
            self.sends += w.sends.load(Relaxed);
            self.workers.push(frames);
            for reason in Drop::ALL {
                *self.drops.entry(reason.name().to_string()).or_insert(0) += w.drops.get(reason);
            }
        }
        // Per-output drops are summed into the totals too, so `drops` is the whole story.
        let (full, errors) = self
            .flows
            .iter()
            .flat_map(|f| &f.outputs)
            .fold((0, 0), |acc, o| {
                (acc.0 + o.egress_full, acc.1 + o.send_errors)
            });
        *self
            .drops
            .entry(Drop::EgressFull.name().to_string())
            .or_insert(0) += full;
        *self
            .drops
            .entry(Drop::SendError.name().to_string())
            .or_insert(0) += errors;
    }

    /// Flows by name, so comparing two snapshots stays linear in the number of flows.
    pub fn by_name(&self) -> std::collections::HashMap<&str, &FlowSnapshot> {
        self.flows.iter().map(|f| (f.name.as_str(), f)).collect()
    }

    /// Fills each flow's rates from `previous`, taken `elapsed` earlier.
    pub fn set_rates(&mut self, previous: &Snapshot, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let previous = previous.by_name();
        for f in &mut self.flows {
            if let Some(p) = previous.get(f.name.as_str()) {
                f.pps = f.packets.saturating_sub(p.packets) as f64 / secs;
                f.mbps = f.bytes.saturating_sub(p.bytes) as f64 * 8.0 / secs / 1e6;
            }
        }
    }

    /// Human-readable lines: one per flow with its outputs, then the drop totals.
    pub fn lines(&self, previous: Option<(&Snapshot, std::time::Duration)>) -> Vec<String> {
        let mut lines = Vec::new();
        let prev_flows = previous.map(|(prev, dt)| (prev.by_name(), dt));
        for f in &self.flows {
            let rate = prev_flows.as_ref().and_then(|(prev, dt)| {
                let p = prev.get(f.name.as_str())?;
                let secs = dt.as_secs_f64().max(1e-9);
                Some((
                    (f.packets.saturating_sub(p.packets)) as f64 / secs,
                    (f.bytes.saturating_sub(p.bytes)) as f64 * 8.0 / secs / 1e6,
                ))
            });
            let rate = rate.map_or(String::new(), |(pps, mbps)| {
                format!(" rate={pps:.0}pps/{mbps:.2}Mbit/s")
            });
            let outs: Vec<String> = f
                .outputs
                .iter()
                .map(|o| {
                    format!(
                        "{}>{}:{} {}/{}B full={} err={}",
                        o.interface,
                        o.group,
                        o.port,
                        o.packets,
                        o.bytes,
                        o.egress_full,
                        o.send_errors
                    )
                })
                .collect();
            let looped = if f.looped > 0 {
                format!(" looped={}", f.looped)
            } else {
                String::new()
            };
            let rtp = f.rtp.map_or(String::new(), |r| {
                format!(
                    " rtp=[lost={} dup={} reordered={} ssrc_changes={} resets={} not_rtp={} jitter={:.0}us]",
                    r.lost, r.duplicates, r.reordered, r.ssrc_changes, r.seq_resets, r.not_rtp, r.jitter_us
                )
            });
            let paths: Vec<String> = (f.inputs.iter())
                .map(|i| {
                    format!(
                        "{}<{}:{} {} first={} dup={}",
                        i.interface, i.group, i.port, i.packets, i.first, i.duplicates
                    )
                })
                .collect();
            let recovered = f
                .recovered
                .map_or(String::new(), |n| format!(" recovered={n}"));
            let paths = if paths.is_empty() {
                String::new()
            } else {
                format!(" paths=[{}]{recovered}", paths.join(", "))
            };
            lines.push(format!(
                "flow {} in={}/{}B{}{}{}{} out=[{}]",
                f.name,
                f.packets,
                f.bytes,
                rate,
                looped,
                rtp,
                paths,
                outs.join(", ")
            ));
        }
        let drops: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(format!(
            "frames={} sends={} drops: {}",
            self.frames,
            self.sends,
            drops.join(" ")
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_results_are_classified() {
        let s = OutputStats::default();
        s.record(1000, 1);
        s.record(3000, 3); // a run of three
        s.record(-libc::EAGAIN, 1);
        s.record(-libc::ENOBUFS, 4); // a run: every datagram in it
        s.record(-libc::ENETUNREACH, 1);
        s.record(-libc::ENETUNREACH, 2);
        s.record(-9999, 1);
        assert_eq!(s.packets.load(Relaxed), 4);
        assert_eq!(s.bytes.load(Relaxed), 4000);
        assert_eq!(s.egress_full.load(Relaxed), 5);
        assert_eq!(s.send_errors.load(Relaxed), 4);
        let by = s.errors_by_errno();
        assert!(by.contains(&("ENETUNREACH".to_string(), 3)), "{by:?}");
        assert_eq!(by.len(), 2);
    }

    #[test]
    fn snapshot_totals_include_output_drops() {
        let w = WorkerStats::default();
        w.drops.add(Drop::NoMatch, 3);
        w.frames.fetch_add(10, Relaxed);
        let mut snap = Snapshot {
            flows: vec![FlowSnapshot {
                name: "a".into(),
                packets: 7,
                bytes: 70,
                outputs: vec![OutputSnapshot {
                    egress_full: 2,
                    send_errors: 1,
                    ..OutputSnapshot::default()
                }],
                ..FlowSnapshot::default()
            }],
            ..Snapshot::default()
        };
        snap.add_workers([&w, &WorkerStats::default()]);
        assert_eq!(snap.frames, 10);
        assert_eq!(snap.drops["no_match"], 3);
        assert_eq!(snap.drops["egress_full"], 2);
        assert_eq!(snap.drops["send_error"], 1);
        assert_eq!(snap.drops.len(), Drop::ALL.len());
        assert!(snap.lines(None)[0].starts_with("flow a in=7/70B"));
    }
}
