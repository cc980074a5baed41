//! IPv6 headers (RFC 8200) and the extension headers between them and UDP.
//!
//! [`Ipv6Packet`] is a zero-copy view. A view from [`Ipv6Packet::new_checked`] satisfies
//! `40 <= buffer length`, `version() == 6` and `0 < payload_len() <= buffer length - 40`, so
//! no getter panics on it. Bytes past `40 + payload_len()` are link-layer padding, not part
//! of [`payload`](Ipv6Packet::payload), which stays total even when a setter later breaks the
//! invariant: it returns an empty slice.
//!
//! A payload length of 0 is refused: it means a jumbogram (RFC 2675), whose real length lives
//! in a hop-by-hop option and which no Ethernet link carries; an empty packet holds no
//! datagram either.
//!
//! Multicast over IPv6 often carries extension headers before UDP: a hop-by-hop header with
//! a router alert, destination options. [`Ipv6Packet::upper_layer`] walks them, with the
//! rules the packet path needs:
//!
//! - hop-by-hop options (only as the first header) and destination options are skipped,
//!   whatever options they hold (a relay below the IP stack acts on none of them), each
//!   `8 * (hdr_ext_len + 1)` bytes long and checked against the payload;
//! - a fragment header is [`Reject::Fragment`]: the relay never forwards part of a datagram;
//! - a routing header, AH, ESP, "no next header", a hop-by-hop header that is not first, or
//!   a fifth header to skip is [`Reject::Extension`]: nothing the relay forwards carries
//!   them, and the bound keeps the walk short;
//! - anything else ends the walk: it is the upper-layer protocol, UDP or not.
//!
//! IPv6 has no header checksum. The UDP checksum is mandatory (RFC 8200 §8.1); see
//! [`super::verify_checksums`].

use std::net::Ipv6Addr;

use super::ipv4::Protocol;
use super::{Error, Reject};

