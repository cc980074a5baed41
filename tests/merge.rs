//! End to end: hitless merge (`merge = "rtp"`). One RTP stream reaches the relay twice, over
//! two links and two groups (ST 2022-7's red and blue), each path with its own losses —
//! 5 % at random (independent seeds) and, on one, a 200 ms outage — which `mcr gen` makes
//! on purpose, so the relay cannot know. The blue sender starts 10 ms after the red one (a
//! path with extra delay). The output must lose exactly what both paths lost, carry no
//! duplicate, and each path's counters must add up.
//!
//! Nothing is buffered: a packet recovered from the lagging path leaves when it arrives,
//! after the ones the other path delivered meanwhile. That reorders at most the recovered
//! packets, which the test bounds.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{add_second_input, flow, num, serial, Topology};

fn dropped(gen: &serde_json::Value) -> BTreeSet<u64> {
    gen.get("dropped_seqs")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default()
}

/// Sends the two lossy paths through a merged flow with `extra` settings; asserts exact
/// loss, no duplicate and exact per-path counts; returns (reordered at the sink, packets
/// recovered from one path only).
fn merge_two_lossy_paths(extra: &str) -> (u64, u64) {
    let mut t = Topology::chain(1);
    add_second_input(&t);
    let config = format!(
        "[relay]\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n\
         [[flow]]\nname = \"st2022\"\nmerge = \"rtp\"\n{extra}\
         inputs = [ {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }},\n\
                    {{ interface = \"in1\", group = \"239.2.2.1\", port = 5001 }} ]\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    );
    let relay = t.start_relay(&config);
    let status = t.control_json("status");
    assert_eq!(status["workers"], 1, "a merge runs one worker: {status}");
    let sink = t.start_sink(0, &["--group", "239.9.9.1", "--port", "5099", "--rtp"]);
    let common = [
        "--port", "5001", "--count", "20000", "--rate", "10000", "--rtp",
    ];
    let red = t.spawn_gen(
        &[
            &["--group", "239.1.1.1", "--drop-percent", "5", "--seed", "1"][..],
            &["--drop-range", "4000..6000"],
            &common,
        ]
        .concat(),
    );
    std::thread::sleep(Duration::from_millis(10));
    let blue = t.spawn_gen_on(
        "up1",
        &[
            &["--group", "239.2.2.1", "--drop-percent", "5", "--seed", "2"][..],
            &common,
        ]
        .concat(),
    );
    let (red, blue) = (t.gen_report(red), t.gen_report(blue));
    let (lost_red, lost_blue) = (dropped(&red), dropped(&blue));
    assert!(
        lost_red.len() > 2500 && lost_blue.len() > 800,
        "{red} {blue}"
    );
    let both: BTreeSet<u64> = lost_red.intersection(&lost_blue).copied().collect();
    let recovered = lost_red.len() + lost_blue.len() - 2 * both.len();

    let report = t.sink_report(sink);
    let stream = &report["per_stream"][0];
    println!(
        "{extra:?}: red lost {}, blue lost {}, both {}; sink: {}",
        lost_red.len(),
        lost_blue.len(),
        both.len(),
        report
    );
    assert_eq!(
        (
            num(stream, "received"),
            num(stream, "lost"),
            num(stream, "duplicates"),
            num(&report, "corrupt")
        ),
        (20_000 - both.len() as u64, both.len() as u64, 0, 0),
        "{report}"
    );

    let stats = t.control_json("stats");
    let f = flow(&stats, "st2022");
    let paths = f["inputs"].as_array().expect("per-path counters");
    let (r, b) = (&paths[0], &paths[1]);
    assert_eq!(num(r, "packets"), 20_000 - lost_red.len() as u64, "{f}");
    assert_eq!(num(b, "packets"), 20_000 - lost_blue.len() as u64, "{f}");
    assert_eq!(
        num(r, "first") + num(b, "first"),
        20_000 - both.len() as u64,
        "{f}"
    );
    assert_eq!(num(r, "late") + num(b, "late"), 0, "{f}");
    assert_eq!(
        num(r, "duplicates") + num(b, "duplicates"),
        20_000 - (lost_red.len() + lost_blue.len() - both.len()) as u64,
        "every sequence number both paths delivered was discarded once: {f}"
    );
    // What only one path delivered: the other path's losses that this one covered.
    assert_eq!(
        num(r, "only_this_path"),
        (lost_blue.len() - both.len()) as u64,
        "{f}"
    );
    assert_eq!(
        num(b, "only_this_path"),
        (lost_red.len() - both.len()) as u64,
        "{f}"
    );
    assert_eq!(num(f, "recovered"), recovered as u64, "{f}");
    let rtp = &f["rtp"];
    assert_eq!(rtp["lost"], both.len() as i64, "{f}");
    assert_eq!(
        stats["drops"]["merged"],
        num(r, "duplicates") + num(b, "duplicates"),
        "{stats}"
    );
    t.procs[relay].terminate();
    (num(stream, "reordered"), recovered as u64)
}

#[test]
fn two_lossy_paths_merge_into_one_stream_that_loses_only_what_both_lost() {
    let _s = serial();
    let (reordered, recovered) = merge_two_lossy_paths("");
    assert!(
        reordered <= recovered,
        "without a playout buffer only recovered packets may arrive out of order: {reordered} > {recovered}"
    );
}

#[test]
fn with_a_merge_delay_the_merged_stream_leaves_in_order() {
    let _s = serial();
    // The blue path lags ~10 ms; a packet after a gap waits up to 50 ms for its copy.
    let (reordered, recovered) = merge_two_lossy_paths("merge_delay = \"50ms\"\n");
    assert!(recovered > 2500, "{recovered}");
    assert_eq!(reordered, 0, "the playout buffer restores the order");
}

#[test]
fn a_merge_beside_several_workers_is_refused_with_what_to_do() {
    let t = Topology::chain(1);
    let path = t.write(
        "merge-workers.toml",
        "[relay]\nworkers = 2\n\
         [[flow]]\nname = \"st2022\"\nmerge = \"rtp\"\n\
         inputs = [ { interface = \"in0\", group = \"239.1.1.1\", port = 5001 },\n\
                    { interface = \"in1\", group = \"239.2.2.1\", port = 5001 } ]\n\
         outputs = [ { interface = \"out0\", group = \"239.9.9.1\", port = 5099 } ]\n",
    );
    let out = std::process::Command::new(common::MCR)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(":5:1: merge needs one worker, and [relay] workers = 2")
            || err.contains("merge needs one worker, and [relay] workers = 2"),
        "{err}"
    );
}

