//! End to end: outputs share their interface's sockets. Descriptors do not grow with
//! outputs; each output still gets exactly its own packets, TTL and DSCP; and a reload that
//! removes some outputs of a shared socket loses nothing on the others.

mod common;

use common::{assert_clean, fds_and_rss, flow, num, serial, Topology};

fn header(t: &Topology, egress: &str) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\negress = \"{egress}\"\ncontrol_socket = \"{}\"\n",
        t.dir.join("control.sock").display()
    )
}

/// Flow `f` from 239.1.1.1:5001 on `in0` to `outputs` (TOML inline tables) on `out0`.
fn flow_f(outputs: &[String]) -> String {
    format!(
        "[[flow]]\nname = \"f\"\ninput = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\noutputs = [ {} ]\n",
        outputs.join(", ")
    )
}

fn output(group: &str, port: u16, extra: &str) -> String {
    format!("{{ interface = \"out0\", group = \"{group}\", port = {port}{extra} }}")
}

fn send(t: &Topology, count: u64, rate: u64) {
    send_tos(t, count, rate, 0);
}

/// Sends with IPv4 TOS byte `tos` (DSCP << 2 | ECN).
fn send_tos(t: &Topology, count: u64, rate: u64, tos: u8) {
    let (n, rate, tos) = (count.to_string(), rate.to_string(), tos.to_string());
    let args = [
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        &n,
        "--rate",
        &rate,
        "--tos",
        &tos,
    ];
    assert_eq!(num(&t.gen(&args), "sent"), count);
}

fn relay_fds(t: &Topology, relay: usize) -> usize {
    fds_and_rss(t.procs[relay].child.id()).0
}

#[test]
fn a_hundred_outputs_on_one_interface_are_each_counted_exactly_on_the_descriptors_of_one() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let one = flow_f(&[output("239.9.1.1", 5099, "")]);
    let relay = t.start_relay(&format!("{}{one}", header(&t, "packet")));
    let fds_one = relay_fds(&t, relay);
    let hundred: Vec<String> = (1..=100)
        .map(|i| output(&format!("239.9.1.{i}"), 5099, ""))
        .collect();
    t.write_config_by_rename(&format!("{}{}", header(&t, "packet"), flow_f(&hundred)));
    t.wait_log(relay, "reloaded: generation 2", 1);
    // 100 outputs hold no more descriptors than 1 did (before sharing: 198 more).
    common::wait_until("no more descriptors than with one output", || {
        relay_fds(&t, relay) <= fds_one
    });
    // Three of the hundred, each on its own sink: every packet, byte-exact.
    let sinks: Vec<usize> = ["239.9.1.1", "239.9.1.50", "239.9.1.100"]
        .iter()
        .map(|g| t.start_sink(0, &["--group", g, "--port", "5099", "--count", "500"]))
        .collect();
    send(&t, 500, 500);
    for sink in sinks {
        assert_clean(&t.sink_report(sink), 500);
    }
    let stats = t.stop_relay(relay);
    let outputs = flow(&stats, "f")["outputs"].as_array().unwrap().clone();
    assert_eq!(outputs.len(), 100);
    for out in &outputs {
        assert_eq!(num(out, "packets"), 500, "{out}");
        assert_eq!(num(out, "send_errors"), 0, "{out}");
    }
}

