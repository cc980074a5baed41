//! Packet parsing for the forwarding path: Ethernet (at most one 802.1Q tag)
//! → IPv4 (options allowed) or IPv6 (hop-by-hop and destination options
//! skipped) → UDP.
//!
//! The hot path calls only [`parse`], once per received frame. It owns these
//! guarantees:
//!
//! - It never panics, whatever the bytes, and never allocates.
//! - Each length (Ethernet header and tag, IHL, IPv4 total length, IPv6
//!   payload length, UDP length) is checked once, by the `new_checked`
//!   constructor of the view for that layer, and each IPv6 extension header
//!   it skips once, by the walk in [`ipv6`]; after that the getters cannot
//!   fail.
//! - The returned [`Datagram`] borrows its payload from the frame (the ring
//!   memory), not from a copy.
//! - Every frame that is not forwarded gets exactly one [`Reject`] reason,
//!   whose [`name`](Reject::name) is a bounded metric label.
//! - Checksums are not verified: see [`ipv4`] for why.
//! - IPv4 is decided first and costs what it did before IPv6 was parsed; the
//!   IPv6 path is a call of its own.
//!
//! The per-layer views ([`EthernetFrame`], [`Ipv4Packet`], [`Ipv6Packet`],
//! [`UdpPacket`]) are public for tests, tools and encoding. They follow one
//! pattern: a thin wrapper over `T: AsRef<[u8]>`, header offsets in a private
//! `field` module, setters when `T: AsMut<[u8]>`, unknown EtherTypes and
//! protocols carried as values rather than errors.
#![forbid(unsafe_code)]

use core::fmt;
use std::net::IpAddr;

pub mod checksum;
pub mod ethernet;
pub mod igmp;
pub mod ipv4;
pub mod ipv6;
pub mod rtp;
pub mod udp;

#[cfg(test)]
mod testdata;

pub use ethernet::{EtherType, EthernetFrame};
pub use ipv4::{Ipv4Packet, Protocol};
pub use ipv6::Ipv6Packet;
pub use udp::UdpPacket;

/// A buffer refused by a view's `new_checked`: too short, or header fields
/// that contradict each other or the buffer length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("truncated or inconsistent packet header")
    }
}

impl std::error::Error for Error {}

/// A UDP datagram found in a frame, over IPv4 or IPv6, ready for a table
/// lookup. `src` and `dst` are always of the same family, the frame's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// VLAN ID of the 802.1Q tag, if the frame data carried one; `Some(0)` for
    /// a priority-only tag.
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// The IPv4 TTL or the IPv6 hop limit.
    pub ttl: u8,
    /// The IPv4 TOS byte or the IPv6 traffic class, which share one layout:
    /// DSCP in the upper six bits, ECN in the lower two.
    pub tos: u8,
    /// The UDP payload, bounded by the UDP length field.
    pub payload: &'a [u8],
}

/// Why [`parse`] dropped a frame. Each drop is counted under
/// [`name`](Reject::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Any IPv4 fragment, first (MF set) or later (offset != 0), whatever
    /// its protocol, and any IPv6 packet with a fragment header on the way
    /// to its upper layer. The relay does not reassemble.
    Fragment,
    /// A length or version inconsistency at any layer.
    Malformed,
    /// Well-formed but not for us: neither IPv4 nor IPv6, or an upper layer
    /// other than UDP.
    Unsupported,
    /// An IPv6 extension header the relay does not walk through to UDP: a
    /// routing header, AH, ESP, "no next header", hop-by-hop options not
    /// first, or more than [`ipv6::MAX_EXTENSION_HEADERS`] headers.
    Extension,
}

impl Reject {
    /// Every reason, for registering counters up front.
    pub const ALL: [Reject; 4] = [
        Reject::Fragment,
        Reject::Malformed,
        Reject::Unsupported,
        Reject::Extension,
    ];

