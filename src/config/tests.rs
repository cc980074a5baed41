//! Tests of config parsing and validation: fixtures, defaults and every setting.

use super::*;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `*.toml` files directly in `dir` (relative to the crate), sorted.
fn toml_files(dir: &str) -> Vec<PathBuf> {
    let dir = manifest_dir().join(dir);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.toml files in {}", dir.display());
    files
}

fn parse(source: &str) -> Result<Config, ConfigErrors> {
    Config::parse(source, Path::new("test.toml"))
}

fn errors(source: &str) -> Vec<ConfigError> {
    match parse(source) {
        Ok(config) => panic!("expected errors, parsed {config:?}"),
        Err(e) => e.errors,
    }
}

fn ifname(s: &str) -> IfName {
    IfName::new(s).expect("valid interface name")
}

#[test]
fn valid_fixtures_parse() {
    for path in toml_files("tests/config/valid") {
        if let Err(e) = Config::load(&path) {
            panic!("{} should be valid:\n{e}", path.display());
        }
    }
}

/// `# expect: LINE: SUBSTRING` headers of an invalid fixture.
fn expectations(path: &Path, source: &str) -> Vec<(usize, String)> {
    let expected: Vec<(usize, String)> = source
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let (line, text) = rest
                .split_once(": ")
                .unwrap_or_else(|| panic!("{}: malformed expect: {rest}", path.display()));
            let line = line.parse().expect("expect line number");
            (line, text.to_string())
        })
        .collect();
    assert!(!expected.is_empty(), "{} has no # expect:", path.display());
    expected
}

#[test]
fn invalid_fixtures_report_exactly_the_expected_errors() {
    for path in toml_files("tests/config/invalid") {
        let source = fs::read_to_string(&path).expect("readable fixture");
        let expected = expectations(&path, &source);
        let errors = match Config::load(&path) {
            Ok(_) => panic!("{} should be invalid", path.display()),
            Err(e) => e.errors,
        };
        let matches = |e: &ConfigError, (line, text): &(usize, String)| {
            e.path == path && e.line == *line && e.message.contains(text.as_str())
        };
        for exp in &expected {
            assert!(
                errors.iter().any(|e| matches(e, exp)),
                "{}: no error at line {} containing {:?}; got:\n{}",
                path.display(),
                exp.0,
                exp.1,
                ConfigErrors { errors },
            );
        }
        for e in &errors {
            assert!(
                expected.iter().any(|exp| matches(e, exp)),
                "{}: unexpected error {e}",
                path.display()
            );
            assert!(e.col >= 1, "{e} has no column");
        }
    }
}

#[test]
fn shipped_configs_parse() {
    for dir in ["examples", "config"] {
        for path in toml_files(dir) {
            if let Err(e) = Config::load(&path) {
                panic!("{} should be valid:\n{e}", path.display());
            }
        }
    }
}

/// The reference config ships with its settings commented out; they must
/// still be valid for an operator who uncomments them.
#[test]
fn reference_config_is_valid_uncommented() {
    let path = manifest_dir().join("config/mcr.toml");
    let source = fs::read_to_string(&path).expect("config/mcr.toml");
    let uncommented: String = source
        .lines()
        .flat_map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.starts_with('#') => [rest, "\n"],
            _ => [l, "\n"],
        })
        .collect();
    let config = Config::parse(&uncommented, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.relay.workers, NonZeroUsize::new(2));
    assert_eq!(config.relay.stats_interval, Some(DEFAULT_STATS_INTERVAL));
    assert_eq!(config.flows.len(), 4);
}

