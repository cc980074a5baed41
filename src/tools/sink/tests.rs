//! The sink's unit tests: control messages, the tally, the report and option checks.

use super::*;

/// Appends one control message as the kernel lays it out (`CMSG_SPACE` per message).
fn push(v: &mut Vec<u8>, level: i32, kind: i32, data: &[u8]) {
    let len = std::mem::size_of::<libc::cmsghdr>() + data.len();
    let start = v.len();
    v.extend_from_slice(&len.to_ne_bytes());
    v.extend_from_slice(&level.to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(data);
    v.resize(start + os::cmsg_space(data.len()), 0);
}

fn control(dst: Ipv4Addr, ttl: i32) -> Vec<u8> {
    control_tos(dst, ttl, 0)
}

fn control_tos(dst: Ipv4Addr, ttl: i32, tos: u8) -> Vec<u8> {
    let mut v = Vec::new();
    let mut pktinfo = [0u8; 12];
    pktinfo[..4].copy_from_slice(&7i32.to_ne_bytes());
    pktinfo[8..].copy_from_slice(&dst.octets());
    push(&mut v, libc::IPPROTO_IP, libc::IP_PKTINFO, &pktinfo);
    push(&mut v, libc::IPPROTO_IP, libc::IP_TTL, &ttl.to_ne_bytes());
    push(&mut v, libc::IPPROTO_IP, libc::IP_TOS, &[tos]);
    assert_eq!(v.len(), CONTROL_V4);
    v
}

/// What an `IPV6_RECVPKTINFO`/`RECVHOPLIMIT`/`RECVTCLASS` socket gets, in the kernel's
/// order (`ip6_datagram_recv_specific_ctl`: pktinfo, hop limit, traffic class).
fn control_v6(dst: Ipv6Addr, hops: i32, tclass: i32) -> Vec<u8> {
    let mut v = Vec::new();
    let mut pktinfo = [0u8; 20];
    pktinfo[..16].copy_from_slice(&dst.octets());
    pktinfo[16..].copy_from_slice(&7i32.to_ne_bytes());
    assert_eq!(pktinfo.len(), std::mem::size_of::<libc::in6_pktinfo>());
    push(&mut v, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &pktinfo);
    push(
        &mut v,
        libc::IPPROTO_IPV6,
        libc::IPV6_HOPLIMIT,
        &hops.to_ne_bytes(),
    );
    push(
        &mut v,
        libc::IPPROTO_IPV6,
        libc::IPV6_TCLASS,
        &tclass.to_ne_bytes(),
    );
    assert_eq!(v.len(), CONTROL_V6);
    v
}

#[test]
fn ipv6_control_messages_decode_to_the_ipv4_fields() {
    let g: Ipv6Addr = "ff3e::77:1".parse().unwrap();
    assert_eq!(
        Ancillary::decode(&control_v6(g, 7, 34 << 2 | 2)),
        Ancillary {
            dst: Some(IpAddr::V6(g)),
            ttl: Some(7),
            tos: Some(34 << 2 | 2),
        }
    );
    assert_eq!(
        Ancillary::decode(&control_tos(Ipv4Addr::new(239, 1, 1, 1), 64, 184)),
        Ancillary {
            dst: Some(IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1))),
            ttl: Some(64),
            tos: Some(184),
        }
    );
    // Values an `int` can hold but the header cannot are not a TTL or a TOS byte.
    let odd = Ancillary::decode(&control_v6(g, 300, -1));
    assert_eq!((odd.ttl, odd.tos), (None, None));
    // A pktinfo too short for an address gives none; the other messages still count.
    let mut v = Vec::new();
    push(&mut v, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &[0xff; 12]);
    push(
        &mut v,
        libc::IPPROTO_IPV6,
        libc::IPV6_HOPLIMIT,
        &1i32.to_ne_bytes(),
    );
    assert_eq!(
        Ancillary::decode(&v),
        Ancillary {
            dst: None,
            ttl: Some(1),
            tos: None
        }
    );
    // IPv4 option numbers at the IPv6 level (and the reverse) are other options.
    let mut v = Vec::new();
    push(
        &mut v,
        libc::IPPROTO_IPV6,
        libc::IP_TTL,
        &9i32.to_ne_bytes(),
    );
    push(
        &mut v,
        libc::IPPROTO_IP,
        libc::IPV6_HOPLIMIT,
        &9i32.to_ne_bytes(),
    );
    assert_eq!(Ancillary::decode(&v), Ancillary::default());
}

#[test]
fn tally_counts_ipv6_groups_hop_limits_and_traffic_classes() {
    let g0: Ipv6Addr = "ff3e::1:ffff".parse().unwrap();
    let g1: Ipv6Addr = "ff3e::2:0".parse().unwrap();
    let mut t = Tally::new(Groups::new(g0, 2).unwrap());
    let now = 1_000_000;
    for seq in 0..3 {
        t.datagram(
            &probe(1, seq, now - 10_000),
            &control_v6(g0, 7, 34 << 2),
            false,
            now,
        );
    }
    t.datagram(
        &probe(2, 0, now - 10_000),
        &control_v6(g1, 5, 46 << 2),
        false,
        now,
    );
    // The group's IPv4 look-alike and the next IPv6 group are foreign.
    t.datagram(
        &probe(3, 0, 0),
        &control(Ipv4Addr::new(0, 2, 0, 0), 7),
        false,
        now,
    );
    let g2: Ipv6Addr = "ff3e::2:1".parse().unwrap();
    t.datagram(&probe(3, 0, 0), &control_v6(g2, 7, 0), false, now);
    let r = t.report();
    assert_eq!((r.received, r.foreign, r.streams, r.lost), (4, 2, 2, 0));
    assert_eq!((r.ttl_min, r.ttl_max), (Some(5), Some(7)));
    assert_eq!((r.dscp_min, r.dscp_max), (Some(34), Some(46)));
    assert_eq!(r.per_stream[0].group, IpAddr::V6(g0));
    assert_eq!(r.per_stream[1].group, IpAddr::V6(g1));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["per_stream"][1]["group"], "ff3e::2:0");
    assert_eq!(json["ttl_max"], 7);
    assert_eq!(json["dscp_min"], 34);
}

