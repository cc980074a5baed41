//! UDP headers (RFC 768).
//!
//! [`UdpPacket`] is a zero-copy view. A view from [`UdpPacket::new_checked`]
//! satisfies `8 <= len() <= buffer length`, so no getter panics on it. The
//! payload ends where the UDP length field says, not where the buffer ends:
//! when the buffer is an IPv4 payload, any excess is not part of the datagram.
//! [`payload`](UdpPacket::payload) stays total if a setter later breaks the
//! invariant.
//!
//! As with IPv4, checksums are not verified when parsing: a datagram sent
//! through a veth with TX checksum offload carries only the pseudo-header sum
//! (see `testdata::UDP_PARTIAL_CSUM`), and received traffic was already
//! checked by the NIC or stack. The checksum methods are for encoding, tests
//! and [`super::verify_checksums`]. They take the addresses of the IP header
//! that carries the datagram, IPv4 or IPv6, and use that family's
//! pseudo-header. A checksum of 0 means "none computed": valid over IPv4
//! (RFC 768), invalid over IPv6, where the checksum is mandatory (RFC 8200
//! §8.1).

use std::net::IpAddr;

use super::checksum::{fold, pseudo_sum_v4, pseudo_sum_v6, sum_words};
use super::ipv4::Protocol;
use super::Error;

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it. Header getters and setters panic
    /// if it is shorter than [`HEADER_LEN`]; use this for encoding.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that `8 <= length field <= buffer length`.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let udp_len = usize::from(self.len());
        if udp_len < HEADER_LEN || udp_len > len {
            return Err(Error);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header plus payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a UDP datagram is never empty
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The checksum field; 0 means the sender did not compute one.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The bytes from the end of the header to `len()`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// True when the checksum is correct for a datagram carried between
    /// `src` and `dst`, or absent (0) and the addresses are IPv4. False for
    /// addresses of two families. Not part of parsing.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4() && dst.is_ipv4();
        }
        self.datagram()
            .and_then(|datagram| pseudo_sum(src, dst, datagram))
            .is_some_and(|sum| fold(sum) == 0xffff)
    }

    fn datagram(&self) -> Option<&[u8]> {
        self.buffer.as_ref().get(..usize::from(self.len()))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// Like [`payload`](UdpPacket::payload), but borrowing from the
    /// underlying buffer rather than from the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = usize::from(self.len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port);
    }

    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    /// The payload bytes, sized by the current length field.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }

    /// Computes and writes the checksum over the pseudo-header of `src` and
    /// `dst`'s family, the header and the payload; call after everything
    /// else is set. A computed 0 is sent as 0xffff, since 0 means "no
    /// checksum". Leaves 0 if the length field exceeds the buffer or the
    /// addresses are of two families.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        if let Some(sum) = self
            .datagram()
            .and_then(|datagram| pseudo_sum(src, dst, datagram))
        {
            let sum = match !fold(sum) {
                0 => 0xffff,
                sum => sum,
            };
            self.set_checksum(sum);
        }
    }
}

/// Unfolded sum of the pseudo-header of `src` and `dst`'s family and
/// `datagram`; `None` for addresses of two families.
fn pseudo_sum(src: IpAddr, dst: IpAddr, datagram: &[u8]) -> Option<u64> {
    let header = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => pseudo_sum_v4(src, dst, Protocol::Udp),
        (IpAddr::V6(src), IpAddr::V6(dst)) => pseudo_sum_v6(src, dst, Protocol::Udp),
        _ => return None,
    };
    Some(sum_words(header + datagram.len() as u64, datagram))
}

#[inline]
fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

