//! End-to-end runs of `gen` and `sink` across two network namespaces joined by a veth pair.
//!
//! Needs root (it creates namespaces). Every namespace is named after the test process and a
//! tag, and is deleted by [`Topology`]'s `Drop` even when an assertion fails; traffic only ever
//! flows inside these namespaces. Throughput and latency are measured by `scripts/bench`, not here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::gen::{self, Egress, GenOptions, GenReport, Impairments};
use super::os;
use super::sink::{self, SinkOptions, SinkReport};

/// Sender namespace `a` (`va`, 10.99.0.1/24 and fd99::1/64) and receiver namespace `b` (`vb`,
/// 10.99.0.2/24 and fd99::2/64).
/// Traffic tests take turns: in parallel they would compete for the machine's two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Topology {
    _serial: std::sync::MutexGuard<'static, ()>,
    a: String,
    b: String,
    ready: PathBuf,
}

impl Topology {
    fn new(tag: &str) -> Topology {
        let pid = std::process::id();
        let t = Topology {
            _serial: SERIAL.lock().unwrap_or_else(|e| e.into_inner()),
            a: format!("ht-a-{pid}-{tag}"),
            b: format!("ht-b-{pid}-{tag}"),
            ready: std::env::temp_dir().join(format!("ht-ready-{pid}-{tag}")),
        };
        // Constructed first, so that a failure below still tears down what exists.
        let _ = std::fs::remove_file(&t.ready);
        ip(&["netns", "add", &t.a]);
        ip(&["netns", "add", &t.b]);
        for ns in [&t.a, &t.b] {
            // Before any interface exists, so the veths inherit it: duplicate address detection
            // would hold every IPv6 address (link-local ones too) tentative for a second or more.
            // Only these two namespaces, which the test owns, are changed.
            ip(&[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]);
        }
        ip(&[
            "-n", &t.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &t.b,
        ]);
        ip(&["-n", &t.a, "addr", "add", "10.99.0.1/24", "dev", "va"]);
        ip(&["-n", &t.b, "addr", "add", "10.99.0.2/24", "dev", "vb"]);
        ip(&[
            "-n",
            &t.a,
            "addr",
            "add",
            "fd99::1/64",
            "dev",
            "va",
            "nodad",
        ]);
        ip(&[
            "-n",
            &t.b,
            "addr",
            "add",
            "fd99::2/64",
            "dev",
            "vb",
            "nodad",
        ]);
        for (ns, dev) in [(&t.a, "va"), (&t.a, "lo"), (&t.b, "vb"), (&t.b, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        for (ns, dev) in [(&t.a, "va"), (&t.b, "vb")] {
            wait_for_ipv6(ns, dev);
        }
        t
    }

    /// Runs the sink in namespace `b` on its own thread; returns once it is ready.
    fn spawn_sink(&self, mut opts: SinkOptions) -> thread::JoinHandle<SinkReport> {
        opts.ready_file = Some(self.ready.clone());
        let ns = self.b.clone();
        let sink = thread::spawn(move || {
            os::enter_netns(&netns_path(&ns)).expect("enter sink namespace");
            sink::run(&opts).expect("sink run")
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ready.exists() {
            assert!(!sink.is_finished(), "sink ended before it was ready");
            assert!(Instant::now() < deadline, "sink not ready after 10 s");
            thread::sleep(Duration::from_millis(5));
        }
        sink
    }

    /// Runs the generator in namespace `a` (on its own thread) to completion.
    fn run_gen(&self, opts: GenOptions) -> GenReport {
        let ns = self.a.clone();
        thread::spawn(move || {
            os::enter_netns(&netns_path(&ns)).expect("enter gen namespace");
            gen::run(&opts).expect("gen run")
        })
        .join()
        .expect("gen thread")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of the veth pair, and with it the other end.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_file(&self.ready);
    }
}

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Waits until IPv6 is configured on `dev`, which its link-local address shows.
///
/// The kernel configures IPv6 on an interface (link-local address, and the `ff00::/8` route
/// that multicast input needs) only once the link is operationally up, which the link-watch
/// work reports up to a second after `ip link set up`. Until then IPv6 multicast arriving on
/// it is dropped as IP_INNOROUTES; IPv4 needs no such route.
fn wait_for_ipv6(ns: &str, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link"])
            .output()
            .expect("run ip");
        let shown = String::from_utf8_lossy(&out.stdout);
        if shown.contains("inet6 fe80") && !shown.contains("tentative") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no IPv6 link-local address on {dev} after 5 s: {shown}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 1);

fn gen_options(group_count: u32, count: u64, rate: u64, size: usize) -> GenOptions {
    GenOptions {
        group: GROUP.into(),
        group_count,
        port: 5001,
        interface: Egress::Name("va".into()),
        bind: Some(Ipv4Addr::new(10, 99, 0, 1).into()),
        size,
        count,
        rate,
        ttl: 7,
        tos: 34 << 2,
        stream_base: 100,
        rtp: false,
        same_stream: false,
        impair: Impairments::default(),
    }
}

fn sink_options(group_count: u32, idle: Duration) -> SinkOptions {
    let mut o = SinkOptions::new(GROUP, group_count, 5001, "vb");
    o.idle_timeout = idle;
    o.first_timeout = Duration::from_secs(20);
    o
}

#[test]
fn three_paced_streams_arrive_complete_in_order_and_with_the_sent_ttl() {
    let topo = Topology::new("e2e");
    let sink = topo.spawn_sink(sink_options(3, Duration::from_secs(1)));
    let sent = topo.run_gen(gen_options(3, 20_000, 20_000, 1024));
    let r = sink.join().expect("sink thread");
    eprintln!("gen: {sent}\nsink: {r}");

    assert_eq!((sent.sent, sent.errors), (60_000, 0));
    assert!(
        (2.9..4.0).contains(&sent.seconds),
        "20k pps for 60k packets took {}",
        sent.seconds
    );
    assert_eq!(r.received, 60_000);
    assert_eq!(r.bytes, 60_000 * 1024);
    assert_eq!(
        (r.lost, r.duplicates, r.reordered, r.corrupt, r.foreign),
        (0, 0, 0, 0, 0)
    );
    assert_eq!((r.ttl_min, r.ttl_max), (Some(7), Some(7)));
    assert_eq!(
        (r.dscp_min, r.dscp_max),
        (Some(34), Some(34)),
        "gen --tos, seen by the sink"
    );
    assert_eq!(r.streams, 3);
    for (i, s) in r.per_stream.iter().enumerate() {
        assert_eq!(s.stream, 100 + i as u32);
        assert_eq!(s.group, Ipv4Addr::from(u32::from(GROUP) + i as u32));
        assert_eq!(
            (s.received, s.bytes, s.first_seq, s.last_seq),
            (20_000, 20_000 * 1024, 0, 19_999)
        );
        assert_eq!((s.lost, s.duplicates, s.reordered), (0, 0, 0));
    }
    let l = r.latency_us.expect("latency");
    assert!(l.p50 > 0.0 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
}

#[test]
fn a_sink_ignores_groups_it_did_not_ask_for_and_stops_at_its_count() {
    let topo = Topology::new("foreign");
    // The sink asks for the second and third group only; the first is joined by a bystander
    // socket in the same namespace, so the sink's socket (IP_MULTICAST_ALL on) receives it too.
    let ns = topo.b.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let bystander = thread::spawn(move || {
        os::enter_netns(&netns_path(&ns)).expect("enter namespace");
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let ifindex = crate::sys::ifindex("vb").unwrap();
        s.join_multicast_v4_n(&GROUP, &socket2::InterfaceIndexOrAddress::Index(ifindex))
            .unwrap();
        rx.recv().ok();
    });
    let mut opts = sink_options(2, Duration::from_secs(1));
    opts.group = Ipv4Addr::from(u32::from(GROUP) + 1).into();
    opts.count = Some(1000);
    thread::sleep(Duration::from_millis(100));
    let sink = topo.spawn_sink(opts);
    topo.run_gen(gen_options(3, 1000, 20_000, 64));
    let r = sink.join().expect("sink thread");
    tx.send(()).ok();
    bystander.join().ok();
    assert_eq!(r.received, 1000, "{r}");
    assert!(
        r.foreign >= 450,
        "datagrams of the unasked group are foreign: {r:?}"
    );
    assert_eq!(r.streams, 2);
    assert_eq!(r.per_stream[0].stream, 101);
    assert_eq!((r.lost, r.duplicates, r.corrupt), (0, 0, 0));
}

#[test]
fn three_hundred_source_specific_groups_are_joined_through_helper_sockets() {
    let topo = Topology::new("ssm");
    // 300 groups is 15 helper sockets at the default igmp_max_memberships of 20.
    let mut opts = sink_options(300, Duration::from_millis(500));
    opts.source = Some(Ipv4Addr::new(10, 99, 0, 1).into());
    let sink = topo.spawn_sink(opts);
    let g = topo.run_gen(gen_options(300, 20, 30_000, 100));
    let r = sink.join().expect("sink thread");
    assert_eq!(g.sent, 6000);
    assert_eq!(
        (r.received, r.streams, r.lost, r.foreign),
        (6000, 300, 0, 0),
        "{r}"
    );
    assert!(r
        .per_stream
        .iter()
        .all(|s| s.received == 20 && s.last_seq == 19));
    assert_eq!(
        r.per_stream[299].group,
        IpAddr::V4(Ipv4Addr::from(u32::from(GROUP) + 299))
    );

    // A join for another source admits nothing from this one.
    let _ = std::fs::remove_file(&topo.ready);
    let mut opts = sink_options(1, Duration::from_millis(500));
    opts.source = Some(Ipv4Addr::new(10, 99, 0, 9).into());
    opts.first_timeout = Duration::from_millis(500);
    let sink = topo.spawn_sink(opts);
    topo.run_gen(gen_options(1, 100, 10_000, 100));
    let r = sink.join().expect("sink thread");
    assert_eq!((r.received, r.foreign), (0, 0), "{r}");
}

/// Any-source IPv6 groups; the first two straddle a 16-bit boundary of the address.
const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0x77, 0xffff);
/// Source-specific IPv6 groups (ff3e::/32).
const SSM6: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x77, 0);
const SENDER6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1);

fn gen_options_v6(group: Ipv6Addr, group_count: u32, count: u64, rate: u64) -> GenOptions {
    GenOptions {
        group: group.into(),
        bind: Some(SENDER6.into()),
        ..gen_options(group_count, count, rate, 512)
    }
}

fn nth6(first: Ipv6Addr, i: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(u128::from(first) + u128::from(i)))
}

#[test]
fn ipv6_streams_arrive_complete_with_the_sent_hop_limit_and_traffic_class() {
    let topo = Topology::new("v6");
    let mut opts = sink_options(3, Duration::from_secs(1));
    opts.group = GROUP6.into();
    let sink = topo.spawn_sink(opts);
    let sent = topo.run_gen(gen_options_v6(GROUP6, 3, 4000, 20_000));
    let r = sink.join().expect("sink thread");
    eprintln!("gen: {sent}\nsink: {r}");

    assert_eq!((sent.sent, sent.errors), (12_000, 0));
    assert_eq!(r.received, 12_000);
    assert_eq!(r.bytes, 12_000 * 512);
    assert_eq!(
        (r.lost, r.duplicates, r.reordered, r.corrupt, r.foreign),
        (0, 0, 0, 0, 0)
    );
    assert_eq!((r.ttl_min, r.ttl_max), (Some(7), Some(7)), "hop limit");
    assert_eq!(
        (r.dscp_min, r.dscp_max),
        (Some(34), Some(34)),
        "gen --tos as the traffic class"
    );
    assert_eq!(r.streams, 3);
    for (i, s) in r.per_stream.iter().enumerate() {
        assert_eq!(s.stream, 100 + i as u32);
        assert_eq!(s.group, nth6(GROUP6, i as u32));
        assert_eq!(
            (s.received, s.bytes, s.first_seq, s.last_seq),
            (4000, 4000 * 512, 0, 3999)
        );
        assert_eq!((s.lost, s.duplicates, s.reordered), (0, 0, 0));
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["per_stream"][1]["group"], "ff15::78:0");
}

#[test]
fn a_thousand_source_specific_ipv6_groups_outgrow_one_sockets_option_memory() {
    let topo = Topology::new("ssm6");
    // 1000 SSM joins cost ~240 kB of option memory, more than one socket may hold at the
    // default net.core.optmem_max (128 KiB: 546 such joins), so the sink needs two sockets.
    let mut opts = sink_options(1000, Duration::from_millis(500));
    opts.group = SSM6.into();
    opts.source = Some(SENDER6.into());
    let sink = topo.spawn_sink(opts);
    let g = topo.run_gen(gen_options_v6(SSM6, 1000, 5, 30_000));
    let r = sink.join().expect("sink thread");
    assert_eq!((g.sent, g.errors), (5000, 0));
    assert_eq!(
        (r.received, r.streams, r.lost, r.corrupt, r.foreign),
        (5000, 1000, 0, 0, 0),
        "{r}"
    );
    assert_eq!(
        (r.ttl_min, r.ttl_max, r.dscp_min),
        (Some(7), Some(7), Some(34))
    );
    for (i, s) in r.per_stream.iter().enumerate() {
        assert_eq!(s.group, nth6(SSM6, i as u32));
        assert_eq!((s.received, s.first_seq, s.last_seq), (5, 0, 4));
    }

    // A join for another source admits nothing from this one.
    let _ = std::fs::remove_file(&topo.ready);
    let mut opts = sink_options(1, Duration::from_millis(500));
    opts.group = SSM6.into();
    opts.source = Some(Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 9).into());
    opts.first_timeout = Duration::from_millis(500);
    let sink = topo.spawn_sink(opts);
    topo.run_gen(gen_options_v6(SSM6, 1, 100, 10_000));
    let r = sink.join().expect("sink thread");
    assert_eq!((r.received, r.foreign), (0, 0), "{r}");
}

