//! End to end: what an operator touches — the control socket (`mcr stats`, `status`,
//! `reload`), the Prometheus endpoint, and running as an unprivileged user.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{flow, num, serial, Topology, MCR};

fn flow_a() -> &'static str {
    "[[flow]]\nname = \"a\"\ninput = { interface = \"in0\", group = \"239.1.1.1\", port = 5001 }\noutputs = [ { interface = \"out0\", group = \"239.9.9.1\", port = 5099, ttl = 8 } ]\n"
}

fn header(t: &Topology, extra: &str) -> String {
    let sock = t.dir.join("control.sock");
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nidle_after = \"1h\"\ncontrol_socket = \"{}\"\n{extra}",
        sock.display()
    )
}

fn mcr(t: &Topology, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(MCR)
        .args(args)
        .arg("--socket")
        .arg(t.dir.join("control.sock"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stats_status_and_reload_over_the_control_socket() {
    let _s = serial();
    let mut t = Topology::chain(1);
    // No file watch: every reload below is the explicit one the test asserts on.
    let relay = t.start_relay(&format!("{}{}", header(&t, "watch = false\n"), flow_a()));
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.1", "--port", "5099", "--count", "5000"],
    );
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "5000",
        "--rate",
        "10000",
        "--size",
        "500",
    ]);
    t.sink_report(sink);

    let (ok, out, err) = mcr(&t, &["stats", "--json"]);
    assert!(ok, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    let a = flow(&stats, "a");
    assert_eq!(num(a, "packets"), 5000);
    assert_eq!(num(a, "bytes"), 5000 * 500);
    assert_eq!(num(&a["outputs"][0], "packets"), 5000);
    assert!(a["idle_seconds"].as_f64().is_some_and(|s| s < 60.0), "{a}");
    let (ok, table, _) = mcr(&t, &["stats"]);
    assert!(
        ok && table.contains("FLOW / OUTPUT") && table.contains("> out0 239.9.9.1:5099"),
        "{table}"
    );

    let (ok, out, err) = mcr(&t, &["status", "--json"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(num(&status, "generation"), 1);
    assert_eq!(num(&status["groups"], "in0"), 1);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let hash = status["config_hash"].as_str().unwrap().to_string();

    // A rejected reload names the file, line and column, and changes nothing.
    std::fs::write(
        t.config_path(),
        format!("{}{}[[flow]\n", header(&t, "watch = false\n"), flow_a()),
    )
    .unwrap();
    let (ok, _, err) = mcr(&t, &["reload"]);
    assert!(!ok);
    let path = t.config_path().display().to_string();
    assert!(
        err.contains(&format!("reload rejected: {path}:11:")),
        "{err}"
    );
    let (_, out, _) = mcr(&t, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(num(&status, "generation"), 1);
    assert_eq!(num(&status, "reloads_failed"), 1);
    assert_eq!(status["config_hash"], hash.as_str());
    // The same broken bytes again are the same rejection: answered, not counted twice.
    let (ok, _, err) = mcr(&t, &["reload"]);
    assert!(!ok && err.contains(&format!("{path}:11:")), "{err}");
    let (_, out, _) = mcr(&t, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(num(&status, "reloads_failed"), 1);

    let fixed = format!(
        "{}{}",
        header(&t, "watch = false\n"),
        flow_a().replace("239.9.9.1", "239.9.9.2")
    );
    std::fs::write(t.config_path(), fixed).unwrap();
    let (ok, out, err) = mcr(&t, &["reload"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("reloaded: generation 2: flows +0 -0 ~1"),
        "{out}"
    );
    let (ok, out, _) = mcr(&t, &["reload"]);
    assert!(ok && out.contains("unchanged"), "{out}");
    t.stop_relay(relay);
    let (ok, _, err) = mcr(&t, &["status"]);
    assert!(!ok && err.contains("is mcr running?"), "{err}");
}

/// `mcr status`'s exit code and stdout.
fn status_code(t: &Topology) -> (Option<i32>, String) {
    let out = Command::new(MCR)
        .args(["status", "--socket"])
        .arg(t.dir.join("control.sock"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits until `mcr status` exits with `code`; returns its output.
fn wait_status_code(t: &Topology, code: i32) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (got, out) = status_code(t);
        if got == Some(code) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mcr status never exited {code}; last {got:?}:\n{out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn flow_health_goes_idle_active_idle_and_mcr_status_exit_code_follows() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let config = format!(
        "{}{}",
        header(&t, "").replace("idle_after = \"1h\"", "idle_after = \"500ms\""),
        flow_a()
    );
    let relay = t.start_relay(&config);
    // No packet yet: idle, and mcr status says so with exit status 3.
    let out = wait_status_code(&t, 3);
    assert!(out.contains("not forwarding: flow a: idle"), "{out}");
    assert!(out.contains("flows:          1 idle"), "{out}");

    // 4 s of traffic: active (exit 0) while it flows.
    let gen = t.spawn_stream("239.1.1.1", 4000, 1000);
    let out = wait_status_code(&t, 0);
    assert!(out.contains("flows:          1 active"), "{out}");
    t.gen_report(gen);
    // Then idle again, and each change logged once.
    wait_status_code(&t, 3);
    t.wait_log(relay, "flow a: active -> idle", 1);
    assert_eq!(t.log_count(relay, "flow a: idle -> active"), 1);
    assert_eq!(t.log_count(relay, "flow a: active -> idle"), 1);
    t.stop_relay(relay);
}

/// Parses an OpenMetrics text exposition into sample name+labels → value, checking its shape.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker");
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            typed.insert(parts.next().unwrap().to_string());
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "info"].contains(&kind), "{line}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_total", "_info"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(typed.contains(family), "sample {name} without TYPE");
        if let Some(labels) = series.split_once('{').map(|(_, l)| l) {
            assert!(labels.ends_with('}'), "{line}");
        }
        samples.insert(
            series.to_string(),
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}")),
        );
    }
    samples
}

#[test]
fn prometheus_endpoint_exposes_flow_output_drop_and_reload_metrics() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let config = format!(
        "{}{}",
        header(&t, "metrics = \"127.0.0.1:9810\"\n"),
        flow_a()
    );
    let relay = t.start_relay(&config);
    assert!(t.procs[relay]
        .stderr()
        .contains("metrics on http://127.0.0.1:9810/metrics"));
    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.1", "--port", "5099", "--count", "3000"],
    );
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "3000",
        "--rate",
        "10000",
    ]);
    t.gen(&[
        "--group",
        "239.1.1.7",
        "--port",
        "5001",
        "--count",
        "10",
        "--rate",
        "1000",
    ]);
    t.sink_report(sink);
    let out = t
        .relay
        .exec(&["curl", "-sS", "--fail", "http://127.0.0.1:9810/metrics"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let m = parse_exposition(&text);
    let labels = "flow=\"a\",interface=\"out0\",group=\"239.9.9.1\",port=\"5099\"";
    assert_eq!(m["mcr_flow_packets_total{flow=\"a\"}"], 3000.0);
    assert_eq!(m["mcr_flow_bytes_total{flow=\"a\"}"], 3000.0 * 1024.0);
    assert_eq!(m[&format!("mcr_output_packets_total{{{labels}}}")], 3000.0);
    assert_eq!(
        m[&format!("mcr_output_drops_total{{{labels},reason=\"egress_full\"}}")],
        0.0
    );
    assert_eq!(m["mcr_drops_total{reason=\"no_match\"}"], 10.0);
    assert_eq!(m["mcr_flow_up{flow=\"a\"}"], 1.0);
    assert_eq!(m["mcr_flow_state{flow=\"a\",state=\"active\"}"], 1.0);
    assert_eq!(m["mcr_flow_state{flow=\"a\",state=\"idle\"}"], 0.0);
    assert_eq!(m[&format!("mcr_output_up{{{labels}}}")], 1.0);
    assert_eq!(m["mcr_reload_generation"], 1.0);
    assert_eq!(m["mcr_reloads_total{result=\"failed\"}"], 0.0);
    assert_eq!(m["mcr_joined_groups{interface=\"in0\"}"], 1.0);
    assert!(m["mcr_flow_last_packet_age_seconds{flow=\"a\"}"] < 60.0);
    let (_, status, _) = mcr(&t, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let info = format!(
        "mcr_build_info{{version=\"{}\",config_hash=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        status["config_hash"].as_str().unwrap()
    );
    assert_eq!(m[&info], 1.0, "{text}");
    let missing = t
        .relay
        .command("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:9810/",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    t.stop_relay(relay);
}

#[test]
fn dropping_to_an_unprivileged_user_keeps_forwarding_and_live_interface_adds_working() {
    let _s = serial();
    let mut t = Topology::chain(1);
    common::add_second_input(&t);
    // The relay writes its stats file as `nobody`.
    Command::new("chmod")
        .arg("0777")
        .arg(&t.dir)
        .status()
        .unwrap();
    let base = header(&t, "user = \"nobody\"\n");
    let relay = t.start_relay(&format!("{base}{}", flow_a()));
    assert!(t.procs[relay].stderr().contains("running as user nobody"));
    let pid = t.procs[relay].child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    let uids: Vec<u32> = field("Uid:")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert!(uids.iter().all(|&u| u != 0), "still root: {uids:?}");
    // CAP_NET_RAW (13) effective; CAP_NET_ADMIN (12) permitted only, raised around the
    // ingress drop's nftables transactions.
    assert_eq!(field("CapEff:"), "0000000000002000");
    assert_eq!(field("CapPrm:"), "0000000000003000");
    assert_eq!(field("CapBnd:"), "0000000000003000");
    // On every thread: the bounding set is per thread, and all of them were started as root.
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("status")).unwrap())
        .collect();
    assert!(
        tasks.len() >= 4,
        "main, signals, links, workers, control: {}",
        tasks.len()
    );
    for task in &tasks {
        let cap_bnd = task.lines().find_map(|l| l.strip_prefix("CapBnd:"));
        assert_eq!(cap_bnd.map(str::trim), Some("0000000000003000"), "{task}");
    }
    // The user's supplementary groups, as `id -G` lists them.
    let id = Command::new("id").args(["-G", "nobody"]).output().unwrap();
    let want: Vec<String> = String::from_utf8_lossy(&id.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut groups: Vec<String> = field("Groups:")
        .split_whitespace()
        .map(String::from)
        .collect();
    groups.sort();
    let mut want = want;
    want.sort();
    assert_eq!(groups, want);

    let sink = t.start_sink(
        0,
        &["--group", "239.9.9.1", "--port", "5099", "--count", "2000"],
    );
    t.gen(&[
        "--group",
        "239.1.1.1",
        "--port",
        "5001",
        "--count",
        "2000",
        "--rate",
        "10000",
    ]);
    assert_eq!(num(&t.sink_report(sink), "received"), 2000);

    // A reload that needs a new packet socket on a new interface still works.
    t.write_config_by_rename(&format!("{base}{}{}", flow_a(), common::FLOW_C_ON_IN1));
    t.wait_log(relay, "reloaded: generation 2", 1);
    common::check_flow_c(&mut t);
    // The ingress drop followed, as user nobody: CAP_NET_ADMIN is raised when needed.
    let status = t.control_json("status");
    let drop = status["ingress_drop"].as_str().unwrap();
    assert!(drop.starts_with("on: 2 keys on 2 interfaces"), "{drop}");
    let stats = t.stop_relay(relay);
    assert_eq!(num(flow(&stats, "c"), "packets"), 2000);
}
