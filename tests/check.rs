//! `mcr check`: exit codes and `PATH:LINE:COL` messages of the real binary on every fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

const MCR: &str = env!("CARGO_BIN_EXE_mcr");

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config")
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

fn check(path: &Path) -> (bool, String, String) {
    let out = Command::new(MCR)
        .args(["check", "-c"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_invalid_fixture_fails_with_path_line_and_column() {
    for path in fixtures("invalid") {
        let (ok, _, stderr) = check(&path);
        assert!(!ok, "{} was accepted", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<usize> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .filter_map(|l| l.split(':').next()?.trim().parse().ok())
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        for line in expected {
            let prefix = format!("{}:{line}:", path.display());
            let hit = stderr.lines().find(|l| l.starts_with(&prefix));
            let hit = hit.unwrap_or_else(|| panic!("no error at {prefix} in:\n{stderr}"));
            // PATH:LINE:COL: message — the column is a number and a message follows.
            let rest = &hit[prefix.len()..];
            let (col, msg) = rest.split_once(": ").unwrap_or_else(|| panic!("{hit}"));
            assert!(col.parse::<usize>().is_ok_and(|c| c >= 1), "{hit}");
            assert!(!msg.trim().is_empty(), "{hit}");
        }
    }
}

#[test]
fn valid_fixtures_examples_and_the_default_config_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = fixtures("valid");
    let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 4, "{examples:?}");
    paths.extend(examples);
    paths.push(root.join("config/mcr.toml"));
    for path in paths {
        let (ok, stdout, stderr) = check(&path);
        assert!(ok, "{}: {stderr}", path.display());
        assert!(stdout.starts_with("ok: "), "{stdout}");
    }
    let (_, stdout, _) = check(&root.join("examples/demo.toml"));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "ok: 2 flows, 2 input groups on 1 interfaces",
            "ingress drop: 2 flows' datagrams stop at their input interface once mcr has them \
             (local sockets on this host do not get them); 0 flows with local_delivery = true \
             reach local sockets too"
        ]
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let (ok, _, stderr) = check(Path::new("/nonexistent/mcr.toml"));
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/mcr.toml"), "{stderr}");
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_at_its_first_bad_byte() {
    let dir = std::env::temp_dir().join(format!("mcr-check-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.toml");
    std::fs::write(&path, b"[relay]\nuser = \"caf\xe9\"\n").unwrap();
    let (ok, _, stderr) = check(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!ok);
    assert!(
        stderr.contains("latin1.toml:2:12: byte 0xe9 is not UTF-8 text"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_config_that_cannot_fit_the_open_file_limit() {
    let dir = std::env::temp_dir().join(format!("mcr-check-nofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.toml");
    let mut config = String::from("[relay]\nworkers = 1\nwatch = false\n");
    for i in 0..2000 {
        let (hi, lo) = (i / 250, i % 250 + 1);
        config += &format!(
            "[[flow]]\nname = \"f{i}\"\ninput = {{ interface = \"mcr-no-such0\", group = \"239.1.{hi}.{lo}\", port = 5000 }}\n\
             outputs = [ {{ interface = \"mcr-no-such1\", group = \"239.2.{hi}.{lo}\", port = 5000 }} ]\n"
        );
    }
    std::fs::write(&path, config).unwrap();
    // A hard limit of 128 cannot be raised: 2000 input groups need 100 helper sockets (20
    // memberships each), which with the rest and the spare do not fit.
    let out = Command::new("prlimit")
        .args(["--nofile=128:128", MCR, "run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("this config needs about 233 open files")
            && stderr.contains("the limit is 128")
            && stderr.contains("LimitNOFILE="),
        "{stderr}"
    );
}

#[test]
fn an_any_source_input_in_a_source_specific_range_is_valid_with_a_warning_at_its_group() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("tests/config/valid/ssm.toml");
    let (ok, stdout, stderr) = check(&path);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ok: 3 flows"), "{stdout}");
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with(&format!("{}:16:39: warning: input group 232.1.1.1 is in the source-specific range 232.0.0.0/8 but has no source", path.display())),
        "{stderr}"
    );
}
