//! End to end: a unicast output (head-end replication). One multicast input goes to a
//! receiver's unicast address and to a multicast group on the same interface: the unicast
//! copies leave through the kernel's UDP stack (it resolves the receiver's MAC), arrive
//! byte-exact with a routable TTL, and the multicast copies keep the frame path.

mod common;

use common::{assert_clean, capture, decode, flow, num, serial, Topology};

#[test]
fn a_unicast_output_reaches_its_receiver_through_the_neighbour_table() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let config = format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"a\"\ninput = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", address = \"10.2.0.2\", port = 5099 }},\n\
                     {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    );
    let relay = t.start_relay(&config);
    let (mut tcpdump, pcap) = capture(
        &t.sinks[0],
        &t.dir,
        "down0",
        "udp and dst port 5099",
        "unicast",
    );
    // The receiver joins nothing: it listens on its own address.
    let sink = t.start_sink(
        0,
        &["--group", "10.2.0.2", "--port", "5099", "--count", "1000"],
    );
    let gen = t.spawn_stream("239.1.1.1", 1000, 5000);
    assert_eq!(num(&t.gen_report(gen), "sent"), 1000);
    let report = t.sink_report(sink);
    assert_clean(&report, 1000);
    // The kernel's default TTL for unicast, not the multicast default of 1.
    assert_eq!((num(&report, "ttl_min"), num(&report, "ttl_max")), (64, 64));
    common::wait_until("the capture has both copies of every packet", || {
        decode(&pcap, &[]).lines().count() >= 2000
    });
    tcpdump.terminate_quietly();
    let frames = decode(&pcap, &["-e"]);
    let sink_mac = t.sinks[0].read("/sys/class/net/down0/address");
    let (unicast, multicast): (Vec<&str>, Vec<&str>) =
        frames.lines().partition(|l| l.contains("> 10.2.0.2.5099"));
    assert_eq!(unicast.len(), 1000, "{frames:.2000}");
    assert_eq!(multicast.len(), 1000, "{frames:.2000}");
    // Unicast frames carry the receiver's MAC (resolved by ARP), multicast ones 01:00:5e.
    assert!(
        unicast
            .iter()
            .all(|l| l.contains(&format!("> {}", sink_mac.trim()))),
        "{}",
        unicast[0]
    );
    assert!(multicast.iter().all(|l| l.contains("> 01:00:5e:09:09:01")));
    let stats = t.stop_relay(relay);
    let outputs = flow(&stats, "a")["outputs"].as_array().unwrap().clone();
    assert_eq!(outputs[0]["egress"], "udp", "{outputs:?}");
    assert_eq!(outputs[1]["egress"], "packet", "{outputs:?}");
    for o in &outputs {
        assert_eq!(num(o, "packets"), 1000, "{o}");
    }
}

/// A relay config whose flow `u` takes unicast datagrams to 10.1.0.2:6000 on `in0` to
/// 239.9.9.2:5099 on `out0`, plus `extra` flows.
fn unicast_input_config(t: &Topology, extra: &str) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"u\"\ninput = {{ interface = \"in0\", address = \"10.1.0.2\", port = 6000 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.2\", port = 5099 }} ]\n{extra}",
        t.dir.join("control.sock").display()
    )
}

/// Another process's attempt to bind 10.1.0.2:6000 in the relay's namespace.
fn try_bind_port(t: &Topology) -> std::process::Output {
    t.relay
        .command("python3")
        .args([
            "-c",
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(('10.1.0.2', 6000))",
        ])
        .output()
        .unwrap()
}

/// Sends `count` datagrams to 10.1.0.2:6000 while capturing ICMP on the gen's link, and
/// checks that the multicast copies arrive whole and no ICMP came back.
fn relay_unicast_without_icmp(t: &mut Topology, count: u64, base: &str) {
    let (mut tcpdump, pcap) = capture(&t.gen, &t.dir, "up0", "icmp", &format!("icmp-{base}"));
    let n = count.to_string();
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.2", "--port", "5099", "--count", &n],
    );
    let args = [
        "--group",
        "10.1.0.2",
        "--port",
        "6000",
        "--count",
        &n,
        "--rate",
        "5000",
        "--stream-base",
        base,
    ];
    assert_eq!(num(&t.gen(&args), "sent"), count);
    assert_clean(&t.sink_report(sink), count);
    tcpdump.terminate_quietly();
    let icmp = decode(&pcap, &[]);
    assert!(icmp.trim().is_empty(), "no ICMP port unreachable: {icmp}");
}

