//! IPv4 headers (RFC 791), options included, and the RFC 1071 checksum.
//!
//! [`Ipv4Packet`] is a zero-copy view. A view from [`Ipv4Packet::new_checked`]
//! satisfies `20 <= header_len() <= total_len() <= buffer length` and
//! `version() == 4`, so no getter panics on it. Bytes past `total_len()` are
//! link-layer padding (Ethernet pads short frames to 60 bytes) and belong to
//! neither [`options`](Ipv4Packet::options) nor
//! [`payload`](Ipv4Packet::payload). Those two getters stay total even when a
//! setter later breaks the invariant: they return an empty slice.
//!
//! Checksums are not verified when parsing: a tap sees frames before the IP
//! stack has checked them, and frames from local senders carry offloaded
//! (partial) checksums that only a NIC would finish. The packet path decides
//! from the ring's checksum flags whether a frame needs verifying, and then
//! calls [`super::verify_checksums`], which uses [`Ipv4Packet::verify_checksum`].

use std::net::Ipv4Addr;

use super::checksum::checksum;
use super::Error;

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options; also the smallest valid header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// The IP protocol numbers this crate names; everything else is a value.
///
/// One IANA registry serves both the IPv4 protocol field and the IPv6 next header field, so
/// the IPv6 extension headers are here too: [`super::ipv6`] decides by them whether a
/// datagram can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// IPv6 hop-by-hop options, 0 (RFC 8200 §4.3).
    HopByHop,
    Icmp,
    Igmp,
    Tcp,
    Udp,
    /// IPv6 routing header, 43 (RFC 8200 §4.4).
    Ipv6Route,
    /// IPv6 fragment header, 44 (RFC 8200 §4.5).
    Ipv6Frag,
    /// IPsec Encapsulating Security Payload, 50 (RFC 4303).
    Esp,
    /// IPsec Authentication Header, 51 (RFC 4302).
    Ah,
    /// ICMPv6, 58 (RFC 4443), which also carries MLD.
    Icmpv6,
    /// IPv6 "no next header", 59 (RFC 8200 §4.7).
    Ipv6NoNxt,
    /// IPv6 destination options, 60 (RFC 8200 §4.6).
    Ipv6Opts,
    Unknown(u8),
}

impl From<u8> for Protocol {
    #[inline]
    fn from(value: u8) -> Self {
        match value {
            0 => Protocol::HopByHop,
            1 => Protocol::Icmp,
            2 => Protocol::Igmp,
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            43 => Protocol::Ipv6Route,
            44 => Protocol::Ipv6Frag,
            50 => Protocol::Esp,
            51 => Protocol::Ah,
            58 => Protocol::Icmpv6,
            59 => Protocol::Ipv6NoNxt,
            60 => Protocol::Ipv6Opts,
            other => Protocol::Unknown(other),
        }
    }
}

