//! Prebuilt frame headers for sending through an `AF_PACKET` socket.
//!
//! An output that sends through `AF_PACKET` skips the kernel's UDP and IP output path (and the
//! route lookup it does for every multicast send), so mcr writes the headers itself:
//!
//! ```text
//! virtio_net_hdr (10) │ Ethernet (14) │ IPv4, no options (20) │ UDP (8) │ payload (borrowed)
//! virtio_net_hdr (10) │ Ethernet (14) │ IPv6, no extensions (40) │ UDP (8) │ payload (borrowed)
//! ```
//!
//! The family is the output's (its group's), whatever the input datagram's: a flow may
//! translate IPv4 to IPv6 and back, as only these headers differ.
//!
//! A [`FrameTemplate`] holds every header byte that is the same for all packets of an output,
//! plus the partial sums its checksums start from, so per packet [`FrameTemplate::fill`] writes
//! only the two lengths and two checksums — O(1), no pass over the payload:
//!
//! - the IPv4 header checksum is completed from a precomputed sum of the constant words (IPv6
//!   has none);
//! - the UDP checksum is *offloaded* (for IPv6 it is mandatory): the virtio header asks the
//!   kernel for `VIRTIO_NET_HDR_F_NEEDS_CSUM` from the UDP header (byte 34, IPv6: 54) with the
//!   result at offset 6, and the UDP checksum
//!   field holds the pseudo-header sum, exactly what the kernel's own UDP output hands a NIC with
//!   checksum offload. The NIC (or the kernel, for a device without offload) completes it; veth
//!   passes it to the receiver as already verified.
//!
//! The headers are what the kernel's UDP path would have built for the same output: the source
//! address and port of the interface's UDP socket (which reserves that port), the output's TTL,
//! the input datagram's DSCP and ECN (or the output's own DSCP with the input's ECN, see
//! [`out_tos`]; IPv6: traffic class, flow label 0), DF set with IP ID 0 (RFC 6864 atomic
//! datagrams), and the Ethernet destination derived from the group (RFC 1112: 01:00:5e + the
//! low 23 bits; RFC 2464: 33:33 + the low 32 bits), so no neighbour lookup exists.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::checksum::{fold, pseudo_sum_v4, pseudo_sum_v6, sum_words};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, Protocol, UdpPacket};

/// `sizeof(struct virtio_net_hdr)`, the header `PACKET_VNET_HDR` puts in front of each frame.
pub const VNET_HDR_LEN: usize = 10;
/// Ethernet + IPv4 + UDP: what a frame carries in front of the payload on the wire.
pub const WIRE_HEADER_LEN: usize = 14 + 20 + 8;
/// Ethernet + IPv6 + UDP.
pub const WIRE_HEADER_LEN_V6: usize = 14 + 40 + 8;
/// Most bytes written in front of a payload (IPv6); [`FrameTemplate::fill`] says how many.
pub const MAX_HEADER_LEN: usize = VNET_HDR_LEN + WIRE_HEADER_LEN_V6;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `gso_type` of a run of UDP datagrams cut at `gso_size` (Linux 6.2 and later).
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// Most payload bytes one run may carry: its IPv4 total length must fit 16 bits.
pub const MAX_RUN_PAYLOAD: usize = 65535 - 20 - 8;
/// The UDP checksum field within the UDP header.
const CSUM_OFFSET: u16 = 6;

const ETH: usize = VNET_HDR_LEN;
const IP: usize = ETH + 14;
/// IPv4's UDP header; IPv6's is at `IP + 40`.
const UDP: usize = IP + 20;
const UDP_V6: usize = IP + 40;

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
    header: [u8; MAX_HEADER_LEN],
    /// IPv6 headers (else IPv4).
    v6: bool,
    /// Unfolded sum of the IPv4 header's constant words (total length, TOS and checksum zero).
    ip_sum: u64,
    /// The output's DSCP, or `None` to keep each input datagram's.
    dscp: Option<u8>,
    /// Unfolded sum of the UDP pseudo-header without its length.
    pseudo_sum: u64,
    /// The interface MTU: the largest IP packet a frame may carry.
    mtu: usize,
    /// IP and UDP header bytes in that packet.
    overhead: usize,
    /// Whether runs may be sent through this output (its link cuts them into datagrams
    /// before they leave the host: `ethtool::cuts_runs`).
    runs: bool,
}

