//! End to end: IPv6. Any-source and source-specific IPv6 inputs with group and port rewrite
//! and fan-out, on both egress paths; translation between the families in both directions;
//! 1000 IPv6 groups on one interface at the kernel's default sysctls; a reload that adds and
//! removes IPv6 groups, with the MLDv2 reports seen on the wire and nothing lost meanwhile;
//! outputs with their own source, to a unicast receiver, and on an interface that has no
//! IPv6 address until the test adds one.

mod common;

use common::{assert_clean, capture, decode, flow, num, serial, wait_until, Topology};

/// `[relay]` for these tests: one worker, no stats lines, the control socket in the scratch
/// directory, `egress` as given.
fn header(t: &Topology, egress: &str) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\negress = \"{egress}\"\ncontrol_socket = \"{}\"\n",
        t.dir.join("control.sock").display()
    )
}

/// A flow named `name` from `group`:5001 on `in0` (from `source`, if not empty) to
/// `outputs` (TOML inline tables).
fn flow_toml(name: &str, group: &str, source: &str, outputs: &[String]) -> String {
    let source = if source.is_empty() {
        String::new()
    } else {
        format!(", source = \"{source}\"")
    };
    format!(
        "[[flow]]\nname = \"{name}\"\ninput = {{ interface = \"in0\", group = \"{group}\", port = 5001{source} }}\noutputs = [ {} ]\n",
        outputs.join(", ")
    )
}

fn output(interface: &str, group: &str, port: u16, extra: &str) -> String {
    format!("{{ interface = \"{interface}\", group = \"{group}\", port = {port}{extra} }}")
}

/// `count` packets at `rate` to `group`:5001 from the gen, with TOS/traffic class `tos`
/// and extra gen arguments.
fn send(t: &Topology, group: &str, count: u64, rate: u64, tos: u8, extra: &[&str]) {
    let (n, r, tos) = (count.to_string(), rate.to_string(), tos.to_string());
    let mut args = vec![
        "--group", group, "--port", "5001", "--count", &n, "--rate", &r, "--tos", &tos,
    ];
    args.extend_from_slice(extra);
    assert_eq!(num(&t.gen(&args), "sent"), count, "gen to {group}");
}

fn assert_marks(report: &serde_json::Value, ttl: u64, dscp: u64, what: &str) {
    assert_eq!(
        (num(report, "ttl_min"), num(report, "ttl_max")),
        (ttl, ttl),
        "{what}: hop limit: {report}"
    );
    assert_eq!(
        (num(report, "dscp_min"), num(report, "dscp_max")),
        (dscp, dscp),
        "{what}: DSCP: {report}"
    );
}

