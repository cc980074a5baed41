//! End to end: the ingress drop keeps relayed datagrams out of the relay host's IP stack.
//! Read back with the real `nft` (over netlink): the table holds exactly the relayed flows,
//! follows reloads and interfaces, and is gone when the relay is; the relay host's UDP stack
//! sees none of the relayed datagrams while every one is relayed; a flow with
//! `local_delivery = true` still reaches a local socket; and without `CAP_NET_ADMIN` the
//! relay says so once and relays as before.

mod common;

use std::time::Duration;

use common::{
    add_second_input, assert_clean, check_stream, serial, Netns, Topology, FLOW_C_ON_IN1,
};
use nix::sys::signal::Signal;

fn header(t: &Topology) -> String {
    format!(
        "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\ncontrol_socket = \"{}\"\n",
        t.dir.join("control.sock").display()
    )
}

/// A flow from `group`:5001 on `in0` (from `source`, if given) to `out`:5099 on `out0`.
fn flow(name: &str, group: &str, source: Option<&str>, out: &str, extra: &str) -> String {
    let source = source.map_or(String::new(), |s| format!(", source = \"{s}\""));
    format!(
        "[[flow]]\nname = \"{name}\"\n{extra}input = {{ interface = \"in0\", group = \"{group}\", port = 5001{source} }}\noutputs = [ {{ interface = \"out0\", group = \"{out}\", port = 5099 }} ]\n"
    )
}

