//! The fixed RTP header (RFC 3550 §5.1), read from a UDP payload.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! |                           timestamp                           |
//! |           synchronization source (SSRC) identifier            |
//! |            contributing source (CSRC) identifiers             | × CC
//! ```
//!
//! Only what a monitor or a merge needs is read: the sequence number, the timestamp and the
//! SSRC. A payload is RTP when it holds the fixed header and its CSRC list and says version
//! 2; RTCP on the same port (payload types 72–76 with the marker bit, RFC 5761) is not.

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 12;

/// What a monitor or merge reads from one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_type: u8,
}

/// The RTP header at the start of `payload`, if it is one.
#[inline]
pub fn parse(payload: &[u8]) -> Option<Rtp> {
    let head: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
    if head[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(head[0] & 0x0f);
    if payload.len() < HEADER_LEN + 4 * csrcs {
        return None;
    }
    let pt_byte = head[1];
    if (200..=204).contains(&pt_byte) {
        return None; // RTCP multiplexed on the port: marker bit + PT 72–76
    }
    Some(Rtp {
        seq: u16::from_be_bytes([head[2], head[3]]),
        timestamp: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
        ssrc: u32::from_be_bytes([head[8], head[9], head[10], head[11]]),
        payload_type: pt_byte & 0x7f,
    })
}

/// Writes a fixed header (version 2, no padding, extension or CSRCs) at the start of `buf`.
pub fn write(buf: &mut [u8], rtp: Rtp) {
    if let Some(head) = buf.get_mut(..HEADER_LEN) {
        head[0] = 2 << 6;
        head[1] = rtp.payload_type & 0x7f;
        head[2..4].copy_from_slice(&rtp.seq.to_be_bytes());
        head[4..8].copy_from_slice(&rtp.timestamp.to_be_bytes());
        head[8..12].copy_from_slice(&rtp.ssrc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: Rtp = Rtp {
        seq: 0xfffe,
        timestamp: 0x1234_5678,
        ssrc: 0xdead_beef,
        payload_type: 33,
    };

    #[test]
    fn a_written_header_reads_back() {
        let mut buf = [0u8; 20];
        write(&mut buf, SAMPLE);
        assert_eq!(buf[..4], [0x80, 33, 0xff, 0xfe]);
        assert_eq!(parse(&buf), Some(SAMPLE));
    }

    #[test]
    fn short_payloads_other_versions_missing_csrcs_and_rtcp_are_not_rtp() {
        let mut buf = [0u8; 20];
        write(&mut buf, SAMPLE);
        assert_eq!(parse(&buf[..11]), None);
        let mut v1 = buf;
        v1[0] = 1 << 6;
        assert_eq!(parse(&v1), None);
        let mut csrc = buf;
        csrc[0] |= 3; // three CSRCs need 24 bytes
        assert_eq!(parse(&csrc), None);
        csrc[0] = 0x81; // one fits
        assert!(parse(&csrc).is_some());
        let mut rtcp = buf;
        rtcp[1] = 200; // sender report
        assert_eq!(parse(&rtcp), None);
    }
}
