//! Per-packet costs of the wire code, in nanoseconds per call: `cargo bench --bench wire`.
//!
//! What the packet path pays per frame for parsing, for the checksum verification of frames
//! the ring's flags do not vouch for (raw injection, NICs without receive checksum offload),
//! and for the loop guard. Frames from local senders and verifying NICs skip the
//! verification; see docs/BENCHMARKS.md.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use mcr::loopguard::{self, LoopGuard};
use mcr::wire::ipv4::Ipv4Packet;
use mcr::wire::udp::UdpPacket;

/// An Ethernet + IPv4 + UDP frame with `payload` bytes and correct checksums.
fn frame(payload: usize) -> Vec<u8> {
    let (src, dst) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(239, 1, 1, 1));
    let mut f = vec![0u8; 14 + 20 + 8 + payload];
    f[..14].copy_from_slice(&[1, 0, 0x5e, 1, 1, 1, 2, 0, 0, 0, 0, 1, 8, 0]);
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    {
        let mut udp = UdpPacket::new_unchecked(&mut f[34..]);
        udp.set_src_port(40000);
        udp.set_dst_port(5001);
        udp.set_len((8 + payload) as u16);
        udp.fill_checksum(src.into(), dst.into());
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..34]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len((28 + payload) as u16);
    ip.set_ttl(8);
    ip.set_protocol(mcr::wire::ipv4::Protocol::Udp);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    f
}

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f(); // warm up
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<40} {ns:8.1} ns");
}

fn main() {
    let guard = LoopGuard::default();
    let window = loopguard::window_ticks(Some(std::time::Duration::from_secs(1)));
    for size in [64, 1024, 1400] {
        let f = frame(size);
        assert!(mcr::wire::parse(&f).is_ok() && mcr::wire::verify_checksums(&f));
        measure(&format!("parse, {size} B payload"), 10_000_000, || {
            black_box(mcr::wire::parse(black_box(&f)).is_ok());
        });
        measure(
            &format!("verify_checksums, {size} B payload"),
            2_000_000,
            || {
                black_box(mcr::wire::verify_checksums(black_box(&f)));
            },
        );
        let payload = &f[42..];
        let mut now = 0u64;
        measure(&format!("loop guard, {size} B payload"), 2_000_000, || {
            now += 1000;
            black_box(guard.looped(0, 1, black_box(payload), now, window));
        });
    }
}