#[test]
fn a_thousand_ipv6_groups_fit_the_helper_pools_at_default_sysctls() {
    let topo = Topology::new("mld");
    let ns = topo.b.clone();
    thread::spawn(move || {
        os::enter_netns(&netns_path(&ns)).expect("enter namespace");
        let limits = crate::membership::Limits::read();
        let ifindex = crate::sys::ifindex("vb").unwrap();
        let join = |source: Option<Ipv6Addr>| {
            let mut pool = crate::membership::Memberships::kernel();
            for i in 0..1000u32 {
                let group = Ipv6Addr::from(u128::from(SSM6) + u128::from(i));
                pool.join(crate::membership::Membership {
                    ifindex,
                    group: group.into(),
                    source: source.map(Into::into),
                })
                .unwrap_or_else(|e| panic!("join {i}: {e}"));
            }
            pool.sockets()
        };
        // The kernel refuses a join past optmem_max (ENOMEM); the pool never asks one.
        let per_socket = limits.max_memberships_v6;
        assert_eq!(join(None), 1000usize.div_ceil(per_socket));
        assert_eq!(join(Some(SENDER6)), 1000usize.div_ceil(per_socket));
    })
    .join()
    .expect("join thread");
}

#[test]
fn one_ipv6_unicast_address_is_received_without_joining() {
    let topo = Topology::new("uni6");
    let addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 2);
    let mut opts = sink_options(1, Duration::from_millis(500));
    opts.group = addr.into();
    let sink = topo.spawn_sink(opts);
    let g = topo.run_gen(gen_options_v6(addr, 1, 1000, 20_000));
    let r = sink.join().expect("sink thread");
    assert_eq!(g.sent, 1000);
    assert_eq!(
        (r.received, r.lost, r.corrupt, r.foreign),
        (1000, 0, 0, 0),
        "{r}"
    );
    assert_eq!(r.per_stream[0].group, IpAddr::V6(addr));
    // Like IPv4, gen sets only the multicast hop limit: unicast leaves with the default 64.
    assert_eq!((r.ttl_min, r.dscp_min), (Some(64), Some(34)));
}
