//! Command line: `mcr run | check | gen | sink`. Parses arguments and calls the library.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONTROL_SOCKET};
use crate::control::{self, ReloadOutcome, Reply};
use crate::daemon::{self, RunOptions};
use crate::tools::{gen, sink};

/// Default config path of an installed relay.
pub const DEFAULT_CONFIG: &str = "/etc/mcr.toml";

#[derive(Debug, Parser)]
#[command(
    name = "mcr",
    version,
    about = "Userspace multicast relay: AF_PACKET in, io_uring out"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay in the foreground (SIGINT/SIGTERM stop it and print the final counters).
    Run {
        /// Config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Also write every counter as JSON to this file, at each stats tick and at exit.
        #[arg(long)]
        stats_json: Option<PathBuf>,
    },
    /// Validate a config without touching the network (exit 0 if valid, 1 if not).
    Check {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show per-flow counters, rates and drops of the running relay.
    Stats {
        #[arg(short, long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Refresh every second, like top.
        #[arg(long)]
        watch: bool,
    },
    /// Show version, uptime, config hash, reload state, workers and joined groups.
    Status {
        #[arg(short, long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Ask the running relay to reload its config; prints the result (exit 1 if rejected).
    Reload {
        #[arg(short, long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Make the running relay forward: the active relay of a pair (e.g. keepalived's
    /// notify_master). Prints the role; exit 0 also when it already was active.
    Active {
        #[arg(short, long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        /// Forward only this long (e.g. "3s") unless renewed by another `mcr active --lease`;
        /// then fall back to standby. For a pair's periodic health check while keepalived
        /// says MASTER: a master whose keepalived died stops by itself.
        #[arg(long, value_parser = humantime::parse_duration)]
        lease: Option<std::time::Duration>,
    },
    /// Make the running relay a standby: rings open and groups joined, nothing sent, so
    /// `mcr active` takes over at once (keepalived's notify_backup / notify_fault).
    Standby {
        #[arg(short, long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Send numbered multicast test traffic.
    Gen(GenArgs),
    /// Receive multicast test traffic and check it: counts, gaps, duplicates, order, latency.
    Sink(SinkArgs),
}

#[derive(Debug, clap::Args)]
struct GenArgs {
    /// First destination group: IPv4 (224.0.0.0/4) or IPv6 (ff00::/8), or one unicast
    /// address. Its family picks the socket (AF_INET or AF_INET6).
    #[arg(long)]
    group: IpAddr,
    /// Send round-robin to this many consecutive groups (one stream each).
    #[arg(long, default_value_t = 1)]
    group_count: u32,
    /// Destination UDP port.
    #[arg(long)]
    port: u16,
    /// Outgoing interface: a name (by index) or one of its addresses (IPv4 or IPv6).
    #[arg(long)]
    interface: String,
    /// Source address to bind, of the group's family.
    #[arg(long)]
    bind: Option<IpAddr>,
    /// UDP payload bytes (at least 24).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Packets per stream.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Total packets per second over all streams; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// IP TTL of multicast datagrams (IPv6: the hop limit).
    #[arg(long, default_value_t = 8)]
    ttl: u8,
    /// IPv4 TOS byte or IPv6 traffic class: DSCP << 2 | ECN (e.g. 184 for EF).
    #[arg(long, default_value_t = 0)]
    tos: u8,
    /// Stream id of the first group (later groups count up from it).
    #[arg(long, default_value_t = 0)]
    stream_base: u32,
    /// Start each payload with an RTP header (sequence = the probe's, 90 kHz send time).
    #[arg(long)]
    rtp: bool,
    /// Every group carries one stream (--stream-base): each sequence number is sent once
    /// to every group, as over redundant paths.
    #[arg(long)]
    same_stream: bool,
    /// Drop every Nth packet on purpose (single stream).
    #[arg(long)]
    drop_every: Option<u64>,
    /// Send every Nth packet twice.
    #[arg(long)]
    dup_every: Option<u64>,
    /// Send every Nth packet after the one that follows it.
    #[arg(long)]
    swap_every: Option<u64>,
    /// Drop packets START..END (an outage), e.g. 4000..6000.
    #[arg(long, value_parser = parse_range)]
    drop_range: Option<(u64, u64)>,
    /// Drop this percentage of packets at random, the same ones for the same --seed.
    #[arg(long, default_value_t = 0.0)]
    drop_percent: f64,
    /// Seed of --drop-percent.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not START..END"))?;
    let n = |v: &str| v.trim().parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
    Ok((n(a)?, n(b)?))
}

#[derive(Debug, clap::Args)]
struct SinkArgs {
    /// First group to join: IPv4 (224.0.0.0/4) or IPv6 (ff00::/8); or one unicast address to
    /// receive on, without joining.
    #[arg(long)]
    group: IpAddr,
    /// Join this many consecutive groups.
    #[arg(long, default_value_t = 1)]
    group_count: u32,
    /// UDP port.
    #[arg(long)]
    port: u16,
    /// Interface to join on.
    #[arg(long)]
    interface: String,
    /// Source-specific join (SSM) for this source, of the group's family.
    #[arg(long)]
    source: Option<IpAddr>,
    /// Exit once this many packets arrived.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this long without packets, once traffic has started.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Exit if nothing arrives for this long at the start.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    first_timeout: Duration,
    /// Create this file once every group is joined.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Payloads start with an RTP header (`mcr gen --rtp`): report each stream's RTP
    /// loss, duplicates, reordering and jitter as the relay's `rtp = true` counts them.
    #[arg(long)]
    rtp: bool,
    /// Print the summary (with per-stream detail) as JSON. The fields are the same for IPv6:
    /// ttl_min/ttl_max hold the hop limit, dscp_min/dscp_max the traffic class's DSCP.
    #[arg(long)]
    json: bool,
}

/// Runs the command line; the process exit code.
/// `mcr status`'s exit status: 0 when every flow is active and every output up, 3 when
/// something is not forwarding (1 is kept for "cannot ask the relay").
fn health_code(s: &control::Status) -> ExitCode {
    if s.unhealthy.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match cli.command {
        Command::Run { config, stats_json } => {
            match daemon::run(&RunOptions { config, stats_json }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcr: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("{w}");
                }
                let summary = c.summary();
                println!("ok: {summary}");
                let dropped = summary.flows - summary.local_delivery;
                if summary.flows > 0 {
                    println!(
                        "ingress drop: {dropped} flows' datagrams stop at their input interface once mcr has them (local sockets on this host do not get them); {} flows with local_delivery = true reach local sockets too",
                        summary.local_delivery
                    );
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Stats {
            socket,
            json,
            watch,
        } => loop {
            match control::call(&socket, control::Command::Stats) {
                Ok(Reply::Stats(snap)) => {
                    if json {
                        println!("{}", serde_json::to_string(&snap).unwrap_or_default());
                    } else {
                        if watch {
                            print!("\x1b[H\x1b[2J");
                        }
                        print!("{}", render_stats(&snap));
                    }
                }
                Ok(other) => return unexpected(other),
                Err(e) => {
                    eprintln!("mcr: {e}");
                    return ExitCode::FAILURE;
                }
            }
            if !watch {
                return ExitCode::SUCCESS;
            }
            std::thread::sleep(Duration::from_secs(1));
        },
        Command::Status { socket, json } => {
            match control::call(&socket, control::Command::Status) {
                Ok(Reply::Status(s)) if json => {
                    println!("{}", serde_json::to_string(&s).unwrap_or_default());
                    health_code(&s)
                }
                Ok(Reply::Status(s)) => {
                    println!("version:        {}", s.version);
                    println!("pid:            {}", s.pid);
                    println!(
                        "uptime:         {}",
                        humantime::format_duration(Duration::from_secs(s.uptime_seconds as u64))
                    );
                    println!(
                        "config:         {} (fnv1a {})",
                        s.config_path, s.config_hash
                    );
                    println!("generation:     {}", s.generation);
                    println!(
                        "reloads:        {} applied, {} rejected",
                        s.reloads_ok, s.reloads_failed
                    );
                    println!(
                        "last reload:    {}",
                        s.last_reload.as_deref().unwrap_or("none")
                    );
                    println!("workers:        {}", s.workers);
                    println!("helper sockets: {}", s.helper_sockets);
                    println!(
                        "receive rings:  {} of ring_memory {}",
                        crate::config::format_size(s.ring_bytes),
                        crate::config::format_size(s.ring_memory)
                    );
                    println!("ingress drop:   {}", s.ingress_drop);
                    println!(
                        "role:           {}",
                        if s.role == "standby" {
                            "standby (receives, sends nothing; `mcr active` takes over)"
                        } else {
                            s.role.as_str()
                        }
                    );
                    for (iface, n) in &s.groups {
                        println!("groups joined:  {n} on {iface}");
                    }
                    for (name, facts) in &s.interfaces {
                        match facts {
                            Some(f) => println!(
                                "interface:      {name} index {} {} mtu {} {} {:?} {:?}",
                                f.ifindex,
                                if f.up { "up" } else { "down" },
                                f.mtu,
                                f.mac,
                                f.ipv4,
                                f.ipv6
                            ),
                            None => println!("interface:      {name} missing (flows wait for it)"),
                        }
                    }
                    let states: Vec<String> = s
                        .flow_states
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect();
                    println!("flows:          {}", states.join(", "));
                    for line in &s.unhealthy {
                        println!("not forwarding: {line}");
                    }
                    for line in &s.degraded {
                        println!("degraded:       {line}");
                    }
                    health_code(&s)
                }
                Ok(other) => unexpected(other),
                Err(e) => {
                    eprintln!("mcr: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reload { socket } => match control::call(&socket, control::Command::Reload) {
            Ok(Reply::Reload(ReloadOutcome::Applied { summary })) => {
                println!("reloaded: {summary}");
                ExitCode::SUCCESS
            }
            Ok(Reply::Reload(ReloadOutcome::Unchanged)) => {
                println!("unchanged: the file is the one already running");
                ExitCode::SUCCESS
            }
            Ok(Reply::Reload(ReloadOutcome::Rejected { errors })) => {
                for e in errors {
                    eprintln!("reload rejected: {e}");
                }
                ExitCode::FAILURE
            }
            Ok(other) => unexpected(other),
            Err(e) => {
                eprintln!("mcr: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Active { socket, lease } => {
            let command = match lease {
                Some(l) => control::Command::Lease {
                    ms: u64::try_from(l.as_millis()).unwrap_or(u64::MAX).max(1),
                },
                None => control::Command::Active,
            };
            set_role(&socket, command)
        }
        Command::Standby { socket } => set_role(&socket, control::Command::Standby),
        Command::Gen(a) => {
            let interface = match a.interface.parse::<IpAddr>() {
                Ok(addr) => gen::Egress::Addr(addr),
                Err(_) => gen::Egress::Name(a.interface),
            };
            let opts = gen::GenOptions {
                group: a.group,
                group_count: a.group_count,
                port: a.port,
                interface,
                bind: a.bind,
                size: a.size,
                count: a.count,
                rate: a.rate,
                ttl: a.ttl,
                tos: a.tos,
                stream_base: a.stream_base,
                rtp: a.rtp,
                same_stream: a.same_stream,
                impair: gen::Impairments {
                    drop_every: a.drop_every,
                    dup_every: a.dup_every,
                    swap_every: a.swap_every,
                    drop_range: a.drop_range,
                    drop_percent: a.drop_percent,
                    seed: a.seed,
                },
            };
            report(gen::run(&opts), a.json)
        }
        Command::Sink(a) => {
            let opts = sink::SinkOptions {
                group: a.group,
                group_count: a.group_count,
                port: a.port,
                interface: a.interface,
                source: a.source,
                count: a.count,
                idle_timeout: a.idle_timeout,
                first_timeout: a.first_timeout,
                ready_file: a.ready_file,
                rtp: a.rtp,
            };
            report(sink::run(&opts), a.json)
        }
    }
}

fn report<R, E>(result: Result<R, E>, json: bool) -> ExitCode
where
    R: serde::Serialize + std::fmt::Display,
    E: std::fmt::Display,
{
    match result {
        Ok(r) if json => match serde_json::to_string(&r) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcr: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(r) => {
            println!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcr: {e}");
            ExitCode::FAILURE
        }
    }
}

fn unexpected(reply: Reply) -> ExitCode {
    eprintln!("mcr: unexpected reply from the relay: {reply:?}");
    ExitCode::FAILURE
}

/// The `mcr stats` table: one row per flow, one per output, then drop totals.
fn render_stats(snap: &crate::stats::Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:<8} {:>12} {:>14} {:>10} {:>9} {:>9} {:>8} {:>8}",
        "FLOW / OUTPUT", "STATE", "PACKETS", "BYTES", "PPS", "MBIT/S", "IDLE", "FULL", "ERRORS"
    );
    for f in &snap.flows {
        let idle = f
            .idle_seconds
            .map_or_else(|| "never".to_string(), |s| format!("{s:.1}s"));
        let _ = writeln!(
            out,
            "{:<30} {:<8} {:>12} {:>14} {:>10.0} {:>9.2} {:>9} {:>8} {:>8}",
            f.name, f.state, f.packets, f.bytes, f.pps, f.mbps, idle, "", ""
        );
        if let Some(n) = f.recovered {
            let _ = writeln!(out, "  recovered (delivered by one path only): {n}");
        }
        for i in &f.inputs {
            let only = i
                .only_this_path
                .map_or(String::new(), |n| format!(", only this path {n}"));
            let _ = writeln!(
                out,
                "  path {}:{} on {}: {} packets, first {}, duplicates discarded {}{only}",
                i.group, i.port, i.interface, i.packets, i.first, i.duplicates
            );
        }
        if let Some(r) = &f.rtp {
            let _ = writeln!(
                out,
                "  rtp: {} packets, lost {}, duplicates {}, reordered {}, ssrc changes {}, sequence resets {}, not rtp {}, jitter {:.1} us",
                r.packets, r.lost, r.duplicates, r.reordered, r.ssrc_changes, r.seq_resets, r.not_rtp, r.jitter_us
            );
        }
        if f.looped > 0 {
            let _ = writeln!(out, "  looped copies dropped: {}", f.looped);
        }
        for o in &f.outputs {
            let via = if o.egress == "udp" { " [udp]" } else { "" };
            let target = format!("  > {} {}:{}{via}", o.interface, o.group, o.port);
            let _ = writeln!(
                out,
                "{:<30} {:<8} {:>12} {:>14} {:>10} {:>9} {:>9} {:>8} {:>8}",
                target,
                o.state.split(':').next().unwrap_or(""),
                o.packets,
                o.bytes,
                "",
                "",
                "",
                o.egress_full,
                o.send_errors
            );
        }
    }
    let drops: Vec<String> = snap.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(
        out,
        "frames={} sends={} drops: {}",
        snap.frames,
        snap.sends,
        drops.join(" ")
    );
    out
}

/// `mcr active` / `mcr standby`.
fn set_role(socket: &std::path::Path, command: control::Command) -> ExitCode {
    match control::call(socket, command) {
        Ok(Reply::Role(r)) => {
            let how = if r.changed { "now" } else { "already" };
            match r.lease_seconds {
                Some(s) => println!("{how} {} (lease {s:.1}s)", r.role),
                None => println!("{how} {}", r.role),
            }
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(other),
        Err(e) => {
            eprintln!("mcr: {e}");
            ExitCode::FAILURE
        }
    }
}
