//! End to end: the real `mcr` binary relaying real traffic between network namespaces.
//! Needs root (namespaces, AF_PACKET). Counts are exact: the rates are far below what the
//! machine carries, and tests run one at a time.

mod common;

use common::{assert_clean, flow, num, serial, Topology};

fn flow_toml(name: &str, in_group: &str, in_port: u16, outputs: &[(&str, &str, u16)]) -> String {
    let outs: Vec<String> = outputs
        .iter()
        .map(|(i, g, p)| format!("{{ interface = \"{i}\", group = \"{g}\", port = {p}, ttl = 8 }}"))
        .collect();
    format!(
        "[[flow]]\nname = \"{name}\"\ninput = {{ interface = \"in0\", group = \"{in_group}\", port = {in_port} }}\noutputs = [ {} ]\n",
        outs.join(", ")
    )
}

const HEADER: &str = "[relay]\nworkers = 1\nstats_interval = \"0s\"\n";

#[test]
fn one_flow_relays_every_packet_byte_for_byte_with_rewritten_group_port_and_ttl() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let config = format!(
        "{HEADER}{}",
        flow_toml("cam-1", "239.1.1.1", 5001, &[("out0", "239.9.9.9", 5099)])
    );
    let relay = t.start_relay(&config);
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "239.9.9.9",
            "--port",
            "5099",
            "--count",
            "100000",
        ],
    );
    let sent = t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "100000",
        "--rate",
        "20000",
        "--size",
        "1000",
        "--ttl",
        "3",
    ]);
    assert_eq!(num(&sent, "sent"), 100_000);
    let report = t.sink_report(sink);
    assert_clean(&report, 100_000);
    assert_eq!(num(&report, "bytes"), 100_000 * 1000);
    assert_eq!(
        num(&report, "ttl_min"),
        8,
        "TTL rewritten by the relay: {report}"
    );
    assert_eq!(num(&report, "ttl_max"), 8);
    assert_eq!(report["per_stream"][0]["group"], "239.9.9.9");
    let stats = t.stop_relay(relay);
    let f = flow(&stats, "cam-1");
    assert_eq!(num(f, "packets"), 100_000);
    assert_eq!(num(f, "bytes"), 100_000 * 1000);
    assert_eq!(num(&f["outputs"][0], "packets"), 100_000);
    assert_eq!(num(&f["outputs"][0], "bytes"), 100_000 * 1000);
    assert_eq!(num(&stats["drops"], "no_match"), 0);
}

#[test]
fn fan_out_to_three_interfaces_delivers_every_packet_to_each() {
    let _s = serial();
    let mut t = Topology::chain(3);
    let outs = [
        ("out0", "239.9.9.9", 5099),
        ("out1", "239.9.9.10", 5099),
        ("out2", "239.9.9.11", 6000),
    ];
    let relay = t.start_relay(&format!(
        "{HEADER}{}",
        flow_toml("fan", "239.1.1.1", 5001, &outs)
    ));
    let sinks: Vec<usize> = outs
        .iter()
        .enumerate()
        .map(|(k, (_, g, p))| {
            t.start_sink(
                k,
                &["--group", g, "--port", &p.to_string(), "--count", "20000"],
            )
        })
        .collect();
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "20000",
        "--rate",
        "20000",
    ]);
    for (k, s) in sinks.into_iter().enumerate() {
        let r = t.sink_report(s);
        assert_clean(&r, 20_000);
        assert_eq!(r["per_stream"][0]["group"], outs[k].1);
    }
    let stats = t.stop_relay(relay);
    for o in flow(&stats, "fan")["outputs"].as_array().unwrap() {
        assert_eq!(num(o, "packets"), 20_000, "{o}");
    }
}