#[test]
fn a_reload_that_adds_a_merge_to_a_relay_with_two_workers_is_refused_and_the_old_table_kept() {
    let _s = serial();
    let mut t = Topology::chain(1);
    add_second_input(&t);
    let head = format!(
        "[relay]\nworkers = 2\nwatch = false\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n",
        t.dir.join("control.sock").display()
    );
    let plain = "[[flow]]\nname = \"a\"\ninput = { interface = \"in0\", group = \"239.1.1.1\", port = 5001 }\n\
                 outputs = [ { interface = \"out0\", group = \"239.9.9.1\", port = 5099 } ]\n";
    let relay = t.start_relay(&format!("{head}{plain}"));
    // Without `workers` the file is valid (a merge then runs one worker), but this relay
    // already runs two: only a restart can apply it.
    let merged = "[[flow]]\nname = \"a\"\nmerge = \"rtp\"\n\
                  inputs = [ { interface = \"in0\", group = \"239.1.1.1\", port = 5001 },\n\
                             { interface = \"in1\", group = \"239.2.2.1\", port = 5001 } ]\n\
                  outputs = [ { interface = \"out0\", group = \"239.9.9.1\", port = 5099 } ]\n";
    t.write_config_by_rename(&format!("{}{merged}", head.replace("workers = 2\n", "")));
    let out = std::process::Command::new(common::MCR)
        .args(["reload", "--socket"])
        .arg(t.dir.join("control.sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("merges its inputs, which needs one worker, and this relay runs 2"),
        "{err}"
    );
    let status = t.control_json("status");
    assert_eq!(
        (num(&status, "generation"), num(&status, "reloads_failed")),
        (1, 1),
        "{status}"
    );
    common::check_stream(&mut t, "up0", "239.1.1.1", "239.9.9.1", 1000);
    t.procs[relay].terminate();
}

#[test]
fn a_silent_path_is_reported_degraded_while_the_flow_forwards_and_stays_healthy() {
    let _s = serial();
    let mut t = Topology::chain(1);
    add_second_input(&t);
    let config = format!(
        "[relay]\nstats_interval = \"0s\"\nquerier = \"off\"\nidle_after = \"1s\"\n\
         control_socket = \"{}\"\n\
         [[flow]]\nname = \"st2022\"\nmerge = \"rtp\"\n\
         inputs = [ {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }},\n\
                    {{ interface = \"in1\", group = \"239.2.2.1\", port = 5001 }} ]\n\
         outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n",
        t.dir.join("control.sock").display()
    );
    let relay = t.start_relay(&config);
    // Only the red path carries the stream.
    let sink = t.start_sink(0, &["--group", "239.9.9.1", "--port", "5099", "--rtp"]);
    let gen = t.spawn_gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "30000",
        "--rate",
        "10000",
        "--rtp",
    ]);
    common::wait_until("the red path active and the blue one idle", || {
        let s = t.control_json("stats");
        let paths = &flow(&s, "st2022")["inputs"];
        paths[0]["state"] == "active" && paths[1]["state"] == "idle"
    });
    let out = std::process::Command::new(common::MCR)
        .args(["status", "--socket"])
        .arg(t.dir.join("control.sock"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the flow forwards: healthy\n{text}");
    assert!(
        text.contains("degraded:       flow st2022 path 239.2.2.1:5001 on in1: idle"),
        "{text}"
    );
    let status = t.control_json("status");
    assert_eq!(
        status["unhealthy"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
    assert_eq!(
        status["degraded"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert_eq!(num(&t.gen_report(gen), "sent"), 30_000);
    let report = t.sink_report(sink);
    assert_eq!(
        (num(&report, "received"), num(&report, "lost")),
        (30_000, 0),
        "{report}"
    );
    t.procs[relay].terminate();
}
