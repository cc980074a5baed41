//! End to end: an active/standby pair of relays under real keepalived (the Debian package),
//! with the packaged hook script (`packaging/keepalived/mcr-keepalived`).
//!
//! ```text
//!  gen ── brin ─┬─ in0 relay A out0 ─┬─ brout ── sink
//!               └─ in0 relay B out0 ─┘
//! ```
//!
//! Both relays run the same config and take in every datagram; VRRP on the output segment
//! elects the one that sends. A counted stream at 10k pps arrives exactly once in steady
//! state; when the active relay's keepalived is killed (SIGKILL: no notify script runs),
//! the peer takes over and the old master's renewal loop turns it standby (its lease running
//! out is the backstop); when the
//! active relay's mcr is killed, its health check fails and the peer takes over. Each
//! failover's gap and overlap are measured by the sink (lost, duplicates) and printed.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{flow, num, serial, wait_until, Netns, Proc, MCR};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/keepalived/mcr-keepalived"
);

struct Pair {
    // Field order is drop order: processes before namespaces.
    procs: Vec<Proc>,
    gen: Netns,
    relays: [Netns; 2],
    sink: Netns,
    _sw: Netns,
    dir: PathBuf,
}

/// Adds port `port` of bridge `bridge` in `sw`, its peer `peer` in `ns` with `addr`.
fn port(sw: &Netns, bridge: &str, port: &str, ns: &Netns, peer: &str, addr: &str) {
    sw.ip(&[
        "link", "add", port, "type", "veth", "peer", "name", peer, "netns", &ns.name,
    ]);
    sw.ip(&["link", "set", port, "master", bridge]);
    sw.ip(&["link", "set", port, "up"]);
    ns.ip(&["addr", "add", addr, "dev", peer]);
    ns.ip(&["link", "set", peer, "up"]);
}

impl Pair {
    fn new() -> Pair {
        let sw = Netns::new("sw");
        for bridge in ["brin", "brout"] {
            sw.ip(&[
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ]);
            sw.ip(&["link", "set", bridge, "up"]);
        }
        let gen = Netns::new("gen");
        let relays = [Netns::new("ra"), Netns::new("rb")];
        let sink = Netns::new("sink");
        port(&sw, "brin", "g", &gen, "up0", "10.1.0.1/24");
        for (i, r) in relays.iter().enumerate() {
            port(
                &sw,
                "brin",
                &format!("i{i}"),
                r,
                "in0",
                &format!("10.1.0.{}/24", 2 + i),
            );
            port(
                &sw,
                "brout",
                &format!("o{i}"),
                r,
                "out0",
                &format!("10.2.0.{}/24", 1 + 2 * i),
            );
        }
        port(&sw, "brout", "s", &sink, "down0", "10.2.0.2/24");
        let dir = std::env::temp_dir().join(format!(
            "mcrt-pair-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Pair {
            procs: Vec::new(),
            gen,
            relays,
            sink,
            _sw: sw,
            dir,
        }
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("r{i}.sock"))
    }