#[test]
fn any_source_and_source_specific_ipv6_with_rewrite_and_fan_out_on_both_paths() {
    let _s = serial();
    for egress in ["packet", "udp"] {
        let mut t = Topology::chain_v6(3);
        // A second sender on the gen's link: the SSM flow must not take its datagrams.
        t.gen
            .ip(&["addr", "add", "2001:db8:1::3/64", "dev", "up0", "nodad"]);
        let fan_out: Vec<String> = (0..3)
            .map(|k| {
                let dscp = if k == 2 { ", dscp = 10" } else { "" };
                output(
                    &format!("out{k}"),
                    "ff05::9:1",
                    5099,
                    &format!(", ttl = 4{dscp}"),
                )
            })
            .collect();
        let config = [
            header(&t, egress),
            flow_toml("asm", "ff05::1:1", "", &fan_out),
            flow_toml(
                "ssm",
                "ff3e::1:2",
                "2001:db8:1::1",
                &[output("out0", "ff3e::9:2", 5098, "")],
            ),
        ]
        .concat();
        let relay = t.start_relay(&config);
        let igmp6 = t.relay.read("/proc/net/igmp6");
        for group in [
            "ff050000000000000000000000010001",
            "ff3e0000000000000000000000010002",
        ] {
            assert!(igmp6.contains(group), "{group} joined: {igmp6}");
        }
        let sinks: Vec<usize> = (0..3)
            .map(|k| {
                t.start_sink(
                    k,
                    &["--group", "ff05::9:1", "--port", "5099", "--count", "1000"],
                )
            })
            .collect();
        // The SSM output's receiver subscribes to the relay's address on out0.
        let ssm_sink = t.start_sink(
            0,
            &[
                "--group",
                "ff3e::9:2",
                "--source",
                "2001:db8:2:0::1",
                "--port",
                "5098",
                "--count",
                "1000",
            ],
        );
        // EF with ECN ECT(1) in: kept on out0 and out1, DSCP 10 (ECN kept) on out2.
        send(
            &t,
            "ff05::1:1",
            1000,
            5000,
            46 << 2 | 1,
            &["--size", "1000"],
        );
        send(&t, "ff3e::1:2", 1000, 5000, 0, &["--bind", "2001:db8:1::1"]);
        send(
            &t,
            "ff3e::1:2",
            1000,
            5000,
            0,
            &["--bind", "2001:db8:1::3", "--stream-base", "100"],
        );
        for (k, sink) in sinks.into_iter().enumerate() {
            let report = t.sink_report(sink);
            assert_clean(&report, 1000);
            assert_eq!(num(&report, "bytes"), 1000 * 1000, "{report}");
            assert_marks(&report, 4, if k == 2 { 10 } else { 46 }, egress);
        }
        let report = t.sink_report(ssm_sink);
        assert_clean(&report, 1000);
        assert_eq!(
            report["per_stream"].as_array().unwrap().len(),
            1,
            "{report}"
        );
        assert_marks(&report, 1, 0, "ssm");
        // The ingress drop holds the IPv6 keys (the kernel took the 20- and 36-byte
        // concatenations) and dropped exactly the relayed datagrams: 1000 any-source, 1000
        // from the SSM flow's source (the other source's are not a key: they climb the stack).
        let pid = t.procs[relay].child.id();
        let table = common::drop_table_text(&t.relay, pid);
        assert!(table.contains("ff05::1:1 . 5001"), "{table}");
        assert!(
            table.contains("2001:db8:1::1 . ff3e::1:2 . 5001"),
            "{table}"
        );
        let counters: Vec<&str> = table
            .lines()
            .filter(|l| l.contains("@asm6_in0") || l.contains("@ssm6_in0"))
            .collect();
        assert_eq!(counters.len(), 2, "{table}");
        for rule in counters {
            assert!(rule.contains("counter packets 1000 "), "{rule}");
        }
        let stats = t.stop_relay(relay);
        let asm = flow(&stats, "asm");
        assert_eq!(num(asm, "packets"), 1000, "{asm}");
        for out in asm["outputs"].as_array().unwrap() {
            assert_eq!(num(out, "packets"), 1000, "{egress}: {out}");
            assert_eq!(out["egress"], egress, "{out}");
        }
        let ssm = flow(&stats, "ssm");
        assert_eq!(num(ssm, "packets"), 1000, "{ssm}");
        assert_eq!(num(&ssm["outputs"][0], "packets"), 1000, "{ssm}");
    }
}

#[test]
fn a_flow_translates_ipv4_to_ipv6_and_back() {
    let _s = serial();
    for egress in ["packet", "udp"] {
        let mut t = Topology::chain_v6(1);
        let config = [
            header(&t, egress),
            flow_toml(
                "four-to-six",
                "239.1.1.1",
                "",
                &[output("out0", "ff05::9:4", 5099, ", ttl = 3")],
            ),
            flow_toml(
                "six-to-four",
                "ff05::1:4",
                "",
                &[output("out0", "239.9.9.4", 5099, ", ttl = 5")],
            ),
        ]
        .concat();
        let relay = t.start_relay(&config);
        let to_v6 = t.start_sink(
            0,
            &["--group", "ff05::9:4", "--port", "5099", "--count", "1000"],
        );
        let to_v4 = t.start_sink(
            0,
            &["--group", "239.9.9.4", "--port", "5099", "--count", "1000"],
        );
        send(&t, "239.1.1.1", 1000, 5000, 34 << 2, &["--size", "700"]);
        send(&t, "ff05::1:4", 1000, 5000, 46 << 2, &["--size", "1200"]);
        let report = t.sink_report(to_v6);
        assert_clean(&report, 1000);
        assert_eq!(num(&report, "bytes"), 1000 * 700, "{report}");
        assert_marks(&report, 3, 34, "4 to 6");
        let report = t.sink_report(to_v4);
        assert_clean(&report, 1000);
        assert_eq!(num(&report, "bytes"), 1000 * 1200, "{report}");
        assert_marks(&report, 5, 46, "6 to 4");
        let stats = t.stop_relay(relay);
        for name in ["four-to-six", "six-to-four"] {
            let f = flow(&stats, name);
            assert_eq!(
                num(&f["outputs"][0], "packets"),
                1000,
                "{egress} {name}: {f}"
            );
        }
    }
}

