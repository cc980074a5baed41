//! The checks behind the fuzz targets, one function per target.
//!
//! Each function takes the raw fuzzer input, calls the parser and asserts what
//! the parser's documentation promises; a panic is a finding. The same file is
//! compiled into `tests/fuzz_corpus.rs`, which replays the committed corpus on
//! stable Rust, so the fuzz targets and the replay test assert the same things.
//! Only `std` and the `mcr` crate are used here, for that reason.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
        // Bounded by the UDP length field, not by the buffer, and within the
        // IP packet.
        let udp_len = usize::from(u16_at(udp + 4));
        assert_eq!(d.payload.len(), udp_len - 8);
        assert!(udp + udp_len <= ip_end(frame).expect("an accepted IP header"));

        // (address, TTL or hop limit, TOS byte or traffic class)
        let (src, dst, ttl, tos): (IpAddr, IpAddr, u8, u8) = if layout.v6 {
            let addr = |i: usize| {
                let octets: [u8; 16] = frame[i..i + 16].try_into().expect("16 bytes");
                Ipv6Addr::from(octets)
            };
            let tclass = frame[ip] << 4 | frame[ip + 1] >> 4;
            (
                addr(ip + 8).into(),
                addr(ip + 24).into(),
                frame[ip + 7],
                tclass,
            )
        } else {
            let addr = |i: usize| Ipv4Addr::new(frame[i], frame[i + 1], frame[i + 2], frame[i + 3]);
            (
                addr(ip + 12).into(),
                addr(ip + 16).into(),
                frame[ip + 8],
                frame[ip + 1],
            )
        };
        let expected = Datagram {
            vlan: layout.vlan,
            src,
            dst,
            src_port: u16_at(udp),
            dst_port: u16_at(udp + 2),
            ttl,
            tos,
            payload: &frame[udp + 8..udp + udp_len],
        };
        assert_eq!(d, expected);
    }

    // Bytes after the IPv4 total length or the IPv6 payload (Ethernet
    // padding) are ignored: once the IP header is accepted, cutting them off
    // changes nothing.
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
    /// Offset of the IP header.
    ip: usize,
    /// IPv6 rather than IPv4.
    v6: bool,
    /// Offset of the UDP header.
    udp: usize,
}

/// `parse`'s documented behaviour, written out: the length checks of
/// `EthernetFrame`, `Ipv4Packet`, `Ipv6Packet` and `UdpPacket`
/// (`new_checked`) and the IPv6 extension header rules of `wire::ipv6`, in
/// the precedence that `parse` documents.
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
    if inner == 0x86dd {
        return ipv6_reference(frame, ip).map(|udp| Layout {
            vlan,
            ip,
            v6: true,
            udp,
        });
    }
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
        v6: false,
        udp: ip + header_len,
    })
}

/// The IPv6 part of [`wire_reference`], from the IPv6 header at `ip`: the
/// offset of the UDP header, or why there is none.
fn ipv6_reference(frame: &[u8], ip: usize) -> Result<usize, Reject> {
    // Version 6 and 0 < payload length <= buffer - 40 (0 is a jumbogram).
    let packet = &frame[ip..];
    if packet.len() < 40 || packet[0] >> 4 != 6 {
        return Err(Reject::Malformed);
    }
    let end = 40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if end == 40 || end > packet.len() {
        return Err(Reject::Malformed);
    }
    // Extension headers, in order, within the payload: a fragment header
    // anywhere is a fragment; hop-by-hop options (first only) and destination
    // options are skipped, at most four headers in all; routing, AH, ESP, "no
    // next header", a later hop-by-hop or a fifth header to skip are refused.
    // Anything else is the upper layer.
    let (mut next, mut at, mut skipped) = (packet[6], 40, 0);
    loop {
        match next {
            44 => return Err(Reject::Fragment),
            0 if skipped == 0 => {}
            60 => {}
            0 | 43 | 50 | 51 | 59 => return Err(Reject::Extension),
            _ => break,
        }
        if skipped == 4 {
            return Err(Reject::Extension);
        }
        if at + 2 > end {
            return Err(Reject::Malformed);
        }
        let len = 8 * (usize::from(packet[at + 1]) + 1);
        if at + len > end {
            return Err(Reject::Malformed);
        }
        (next, at, skipped) = (packet[at], at + len, skipped + 1);
    }
    if next != 17 {
        return Err(Reject::Unsupported);
    }

    // UDP, within the IPv6 payload: 8 <= length field <= what is left.
    let datagram = &packet[at..end];
    if datagram.len() < 8 {
        return Err(Reject::Malformed);
    }
    let udp_len = usize::from(u16::from_be_bytes([datagram[4], datagram[5]]));
    if udp_len < 8 || udp_len > datagram.len() {
        return Err(Reject::Malformed);
    }
    Ok(ip + at)
}

