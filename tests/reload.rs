//! End to end: live reload of the real binary while traffic flows.

mod common;

use std::net::Ipv4Addr;

use common::{assert_clean, fds_and_rss, flow, igmp_groups, num, serial, Topology};
use nix::sys::signal::Signal;

const HEADER: &str = "[relay]\nworkers = 1\nstats_interval = \"100ms\"\n";

const FLOW_A: &str = "[[flow]]\nname = \"a\"\ninput = { interface = \"in0\", group = \"239.1.1.1\", port = 5001 }\noutputs = [ { interface = \"out0\", group = \"239.9.9.1\", port = 5099, ttl = 8 } ]\n";

fn flow_b(out_group: &str) -> String {
    format!("[[flow]]\nname = \"b\"\ninput = {{ interface = \"in0\", group = \"239.1.1.2\", port = 5001 }}\noutputs = [ {{ interface = \"out0\", group = \"{out_group}\", port = 5099, ttl = 8 }} ]\n")
}

fn has_flow(stats: &serde_json::Value, name: &str) -> bool {
    stats["flows"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["name"] == name))
}

/// Starts tcpdump on `dev` in the relay namespace, capturing IGMP to a file.
fn capture_igmp(t: &mut Topology, dev: &str) -> (usize, std::path::PathBuf) {
    let (p, pcap) = common::capture(&t.relay, &t.dir, dev, "igmp", "igmp");
    t.procs.push(p);
    (t.procs.len() - 1, pcap)
}

fn decode_igmp(pcap: &std::path::Path) -> String {
    common::decode(pcap, &["-v"])
}

/// Packet sockets bound to interface `ifindex` in the relay namespace (`/proc/net/packet`).
fn packet_sockets_on(t: &Topology, ifindex: u32) -> usize {
    let table = t.relay.read("/proc/net/packet");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .and_then(|i| i.parse::<u32>().ok())
                == Some(ifindex)
        })
        .count()
}

#[test]
fn twenty_reloads_by_rename_write_and_sighup_never_drop_an_unchanged_flow() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&format!("{HEADER}{FLOW_A}"));
    let (dump, pcap) = capture_igmp(&mut t, "in0");
    let sink_a = t.start_sink(
        0,
        &[
            "--group",
            "239.9.9.1",
            "--port",
            "5099",
            "--count",
            "200000",
        ],
    );
    let gen_a = t.spawn_stream("239.1.1.1", 200000, 16000);
    let gen_b = t.spawn_gen(&[
        "--group",
        "239.1.1.2",
        "--port",
        "5001",
        "--count",
        "24000",
        "--rate",
        "2000",
        "--stream-base",
        "7",
    ]);
    let mut applied = 0;
    for i in 0..20 {
        let with_b = i % 2 == 0;
        let config = if with_b {
            let out = if i % 4 == 0 { "239.9.9.2" } else { "239.9.9.3" };
            format!("{HEADER}{FLOW_A}{}", flow_b(out))
        } else {
            format!("{HEADER}{FLOW_A}")
        };
        match i % 3 {
            0 => t.write_config_by_rename(&config),
            1 => t.write_config_in_place(&config),
            _ => {
                t.write_config_in_place(&config);
                t.signal_relay(relay, Signal::SIGHUP);
            }
        }
        applied += 1;
        t.wait_log(relay, "reloaded: generation", applied);
        if with_b {
            // B forwards while configured: its counter moves.
            let start = t.wait_stats("flow b published", |s| has_flow(s, "b"));
            let before = num(flow(&start, "b"), "packets");
            t.wait_stats("flow b forwarding", |s| {
                has_flow(s, "b") && num(flow(s, "b"), "packets") > before
            });
        } else {
            // B's packets are no longer forwarded: they count as no_match.
            let start = t.wait_stats("flow b removed", |s| !has_flow(s, "b"));
            let before = num(&start["drops"], "no_match");
            t.wait_stats("b's traffic unmatched", |s| {
                num(&s["drops"], "no_match") > before
            });
        }
    }
    let sent = t.gen_report(gen_a);
    assert_eq!(num(&sent, "sent"), 200_000);
    t.gen_report(gen_b);
    let report = t.sink_report(sink_a);
    assert_clean(&report, 200_000);
    assert_eq!(
        report["per_stream"].as_array().unwrap().len(),
        1,
        "only flow A on A's output: {report}"
    );
    // Flow A's group stayed joined throughout: never left, so never re-joined.
    t.procs[dump].terminate_quietly();
    let igmp = decode_igmp(&pcap);
    assert!(
        igmp.contains("gaddr 239.1.1.2 to_in"),
        "control: B's leaves are captured:\n{igmp}"
    );
    assert!(
        !igmp.contains("gaddr 239.1.1.1 to_in"),
        "flow A's group was left:\n{igmp}"
    );
    let stats = t.stop_relay(relay);
    assert_eq!(
        num(flow(&stats, "a"), "packets"),
        200_000,
        "A's counters survive reloads"
    );
    assert!(t.procs[relay]
        .stderr()
        .contains("reloads: 20 applied, 0 rejected"));
}