#[test]
fn a_thousand_ipv6_groups_on_one_interface_at_default_sysctls() {
    let _s = serial();
    let mut t = Topology::chain_v6(1);
    let optmem = t.relay.read("/proc/sys/net/core/optmem_max");
    let flows: String = (0..1000u32)
        .map(|i| {
            flow_toml(
                &format!("g{i}"),
                &format!("ff05::1:{i:x}"),
                "",
                &[output("out0", &format!("ff05::9:{i:x}"), 5099, "")],
            )
        })
        .collect();
    let relay = t.start_relay(&format!("{}{flows}", header(&t, "packet")));
    let igmp6 = t.relay.read("/proc/net/igmp6");
    let joined = igmp6
        .lines()
        .filter(|l| l.contains(" in0 ") && l.contains("ff05000000000000000000000001"))
        .count();
    assert_eq!(joined, 1000, "optmem_max {optmem}: {igmp6}");
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "ff05::9:0",
            "--group-count",
            "1000",
            "--port",
            "5099",
            "--count",
            "3000",
        ],
    );
    // `--count` is per group: 3 rounds of the 1000 groups.
    let args = [
        "--group",
        "ff05::1:0",
        "--group-count",
        "1000",
        "--port",
        "5001",
        "--count",
        "3",
        "--rate",
        "6000",
    ];
    assert_eq!(num(&t.gen(&args), "sent"), 3000);
    let report = t.sink_report(sink);
    assert_clean(&report, 3000);
    let stats = t.stop_relay(relay);
    let delivered: u64 = (0..1000)
        .map(|i| num(&flow(&stats, &format!("g{i}"))["outputs"][0], "packets"))
        .sum();
    assert_eq!(delivered, 3000);
}

#[test]
fn a_reload_adds_and_removes_ipv6_groups_with_mld_on_the_wire_and_loses_nothing() {
    let _s = serial();
    let mut t = Topology::chain_v6(1);
    let a = flow_toml(
        "a",
        "ff05::1:10",
        "",
        &[output("out0", "ff05::9:10", 5099, "")],
    );
    let b = flow_toml(
        "b",
        "ff05::1:11",
        "",
        &[output("out0", "ff05::9:11", 5099, "")],
    );
    let c = flow_toml(
        "c",
        "ff05::1:12",
        "",
        &[output("out0", "ff05::9:12", 5099, "")],
    );
    let relay = t.start_relay(&[header(&t, "packet"), a.clone(), b].concat());
    // MLDv2 reports leave the relay on in0 towards the gen's link, to ff02::16 behind a
    // hop-by-hop header (so `icmp6`, which does not look past it, would not match).
    let (mut tcpdump, pcap) = capture(&t.gen, &t.dir, "up0", "ip6 dst ff02::16", "mld");
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "ff05::9:10",
            "--port",
            "5099",
            "--count",
            "10000",
        ],
    );
    let gen = t.spawn_stream("ff05::1:10", 10_000, 2000);
    wait_until("flow a relays", || {
        num(flow(&t.control_json("stats"), "a"), "packets") > 1000
    });
    t.write_config_by_rename(&[header(&t, "packet"), a, c].concat());
    wait_until("the reload applied", || {
        let stats = t.control_json("stats");
        stats["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "c")
    });
    let igmp6 = t.relay.read("/proc/net/igmp6");
    assert!(
        igmp6.contains("ff050000000000000000000000010012"),
        "{igmp6}"
    );
    assert!(
        !igmp6.contains("ff050000000000000000000000010011"),
        "{igmp6}"
    );
    assert_eq!(num(&t.gen_report(gen), "sent"), 10_000);
    assert_clean(&t.sink_report(sink), 10_000);
    wait_until("the capture has the reports", || {
        let text = decode(&pcap, &["-v"]);
        text.contains("ff05::1:12") && text.contains("ff05::1:11")
    });
    tcpdump.terminate_quietly();
    let text = decode(&pcap, &["-v"]);
    assert!(
        text.contains("[gaddr ff05::1:12 to_ex, 0 source(s)]"),
        "join of c reported: {text}"
    );
    assert!(
        text.contains("[gaddr ff05::1:11 to_in, 0 source(s)]"),
        "leave of b reported: {text}"
    );
    t.stop_relay(relay);
}

