//! Ethernet II frames with at most one IEEE 802.1Q tag.
//!
//! [`EthernetFrame`] is a zero-copy view over a buffer. Invariants:
//!
//! - A view from [`EthernetFrame::new_checked`] holds at least
//!   [`HEADER_LEN`] bytes, and at least [`VLAN_HEADER_LEN`] when the outer
//!   EtherType is 0x8100. No getter panics on such a view.
//! - Getters whose position depends on the tag (`vlan_*`, `inner_ethertype`,
//!   `payload`) are total even on views that a setter made inconsistent
//!   (e.g. `set_ethertype(Vlan)` on a 14-byte buffer): they return `None` or an
//!   empty slice instead of panicking.
//! - Only a single 0x8100 tag is understood. An 802.1ad (0x88a8) outer tag, or
//!   a second 0x8100 tag, is reported as the EtherType it is and is not
//!   looked into.
//!
//! Note for AF_PACKET users: Linux removes the 802.1Q tag from received frames
//! before packet sockets see them and reports it in `tp_vlan_tci`
//! (`TP_STATUS_VLAN_VALID`), so ring frames usually arrive untagged.

use super::Error;

mod field {
    use core::ops::Range;

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Only present when `ETHERTYPE` is 0x8100.
    pub const VLAN_TCI: Range<usize> = 14..16;
    pub const VLAN_INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;
/// Length of an Ethernet II header carrying one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = field::VLAN_INNER_ETHERTYPE.end;

const VLAN_ID_MASK: u16 = 0x0fff;

/// The EtherTypes this crate acts on; everything else is carried as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    Ipv4,
    /// 0x86DD.
    Ipv6,
    /// IEEE 802.1Q customer tag, 0x8100.
    Vlan,
    Unknown(u16),
}

impl From<u16> for EtherType {
    #[inline]
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::Unknown(other) => other,
        }
    }
}

/// A view of an Ethernet II frame, optionally 802.1Q-tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it. Fixed-position getters and all
    /// setters panic if it is shorter than [`HEADER_LEN`]; use this for
    /// encoding into a buffer you sized yourself.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the whole header, including the tag when
    /// the outer EtherType says there is one.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            return Err(Error);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn is_tagged(&self) -> bool {
        self.ethertype() == EtherType::Vlan
    }

    /// 14, or 18 when the frame carries an 802.1Q tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        read_mac(&self.buffer.as_ref()[field::DST])
    }

    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        read_mac(&self.buffer.as_ref()[field::SRC])
    }

    /// The outer EtherType: [`EtherType::Vlan`] for a tagged frame.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        read_u16(&self.buffer.as_ref()[field::ETHERTYPE]).into()
    }

    /// The whole tag control information (PCP, DEI, VLAN ID), if tagged.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        if !self.is_tagged() {
            return None;
        }
        self.buffer.as_ref().get(field::VLAN_TCI).map(read_u16)
    }

    /// The 12-bit VLAN ID, if tagged. 0 means "priority tag only".
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & VLAN_ID_MASK)
    }

    /// The EtherType of the payload: the one after the tag when tagged.
    #[inline]
    pub fn inner_ethertype(&self) -> EtherType {
        if !self.is_tagged() {
            return self.ethertype();
        }
        match self.buffer.as_ref().get(field::VLAN_INNER_ETHERTYPE) {
            Some(bytes) => read_u16(bytes).into(),
            // Only reachable on a view a setter made inconsistent.
            None => EtherType::Vlan,
        }
    }

    /// Everything after the header (and tag), including any trailing padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Like [`payload`](EthernetFrame::payload), but borrowing from the
    /// underlying buffer rather than from the view, so the slice outlives it.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let start = self.header_len();
        self.buffer.as_ref().get(start..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Sets the outer EtherType. Setting [`EtherType::Vlan`] makes bytes
    /// 14..18 the tag; fill them with the two setters below.
    #[inline]
    pub fn set_ethertype(&mut self, value: EtherType) {
        write_u16(&mut self.buffer.as_mut()[field::ETHERTYPE], value.into());
    }

    /// Writes the tag control information. Panics if the buffer is shorter
    /// than [`VLAN_HEADER_LEN`].
    #[inline]
    pub fn set_vlan_tci(&mut self, tci: u16) {
        write_u16(&mut self.buffer.as_mut()[field::VLAN_TCI], tci);
    }

    /// Writes the EtherType that follows the tag. Panics if the buffer is
    /// shorter than [`VLAN_HEADER_LEN`].
    #[inline]
    pub fn set_inner_ethertype(&mut self, value: EtherType) {
        let bytes = &mut self.buffer.as_mut()[field::VLAN_INNER_ETHERTYPE];
        write_u16(bytes, value.into());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        self.buffer.as_mut().get_mut(start..).unwrap_or(&mut [])
    }
}

