//! End to end: two relays configured into a loop on one LAN segment.
//!
//! ```text
//!  gen ns                 switch ns (br0)                 relay ns (A)       sink0 ns (B)
//!  up0 10.9.0.1 ── pg ─┬─ br0 ─┬─ pa ── lan0 10.9.0.2   A: G1 → G2 on lan0
//!                              └─ pb ── lan0 10.9.0.3   B: G2 → G1 on lan0
//! ```
//! A relays the generator's G1 to G2, B relays G2 back to G1, which A receives again: without
//! the loop guard one packet circulates for ever; with it, each payload crosses each relay
//! once and every counter stops.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{flow, num, serial, Netns, Proc, Topology, MCR};

/// Replaces the chain's links with one bridge joining gen, relay (A) and sink0 (B).
fn lan(t: &Topology) -> Netns {
    t.relay.ip(&["link", "del", "in0"]);
    t.relay.ip(&["link", "del", "out0"]);
    let sw = Netns::new("sw");
    // No snooping: the segment floods multicast like an unmanaged switch.
    sw.ip(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]);
    sw.ip(&["link", "set", "br0", "up"]);
    common::bridge_ports(
        &sw,
        &[
            ("pg", "up0", &t.gen, "10.9.0.1/24"),
            ("pa", "lan0", &t.relay, "10.9.0.2/24"),
            ("pb", "lan0", &t.sinks[0], "10.9.0.3/24"),
        ],
    );
    sw
}

/// A relay mapping `from` to `to` on lan0; `guard` is the `[relay] loop_guard` value.
fn config(socket: &Path, name: &str, from: &str, to: &str, guard: &str) -> String {
    format!(
        "[relay]\nworkers = 2\nstats_interval = \"0s\"\nwatch = false\nquerier = \"off\"\n\
         loop_guard = \"{guard}\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"{name}\"\ninput = {{ interface = \"lan0\", group = \"{from}\", port = 5001 }}\n\
         outputs = [ {{ interface = \"lan0\", group = \"{to}\", port = 5001, ttl = 8 }} ]\n",
        socket.display()
    )
}

/// Starts relay A (relay ns) and relay B (sink0 ns) into a loop; returns B's control socket.
fn start_pair(t: &mut Topology, guard: &str) -> PathBuf {
    let a_sock = t.dir.join("control.sock");
    let b_sock = t.dir.join("b.sock");
    t.start_relay(&config(&a_sock, "a", "239.1.1.1", "239.2.2.2", guard));
    let b_conf = t.write(
        "b.toml",
        &config(&b_sock, "b", "239.2.2.2", "239.1.1.1", guard),
    );
    let mut cmd = t.sinks[0].command(MCR);
    cmd.args(["run", "-c"]).arg(&b_conf).env("RUST_LOG", "info");
    let mut b = Proc::spawn(cmd, &t.dir, "relay-b");
    b.wait_for("relay B ready", Duration::from_secs(20), |p| {
        p.stderr().contains("ready:")
    });
    t.procs.push(b);
    b_sock
}

const BURST: u64 = 500;

#[test]
fn a_loop_of_two_relays_dies_out_with_the_guard_on() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let _sw = lan(&t);
    let b_sock = start_pair(&mut t, "1s");
    let a = |t: &Topology| t.control_json("stats");
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        &BURST.to_string(),
        "--rate",
        "1000",
    ]);
    common::wait_until("A dropped every copy B sent back", || {
        num(flow(&a(&t), "a"), "looped") >= BURST
    });
    // Counters have stopped: two samples a quarter of a second apart are equal and exact.
    let first = (a(&t), common::control_json_at(&b_sock, "stats"));
    std::thread::sleep(Duration::from_millis(250));
    let second = (a(&t), common::control_json_at(&b_sock, "stats"));
    for (sa, sb) in [&first, &second] {
        let (fa, fb) = (flow(sa, "a"), flow(sb, "b"));
        assert_eq!(
            num(fa, "packets"),
            BURST,
            "A relays the generator's burst once: {sa}"
        );
        assert_eq!(num(fa, "looped"), BURST, "and drops B's copies: {sa}");
        assert_eq!(num(&fa["outputs"][0], "packets"), BURST, "{sa}");
        assert_eq!(num(fb, "packets"), BURST, "B relays A's copies once: {sb}");
        assert_eq!(num(fb, "looped"), 0, "{sb}");
        assert_eq!(num(&sa["drops"], "loop"), BURST, "{sa}");
    }
}

#[test]
fn without_the_guard_one_packet_circulates_for_ever() {
    // The control that shows the test above can fail: the same pair with the guard off.
    let _s = serial();
    let mut t = Topology::chain(1);
    let _sw = lan(&t);
    let _b = start_pair(&mut t, "off");
    t.gen(&["--group", "239.1.1.1", "--port", "5001", "--count", "1"]);
    common::wait_until("one packet came round a thousand times", || {
        num(flow(&t.control_json("stats"), "a"), "packets") > 1000
    });
}