#[test]
fn twenty_flows_in_parallel_each_arrive_complete() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let mut config = HEADER.to_string();
    for i in 1..=20 {
        let (a, b) = (format!("239.1.1.{i}"), format!("239.9.1.{i}"));
        config += &flow_toml(&format!("f{i}"), &a, 5001, &[("out0", &b, 5099)]);
    }
    let relay = t.start_relay(&config);
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "239.9.1.1",
            "--group-count",
            "20",
            "--port",
            "5099",
            "--count",
            "40000",
        ],
    );
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--group-count",
        "20",
        "--port",
        "5001",
        "--count",
        "2000",
        "--rate",
        "20000",
    ]);
    let r = t.sink_report(sink);
    assert_clean(&r, 40_000);
    let streams = r["per_stream"].as_array().unwrap();
    assert_eq!(streams.len(), 20);
    for s in streams {
        assert_eq!(num(s, "received"), 2000, "{s}");
    }
    let stats = t.stop_relay(relay);
    for i in 1..=20 {
        assert_eq!(num(flow(&stats, &format!("f{i}")), "packets"), 2000);
    }
}

#[test]
fn unconfigured_groups_and_ports_are_not_forwarded_and_count_as_no_match() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&format!(
        "{HEADER}{}",
        flow_toml("a", "239.1.1.1", 5001, &[("out0", "239.9.9.9", 5099)])
    ));
    let sink = t.start_sink(0, &["--group", "239.9.9.9", "--port", "5099"]);
    t.gen(&[
        "--group",
        "239.1.1.2",
        "--port",
        "5001",
        "--count",
        "1000",
        "--rate",
        "10000",
    ]);
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5002",
        "--count",
        "1000",
        "--rate",
        "10000",
    ]);
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "1000",
        "--rate",
        "10000",
    ]);
    let r = t.sink_report(sink);
    assert_clean(&r, 1000);
    let stats = t.stop_relay(relay);
    assert_eq!(num(&stats["drops"], "no_match"), 2000, "{stats}");
    assert_eq!(num(flow(&stats, "a"), "packets"), 1000);
}

#[test]
fn fragments_are_dropped_and_counted_never_forwarded_in_part() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&format!(
        "{HEADER}{}",
        flow_toml("a", "239.1.1.1", 5001, &[("out0", "239.9.9.9", 5099)])
    ));
    let sink = t.start_sink(0, &["--group", "239.9.9.9", "--port", "5099"]);
    // 3000-byte datagrams over MTU 1500 leave as three fragments each.
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "100",
        "--rate",
        "1000",
        "--size",
        "3000",
    ]);
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "100",
        "--rate",
        "1000",
        "--stream-base",
        "1",
    ]);
    let r = t.sink_report(sink);
    assert_clean(&r, 100);
    assert_eq!(
        r["per_stream"][0]["stream"], 1,
        "only the unfragmented stream: {r}"
    );
    let stats = t.stop_relay(relay);
    assert_eq!(num(&stats["drops"], "fragment"), 300, "{stats}");
}