#[test]
fn a_broken_config_is_rejected_with_its_position_and_the_old_table_keeps_forwarding() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&format!("{HEADER}{FLOW_A}"));
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.1", "--port", "5099", "--count", "60000"],
    );
    let gen = t.spawn_stream("239.1.1.1", 60000, 15000);
    let path = t.config_path().display().to_string();

    t.write_config_by_rename(&format!("{HEADER}{FLOW_A}[[flow]\nname = \"b\"\n"));
    t.wait_log(relay, "reload rejected:", 1);
    assert!(
        t.procs[relay]
            .stderr()
            .contains(&format!("reload rejected: {path}:8:")),
        "{}",
        t.procs[relay].stderr()
    );
    // SIGHUP on the same broken bytes (as when the watch and an operator both react to one
    // save) answers the same rejection without counting or logging it again.
    t.signal_relay(relay, Signal::SIGHUP);
    t.wait_log(relay, "is the file already rejected", 1);
    assert_eq!(t.log_count(relay, "reload rejected:"), 1);

    t.write_config_by_rename(&format!(
        "{HEADER}{FLOW_A}{}",
        flow_b("239.9.9.1").replace("5001", "70000")
    ));
    t.wait_log(relay, "reload rejected:", 2);
    let log = t.procs[relay].stderr();
    assert!(
        log.contains(&format!("reload rejected: {path}:10:")),
        "{log}"
    );
    assert!(log.contains("70000"), "{log}");
    let stats = t.live_stats();
    assert!(!has_flow(&stats, "b"), "nothing of the broken file applied");

    t.write_config_by_rename(&format!("{HEADER}{FLOW_A}{}", flow_b("239.9.9.2")));
    t.wait_log(relay, "reloaded: generation 2", 1);
    t.wait_stats("fixed file applied", |s| has_flow(s, "b"));
    t.gen_report(gen);
    assert_clean(&t.sink_report(sink), 60_000);
    t.stop_relay(relay);
    assert!(t.procs[relay]
        .stderr()
        .contains("reloads: 1 applied, 2 rejected"));
}

#[test]
fn removed_groups_are_left_and_three_hundred_groups_come_and_go_at_default_limits() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&format!("{HEADER}{FLOW_A}"));
    let a = Ipv4Addr::new(239, 1, 1, 1);
    assert!(igmp_groups(&t.relay.read("/proc/net/igmp"), "in0").contains(&a));
    let mut big = format!("{HEADER}{FLOW_A}");
    for i in 0..300u32 {
        big += &format!(
            "[[flow]]\nname = \"g{i}\"\ninput = {{ interface = \"in0\", group = \"239.5.{}.{}\", port = 5001 }}\noutputs = [ {{ interface = \"out0\", group = \"239.6.{}.{}\", port = 5099 }} ]\n",
            i / 200, i % 200 + 1, i / 200, i % 200 + 1
        );
    }
    t.write_config_by_rename(&big);
    t.wait_log(
        relay,
        "reloaded: generation 2: flows +300 -0 ~0, groups joined 300 left 0",
        1,
    );
    let groups = igmp_groups(&t.relay.read("/proc/net/igmp"), "in0");
    assert_eq!(groups.len(), 302, "A + 300 + all-hosts: {groups:?}");
    // Traffic to the first 200 new groups is forwarded.
    let sink = t.start_sink(
        0,
        &[
            "--group",
            "239.6.0.1",
            "--group-count",
            "200",
            "--port",
            "5099",
            "--count",
            "4000",
        ],
    );
    t.gen(&[
        "--group",
        "239.5.0.1",
        "--group-count",
        "200",
        "--port",
        "5001",
        "--count",
        "20",
        "--rate",
        "10000",
    ]);
    assert_clean(&t.sink_report(sink), 4000);

    t.write_config_in_place(&format!("{HEADER}{FLOW_A}"));
    t.wait_log(
        relay,
        "reloaded: generation 3: flows +0 -300 ~0, groups joined 0 left 300",
        1,
    );
    let groups = igmp_groups(&t.relay.read("/proc/net/igmp"), "in0");
    assert_eq!(
        groups,
        vec![a, Ipv4Addr::new(224, 0, 0, 1)]
            .into_iter()
            .filter(|g| groups.contains(g))
            .collect::<Vec<_>>()
    );
    assert_eq!(groups.len(), 2, "only A and all-hosts remain: {groups:?}");
    t.stop_relay(relay);
}

