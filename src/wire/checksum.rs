//! The Internet checksum (RFC 1071), shared by the IPv4 header and UDP.
//!
//! Encoders use it, and the packet path verifies with it the checksums of
//! frames no one has vouched for ([`super::verify_checksums`]). Sums are accumulated in a u64,
//! which cannot overflow for any buffer that fits in memory, and folded once
//! at the end.

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
    fn carries_fold_back_in() {
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(checksum(&[0xff, 0xff, 0x00, 0x01]), !0x0001);
    }
}
