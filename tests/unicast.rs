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
