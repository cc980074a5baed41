//! End to end: the two ways out. `egress = "packet"` (the default) sends frames mcr builds
//! through AF_PACKET and never touches the relay's UDP stack; `egress = "udp"` and datagrams
//! larger than the output MTU go through the kernel's UDP output. The relay namespace's
//! `Udp: OutDatagrams` counter (/proc/net/snmp) tells the two apart exactly.

mod common;

use std::time::{Duration, Instant};

use common::{assert_clean, flow, num, serial, Netns, Topology};

/// Counter `name` of the `Udp:` line of a namespace's /proc/net/snmp.
fn udp_counter(ns: &Netns, name: &str) -> u64 {
    let snmp = ns.read("/proc/net/snmp");
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no Udp {name} in {snmp}"))
}

/// Datagrams the namespace's UDP stack sent (frames through AF_PACKET never count here).
fn udp_out_datagrams(ns: &Netns) -> u64 {
    udp_counter(ns, "OutDatagrams")
}

/// Waits (up to 10 s) until `Udp: OutDatagrams` of `ns` reaches `at_least`; returns it.
fn wait_udp_out_datagrams(ns: &Netns, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = udp_out_datagrams(ns);
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn config(egress: &str) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\negress = \"{egress}\"\n\
         [[flow]]\nname = \"f\"\n\
         input = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.9\", port = 5099, ttl = 8 }} ]\n"
    )
}

fn gen_args(count: &str, size: &str, stream_base: &str) -> Vec<String> {
    [
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        count,
        "--rate",
        "20000",
        "--size",
        size,
        "--ttl",
        "2",
        "--stream-base",
        stream_base,
    ]
    .map(String::from)
    .to_vec()
}

fn run_gen(t: &Topology, args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let count: u64 = args[5].parse().unwrap();
    assert_eq!(num(&t.gen(&args), "sent"), count);
}

#[test]
fn packet_egress_bypasses_the_udp_stack_and_udp_egress_uses_it() {
    let _s = serial();
    for (egress, through_udp) in [("packet", false), ("udp", true)] {
        let mut t = Topology::chain(1);
        let relay = t.start_relay(&config(egress));
        let sink = t.start_sink(
            0,
            &["--group", "239.9.9.9", "--port", "5099", "--count", "20000"],
        );
        let before = udp_out_datagrams(&t.relay);
        run_gen(&t, &gen_args("20000", "1000", "0"));
        let report = t.sink_report(sink);
        let sent_by_udp = udp_out_datagrams(&t.relay) - before;
        assert_clean(&report, 20_000);
        assert_eq!(num(&report, "bytes"), 20_000 * 1000, "{egress}: {report}");
        assert_eq!(
            (num(&report, "ttl_min"), num(&report, "ttl_max")),
            (8, 8),
            "{egress}: {report}"
        );
        assert_eq!(
            sent_by_udp,
            if through_udp { 20_000 } else { 0 },
            "egress = {egress}: datagrams through the relay's UDP stack"
        );
        let stats = t.stop_relay(relay);
        let out = &flow(&stats, "f")["outputs"][0];
        assert_eq!(num(out, "packets"), 20_000, "{egress}");
        assert_eq!(
            num(out, "bytes"),
            20_000 * 1000,
            "{egress}: payload bytes only"
        );
        assert_eq!(num(out, "send_errors"), 0, "{egress}");
        assert_eq!(out["egress"], egress, "the snapshot names the path: {out}");
    }
}

#[test]
fn datagrams_larger_than_the_output_mtu_go_through_udp_and_are_fragmented() {
    let _s = serial();
    let mut t = Topology::chain(1);
    t.relay.ip(&["link", "set", "out0", "mtu", "1280"]);
    t.sinks[0].ip(&["link", "set", "down0", "mtu", "1280"]);
    let relay = t.start_relay(&config("packet"));
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.9", "--port", "5099", "--count", "6000"],
    );
    let before = udp_out_datagrams(&t.relay);
    // 1400 bytes fit the input (MTU 1500) but not out0 (1280): the kernel fragments them.
    run_gen(&t, &gen_args("3000", "1400", "0"));
    // The relay may still be sending the last of them when gen exits: wait for the count.
    let after_big = wait_udp_out_datagrams(&t.relay, before + 3000);
    // 1252 + 28 = 1280 bytes: exactly the MTU, so these go out as frames.
    run_gen(&t, &gen_args("3000", "1252", "1"));
    let report = t.sink_report(sink);
    assert_clean(&report, 6000);
    assert_eq!(num(&report, "bytes"), 3000 * 1400 + 3000 * 1252, "{report}");
    assert_eq!(after_big - before, 3000, "oversize datagrams through UDP");
    assert_eq!(
        udp_out_datagrams(&t.relay),
        after_big,
        "datagrams that fit the MTU go out as frames"
    );
    let stats = t.stop_relay(relay);
    let out = &flow(&stats, "f")["outputs"][0];
    assert_eq!(num(out, "packets"), 6000);
    assert_eq!(num(out, "bytes"), 3000 * 1400 + 3000 * 1252);
}