/// The relay's nftables table as `nft -j` reads it back over netlink; `None` if absent.
fn drop_table(ns: &Netns, pid: u32) -> Option<serde_json::Value> {
    let out = ns
        .command("nft")
        .args(["-j", "list", "table", "netdev", &format!("mcr_{pid}")])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Every table nftables has in the namespace, as "family name".
fn tables(ns: &Netns) -> Vec<String> {
    let out = ns.exec(&["nft", "-j", "list", "tables"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| {
            let t = o.get("table")?;
            Some(format!("{} {}", t["family"].as_str()?, t["name"].as_str()?))
        })
        .collect()
}

fn objects<'a>(
    table: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(move |o| o.get(kind))
}

/// A set's elements as "a . b . c", sorted.
fn elements(table: &serde_json::Value, set: &str) -> Vec<String> {
    let Some(s) = objects(table, "set").find(|s| s["name"] == set) else {
        panic!("no set {set} in {table}");
    };
    let mut out: Vec<String> = s
        .get("elem")
        .and_then(|e| e.as_array())
        .map(|elems| {
            elems
                .iter()
                .map(|e| {
                    e["concat"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f.to_string().trim_matches('"').to_string())
                        .collect::<Vec<_>>()
                        .join(" . ")
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Chains as (name, device), sorted; from `nft list`'s text (its JSON omits the device).
fn chains(ns: &Netns, pid: u32) -> Vec<(String, String)> {
    let out = ns
        .command("nft")
        .args(["list", "table", "netdev", &format!("mcr_{pid}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut chains = Vec::new();
    let mut name = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            name = Some(rest.trim_end_matches(" {").to_string());
        } else if let (Some(n), Some(at)) = (&name, line.find("device \"")) {
            let dev = line[at + 8..].split('"').next().unwrap();
            chains.push((n.clone(), dev.to_string()));
            name = None;
        }
    }
    chains.sort();
    chains
}

/// Packets counted by the drop rule that looks up `set`.
fn dropped(table: &serde_json::Value, set: &str) -> u64 {
    let needle = format!("@{set}");
    let rule = objects(table, "rule")
        .find(|r| r["expr"].to_string().contains(&needle))
        .unwrap_or_else(|| panic!("no rule for {set} in {table}"));
    let exprs = rule["expr"].as_array().unwrap();
    assert!(
        exprs.last().unwrap().get("drop").is_some(),
        "rule ends in drop: {rule}"
    );
    exprs
        .iter()
        .find_map(|e| e.get("counter"))
        .and_then(|c| c["packets"].as_u64())
        .unwrap()
}

/// `Udp: IgnoredMulti` of the namespace: multicast datagrams the UDP stack received for a
/// group it had joined but had no socket for — what every relayed datagram costs without
/// the drop.
fn udp_ignored_multi(ns: &Netns) -> u64 {
    let snmp = ns.read("/proc/net/snmp");
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "IgnoredMulti")
        .expect("IgnoredMulti in /proc/net/snmp");
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

fn relay_pid(t: &Topology, relay: usize) -> u32 {
    t.procs[relay].child.id()
}

fn flow_a() -> String {
    flow("a", "239.1.1.1", None, "239.9.9.1", "")
}

/// Flow c opts out of the drop.
fn flow_c_local() -> String {
    flow(
        "c",
        "239.1.1.3",
        None,
        "239.9.9.3",
        "local_delivery = true\n",
    )
}

/// Starts a relay with `flows` and waits for its table; returns its index and pid.
fn start(t: &mut Topology, flows: &[String]) -> (usize, u32) {
    let relay = t.start_relay(&format!("{}{}", header(t), flows.concat()));
    let pid = relay_pid(t, relay);
    common::wait_until("the drop table", || drop_table(&t.relay, pid).is_some());
    (relay, pid)
}

#[test]
fn the_drop_holds_exactly_the_relayed_flows_follows_a_reload_and_dies_with_the_relay() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let flows = [
        flow_a(),
        flow("b", "232.1.1.2", Some("10.1.0.1"), "239.9.9.2", ""),
        flow_c_local(),
    ];
    let (relay, pid) = start(&mut t, &flows);
    let table = drop_table(&t.relay, pid).unwrap();
    assert_eq!(chains(&t.relay, pid), [("in_in0".into(), "in0".into())]);
    assert_eq!(elements(&table, "asm_in0"), ["239.1.1.1 . 5001"]);
    assert_eq!(elements(&table, "ssm_in0"), ["10.1.0.1 . 232.1.1.2 . 5001"]);
    let status = t.control_json("status");
    let drop = status["ingress_drop"].as_str().unwrap();
    assert!(drop.starts_with("on: 2 keys on 1 interfaces"), "{drop}");

    // A firewall reload (`nft flush ruleset`, as nftables.service does) leaves it alone, and
    // no one else may delete it.
    t.relay.exec(&["nft", "flush", "ruleset"]);
    let denied = t
        .relay
        .command("nft")
        .args(["delete", "table", "netdev", &format!("mcr_{pid}")])
        .output()
        .unwrap();
    assert!(!denied.status.success());
    assert_eq!(tables(&t.relay), [format!("netdev mcr_{pid}")]);

    // Every datagram of flow a is relayed, and the relay host's UDP stack sees none of them.
    let ignored = udp_ignored_multi(&t.relay);
    check_stream(&mut t, "up0", "239.1.1.1", "239.9.9.1", 1000);
    assert_eq!(udp_ignored_multi(&t.relay), ignored);
    let table = drop_table(&t.relay, pid).unwrap();
    assert_eq!(dropped(&table, "asm_in0"), 1000);
    assert_eq!(dropped(&table, "ssm_in0"), 0);
    // Flow c opted out: relayed too, and its datagrams still reach the stack.
    check_stream(&mut t, "up0", "239.1.1.3", "239.9.9.3", 1000);
    assert_eq!(udp_ignored_multi(&t.relay), ignored + 1000);
    assert_eq!(
        dropped(&drop_table(&t.relay, pid).unwrap(), "asm_in0"),
        1000
    );

    // A reload that removes a and adds d: the drop follows, in the same step.
    let flows = [
        flow("b", "232.1.1.2", Some("10.1.0.1"), "239.9.9.2", ""),
        flow_c_local(),
        flow("d", "239.1.1.4", None, "239.9.9.4", ""),
    ];
    t.write_config_by_rename(&format!("{}{}", header(&t), flows.concat()));
    t.wait_log(relay, "reloaded: generation 2", 1);
    let table = drop_table(&t.relay, pid).unwrap();
    assert_eq!(elements(&table, "asm_in0"), ["239.1.1.4 . 5001"]);
    assert_eq!(elements(&table, "ssm_in0"), ["10.1.0.1 . 232.1.1.2 . 5001"]);
    check_stream(&mut t, "up0", "239.1.1.4", "239.9.9.4", 1000);
    assert_eq!(udp_ignored_multi(&t.relay), ignored + 1000);

    // SIGKILL: no chance to clean up, and still nothing is left behind.
    t.signal_relay(relay, Signal::SIGKILL);
    common::wait_until("the table gone with the relay", || {
        drop_table(&t.relay, pid).is_none()
    });
    assert!(tables(&t.relay).is_empty(), "{:?}", tables(&t.relay));
    t.procs[relay].terminate_quietly();

    // A clean stop removes it too.
    let (relay, _) = start(&mut t, &flows);
    t.stop_relay(relay);
    assert!(tables(&t.relay).is_empty(), "{:?}", tables(&t.relay));
}

#[test]
fn a_flow_with_local_delivery_reaches_a_local_socket_while_it_is_relayed() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let flows = [flow_a(), flow_c_local()];
    let (relay, pid) = start(&mut t, &flows);
    // A local application on the relay host, listening to flow c's group and port.
    let ready = t.dir.join("local-ready");
    let mut cmd = t.relay.command(common::MCR);
    cmd.args([
        "sink",
        "--interface",
        "in0",
        "--json",
        "--idle-timeout",
        "3s",
        "--group",
        "239.1.1.3",
        "--port",
        "5001",
        "--count",
        "1000",
        "--ready-file",
    ])
    .arg(&ready);
    let mut local = common::Proc::spawn(cmd, &t.dir, "local-sink");
    local.wait_for("local sink ready", Duration::from_secs(20), |_| {
        ready.exists()
    });
    check_stream(&mut t, "up0", "239.1.1.3", "239.9.9.3", 1000);
    let out = local.finish(Duration::from_secs(60));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_clean(&report, 1000);
    let table = drop_table(&t.relay, pid).unwrap();
    assert_eq!(elements(&table, "asm_in0"), ["239.1.1.1 . 5001"]);
    assert_eq!(dropped(&table, "asm_in0"), 0);
    t.stop_relay(relay);
}

#[test]
fn the_drop_follows_an_input_interface_that_goes_and_comes_back() {
    let _s = serial();
    let mut t = Topology::chain(1);
    add_second_input(&t);
    let config = format!(
        "{}{}{FLOW_C_ON_IN1}",
        header(&t),
        flow("a", "239.1.1.1", None, "239.9.9.1", "")
    );
    let relay = t.start_relay(&config);
    let pid = relay_pid(&t, relay);
    common::wait_until("the drop table", || drop_table(&t.relay, pid).is_some());
    let both = [
        ("in_in0".to_string(), "in0".to_string()),
        ("in_in1".to_string(), "in1".to_string()),
    ];
    assert_eq!(chains(&t.relay, pid), both);

    t.relay.ip(&["link", "del", "in1"]);
    common::wait_until("in1's chain gone", || chains(&t.relay, pid) == both[..1]);
    add_second_input(&t);
    common::wait_until("in1's chain back", || chains(&t.relay, pid) == both);
    // The new chain is bound to the new in1: it drops what the relay relays.
    let ignored = udp_ignored_multi(&t.relay);
    check_stream(&mut t, "up1", "239.1.1.3", "239.9.9.3", 1000);
    assert_eq!(
        dropped(&drop_table(&t.relay, pid).unwrap(), "asm_in1"),
        1000
    );
    assert_eq!(udp_ignored_multi(&t.relay), ignored);
    t.stop_relay(relay);
}

#[test]
fn without_cap_net_admin_the_relay_says_so_once_and_relays_as_before() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let config = format!(
        "{}{}",
        header(&t),
        flow("a", "239.1.1.1", None, "239.9.9.1", "")
    );
    let path = t.write("mcr.toml", &config);
    let relay = t.start_relay_via(&["setpriv", "--bounding-set", "-net_admin"], &path, &[]);
    let ignored = udp_ignored_multi(&t.relay);
    check_stream(&mut t, "up0", "239.1.1.1", "239.9.9.1", 1000);
    // As before the drop: relayed, and the stack saw each datagram too.
    assert_eq!(udp_ignored_multi(&t.relay), ignored + 1000);
    let status = t.control_json("status");
    let drop = status["ingress_drop"].as_str().unwrap();
    assert!(
        drop.starts_with("off: ") && drop.contains("CAP_NET_ADMIN"),
        "{drop}"
    );
    assert!(tables(&t.relay).is_empty());
    // A reload with a new flow neither retries nor says it again.
    let config = format!("{config}{}", flow("d", "239.1.1.4", None, "239.9.9.4", ""));
    t.write_config_by_rename(&config);
    t.wait_log(relay, "reloaded: generation 2", 1);
    check_stream(&mut t, "up0", "239.1.1.4", "239.9.9.4", 1000);
    assert_eq!(t.log_count(relay, "no ingress drop"), 1);
    t.stop_relay(relay);
}