/// The end of the IP packet (Ethernet header + IPv4 total length, or + 40 +
/// IPv6 payload length), when the frame is IPv4 or IPv6 and its Ethernet and
/// IP headers pass their checks.
fn ip_end(frame: &[u8]) -> Option<usize> {
    if frame.len() < 14 {
        return None;
    }
    let ip = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    if frame.len() < ip {
        return None;
    }
    let packet = &frame[ip..];
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([packet[i], packet[i + 1]]));
    match frame[ip - 2..ip] {
        [0x08, 0x00] => {
            if packet.len() < 20 || packet[0] >> 4 != 4 {
                return None;
            }
            let header_len = usize::from(packet[0] & 0x0f) * 4;
            let total_len = u16_at(2);
            ((20..=total_len).contains(&header_len) && total_len <= packet.len())
                .then_some(ip + total_len)
        }
        [0x86, 0xdd] => {
            if packet.len() < 40 || packet[0] >> 4 != 6 {
                return None;
            }
            let end = 40 + u16_at(4);
            (end > 40 && end <= packet.len()).then_some(ip + end)
        }
        _ => None,
    }
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
                !source.is_multicast() && !is_broadcast(source) && !source.is_unspecified(),
                "source {source} is not unicast"
            );
            assert_eq!(source.is_ipv4(), input.group.is_ipv4(), "source family");
        }
        assert!(
            inputs.insert((&input.interface, input.group, input.port, input.source)),
            "two flows share the input {input}"
        );

        assert!(!flow.outputs.is_empty(), "flow {name:?} has no output");
        let mut outputs = HashSet::new();
        for output in &flow.outputs {
            match &output.interface {
                Some(name) => check_ifname(name),
                None => assert!(output.unicast, "only a unicast output may be routed"),
            }
            assert!(
                output.group.is_multicast() != output.unicast,
                "output destination {}",
                output.group
            );
            assert_ne!(output.port, 0, "output port");
            assert_ne!(output.ttl, 0, "output ttl");
            assert!(output.dscp.is_none_or(|d| d < 64), "dscp {:?}", output.dscp);
            if let Some(source) = output.source {
                assert!(
                    !source.is_multicast()
                        && !source.is_unspecified()
                        && !is_broadcast(source)
                        && !source.is_loopback(),
                    "output source {source} is not unicast"
                );
                assert_eq!(source.is_ipv4(), output.group.is_ipv4(), "source family");
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
            output
                .interface
                .as_ref()
                .is_none_or(|i| { !input_keys.contains(&(i, output.group, output.port)) }),
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
            let cmd = match command {
                Command::Stats => r#""stats""#.to_string(),
                Command::Status => r#""status""#.to_string(),
                Command::Reload => r#""reload""#.to_string(),
                Command::Active => r#""active""#.to_string(),
                Command::Standby => r#""standby""#.to_string(),
                Command::Lease { ms } => format!(r#"{{"lease":{{"ms":{ms}}}}}"#),
            };
            let canonical = format!(r#"{{"v":{},"cmd":{cmd}}}"#, control::PROTOCOL);
            assert_eq!(control::parse_request(&canonical), Ok(command));
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// The IPv4 limited broadcast address (IPv6 has none).
fn is_broadcast(addr: std::net::IpAddr) -> bool {
    matches!(addr, std::net::IpAddr::V4(a) if a.is_broadcast())
}
