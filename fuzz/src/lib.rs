//! The checks behind the fuzz targets, one function per target.
//!
//! Each function takes the raw fuzzer input, calls the parser and asserts what
//! the parser's documentation promises; a panic is a finding. The same file is
//! compiled into `tests/fuzz_corpus.rs`, which replays the committed corpus on
//! stable Rust, so the fuzz targets and the replay test assert the same things.
//! Only `std` and the `mcr` crate are used here, for that reason.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use mcr::config::{Config, ConfigErrors, IfName, ParseCache};
use mcr::control::{self, Command};
use mcr::wire::{self, Datagram, Reject};

/// `mcr::wire::parse` on any bytes: never panics, and the result is exactly
/// the one the documentation of `wire` and its layer modules describes.
pub fn wire(frame: &[u8]) {
    let result = wire::parse(frame);
    let expected = wire_reference(frame);
    assert_eq!(
        result.map(|_| ()),
        expected.map(|_| ()),
        "parse disagrees with the documented checks and precedence"
    );

    if let Ok(layout) = expected {
        let d = result.expect("checked above");
        let u16_at = |i: usize| u16::from_be_bytes([frame[i], frame[i + 1]]);
        let ip = layout.ip;
        let udp = layout.udp;

        // The payload borrows from the frame (zero-copy) and lies within it.
        let bounds = frame.as_ptr_range();
        let payload = d.payload.as_ptr_range();
        assert!(bounds.start <= payload.start && payload.end <= bounds.end);
        assert_eq!(
            d.payload.as_ptr(),
            frame[udp + 8..].as_ptr(),
            "payload starts right after the UDP header"
        );
        // Bounded by the UDP length field, not by the buffer.
        let udp_len = usize::from(u16_at(udp + 4));
        assert_eq!(d.payload.len(), udp_len - 8);
        assert!(udp + udp_len <= ip + usize::from(u16_at(ip + 2)));

        let addr = |i: usize| Ipv4Addr::new(frame[i], frame[i + 1], frame[i + 2], frame[i + 3]);
        let expected = Datagram {
            vlan: layout.vlan,
            src: addr(ip + 12).into(),
            dst: addr(ip + 16).into(),
            src_port: u16_at(udp),
            dst_port: u16_at(udp + 2),
            ttl: frame[ip + 8],
            tos: frame[ip + 1],
            payload: &frame[udp + 8..udp + udp_len],
        };
        assert_eq!(d, expected);
    }

    // Bytes after the IPv4 total length (Ethernet padding) are ignored: once
    // the IPv4 header is accepted, cutting them off changes nothing.
    if let Some(end) = ip_end(frame) {
        assert_eq!(
            wire::parse(&frame[..end]),
            result,
            "padding changed the result"
        );
    }
}

/// Where the layers of an accepted frame start.
#[derive(Clone, Copy)]
struct Layout {
    vlan: Option<u16>,
    /// Offset of the IPv4 header.
    ip: usize,
    /// Offset of the UDP header.
    udp: usize,
}

/// `parse`'s documented behaviour, written out: the length checks of
/// `EthernetFrame`, `Ipv4Packet` and `UdpPacket` (`new_checked`), in the
/// precedence that `parse` documents.
fn wire_reference(frame: &[u8]) -> Result<Layout, Reject> {
    let u16_at = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);

    // Ethernet: 14 bytes, 18 when the outer EtherType is 0x8100. Only one
    // 0x8100 tag is looked into; whatever follows it is the inner EtherType.
    if frame.len() < 14 {
        return Err(Reject::Malformed);
    }
    let (ip, inner, vlan) = if u16_at(frame, 12) == 0x8100 {
        if frame.len() < 18 {
            return Err(Reject::Malformed);
        }
        (18, u16_at(frame, 16), Some(u16_at(frame, 14) & 0x0fff))
    } else {
        (14, u16_at(frame, 12), None)
    };
    if inner != 0x0800 {
        return Err(Reject::Unsupported);
    }

    // IPv4: version 4 and 20 <= IHL * 4 <= total length <= buffer.
    let packet = &frame[ip..];
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return Err(Reject::Malformed);
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total_len = usize::from(u16_at(packet, 2));
    if header_len < 20 || header_len > total_len || total_len > packet.len() {
        return Err(Reject::Malformed);
    }
    // Any fragment: MF set or a non-zero offset (DF and the reserved bit do
    // not count).
    if u16_at(packet, 6) & 0x3fff != 0 {
        return Err(Reject::Fragment);
    }
    if packet[9] != 17 {
        return Err(Reject::Unsupported);
    }

    // UDP, within the IPv4 payload: 8 <= length field <= buffer.
    let datagram = &packet[header_len..total_len];
    if datagram.len() < 8 {
        return Err(Reject::Malformed);
    }
    let udp_len = usize::from(u16_at(datagram, 4));
    if udp_len < 8 || udp_len > datagram.len() {
        return Err(Reject::Malformed);
    }
    Ok(Layout {
        vlan,
        ip,
        udp: ip + header_len,
    })
}

/// The end of the IPv4 packet (Ethernet header + IPv4 total length), when the
/// frame is IPv4 and its Ethernet and IPv4 headers pass their checks.
fn ip_end(frame: &[u8]) -> Option<usize> {
    if frame.len() < 14 {
        return None;
    }
    let ip = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    if frame.len() < ip || frame[ip - 2..ip] != [0x08, 0x00] {
        return None;
    }
    let packet = &frame[ip..];
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    ((20..=total_len).contains(&header_len) && total_len <= packet.len()).then_some(ip + total_len)
}

