//! End to end: mcr's IGMP querier behind a real Linux bridge with IGMP snooping.
//!
//! ```text
//!  gen ns            switch ns (br0, snooping)            relay ns         sink ns
//!  up0 10.1.0.1 ── pg ─ br0 ─ pr (mcast_flood off) ── in0 10.1.0.2
//!                                                     out0 10.2.0.1 ── down0
//! ```
//! With no querier on the segment the bridge sends mcr nothing (its port does not flood
//! unregistered multicast, and memberships age out after `mcast_membership_interval`).

mod common;

use std::time::Duration;

use common::{assert_clean, flow, num, serial, Netns, Topology};

/// Replaces the chain's direct gen ↔ relay link with a snooping bridge in its own namespace.
/// `querier`: the bridge's own querier address, if it should query.
fn bridged(t: &Topology, querier: Option<&str>) -> Netns {
    t.relay.ip(&["link", "del", "in0"]);
    let sw = Netns::new("sw");
    // 2 s membership interval (centiseconds): without refreshes a membership is gone fast.
    sw.ip(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "1",
        "mcast_querier",
        "0",
        "mcast_membership_interval",
        "200",
        "mcast_query_interval",
        "100",
        "mcast_query_response_interval",
        "50",
        "mcast_startup_query_interval",
        "100",
    ]);
    if let Some(addr) = querier {
        sw.ip(&["addr", "add", addr, "dev", "br0"]);
        sw.ip(&[
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_querier",
            "1",
            "mcast_query_use_ifaddr",
            "1",
        ]);
    }
    sw.ip(&["link", "set", "br0", "up"]);
    common::bridge_ports(
        &sw,
        &[
            ("pg", "up0", &t.gen, "10.1.0.1/24"),
            ("pr", "in0", &t.relay, "10.1.0.2/24"),
        ],
    );
    sw.exec(&["bridge", "link", "set", "dev", "pr", "mcast_flood", "off"]);
    sw
}

fn config(t: &Topology, querier: &str) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nwatch = false\nidle_after = \"1h\"\n\
         querier = \"{querier}\"\nquery_interval = \"1s\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"a\"\ninput = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    )
}

fn gen_args(count: &str) -> [&str; 8] {
    [
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        count,
        "--rate",
        "1000",
    ]
}

#[test]
fn without_a_querier_the_bridge_sends_nothing_and_mcr_as_querier_keeps_it_flowing() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let sw = bridged(&t, None);

    // Control: querier off, 3 s of traffic, nothing reaches mcr.
    let relay = t.start_relay(&config(&t, "off"));
    t.gen(&gen_args("3000"));
    assert_eq!(num(flow(&t.control_json("stats"), "a"), "packets"), 0);
    t.stop_relay(relay);

    // mcr queries: the bridge makes mcr's port a router port, and 20 s of traffic (10× the
    // membership interval) arrive without a gap.
    let relay = t.start_relay(&config(&t, "auto"));
    common::wait_until("bridge learned mcr's port as a router port", || {
        let mdb = sw.exec(&["bridge", "-d", "mdb", "show"]).stdout;
        String::from_utf8_lossy(&mdb).contains("router ports on br0: pr")
    });
    assert_eq!(t.control_json("status")["queriers"]["in0"], "querier");
    // The bridge trusts a new querier after its max response time: probe until mcr sees
    // traffic, then count a fresh stream from its first packet.
    common::wait_until("the bridge forwards to mcr", || {
        t.gen(&gen_args("10"));
        num(flow(&t.control_json("stats"), "a"), "packets") > 0
    });
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.1", "--port", "5099", "--count", "20000"],
    );
    t.gen(&gen_args("20000"));
    assert_clean(&t.sink_report(sink), 20000);
    t.stop_relay(relay);
}

#[test]
fn with_a_lower_querier_on_the_segment_mcr_stays_silent_and_traffic_flows() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let sw = bridged(&t, Some("10.1.0.1/24"));
    // The bridge queries first (a Linux bridge hands the querier role to whoever queried
    // last, so mcr must never answer with queries of its own).
    let (mut first, early) = common::capture(&sw, &t.dir, "pr", "igmp", "early");
    common::wait_until("the bridge queries", || {
        common::decode(&early, &[]).contains("10.1.0.1 > 224.0.0.1")
    });
    first.terminate_quietly();
    let (mut dump, pcap) = common::capture(&sw, &t.dir, "pr", "igmp", "igmp");
    let relay = t.start_relay(&config(&t, "auto"));
    common::wait_until("mcr defers to the bridge's querier", || {
        t.control_json("status")["queriers"]["in0"] == "other querier 10.1.0.1"
    });
    // Five query intervals: the bridge keeps querying, mcr never does.
    std::thread::sleep(Duration::from_secs(5));
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.1", "--port", "5099", "--count", "2000"],
    );
    t.gen(&gen_args("2000"));
    assert_clean(&t.sink_report(sink), 2000);
    dump.terminate_quietly();
    let igmp = common::decode(&pcap, &["-v"]);
    let queries = |src: &str| {
        igmp.lines()
            .filter(|l| l.contains(&format!("{src} > 224.0.0.1")))
            .count()
    };
    assert!(queries("10.1.0.1") >= 4, "the bridge queries:\n{igmp}");
    assert_eq!(queries("10.1.0.2"), 0, "mcr must not compete:\n{igmp}");
    t.stop_relay(relay);
}
