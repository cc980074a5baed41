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
    let mut words = data.chunks_exact(2);
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
    fn carries_fold_back_in() {
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(checksum(&[0xff, 0xff, 0x00, 0x01]), !0x0001);
    }
}
