//! Prebuilt frame headers for sending through an `AF_PACKET` socket.
//!
//! An output that sends through `AF_PACKET` skips the kernel's UDP and IP output path (and the
//! route lookup it does for every multicast send), so mcr writes the headers itself:
//!
//! ```text
//! virtio_net_hdr (10) │ Ethernet (14) │ IPv4, no options (20) │ UDP (8) │ payload (borrowed)
//! ```
//!
//! A [`FrameTemplate`] holds every header byte that is the same for all packets of an output,
//! plus the partial sums its checksums start from, so per packet [`FrameTemplate::fill`] writes
//! only the two lengths and two checksums — O(1), no pass over the payload:
//!
//! - the IPv4 header checksum is completed from a precomputed sum of the constant words;
//! - the UDP checksum is *offloaded*: the virtio header asks the kernel for
//!   `VIRTIO_NET_HDR_F_NEEDS_CSUM` from byte 34 with the result at offset 6, and the UDP checksum
//!   field holds the pseudo-header sum, exactly what the kernel's own UDP output hands a NIC with
//!   checksum offload. The NIC (or the kernel, for a device without offload) completes it; veth
//!   passes it to the receiver as already verified.
//!
//! The headers are what the kernel's UDP path would have built for the same output: the source
//! address and port of the interface's UDP socket (which reserves that port), the output's TTL,
//! the input datagram's DSCP and ECN (or the output's own DSCP with the input's ECN, see
//! [`out_tos`]), DF set with IP ID 0 (RFC 6864 atomic datagrams), and the Ethernet destination
//! derived from the group (RFC 1112: 01:00:5e + the low 23 bits), so no neighbour lookup exists.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::wire::checksum::{fold, sum_words};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, Protocol, UdpPacket};

/// `sizeof(struct virtio_net_hdr)`, the header `PACKET_VNET_HDR` puts in front of each frame.
pub const VNET_HDR_LEN: usize = 10;
/// Ethernet + IPv4 + UDP: what a frame carries in front of the payload on the wire.
pub const WIRE_HEADER_LEN: usize = 14 + 20 + 8;
/// Bytes written in front of each payload.
pub const HEADER_LEN: usize = VNET_HDR_LEN + WIRE_HEADER_LEN;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// Where the UDP header starts, counted from the Ethernet header.
const CSUM_START: u16 = 14 + 20;
/// The UDP checksum field within the UDP header.
const CSUM_OFFSET: u16 = 6;

const ETH: usize = VNET_HDR_LEN;
const IP: usize = ETH + 14;
const UDP: usize = IP + 20;

/// The TOS byte an output sends with: the input datagram's (`in_tos`) when the output sets no
/// DSCP, else the output's DSCP with the input's ECN bits — a relay, like a router, passes
/// ECN on (RFC 3168), and marking QoS is what `dscp` is for.
#[inline]
pub fn out_tos(dscp: Option<u8>, in_tos: u8) -> u8 {
    match dscp {
        Some(d) => d << 2 | in_tos & 0b11,
        None => in_tos,
    }
}

/// The constant part of every frame one output sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameTemplate {
    header: [u8; HEADER_LEN],
    /// Unfolded sum of the IPv4 header's constant words (total length, TOS and checksum zero).
    ip_sum: u64,
    /// The output's DSCP, or `None` to keep each input datagram's.
    dscp: Option<u8>,
    /// Unfolded sum of the UDP pseudo-header without its length.
    pseudo_sum: u64,
    /// The interface MTU: the largest IPv4 packet a frame may carry.
    mtu: usize,
}

/// The Ethernet address IPv4 multicast `group` maps to (RFC 1112, section 6.4).
pub fn multicast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