/// Waits until process `pid` has `n` open descriptors (workers drop a replaced table, and
/// the sockets only it used, when woken after the publish).
fn wait_fds(pid: u32, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fds_and_rss(pid).0 != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} descriptors, expected {n}",
            fds_and_rss(pid).0
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_reloads_leak_no_descriptors_or_memory_and_are_all_counted() {
    let _s = serial();
    let mut t = Topology::chain(1);
    // SIGHUP only: every write is followed by exactly one reload.
    let header = HEADER.replace("[relay]\n", "[relay]\nwatch = false\n");
    let one = format!("{header}{FLOW_A}");
    let two = format!("{header}{FLOW_A}{}", flow_b("239.9.9.2"));
    let relay = t.start_relay(&one);
    let pid = t.procs[relay].child.id();
    let (fds_start, _) = fds_and_rss(pid);
    // Warm up once through both configs, so lazily allocated state exists at the baseline.
    for (n, config) in [&two, &one].into_iter().enumerate() {
        t.write_config_in_place(config);
        t.signal_relay(relay, Signal::SIGHUP);
        t.wait_log(relay, "reloaded: generation", n + 1);
    }
    // Back on the first config, the relay holds exactly the descriptors it started with, once
    // the worker has dropped the previous table.
    wait_fds(pid, fds_start);
    let (fds0, rss0) = fds_and_rss(pid);
    for n in 0..1000 {
        let config = if n % 2 == 0 { &two } else { &one };
        t.write_config_in_place(config);
        t.signal_relay(relay, Signal::SIGHUP);
        t.wait_log(relay, "reloaded: generation", n + 3);
    }
    wait_fds(pid, fds0);
    let (fds1, rss1) = fds_and_rss(pid);
    assert_eq!(fds1, fds0, "descriptors before/after 1000 reloads");
    assert!(rss1 < rss0 + 4096, "RSS grew from {rss0} KiB to {rss1} KiB");
    t.stop_relay(relay);
    assert!(t.procs[relay]
        .stderr()
        .contains("reloads: 1002 applied, 0 rejected"));
}

#[test]
fn a_reload_adds_and_releases_an_input_interface_without_restarting() {
    let _s = serial();
    let mut t = Topology::chain(1);
    common::add_second_input(&t);
    let relay = t.start_relay(&format!("{HEADER}{FLOW_A}"));
    t.write_config_by_rename(&format!("{HEADER}{FLOW_A}{}", common::FLOW_C_ON_IN1));
    t.wait_log(relay, "reloaded: generation 2", 1);
    common::check_flow_c(&mut t);
    assert!(
        igmp_groups(&t.relay.read("/proc/net/igmp"), "in1").contains(&Ipv4Addr::new(239, 1, 1, 3))
    );
    let in1: u32 = t
        .relay
        .read("/sys/class/net/in1/ifindex")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(packet_sockets_on(&t, in1), 1, "one worker, one ring on in1");
    t.write_config_by_rename(&format!("{HEADER}{FLOW_A}"));
    t.wait_log(relay, "reloaded: generation 3", 1);
    assert!(
        !igmp_groups(&t.relay.read("/proc/net/igmp"), "in1").contains(&Ipv4Addr::new(239, 1, 1, 3))
    );
    // The ring on in1 is released: no packet socket is bound to it any more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while packet_sockets_on(&t, in1) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "ring on in1 still open"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stats = t.stop_relay(relay);
    assert_eq!(num(flow(&stats, "a"), "packets"), 0);
}

