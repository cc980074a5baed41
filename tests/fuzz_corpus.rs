//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) on stable Rust.
//!
//! Every input goes through the same function, with the same assertions, as
//! in the `cargo fuzz` target of the same name: the checks live in
//! fuzz/src/lib.rs and are compiled into this test as a module. See
//! fuzz/README.md for running the fuzzers themselves.

use std::fs;
use std::path::PathBuf;

#[path = "../fuzz/src/lib.rs"]
mod checks;

/// Runs `check` on every file in fuzz/corpus/`target`/, which must not be empty.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    for file in &files {
        let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} failed", file.display());
    }
}

#[test]
fn wire_parse() {
    replay("wire_parse", checks::wire);
}

#[test]
fn config_parse() {
    replay("config_parse", checks::config);
}

#[test]
fn control_request() {
    replay("control_request", checks::control);
}
