//! End to end: an output's `source`. Receivers whose reverse-path filter is strict accept a
//! datagram only from a source they route back out of the interface it came in on; an output
//! whose `source` is an address of the receivers' own segment passes it, the relay's own
//! address on another segment would not (shown by the control flow). An output with a
//! `source` sends even from an interface without an address; one without waits.

mod common;

use common::{assert_clean, capture, decode, flow, num, serial, wait_until, Topology};

#[test]
fn a_strict_rpf_receiver_accepts_the_configured_source_and_an_addressless_interface_sends_with_one()
{
    let _s = serial();
    let mut t = Topology::chain(2);
    for sink in &t.sinks {
        for key in ["all.rp_filter=1", "down0.rp_filter=1"] {
            sink.exec(&["sysctl", "-q", "-w", &format!("net.ipv4.conf.{key}")]);
        }
    }
    // out1 has no IPv4 address at all.
    t.relay.ip(&["-4", "addr", "flush", "dev", "out1"]);
    let config = format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"f\"\ninput = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099, source = \"10.2.0.99\" }},\n\
                     {{ interface = \"out0\", group = \"239.9.9.2\", port = 5099, source = \"192.0.2.10\" }},\n\
                     {{ interface = \"out1\", group = \"239.9.9.3\", port = 5099, source = \"10.2.1.99\" }},\n\
                     {{ interface = \"out1\", group = \"239.9.9.4\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    );
    let relay = t.start_relay(&config);
    let status = t.control_json("status").to_string();
    assert!(
        status.contains("no IPv4 address on the interface"),
        "out1 without a source waits: {status}"
    );
    let (mut tcpdump, pcap) = capture(&t.sinks[0], &t.dir, "down0", "udp", "rpf");
    let own = t.start_sink(
        0,
        &["--group", "239.9.9.1", "--port", "5099", "--count", "1000"],
    );
    let foreign = t.start_sink(
        0,
        &[
            "--group",
            "239.9.9.2",
            "--port",
            "5099",
            "--first-timeout",
            "4s",
        ],
    );
    let bare = t.start_sink(
        1,
        &["--group", "239.9.9.3", "--port", "5099", "--count", "1000"],
    );
    let gen = t.spawn_stream("239.1.1.1", 1000, 5000);
    assert_eq!(num(&t.gen_report(gen), "sent"), 1000);
    assert_clean(&t.sink_report(own), 1000);
    assert_clean(&t.sink_report(bare), 1000);
    // The control: 192.0.2.10 is not routed back via down0, so strict RPF drops it all.
    assert_eq!(num(&t.sink_report(foreign), "received"), 0);
    wait_until("both sources on the wire", || {
        decode(&pcap, &[]).lines().count() >= 2000
    });
    tcpdump.terminate_quietly();
    let wire = decode(&pcap, &[]);
    let from = |src: &str, dst: &str| {
        wire.lines()
            .filter(|l| l.contains(&format!("IP {src}.")) && l.contains(&format!("> {dst}.5099")))
            .count()
    };
    assert_eq!(from("10.2.0.99", "239.9.9.1"), 1000, "{:.1500}", wire);
    assert_eq!(from("192.0.2.10", "239.9.9.2"), 1000, "{:.1500}", wire);
    let stats = t.stop_relay(relay);
    let outs = flow(&stats, "f")["outputs"].as_array().unwrap().clone();
    let packets: Vec<u64> = outs.iter().map(|o| num(o, "packets")).collect();
    assert_eq!(packets, [1000, 1000, 1000, 0], "{outs:?}");
}