mod field {
    use core::ops::Range;

    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header; extension headers are part of the payload.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The most extension headers [`Ipv6Packet::upper_layer`] skips.
pub const MAX_EXTENSION_HEADERS: usize = 4;

const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it. Getters and setters panic if it is shorter than
    /// [`HEADER_LEN`]; use this for encoding.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, once, everything the getters rely on: the buffer holds the fixed header, the
    /// version is 6, and `0 < payload length <= buffer - 40`.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || self.version() != 6 {
            return Err(Error);
        }
        let payload_len = usize::from(self.payload_len());
        if payload_len == 0 || payload_len > len - HEADER_LEN {
            return Err(Error);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// The traffic class: DSCP in the upper six bits, ECN in the lower two, as in the IPv4
    /// TOS byte.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & FLOW_LABEL_MASK
    }

    /// Length of everything after the fixed header (extension headers included), in bytes.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The header that follows the fixed header: an extension header or the upper layer.
    #[inline]
    pub fn next_header(&self) -> Protocol {
        self.buffer.as_ref()[field::NEXT_HEADER].into()
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        read_addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The bytes from the end of the fixed header to `40 + payload_len()`: extension
    /// headers, then the upper layer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The upper-layer protocol and its bytes, after skipping the extension headers the
    /// module documentation lists; the reason to drop the packet otherwise. Not a check of
    /// the upper layer itself.
    #[inline]
    pub fn upper_layer(&self) -> Result<(Protocol, &[u8]), Reject> {
        skip_extension_headers(self.next_header(), self.payload())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// Like [`payload`](Ipv6Packet::payload), but borrowing from the underlying buffer
    /// rather than from the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// Like [`upper_layer`](Ipv6Packet::upper_layer), but borrowing from the underlying
    /// buffer rather than from the view.
    #[inline]
    pub fn into_upper_layer(self) -> Result<(Protocol, &'a [u8]), Reject> {
        let next = self.next_header();
        skip_extension_headers(next, self.into_payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_ver_tc_flow(&mut self, mask: u32, bits: u32) {
        let value = (self.ver_tc_flow() & !mask) | (bits & mask);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_version(&mut self, version: u8) {
        self.set_ver_tc_flow(0xf000_0000, u32::from(version) << 28);
    }

    #[inline]
    pub fn set_traffic_class(&mut self, traffic_class: u8) {
        self.set_ver_tc_flow(0x0ff0_0000, u32::from(traffic_class) << 20);
    }

    /// Sets the flow label, which must fit in 20 bits.
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        debug_assert!(label <= FLOW_LABEL_MASK);
        self.set_ver_tc_flow(FLOW_LABEL_MASK, label);
    }

    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_next_header(&mut self, next: Protocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next.into();
    }

    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload bytes, sized by the current payload length.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

/// The walk of [`Ipv6Packet::upper_layer`], from the fixed header's next header and the
/// payload. Each pass either returns or skips one header, and at most
/// [`MAX_EXTENSION_HEADERS`] are skipped, so it ends after at most five passes.
fn skip_extension_headers(
    mut next: Protocol,
    mut rest: &[u8],
) -> Result<(Protocol, &[u8]), Reject> {
    let mut skipped = 0;
    loop {
        match next {
            Protocol::Ipv6Frag => return Err(Reject::Fragment),
            Protocol::HopByHop if skipped == 0 => {}
            Protocol::Ipv6Opts => {}
            Protocol::HopByHop
            | Protocol::Ipv6Route
            | Protocol::Esp
            | Protocol::Ah
            | Protocol::Ipv6NoNxt => return Err(Reject::Extension),
            upper => return Ok((upper, rest)),
        }
        if skipped == MAX_EXTENSION_HEADERS {
            return Err(Reject::Extension);
        }
        // Both skipped kinds share one layout: next header, length in 8-byte units not
        // counting the first 8, options.
        let [following, units, ..] = *rest else {
            return Err(Reject::Malformed);
        };
        let len = 8 * (usize::from(units) + 1);
        rest = rest.get(len..).ok_or(Reject::Malformed)?;
        next = following.into();
        skipped += 1;
    }
}

#[inline]
fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

#[inline]
fn write_u16(bytes: &mut [u8], value: u16) {
    bytes.copy_from_slice(&value.to_be_bytes());
}

#[inline]
fn read_addr(bytes: &[u8]) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(bytes);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::{self, bytes, frag_pattern, with_ipv6_extension};

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
    const GROUP: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);

    /// The IPv6 part of an untagged Ethernet frame.
    fn ip(frame: &[u8]) -> Vec<u8> {
        frame[14..].to_vec()
    }

    /// The IPv6 part of a captured untagged Ethernet frame.
    fn ip_of(hex: &str) -> Vec<u8> {
        ip(&bytes(hex))
    }

    /// Rebuilds a packet field by field from a decoded view into zeroed memory.
    fn reencode(raw: &[u8]) -> Vec<u8> {
        let p = Ipv6Packet::new_checked(raw).unwrap();
        let mut buf = vec![0u8; HEADER_LEN + usize::from(p.payload_len())];
        let mut q = Ipv6Packet::new_unchecked(&mut buf[..]);
        q.set_version(6);
        q.set_traffic_class(p.traffic_class());
        q.set_flow_label(p.flow_label());
        q.set_payload_len(p.payload_len());
        q.set_next_header(p.next_header());
        q.set_hop_limit(p.hop_limit());
        q.set_src_addr(p.src_addr());
        q.set_dst_addr(p.dst_addr());
        q.payload_mut().copy_from_slice(p.payload());
        buf
    }

    /// Where the upper layer starts in `raw`'s payload, or why it cannot be reached.
    fn walk(raw: &[u8]) -> Result<(Protocol, usize), Reject> {
        let p = Ipv6Packet::new_checked(raw).unwrap();
        let (next, upper) = p.upper_layer()?;
        Ok((next, p.payload().len() - upper.len()))
    }

    #[test]
    fn decode_udp() {
        let raw = ip_of(testdata::UDP6);
        let p = Ipv6Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0x752b8);
        assert_eq!(p.payload_len(), 40);
        assert_eq!(p.next_header(), Protocol::Udp);
        assert_eq!(p.hop_limit(), 8);
        assert_eq!(p.src_addr(), SRC);
        assert_eq!(p.dst_addr(), GROUP);
        assert_eq!(p.payload(), &raw[40..]);
        assert_eq!(p.upper_layer(), Ok((Protocol::Udp, &raw[40..])));
    }

    #[test]
    fn decode_hop_by_hop_router_alert() {
        let raw = ip_of(testdata::UDP6_HOP_BY_HOP);
        let p = Ipv6Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xb9, "DSCP 46, ECN ECT(1)");
        assert_eq!(p.flow_label(), 0xa27a9);
        assert_eq!(p.hop_limit(), 16);
        assert_eq!(p.dst_addr(), Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(p.next_header(), Protocol::HopByHop);
        // Next header UDP, length 0 (8 bytes), router alert (MLD), PadN.
        assert_eq!(&p.payload()[..8], &[17, 0, 5, 2, 0, 0, 1, 0]);
        assert_eq!(walk(&raw), Ok((Protocol::Udp, 8)));
    }

    #[test]
    fn decode_destination_options() {
        let raw = ip_of(testdata::UDP6_DEST_OPTS);
        let p = Ipv6Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.next_header(), Protocol::Ipv6Opts);
        assert_eq!(p.payload_len(), 56);
        assert_eq!(p.payload()[1], 1, "16 bytes");
        assert_eq!(walk(&raw), Ok((Protocol::Udp, 16)));
    }

    #[test]
    fn decode_mld_report() {
        let raw = ip_of(testdata::MLD2_REPORT);
        let p = Ipv6Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.hop_limit(), 1);
        assert_eq!(p.dst_addr(), Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16));
        assert_eq!(walk(&raw), Ok((Protocol::Icmpv6, 8)));
        let (_, icmp) = p.upper_layer().unwrap();
        assert_eq!(icmp[0], 143, "MLDv2 report");
        assert_eq!(&icmp[12..28], &GROUP.octets());
    }

    #[test]
    fn decode_fragments() {
        let first = ip_of(testdata::FRAG6_FIRST);
        let p = Ipv6Packet::new_checked(&first[..]).unwrap();
        assert_eq!(p.next_header(), Protocol::Ipv6Frag);
        assert_eq!(p.payload_len(), 1240);
        assert_eq!(p.upper_layer(), Err(Reject::Fragment));
        // Fragment header (offset 0, M set), UDP header (length 1508), then the pattern.
        assert_eq!(&p.payload()[..4], &[17, 0, 0, 1]);
        assert_eq!(&p.payload()[12..14], &1508u16.to_be_bytes());
        assert!(p.payload()[16..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == frag_pattern(i)));

        let last = ip_of(testdata::FRAG6_LAST);
        let p = Ipv6Packet::new_checked(&last[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Reject::Fragment));
        // Offset 1232 (154 units of 8), M clear.
        assert_eq!(&p.payload()[2..4], &(1232u16).to_be_bytes());
        // 1232 bytes before this fragment: 8 UDP header, 1224 payload.
        assert!(p.payload()[8..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == frag_pattern(1224 + i)));
    }

    #[test]
    fn encode_matches_captures() {
        for hex in testdata::IPV6_CAPTURES {
            let raw = ip_of(hex);
            assert_eq!(reencode(&raw), raw);
        }
    }

    #[test]
    fn setters_touch_only_their_bits() {
        let mut buf = [0u8; HEADER_LEN];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_flow_label(0xfffff);
        p.set_traffic_class(0xff);
        p.set_version(6);
        assert_eq!(&p.into_inner()[..4], &[0x6f, 0xff, 0xff, 0xff]);
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_traffic_class(0xb8);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0xfffff)
        );
        p.set_flow_label(0x12345);
        p.set_version(0);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (0, 0xb8, 0x12345)
        );
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut raw = ip_of(testdata::MLD2_REPORT);
        raw.extend_from_slice(&[0xee; 6]);
        let p = Ipv6Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.payload().len(), 36);
        assert_eq!(p.into_payload().len(), 36);
        assert_eq!(walk(&raw), Ok((Protocol::Icmpv6, 8)));
    }

    #[test]
    fn invalid_headers_are_rejected() {
        let good = ip_of(testdata::UDP6); // 80 bytes, payload length 40
        let check = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut raw = good.clone();
            edit(&mut raw);
            Ipv6Packet::new_checked(&raw[..]).map(|p| p.payload().len())
        };
        let payload_len = |n: u16| move |r: &mut Vec<u8>| r[4..6].copy_from_slice(&n.to_be_bytes());
        assert_eq!(check(&|_| {}), Ok(40));
        assert_eq!(check(&|r| r[0] = 0x40), Err(Error), "version 4");
        assert_eq!(check(&|r| r[0] = 0x00), Err(Error), "version 0");
        assert_eq!(
            check(&payload_len(41)),
            Err(Error),
            "longer than the buffer"
        );
        assert_eq!(check(&payload_len(0)), Err(Error), "jumbogram");
        assert_eq!(check(&payload_len(1)), Ok(1));
        assert_eq!(check(&|r| r.truncate(79)), Err(Error));
        for short in 0..=HEADER_LEN {
            assert_eq!(Ipv6Packet::new_checked(&good[..short]), Err(Error));
        }
    }

    /// An 8-byte extension header of `kind`, inserted in front of the UDP of the plain capture.
    fn with(kind: u8, units: u8) -> Vec<u8> {
        let mut header = vec![0; 8 * (usize::from(units) + 1)];
        header[1] = units;
        ip(&with_ipv6_extension(&bytes(testdata::UDP6), kind, &header))
    }

    #[test]
    fn extension_headers_decide_the_reason() {
        assert_eq!(walk(&with(60, 0)), Ok((Protocol::Udp, 8)));
        assert_eq!(walk(&with(60, 3)), Ok((Protocol::Udp, 32)));
        assert_eq!(walk(&with(0, 1)), Ok((Protocol::Udp, 16)));
        assert_eq!(walk(&with(44, 0)), Err(Reject::Fragment));
        for kind in [43, 50, 51, 59] {
            assert_eq!(walk(&with(kind, 0)), Err(Reject::Extension), "{kind}");
        }
        // Not extension headers: the walk ends there, whatever follows.
        assert_eq!(walk(&with(6, 0)), Ok((Protocol::Tcp, 0)));
        assert_eq!(walk(&with(58, 0)), Ok((Protocol::Icmpv6, 0)));
        assert_eq!(walk(&with(135, 0)), Ok((Protocol::Unknown(135), 0)));
    }

    #[test]
    fn hop_by_hop_only_first() {
        // `with_ipv6_extension` inserts right after the fixed header: the last one inserted
        // comes first in the chain.
        let chain = |kinds: &[u8]| {
            let mut frame = bytes(testdata::UDP6);
            for &kind in kinds.iter().rev() {
                frame = with_ipv6_extension(&frame, kind, &[0; 8]);
            }
            walk(&ip(&frame))
        };
        assert_eq!(chain(&[0]), Ok((Protocol::Udp, 8)));
        assert_eq!(chain(&[0, 60]), Ok((Protocol::Udp, 16)));
        assert_eq!(chain(&[0, 60, 60]), Ok((Protocol::Udp, 24)));
        assert_eq!(chain(&[60, 0]), Err(Reject::Extension));
        assert_eq!(chain(&[0, 0]), Err(Reject::Extension));
        assert_eq!(chain(&[0, 60, 43]), Err(Reject::Extension));
        assert_eq!(chain(&[0, 44]), Err(Reject::Fragment));
        assert_eq!(chain(&[0, 58]), Ok((Protocol::Icmpv6, 8)));
    }

    #[test]
    fn at_most_four_extension_headers() {
        let mut frame = bytes(testdata::UDP6);
        for n in 1..=MAX_EXTENSION_HEADERS {
            frame = with_ipv6_extension(&frame, 60, &[0; 8]);
            assert_eq!(walk(&ip(&frame)), Ok((Protocol::Udp, 8 * n)), "{n}");
        }
        let five = with_ipv6_extension(&frame, 60, &[0; 8]);
        assert_eq!(walk(&ip(&five)), Err(Reject::Extension));
        // The limit is on headers to skip: a fragment header after four is still a fragment.
        let mut frame = with_ipv6_extension(&bytes(testdata::UDP6), 44, &[0; 8]);
        for _ in 0..MAX_EXTENSION_HEADERS {
            frame = with_ipv6_extension(&frame, 60, &[0; 8]);
        }
        assert_eq!(walk(&ip(&frame)), Err(Reject::Fragment));
    }

    #[test]
    fn truncated_extension_headers_are_malformed() {
        // Destination options in front of the 40-byte UDP datagram: a 48-byte payload.
        let mut raw = with(60, 0);
        raw[41] = 5; // 48 bytes: the whole payload, nothing left for UDP
        assert_eq!(walk(&raw), Ok((Protocol::Udp, 48)));
        raw[41] = 6; // 56 bytes
        assert_eq!(walk(&raw), Err(Reject::Malformed));
        // Bytes past the payload length are padding, never header.
        raw.extend_from_slice(&[0; 64]);
        assert_eq!(walk(&raw), Err(Reject::Malformed));
        // A payload too short for even the first two bytes of a header.
        let mut short = ip_of(testdata::UDP6_HOP_BY_HOP);
        short[4..6].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(walk(&short), Err(Reject::Malformed));
    }

    #[test]
    fn inconsistent_view_does_not_panic() {
        let mut raw = ip_of(testdata::UDP6);
        let mut p = Ipv6Packet::new_checked(&mut raw[..]).unwrap();
        p.set_payload_len(1000);
        assert!(p.payload().is_empty() && p.payload_mut().is_empty());
        assert_eq!(p.upper_layer(), Ok((Protocol::Udp, &[][..])));
        p.set_next_header(Protocol::Ipv6Opts);
        assert_eq!(p.upper_layer(), Err(Reject::Malformed));
        assert_eq!(p.check_len(), Err(Error));
    }
}