#[test]
fn relay_settings_on_reload_apply_or_name_the_restart_they_need() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let quiet = "[relay]\nworkers = 1\nstats_interval = \"0s\"\nwatch = false\n";
    let relay = t.start_relay(&format!("{quiet}{FLOW_A}"));
    assert!(t.live_stats().is_null(), "no periodic stats yet");
    // Turning the periodic stats on by SIGHUP starts them; moving the control socket and
    // switching the watch on are named as needing a restart.
    let sock = t.dir.join("moved.sock").display().to_string();
    t.write_config_in_place(&format!(
        "[relay]\nworkers = 1\nstats_interval = \"200ms\"\nwatch = true\ncontrol_socket = \"{sock}\"\n{FLOW_A}"
    ));
    t.signal_relay(relay, Signal::SIGHUP);
    t.wait_log(relay, "reloaded: generation 2", 1);
    t.wait_stats("periodic stats started by the reload", |s| has_flow(s, "a"));
    for key in ["control_socket", "watch"] {
        let line = format!("[relay] {key} changed: it takes effect at the next restart");
        assert_eq!(t.log_count(relay, &line), 1, "{}", t.procs[relay].stderr());
    }
    t.stop_relay(relay);
}

#[test]
fn rings_share_ring_memory_and_a_reload_past_it_is_rejected_with_the_old_table_kept() {
    let _guard = serial();
    let mut t = Topology::chain(1);
    common::add_second_input(&t);
    let socket = t.dir.join("control.sock");
    let header = |budget: &str| {
        format!(
            "[relay]\nworkers = 2\nring_memory = \"{budget}\"\ncontrol_socket = \"{}\"\n",
            socket.display()
        )
    };
    // One minimal ring per worker needs 1 MiB at MTU 1500: two do not fit 1 MiB.
    let small = t.write("small.toml", &format!("{}{FLOW_A}", header("1MiB")));
    let out = t
        .relay
        .command(common::MCR)
        .args(["run", "-c"])
        .arg(&small)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ring_memory = \"1MiB\" cannot hold receive rings for 1 input interface(s) × 2 worker(s)"),
        "{stderr}"
    );
    // 3 MiB: two rings of 768 frames (1.5 MiB each) instead of 4096.
    let relay = t.start_relay(&format!("{}{FLOW_A}", header("3MiB")));
    t.wait_log(
        relay,
        "receive rings of 768 frames (1536KiB each, 2 worker(s))",
        1,
    );
    let status = t.control_json("status");
    assert_eq!(
        (num(&status, "ring_bytes"), num(&status, "ring_memory")),
        (3 << 20, 3 << 20)
    );
    // A second input interface does not fit what is left: rejected, flow a keeps forwarding.
    t.write_config_by_rename(&format!(
        "{}{FLOW_A}{}",
        header("3MiB"),
        common::FLOW_C_ON_IN1
    ));
    t.wait_log(relay, "reload rejected:", 1);
    assert_eq!(
        t.log_count(relay, "cannot hold receive rings for 2 input interface(s)"),
        1
    );
    common::check_stream(&mut t, "up0", "239.1.1.1", "239.9.9.1", 2000);
    // With room for it, the same flow is added and forwards.
    t.write_config_by_rename(&format!(
        "{}{FLOW_A}{}",
        header("6MiB"),
        common::FLOW_C_ON_IN1
    ));
    t.wait_log(relay, "reloaded: generation 2", 1);
    common::check_flow_c(&mut t);
    let status = t.control_json("status");
    assert_eq!(
        (num(&status, "ring_bytes"), num(&status, "ring_memory")),
        (6 << 20, 6 << 20)
    );
    let stats = t.stop_relay(relay);
    assert_eq!(num(flow(&stats, "a"), "packets"), 2000);
    assert_eq!(num(flow(&stats, "c"), "packets"), 2000);
}