#[test]
fn demo_config_is_exactly_the_demo() {
    let config =
        Config::load(&manifest_dir().join("examples/demo.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.relay.workers, NonZeroUsize::new(1));
    assert_eq!(config.relay.stats_interval, Some(Duration::from_secs(1)));
    assert!(config.relay.watch);
    let flow = |name: &str, input: [u8; 4], output: [u8; 4]| Flow {
        name: name.to_string(),
        idle_after: None,
        loop_guard: None,
        local_delivery: None,
        rtp: None,
        merge: false,
        merge_window: None,
        merge_delay: Duration::ZERO,
        more_inputs: Vec::new(),
        input: Input {
            unicast: false,
            interface: ifname("mcr-in"),
            group: Ipv4Addr::from(input).into(),
            port: 5001,
            source: None,
        },
        outputs: vec![Output {
            unicast: false,
            interface: Some(ifname("mcr-out")),
            group: Ipv4Addr::from(output).into(),
            port: 5099,
            ttl: 8,
            dscp: None,
            source: None,
        }],
    };
    assert_eq!(
        config.flows,
        vec![
            flow("cam-1", [239, 1, 1, 1], [239, 9, 9, 9]),
            flow("cam-2", [239, 1, 1, 2], [239, 9, 9, 10]),
        ]
    );
    assert_eq!(
        config.summary().to_string(),
        "2 flows, 2 input groups on 1 interfaces"
    );
}

#[test]
fn omitted_keys_take_their_defaults() {
    let config = parse(
        r#"
        [[flow]]
        name = "a"
        input = { interface = "eth0", group = "239.1.1.1", port = 5001 }
        outputs = [{ interface = "eth1", group = "239.9.9.9", port = 5099 }]
        "#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.relay, RelaySettings::default());
    assert_eq!(config.relay.workers, None);
    assert_eq!(config.relay.stats_interval, Some(Duration::from_secs(10)));
    assert!(config.relay.watch);
    assert_eq!(config.flows[0].input.source, None);
    assert_eq!(config.flows[0].outputs[0].ttl, DEFAULT_TTL);
    assert_eq!(DEFAULT_TTL, 1);
}

#[test]
fn empty_file_is_an_idle_relay() {
    assert_eq!(
        parse("").unwrap_or_else(|e| panic!("{e}")),
        Config::default()
    );
    let config = parse("[relay]\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.relay, RelaySettings::default());
    assert!(config.flows.is_empty());
}

#[test]
fn relay_settings_are_read() {
    let config = parse(
        "[relay]\nworkers = 3\nstats_interval = \"250ms\"\nwatch = false\n\
         control_socket = \"/run/x.sock\"\nmetrics = \"127.0.0.1:9810\"\nuser = \"mcr\"\n\
         egress = \"udp\"\nidle_after = \"30s\"\nquerier = \"off\"\nquery_interval = \"30s\"\n\
         loop_guard = \"off\"\nring_memory = \"1GiB\"\nlocal_delivery = true\nrole = \"standby\"\n\
         batch_delay = \"120us\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.relay,
        RelaySettings {
            workers: NonZeroUsize::new(3),
            stats_interval: Some(Duration::from_millis(250)),
            watch: false,
            control_socket: PathBuf::from("/run/x.sock"),
            metrics: Some("127.0.0.1:9810".parse().unwrap()),
            user: Some("mcr".to_string()),
            egress: EgressMode::Udp,
            idle_after: Duration::from_secs(30),
            querier: QuerierMode::Off,
            query_interval: Duration::from_secs(30),
            loop_guard: None,
            ring_memory: 1 << 30,
            batch_delay: Duration::from_micros(120),
            local_delivery: true,
            role_standby: true,
        }
    );
    assert_eq!(
        parse("[relay]\n").unwrap().relay.egress,
        EgressMode::Packet,
        "AF_PACKET egress is the default"
    );
    let config = parse("[relay]\nstats_interval = \"0s\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.relay.stats_interval, None);
    let config = parse("[relay]\nbatch_delay = \"0s\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.relay.batch_delay,
        Duration::ZERO,
        "0s: coalescing off"
    );
}

#[test]
fn batch_delay_out_of_range_or_malformed_is_refused_at_its_span() {
    for (value, what) in [
        ("\"2ms\"", "is out of range"),
        ("\"500ns\"", "is out of range"),
        ("\"fast\"", "is not a duration"),
    ] {
        let err = parse(&format!("[relay]\nbatch_delay = {value}\n")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("2:15: batch_delay"), "{text}");
        assert!(text.contains(what) && text.contains("\"0s\""), "{text}");
    }
}

#[test]
fn loop_guard_is_on_by_default_and_set_per_flow() {
    assert_eq!(
        RelaySettings::default().loop_guard,
        Some(DEFAULT_LOOP_GUARD)
    );
    let config = parse(
        r#"
        [relay]
        loop_guard = "250ms"
        [[flow]]
        name = "a"
        loop_guard = "off"
        input = { interface = "eth0", group = "239.1.1.1", port = 5001 }
        outputs = [{ interface = "eth1", group = "239.9.9.9", port = 5099 }]
        [[flow]]
        name = "b"
        loop_guard = "5s"
        input = { interface = "eth0", group = "239.1.1.2", port = 5001 }
        outputs = [{ interface = "eth1", group = "239.9.9.8", port = 5099 }]
        "#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.relay.loop_guard, Some(Duration::from_millis(250)));
    assert_eq!(config.flows[0].loop_guard, Some(None));
    assert_eq!(
        config.flows[1].loop_guard,
        Some(Some(Duration::from_secs(5)))
    );
}

#[test]
fn all_errors_are_reported_together_in_file_order() {
    let errors = errors(concat!(
        "[relay]\n",
        "workers = -2\n",
        "stats_interval = \"soon\"\n",
        "[[flow]]\n",
        "name = \"a\"\n",
        "input = { interface = \"eth0\", group = \"10.0.0.1\", port = 0 }\n",
        "outputs = [{ interface = \"eth1\", group = \"239.9.9.9\", port = 5099, ttl = 300 }]\n",
        "[[flow]]\n",
        "name = \"a\"\n",
        "input = { interface = \"eth0\", group = \"239.1.1.1\", port = 5001 }\n",
        "outputs = []\n",
    ));
    let found: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|e| {
            (
                e.line,
                e.col,
                e.message.split([';', '(']).next().unwrap_or("").trim_end(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (2, 11, "workers = -2 is invalid"),
            (3, 18, "stats_interval \"soon\" is not a duration"),
            (6, 39, "input group 10.0.0.1 is not a multicast address"),
            (6, 58, "port 0 is out of range"),
            (7, 74, "ttl 300 is out of range"),
            (
                9,
                8,
                "flow name \"a\" is already used by the flow on line 5"
            ),
            (11, 11, "flow \"a\" has an empty output list"),
        ]
    );
    assert!(errors.iter().all(|e| e.path == Path::new("test.toml")));
}

#[test]
fn syntax_errors_carry_their_position() {
    let errors = errors("[relay]\nworkers = \n");
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].col), (2, 11));
    assert!(errors[0].to_string().starts_with("test.toml:2:11: "));
}

#[test]
fn flows_without_a_name_are_named_by_line_in_messages() {
    let errors =
        errors("[[flow]]\ninput = { interface = \"eth0\", group = \"239.1.1.1\", port = 1 }\n");
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errors.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with("this flow has no name"));
    assert!(messages[1].starts_with("flow on line 1 has no outputs"));
}

#[test]
fn loop_detection_ignores_source_and_reaches_later_flows() {
    let errors = errors(concat!(
        "[[flow]]\n",
        "name = \"a\"\n",
        "input = { interface = \"eth0\", group = \"239.1.1.1\", port = 5001 }\n",
        "outputs = [{ interface = \"eth1\", group = \"232.2.2.2\", port = 6000 }]\n",
        "[[flow]]\n",
        "name = \"b\"\n",
        "input = { interface = \"eth1\", group = \"232.2.2.2\", port = 6000, source = \"10.0.0.1\" }\n",
        "outputs = [{ interface = \"eth2\", group = \"239.3.3.3\", port = 7000 }]\n",
    ));
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].col), (4, 12));
    assert!(errors[0].message.contains("input of flow \"b\" (line 7)"));
}

