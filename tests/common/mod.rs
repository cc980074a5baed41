//! Namespace topologies for end-to-end tests, and the processes that run in them.
//!
//! Every test builds its own namespaces with names unique to the process and the test, and
//! everything is torn down in `Drop` — processes first (by PID), then namespaces — so a failed
//! assertion leaves nothing behind. Tests that move traffic take [`serial`] so that two of them
//! never compete for the machine's two cores (which would make exact counts flaky).
//!
//! Layout of [`Topology::chain`]:
//! ```text
//!  gen ns            relay ns                    sink ns k
//!  up0 10.1.0.1 ── in0 10.1.0.2
//!                    outK 10.2.K.1 ─────────── down0 10.2.K.2
//! ```
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const MCR: &str = env!("CARGO_BIN_EXE_mcr");

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Serializes traffic tests within this test binary.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn unique(tag: &str) -> String {
    format!(
        "mcrt-{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // Quiet namespaces: no IPv6 chatter (MLD, router solicitations) on the test links.
        ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    /// Turns IPv6 back on for links created from now on, without duplicate address detection
    /// (addresses usable at once) or router solicitations.
    pub fn enable_ipv6(&self) {
        for key in [
            "all.disable_ipv6=0",
            "default.disable_ipv6=0",
            "all.accept_dad=0",
            "default.accept_dad=0",
            "default.router_solicitations=0",
        ] {
            self.exec(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{key}")]);
        }
    }

    pub fn ip(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn read(&self, path: &str) -> String {
        String::from_utf8_lossy(&self.exec(&["cat", path]).stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Connects `a:a_if` to `b:b_if` with a veth pair, addresses them and brings both ends up.
pub fn link(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// `mcr WHAT --json` (stats or status) over the control socket at `socket`; `status` may
/// exit 3 (something is not forwarding) and still answers.
pub fn control_json_at(socket: &Path, what: &str) -> serde_json::Value {
    let out = Command::new(MCR)
        .args([what, "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "mcr {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `cond` every 20 ms until it holds; fails the test after 15 s, naming `what`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Adds a port to bridge `br0` in `sw` for each (port, peer, namespace, address): a veth
/// pair whose peer end moves to the namespace, addressed and up.
pub fn bridge_ports(sw: &Netns, ports: &[(&str, &str, &Netns, &str)]) {
    for &(port, peer, ns, addr) in ports {
        sw.ip(&[
            "link", "add", port, "type", "veth", "peer", "name", peer, "netns", &ns.name,
        ]);
        sw.ip(&["link", "set", port, "master", "br0"]);
        sw.ip(&["link", "set", port, "up"]);
        ns.ip(&["addr", "add", addr, "dev", peer]);
        ns.ip(&["link", "set", peer, "up"]);
    }
}

/// Starts `mcr sink` on `down0` in `ns` (JSON report, ending after `idle` without a
/// datagram, or as `args` say) and waits until it has joined.
pub fn spawn_sink(ns: &Netns, dir: &Path, tag: &str, idle: &str, args: &[&str]) -> Proc {
    let ready = dir.join(unique("ready"));
    let mut cmd = ns.command(MCR);
    cmd.args([
        "sink",
        "--interface",
        "down0",
        "--json",
        "--idle-timeout",
        idle,
    ])
    .args(args)
    .arg("--ready-file")
    .arg(&ready);
    let mut p = Proc::spawn(cmd, dir, tag);
    p.wait_for("sink ready", Duration::from_secs(20), |_| ready.exists());
    p
}

/// The ingress-drop table of the relay with `pid`, as `nft list table` prints it.
pub fn drop_table_text(ns: &Netns, pid: u32) -> String {
    let table = format!("mcr_{pid}");
    let out = ns
        .command("nft")
        .args(["list", "table", "netdev", &table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A process started by a test, killed (by PID) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, dir: &Path, tag: &str) -> Proc {
        let stdout = dir.join(format!("{tag}.out"));
        let stderr = dir.join(format!("{tag}.err"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn");
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits until `cond` holds, failing if the process exits first or time runs out.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut cond: impl FnMut(&Proc) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{what}: process exited ({status}) first; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{what}: timed out; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a normal exit and returns stdout.
    pub fn finish(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "exit {status}; stderr:\n{}",
                    self.stderr()
                );
                return self.stdout();
            }
            assert!(
                Instant::now() < deadline,
                "did not exit in time; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the process to end, whatever its exit status.
    pub fn terminate_quietly(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.finish(Duration::from_secs(20))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// gen → relay → sinks, with a scratch directory for configs and logs.
pub struct Topology {
    // Field order is drop order: processes before namespaces.
    pub procs: Vec<Proc>,
    pub gen: Netns,
    pub relay: Netns,
    pub sinks: Vec<Netns>,
    pub dir: PathBuf,
}

impl Topology {
    /// The chain with `sinks` sink namespaces, each on its own relay output `out{k}`.
    pub fn chain(sinks: usize) -> Topology {
        Topology::build(sinks, false)
    }

    /// [`Topology::chain`] with IPv6 on every link besides IPv4: gen `2001:db8:1::1`, relay
    /// `2001:db8:1::2` on `in0`, relay `2001:db8:2:k::1` on `out{k}`, sink `2001:db8:2:k::2`.
    pub fn chain_v6(sinks: usize) -> Topology {
        Topology::build(sinks, true)
    }

    fn build(sinks: usize, v6: bool) -> Topology {
        let ns = |tag: &str| {
            let ns = Netns::new(tag);
            if v6 {
                ns.enable_ipv6();
            }
            ns
        };
        let gen = ns("gen");
        let relay = ns("relay");
        link(&gen, "up0", "10.1.0.1/24", &relay, "in0", "10.1.0.2/24");
        if v6 {
            gen.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "up0"]);
            relay.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "in0"]);
        }
        let sinks: Vec<Netns> = (0..sinks)
            .map(|k| {
                let sink = ns(&format!("sink{k}"));
                let out = format!("out{k}");
                link(
                    &relay,
                    &out,
                    &format!("10.2.{k}.1/24"),
                    &sink,
                    "down0",
                    &format!("10.2.{k}.2/24"),
                );
                if v6 {
                    relay.ip(&["addr", "add", &format!("2001:db8:2:{k}::1/64"), "dev", &out]);
                    sink.ip(&[
                        "addr",
                        "add",
                        &format!("2001:db8:2:{k}::2/64"),
                        "dev",
                        "down0",
                    ]);
                }
                sink
            })
            .collect();
        if v6 {
            // The kernel sets IPv6 up on a link (its link-local address, the ff00::/8 route
            // multicast input needs) only once the link is operationally up, which may be
            // a while after `ip link set up`; until then IPv6 datagrams are dropped.
            let mut ends = vec![(&gen, "up0".to_string()), (&relay, "in0".to_string())];
            for (k, sink) in sinks.iter().enumerate() {
                ends.push((&relay, format!("out{k}")));
                ends.push((sink, "down0".to_string()));
            }
            for (ns, dev) in ends {
                wait_until(&format!("IPv6 on {dev} in {}", ns.name), || {
                    let out = ns.ip(&["-6", "addr", "show", "dev", &dev]);
                    let text = String::from_utf8_lossy(&out.stdout);
                    text.contains("inet6 fe80") && !text.contains("tentative")
                });
            }
        }
        let dir = std::env::temp_dir().join(unique("dir"));
        fs::create_dir_all(&dir).unwrap();
        Topology {
            procs: Vec::new(),
            gen,
            relay,
            sinks,
            dir,
        }
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, contents).unwrap();
        p
    }

    /// Starts `mcr run` in the relay namespace and waits until it reports ready.
    pub fn start_relay(&mut self, config: &str) -> usize {
        self.start_relay_env(config, &[])
    }

    /// [`Topology::start_relay`] with extra environment variables for the relay.
    pub fn start_relay_env(&mut self, config: &str, env: &[(&str, &str)]) -> usize {
        let path = self.write("mcr.toml", config);
        self.start_relay_at(&path, env)
    }

    /// Starts `mcr run -c path` (the caller wrote the config there) and waits until ready.
    pub fn start_relay_at(&mut self, path: &Path, env: &[(&str, &str)]) -> usize {
        self.start_relay_via(&[], path, env)
    }

    /// [`Topology::start_relay_at`] through `wrapper` (a program and its arguments that
    /// executes the rest of its command line, e.g. `setpriv …`), inside the namespace.
    pub fn start_relay_via(
        &mut self,
        wrapper: &[&str],
        path: &Path,
        env: &[(&str, &str)],
    ) -> usize {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = self.relay.command(program);
                c.args(args).arg(MCR);
                c
            }
            None => self.relay.command(MCR),
        };
        cmd.args(["run", "-c"])
            .arg(path)
            .arg("--stats-json")
            .arg(self.dir.join("stats.json"));
        cmd.env("RUST_LOG", "info");
        cmd.envs(env.iter().copied());
        let mut p = Proc::spawn(cmd, &self.dir, "relay");
        p.wait_for("relay ready", Duration::from_secs(20), |p| {
            p.stderr().contains("ready:")
        });
        self.procs.push(p);
        self.procs.len() - 1
    }

    /// Stops the relay with SIGTERM; returns its final counters (the stats JSON).
    pub fn stop_relay(&mut self, index: usize) -> serde_json::Value {
        let stdout = self.procs[index].terminate();
        assert!(stdout.contains("final counters"), "{stdout}");
        let json = fs::read_to_string(self.dir.join("stats.json")).unwrap();
        serde_json::from_str(&json).unwrap()
    }

    /// Starts `mcr sink` in sink namespace `k` and waits until it has joined.
    pub fn start_sink(&mut self, k: usize, args: &[&str]) -> usize {
        let tag = format!("sink{k}-{}", self.procs.len());
        let p = spawn_sink(&self.sinks[k], &self.dir, &tag, "3s", args);
        self.procs.push(p);
        self.procs.len() - 1
    }

    /// Waits for a sink to exit and returns its JSON report.
    pub fn sink_report(&mut self, index: usize) -> serde_json::Value {
        let out = self.procs[index].finish(Duration::from_secs(120));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("sink output {out:?}: {e}"))
    }

    /// Runs `mcr gen` on `up0` in the gen namespace to completion; returns its JSON report.
    pub fn gen(&self, args: &[&str]) -> serde_json::Value {
        self.gen_on("up0", args)
    }

    /// Runs `mcr gen` on gen interface `iface` to completion; returns its JSON report.
    pub fn gen_on(&self, iface: &str, args: &[&str]) -> serde_json::Value {
        let out = self
            .gen
            .command(MCR)
            .args(["gen", "--interface", iface, "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Topology {
    /// Starts `mcr gen` in the background; collect it with [`Topology::gen_report`].
    pub fn spawn_gen(&mut self, args: &[&str]) -> usize {
        self.spawn_gen_on("up0", args)
    }

    /// [`Topology::spawn_gen`] from gen interface `iface`.
    pub fn spawn_gen_on(&mut self, iface: &str, args: &[&str]) -> usize {
        let mut cmd = self.gen.command(MCR);
        cmd.args(["gen", "--interface", iface, "--json"]).args(args);
        let p = Proc::spawn(cmd, &self.dir, &format!("gen-{}", self.procs.len()));
        self.procs.push(p);
        self.procs.len() - 1
    }

    /// Starts, in the background, a paced stream of `count` packets at `rate` pps to
    /// `group`:5001 from `up0` (the shape almost every test sends).
    pub fn spawn_stream(&mut self, group: &str, count: u64, rate: u64) -> usize {
        let (count, rate) = (count.to_string(), rate.to_string());
        self.spawn_gen(&[
            "--group", group, "--port", "5001", "--count", &count, "--rate", &rate,
        ])
    }

    pub fn gen_report(&mut self, index: usize) -> serde_json::Value {
        let out = self.procs[index].finish(Duration::from_secs(300));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("gen output {out:?}: {e}"))
    }

    /// `mcr WHAT --json` (stats or status) over the control socket at `dir/control.sock`.
    pub fn control_json(&self, what: &str) -> serde_json::Value {
        control_json_at(&self.dir.join("control.sock"), what)
    }

    /// The relay's config path (as written by `start_relay`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("mcr.toml")
    }

    /// Replaces the config the way editors and Ansible do: write a temp file, rename it over.
    pub fn write_config_by_rename(&self, contents: &str) {
        let tmp = self.dir.join(".mcr.toml.tmp");
        fs::write(&tmp, contents).unwrap();
        fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Rewrites the config in place (truncate + write, same inode).
    pub fn write_config_in_place(&self, contents: &str) {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.config_path())
            .unwrap();
        f.write_all(contents.as_bytes()).unwrap();
    }

    pub fn signal_relay(&self, index: usize, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.procs[index].child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Lines of the relay's log containing `needle`.
    pub fn log_count(&self, index: usize, needle: &str) -> usize {
        self.procs[index].stderr().matches(needle).count()
    }

    /// Waits until the relay's log holds `n` lines containing `needle`.
    pub fn wait_log(&mut self, index: usize, needle: &str, n: usize) {
        let what = format!("{n} × {needle:?} in the relay log");
        self.procs[index].wait_for(&what, Duration::from_secs(20), |p| {
            p.stderr().matches(needle).count() >= n
        });
    }

    /// The relay's latest periodic stats (needs a non-zero `stats_interval`).
    pub fn live_stats(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.dir.join("stats.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Waits until `cond` holds for the relay's periodic stats.
    pub fn wait_stats(
        &self,
        what: &str,
        mut cond: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.live_stats();
            if !v.is_null() && cond(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: timed out; last stats: {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts tcpdump on `dev` in `ns`, writing what matches `filter` to `dir/TAG.pcap`; returns
/// once it listens. Stop it with `terminate_quietly`, then read the file with [`decode`].
pub fn capture(ns: &Netns, dir: &Path, dev: &str, filter: &str, tag: &str) -> (Proc, PathBuf) {
    let pcap = dir.join(format!("{tag}.pcap"));
    let mut cmd = ns.command("tcpdump");
    // Immediate mode: each packet is read (and, with -U, written) as it arrives, so the file
    // is complete as soon as the traffic is.
    cmd.args([
        "-i",
        dev,
        "--immediate-mode",
        "-B",
        "16384",
        "-U",
        "-n",
        "-w",
    ])
    .arg(&pcap)
    .args(filter.split_whitespace());
    let mut p = Proc::spawn(cmd, dir, tag);
    p.wait_for("tcpdump listening", Duration::from_secs(10), |p| {
        p.stderr().contains("listening on")
    });
    (p, pcap)
}

/// A capture file as `tcpdump -n -r` prints it, with extra `args` (`-v`, `-e`, ...).
pub fn decode(pcap: &Path, args: &[&str]) -> String {
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The process's open file descriptors and resident memory (KiB).
pub fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, rss)
}

/// Groups listed for `dev` in a `/proc/net/igmp` text, as dotted quads.
pub fn igmp_groups(igmp: &str, dev: &str) -> Vec<std::net::Ipv4Addr> {
    let mut lines = igmp
        .lines()
        .skip_while(|l| l.split_whitespace().nth(1) != Some(dev));
    lines.next();
    lines
        .take_while(|l| l.starts_with('\t'))
        .filter_map(|l| u32::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .map(|raw| std::net::Ipv4Addr::from(raw.to_le_bytes()))
        .collect()
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.procs.clear();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
    }
}

/// A second input link: gen `up1` 10.3.0.1 ── relay `in1` 10.3.0.2.
pub fn add_second_input(t: &Topology) {
    link(&t.gen, "up1", "10.3.0.1/24", &t.relay, "in1", "10.3.0.2/24");
}

/// Flow `c`, on the second input: 239.1.1.3:5001 on `in1` → 239.9.9.3:5099 on `out0`.
pub const FLOW_C_ON_IN1: &str = "[[flow]]\nname = \"c\"\ninput = { interface = \"in1\", group = \"239.1.1.3\", port = 5001 }\noutputs = [ { interface = \"out0\", group = \"239.9.9.3\", port = 5099 } ]\n";

/// Sends `count` packets at 10k pps from gen interface `gen_if` to `group_in`:5001 and
/// asserts that sink 0 received every one on `group_out`:5099, clean.
pub fn check_stream(t: &mut Topology, gen_if: &str, group_in: &str, group_out: &str, count: u64) {
    let n = count.to_string();
    let sink = t.start_sink(0, &["--group", group_out, "--port", "5099", "--count", &n]);
    let args = [
        "--group", group_in, "--port", "5001", "--count", &n, "--rate", "10000",
    ];
    t.gen_on(gen_if, &args);
    assert_clean(&t.sink_report(sink), count);
}

/// Sends 2000 packets through flow `c` and asserts the sink got every one, clean.
pub fn check_flow_c(t: &mut Topology) {
    check_stream(t, "up1", "239.1.1.3", "239.9.9.3", 2000);
}

/// A sink report with exactly `received` packets, none lost, duplicated, reordered or corrupt.
pub fn assert_clean(report: &serde_json::Value, received: u64) {
    assert_eq!(num(report, "received"), received, "{report}");
    for key in ["lost", "duplicates", "reordered", "corrupt"] {
        assert_eq!(num(report, key), 0, "{key}: {report}");
    }
}

/// A JSON number field as u64, failing loudly when absent.
pub fn num(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

/// The relay snapshot's flow by name.
pub fn flow<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no flow {name} in {stats}"))
}
