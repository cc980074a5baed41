//! End to end: hostile input. Frames injected raw (AF_PACKET in the generator's namespace,
//! so no host has vouched for their checksums) interleave a valid counted stream with
//! malformed, corrupt, fragmented and foreign-VLAN ones: the valid stream arrives complete
//! and byte-exact, every bad frame is counted under its reason, none is relayed. And the
//! control socket and metrics endpoint under idle, slow and huge clients.

mod common;

use std::time::{Duration, Instant};

use common::{assert_clean, flow, num, serial, Topology};
use mcr::wire::checksum::{checksum, fold, sum_words};

const SRC: [u8; 4] = [10, 1, 0, 1];
const GROUP: [u8; 4] = [239, 1, 1, 1];

/// How a frame is built from probe `seq`, and what mcr must make of it.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Valid,
    /// UDP checksum 0: none computed, valid for IPv4.
    NoUdpChecksum,
    /// An 802.1Q tag with VLAN ID 0 (priority only): the kernel treats it as untagged.
    PriorityTagged,
    /// IPv4 options (NOPs): a valid datagram.
    IpOptions,
    /// A payload bit flipped after the checksum was computed (corruption on the way).
    CorruptPayload,
    /// A wrong IPv4 header checksum.
    BadIpChecksum,
    /// IHL 4: a header shorter than the minimum.
    IhlTooSmall,
    /// IHL 15 (60 bytes) with a total length of 40.
    IhlBeyondTotal,
    /// Total length larger than the frame carries.
    TotalBeyondFrame,
    /// Total length that ends inside the UDP header.
    TotalCutsUdpHeader,
    /// UDP length larger than the IPv4 payload.
    UdpLenBeyondIp,
    /// UDP length below its own header.
    UdpLenTooSmall,
    /// The first fragment of a datagram (MF set).
    FirstFragment,
    /// A later fragment (offset 1480).
    LaterFragment,
    /// Two tags, the outer one a VLAN (stripped by the kernel, VLAN ID 7).
    DoubleTagged,
    /// A priority tag outside, a VLAN ID 9 tag inside (left in the frame by the kernel).
    VlanInsidePriorityTag,
}

impl Kind {
    /// The drop reason mcr must count it under; `None` for a datagram it relays.
    fn reason(self) -> Option<&'static str> {
        use Kind::*;
        match self {
            Valid | NoUdpChecksum | PriorityTagged | IpOptions => None,
            CorruptPayload | BadIpChecksum => Some("checksum"),
            IhlTooSmall | IhlBeyondTotal | TotalBeyondFrame | TotalCutsUdpHeader
            | UdpLenBeyondIp | UdpLenTooSmall => Some("malformed"),
            FirstFragment | LaterFragment => Some("fragment"),
            DoubleTagged | VlanInsidePriorityTag => Some("unsupported"),
        }
    }
}

const BAD: [Kind; 12] = [
    Kind::CorruptPayload,
    Kind::BadIpChecksum,
    Kind::IhlTooSmall,
    Kind::IhlBeyondTotal,
    Kind::TotalBeyondFrame,
    Kind::TotalCutsUdpHeader,
    Kind::UdpLenBeyondIp,
    Kind::UdpLenTooSmall,
    Kind::FirstFragment,
    Kind::LaterFragment,
    Kind::DoubleTagged,
    Kind::VlanInsidePriorityTag,
];