#[test]
fn a_unicast_input_is_relayed_to_multicast_without_icmp_and_holds_its_port() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&unicast_input_config(&t, ""));
    // mcr holds the port: another process cannot take it.
    let bind = try_bind_port(&t);
    assert!(!bind.status.success(), "port 6000 is held by mcr");
    assert!(
        String::from_utf8_lossy(&bind.stderr).contains("Address already in use"),
        "{}",
        String::from_utf8_lossy(&bind.stderr)
    );
    relay_unicast_without_icmp(&mut t, 1000, "0");
    // The ingress drop holds the unicast key and took all 1000: the port's socket saw none.
    let pid = t.procs[relay].child.id();
    let table = common::drop_table_text(&t.relay, pid);
    assert!(table.contains("10.1.0.2 . 6000"), "{table}");
    assert!(table.contains("counter packets 1000 "), "{table}");
    // A reload adds a second unicast input on the same interface: the rings' filter follows.
    let second = "[[flow]]\nname = \"v\"\ninput = { interface = \"in0\", address = \"10.1.0.2\", port = 6001 }\n\
                  outputs = [ { interface = \"out0\", group = \"239.9.9.3\", port = 5099 } ]\n";
    t.write_config_by_rename(&unicast_input_config(&t, second));
    common::wait_until("the reload applied", || {
        t.control_json("stats")["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "v")
    });
    // The workers take the new filter after the publish: wait until it lets datagrams in.
    let probe = [
        "--group",
        "10.1.0.2",
        "--port",
        "6001",
        "--count",
        "1",
        "--stream-base",
        "9",
    ];
    common::wait_until("the new filter admits port 6001", || {
        t.gen(&probe);
        num(flow(&t.control_json("stats"), "v"), "packets") > 0
    });
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.3", "--port", "5099", "--count", "1000"],
    );
    let args = [
        "--group", "10.1.0.2", "--port", "6001", "--count", "1000", "--rate", "5000",
    ];
    assert_eq!(num(&t.gen(&args), "sent"), 1000);
    assert_clean(&t.sink_report(sink), 1000);
    let stats = t.stop_relay(relay);
    assert_eq!(num(flow(&stats, "u"), "packets"), 1000);
    // The port is free again once mcr is gone.
    let bind = try_bind_port(&t);
    assert!(
        bind.status.success(),
        "{}",
        String::from_utf8_lossy(&bind.stderr)
    );
}

#[test]
fn without_the_ingress_drop_the_held_port_still_keeps_icmp_away() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let path = t.write("mcr.toml", &unicast_input_config(&t, ""));
    let relay = t.start_relay_via(&["setpriv", "--bounding-set", "-net_admin"], &path, &[]);
    relay_unicast_without_icmp(&mut t, 1000, "0");
    let status = t.control_json("status");
    assert!(
        status["ingress_drop"]
            .as_str()
            .unwrap_or("")
            .starts_with("off"),
        "{status}"
    );
    // The control: with local_delivery the port is left to a local process, and with none
    // there the kernel does answer, so the capture above could have seen it.
    let local = unicast_input_config(&t, "")
        .replace("name = \"u\"\n", "name = \"u\"\nlocal_delivery = true\n");
    t.write_config_by_rename(&local);
    common::wait_until("the port is released", || {
        try_bind_port(&t).status.success()
    });
    let (mut tcpdump, pcap) = capture(&t.gen, &t.dir, "up0", "icmp", "icmp-control");
    let args = [
        "--group", "10.1.0.2", "--port", "6000", "--count", "10", "--rate", "1000",
    ];
    // Some sends fail: the kernel reports the ICMP errors back to the sender's socket.
    t.gen(&args);
    common::wait_until("ICMP port unreachable", || {
        decode(&pcap, &[]).contains("udp port 6000 unreachable")
    });
    tcpdump.terminate_quietly();
    t.stop_relay(relay);
}

#[test]
fn a_port_another_process_holds_is_refused_with_what_to_do() {
    let _s = serial();
    let t = Topology::chain(1);
    let path = t.write("mcr.toml", &unicast_input_config(&t, ""));
    let mut holder = t
        .relay
        .command("python3")
        .args(["-c", "import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.1.0.2', 6000)); print('bound', flush=True); time.sleep(30)"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "bound");
    let out = t
        .relay
        .command(common::MCR)
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot hold UDP port 6000 on 10.1.0.2")
            && err.contains("local_delivery = true"),
        "{err}"
    );
}

#[test]
fn a_unicast_output_without_an_interface_follows_the_routing_table() {
    let _s = serial();
    let mut t = Topology::chain(2);
    // The receiver 10.9.0.2 sits behind sink 1; the relay reaches it by a route via out1.
    t.sinks[1].ip(&["addr", "add", "10.9.0.2/32", "dev", "down0"]);
    t.relay.ip(&[
        "route",
        "add",
        "10.9.0.2/32",
        "via",
        "10.2.1.2",
        "dev",
        "out1",
    ]);
    let config = format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"a\"\ninput = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ address = \"10.9.0.2\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    );
    let relay = t.start_relay(&config);
    let sink = t.start_sink(
        1,
        &["--group", "10.9.0.2", "--port", "5099", "--count", "1000"],
    );
    let gen = t.spawn_stream("239.1.1.1", 1000, 5000);
    assert_eq!(num(&t.gen_report(gen), "sent"), 1000);
    assert_clean(&t.sink_report(sink), 1000);
    let stats = t.stop_relay(relay);
    let out = &flow(&stats, "a")["outputs"][0];
    assert_eq!(out["interface"], "routed", "{out}");
    assert_eq!(out["egress"], "udp", "{out}");
    assert_eq!(num(out, "packets"), 1000, "{out}");
}