    /// A stable label for metrics and logs.
    #[inline]
    pub fn name(self) -> &'static str {
        match self {
            Reject::Fragment => "fragment",
            Reject::Malformed => "malformed",
            Reject::Unsupported => "unsupported",
            Reject::Extension => "extension_header",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Error> for Reject {
    #[inline]
    fn from(_: Error) -> Self {
        Reject::Malformed
    }
}

/// Finds the UDP datagram in an Ethernet frame.
///
/// Precedence when several reasons apply: `Malformed` for a bad Ethernet
/// header, then `Unsupported` for an EtherType other than IPv4 and IPv6.
/// IPv4: `Malformed` for a bad header, then `Fragment`, then `Unsupported`
/// for a non-UDP protocol, then `Malformed` for a bad UDP header. IPv6:
/// `Malformed` for a bad fixed header (payload length 0 included), then the
/// extension headers in order, the first that decides winning: `Fragment`
/// for a fragment header, `Extension` for one the relay does not walk
/// through, `Malformed` for a truncated one it would skip (see [`ipv6`]);
/// then `Unsupported` for a non-UDP upper layer, then `Malformed` for a bad
/// UDP header. Bytes after the IPv4 total length or the IPv6 payload length
/// (Ethernet padding) are ignored.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Datagram<'_>, Reject> {
    let eth = EthernetFrame::new_checked(frame)?;
    let ethertype = eth.inner_ethertype();
    if ethertype != EtherType::Ipv4 {
        if ethertype == EtherType::Ipv6 {
            return parse_ipv6(eth.vlan_id(), eth.into_payload());
        }
        return Err(Reject::Unsupported);
    }
    let vlan = eth.vlan_id();

    let ip = Ipv4Packet::new_checked(eth.into_payload())?;
    if ip.is_fragment() {
        return Err(Reject::Fragment);
    }
    if ip.protocol() != Protocol::Udp {
        return Err(Reject::Unsupported);
    }
    let (src, dst, ttl) = (ip.src_addr(), ip.dst_addr(), ip.ttl());
    let tos = ip.dscp() << 2 | ip.ecn();

    let udp = UdpPacket::new_checked(ip.into_payload())?;
    Ok(datagram(vlan, src.into(), dst.into(), ttl, tos, udp))
}

/// The [`Datagram`] of a UDP view and the IP header fields around it.
#[inline]
fn datagram<'a>(
    vlan: Option<u16>,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tos: u8,
    udp: UdpPacket<&'a [u8]>,
) -> Datagram<'a> {
    Datagram {
        vlan,
        src,
        dst,
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        ttl,
        tos,
        payload: udp.into_payload(),
    }
}

/// [`parse`] from the IPv6 header on. Out of line, so that the IPv4 path,
/// which `parse` inlines into the worker's loop, stays as small as it was.
#[inline(never)]
fn parse_ipv6(vlan: Option<u16>, packet: &[u8]) -> Result<Datagram<'_>, Reject> {
    let ip = Ipv6Packet::new_checked(packet)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let (ttl, tos) = (ip.hop_limit(), ip.traffic_class());
    let (next, upper) = ip.into_upper_layer()?;
    if next != Protocol::Udp {
        return Err(Reject::Unsupported);
    }

    let udp = UdpPacket::new_checked(upper)?;
    Ok(datagram(vlan, src.into(), dst.into(), ttl, tos, udp))
}

/// True when the checksums of a frame [`parse`] accepted are correct: over
/// IPv4 the header checksum, and the UDP checksum unless it is 0 (none
/// computed, valid for IPv4); over IPv6, which has no header checksum, the
/// UDP checksum, which must not be 0. A pass over the payload: the packet
/// path calls it only for frames that neither the NIC nor the sending host
/// vouches for (the ring's checksum flags), so a frame corrupted before mcr is
/// never relayed with fresh, valid headers. Only for frames `parse` accepted:
/// it re-reads the EtherType (for the family), the IP and UDP headers' lengths
/// and checksums and, for IPv6, the extension headers' lengths, and nothing
/// else (not the fragment bits or the protocol), so for other frames its
/// answer means nothing.
pub fn verify_checksums(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.inner_ethertype() == EtherType::Ipv6 {
        return verify_ipv6_checksum(eth.into_payload());
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.into_payload()) else {
        return false;
    };
    if !ip.verify_checksum() {
        return false;
    }
    let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
    UdpPacket::new_checked(ip.into_payload()).is_ok_and(|udp| udp.verify_checksum(src, dst))
}