#[inline]
fn write_u16(bytes: &mut [u8], value: u16) {
    bytes.copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::wire::testdata::{self, bytes};

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
    const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1));
    const GROUP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234));

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        Ipv4Addr::new(a, b, c, d).into()
    }

    /// The UDP part of a captured untagged frame whose IPv4 header has no
    /// options.
    fn udp_of(hex: &str) -> Vec<u8> {
        bytes(hex)[14 + 20..].to_vec()
    }

    #[test]
    fn decode_capture() {
        let raw = udp_of(testdata::UDP);
        let p = UdpPacket::new_checked(&raw[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 5001));
        assert_eq!(p.len(), 40);
        assert_eq!(p.checksum(), 0x49d8);
        assert_eq!(p.payload().len(), 32);
        assert!(p.payload().starts_with(b"mcr wire test "));
        assert!(p.verify_checksum(SRC, v4(239, 1, 1, 1)));
        assert!(!p.verify_checksum(SRC, v4(239, 1, 1, 2)));
    }

    #[test]
    fn offloaded_checksum_is_partial() {
        let raw = udp_of(testdata::UDP_PARTIAL_CSUM);
        let p = UdpPacket::new_checked(&raw[..]).unwrap();
        let dst = v4(239, 1, 1, 1);
        assert_eq!(p.checksum(), 0xfa89);
        assert!(!p.verify_checksum(SRC, dst));
        // The field holds the folded pseudo-header sum, not yet complemented:
        // the NIC (here: nobody) was to finish it over the datagram.
        assert_eq!(
            fold(sum_words(0, &[10, 77, 0, 1, 239, 1, 1, 1, 0, 17, 0, 40])),
            0xfa89
        );
        // Apart from that the datagram equals the fully checksummed one.
        assert_eq!(
            p.payload(),
            UdpPacket::new_checked(&udp_of(testdata::UDP)[..])
                .unwrap()
                .payload()
        );
    }

    #[test]
    fn encode_matches_captures() {
        for (hex, dst) in [
            (testdata::UDP, v4(239, 1, 1, 1)),
            (testdata::UDP_FOR_VLAN, v4(239, 1, 1, 3)),
        ] {
            let raw = udp_of(hex);
            let p = UdpPacket::new_checked(&raw[..]).unwrap();
            let mut buf = vec![0u8; raw.len()];
            let mut q = UdpPacket::new_unchecked(&mut buf[..]);
            q.set_src_port(p.src_port());
            q.set_dst_port(p.dst_port());
            q.set_len(p.len());
            q.payload_mut().copy_from_slice(p.payload());
            q.fill_checksum(SRC, dst);
            assert_eq!(buf, raw);
        }
    }

    #[test]
    fn fragmented_datagram_checksum() {
        // Reassemble the 3000-byte datagram's UDP part from the first
        // fragment's header and the known payload pattern, then check the
        // captured checksum covers it.
        let first = bytes(testdata::FRAG_FIRST);
        let header = &first[34..42];
        let mut datagram = header.to_vec();
        datagram.extend((0..3000).map(testdata::frag_pattern));
        let p = UdpPacket::new_checked(&datagram[..]).unwrap();
        assert_eq!((p.len(), p.checksum()), (3008, 0x535d));
        assert!(p.verify_checksum(SRC, v4(239, 1, 1, 2)));
        // The first fragment alone is not a whole datagram.
        assert_eq!(UdpPacket::new_checked(&first[34..]), Err(Error));
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut raw = udp_of(testdata::UDP);
        let mut p = UdpPacket::new_checked(&mut raw[..]).unwrap();
        p.set_checksum(0);
        assert!(p.verify_checksum(SRC, IpAddr::V4(Ipv4Addr::BROADCAST)));
    }

    /// The UDP part of a captured untagged IPv6 frame, `extensions` bytes
    /// after the fixed header.
    fn udp6_of(hex: &str, extensions: usize) -> Vec<u8> {
        bytes(hex)[14 + 40 + extensions..].to_vec()
    }

    #[test]
    fn ipv6_checksums() {
        for (hex, extensions, dst) in [
            (testdata::UDP6, 0, GROUP6),
            (testdata::UDP6_DEST_OPTS, 16, GROUP6),
            (
                testdata::UDP6_HOP_BY_HOP,
                8,
                Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 1).into(),
            ),
        ] {
            let raw = udp6_of(hex, extensions);
            let p = UdpPacket::new_checked(&raw[..]).unwrap();
            assert!(p.verify_checksum(SRC6, dst));
            assert!(!p.verify_checksum(SRC6, SRC6));
            // Same bytes, IPv4 pseudo-header: the family matters.
            assert!(!p.verify_checksum(SRC, v4(239, 1, 1, 1)));

            let mut buf = raw.clone();
            let mut q = UdpPacket::new_checked(&mut buf[..]).unwrap();
            q.fill_checksum(SRC6, dst);
            assert_eq!(buf, raw, "encode matches the capture");
        }
    }

    #[test]
    fn zero_checksum_is_invalid_over_ipv6() {
        let mut raw = udp6_of(testdata::UDP6, 0);
        let mut p = UdpPacket::new_checked(&mut raw[..]).unwrap();
        p.set_checksum(0);
        assert!(!p.verify_checksum(SRC6, GROUP6));
        assert!(p.verify_checksum(SRC, v4(239, 1, 1, 1)));
    }

    #[test]
    fn mixed_families_have_no_pseudo_header() {
        let raw = udp6_of(testdata::UDP6, 0);
        let p = UdpPacket::new_checked(&raw[..]).unwrap();
        assert!(!p.verify_checksum(SRC, GROUP6));
        assert!(!p.verify_checksum(SRC6, SRC));
        let mut buf = raw.clone();
        let mut q = UdpPacket::new_checked(&mut buf[..]).unwrap();
        q.fill_checksum(SRC6, SRC);
        assert_eq!(q.checksum(), 0);
        let mut zero = UdpPacket::new_checked(&mut buf[..]).unwrap();
        zero.set_checksum(0);
        assert!(!zero.verify_checksum(SRC, GROUP6));
    }

    #[test]
    fn length_field_is_validated() {
        let good = udp_of(testdata::UDP); // 40 bytes, length 40
        let with_len = |len: u16, buf_len: usize| {
            let mut raw = good.clone();
            raw.resize(buf_len, 0);
            raw[4..6].copy_from_slice(&len.to_be_bytes());
            UdpPacket::new_checked(raw).map(|p| p.payload().len())
        };
        assert_eq!(with_len(40, 40), Ok(32));
        assert_eq!(with_len(41, 40), Err(Error), "longer than the buffer");
        assert_eq!(with_len(7, 40), Err(Error), "shorter than the header");
        assert_eq!(with_len(0, 40), Err(Error));
        assert_eq!(with_len(8, 40), Ok(0));
        assert_eq!(with_len(20, 40), Ok(12), "trailing bytes are not payload");
        for short in 0..HEADER_LEN {
            assert_eq!(UdpPacket::new_checked(&good[..short]), Err(Error));
        }
    }

    #[test]
    fn inconsistent_view_does_not_panic() {
        let mut raw = udp_of(testdata::UDP);
        let mut p = UdpPacket::new_checked(&mut raw[..]).unwrap();
        p.set_len(1000);
        assert!(p.payload().is_empty() && p.payload_mut().is_empty());
        assert!(!p.verify_checksum(SRC, SRC));
        p.fill_checksum(SRC, SRC);
        assert_eq!(p.checksum(), 0);
        p.set_len(3);
        assert!(p.payload().is_empty());
    }
}
