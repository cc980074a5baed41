//! IGMP membership queries (RFC 3376 §4.1): building the general query mcr sends as a
//! querier, and recognising queries from other queriers. No I/O.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::checksum::checksum;

/// IGMP message type of a membership query (every version).
pub const MEMBERSHIP_QUERY: u8 = 0x11;
/// Robustness variable sent in queries (RFC 3376 default).
pub const ROBUSTNESS: u8 = 2;

/// Encodes a time in the RFC 3376 §4.1.1/§4.1.7 code: values below 128 are literal, larger
/// ones a 3-bit exponent and 4-bit mantissa, `(mant | 0x10) << (exp + 3)`; rounds down,
/// saturates at the largest encodable value (31744).
pub fn encode_code(value: u32) -> u8 {
    if value < 128 {
        return value as u8;
    }
    for exp in 0..8u32 {
        let mant = (value >> (exp + 3)).saturating_sub(0x10);
        if mant < 0x10 {
            return 0x80 | ((exp as u8) << 4) | mant as u8;
        }
    }
    0xff
}

/// An IGMPv3 general query (group 0.0.0.0, no sources), 12 bytes: max response time in
/// tenths of a second, querier's robustness variable and query interval.
pub fn general_query(query_interval: Duration, max_response: Duration) -> [u8; 12] {
    let tenths = u32::try_from(max_response.as_millis() / 100).unwrap_or(u32::MAX);
    let qqic = u32::try_from(query_interval.as_secs()).unwrap_or(u32::MAX);
    let mut q = [0u8; 12];
    q[0] = MEMBERSHIP_QUERY;
    q[1] = encode_code(tenths);
    q[8] = ROBUSTNESS & 0x7;
    q[9] = encode_code(qqic);
    let sum = checksum(&q);
    q[2..4].copy_from_slice(&sum.to_be_bytes());
    q
}

/// The source address of `packet` (an IPv4 packet with its header, as a raw socket
/// receives it) if it is an IGMP membership query of any version, general or
/// group-specific; `None` for anything else.
pub fn query_source(packet: &[u8]) -> Option<Ipv4Addr> {
    let ihl = usize::from(*packet.first()? & 0x0f) * 4;
    if packet[0] >> 4 != 4 || ihl < 20 || packet.get(9) != Some(&2) {
        return None;
    }
    let igmp = packet.get(ihl..)?;
    if igmp.len() < 8 || igmp[0] != MEMBERSHIP_QUERY {
        return None;
    }
    let src: [u8; 4] = packet[12..16].try_into().ok()?;
    Some(Ipv4Addr::from(src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_literal_below_128_and_floating_above() {
        assert_eq!(encode_code(0), 0);
        assert_eq!(encode_code(125), 125);
        assert_eq!(encode_code(128), 0x80); // (0 | 0x10) << 3
        assert_eq!(encode_code(136), 0x81);
        assert_eq!(encode_code(31744), 0xff);
        assert_eq!(encode_code(1_000_000), 0xff);
        // Decoding what we encode never overshoots and loses less than one step.
        for v in [128u32, 200, 255, 1000, 3600, 31744] {
            let c = encode_code(v);
            let (exp, mant) = (u32::from((c >> 4) & 7), u32::from(c & 0xf));
            let back = (mant | 0x10) << (exp + 3);
            assert!(
                back <= v && v - back < 1 << (exp + 3),
                "{v} -> {c:#x} -> {back}"
            );
        }
    }

    #[test]
    fn a_general_query_has_a_valid_checksum_and_the_rfc_fields() {
        let q = general_query(Duration::from_secs(125), Duration::from_secs(10));
        assert_eq!(q[0], 0x11);
        assert_eq!(q[1], 100, "10 s in tenths");
        assert_eq!(&q[4..8], &[0, 0, 0, 0], "general: group 0.0.0.0");
        assert_eq!(q[8], 2);
        assert_eq!(q[9], 125);
        assert_eq!(checksum(&q), 0, "sums to zero with its checksum");
    }

    #[test]
    fn queries_are_recognised_with_their_source() {
        let mut p = vec![
            0x46, 0, 0, 36, 0, 0, 0x40, 0, 1, 2, 0, 0, 10, 1, 0, 1, 224, 0, 0, 1,
        ];
        p.extend_from_slice(&[0x94, 4, 0, 0]); // router alert
        p.extend_from_slice(&general_query(
            Duration::from_secs(1),
            Duration::from_secs(1),
        ));
        assert_eq!(query_source(&p), Some(Ipv4Addr::new(10, 1, 0, 1)));
        let mut report = p.clone();
        report[24] = 0x22; // v3 membership report
        assert_eq!(query_source(&report), None);
        let mut udp = p.clone();
        udp[9] = 17;
        assert_eq!(query_source(&udp), None);
        assert_eq!(query_source(&p[..26]), None, "truncated");
        assert_eq!(query_source(&[]), None);
    }
}