fn frame(seq: u64, kind: Kind) -> Vec<u8> {
    use Kind::*;
    let mut payload = vec![0u8; 200];
    mcr::tools::payload::write(&mut payload, 0, seq, mcr::tools::payload::monotonic_ns());
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&5001u16.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    if kind != NoUdpChecksum {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&SRC);
        pseudo.extend_from_slice(&GROUP);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
        let sum = !fold(sum_words(sum_words(0, &pseudo), &udp));
        udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
    }
    match kind {
        CorruptPayload => udp[8 + 100] ^= 0x10,
        UdpLenBeyondIp => udp[4..6].copy_from_slice(&(udp_len as u16 + 100).to_be_bytes()),
        UdpLenTooSmall => udp[4..6].copy_from_slice(&4u16.to_be_bytes()),
        _ => {}
    }
    let options: &[u8] = if kind == IpOptions {
        &[1, 1, 1, 0]
    } else {
        &[]
    };
    let header_len = 20 + options.len();
    let total = header_len + udp_len;
    let mut ip = vec![0x40 | (header_len / 4) as u8, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 8, 17, 0, 0]);
    ip.extend_from_slice(&SRC);
    ip.extend_from_slice(&GROUP);
    ip.extend_from_slice(options);
    match kind {
        IhlTooSmall => ip[0] = 0x44,
        IhlBeyondTotal => {
            ip[0] = 0x4f;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        }
        TotalBeyondFrame => ip[2..4].copy_from_slice(&(total as u16 + 500).to_be_bytes()),
        TotalCutsUdpHeader => ip[2..4].copy_from_slice(&24u16.to_be_bytes()),
        FirstFragment => ip[6] = 0x20,                        // MF
        LaterFragment => ip[6..8].copy_from_slice(&[0, 185]), // offset 185 × 8 = 1480
        _ => {}
    }
    let sum = checksum(&ip[..header_len]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    if kind == BadIpChecksum {
        ip[11] ^= 0x5a;
    }
    let mut f = vec![0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0, 0, 0, 0, 1];
    match kind {
        PriorityTagged => f.extend_from_slice(&[0x81, 0x00, 0xa0, 0x00]), // PCP 5, VLAN ID 0
        DoubleTagged => f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x81, 0x00, 0x00, 0x09]),
        VlanInsidePriorityTag => {
            f.extend_from_slice(&[0x81, 0x00, 0xa0, 0x00, 0x81, 0x00, 0x00, 0x09])
        }
        _ => {}
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// One relay, flow `a`: 239.1.1.1:5001 on in0 → 239.9.9.1:5099 on out0; `extra` goes into
/// `[relay]`.
fn config(t: &Topology, extra: &str) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nwatch = false\nquerier = \"off\"\n\
         {extra}control_socket = \"{}\"\n[[flow]]\nname = \"a\"\n\
         input = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    )
}

/// Sends `frames` in order from the generator's `up0` through a raw packet socket.
fn inject(t: &Topology, frames: &[Vec<u8>]) {
    let mut blob = Vec::new();
    for f in frames {
        blob.extend_from_slice(&(f.len() as u16).to_be_bytes());
        blob.extend_from_slice(f);
    }
    let path = t.write("frames.bin", "");
    std::fs::write(&path, blob).unwrap();
    let script = "import socket, struct, sys, time\n\
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
        s.bind(('up0', 0))\n\
        d = open(sys.argv[1], 'rb').read()\n\
        i = 0\n\
        while i < len(d):\n\
        \x20   n = struct.unpack('>H', d[i:i + 2])[0]\n\
        \x20   s.send(d[i + 2:i + 2 + n])\n\
        \x20   i += 2 + n\n\
        \x20   time.sleep(0.0002)\n";
    let out = t
        .gen
        .command("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn corrupt_frames_are_counted_never_laundered_and_the_valid_stream_is_exact() {
    let _s = serial();
    let mut t = Topology::chain(1);
    t.start_relay(&config(&t, ""));
    const N: u64 = 1000;
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "239.9.9.1",
            "--port",
            "5099",
            "--count",
            &N.to_string(),
        ],
    );
    // Every tenth probe goes out in each valid variant; after every fifth, the same probe
    // again, broken in one of the ways of BAD in turn (a relayed copy would reach the sink
    // as a duplicate, a laundered one as a corrupt duplicate).
    let mut frames = Vec::new();
    let mut expected: std::collections::BTreeMap<&str, u64> = Default::default();
    for seq in 0..N {
        let kind = match seq % 10 {
            3 => Kind::NoUdpChecksum,
            5 => Kind::IpOptions,
            7 => Kind::PriorityTagged,
            _ => Kind::Valid,
        };
        frames.push(frame(seq, kind));
        if seq % 5 == 0 {
            let bad = BAD[(seq / 5) as usize % BAD.len()];
            frames.push(frame(seq, bad));
            *expected.entry(bad.reason().unwrap()).or_default() += 1;
        }
    }
    inject(&t, &frames);
    assert_clean(&t.sink_report(sink), N);
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted = |s: &serde_json::Value| {
        expected
            .iter()
            .all(|(reason, n)| num(&s["drops"], reason) >= *n)
    };
    let stats = loop {
        let s = t.control_json("stats");
        if counted(&s) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (reason, n) in &expected {
        assert_eq!(num(&stats["drops"], reason), *n, "{reason}: {stats}");
    }
    assert_eq!(num(flow(&stats, "a"), "packets"), N, "{stats}");
    assert_eq!(num(&stats["drops"], "no_match"), 0, "{stats}");
}

/// Holds 1,000 idle connections to each endpoint, a slowloris on each and a 100 MiB request
/// line into each, from the relay's namespace; prints `attacking` once all are under way,
/// one line per slowloris or flood as the relay cuts it off, and holds the idle ones until
/// it is stopped.
const ATTACK: &str = r#"
import resource, socket, sys, threading, time
ctl, port = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
lock = threading.Lock()
def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
def unix():
    s = socket.socket(socket.AF_UNIX)
    s.connect(ctl)
    return s