#[test]
fn outputs_on_links_without_ethernet_headers_send_through_udp() {
    let _s = serial();
    let mut t = Topology::chain(1);
    // A tun device has no link-layer header (ARPHRD_NONE): no frame can be built for it.
    t.relay.ip(&["tuntap", "add", "dev", "tun0", "mode", "tun"]);
    t.relay.ip(&["addr", "add", "10.3.0.1/24", "dev", "tun0"]);
    t.relay.ip(&["link", "set", "tun0", "up"]);
    let config = config("packet").replace(
        "ttl = 8 } ]",
        "ttl = 8 }, { interface = \"tun0\", group = \"239.9.9.10\", port = 5099 } ]",
    );
    let relay = t.start_relay(&config);
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.9", "--port", "5099", "--count", "5000"],
    );
    let before = udp_out_datagrams(&t.relay);
    run_gen(&t, &gen_args("5000", "1000", "0"));
    assert_clean(&t.sink_report(sink), 5000);
    assert_eq!(
        udp_out_datagrams(&t.relay) - before,
        5000,
        "only the tun output goes through UDP"
    );
    let stats = t.stop_relay(relay);
    let f = flow(&stats, "f");
    assert_eq!(num(&f["outputs"][0], "packets"), 5000, "out0, as frames");
    assert_eq!(num(&f["outputs"][1], "packets"), 5000, "tun0, through UDP");
    assert_eq!(f["outputs"][0]["egress"], "packet");
    assert_eq!(f["outputs"][1]["egress"], "udp");
}

#[test]
fn an_output_mtu_lowered_while_running_is_followed_and_larger_datagrams_fragment() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&config("packet"));
    // The frame template was built for MTU 1500; the link change rebuilds it for 1280, so
    // 1400-byte datagrams take the UDP socket and are fragmented instead of failing.
    t.relay.ip(&["link", "set", "out0", "mtu", "1280"]);
    t.wait_log(relay, "interfaces changed", 1);
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.9", "--port", "5099", "--count", "4000"],
    );
    run_gen(&t, &gen_args("2000", "1400", "0"));
    run_gen(&t, &gen_args("2000", "1000", "1"));
    let report = t.sink_report(sink);
    assert_clean(&report, 4000);
    let stats = t.stop_relay(relay);
    let out = &flow(&stats, "f")["outputs"][0];
    assert_eq!(num(out, "packets"), 4000, "{out}");
    assert_eq!(num(out, "send_errors"), 0, "{out}");
}

#[test]
fn frames_carry_a_correct_udp_checksum_when_the_kernel_computes_it() {
    let _s = serial();
    let mut t = Topology::chain(1);
    // Without TX checksum offload on out0 the kernel completes the UDP checksum that the frame
    // asks for (from mcr's pseudo-header sum) before veth hands it over, and the sink verifies
    // it: a wrong partial sum would show up as UDP InCsumErrors and missing packets.
    t.relay.exec(&["ethtool", "-K", "out0", "tx", "off"]);
    let relay = t.start_relay(&config("packet"));
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.9", "--port", "5099", "--count", "5000"],
    );
    // Even and odd lengths, the smallest payload gen makes and the largest that fits.
    for (size, stream) in [("1000", "0"), ("25", "1"), ("1471", "2")] {
        run_gen(&t, &gen_args("1000", size, stream));
    }
    run_gen(&t, &gen_args("2000", "24", "3"));
    assert_clean(&t.sink_report(sink), 5000);
    assert_eq!(
        udp_counter(&t.sinks[0], "InCsumErrors"),
        0,
        "checksum errors at the sink"
    );
    t.stop_relay(relay);
}

/// `[relay]` for the run tests: one worker, a 1 ms `batch_delay` (at 20k pps a round
/// gathers ~20 datagrams), the control socket in the scratch directory, and flow `f` to an
/// IPv4 and an IPv6 group on `out0`.
fn runs_config(t: &Topology) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nbatch_delay = \"1ms\"\n\
         control_socket = \"{}\"\n[[flow]]\nname = \"f\"\n\
         input = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.9\", port = 5099, ttl = 8 }},\n\
         {{ interface = \"out0\", group = \"ff05::9:9\", port = 5099, ttl = 8 }} ]\n",
        t.dir.join("control.sock").display()
    )
}

/// A sink in sink namespace 0 for `count` datagrams to each output group of `runs_config`.
fn runs_sinks(t: &mut Topology, count: u64) -> [usize; 2] {
    let n = count.to_string();
    ["239.9.9.9", "ff05::9:9"]
        .map(|g| t.start_sink(0, &["--group", g, "--port", "5099", "--count", &n]))
}

