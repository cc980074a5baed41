//! End-to-end runs of `gen` and `sink` across two network namespaces joined by a veth pair.
//!
//! Needs root (it creates namespaces). Every namespace is named after the test process and a
//! tag, and is deleted by [`Topology`]'s `Drop` even when an assertion fails; traffic only ever
//! flows inside these namespaces. Throughput and latency are measured by `scripts/bench`, not here.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::gen::{self, Egress, GenOptions, GenReport};
use super::os;
use super::sink::{self, SinkOptions, SinkReport};

/// Sender namespace `a` (`va`, 10.99.0.1/24) and receiver namespace `b` (`vb`, 10.99.0.2/24).
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
        ip(&[
            "-n", &t.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &t.b,
        ]);
        ip(&["-n", &t.a, "addr", "add", "10.99.0.1/24", "dev", "va"]);
        ip(&["-n", &t.b, "addr", "add", "10.99.0.2/24", "dev", "vb"]);
        for (ns, dev) in [(&t.a, "va"), (&t.a, "lo"), (&t.b, "vb"), (&t.b, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
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
