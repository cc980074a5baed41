//! The probe payload `gen` sends and `sink` checks.
//!
//! Layout, little endian:
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..4   | magic `b"MCR1"`                                         |
//! | 4..8   | stream id (`u32`)                                       |
//! | 8..16  | sequence number (`u64`, from 0 per stream)              |
//! | 16..24 | send time, `CLOCK_MONOTONIC` nanoseconds (`u64`)        |
//! | 24..   | filler: byte `i` = `seq as u8 ^ i as u8 ^ stream as u8` |
//!
//! `CLOCK_MONOTONIC` is shared by every network namespace of a host, so a sink in one namespace
//! can subtract a generator's timestamp from another. The filler depends on the sequence number
//! and stream so that a relay that hands out a stale or mixed-up buffer is caught, not just one
//! that flips bits.

use std::fmt;

/// Bytes before the filler; also the smallest valid payload.
pub const HEADER_LEN: usize = 24;

/// First four bytes of every probe.
pub const MAGIC: [u8; 4] = *b"MCR1";

mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const STREAM: Range<usize> = 4..8;
    pub const SEQ: Range<usize> = 8..16;
    pub const SENT: Range<usize> = 16..24;
}

/// What a valid probe says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub stream: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

/// Why a datagram is not a valid probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload of {len} bytes is shorter than the {HEADER_LEN}-byte probe header")]
    TooShort { len: usize },
    #[error("payload does not start with the probe magic (found {found:02x?})")]
    BadMagic { found: [u8; 4] },
    #[error("probe filler is corrupt at byte {offset}")]
    CorruptFiller { offset: usize },
}

impl PayloadError {
    /// A bounded label for counters and logs.
    pub fn name(&self) -> &'static str {
        match self {
            PayloadError::TooShort { .. } => "too_short",
            PayloadError::BadMagic { .. } => "bad_magic",
            PayloadError::CorruptFiller { .. } => "corrupt_filler",
        }
    }
}

/// Writes a complete probe (header and filler); `buf.len()` is the payload size.
///
/// A buffer shorter than [`HEADER_LEN`] receives only the header bytes that fit, which
/// [`check`] rejects as [`PayloadError::TooShort`].
pub fn write(buf: &mut [u8], stream: u32, seq: u64, sent_ns: u64) {
    write_header(buf, stream, seq, sent_ns);
    if let Some(filler) = buf.get_mut(HEADER_LEN..) {
        let key = filler_key(stream, seq);
        // Written as a plain indexed loop over a slice so it vectorises.
        for (i, b) in filler.iter_mut().enumerate() {
            *b = key ^ (i + HEADER_LEN) as u8;
        }
    }
}

/// Writes only the header. The filler must already match `stream` and `seq` (see [`write()`]).
pub fn write_header(buf: &mut [u8], stream: u32, seq: u64, sent_ns: u64) {
    let mut header = [0u8; HEADER_LEN];
    header[field::MAGIC].copy_from_slice(&MAGIC);
    header[field::STREAM].copy_from_slice(&stream.to_le_bytes());
    header[field::SEQ].copy_from_slice(&seq.to_le_bytes());
    header[field::SENT].copy_from_slice(&sent_ns.to_le_bytes());
    let n = buf.len().min(HEADER_LEN);
    buf[..n].copy_from_slice(&header[..n]);
}

/// Overwrites only the send timestamp of an already written probe.
pub fn set_sent_ns(buf: &mut [u8], sent_ns: u64) {
    if let Some(field) = buf.get_mut(field::SENT) {
        field.copy_from_slice(&sent_ns.to_le_bytes());
    }
}

/// Validates a received payload and returns its header.
pub fn check(buf: &[u8]) -> Result<Probe, PayloadError> {
    let (Some(header), Some(filler)) = (buf.get(..HEADER_LEN), buf.get(HEADER_LEN..)) else {
        return Err(PayloadError::TooShort { len: buf.len() });
    };
    let found = le_array::<4>(&header[field::MAGIC]);
    if found != MAGIC {
        return Err(PayloadError::BadMagic { found });
    }
    let probe = Probe {
        stream: u32::from_le_bytes(le_array(&header[field::STREAM])),
        seq: u64::from_le_bytes(le_array(&header[field::SEQ])),
        sent_ns: u64::from_le_bytes(le_array(&header[field::SENT])),
    };
    let key = filler_key(probe.stream, probe.seq);
    // Accumulate differences without an early exit so the loop vectorises; locate the first
    // bad byte only on the (rare) failure path.
    let diff = filler
        .iter()
        .enumerate()
        .fold(0u8, |acc, (i, &b)| acc | (b ^ key ^ (i + HEADER_LEN) as u8));
    if diff != 0 {
        let offset = filler
            .iter()
            .enumerate()
            .position(|(i, &b)| b != key ^ (i + HEADER_LEN) as u8)
            .map_or(HEADER_LEN, |i| i + HEADER_LEN);
        return Err(PayloadError::CorruptFiller { offset });
    }
    Ok(probe)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    // CLOCK_MONOTONIC cannot fail on Linux; 0 keeps this total without a panic path.
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec() as u64)
    })
}

