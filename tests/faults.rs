//! End to end: a worker that fails never leaves a relay that looks healthy but does not
//! forward. The fault is injected through the test-only `fault-injection` feature
//! (`scripts/test.sh` enables it); without it this file compiles to nothing.
#![cfg(feature = "fault-injection")]

mod common;

use std::time::Duration;

use common::{serial, Topology};

const CONFIG: &str = "[relay]\nworkers = 2\nstats_interval = \"0s\"\nwatch = false\n[[flow]]\nname = \"a\"\ninput = { interface = \"in0\", group = \"239.1.1.1\", port = 5001 }\noutputs = [ { interface = \"out0\", group = \"239.9.9.1\", port = 5099 } ]\n";

fn worker_fault_ends_the_relay_with_a_failure(kind: &str, says: &str) {
    let _s = serial();
    let mut t = Topology::chain(1);
    let fault = t.dir.join("fault");
    let fault_env = fault.display().to_string();
    let relay = t.start_relay_env(CONFIG, &[("MCR_FAULT_FILE", &fault_env)]);
    common::check_stream(&mut t, "up0", "239.1.1.1", "239.9.9.1", 2000);

    std::fs::write(&fault, kind).unwrap();
    let p = &mut t.procs[relay];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "relay still running after a worker {kind}:\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = p.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(says), "{log}");
    assert!(
        log.contains("exiting so the service manager restarts mcr"),
        "{log}"
    );
    assert!(log.contains("groups left"), "an orderly stop: {log}");
}

#[test]
fn a_worker_panic_ends_the_relay_with_exit_status_1() {
    worker_fault_ends_the_relay_with_a_failure("panic", "panicked: fault injected into worker");
}

#[test]
fn a_worker_loop_error_ends_the_relay_with_exit_status_1() {
    worker_fault_ends_the_relay_with_a_failure("error", "stopped: fault injected into worker");
}