/// `Config::parse` on any UTF-8 text (other inputs are skipped): never panics;
/// a `Config` satisfies the invariants listed in the `config` module
/// documentation, and errors are non-empty, sorted and well-positioned.
pub fn config(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let whole = Config::parse(source, path);
    match &whole {
        Ok(config) => check_config(config),
        Err(errors) => check_config_errors(errors, source, path),
    }
    // Reloads read through a cache of `[[flow]]` blocks: cold, warm after this very file,
    // and warm after the file with its first half changed, it must say exactly what the
    // whole-file parse says, errors included.
    let render = |r: &Result<Config, ConfigErrors>| match r {
        Ok(c) => format!("{c:?}"),
        Err(e) => format!("ERR {e}"),
    };
    let want = render(&whole);
    let mut cache = ParseCache::default();
    assert_eq!(render(&cache.parse(source, path)), want, "cold cache");
    assert_eq!(render(&cache.parse(source, path)), want, "warm cache");
    let mut cache = ParseCache::default();
    let half = source.len() / 2;
    let changed: String = source
        .char_indices()
        .map(|(i, c)| if i < half && c == '1' { '2' } else { c })
        .collect();
    let _ = cache.parse(&changed, path);
    assert_eq!(
        render(&cache.parse(source, path)),
        want,
        "cache warmed by an edit"
    );
}

fn check_config(config: &Config) {
    let relay = &config.relay;
    assert!(relay
        .workers
        .is_none_or(|w| w.get() <= mcr::config::MAX_WORKERS));
    let (min, max) = mcr::config::STATS_INTERVAL_RANGE;
    assert!(relay
        .stats_interval
        .is_none_or(|d| (min..=max).contains(&d)));
    let (min, max) = mcr::config::RING_MEMORY_RANGE;
    assert!(
        (min..=max).contains(&relay.ring_memory),
        "ring_memory {}",
        relay.ring_memory
    );
    let mut names = HashSet::new();
    let mut inputs = HashSet::new();
    for flow in &config.flows {
        let name = &flow.name;
        assert!(
            !name.is_empty() && name.chars().count() <= 64,
            "flow name {name:?}"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')),
            "flow name {name:?}"
        );
        assert!(names.insert(name), "duplicate flow name {name:?}");

        let input = &flow.input;
        check_ifname(&input.interface);
        assert!(input.group.is_multicast(), "input group {}", input.group);
        assert_ne!(input.port, 0, "input port");
        if let Some(source) = input.source {
            assert!(
                !source.is_multicast() && !source.is_broadcast() && !source.is_unspecified(),
                "source {source} is not unicast"
            );
        }
        assert!(
            inputs.insert((&input.interface, input.group, input.port, input.source)),
            "two flows share the input {input}"
        );

        assert!(!flow.outputs.is_empty(), "flow {name:?} has no output");
        let mut outputs = HashSet::new();
        for output in &flow.outputs {
            check_ifname(&output.interface);
            assert!(output.group.is_multicast(), "output group {}", output.group);
            assert_ne!(output.port, 0, "output port");
            assert_ne!(output.ttl, 0, "output ttl");
            assert!(output.dscp.is_none_or(|d| d < 64), "dscp {:?}", output.dscp);
            if let Some(source) = output.source {
                assert!(
                    !source.is_multicast()
                        && !source.is_unspecified()
                        && !source.is_broadcast()
                        && !source.is_loopback(),
                    "output source {source} is not unicast"
                );
            }
            assert!(
                outputs.insert((&output.interface, output.group, output.port)),
                "flow {name:?} has the output {output} twice"
            );
        }
    }
    // No output is any flow's input, whatever the source.
    let input_keys: HashSet<_> = config
        .flows
        .iter()
        .map(|f| (&f.input.interface, f.input.group, f.input.port))
        .collect();
    for output in config.flows.iter().flat_map(|f| &f.outputs) {
        assert!(
            !input_keys.contains(&(&output.interface, output.group, output.port)),
            "output {output} is also an input"
        );
    }
}

/// `IfName`'s documented rules (the kernel's `dev_valid_name()`).
fn check_ifname(name: &IfName) {
    let s = name.as_str();
    assert!((1..=15).contains(&s.len()), "interface name {s:?}");
    assert!(s != "." && s != "..", "interface name {s:?}");
    assert!(
        !s.contains(['/', ':', '\0', ' ', '\t', '\n', '\x0b', '\x0c', '\r'])
            && !s.bytes().any(|b| b == 0xa0),
        "interface name {s:?}"
    );
}

fn check_config_errors(errors: &ConfigErrors, source: &str, path: &Path) {
    let errors_list = &errors.errors;
    assert!(!errors_list.is_empty(), "an Err with no errors");
    assert!(
        errors_list
            .windows(2)
            .all(|w| (w[0].line, w[0].col) <= (w[1].line, w[1].col)),
        "errors not sorted by position: {errors_list:?}"
    );
    let lines = source.matches('\n').count() + 1;
    for error in errors_list {
        assert_eq!(error.path, path);
        assert_eq!(error.line == 0, error.col == 0, "{error:?}");
        assert!(error.line <= lines, "line past the end: {error:?}");
    }
    // What the operator sees must render too.
    let _ = errors.to_string();
}

/// `mcr::control::parse_request` on any UTF-8 line (other inputs are skipped):
/// never panics; an error always has a message, and every accepted command is
/// also accepted in its canonical form.
pub fn control(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match control::parse_request(line) {
        Ok(command) => {
            let name = match command {
                Command::Stats => "stats",
                Command::Status => "status",
                Command::Reload => "reload",
                Command::Active => "active",
                Command::Standby => "standby",
            };
            let canonical = format!(r#"{{"v":{},"cmd":"{name}"}}"#, control::PROTOCOL);
            assert_eq!(control::parse_request(&canonical), Ok(command));
        }
        Err(message) => assert!(!message.is_empty()),
    }
}