    fn start_relay(&mut self, i: usize) -> usize {
        let config = format!(
            "[relay]\nworkers = 1\nstats_interval = \"0s\"\nquerier = \"off\"\nrole = \"standby\"\n\
             control_socket = \"{}\"\n\
             [[flow]]\nname = \"a\"\nidle_after = \"1h\"\n\
             input = {{ interface = \"in0\", group = \"239.1.1.1\", port = 5001 }}\n\
             outputs = [ {{ interface = \"out0\", group = \"239.9.9.1\", port = 5099 }} ]\n",
            self.socket(i).display()
        );
        let path = self.dir.join(format!("r{i}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut cmd = self.relays[i].command(MCR);
        cmd.args(["run", "-c"]).arg(&path);
        cmd.env("RUST_LOG", "info");
        let mut p = Proc::spawn(cmd, &self.dir, &format!("mcr{i}-{}", self.procs.len()));
        p.wait_for("relay ready", Duration::from_secs(20), |p| {
            p.stderr().contains("ready:")
        });
        self.procs.push(p);
        self.procs.len() - 1
    }

    /// keepalived for relay `i` (priority 150 for A, 100 for B), with the packaged hook
    /// script pointed at this relay's socket through a wrapper.
    fn start_keepalived(&mut self, i: usize) -> usize {
        let wrapper = self.dir.join(format!("hook{i}.sh"));
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nMCR={MCR} SOCKET={} STATE_DIR={} LEASE=300ms RENEW=0.1 exec {SCRIPT} \"$@\"\n",
                self.socket(i).display(),
                self.dir.join(format!("state{i}")).display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(self.dir.join(format!("state{i}"))).unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&wrapper)
            .status()
            .unwrap();
        let conf = format!(
            "global_defs {{\n  router_id mcr{i}\n  vrrp_version 3\n  script_user root\n}}\n\
             vrrp_script mcr_health {{\n  script \"{w} check\"\n  interval 1\n  timeout 1\n  fall 1\n  rise 1\n}}\n\
             vrrp_track_file mcr_fault {{\n  file \"{fault}\"\n  weight 0\n  init_file 0 overwrite\n}}\n\
             vrrp_instance mcr {{\n  state BACKUP\n  interface out0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 0.1\n  nopreempt\n  virtual_ipaddress {{\n    10.2.0.100/24\n  }}\n  track_script {{\n    mcr_health\n  }}\n  track_file {{\n    mcr_fault\n  }}\n  notify \"{w} notify\"\n}}\n",
            w = wrapper.display(),
            prio = if i == 0 { 150 } else { 100 },
            fault = self.dir.join(format!("state{i}/keepalived-fault")).display(),
        );
        let path = self.dir.join(format!("keepalived{i}.conf"));
        std::fs::write(&path, conf).unwrap();
        let mut cmd = self.relays[i].command("keepalived");
        cmd.args(["-n", "-l", "-D", "-P", "-f"]).arg(&path);
        for (flag, name) in [("-p", "ka"), ("-r", "vrrp"), ("-c", "chk")] {
            cmd.arg(flag).arg(self.dir.join(format!("{name}{i}.pid")));
        }
        let p = Proc::spawn(
            cmd,
            &self.dir,
            &format!("keepalived{i}-{}", self.procs.len()),
        );
        self.procs.push(p);
        self.procs.len() - 1
    }

    fn role(&self, i: usize) -> String {
        let out = Command::new(MCR)
            .args(["status", "--json", "--socket"])
            .arg(self.socket(i))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["role"].as_str().unwrap_or("down").to_string()
    }

    fn wait_roles(&self, want: [&str; 2]) {
        wait_until(&format!("roles {want:?}"), || {
            [self.role(0), self.role(1)] == want.map(str::to_string)
        });
    }

    /// Waits until exactly one relay is active; returns its index.
    fn wait_one_active(&self) -> usize {
        let mut active = 0;
        wait_until("one relay active, the other standby", || {
            match [self.role(0).as_str(), self.role(1).as_str()] {
                ["active", "standby"] => active = 0,
                ["standby", "active"] => active = 1,
                _ => return false,
            }
            true
        });
        active
    }

    fn gen(&self, count: u64, rate: u64, base: u64) -> Proc {
        let mut cmd = self.gen.command(MCR);
        cmd.args([
            "gen",
            "--interface",
            "up0",
            "--json",
            "--group",
            "239.1.1.1",
        ])
        .args(["--port", "5001", "--count", &count.to_string()])
        .args([
            "--rate",
            &rate.to_string(),
            "--stream-base",
            &base.to_string(),
        ]);
        Proc::spawn(cmd, &self.dir, &format!("gen-{base}"))
    }

    /// A sink for one phase: its report once 2 s passed without a datagram.
    fn sink(&self, tag: &str) -> Proc {
        let args = ["--group", "239.9.9.1", "--port", "5099"];
        common::spawn_sink(&self.sink, &self.dir, &format!("sink-{tag}"), "2s", &args)
    }

    fn pid_of(&self, name: &str, i: usize) -> i32 {
        let pid = std::fs::read_to_string(self.dir.join(format!("{name}{i}.pid"))).unwrap();
        pid.trim().parse().unwrap()
    }
}

fn report(mut sink: Proc) -> serde_json::Value {
    let out = sink.finish(Duration::from_secs(60));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("sink {out:?}: {e}"))
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn stream(r: &serde_json::Value, base: u64) -> serde_json::Value {
    r["per_stream"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == base)
        .cloned()
        .unwrap_or_else(|| panic!("stream {base} in {r}"))
}

#[test]
fn a_keepalived_pair_delivers_once_and_fails_over_when_either_process_dies() {
    let _s = serial();
    let mut p = Pair::new();
    let mcr = [p.start_relay(0), p.start_relay(1)];
    // One packet each so both flows are active (healthy) before VRRP starts.
    let mut warm = p.gen(10, 1000, 900);
    warm.finish(Duration::from_secs(10));
    wait_until("both relays took the warm-up in", || {
        (0..2).all(|i| {
            let out = Command::new(MCR)
                .args(["stats", "--json", "--socket"])
                .arg(p.socket(i))
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v.get("flows").is_some() && num(flow(&v, "a"), "packets") >= 10
        })
    });
    let ka = [p.start_keepalived(0), p.start_keepalived(1)];
    // Both start as backups with nopreempt: whichever times out first is elected.
    let (a, b) = match p.wait_one_active() {
        0 => (0, 1),
        _ => (1, 0),
    };
    let roles = |active: usize| {
        let mut r = ["standby"; 2];
        r[active] = "active";
        r
    };

    // Steady state: exactly once, in order.
    let sink = p.sink("steady");
    let mut g = p.gen(20_000, 10_000, 0);
    g.finish(Duration::from_secs(30));
    let r = report(sink);
    let s = stream(&r, 0);
    assert_eq!(
        (num(&s, "received"), num(&s, "lost"), num(&s, "duplicates")),
        (20_000, 0, 0),
        "{r}"
    );
    assert_eq!(num(&r, "reordered"), 0, "{r}");

    // The active relay's keepalived is killed (both its processes): no notify script runs.
    let sink = p.sink("keepalived");
    let mut g = p.gen(30_000, 10_000, 100);
    std::thread::sleep(Duration::from_millis(1000));
    let killed = Instant::now();
    kill(p.pid_of("vrrp", a));
    kill(p.pid_of("ka", a));
    p.wait_roles(roles(b));
    let took_over = killed.elapsed();
    g.finish(Duration::from_secs(30));
    let r = report(sink);
    let s = stream(&r, 100);
    let (lost, dups) = (num(&s, "lost"), num(&s, "duplicates"));
    println!(
        "keepalived killed: roles swapped in {took_over:?}; {lost} lost ({:.0} ms of traffic), {dups} duplicates",
        lost as f64 / 10.0
    );
    // `received` counts every copy, duplicates included.
    assert_eq!(num(&s, "received") - dups + lost, 30_000, "{r}");
    assert!(lost < 5_000, "under 0.5 s of traffic lost: {r}");
    // The old master's renewal loop sees keepalived gone within 0.1 s and turns it standby
    // (its 300 ms lease is the backstop); the peer takes over ~0.3 s after the last advert.
    // A scheduler stall on this shared machine may still let them overlap for a moment,
    // never for as long as the lease.
    assert!(dups < 3_000, "{r}");
    p.procs[ka[a]].terminate_quietly();

    // A's keepalived comes back as backup (nopreempt); then B's mcr is killed.
    let ka_again = p.start_keepalived(a);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!([p.role(0), p.role(1)], roles(b));
    let sink = p.sink("mcr");
    let mut g = p.gen(50_000, 10_000, 200);
    std::thread::sleep(Duration::from_millis(1000));
    let killed = Instant::now();
    kill(p.procs[mcr[b]].child.id() as i32);
    wait_until("A active again", || p.role(a) == "active");
    let took_over = killed.elapsed();
    g.finish(Duration::from_secs(30));
    let r = report(sink);
    let s = stream(&r, 200);
    let (lost, dups) = (num(&s, "lost"), num(&s, "duplicates"));
    println!(
        "mcr killed: A active after {took_over:?}; {lost} lost ({:.0} ms of traffic), {dups} duplicates",
        lost as f64 / 10.0
    );
    assert_eq!(num(&s, "received") + lost, 50_000, "{r}");
    assert!(lost < 5_000, "under 0.5 s of traffic lost: {r}");
    assert_eq!(dups, 0, "a dead relay sends nothing: {r}");

    // Failback, the operator's way (nopreempt): B's mcr is back (as standby, and healthy,
    // so its keepalived is BACKUP again); A's keepalived is stopped (SIGTERM: it runs the
    // STOP notify — standby — and tells B with a priority-0 advert to take over at once).
    p.start_relay(b);
    // A flow is healthy once it has seen a datagram.
    p.gen(10, 1000, 901).finish(Duration::from_secs(10));
    wait_until("B's keepalived healthy again", || {
        let fault = p.dir.join(format!("state{b}/keepalived-fault"));
        std::fs::read_to_string(fault).is_ok_and(|f| f.trim() == "0")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!([p.role(0), p.role(1)], roles(a));
    let sink = p.sink("failback");
    let mut g = p.gen(30_000, 10_000, 300);
    std::thread::sleep(Duration::from_millis(1000));
    let stopped = Instant::now();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid_of("ka", a)),
        nix::sys::signal::Signal::SIGTERM,
    );
    p.wait_roles(roles(b));
    let took_over = stopped.elapsed();
    g.finish(Duration::from_secs(30));
    let r = report(sink);
    let s = stream(&r, 300);
    let (lost, dups) = (num(&s, "lost"), num(&s, "duplicates"));
    println!(
        "failback (A's keepalived stopped): B active after {took_over:?}; {lost} lost ({:.0} ms of traffic), {dups} duplicates",
        lost as f64 / 10.0
    );
    assert_eq!(num(&s, "received") + lost, 30_000, "{r}");
    assert!(lost < 5_000, "under 0.5 s of traffic lost: {r}");
    assert_eq!(dups, 0, "failback does not duplicate: {r}");
    let _ = ka_again; // stopped with the other processes when `p` drops
}