/// [`verify_checksums`] from the IPv6 header on.
fn verify_ipv6_checksum(packet: &[u8]) -> bool {
    let Ok(ip) = Ipv6Packet::new_checked(packet) else {
        return false;
    };
    let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
    let Ok((_, upper)) = ip.into_upper_layer() else {
        return false;
    };
    UdpPacket::new_checked(upper).is_ok_and(|udp| udp.verify_checksum(src, dst))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::testdata::{self, bytes, with_ipv6_extension, with_vlan_tag};
    use super::*;

    const CAPTURES: [&str; 8] = [
        testdata::UDP,
        testdata::UDP_PARTIAL_CSUM,
        testdata::IGMP_REPORT,
        testdata::FRAG_FIRST,
        testdata::FRAG_LAST,
        testdata::UDP_FOR_VLAN,
        testdata::TCP_SYN,
        testdata::ARP_REQUEST,
    ];

    /// Every capture, plus tagged and padded variants.
    fn corpus() -> Vec<Vec<u8>> {
        let mut frames: Vec<Vec<u8>> = CAPTURES
            .iter()
            .chain(&testdata::IPV6_CAPTURES)
            .map(|hex| bytes(hex))
            .collect();
        frames.push(with_vlan_tag(&bytes(testdata::UDP_FOR_VLAN), 100));
        frames.push(with_vlan_tag(&bytes(testdata::IGMP_REPORT), 7));
        let mut padded = bytes(testdata::IGMP_REPORT);
        padded.resize(60, 0);
        frames.push(padded);
        frames.push(with_vlan_tag(&bytes(testdata::UDP6_HOP_BY_HOP), 100));
        let mut padded = bytes(testdata::UDP6);
        padded.resize(100, 0);
        frames.push(padded);
        let udp6 = bytes(testdata::UDP6);
        frames.push(with_ipv6_extension(&udp6, 43, &[0, 0, 0, 0, 0, 0, 0, 0]));
        let mut chain = udp6;
        for _ in 0..ipv6::MAX_EXTENSION_HEADERS {
            chain = with_ipv6_extension(&chain, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
        }
        frames.push(chain);
        frames
    }

    fn udp_datagram(frame: &[u8]) -> Datagram<'_> {
        parse(frame).expect("a UDP datagram")
    }

    #[test]
    fn parses_captured_udp() {
        let frame = bytes(testdata::UDP);
        let d = udp_datagram(&frame);
        let expected_payload = &frame[42..];
        assert_eq!(
            d,
            Datagram {
                vlan: None,
                src: Ipv4Addr::new(10, 77, 0, 1).into(),
                dst: Ipv4Addr::new(239, 1, 1, 1).into(),
                src_port: 40000,
                dst_port: 5001,
                ttl: 8,
                tos: 0,
                payload: expected_payload,
            }
        );
        assert_eq!(d.payload.len(), 32);
        assert_eq!(d.payload.as_ptr(), frame[42..].as_ptr(), "zero-copy");
    }

    #[test]
    fn checksums_are_verified_on_request() {
        let good = bytes(testdata::UDP);
        assert!(verify_checksums(&good));
        // One payload bit flipped: the UDP checksum no longer matches.
        let mut flipped = good.clone();
        flipped[50] ^= 0x01;
        assert!(parse(&flipped).is_ok() && !verify_checksums(&flipped));
        // The IPv4 header checksum is wrong.
        let mut bad_ip = good.clone();
        bad_ip[24] ^= 0xff;
        assert!(parse(&bad_ip).is_ok() && !verify_checksums(&bad_ip));
        // UDP checksum 0: none computed, valid for IPv4, whatever the payload.
        let mut none = flipped.clone();
        none[40..42].copy_from_slice(&[0, 0]);
        assert!(verify_checksums(&none));
        // A locally generated frame before offload holds only the pseudo-header sum: it is
        // trusted through the ring's CSUMNOTREADY flag, never verified.
        assert!(!verify_checksums(&bytes(testdata::UDP_PARTIAL_CSUM)));
        assert!(!verify_checksums(&bytes(testdata::ARP_REQUEST)));
        assert!(!verify_checksums(&good[..30]));
    }

    #[test]
    fn partial_checksum_is_not_a_reason_to_drop() {
        let frame = bytes(testdata::UDP_PARTIAL_CSUM);
        assert_eq!(udp_datagram(&frame).payload.len(), 32);
    }

    #[test]
    fn parses_tagged_frame() {
        let untagged = bytes(testdata::UDP_FOR_VLAN);
        let tagged = with_vlan_tag(&untagged, 0x2064); // PCP 1, VID 100
        let plain = udp_datagram(&untagged);
        let d = udp_datagram(&tagged);
        assert_eq!(d.vlan, Some(100));
        assert_eq!(Datagram { vlan: None, ..d }, plain);
        assert_eq!(
            (d.dst, d.dst_port, d.ttl),
            (Ipv4Addr::new(239, 1, 1, 3).into(), 5003, 16)
        );
        assert_eq!(
            d.payload,
            b"mcr wire test \x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"
        );
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let frame = bytes(testdata::UDP_FOR_VLAN); // 66 bytes
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0xee; 20]);
        assert_eq!(udp_datagram(&padded), udp_datagram(&frame));
    }

    #[test]
    fn reasons_for_captured_frames() {
        let reason = |hex: &str| parse(&bytes(hex)).map(|_| ());
        assert_eq!(reason(testdata::IGMP_REPORT), Err(Reject::Unsupported));
        assert_eq!(reason(testdata::TCP_SYN), Err(Reject::Unsupported));
        assert_eq!(reason(testdata::ARP_REQUEST), Err(Reject::Unsupported));
        assert_eq!(
            reason(testdata::IPV6_ROUTER_SOLICIT),
            Err(Reject::Unsupported)
        );
        assert_eq!(reason(testdata::FRAG_FIRST), Err(Reject::Fragment));
        assert_eq!(reason(testdata::FRAG_LAST), Err(Reject::Fragment));
    }

    #[test]
    fn unsupported_tags() {
        let frame = bytes(testdata::UDP);
        let mut qinq = with_vlan_tag(&frame, 10);
        qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(parse(&qinq), Err(Reject::Unsupported));
        let double = with_vlan_tag(&with_vlan_tag(&frame, 10), 20);
        assert_eq!(parse(&double), Err(Reject::Unsupported));
    }

    #[test]
    fn parses_captured_udp6() {
        let frame = bytes(testdata::UDP6);
        let d = udp_datagram(&frame);
        assert_eq!(
            d,
            Datagram {
                vlan: None,
                src: Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1).into(),
                dst: Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234).into(),
                src_port: 40000,
                dst_port: 5001,
                ttl: 8,
                tos: 0,
                payload: &frame[62..],
            }
        );
        assert_eq!(d.payload.len(), 32);
        assert_eq!(d.payload.as_ptr(), frame[62..].as_ptr(), "zero-copy");
        // The same datagram as the IPv4 capture carries.
        assert_eq!(d.payload, udp_datagram(&bytes(testdata::UDP)).payload);
        assert!(verify_checksums(&frame));
    }

    #[test]
    fn skips_hop_by_hop_and_destination_options() {
        let frame = bytes(testdata::UDP6_HOP_BY_HOP);
        let d = udp_datagram(&frame);
        assert_eq!(
            d.dst,
            IpAddr::from(Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 1))
        );
        assert_eq!((d.src_port, d.dst_port), (40001, 5002));
        assert_eq!((d.ttl, d.tos), (16, 0xb9), "hop limit, traffic class");
        assert_eq!(d.payload.as_ptr(), frame[14 + 40 + 8 + 8..].as_ptr());
        assert_eq!(d.payload.len(), 24);
        assert!(verify_checksums(&frame));

        let frame = bytes(testdata::UDP6_DEST_OPTS);
        let d = udp_datagram(&frame);
        assert_eq!((d.src_port, d.dst_port, d.ttl), (40002, 5001, 8));
        assert_eq!(d.payload.as_ptr(), frame[14 + 40 + 16 + 8..].as_ptr());
        assert_eq!(d.payload, udp_datagram(&bytes(testdata::UDP6)).payload);
        assert!(verify_checksums(&frame));
    }

    #[test]
    fn reasons_for_ipv6_frames() {
        let reason = |frame: &[u8]| parse(frame).map(|_| ());
        let udp6 = bytes(testdata::UDP6);
        assert_eq!(reason(&bytes(testdata::FRAG6_FIRST)), Err(Reject::Fragment));
        assert_eq!(reason(&bytes(testdata::FRAG6_LAST)), Err(Reject::Fragment));
        assert_eq!(
            reason(&bytes(testdata::MLD2_REPORT)),
            Err(Reject::Unsupported),
            "ICMPv6 after hop-by-hop"
        );
        let routing = with_ipv6_extension(&udp6, 43, &[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reason(&routing), Err(Reject::Extension));
        // 8 bytes of destination options before the 40-byte datagram. A length field of 48
        // bytes leaves nothing for UDP; one of 56 runs past the payload.
        let mut opts = with_ipv6_extension(&udp6, 60, &[0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            reason(&opts),
            Err(Reject::Malformed),
            "nothing left for UDP"
        );
        opts[14 + 40 + 1] = 6;
        assert_eq!(reason(&opts), Err(Reject::Malformed), "truncated extension");
        opts[14 + 40 + 1] = 0;
        assert_eq!(reason(&opts), Ok(()));
        let mut jumbo = udp6.clone();
        jumbo[18..20].copy_from_slice(&[0, 0]);
        assert_eq!(reason(&jumbo), Err(Reject::Malformed), "jumbogram");
        let mut version = udp6.clone();
        version[14] = 0x45;
        assert_eq!(
            reason(&version),
            Err(Reject::Malformed),
            "EtherType 0x86dd, version 4"
        );
        let mut v6_in_v4 = udp6.clone();
        v6_in_v4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            reason(&v6_in_v4),
            Err(Reject::Malformed),
            "EtherType 0x0800, version 6"
        );
        // UDP bounded by the IPv6 payload length, not by the frame.
        let mut long_udp = udp6.clone();
        long_udp[58..60].copy_from_slice(&41u16.to_be_bytes());
        long_udp.push(0);
        assert_eq!(reason(&long_udp), Err(Reject::Malformed));
        let mut short_udp = udp6.clone();
        short_udp[58..60].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(parse(&short_udp).map(|d| d.payload.len()), Ok(22));
    }

    #[test]
    fn ipv6_padding_and_tags() {
        let frame = bytes(testdata::UDP6_HOP_BY_HOP);
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0xee; 20]);
        assert_eq!(udp_datagram(&padded), udp_datagram(&frame));
        assert!(verify_checksums(&padded));

        let tagged = with_vlan_tag(&frame, 0xa064); // PCP 5, VID 100
        let d = udp_datagram(&tagged);
        assert_eq!(d.vlan, Some(100));
        assert_eq!(Datagram { vlan: None, ..d }, udp_datagram(&frame));
        assert!(verify_checksums(&tagged));
        let tagged_frag = with_vlan_tag(&bytes(testdata::FRAG6_FIRST), 100);
        assert_eq!(parse(&tagged_frag), Err(Reject::Fragment));
    }

    #[test]
    fn ipv6_checksums_are_verified_on_request() {
        let good = bytes(testdata::UDP6);
        assert!(verify_checksums(&good));
        let mut flipped = good.clone();
        flipped[70] ^= 0x01; // payload
        assert!(parse(&flipped).is_ok() && !verify_checksums(&flipped));
        let mut addr = good.clone();
        addr[14 + 39] ^= 0x01; // the group: the pseudo-header covers it
        assert!(parse(&addr).is_ok() && !verify_checksums(&addr));
        // Zero: valid over IPv4 (see above), never over IPv6.
        let mut zero = good.clone();
        zero[60..62].copy_from_slice(&[0, 0]);
        assert!(parse(&zero).is_ok() && !verify_checksums(&zero));
        let mut zero4 = bytes(testdata::UDP);
        zero4[40..42].copy_from_slice(&[0, 0]);
        assert!(verify_checksums(&zero4));
        // IPv6 has no header checksum: the hop limit and flow label are not covered.
        let mut hops = good.clone();
        hops[14 + 7] = 1;
        hops[14 + 3] ^= 0xff;
        assert!(verify_checksums(&hops));
        assert!(!verify_checksums(&good[..70]));
        assert!(!verify_checksums(&bytes(testdata::FRAG6_FIRST)));
    }

    /// Applies `edit` to the captured UDP frame and parses it.
    fn parse_edited(edit: impl Fn(&mut Vec<u8>)) -> Result<usize, Reject> {
        let mut frame = bytes(testdata::UDP);
        edit(&mut frame);
        parse(&frame).map(|d| d.payload.len())
    }

    #[test]
    fn malformed_headers() {
        // Offsets into the frame: IPv4 at 14, UDP at 34.
        assert_eq!(parse_edited(|_| {}), Ok(32));
        assert_eq!(
            parse_edited(|f| f[14] = 0x65),
            Err(Reject::Malformed),
            "version 6"
        );
        assert_eq!(
            parse_edited(|f| f[14] = 0x44),
            Err(Reject::Malformed),
            "IHL 4"
        );
        assert_eq!(
            parse_edited(|f| f[14] = 0x4f),
            Err(Reject::Malformed),
            "IHL 15"
        );
        let total = |n: u16| move |f: &mut Vec<u8>| f[16..18].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            parse_edited(total(61)),
            Err(Reject::Malformed),
            "total > buffer"
        );
        assert_eq!(
            parse_edited(total(19)),
            Err(Reject::Malformed),
            "total < IHL"
        );
        assert_eq!(
            parse_edited(total(27)),
            Err(Reject::Malformed),
            "no room for UDP"
        );
        let udp_len = |n: u16| move |f: &mut Vec<u8>| f[38..40].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            parse_edited(udp_len(41)),
            Err(Reject::Malformed),
            "UDP > IP"
        );
        assert_eq!(parse_edited(udp_len(7)), Err(Reject::Malformed), "UDP < 8");
        assert_eq!(parse_edited(udp_len(30)), Ok(22), "UDP < IP payload");
        // An IP total length shorter than the UDP length is caught too, even
        // though the frame holds the bytes.
        assert_eq!(parse_edited(total(50)), Err(Reject::Malformed));
    }

    #[test]
    fn fragment_flags() {
        let flags = |b: u8| move |f: &mut Vec<u8>| f[20] = b;
        assert_eq!(parse_edited(flags(0x00)), Ok(32), "DF clear");
        assert_eq!(parse_edited(flags(0x20)), Err(Reject::Fragment), "MF");
        assert_eq!(parse_edited(flags(0x01)), Err(Reject::Fragment), "offset");
        assert_eq!(parse_edited(flags(0x80)), Ok(32), "reserved bit");
        let tcp_fragment = |f: &mut Vec<u8>| {
            f[20] = 0x20;
            f[23] = 6;
        };
        assert_eq!(parse_edited(tcp_fragment), Err(Reject::Fragment));
    }

    #[test]
    fn reject_names() {
        let names: Vec<_> = Reject::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            ["fragment", "malformed", "unsupported", "extension_header"]
        );
        assert_eq!(Reject::Malformed.to_string(), "malformed");
        assert_eq!(Reject::from(Error), Reject::Malformed);
    }

    #[test]
    fn every_prefix_parses_the_same_or_is_malformed() {
        for frame in corpus() {
            let full = parse(&frame);
            for len in 0..frame.len() {
                let prefix = parse(&frame[..len]);
                assert!(
                    prefix == full || prefix == Err(Reject::Malformed),
                    "prefix {len} of a {}-byte frame: {prefix:?} vs {full:?}",
                    frame.len()
                );
            }
        }
    }

    /// What must hold for any accepted frame, whatever its origin.
    fn assert_sane(frame: &[u8], result: Result<Datagram<'_>, Reject>) {
        if let Ok(d) = result {
            let bounds = frame.as_ptr_range();
            let payload = d.payload.as_ptr_range();
            assert!(bounds.start <= payload.start && payload.end <= bounds.end);
            assert!(d.payload.len() + 42 <= frame.len());
        }
    }

    #[test]
    fn every_single_byte_change_of_the_headers() {
        for frame in corpus() {
            let mut mutated = frame.clone();
            // Far enough for IPv6 with extension headers to reach UDP.
            for pos in 0..frame.len().min(80) {
                for value in 0..=u8::MAX {
                    mutated[pos] = value;
                    assert_sane(&mutated, parse(&mutated));
                }
                mutated[pos] = frame[pos];
            }
        }
    }

    /// xorshift64: deterministic, dependency-free, good enough to scatter
    /// mutations.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut rng = Rng(0x6d63_7220_7769_7265);
        let corpus = corpus();
        let mut accepted = 0;
        for round in 0..50_000 {
            let mut frame = corpus[round % corpus.len()].clone();
            for _ in 0..1 + rng.below(6) {
                // Mostly headers, where the decisions are made (IPv6 with extension headers
                // reaches UDP by byte 78).
                let span = if rng.below(4) == 0 {
                    frame.len()
                } else {
                    frame.len().min(80)
                };
                let pos = rng.below(span);
                frame[pos] = rng.next() as u8;
            }
            match rng.below(4) {
                0 => frame.truncate(rng.below(frame.len() + 1)),
                1 => frame.resize(frame.len() + rng.below(64), rng.next() as u8),
                _ => {}
            }
            let result = parse(&frame);
            accepted += usize::from(result.is_ok());
            assert_sane(&frame, result);
        }
        // Some mutations must survive, or the test would only exercise the
        // first checks.
        assert!(accepted > 1_000, "only {accepted} mutated frames parsed");
    }
}