fn probe(stream: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
    let mut b = vec![0u8; 100];
    payload::write(&mut b, stream, seq, sent_ns);
    b
}

#[test]
fn tally_counts_streams_foreign_corrupt_ttl_and_latency() {
    let g0 = Ipv4Addr::new(239, 1, 1, 1);
    let g1 = Ipv4Addr::new(239, 1, 1, 2);
    let mut t = Tally::new(Groups::new(g0, 2).unwrap());
    let now = 1_000_000;
    for seq in [0, 1, 2, 4, 3, 3] {
        t.datagram(&probe(10, seq, now - 20_000), &control(g0, 64), false, now);
    }
    t.datagram(
        &probe(11, 0, now - 40_000),
        &control_tos(g1, 3, 46 << 2 | 1),
        false,
        now,
    );
    // Not an asked group, and no destination at all: foreign, not received.
    t.datagram(
        &probe(12, 0, 0),
        &control(Ipv4Addr::new(239, 1, 1, 3), 64),
        false,
        now,
    );
    t.datagram(&probe(12, 0, 0), &[], false, now);
    // Garbage and truncated datagrams on an asked group: received but corrupt.
    t.datagram(b"hello", &control(g1, 64), false, now);
    t.datagram(&probe(11, 1, 0), &control(g1, 64), true, now);

    let r = t.report();
    assert_eq!(r.received, 9);
    assert_eq!(r.bytes, 8 * 100 + 5);
    assert_eq!((r.foreign, r.corrupt), (2, 2));
    assert_eq!((r.streams, r.lost, r.duplicates, r.reordered), (2, 0, 1, 1));
    assert_eq!((r.ttl_min, r.ttl_max), (Some(3), Some(64)));
    assert_eq!(
        (r.dscp_min, r.dscp_max),
        (Some(0), Some(46)),
        "ECN bits ignored"
    );
    let l = r.latency_us.unwrap();
    assert_eq!((l.p50, l.max), (20.0, 40.0));
    assert_eq!(
        r.per_stream[0],
        StreamReport {
            stream: 10,
            group: IpAddr::V4(g0),
            received: 6,
            bytes: 600,
            lost: 0,
            duplicates: 1,
            reordered: 1,
            first_seq: 0,
            last_seq: 4,
            rtp: None,
        }
    );
    assert_eq!(r.per_stream[1].group, IpAddr::V4(g1));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["per_stream"][1]["group"], "239.1.1.2",
        "a string, as always"
    );
    assert_eq!(
        r.to_string(),
        "received=9 bytes=805 streams=2 lost=0 duplicates=1 reordered=1 corrupt=2 \
         ttl=3..64 dscp=0..46 latency_us avg=22.9 p50=20.0 p99=40.0 max=40.0"
    );
}

#[test]
fn an_empty_report_displays_placeholders() {
    let t = Tally::new(Groups::new(Ipv4Addr::new(239, 1, 1, 1), 1).unwrap());
    let r = t.report();
    assert_eq!(
        r.to_string(),
        "received=0 bytes=0 streams=0 lost=0 duplicates=0 reordered=0 corrupt=0 \
         ttl=- dscp=- latency_us avg=- p50=- p99=- max=-"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["latency_us"], serde_json::Value::Null);
    assert_eq!(json["per_stream"], serde_json::json!([]));
}

#[test]
fn bad_options_are_rejected_before_joining() {
    // Several unicast "groups": only one unicast address is a stream.
    let mut o = SinkOptions::new(Ipv4Addr::new(10, 1, 1, 1), 2, 5000, "lo");
    assert!(matches!(run(&o), Err(SinkError::Groups { .. })));
    o.group_count = 1;
    o.group = Ipv4Addr::new(239, 1, 1, 1).into();
    o.port = 0;
    assert!(matches!(run(&o), Err(SinkError::Port)));
    o.port = 5000;
    o.interface = "no-such-if-y".into();
    let e = run(&o).unwrap_err();
    assert!(e.to_string().contains("no-such-if-y"), "{e}");
    // IPv6: several unicast addresses, a range leaving ff00::/8, a source of the other family.
    let mut o = SinkOptions::new("fd99::2".parse::<Ipv6Addr>().unwrap(), 2, 5000, "lo");
    assert!(matches!(run(&o), Err(SinkError::Groups { .. })));
    o.group = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap();
    o.group_count = 3;
    assert!(matches!(run(&o), Err(SinkError::Groups { .. })));
    o.group = "ff3e::77:1".parse().unwrap();
    o.source = Some("10.99.0.1".parse().unwrap());
    let e = run(&o).unwrap_err();
    assert!(matches!(e, SinkError::SourceFamily { .. }), "{e}");
    let mut o = SinkOptions::new(Ipv4Addr::new(232, 1, 1, 1), 1, 5000, "lo");
    o.source = Some("fd99::1".parse().unwrap());
    assert!(matches!(run(&o), Err(SinkError::SourceFamily { .. })));
}

#[test]
fn the_tick_is_never_zero() {
    let mut o = SinkOptions::new(Ipv4Addr::new(239, 1, 1, 1), 1, 5000, "lo");
    assert_eq!(tick(&o), TICK);
    o.idle_timeout = Duration::ZERO;
    assert_eq!(tick(&o), Duration::from_millis(1));
}