impl FrameTemplate {
    /// Headers from `src` (the interface socket's own address and port) to `dst` (group and
    /// port) with `ttl` and `dscp` (see [`out_tos`]), out of an interface with address
    /// `src_mac` and `mtu`.
    pub fn new(
        src_mac: [u8; 6],
        src: SocketAddrV4,
        dst: SocketAddrV4,
        ttl: u8,
        dscp: Option<u8>,
        mtu: u32,
    ) -> Self {
        let mut header = [0u8; HEADER_LEN];
        header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        // gso_type 0 (VIRTIO_NET_HDR_GSO_NONE), gso_size 0. Packet sockets read the header in
        // the host's byte order (legacy virtio).
        header[2..4].copy_from_slice(&(WIRE_HEADER_LEN as u16).to_ne_bytes());
        header[6..8].copy_from_slice(&CSUM_START.to_ne_bytes());
        header[8..10].copy_from_slice(&CSUM_OFFSET.to_ne_bytes());

        let mut eth = EthernetFrame::new_unchecked(&mut header[ETH..IP]);
        eth.set_dst_addr(multicast_mac(*dst.ip()));
        eth.set_src_addr(src_mac);
        eth.set_ethertype(EtherType::Ipv4);

        let mut ip = Ipv4Packet::new_unchecked(&mut header[IP..UDP]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_dont_frag(true);
        ip.set_ttl(ttl);
        ip.set_protocol(Protocol::Udp);
        ip.set_src_addr(*src.ip());
        ip.set_dst_addr(*dst.ip());
        let ip_sum = sum_words(0, &header[IP..UDP]);

        let mut udp = UdpPacket::new_unchecked(&mut header[UDP..]);
        udp.set_src_port(src.port());
        udp.set_dst_port(dst.port());
        let protocol = u64::from(u8::from(Protocol::Udp));
        let pseudo_sum = sum_words(sum_words(protocol, &src.ip().octets()), &dst.ip().octets());
        FrameTemplate {
            header,
            ip_sum,
            dscp,
            pseudo_sum,
            mtu: mtu as usize,
        }
    }

    /// Whether a datagram with `payload_len` bytes fits the interface MTU unfragmented.
    #[inline]
    pub fn fits(&self, payload_len: usize) -> bool {
        payload_len + 20 + 8 <= self.mtu
    }

    /// Writes the headers for a payload of `payload_len` bytes (which must [`fit`](Self::fits))
    /// of an input datagram with TOS byte `in_tos` into `out`.
    #[inline]
    pub fn fill(&self, out: &mut [u8; HEADER_LEN], payload_len: usize, in_tos: u8) {
        debug_assert!(self.fits(payload_len));
        *out = self.header;
        let udp_len = (8 + payload_len) as u16;
        let total_len = udp_len + 20;
        let tos = out_tos(self.dscp, in_tos);
        out[IP + 1] = tos;
        out[IP + 2..IP + 4].copy_from_slice(&total_len.to_be_bytes());
        // TOS is the low byte of the header's first 16-bit word.
        let ip_check = !fold(self.ip_sum + u64::from(total_len) + u64::from(tos));
        out[IP + 10..IP + 12].copy_from_slice(&ip_check.to_be_bytes());
        out[UDP + 4..UDP + 6].copy_from_slice(&udp_len.to_be_bytes());
        // Not complemented: the device adds the UDP header and payload and complements.
        let partial = fold(self.pseudo_sum + u64::from(udp_len));
        out[UDP + 6..UDP + 8].copy_from_slice(&partial.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    fn template(mtu: u32) -> FrameTemplate {
        FrameTemplate::new(
            [0x02, 0, 0, 0, 0, 0x01],
            "10.2.0.1:40000".parse().unwrap(),
            "239.200.9.9:5099".parse().unwrap(),
            8,
            Some(46),
            mtu,
        )
    }

    /// What a NIC with checksum offload does with `csum_start`/`csum_offset`.
    fn complete_checksum(frame: &mut [u8]) {
        let start = usize::from(CSUM_START);
        let field = start + usize::from(CSUM_OFFSET);
        let sum = !fold(sum_words(0, &frame[start..]));
        frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn frames_parse_back_with_valid_checksums_and_the_payload_intact() {
        let t = template(1500);
        for len in [0usize, 1, 2, 3, 100, 1001, 1472] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut header = [0u8; HEADER_LEN];
            t.fill(&mut header, len, 0b1011_1001); // input: DSCP 46, ECN ECT(1)
            let mut frame = [&header[VNET_HDR_LEN..], &payload[..]].concat();
            complete_checksum(&mut frame);

            let d = wire::parse(&frame).expect("parses");
            assert_eq!(d.src, Ipv4Addr::new(10, 2, 0, 1));
            assert_eq!(d.dst, Ipv4Addr::new(239, 200, 9, 9));
            assert_eq!((d.src_port, d.dst_port, d.ttl), (40000, 5099, 8));
            assert_eq!(d.payload, &payload[..]);
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(eth.dst_addr(), [0x01, 0x00, 0x5e, 0x48, 0x09, 0x09]);
            assert_eq!(eth.src_addr(), [0x02, 0, 0, 0, 0, 0x01]);
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            assert!(ip.verify_checksum(), "IPv4 checksum, len {len}");
            assert!(ip.dont_frag() && !ip.is_fragment());
            assert_eq!(
                (ip.dscp(), ip.ecn()),
                (46, 1),
                "the output's DSCP, the input's ECN"
            );
            assert_eq!(ip.ident(), 0);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.checksum() != 0);
            assert!(
                udp.verify_checksum(d.src, d.dst),
                "UDP checksum once offload completes it, len {len}"
            );
        }
    }

    #[test]
    fn the_virtio_header_asks_for_the_udp_checksum_and_no_segmentation() {
        let mut header = [0u8; HEADER_LEN];
        template(1500).fill(&mut header, 10, 0);
        assert_eq!(header[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(header[1], 0, "GSO none");
        assert_eq!(u16::from_ne_bytes([header[2], header[3]]), 42);
        assert_eq!(u16::from_ne_bytes([header[4], header[5]]), 0);
        assert_eq!(u16::from_ne_bytes([header[6], header[7]]), 34);
        assert_eq!(u16::from_ne_bytes([header[8], header[9]]), 6);
        #[cfg(target_endian = "little")]
        assert_eq!(
            header[..10],
            [1, 0, 42, 0, 0, 0, 34, 0, 6, 0],
            "legacy virtio header in host order, little-endian here"
        );
    }

    #[test]
    fn payloads_beyond_the_mtu_do_not_fit() {
        let t = template(1500);
        assert!(t.fits(1472));
        assert!(!t.fits(1473));
        assert!(
            !template(20).fits(0),
            "an MTU below the headers fits nothing"
        );
    }

    #[test]
    fn multicast_macs_keep_the_low_23_bits() {
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]
        );
        assert_eq!(
            multicast_mac(Ipv4Addr::new(224, 0, 0, 251)),
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]
        );
    }

    #[test]
    fn without_a_dscp_the_input_tos_is_kept_and_the_checksum_follows_it() {
        let keep = FrameTemplate::new(
            [0x02, 0, 0, 0, 0, 0x01],
            "10.2.0.1:40000".parse().unwrap(),
            "239.200.9.9:5099".parse().unwrap(),
            8,
            None,
            1500,
        );
        for tos in [0u8, 0xb8, 0xb9, 0x03, 0xff] {
            let mut header = [0u8; HEADER_LEN];
            keep.fill(&mut header, 100, tos);
            let ip = Ipv4Packet::new_unchecked(&header[VNET_HDR_LEN + 14..VNET_HDR_LEN + 34]);
            assert_eq!(ip.dscp() << 2 | ip.ecn(), tos);
            assert!(ip.verify_checksum(), "tos {tos:#x}");
        }
        assert_eq!(out_tos(Some(10), 0xb9), 10 << 2 | 1);
        assert_eq!(out_tos(None, 0xb9), 0xb9);
    }
}