#[test]
fn ipv6_outputs_with_a_source_to_a_unicast_receiver_and_waiting_for_an_address() {
    let _s = serial();
    let mut t = Topology::chain_v6(3);
    // out2 has no IPv6 address at all, not even link-local, until the test adds one.
    t.relay
        .exec(&["sysctl", "-q", "-w", "net.ipv6.conf.out2.addr_gen_mode=1"]);
    t.relay.ip(&["-6", "addr", "flush", "dev", "out2"]);
    let config = [
        header(&t, "packet"),
        flow_toml(
            "f",
            "ff05::1:5",
            "",
            &[
                output("out0", "ff05::9:5", 5099, ", source = \"2001:db8:2:0::99\""),
                "{ interface = \"out1\", address = \"2001:db8:2:1::2\", port = 5099 }".to_string(),
                output("out2", "ff05::9:5", 5099, ""),
            ],
        ),
    ]
    .concat();
    let relay = t.start_relay(&config);
    let status = t.control_json("status");
    let waiting = status.to_string();
    assert!(
        waiting.contains("no IPv6 address on the interface"),
        "out2 waits: {status}"
    );
    let (mut tcpdump, pcap) = capture(&t.sinks[0], &t.dir, "down0", "udp", "sourced");
    let sourced = t.start_sink(
        0,
        &["--group", "ff05::9:5", "--port", "5099", "--count", "1000"],
    );
    let unicast = t.start_sink(
        1,
        &[
            "--group",
            "2001:db8:2:1::2",
            "--port",
            "5099",
            "--count",
            "1000",
        ],
    );
    send(&t, "ff05::1:5", 1000, 5000, 0, &[]);
    assert_clean(&t.sink_report(sourced), 1000);
    let report = t.sink_report(unicast);
    assert_clean(&report, 1000);
    assert_eq!((num(&report, "ttl_min"), num(&report, "ttl_max")), (64, 64));
    wait_until("the capture has every packet", || {
        decode(&pcap, &[]).lines().count() >= 1000
    });
    tcpdump.terminate_quietly();
    let text = decode(&pcap, &[]);
    let from_source = text
        .lines()
        .filter(|l| l.contains("IP6 2001:db8:2::99.") && l.contains("> ff05::9:5.5099"))
        .count();
    assert_eq!(from_source, 1000, "{}", &text[..text.len().min(2000)]);
    // An address appears on out2: its output starts by itself.
    t.relay
        .ip(&["addr", "add", "2001:db8:2:2::1/64", "dev", "out2", "nodad"]);
    wait_until("out2's output sends", || {
        !t.control_json("status")
            .to_string()
            .contains("no IPv6 address on the interface")
    });
    let late = t.start_sink(
        2,
        &["--group", "ff05::9:5", "--port", "5099", "--count", "1000"],
    );
    send(&t, "ff05::1:5", 1000, 5000, 0, &["--stream-base", "7"]);
    assert_clean(&t.sink_report(late), 1000);
    t.stop_relay(relay);
}

#[test]
fn an_ipv6_datagram_too_large_for_the_output_link_is_sent_through_udp_and_fragmented() {
    let _s = serial();
    let mut t = Topology::chain_v6(1);
    // Jumbo frames in, 1500 out: a 2000-byte payload arrives whole and cannot leave as one
    // frame.
    t.gen.ip(&["link", "set", "up0", "mtu", "9000"]);
    t.relay.ip(&["link", "set", "in0", "mtu", "9000"]);
    let config = [
        header(&t, "packet"),
        flow_toml(
            "big",
            "ff05::1:7",
            "",
            &[output("out0", "ff05::9:7", 5099, "")],
        ),
    ]
    .concat();
    let relay = t.start_relay(&config);
    let sink = t.start_sink(
        0,
        &["--group", "ff05::9:7", "--port", "5099", "--count", "1000"],
    );
    let snmp6 = |t: &Topology| {
        let text = t.relay.read("/proc/net/snmp6");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("Udp6OutDatagrams"), field("Ip6FragCreates"))
    };
    let before = snmp6(&t);
    send(&t, "ff05::1:7", 1000, 2000, 0, &["--size", "2000"]);
    let report = t.sink_report(sink);
    assert_clean(&report, 1000);
    assert_eq!(num(&report, "bytes"), 1000 * 2000, "{report}");
    let after = snmp6(&t);
    assert_eq!(after.0 - before.0, 1000, "through the relay's UDP stack");
    assert_eq!(after.1 - before.1, 2000, "two fragments each");
    let stats = t.stop_relay(relay);
    assert_eq!(num(&flow(&stats, "big")["outputs"][0], "packets"), 1000);
}