#[test]
fn a_flow_may_not_output_to_its_own_input() {
    let errors = errors(concat!(
        "[[flow]]\n",
        "name = \"a\"\n",
        "input = { interface = \"eth0\", group = \"239.1.1.1\", port = 5001 }\n",
        "outputs = [{ interface = \"eth0\", group = \"239.1.1.1\", port = 5001, ttl = 2 }]\n",
    ));
    assert_eq!(errors.len(), 1);
    assert!(errors[0]
        .message
        .contains("would feed the relay its own output"));
}

#[test]
fn outputs_differing_only_in_ttl_are_duplicates() {
    let errors = errors(concat!(
        "[[flow]]\n",
        "name = \"a\"\n",
        "input = { interface = \"eth0\", group = \"239.1.1.1\", port = 5001 }\n",
        "outputs = [{ interface = \"eth1\", group = \"239.9.9.9\", port = 1 },\n",
        "           { interface = \"eth1\", group = \"239.9.9.9\", port = 1, ttl = 9 }]\n",
    ));
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].col), (5, 12));
}

#[test]
fn same_group_from_different_sources_is_allowed() {
    let config = Config::load(&manifest_dir().join("tests/config/valid/ssm.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sources: Vec<_> = config.flows.iter().map(|f| f.input.source).collect();
    assert_eq!(
        sources,
        vec![
            Some(Ipv4Addr::new(10, 0, 0, 5).into()),
            Some(Ipv4Addr::new(10, 0, 0, 6).into()),
            None
        ]
    );
    assert_eq!(
        config.summary(),
        Summary {
            flows: 3,
            input_groups: 3,
            interfaces: 1,
            local_delivery: 0,
        }
    );
}

#[test]
fn summary_counts_distinct_groups_and_interfaces() {
    let config = Config::load(&manifest_dir().join("tests/config/valid/fan-out.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.flows[0].outputs.len(), 4);
    assert_eq!(config.flows[1].outputs[1].ttl, 255);
    assert_eq!(
        config.summary().to_string(),
        "2 flows, 2 input groups on 1 interfaces"
    );
    assert_eq!(
        Config::default().summary().to_string(),
        "0 flows, 0 input groups on 0 interfaces"
    );
}

#[test]
fn unreadable_file_is_reported_without_position() {
    let path = manifest_dir().join("tests/config/does-not-exist.toml");
    let errors = Config::load(&path).expect_err("missing file").errors;
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].col), (0, 0));
    assert!(errors[0].message.starts_with("cannot read file: "));
    assert_eq!(
        errors[0].to_string(),
        format!("{}: {}", path.display(), errors[0].message)
    );
}

#[test]
fn odd_input_never_panics() {
    for source in [
        "\u{feff}",
        "[[flow]]\n",
        "[[flow]]\noutputs = [{}]\n",
        "[[flow]]\ninput = {}\noutputs = [{}]\n",
        "flow = 3",
        "[relay]\nworkers = 9223372036854775807\n",
        "[relay]\nstats_interval = \"99999999999999999999s\"\n",
        "[[flow]]\nname = \"ü\"\ninput = { interface = \"\u{a0}\", group = \"\", port = -9223372036854775808 }\n",
    ] {
        let _ = parse(source);
    }
}

#[test]
fn input_and_output_display() {
    let input = Input {
        unicast: false,
        interface: ifname("eth0"),
        group: Ipv4Addr::new(232, 1, 1, 1).into(),
        port: 5004,
        source: Some(Ipv4Addr::new(10, 0, 0, 5).into()),
    };
    assert_eq!(input.to_string(), "232.1.1.1:5004 from 10.0.0.5 on eth0");
    let output = Output {
        unicast: false,
        interface: Some(ifname("eth1")),
        group: Ipv4Addr::new(239, 9, 9, 9).into(),
        port: 5099,
        ttl: 1,
        dscp: None,
        source: None,
    };
    assert_eq!(output.to_string(), "239.9.9.9:5099 on eth1 ttl 1");
    let marked = Output {
        dscp: Some(46),
        ..output
    };
    assert_eq!(marked.to_string(), "239.9.9.9:5099 on eth1 ttl 1 dscp 46");
    let sourced = Output {
        source: Some(Ipv4Addr::new(192, 0, 2, 10).into()),
        ..marked
    };
    assert_eq!(
        sourced.to_string(),
        "239.9.9.9:5099 on eth1 ttl 1 dscp 46 from 192.0.2.10"
    );
}

#[test]
fn a_flow_has_at_most_max_outputs() {
    let flow = |n: usize| {
        let outs: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{{ interface = \"eth1\", group = \"239.9.9.9\", port = {} }}",
                    i + 1
                )
            })
            .collect();
        format!(
            "[[flow]]\nname = \"big\"\ninput = {{ interface = \"eth0\", group = \"239.1.1.1\", port = 1 }}\noutputs = [{}]\n",
            outs.join(", ")
        )
    };
    assert!(parse(&flow(validate::MAX_OUTPUTS)).is_ok());
    let errors = errors(&flow(validate::MAX_OUTPUTS + 1));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].to_string().contains("at most 4096"),
        "{}",
        errors[0]
    );
}