#[test]
fn an_ssm_flow_forwards_only_its_source() {
    let _s = serial();
    let mut t = Topology::chain(1);
    t.gen.ip(&["addr", "add", "10.1.0.3/24", "dev", "up0"]);
    let config = format!(
        "{HEADER}[[flow]]\nname = \"ssm\"\ninput = {{ interface = \"in0\", group = \"232.1.1.1\", port = 5001, source = \"10.1.0.1\" }}\noutputs = [ {{ interface = \"out0\", group = \"239.9.9.9\", port = 5099 }} ]\n"
    );
    let relay = t.start_relay(&config);
    let igmp = t.relay.read("/proc/net/igmp");
    assert!(igmp.contains("010101E8"), "232.1.1.1 joined on in0: {igmp}");
    let sink = t.start_sink(0, &["--group", "239.9.9.9", "--port", "5099"]);
    t.gen(&[
        "--group",
        "232.1.1.1",
        "--port",
        "5001",
        "--count",
        "1000",
        "--rate",
        "10000",
        "--bind",
        "10.1.0.3",
        "--stream-base",
        "100",
    ]);
    t.gen(&[
        "--group",
        "232.1.1.1",
        "--port",
        "5001",
        "--count",
        "1000",
        "--rate",
        "10000",
        "--bind",
        "10.1.0.1",
    ]);
    let r = t.sink_report(sink);
    assert_clean(&r, 1000);
    assert_eq!(r["per_stream"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["per_stream"][0]["stream"], 0);
    let stats = t.stop_relay(relay);
    assert_eq!(num(&stats["drops"], "no_match"), 1000, "{stats}");
}

#[test]
fn three_hundred_groups_on_one_interface_at_default_membership_limits() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let limit = t.relay.read("/proc/sys/net/ipv4/igmp_max_memberships");
    assert_eq!(limit.trim(), "20", "the test is about the default limit");
    let mut config = HEADER.to_string();
    for i in 0..300u32 {
        let a = format!("239.1.{}.{}", i / 250, i % 250 + 1);
        let b = format!("239.2.{}.{}", i / 250, i % 250 + 1);
        config += &flow_toml(&format!("g{i}"), &a, 5001, &[("out0", &b, 5099)]);
    }
    let relay = t.start_relay(&config);
    assert!(t.procs[relay]
        .stderr()
        .contains("300 groups joined on 1 interfaces (15 helper sockets)"));
    let groups = common::igmp_groups(&t.relay.read("/proc/net/igmp"), "in0");
    assert_eq!(
        groups.len(),
        301,
        "300 groups + all-hosts on in0: {groups:?}"
    );
    // The gen and sink walk groups in the same order: 239.x.0.1..250, then 239.x.1.1..
    // The sink's consecutive range would include 239.2.0.251-255, so join per block.
    let sink_a = t.start_sink(
        0,
        &[
            "--group",
            "239.2.0.1",
            "--group-count",
            "250",
            "--port",
            "5099",
            "--count",
            "25000",
        ],
    );
    t.gen(&[
        "--group",
        "239.1.0.1",
        "--group-count",
        "250",
        "--port",
        "5001",
        "--count",
        "100",
        "--rate",
        "15000",
    ]);
    let ra = t.sink_report(sink_a);
    assert_clean(&ra, 25_000);
    assert_eq!(ra["per_stream"].as_array().unwrap().len(), 250);
    let sink_b = t.start_sink(
        0,
        &[
            "--group",
            "239.2.1.1",
            "--group-count",
            "50",
            "--port",
            "5099",
            "--count",
            "5000",
        ],
    );
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--group-count",
        "50",
        "--port",
        "5001",
        "--count",
        "100",
        "--rate",
        "15000",
    ]);
    let rb = t.sink_report(sink_b);
    assert_clean(&rb, 5_000);
    let stats = t.stop_relay(relay);
    let total: u64 = stats["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| num(f, "packets"))
        .sum();
    assert_eq!(total, 30_000);
    assert!(stats["flows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| num(f, "packets") == 100));
}

#[test]
fn two_workers_never_duplicate_or_reorder_and_share_the_load() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let mut config = "[relay]\nworkers = 2\nstats_interval = \"0s\"\n".to_string();
    for i in 1..=16 {
        config += &flow_toml(
            &format!("f{i}"),
            &format!("239.1.1.{i}"),
            5001,
            &[("out0", &format!("239.9.1.{i}"), 5099)],
        );
    }
    let relay = t.start_relay(&config);
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "239.9.1.1",
            "--group-count",
            "16",
            "--port",
            "5099",
            "--count",
            "48000",
        ],
    );
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--group-count",
        "16",
        "--port",
        "5001",
        "--count",
        "3000",
        "--rate",
        "24000",
    ]);
    let r = t.sink_report(sink);
    assert_clean(&r, 48_000);
    let stats = t.stop_relay(relay);
    let per_worker: Vec<u64> = stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap())
        .collect();
    assert_eq!(per_worker.len(), 2);
    assert_eq!(per_worker.iter().sum::<u64>(), 48_000, "{per_worker:?}");
    // 16 flows hashed over 2 workers: all on one worker has probability 2^-15.
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
}

#[test]
fn a_missing_output_interface_does_not_stop_the_start_and_is_named_with_its_flow() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let config = format!(
        "{HEADER}{}",
        flow_toml(
            "cam-9",
            "239.1.1.1",
            5001,
            &[("nosuch0", "239.9.9.9", 5099)]
        )
    );
    let relay = t.start_relay(&config);
    t.wait_log(
        relay,
        "interface `nosuch0` does not exist; waiting for it: flows cam-9",
        1,
    );
    let stats = t.stop_relay(relay);
    let out = &common::flow(&stats, "cam-9")["outputs"][0];
    assert_eq!(out["state"], "waiting: interface missing", "{out}");
}