#[inline]
fn read_mac(bytes: &[u8]) -> [u8; 6] {
    let mut mac = [0; 6];
    mac.copy_from_slice(bytes);
    mac
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
    use super::*;
    use crate::wire::testdata::{self, bytes, with_vlan_tag};

    const SENDER_MAC: [u8; 6] = [0xc6, 0x56, 0xf0, 0x78, 0xdc, 0xce];

    #[test]
    fn decode_untagged_udp_frame() {
        let raw = bytes(testdata::UDP);
        let frame = EthernetFrame::new_checked(&raw[..]).unwrap();
        assert_eq!(frame.dst_addr(), [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
        assert_eq!(frame.src_addr(), SENDER_MAC);
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.inner_ethertype(), EtherType::Ipv4);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.vlan_tci(), None);
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.payload(), &raw[14..]);
        assert_eq!(frame.into_payload().len(), 60);
    }

    #[test]
    fn decode_tagged_frame() {
        // PCP 5, DEI 0, VID 100.
        let raw = with_vlan_tag(&bytes(testdata::UDP_FOR_VLAN), 0xa064);
        let frame = EthernetFrame::new_checked(&raw[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Vlan);
        assert_eq!(frame.vlan_tci(), Some(0xa064));
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(frame.inner_ethertype(), EtherType::Ipv4);
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload(), &raw[18..]);
        assert_eq!(frame.payload()[0], 0x45);
    }

    #[test]
    fn encode_matches_capture() {
        let raw = bytes(testdata::UDP);
        let mut buf = vec![0u8; raw.len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        frame.set_dst_addr([0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
        frame.set_src_addr(SENDER_MAC);
        frame.set_ethertype(EtherType::Ipv4);
        frame.payload_mut().copy_from_slice(&raw[14..]);
        assert_eq!(buf, raw);
    }

    #[test]
    fn encode_tagged_matches() {
        let untagged = bytes(testdata::UDP_FOR_VLAN);
        let tagged = with_vlan_tag(&untagged, 100);
        let mut buf = vec![0u8; tagged.len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        frame.set_dst_addr([0x01, 0x00, 0x5e, 0x01, 0x01, 0x03]);
        frame.set_src_addr(SENDER_MAC);
        frame.set_ethertype(EtherType::Vlan);
        frame.set_vlan_tci(100);
        frame.set_inner_ethertype(EtherType::Ipv4);
        frame.payload_mut().copy_from_slice(&untagged[14..]);
        assert_eq!(buf, tagged);
    }

    #[test]
    fn other_ethertypes_are_values() {
        let arp = bytes(testdata::ARP_REQUEST);
        let frame = EthernetFrame::new_checked(&arp[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Unknown(0x0806));
        assert_eq!(frame.payload().len(), 28);

        let v6 = bytes(testdata::IPV6_ROUTER_SOLICIT);
        let frame = EthernetFrame::new_checked(&v6[..]).unwrap();
        assert_eq!(frame.inner_ethertype(), EtherType::Ipv6);
        assert_eq!(EtherType::from(0x86dd), EtherType::Ipv6);

        // 802.1ad outer tag: not looked into.
        let mut qinq = with_vlan_tag(&bytes(testdata::UDP), 7);
        qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
        let frame = EthernetFrame::new_checked(&qinq[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Unknown(0x88a8));
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.header_len(), 14);
    }

    #[test]
    fn ethertype_round_trip() {
        for value in [0x0800, 0x8100, 0x86dd, 0x88a8, 0, 0xffff] {
            assert_eq!(u16::from(EtherType::from(value)), value);
        }
    }

    #[test]
    fn short_buffers_are_rejected() {
        let raw = bytes(testdata::UDP);
        for len in 0..HEADER_LEN {
            assert_eq!(EthernetFrame::new_checked(&raw[..len]), Err(Error));
        }
        assert!(EthernetFrame::new_checked(&raw[..HEADER_LEN]).is_ok());

        let tagged = with_vlan_tag(&raw, 1);
        for len in HEADER_LEN..VLAN_HEADER_LEN {
            assert_eq!(EthernetFrame::new_checked(&tagged[..len]), Err(Error));
        }
        let frame = EthernetFrame::new_checked(&tagged[..VLAN_HEADER_LEN]).unwrap();
        assert_eq!(frame.payload(), &[] as &[u8]);
    }

    #[test]
    fn inconsistent_view_does_not_panic() {
        let mut buf = [0u8; HEADER_LEN];
        let mut frame = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        frame.set_ethertype(EtherType::Vlan);
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.inner_ethertype(), EtherType::Vlan);
        assert!(frame.payload().is_empty());
        assert!(frame.payload_mut().is_empty());
        assert_eq!(frame.check_len(), Err(Error));
    }
}
