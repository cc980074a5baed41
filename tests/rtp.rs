//! End to end: RTP monitoring (`rtp = true`). `mcr gen --rtp` sends an RTP stream and
//! impairs it on purpose — every 97th packet dropped, every 89th sent twice, every 83rd
//! swapped with the next — so the path's faults are known exactly; the relay (two workers)
//! counts them on its input and `mcr sink --rtp` at the receiver, after the relay. The three
//! must agree exactly. Then another SSRC, and datagrams that are not RTP.

mod common;

use common::{flow, num, serial, Topology};

fn rtp_of(v: &serde_json::Value) -> serde_json::Value {
    v.get("rtp")
        .cloned()
        .unwrap_or_else(|| panic!("no rtp figures in {v}"))
}

fn signed(v: &serde_json::Value, key: &str) -> i64 {
    v.get(key)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn the_relay_counts_loss_duplicates_and_reordering_exactly_as_the_receiver_and_the_sender_say() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let config = format!(
        "[relay]\nworkers = 2\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"video\"\nrtp = true\n\
         input = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n\
         [[flow]]\nname = \"plain\"\n\
         input = {{ interface = \"in0\", group = \"239.1.1.2\", port = 5001 }}\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.2\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    );
    let relay = t.start_relay(&config);
    let sink = t.start_sink(0, &["--group", "239.9.9.1", "--port", "5099", "--rtp"]);
    let gen = t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "20000",
        "--rate",
        "5000",
        "--rtp",
        "--drop-every",
        "97",
        "--dup-every",
        "89",
        "--swap-every",
        "83",
    ]);
    let (dropped, duplicated, swapped) = (
        num(&gen, "dropped"),
        num(&gen, "duplicated"),
        num(&gen, "swapped"),
    );
    assert!(dropped > 150 && duplicated > 150 && swapped > 150, "{gen}");
    let sent = 20_000 - dropped + duplicated;
    assert_eq!(num(&gen, "sent"), sent, "{gen}");

    let report = t.sink_report(sink);
    let stream = &report["per_stream"][0];
    let at_sink = rtp_of(stream);
    let stats = t.control_json("stats");
    let video = flow(&stats, "video");
    let at_relay = rtp_of(video);
    assert_eq!(num(video, "packets"), sent, "{stats}");
    // What the sender did, the relay saw and the receiver saw, exactly.
    for (what, expect) in [
        ("packets", sent as i64),
        ("lost", dropped as i64),
        ("duplicates", duplicated as i64),
        ("reordered", swapped as i64),
        ("ssrc_changes", 0),
        ("seq_resets", 0),
        ("not_rtp", 0),
    ] {
        assert_eq!(
            signed(&at_relay, what),
            expect,
            "{what} at the relay: {at_relay}"
        );
        assert_eq!(
            signed(&at_sink, what),
            expect,
            "{what} at the sink: {at_sink}"
        );
    }
    // The probe behind the header agrees too (the sink's own sequence check).
    assert_eq!(
        (
            num(stream, "lost"),
            num(stream, "duplicates"),
            num(&report, "corrupt")
        ),
        (dropped, duplicated, 0),
        "{report}"
    );
    // Paced in bursts of a few packets: some jitter, far below a frame time.
    let jitter = at_relay["jitter_us"].as_f64().unwrap();
    assert!(jitter > 0.0 && jitter < 20_000.0, "{at_relay}");
    assert!(
        flow(&stats, "plain").get("rtp").is_none(),
        "an unmonitored flow has no rtp figures: {stats}"
    );

    // Another sender restarts the stream (new SSRC, sequence from 0): a change, no loss;
    // datagrams that are not RTP are counted apart.
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "500",
        "--rate",
        "5000",
        "--rtp",
        "--stream-base",
        "1",
    ]);
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "10",
        "--rate",
        "1000",
    ]);
    let stats = t.control_json("stats");
    let r = rtp_of(flow(&stats, "video"));
    assert_eq!(
        (
            signed(&r, "packets"),
            signed(&r, "lost"),
            signed(&r, "ssrc_changes"),
            signed(&r, "not_rtp")
        ),
        (sent as i64 + 500, dropped as i64, 1, 10),
        "{r}"
    );
    let text = t.procs[relay].terminate();
    assert!(text.contains("final counters"), "{text}");
    assert!(
        text.contains(&format!(
            "rtp=[lost={dropped} dup={duplicated} reordered={swapped} ssrc_changes=1"
        )),
        "the log line carries the rtp figures: {text}"
    );
}