fn filler_key(stream: u32, seq: u64) -> u8 {
    seq as u8 ^ stream as u8
}

/// Copies an exactly `N`-byte slice into an array (callers pass fixed header ranges).
fn le_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream={} seq={} sent_ns={}",
            self.stream, self.seq, self.sent_ns
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_every_interesting_size() {
        for size in [24, 25, 64, 255, 256, 257, 1024, 1500, 65_507] {
            let mut buf = vec![0xAA; size];
            write(&mut buf, 0x0102_0304, 0x1122_3344_5566_7788, 42);
            let p = check(&buf).unwrap();
            assert_eq!(
                p,
                Probe {
                    stream: 0x0102_0304,
                    seq: 0x1122_3344_5566_7788,
                    sent_ns: 42
                }
            );
        }
    }

    #[test]
    fn encodes_the_documented_layout() {
        let mut buf = [0u8; 28];
        write(&mut buf, 7, 0x0100, 0x0203);
        assert_eq!(&buf[..4], b"MCR1");
        assert_eq!(buf[4..8], [7, 0, 0, 0]);
        assert_eq!(buf[8..16], [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(buf[16..24], [3, 2, 0, 0, 0, 0, 0, 0]);
        // byte i = seq as u8 (0) ^ i ^ stream as u8 (7)
        assert_eq!(buf[24..], [24 ^ 7, 25 ^ 7, 26 ^ 7, 27 ^ 7]);
    }

    #[test]
    fn header_and_timestamp_updates_keep_the_filler_valid() {
        let mut buf = vec![0u8; 100];
        write(&mut buf, 3, 9, 0);
        set_sent_ns(&mut buf, 123_456);
        assert_eq!(check(&buf).unwrap().sent_ns, 123_456);
        // Same filler key (seq ^ stream low bytes unchanged): the header alone may be rewritten.
        write_header(&mut buf, 3, 9 + 256, 5);
        assert_eq!(
            check(&buf).unwrap(),
            Probe {
                stream: 3,
                seq: 265,
                sent_ns: 5
            }
        );
        // Different key: the stale filler is caught.
        write_header(&mut buf, 3, 10, 5);
        assert_eq!(check(&buf), Err(PayloadError::CorruptFiller { offset: 24 }));
    }

    #[test]
    fn rejects_short_foreign_and_corrupt_payloads() {
        assert_eq!(check(&[]), Err(PayloadError::TooShort { len: 0 }));
        let mut short = [0u8; 23];
        write(&mut short, 1, 1, 1);
        assert_eq!(check(&short), Err(PayloadError::TooShort { len: 23 }));

        let mut buf = vec![0u8; 1024];
        write(&mut buf, 1, 2, 3);
        buf[0] = b'X';
        assert_eq!(check(&buf), Err(PayloadError::BadMagic { found: *b"XCR1" }));

        write(&mut buf, 1, 2, 3);
        buf[1000] ^= 0x10;
        let err = check(&buf).unwrap_err();
        assert_eq!(err, PayloadError::CorruptFiller { offset: 1000 });
        assert_eq!(err.name(), "corrupt_filler");
        assert!(err.to_string().contains("1000"));
    }

    #[test]
    fn the_filler_depends_on_stream_and_sequence() {
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        write(&mut a, 1, 1, 0);
        write(&mut b, 2, 1, 0);
        assert_ne!(a[24..], b[24..]);
        write(&mut b, 1, 2, 0);
        assert_ne!(a[24..], b[24..]);
        // A payload truncated in flight still checks (the size is not encoded), by design:
        // truncation shows up as a byte-count mismatch, not as corruption.
        assert!(check(&a[..40]).is_ok());
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