def tcp():
    return socket.create_connection(("127.0.0.1", port))
idle = [unix() for _ in range(1000)] + [tcp() for _ in range(1000)]
def slowloris(name, connect, first):
    s = connect()
    try:
        s.send(first)
        while True:
            s.send(b"a")
            time.sleep(0.1)
    except OSError:
        say(f"cut off: slowloris {name}")
def flood(name, connect, first):
    s = connect()
    sent = 0
    chunk = b"a" * 65536
    try:
        s.send(first)
        while sent < 100 << 20:
            sent += s.send(chunk)
        say(f"accepted: flood {name}")
    except OSError:
        say(f"cut off: flood {name} after {sent >> 20} MiB")
jobs = [(slowloris, ("control", unix, b"{")), (slowloris, ("metrics", tcp, b"GET /")),
        (flood, ("control", unix, b"")), (flood, ("metrics", tcp, b"GET /"))]
for f, a in jobs:
    threading.Thread(target=f, args=a, daemon=True).start()
say("attacking")
while True:
    time.sleep(1)
"#;

/// CPU ticks (user + system) used so far by each of `pid`'s threads, by name.
fn thread_cpu(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.push((stat[open + 1..close].to_string(), ticks(11) + ticks(12)));
    }
    out
}

/// One scrape of the relay's metrics endpoint, from its namespace.
fn scrape(t: &Topology) -> String {
    let url = "http://127.0.0.1:9810/metrics";
    let out = t.relay.exec(&["curl", "-sS", "--fail", "-m", "5", url]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn endpoints_stay_bounded_under_idle_slow_and_huge_clients_while_forwarding() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&config(&t, "metrics = \"127.0.0.1:9810\"\n"));
    let pid = t.procs[relay].child.id();
    let (_, rss_before) = common::fds_and_rss(pid);

    let mut cmd = t.relay.command("python3");
    cmd.args(["-c", ATTACK])
        .arg(t.dir.join("control.sock"))
        .arg("9810");
    let mut attack = common::Proc::spawn(cmd, &t.dir, "attack");
    attack.wait_for("the attack under way", Duration::from_secs(60), |p| {
        p.stdout().contains("attacking")
    });

    // Control and metrics answer meanwhile, and a counted stream at 50k pps is relayed whole.
    let mut slowest = Duration::ZERO;
    assert!(scrape(&t).contains("mcr_flow_packets_total{flow=\"a\"} 0"));
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "239.9.9.1",
            "--port",
            "5099",
            "--count",
            "150000",
        ],
    );
    let gen = t.spawn_stream("239.1.1.1", 150000, 50000);
    for _ in 0..10 {
        let start = Instant::now();
        let status = t.control_json("status");
        let took = start.elapsed();
        assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(200));
    }
    t.gen_report(gen);
    let report = t.sink_report(sink);
    let relay_stats = t.control_json("stats");
    assert_eq!(
        num(&report, "received"),
        150_000,
        "{report}\nrelay: {relay_stats}"
    );
    assert_clean(&report, 150_000);
    assert!(scrape(&t).contains("mcr_flow_packets_total{flow=\"a\"} 150000"));

    // Slow and huge clients were cut off: each slowloris at its deadline, each flood at the
    // size limit, long before 100 MiB.
    attack.wait_for(
        "every slow or huge client cut off",
        Duration::from_secs(20),
        |p| p.stdout().matches("cut off:").count() == 4,
    );
    let out = attack.stdout();
    assert!(!out.contains("accepted: flood"), "{out}");
    // What the attacker managed to write before the reset is what the kernel's socket
    // buffers took (a few MiB over loopback TCP), not what mcr read (at most 64 KiB).
    for flood in ["control", "metrics"] {
        let mib: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cut off: flood {flood} after ")))
            .and_then(|rest| rest.trim_end_matches(" MiB").parse().ok())
            .unwrap_or_else(|| panic!("flood {flood} cut off: {out}"));
        assert!(mib < 16, "{out}");
    }
    let (fds, rss_after) = common::fds_and_rss(pid);
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    // Connections are capped: 256 control clients, 64 metrics clients, plus the relay's own.
    assert!(fds < 1000, "{fds} descriptors open");
    let cpu = thread_cpu(pid);
    println!("relay CPU by thread (ticks): {cpu:?}");
    println!("mcr status under attack: slowest of 10 answers {slowest:?}; relay fds {fds}, RSS {rss_before} -> {rss_after} KiB");
    attack.terminate_quietly();
}