impl From<Protocol> for u8 {
    #[inline]
    fn from(value: Protocol) -> Self {
        match value {
            Protocol::HopByHop => 0,
            Protocol::Icmp => 1,
            Protocol::Igmp => 2,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Ipv6Route => 43,
            Protocol::Ipv6Frag => 44,
            Protocol::Esp => 50,
            Protocol::Ah => 51,
            Protocol::Icmpv6 => 58,
            Protocol::Ipv6NoNxt => 59,
            Protocol::Ipv6Opts => 60,
            Protocol::Unknown(other) => other,
        }
    }
}

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it. Fixed-header getters and setters
    /// panic if it is shorter than [`HEADER_LEN`]; use this for encoding.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, once, everything the getters rely on: the buffer holds a fixed
    /// header, the version is 4, and `20 <= IHL * 4 <= total length <= buffer`.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || self.version() != 4 {
            return Err(Error);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || header_len > total_len || total_len > len {
            return Err(Error);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Header plus payload, in bytes, as the header states it.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    fn flags_offset(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF])
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the header field is in 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// True for every fragment, first (MF set) or later (offset != 0).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> Protocol {
        self.buffer.as_ref()[field::PROTOCOL].into()
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        read_addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The raw option bytes between the fixed header and the payload.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let end = self.header_len();
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The bytes from the end of the header to `total_len()`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_ref().get(range).unwrap_or(&[])
    }

    /// True when the header checksum is correct (RFC 1071). Not part of
    /// parsing; see the module documentation.
    pub fn verify_checksum(&self) -> bool {
        match self.buffer.as_ref().get(..self.header_len()) {
            Some(header) => checksum(header) == 0,
            None => false,
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// Like [`payload`](Ipv4Packet::payload), but borrowing from the
    /// underlying buffer rather than from the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_ref().get(range).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let byte = &mut self.buffer.as_mut()[field::VER_IHL];
        *byte = (*byte & 0x0f) | (version << 4);
    }

    /// Sets IHL from a length in bytes: a multiple of 4 from 20 to 60.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (HEADER_LEN..=60).contains(&len));
        let byte = &mut self.buffer.as_mut()[field::VER_IHL];
        *byte = (*byte & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let byte = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *byte = (*byte & 0x03) | (dscp << 2);
    }

    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let byte = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *byte = (*byte & !0x03) | (ecn & 0x03);
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], ident);
    }

    fn set_flags_offset(&mut self, mask: u16, bits: u16) {
        let value = (self.flags_offset() & !mask) | (bits & mask);
        write_u16(&mut self.buffer.as_mut()[field::FLG_OFF], value);
    }

    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flags_offset(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flags_offset(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset from a byte count, which must be a multiple
    /// of 8.
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        debug_assert!(bytes % 8 == 0);
        self.set_flags_offset(OFFSET_MASK, bytes >> 3);
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The option bytes, sized by the current header length.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }

    /// The payload bytes, sized by the current header and total lengths.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }

    /// Computes and writes the header checksum; call after every other field
    /// (options included) is set. Does nothing if the header length exceeds
    /// the buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let end = self.header_len();
        if let Some(header) = self.buffer.as_ref().get(..end) {
            let sum = checksum(header);
            self.set_checksum(sum);
        }
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
fn read_addr(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::{self, bytes, frag_pattern};

    /// The IPv4 part of a captured Ethernet frame.
    fn ip_of(hex: &str) -> Vec<u8> {
        bytes(hex)[14..].to_vec()
    }

    /// Rebuilds a packet field by field from a decoded view into zeroed
    /// memory, then recomputes the checksum.
    fn reencode(raw: &[u8]) -> Vec<u8> {
        let p = Ipv4Packet::new_checked(raw).unwrap();
        let mut buf = vec![0u8; usize::from(p.total_len())];
        let mut q = Ipv4Packet::new_unchecked(&mut buf[..]);
        q.set_version(4);
        q.set_header_len(p.header_len());
        q.set_dscp(p.dscp());
        q.set_ecn(p.ecn());
        q.set_total_len(p.total_len());
        q.set_ident(p.ident());
        q.set_dont_frag(p.dont_frag());
        q.set_more_frags(p.more_frags());
        q.set_frag_offset(p.frag_offset());
        q.set_ttl(p.ttl());
        q.set_protocol(p.protocol());
        q.set_src_addr(p.src_addr());
        q.set_dst_addr(p.dst_addr());
        q.options_mut().copy_from_slice(p.options());
        q.payload_mut().copy_from_slice(p.payload());
        q.fill_checksum();
        buf
    }

    #[test]
    fn decode_udp() {
        let raw = ip_of(testdata::UDP);
        let p = Ipv4Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x185b);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 8);
        assert_eq!(p.protocol(), Protocol::Udp);
        assert_eq!(p.checksum(), 0x6006);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(239, 1, 1, 1));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &raw[20..]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn decode_igmp_report_with_router_alert() {
        let raw = ip_of(testdata::IGMP_REPORT);
        let p = Ipv4Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!((p.dscp(), p.ecn()), (0x30, 0));
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.protocol(), Protocol::Igmp);
        assert_eq!(p.dst_addr(), Ipv4Addr::new(224, 0, 0, 22));
        assert_eq!(p.payload().len(), 16);
        assert_eq!(p.payload()[0], 0x22, "IGMPv3 report type");
        assert!(p.verify_checksum());
    }

    #[test]
    fn decode_fragments() {
        let first = ip_of(testdata::FRAG_FIRST);
        let p = Ipv4Packet::new_checked(&first[..]).unwrap();
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(
            (p.ident(), p.frag_offset(), p.total_len()),
            (0xc79f, 0, 1500)
        );
        assert_eq!(p.payload().len(), 1480);
        // UDP header (length 3008), then the start of the datagram payload.
        assert_eq!(&p.payload()[4..6], &3008u16.to_be_bytes());
        assert!(p.payload()[8..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == frag_pattern(i)));

        let last = ip_of(testdata::FRAG_LAST);
        let p = Ipv4Packet::new_checked(&last[..]).unwrap();
        assert!(!p.more_frags() && p.is_fragment());
        assert_eq!(
            (p.ident(), p.frag_offset(), p.total_len()),
            (0xc79f, 2960, 68)
        );
        assert_eq!(p.protocol(), Protocol::Udp);
        // 2960 bytes of fragments before this one: 8 UDP header, 2952 payload.
        assert!(p
            .payload()
            .iter()
            .enumerate()
            .all(|(i, &b)| b == frag_pattern(2952 + i)));
    }

    #[test]
    fn encode_matches_captures() {
        for hex in [
            testdata::UDP,
            testdata::UDP_PARTIAL_CSUM,
            testdata::IGMP_REPORT,
            testdata::FRAG_FIRST,
            testdata::FRAG_LAST,
            testdata::TCP_SYN,
        ] {
            let raw = ip_of(hex);
            assert_eq!(reencode(&raw), raw);
        }
    }

    #[test]
    fn checksum_detects_corruption() {
        let mut raw = ip_of(testdata::IGMP_REPORT);
        raw[21] ^= 0x01; // inside the option
        assert!(!Ipv4Packet::new_checked(&raw[..]).unwrap().verify_checksum());
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut raw = ip_of(testdata::IGMP_REPORT);
        raw.extend_from_slice(&[0; 6]); // pad the 54-byte frame to 60
        let p = Ipv4Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.payload().len(), 16);
        assert_eq!(p.into_payload().len(), 16);
    }

    #[test]
    fn invalid_headers_are_rejected() {
        let good = ip_of(testdata::IGMP_REPORT);
        let check = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut raw = good.clone();
            edit(&mut raw);
            Ipv4Packet::new_checked(&raw[..]).map(|_| ())
        };
        assert_eq!(check(&|_| {}), Ok(()));
        assert_eq!(check(&|r| r[0] = 0x66), Err(Error), "version 6");
        assert_eq!(check(&|r| r[0] = 0x44), Err(Error), "IHL 4");
        assert_eq!(check(&|r| r[0] = 0x40), Err(Error), "IHL 0");
        assert_eq!(check(&|r| r[0] = 0x4f), Err(Error), "IHL 15 > buffer");
        let ihl_over_total = |r: &mut Vec<u8>| {
            r[0] = 0x47;
            r[2..4].copy_from_slice(&[0, 24]);
        };
        assert_eq!(check(&ihl_over_total), Err(Error), "IHL 7 > total 24");
        assert_eq!(check(&|r| r[2..4].copy_from_slice(&[0, 41])), Err(Error));
        assert_eq!(check(&|r| r[2..4].copy_from_slice(&[0, 23])), Err(Error));
        assert_eq!(check(&|r| r[2..4].copy_from_slice(&[0, 24])), Ok(()));
        assert_eq!(check(&|r| r.truncate(39)), Err(Error));
        assert_eq!(check(&|r| r.truncate(19)), Err(Error));
    }

    #[test]
    fn protocol_round_trip() {
        for value in 0..=u8::MAX {
            assert_eq!(u8::from(Protocol::from(value)), value);
        }
        assert_eq!(Protocol::from(17), Protocol::Udp);
        assert_eq!(Protocol::from(44), Protocol::Ipv6Frag);
        assert_eq!(Protocol::from(89), Protocol::Unknown(89));
    }

    #[test]
    fn inconsistent_view_does_not_panic() {
        let mut raw = ip_of(testdata::IGMP_REPORT); // 40 bytes
        let mut p = Ipv4Packet::new_checked(&mut raw[..]).unwrap();
        p.set_header_len(60);
        p.set_total_len(1000);
        assert!(p.options().is_empty() && p.payload().is_empty());
        assert!(p.options_mut().is_empty() && p.payload_mut().is_empty());
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.check_len(), Err(Error));
    }
}
