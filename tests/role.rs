//! End to end: the relay's role. A standby relay keeps its rings and groups and takes in every
//! datagram but sends none (each counted as a `standby` drop); `mcr active` makes it forward
//! again at once, with no reload and no join. `[relay] role = "standby"` starts it that way.

mod common;

use std::process::Command;

use common::{check_stream, flow, num, serial, Topology};

fn config(t: &Topology, role: &str) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\nrole = \"{role}\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"a\"\ninput = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    )
}

/// `mcr ACTIVE_OR_STANDBY`: its stdout.
fn set_role(t: &Topology, role: &str) -> String {
    let out = Command::new(common::MCR)
        .args([role, "--socket"])
        .arg(t.dir.join("control.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Sends `count` packets at 5k pps to flow a's input and waits until the relay took them all in.
fn send_and_wait(t: &mut Topology, count: u64, total: u64) {
    let gen = t.spawn_stream("239.1.1.1", count, 5000);
    assert_eq!(num(&t.gen_report(gen), "sent"), count);
    common::wait_until("every packet taken in", || {
        num(flow(&t.control_json("stats"), "a"), "packets") == total
    });
}

#[test]
fn a_standby_relay_sends_nothing_and_takes_over_at_once() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&config(&t, "standby"));
    assert_eq!(t.control_json("status")["role"], "standby");

    // Standby from the start: 1000 packets in, none out, each counted.
    send_and_wait(&mut t, 1000, 1000);
    let stats = t.control_json("stats");
    let out = &flow(&stats, "a")["outputs"][0];
    assert_eq!(num(out, "packets"), 0, "{out}");
    assert_eq!(num(&stats["drops"], "standby"), 1000, "{stats}");

    // Take over: forwards every packet, clean, with no reload (generation unchanged).
    assert_eq!(set_role(&t, "active"), "now active");
    assert_eq!(set_role(&t, "active"), "already active");
    check_stream(&mut t, "up0", "239.1.1.1", "239.9.9.1", 1000);
    let status = t.control_json("status");
    assert_eq!(
        (status["role"].as_str(), num(&status, "generation")),
        (Some("active"), 1)
    );

    // And back.
    assert_eq!(set_role(&t, "standby"), "now standby");
    send_and_wait(&mut t, 500, 2500);
    let stats = t.stop_relay(relay);
    let out = &flow(&stats, "a")["outputs"][0];
    assert_eq!(num(out, "packets"), 1000, "{out}");
    assert_eq!(num(&stats["drops"], "standby"), 1500, "{stats}");
    assert_eq!(t.log_count(relay, "role: standby"), 1);
    assert_eq!(t.log_count(relay, "role: active"), 1);
}

/// `mcr active --lease LEASE`: its stdout.
fn lease(t: &Topology, lease: &str) -> String {
    let out = Command::new(common::MCR)
        .args(["active", "--lease", lease, "--socket"])
        .arg(t.dir.join("control.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_active_role_taken_with_a_lease_falls_back_to_standby_unless_renewed() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&config(&t, "standby"));
    assert_eq!(lease(&t, "1500ms"), "now active (lease 1.5s)");
    // Renewed well inside the lease, four times: active throughout, forwarding.
    let start = std::time::Instant::now();
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(lease(&t, "1500ms"), "already active (lease 1.5s)");
    }
    assert!(start.elapsed() > std::time::Duration::from_millis(1500));
    let status = t.control_json("status");
    assert_eq!(status["role"], "active", "{status}");
    let left = status["role_lease_seconds"].as_f64().unwrap();
    assert!(left > 0.5 && left <= 1.5, "{status}");
    check_stream(&mut t, "up0", "239.1.1.1", "239.9.9.1", 1000);
    // No renewal: standby once the lease runs out, said in the log.
    common::wait_until("the lease ran out", || {
        t.control_json("status")["role"] == "standby"
    });
    assert!(t.control_json("status")["role_lease_seconds"].is_null());
    assert_eq!(t.log_count(relay, "role lease expired"), 1);
    // `mcr active` without a lease holds until changed; `standby` drops any lease.
    assert_eq!(lease(&t, "60s"), "now active (lease 60.0s)");
    assert_eq!(set_role(&t, "active"), "already active");
    assert!(t.control_json("status")["role_lease_seconds"].is_null());
    assert_eq!(set_role(&t, "standby"), "now standby");
    t.stop_relay(relay);
}