/// The Ethernet address IPv4 multicast `group` maps to (RFC 1112, section 6.4).
pub fn multicast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// The Ethernet address IPv6 multicast `group` maps to (RFC 2464, section 7).
pub fn multicast_mac_v6(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

impl FrameTemplate {
    /// Headers from `src` (the interface socket's own address and port) to `dst` (group and
    /// port, of `src`'s family) with `ttl` (IPv6: hop limit) and `dscp` (see [`out_tos`]), out
    /// of an interface with address `src_mac` and `mtu`.
    pub fn new(
        src_mac: [u8; 6],
        src: SocketAddr,
        dst: SocketAddr,
        ttl: u8,
        dscp: Option<u8>,
        mtu: u32,
    ) -> Self {
        let v6 = dst.is_ipv6();
        debug_assert_eq!(v6, src.is_ipv6(), "one family per frame");
        let (udp_at, ip_len) = if v6 { (UDP_V6, 40) } else { (UDP, 20) };
        let mut header = [0u8; MAX_HEADER_LEN];
        header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        // gso_type 0 (VIRTIO_NET_HDR_GSO_NONE), gso_size 0. Packet sockets read the header in
        // the host's byte order (legacy virtio).
        let wire_len = (udp_at + 8 - ETH) as u16;
        header[2..4].copy_from_slice(&wire_len.to_ne_bytes());
        header[6..8].copy_from_slice(&((udp_at - ETH) as u16).to_ne_bytes());
        header[8..10].copy_from_slice(&CSUM_OFFSET.to_ne_bytes());

        let mut eth = EthernetFrame::new_unchecked(&mut header[ETH..IP]);
        eth.set_src_addr(src_mac);
        let (ip_sum, pseudo_sum) = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                eth.set_dst_addr(multicast_mac(d));
                eth.set_ethertype(EtherType::Ipv4);
                let mut ip = Ipv4Packet::new_unchecked(&mut header[IP..UDP]);
                ip.set_version(4);
                ip.set_header_len(20);
                ip.set_dont_frag(true);
                ip.set_ttl(ttl);
                ip.set_protocol(Protocol::Udp);
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
                let ip_sum = sum_words(0, &header[IP..UDP]);
                (ip_sum, pseudo_sum_v4(s, d, Protocol::Udp))
            }
            (s, d) => {
                let (IpAddr::V6(s), IpAddr::V6(d)) = (s, d) else {
                    unreachable!("an output's socket is of its group's family")
                };
                eth.set_dst_addr(multicast_mac_v6(d));
                eth.set_ethertype(EtherType::Ipv6);
                // Traffic class and payload length are written per frame; flow label 0.
                let mut ip = Ipv6Packet::new_unchecked(&mut header[IP..UDP_V6]);
                ip.set_version(6);
                ip.set_next_header(Protocol::Udp);
                ip.set_hop_limit(ttl);
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
                (0, pseudo_sum_v6(s, d, Protocol::Udp))
            }
        };

        let mut udp = UdpPacket::new_unchecked(&mut header[udp_at..udp_at + 8]);
        udp.set_src_port(src.port());
        udp.set_dst_port(dst.port());
        FrameTemplate {
            header,
            v6,
            ip_sum,
            dscp,
            pseudo_sum,
            mtu: mtu as usize,
            overhead: ip_len + 8,
            runs: false,
        }
    }

    /// The template with runs allowed or not (see [`FrameTemplate::runs`]).
    pub fn with_runs(mut self, runs: bool) -> Self {
        self.runs = runs;
        self
    }

    /// Whether frames of this output may be sent as runs: the link cuts a run into its
    /// datagrams before they leave the host.
    #[inline]
    pub fn runs(&self) -> bool {
        self.runs
    }

    /// Whether a datagram with `payload_len` bytes fits the interface MTU unfragmented.
    #[inline]
    pub fn fits(&self, payload_len: usize) -> bool {
        payload_len + self.overhead <= self.mtu
    }

    /// Writes the headers for a payload of `payload_len` bytes (which must [`fit`](Self::fits))
    /// of an input datagram with TOS byte (IPv6: traffic class) `in_tos` into `out`; returns
    /// how many bytes of `out` they take.
    #[inline]
    pub fn fill(&self, out: &mut [u8; MAX_HEADER_LEN], payload_len: usize, in_tos: u8) -> usize {
        debug_assert!(self.fits(payload_len));
        self.fill_len(out, payload_len, in_tos)
    }

    /// Writes the headers for a run of datagrams sent as one (UDP segmentation, see
    /// [`MAX_RUN_PAYLOAD`]): `total_len` payload bytes cut into segments of `segment_len`
    /// (the last may be shorter), each of which must [`fit`](Self::fits). The IP and UDP
    /// lengths and the pseudo-header sum cover the whole run, as the kernel's own UDP GSO
    /// output leaves them; the kernel (or a NIC with USO) writes each segment's own. Returns how
    /// many bytes of `out` the headers take.
    #[inline]
    pub fn fill_run(
        &self,
        out: &mut [u8; MAX_HEADER_LEN],
        segment_len: usize,
        total_len: usize,
        in_tos: u8,
    ) -> usize {
        debug_assert!(self.fits(segment_len) && segment_len > 0);
        debug_assert!(total_len > segment_len && total_len <= MAX_RUN_PAYLOAD);
        let n = self.fill_len(out, total_len, in_tos);
        out[1] = VIRTIO_NET_HDR_GSO_UDP_L4;
        out[4..6].copy_from_slice(&(segment_len as u16).to_ne_bytes());
        n
    }

    #[inline]
    fn fill_len(&self, out: &mut [u8; MAX_HEADER_LEN], payload_len: usize, in_tos: u8) -> usize {
        *out = self.header;
        let udp_len = (8 + payload_len) as u16;
        let tos = out_tos(self.dscp, in_tos);
        let udp = if self.v6 {
            // Traffic class straddles the first two bytes; the flow label stays 0.
            out[IP] = 0x60 | tos >> 4;
            out[IP + 1] = tos << 4;
            out[IP + 4..IP + 6].copy_from_slice(&udp_len.to_be_bytes());
            UDP_V6
        } else {
            let total_len = udp_len + 20;
            out[IP + 1] = tos;
            out[IP + 2..IP + 4].copy_from_slice(&total_len.to_be_bytes());
            // TOS is the low byte of the header's first 16-bit word.
            let ip_check = !fold(self.ip_sum + u64::from(total_len) + u64::from(tos));
            out[IP + 10..IP + 12].copy_from_slice(&ip_check.to_be_bytes());
            UDP
        };
        out[udp + 4..udp + 6].copy_from_slice(&udp_len.to_be_bytes());
        // Not complemented: the device adds the UDP header and payload and complements.
        let partial = fold(self.pseudo_sum + u64::from(udp_len));
        out[udp + 6..udp + 8].copy_from_slice(&partial.to_be_bytes());
        udp + 8
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

    /// What a NIC with checksum offload does with `csum_start`/`csum_offset` (IPv4 frames).
    fn complete_checksum(frame: &mut [u8]) {
        let start = 14 + 20;
        let field = start + usize::from(CSUM_OFFSET);
        let sum = !fold(sum_words(0, &frame[start..]));
        frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn frames_parse_back_with_valid_checksums_and_the_payload_intact() {
        let t = template(1500);
        for len in [0usize, 1, 2, 3, 100, 1001, 1472] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut header = [0u8; MAX_HEADER_LEN];
            let n = t.fill(&mut header, len, 0b1011_1001); // input: DSCP 46, ECN ECT(1)
            assert_eq!(n, VNET_HDR_LEN + WIRE_HEADER_LEN);
            let mut frame = [&header[VNET_HDR_LEN..n], &payload[..]].concat();
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
        let mut header = [0u8; MAX_HEADER_LEN];
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

    /// What the kernel's UDP segmentation (`__udp_gso_segment`, `inet_gso_segment`) makes of
    /// a run: each segment gets its own IP total length and header checksum, UDP length, and
    /// the run's partial sum adjusted from the run's UDP length to its own
    /// (`csum16_add(csum16_sub(check, len), newlen)`); the device then completes the sum.
    fn segments(header: &[u8], payload: &[u8], segment: usize) -> Vec<Vec<u8>> {
        let run_udp_len = u16::from_be_bytes([header[UDP + 4], header[UDP + 5]]);
        let run_check = u16::from_be_bytes([header[UDP + 6], header[UDP + 7]]);
        payload
            .chunks(segment)
            .map(|chunk| {
                let mut frame = [&header[ETH..UDP + 8], chunk].concat();
                let udp_len = (8 + chunk.len()) as u16;
                let ip_len = 20 + udp_len;
                frame[16..18].copy_from_slice(&ip_len.to_be_bytes());
                frame[24..26].copy_from_slice(&[0, 0]);
                let ip_check = !fold(sum_words(0, &frame[14..34]));
                frame[24..26].copy_from_slice(&ip_check.to_be_bytes());
                frame[38..40].copy_from_slice(&udp_len.to_be_bytes());
                let adjusted =
                    fold(u64::from(run_check) + u64::from(!run_udp_len) + u64::from(udp_len));
                frame[40..42].copy_from_slice(&adjusted.to_be_bytes());
                complete_checksum(&mut frame);
                frame
            })
            .collect()
    }

    #[test]
    fn a_run_is_one_header_for_many_segments_each_with_a_valid_checksum_once_cut() {
        let t = template(1500);
        for (segment, count, last) in [(1000usize, 5usize, 1000usize), (1472, 44, 1472), (25, 3, 7)]
        {
            let total = segment * (count - 1) + last;
            let payload: Vec<u8> = (0..total).map(|i| (i * 13 + segment) as u8).collect();
            let mut header = [0u8; MAX_HEADER_LEN];
            let n = t.fill_run(&mut header, segment, total, 0);
            assert_eq!(n, VNET_HDR_LEN + WIRE_HEADER_LEN);
            assert_eq!(header[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
            assert_eq!(header[1], VIRTIO_NET_HDR_GSO_UDP_L4, "UDP segmentation");
            assert_eq!(u16::from_ne_bytes([header[4], header[5]]) as usize, segment);
            let ip = Ipv4Packet::new_unchecked(&header[IP..UDP]);
            assert_eq!(usize::from(ip.total_len()), 28 + total, "the whole run");
            let frames = segments(&header[..n], &payload, segment);
            assert_eq!(frames.len(), count);
            for (k, frame) in frames.iter().enumerate() {
                let d = wire::parse(frame).expect("parses");
                let want = &payload[k * segment..(k * segment + segment).min(total)];
                assert_eq!(d.payload, want, "segment {k} of {segment}");
                let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
                assert!(ip.verify_checksum());
                let udp = UdpPacket::new_checked(ip.payload()).unwrap();
                assert!(
                    udp.verify_checksum(d.src, d.dst),
                    "segment {k} of {segment}: the adjusted sum completes to a valid checksum"
                );
            }
        }
    }

    fn template_v6(dscp: Option<u8>, mtu: u32) -> FrameTemplate {
        FrameTemplate::new(
            [0x02, 0, 0, 0, 0, 0x01],
            "[2001:db8:2::1]:40000".parse().unwrap(),
            "[ff05::9:1]:5099".parse().unwrap(),
            4,
            dscp,
            mtu,
        )
    }

    #[test]
    fn ipv6_frames_parse_back_with_a_valid_checksum_and_the_payload_intact() {
        for (dscp, tclass) in [(Some(10u8), 10 << 2 | 1), (None, 0b1011_1001)] {
            let t = template_v6(dscp, 1500);
            for len in [0usize, 1, 7, 1001, 1452] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
                let mut header = [0u8; MAX_HEADER_LEN];
                let n = t.fill(&mut header, len, 0b1011_1001);
                assert_eq!(n, MAX_HEADER_LEN);
                // The virtio header: checksum from the UDP header (54), result at +6.
                assert_eq!(u16::from_ne_bytes([header[2], header[3]]), 62);
                assert_eq!(u16::from_ne_bytes([header[6], header[7]]), 54);
                let mut frame = [&header[VNET_HDR_LEN..n], &payload[..]].concat();
                let sum = !fold(sum_words(0, &frame[54..]));
                frame[60..62].copy_from_slice(&sum.to_be_bytes());

                let d = wire::parse(&frame).expect("parses");
                assert_eq!(d.src, "2001:db8:2::1".parse::<IpAddr>().unwrap());
                assert_eq!(d.dst, "ff05::9:1".parse::<IpAddr>().unwrap());
                assert_eq!((d.src_port, d.dst_port, d.ttl), (40000, 5099, 4));
                assert_eq!(d.tos, tclass, "traffic class, dscp {dscp:?}");
                assert_eq!(d.payload, &payload[..]);
                assert!(wire::verify_checksums(&frame), "len {len}");
                let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
                assert_eq!(eth.dst_addr(), [0x33, 0x33, 0, 0x09, 0, 0x01]);
                let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
                assert_eq!(ip.flow_label(), 0);
                assert_eq!(usize::from(ip.payload_len()), 8 + len);
            }
        }
        assert!(template_v6(None, 1500).fits(1452));
        assert!(
            !template_v6(None, 1500).fits(1453),
            "IPv6 headers are 20 bytes longer"
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
    fn ipv6_multicast_macs_keep_the_low_32_bits() {
        assert_eq!(
            multicast_mac_v6("ff02::1:ff00:1234".parse().unwrap()),
            [0x33, 0x33, 0xff, 0x00, 0x12, 0x34]
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
            let mut header = [0u8; MAX_HEADER_LEN];
            keep.fill(&mut header, 100, tos);
            let ip = Ipv4Packet::new_unchecked(&header[VNET_HDR_LEN + 14..VNET_HDR_LEN + 34]);
            assert_eq!(ip.dscp() << 2 | ip.ecn(), tos);
            assert!(ip.verify_checksum(), "tos {tos:#x}");
        }
        assert_eq!(out_tos(Some(10), 0xb9), 10 << 2 | 1);
        assert_eq!(out_tos(None, 0xb9), 0xb9);
    }
}