#[test]
fn outputs_sharing_a_socket_keep_their_own_ttl_and_dscp_on_both_paths() {
    let _s = serial();
    // (group, port, ttl, dscp): neighbours on one interface, all different. The input is
    // EF (46) with ECN ECT(1): an output without `dscp` keeps 46, the others mark their own.
    let outs = [
        ("239.9.9.1", 5101, 8, None::<u8>),
        ("239.9.9.2", 5102, 3, Some(10)),
        ("239.9.9.3", 5103, 64, Some(34)),
    ];
    for egress in ["packet", "udp"] {
        let mut t = Topology::chain(1);
        let outputs: Vec<String> = outs
            .iter()
            .map(|&(g, p, ttl, dscp)| {
                let dscp = dscp.map_or(String::new(), |d| format!(", dscp = {d}"));
                output(g, p, &format!(", ttl = {ttl}{dscp}"))
            })
            .collect();
        let relay = t.start_relay(&format!("{}{}", header(&t, egress), flow_f(&outputs)));
        let sinks: Vec<usize> = outs
            .iter()
            .map(|&(g, p, _, _)| {
                let port = p.to_string();
                t.start_sink(0, &["--group", g, "--port", &port, "--count", "1000"])
            })
            .collect();
        send_tos(&t, 1000, 5000, 46 << 2 | 1);
        for (sink, &(g, _, ttl, dscp)) in sinks.into_iter().zip(&outs) {
            let dscp = u64::from(dscp.unwrap_or(46));
            let report = t.sink_report(sink);
            assert_clean(&report, 1000);
            assert_eq!(
                (num(&report, "ttl_min"), num(&report, "ttl_max")),
                (ttl, ttl),
                "{egress} {g}: {report}"
            );
            assert_eq!(
                (num(&report, "dscp_min"), num(&report, "dscp_max")),
                (dscp, dscp),
                "{egress} {g}: {report}"
            );
        }
        let stats = t.stop_relay(relay);
        for out in flow(&stats, "f")["outputs"].as_array().unwrap() {
            assert_eq!(out["egress"], egress, "{out}");
            assert_eq!(num(out, "packets"), 1000, "{out}");
        }
    }
}

#[test]
fn a_reload_removing_half_the_outputs_of_a_shared_socket_loses_nothing_on_the_others() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let all: Vec<String> = (1..=4)
        .map(|i| output(&format!("239.9.9.{i}"), 5100 + i, ""))
        .collect();
    let relay = t.start_relay(&format!("{}{}", header(&t, "packet"), flow_f(&all)));
    let kept: Vec<usize> = [("239.9.9.1", "5101"), ("239.9.9.2", "5102")]
        .iter()
        .map(|&(g, p)| t.start_sink(0, &["--group", g, "--port", p, "--count", "20000"]))
        .collect();
    // 20,000 packets at 5,000 pps: four seconds, with the reload in the middle.
    let gen = t.spawn_stream("239.1.1.1", 20000, 5000);
    common::wait_until("the stream under way", || {
        num(flow(&t.control_json("stats"), "f"), "packets") >= 2000
    });
    t.write_config_by_rename(&format!("{}{}", header(&t, "packet"), flow_f(&all[..2])));
    t.wait_log(relay, "reloaded: generation 2", 1);
    let at_reload = num(flow(&t.control_json("stats"), "f"), "packets");
    assert!(
        at_reload < 20_000,
        "the reload must land mid-stream (at {at_reload})"
    );
    assert_eq!(num(&t.gen_report(gen), "sent"), 20_000);
    for sink in kept {
        assert_clean(&t.sink_report(sink), 20_000);
    }
    let stats = t.stop_relay(relay);
    let outputs = flow(&stats, "f")["outputs"].as_array().unwrap().clone();
    assert_eq!(outputs.len(), 2, "the removed outputs are gone");
    for out in &outputs {
        assert_eq!(num(out, "packets"), 20_000, "{out}");
        assert_eq!(num(out, "send_errors"), 0, "{out}");
    }
}

#[test]
fn an_output_source_address_is_carried_on_both_paths_beside_a_neighbour_without_one() {
    let _s = serial();
    for egress in ["packet", "udp"] {
        let mut t = Topology::chain(1);
        let outputs = [
            output("239.9.9.1", 5101, ", source = \"192.0.2.77\""),
            output("239.9.9.2", 5102, ""),
        ];
        let relay = t.start_relay(&format!("{}{}", header(&t, egress), flow_f(&outputs)));
        let (mut dump, pcap) = common::capture(
            &t.sinks[0],
            &t.dir,
            "down0",
            "udp and dst portrange 5101-5102",
            "source",
        );
        send(&t, 200, 2000);
        common::wait_until("400 datagrams captured", || {
            common::decode(&pcap, &[]).lines().count() >= 400
        });
        dump.terminate_quietly();
        let text = common::decode(&pcap, &[]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 400, "{egress}: {text}");
        for line in lines {
            let from = if line.contains("239.9.9.1.5101") {
                "IP 192.0.2.77."
            } else {
                "IP 10.2.0.1."
            };
            assert!(line.contains(from), "{egress}: {line}");
        }
        let stats = t.stop_relay(relay);
        for out in flow(&stats, "f")["outputs"].as_array().unwrap() {
            assert_eq!(num(out, "packets"), 200, "{egress}: {out}");
        }
    }
}
