//! The Internet checksum (RFC 1071), shared by the IPv4 header and UDP, and the
//! pseudo-header sums UDP adds over IPv4 and IPv6.
//!
//! Encoders use it, and the packet path verifies with it the checksums of
//! frames no one has vouched for ([`super::verify_checksums`]). Sums are accumulated in a u64,
//! which cannot overflow for any buffer that fits in memory, and folded once
//! at the end.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipv4::Protocol;

/// The RFC 1071 Internet checksum of `data`: the ones' complement of the
/// ones' complement sum of its big-endian 16-bit words, an odd last byte
/// padded with zero. Summing a region that includes a correct checksum
/// yields 0.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(0, data))
}

/// Adds `data`'s big-endian 16-bit words to `acc` without folding; an odd
/// last byte counts as the high byte of a zero-padded word.
pub fn sum_words(mut acc: u64, data: &[u8]) -> u64 {
    // Big-endian 32-bit words: 2^16 ≡ 1 modulo 2^16 - 1, so their sum folds to the same
    // ones' complement sum as the 16-bit words', with half the additions.
    let mut quads = data.chunks_exact(4);
    for quad in &mut quads {
        acc += u64::from(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]));
    }
    let mut words = quads.remainder().chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Unfolded sum of the IPv4 pseudo-header (RFC 768) without its length field: source,
/// destination, zero and `protocol`. Add the upper-layer length and the upper-layer bytes,
/// then fold.
pub fn pseudo_sum_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol) -> u64 {
    let acc = sum_words(u64::from(u8::from(protocol)), &src.octets());
    sum_words(acc, &dst.octets())
}

/// Unfolded sum of the IPv6 pseudo-header (RFC 8200 §8.1) without its upper-layer length:
/// source, destination (the final one, which without a routing header is the header's),
/// three zero bytes and `next_header` (the upper layer's, not an extension header's). Add the
/// upper-layer length and the upper-layer bytes, then fold, exactly as for IPv4: the length
/// field has 32 bits, but a length below 65536 leaves its upper half zero.
pub fn pseudo_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: Protocol) -> u64 {
    let acc = sum_words(u64::from(u8::from(next_header)), &src.octets());
    sum_words(acc, &dst.octets())
}

/// Folds carries back in until the sum fits in 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        assert_eq!(checksum(&[0xab]), !0xab00);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn wide_sums_fold_like_16_bit_words() {
        let reference = |data: &[u8]| {
            let mut acc = 0u64;
            for (i, b) in data.iter().enumerate() {
                acc += u64::from(*b) << if i % 2 == 0 { 8 } else { 0 };
            }
            fold(acc)
        };
        let data: Vec<u8> = (0..1501u32)
            .map(|i| (i * 7919 % 251) as u8 ^ 0xa5)
            .collect();
        for len in [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 1000, 1499, 1500, 1501] {
            assert_eq!(
                fold(sum_words(0, &data[..len])),
                reference(&data[..len]),
                "{len}"
            );
        }
        assert_eq!(fold(sum_words(0, &[0xff; 1500])), 0xffff);
    }

    #[test]
    fn pseudo_headers_sum_like_their_rfc_layout() {
        let (src4, dst4) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(239, 1, 1, 1));
        // RFC 768: source, destination, zero, protocol, UDP length (16 bits).
        let v4 = [10, 77, 0, 1, 239, 1, 1, 1, 0, 17, 0, 40];
        assert_eq!(
            fold(pseudo_sum_v4(src4, dst4, Protocol::Udp) + 40),
            fold(sum_words(0, &v4))
        );

        let src6 = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
        let dst6 = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);
        // RFC 8200 §8.1: source, destination, upper-layer length (32 bits), three zero
        // bytes, next header.
        for len in [8u32, 40, 1508, 65535] {
            let mut v6 = Vec::new();
            v6.extend_from_slice(&src6.octets());
            v6.extend_from_slice(&dst6.octets());
            v6.extend_from_slice(&len.to_be_bytes());
            v6.extend_from_slice(&[0, 0, 0, 17]);
            assert_eq!(
                fold(pseudo_sum_v6(src6, dst6, Protocol::Udp) + u64::from(len)),
                fold(sum_words(0, &v6)),
                "{len}"
            );
        }
    }

    #[test]
    fn carries_fold_back_in() {
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(checksum(&[0xff, 0xff, 0x00, 0x01]), !0x0001);
    }
}
