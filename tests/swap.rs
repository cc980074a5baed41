//! End to end: reloads when the config is reached through symlinks that a deployment swaps —
//! a Kubernetes ConfigMap volume (`mcr.toml -> ..data/mcr.toml`, `..data` renamed over), a
//! `current -> releases/N` link, and a path whose chain changes shape. The file named in
//! `mcr run -c` is never written; only links on the way to it change.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{check_stream, serial, Topology};

const HEADER: &str = "[relay]\nworkers = 1\nstats_interval = \"0s\"\n";
const FLOW_A: &str = "[[flow]]\nname = \"a\"\ninput = { interface = \"in0\", group = \"239.1.1.1\", port = 5001 }\noutputs = [ { interface = \"out0\", group = \"239.9.9.1\", port = 5099 } ]\n";
const FLOW_B: &str = "[[flow]]\nname = \"b\"\ninput = { interface = \"in0\", group = \"239.1.1.2\", port = 5001 }\noutputs = [ { interface = \"out0\", group = \"239.9.9.2\", port = 5099 } ]\n";
/// Line 12 of HEADER + FLOW_A + FLOW_B + this: a table header that never closes.
const BROKEN: &str = "[[flow]\nname = \"c\"\n";

fn flow_a_forwards(t: &mut Topology) {
    check_stream(t, "up0", "239.1.1.1", "239.9.9.1", 2000);
}

fn flow_b_forwards(t: &mut Topology) {
    check_stream(t, "up0", "239.1.1.2", "239.9.9.2", 2000);
}

/// The relay rejected the BROKEN file at `path`'s line 12, and flows a and b still forward.
fn rejected_at_line_12_and_still_forwarding(t: &mut Topology, relay: usize, path: &Path) {
    t.wait_log(relay, "reload rejected:", 1);
    let log = t.procs[relay].stderr();
    assert!(
        log.contains(&format!("reload rejected: {}:12:", path.display())),
        "{log}"
    );
    flow_a_forwards(t);
    flow_b_forwards(t);
}

/// Replaces `link` by a symlink to `target` atomically (a new link renamed over it), as
/// `ln -sfn` does with `-T` and as kubelet swaps `..data`.
fn relink(target: &Path, link: &Path) {
    let name = link.file_name().unwrap().to_string_lossy();
    let tmp = link.with_file_name(format!("{name}_tmp"));
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// A ConfigMap-style volume in `dir`: each version is a new timestamped directory, `..data`
/// points at the current one, `mcr.toml -> ..data/mcr.toml`.
struct ConfigMap {
    dir: PathBuf,
    version: u32,
}

impl ConfigMap {
    fn new(dir: PathBuf, contents: &str) -> ConfigMap {
        std::fs::create_dir_all(&dir).unwrap();
        let mut cm = ConfigMap { dir, version: 0 };
        cm.update(contents);
        symlink("..data/mcr.toml", cm.path()).unwrap();
        cm
    }

    fn path(&self) -> PathBuf {
        self.dir.join("mcr.toml")
    }

    /// What kubelet's atomic writer does: write the new version's directory in full, point a
    /// new `..data` link at it, rename that over `..data`, delete the old directory.
    fn update(&mut self, contents: &str) {
        let old = self
            .dir
            .join(format!("..2026_12_01_00_00_0{}", self.version));
        self.version += 1;
        let name = format!("..2026_12_01_00_00_0{}", self.version);
        let new = self.dir.join(&name);
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("mcr.toml"), contents).unwrap();
        relink(Path::new(&name), &self.dir.join("..data"));
        let _ = std::fs::remove_dir_all(old);
    }
}

#[test]
fn a_configmap_swap_reloads_and_a_broken_version_is_rejected_with_its_position() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let mut cm = ConfigMap::new(t.dir.join("configmap"), &format!("{HEADER}{FLOW_A}"));
    let path = cm.path();
    let relay = t.start_relay_at(&path, &[]);
    cm.update(&format!("{HEADER}{FLOW_A}{FLOW_B}"));
    t.wait_log(relay, "reloaded: generation 2", 1);
    flow_b_forwards(&mut t);
    cm.update(&format!("{HEADER}{FLOW_A}{FLOW_B}{BROKEN}"));
    rejected_at_line_12_and_still_forwarding(&mut t, relay, &path);
    // The next good version is followed too: the watch moved with `..data`.
    cm.update(&format!("{HEADER}{FLOW_B}"));
    t.wait_log(relay, "reloaded: generation 3", 1);
    flow_b_forwards(&mut t);
    t.stop_relay(relay);
}

#[test]
fn a_current_release_link_swap_reloads_and_a_broken_release_is_rejected() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let app = t.dir.join("app");
    let release = |n: u32, contents: &str| {
        let dir = app.join(format!("releases/{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mcr.toml"), contents).unwrap();
        relink(Path::new(&format!("releases/{n}")), &app.join("current"));
    };
    release(1, &format!("{HEADER}{FLOW_A}"));
    let path = app.join("current/mcr.toml");
    let relay = t.start_relay_at(&path, &[]);
    release(2, &format!("{HEADER}{FLOW_A}{FLOW_B}"));
    t.wait_log(relay, "reloaded: generation 2", 1);
    flow_b_forwards(&mut t);
    release(3, &format!("{HEADER}{FLOW_A}{FLOW_B}{BROKEN}"));
    rejected_at_line_12_and_still_forwarding(&mut t, relay, &path);
    t.stop_relay(relay);
}

#[test]
fn a_chain_that_changes_shape_is_followed_where_it_now_leads() {
    let _s = serial();
    let mut t = Topology::chain(1);
    let relay = t.start_relay(&format!("{HEADER}{FLOW_A}"));
    let path = t.config_path();
    // The file becomes a symlink into another directory.
    let real = t.dir.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("v1.toml"), format!("{HEADER}{FLOW_A}{FLOW_B}")).unwrap();
    relink(&real.join("v1.toml"), &path);
    t.wait_log(relay, "reloaded: generation 2", 1);
    flow_b_forwards(&mut t);
    // A write in place at the new end of the chain, in a directory that was not watched
    // before: seen, because the watch followed the link.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(real.join("v1.toml"))
            .unwrap();
        f.write_all(format!("{HEADER}{FLOW_A}").as_bytes()).unwrap();
    }
    t.wait_log(relay, "reloaded: generation 3", 1);
    assert_eq!(t.log_count(relay, "flows +0 -1"), 1, "flow b removed");
    // And back: a regular file renamed over the link.
    t.write_config_by_rename(&format!("{HEADER}{FLOW_A}{FLOW_B}"));
    t.wait_log(relay, "reloaded: generation 4", 1);
    flow_b_forwards(&mut t);
    // A broken file delivered as a link again: rejected at its position, the table stays.
    std::fs::write(
        real.join("broken.toml"),
        format!("{HEADER}{FLOW_A}{FLOW_B}{BROKEN}"),
    )
    .unwrap();
    relink(&real.join("broken.toml"), &path);
    rejected_at_line_12_and_still_forwarding(&mut t, relay, &path);
    t.stop_relay(relay);
}