/// Under load a worker waits `batch_delay` for more packets, and sends each output's run of
/// alike datagrams as one frame that the kernel cuts back into datagrams (UDP segmentation).
/// What leaves must be exactly what came in: every datagram, in order, intact, each with
/// its own valid checksum, however sizes and TOS bytes interleave — IPv4 and IPv6 alike.
#[test]
fn runs_of_datagrams_leave_as_the_datagrams_that_came_in() {
    let _s = serial();
    let mut t = Topology::chain_v6(1);
    // Cut and checksummed by the kernel in software, as on a NIC without USO or checksum
    // offload; the sink verifies every checksum.
    t.relay.exec(&[
        "ethtool",
        "-K",
        "out0",
        "tx",
        "off",
        "tx-udp-segmentation",
        "off",
    ]);
    let relay = t.start_relay(&runs_config(&t));

    // One stream at 20k pps: a 1 ms delay gathers ~20 datagrams a round.
    let sinks = runs_sinks(&mut t, 6000);
    run_gen(&t, &gen_args("6000", "1000", "0"));
    for sink in sinks {
        let report = t.sink_report(sink);
        assert_clean(&report, 6000);
        assert_eq!(num(&report, "bytes"), 6000 * 1000);
    }
    let stats = t.control_json("stats");
    let (frames, sends) = (num(&stats, "frames"), num(&stats, "sends"));
    assert_eq!(frames, 6000);
    assert!(
        sends * 4 <= 2 * frames,
        "runs: {sends} sends for {frames} datagrams to two outputs"
    );

    // Three streams at once, interleaved in the ring: 1000-byte and 300-byte payloads (a
    // shorter one may end a run), and a third with another TOS (which must not join).
    let sinks = runs_sinks(&mut t, 9000);
    let mut gens = Vec::new();
    for (size, stream, tos) in [("1000", "1", "0"), ("300", "2", "0"), ("1000", "3", "184")] {
        let mut args = gen_args("3000", size, stream);
        args[7] = "10000".into(); // --rate
        args.extend(["--tos".to_string(), tos.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        gens.push(t.spawn_gen(&args));
    }
    for g in gens {
        assert_eq!(num(&t.gen_report(g), "sent"), 3000);
    }
    for sink in sinks {
        let report = t.sink_report(sink);
        assert_clean(&report, 9000);
        assert_eq!(num(&report, "bytes"), 3000 * (1000 + 300 + 1000));
        assert_eq!(
            (num(&report, "dscp_min"), num(&report, "dscp_max")),
            (0, 46),
            "each datagram keeps its own TOS: {report}"
        );
    }
    assert_eq!(udp_counter(&t.sinks[0], "InCsumErrors"), 0);
    let snmp6 = t.sinks[0].read("/proc/net/snmp6");
    assert!(
        snmp6
            .lines()
            .any(|l| l.split_whitespace().eq(["Udp6InCsumErrors", "0"])),
        "{snmp6}"
    );

    let stats = t.stop_relay(relay);
    for out in flow(&stats, "f")["outputs"].as_array().unwrap() {
        assert_eq!(num(out, "packets"), 15_000, "{out}");
        assert_eq!(num(out, "bytes"), 6000 * 1000 + 3000 * 2300, "{out}");
        assert_eq!(
            num(out, "send_errors") + num(out, "egress_full"),
            0,
            "{out}"
        );
    }
    assert_eq!(
        udp_out_datagrams(&t.relay),
        0,
        "every datagram left as a frame"
    );
}

/// A veth with `tx-udp-segmentation` on (its default) would hand a run whole to the other
/// namespace, where a packet tap — tcpdump here, another mcr's ring — would see one frame
/// of many datagrams. mcr sends datagram by datagram there, under the same load.
#[test]
fn a_virtual_link_that_would_pass_runs_whole_gets_one_datagram_per_send() {
    let _s = serial();
    let mut t = Topology::chain_v6(1);
    let relay = t.start_relay(&runs_config(&t));
    let (mut tap, pcap) = common::capture(&t.sinks[0], &t.dir, "down0", "udp port 5099", "tap");
    let sinks = runs_sinks(&mut t, 6000);
    run_gen(&t, &gen_args("6000", "1000", "0"));
    for sink in sinks {
        assert_clean(&t.sink_report(sink), 6000);
    }
    let stats = t.control_json("stats");
    assert_eq!(
        (num(&stats, "frames"), num(&stats, "sends")),
        (6000, 12_000),
        "one send per datagram and output"
    );
    tap.terminate_quietly();
    let text = common::decode(&pcap, &[]);
    let lengths: Vec<&str> = text
        .lines()
        .filter_map(|l| l.rsplit("length ").next())
        .collect();
    // tcpdump may drop a few at 40k pps (the exact count is `sends` above); what matters
    // is that every frame it saw is one datagram.
    assert!(
        lengths.len() >= 11_000,
        "{} frames on the tap",
        lengths.len()
    );
    assert!(
        lengths.iter().all(|l| *l == "1000"),
        "no frame of many datagrams"
    );
    t.stop_relay(relay);
}