#[test]
fn sizes_parse_in_binary_units_and_round_trip() {
    use super::{format_size, parse_size};
    assert_eq!(parse_size("256MiB"), Some(256 << 20));
    assert_eq!(parse_size(" 4 GiB "), Some(4 << 30));
    assert_eq!(parse_size("1024B"), Some(1024));
    assert_eq!(parse_size("512KiB"), Some(512 << 10));
    for bad in [
        "",
        "MiB",
        "12",
        "1.5GiB",
        "-1MiB",
        "1mb",
        "1 MB",
        "99999999999999999999GiB",
    ] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
    assert_eq!(parse_size("18446744073709551615GiB"), None);
    for n in [1u64 << 20, 3 << 30, 1536 << 10, 1000] {
        assert_eq!(parse_size(&format_size(n)), Some(n));
    }
}

#[test]
fn ring_memory_is_bounded_with_a_position() {
    let config = Config::parse("[relay]\nring_memory = \"64MiB\"\n", Path::new("t.toml")).unwrap();
    assert_eq!(config.relay.ring_memory, 64 << 20);
    assert_eq!(
        RelaySettings::default().ring_memory,
        super::DEFAULT_RING_MEMORY
    );
    for (bad, what) in [
        ("512KiB", "out of range"),
        ("65GiB", "out of range"),
        ("lots", "not a size"),
    ] {
        let src = format!("[relay]\nring_memory = \"{bad}\"\n");
        let err = Config::parse(&src, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:2:15:"), "{err}");
        assert!(err.contains(what) && err.contains("\"256MiB\""), "{err}");
    }
}

#[test]
fn dscp_is_per_output_and_bounded() {
    let flow = |dscp: &str| {
        format!("[[flow]]\nname = \"a\"\ninput = {{ interface = \"eth0\", group = \"239.1.1.1\", port = 5001 }}\noutputs = [ {{ interface = \"eth1\", group = \"239.9.9.9\", port = 5099{dscp} }} ]\n")
    };
    let config = Config::parse(&flow(", dscp = 46"), Path::new("t.toml")).unwrap();
    assert_eq!(config.flows[0].outputs[0].dscp, Some(46));
    assert_eq!(
        Config::parse(&flow(""), Path::new("t.toml")).unwrap().flows[0].outputs[0].dscp,
        None,
        "kept from each input datagram by default"
    );
    for bad in ["64", "-1"] {
        let err = Config::parse(&flow(&format!(", dscp = {bad}")), Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.toml:4:") && err.contains("dscp") && err.contains("0 to 63"),
            "{err}"
        );
    }
}

#[test]
fn an_output_source_is_a_unicast_address() {
    let flow = |source: &str| {
        format!("[[flow]]\nname = \"a\"\ninput = {{ interface = \"eth0\", group = \"239.1.1.1\", port = 5001 }}\noutputs = [ {{ interface = \"eth1\", group = \"239.9.9.9\", port = 5099{source} }} ]\n")
    };
    let config = Config::parse(&flow(", source = \"192.0.2.10\""), Path::new("t.toml")).unwrap();
    assert_eq!(
        config.flows[0].outputs[0].source,
        Some(Ipv4Addr::new(192, 0, 2, 10).into())
    );
    for (bad, what) in [
        ("239.1.1.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("127.0.0.1", "loopback"),
        ("nope", "source"),
    ] {
        let err = Config::parse(&flow(&format!(", source = \"{bad}\"")), Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.toml:4:") && err.contains(what),
            "{bad}: {err}"
        );
    }
}

#[test]
fn local_delivery_is_off_by_default_and_a_flow_may_turn_it_on() {
    let config = parse(
        "[[flow]]\nname = \"a\"\nlocal_delivery = true\n\
         input = { interface = \"eth0\", group = \"239.1.1.1\", port = 5000 }\n\
         outputs = [ { interface = \"eth1\", group = \"239.2.2.2\", port = 5000 } ]\n\
         [[flow]]\nname = \"b\"\n\
         input = { interface = \"eth0\", group = \"239.1.1.2\", port = 5000 }\n\
         outputs = [ { interface = \"eth1\", group = \"239.2.2.3\", port = 5000 } ]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.relay.local_delivery);
    assert_eq!(config.flows[0].local_delivery, Some(true));
    assert_eq!(config.flows[1].local_delivery, None);
    let e = parse("[relay]\nlocal_delivery = \"yes\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("test.toml:2:18") && e.contains("boolean"), "{e}");
}

#[test]
fn a_unicast_output_has_an_address_and_a_routable_default_ttl() {
    let config = parse(
        "[[flow]]\nname = \"a\"\ninput = { interface = \"eth0\", group = \"239.1.1.1\", port = 5000 }\n\
         outputs = [ { interface = \"eth1\", address = \"10.2.0.2\", port = 6000 },\n\
                     { interface = \"eth1\", address = \"10.2.0.3\", port = 6000, ttl = 2 },\n\
                     { interface = \"eth1\", group = \"239.2.2.2\", port = 6000 } ]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = &config.flows[0].outputs;
    assert!(o[0].unicast && o[1].unicast && !o[2].unicast);
    assert_eq!(o[0].group, Ipv4Addr::new(10, 2, 0, 2));
    assert_eq!(
        (o[0].ttl, o[1].ttl, o[2].ttl),
        (DEFAULT_UNICAST_TTL, 2, DEFAULT_TTL)
    );
    assert_eq!(o[0].to_string(), "10.2.0.2:6000 (unicast) on eth1 ttl 64");
}
