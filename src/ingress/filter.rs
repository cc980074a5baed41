//! The classic BPF program on every receive socket: what the ring may copy at all.
//!
//! It admits UDP to a multicast group of either family — IPv4 to 224.0.0.0/4, IPv6 to
//! ff00::/8 — untagged or under one 802.1Q tag, and nothing this host sends or loops back
//! (`PACKET_OUTGOING`, `PACKET_LOOPBACK`): mcr can never read its own output. For IPv6 it
//! looks at the first next-header field and, behind a hop-by-hop header, at the second:
//! UDP is admitted, and so are a fragment header and destination options, which the parser
//! then counts (`fragment`) or walks; anything else — MLD reports behind their hop-by-hop
//! router alert, ICMPv6, TCP — is refused before it is copied, as IGMP is for IPv4.
//!
//! Unicast inputs (`address = …`) add, per interface, one check per (address, port) for UDP
//! to a unicast destination: for IPv4 after the header's own length (`BPF_MSH`), for IPv6
//! with UDP as the first next header (a unicast feed carries no extension headers; one that
//! does is not admitted). [`MAX_UNICAST`] bounds the program well inside the kernel's 4096
//! instructions.
//!
//! The program is assembled from labelled blocks, so no jump offset is counted by hand. A
//! conditional jump's offsets are 8 bits, so each is written as a test that skips or takes
//! an unconditional `BPF_JA` (32-bit offset): unicast lists of any length jump anywhere.

use std::net::IpAddr;

/// Unicast (address, port) inputs one interface's filter admits at most.
pub const MAX_UNICAST: usize = 256;

/// `struct sock_filter` instructions of the filter for an interface whose unicast inputs
/// are `unicast` (at most [`MAX_UNICAST`]; more are left out).
pub fn program(unicast: &[(IpAddr, u16)]) -> Vec<libc::sock_filter> {
    let mut a = Asm::default();
    let pkttype = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
    a.ld(W, pkttype);
    a.jeq(u32::from(libc::PACKET_OUTGOING), DROP);
    a.jeq(u32::from(libc::PACKET_LOOPBACK), DROP);
    a.ld(H, 12);
    a.jeq(0x0800, "v4");
    a.jeq(0x86dd, "v6");
    a.jeq(0x8100, "vlan");
    a.ret(false);
    a.label("vlan");
    a.ld(H, 16);
    a.jeq(0x0800, "v4 tagged");
    a.jeq(0x86dd, "v6 tagged");
    a.ret(false);
    let unicast = &unicast[..unicast.len().min(MAX_UNICAST)];
    for (at, v4, v6, hbh) in [
        (14, "v4", "v6", "hbh"),
        (18, "v4 tagged", "v6 tagged", "hbh tagged"),
    ] {
        a.label(v4);
        a.ld(B, at + 9); // protocol
        a.jne(17, DROP);
        a.ld(W, at + 16); // destination
        a.and(0xf000_0000);
        a.jeq(0xe000_0000, ACCEPT);
        for (i, (addr, port)) in unicast.iter().enumerate() {
            let IpAddr::V4(addr) = addr else { continue };
            let next = format!("{v4} unicast {i}");
            a.ld(W, at + 16);
            a.jne_to(u32::from(*addr), next.clone());
            a.ldx_header_len(at);
            a.ld_ind(H, at + 2); // UDP destination port
            a.jeq(u32::from(*port), ACCEPT);
            a.label_owned(next);
        }
        a.ret(false);
        a.label(v6);
        a.ld(B, at + 24); // destination, first byte
        a.jeq(0xff, &format!("{v6} multicast"));
        for (i, (addr, port)) in unicast.iter().enumerate() {
            let IpAddr::V6(addr) = addr else { continue };
            let next = format!("{v6} unicast {i}");
            let o = addr.octets();
            for (w, word) in o.chunks(4).enumerate() {
                a.ld(W, at + 24 + 4 * w as u32);
                let word = u32::from_be_bytes(word.try_into().expect("4 bytes"));
                a.jne_to(word, next.clone());
            }
            a.ld(B, at + 6);
            a.jne_to(17, next.clone());
            a.ld(H, at + 40 + 2); // UDP destination port
            a.jeq(u32::from(*port), ACCEPT);
            a.label_owned(next);
        }
        a.ret(false);
        a.label_owned(format!("{v6} multicast"));
        a.ld(B, at + 6); // next header
        a.next_header_checks();
        a.jeq(0, hbh);
        a.ret(false);
        a.label(hbh);
        a.ld(B, at + 40); // the hop-by-hop header's next header
        a.next_header_checks();
        a.ret(false);
    }
    a.label(ACCEPT);
    a.ret(true);
    a.label(DROP);
    a.ret(false);
    a.assemble()
}

const ACCEPT: &str = "accept";
const DROP: &str = "drop";

/// Load widths.
const W: u32 = libc::BPF_W;
const H: u32 = libc::BPF_H;
const B: u32 = libc::BPF_B;

/// Bytes an accepted frame may have; the ring truncates to its frame size anyway.
const SNAP: u32 = 0x0004_0000;

/// A tiny assembler: instructions with symbolic jump targets, resolved by [`Asm::assemble`].
#[derive(Default)]
struct Asm {
    code: Vec<(libc::sock_filter, Option<String>)>,
    labels: Vec<(String, usize)>,
}

impl Asm {
    fn stmt(&mut self, code: u32, k: u32) {
        let ins = libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        self.code.push((ins, None));
    }

    fn ld(&mut self, width: u32, offset: u32) {
        self.stmt(libc::BPF_LD | width | libc::BPF_ABS, offset);
    }

    /// A = the packet at X + `offset`.
    fn ld_ind(&mut self, width: u32, offset: u32) {
        self.stmt(libc::BPF_LD | width | libc::BPF_IND, offset);
    }

    /// X = 4 × (the low nibble of the byte at `offset`): the IPv4 header's length.
    fn ldx_header_len(&mut self, offset: u32) {
        self.stmt(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, offset);
    }

    fn and(&mut self, k: u32) {
        self.stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, k);
    }

    fn ret(&mut self, accept: bool) {
        self.stmt(libc::BPF_RET | libc::BPF_K, if accept { SNAP } else { 0 });
    }

    /// If A == k go to `target`, else fall through (`jump_if` true) — or the reverse: a
    /// `JEQ` that falls into, or skips, a `JA` to the target.
    fn jump(&mut self, k: u32, target: String, jump_if: bool) {
        let (jt, jf) = if jump_if { (0, 1) } else { (1, 0) };
        let test = libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        };
        self.code.push((test, None));
        let always = libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JA) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        };
        self.code.push((always, Some(target)));
    }

    fn jeq(&mut self, k: u32, target: &str) {
        self.jump(k, target.to_string(), true);
    }

    fn jne(&mut self, k: u32, target: &str) {
        self.jump(k, target.to_string(), false);
    }

    fn jne_to(&mut self, k: u32, target: String) {
        self.jump(k, target, false);
    }

    /// An IPv6 next header in A: UDP, fragment and destination options are accepted.
    fn next_header_checks(&mut self) {
        for next in [17, 44, 60] {
            self.jeq(next, ACCEPT);
        }
    }

    fn label(&mut self, name: &str) {
        self.label_owned(name.to_string());
    }

    fn label_owned(&mut self, name: String) {
        self.labels.push((name, self.code.len()));
    }

    fn assemble(self) -> Vec<libc::sock_filter> {
        let at = |name: &str| {
            self.labels
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, i)| *i)
                .expect("every jump target is a label")
        };
        self.code
            .iter()
            .enumerate()
            .map(|(i, (ins, jump))| {
                let mut ins = *ins;
                if let Some(target) = jump {
                    ins.k = u32::try_from(at(target) - (i + 1)).expect("forward jumps only");
                }
                ins
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of classic BPF the program uses over `frame` with packet type `pkttype`;
    /// out-of-bounds loads reject, as in the kernel.
    fn run(program: &[libc::sock_filter], frame: &[u8], pkttype: u32) -> bool {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let ins = program[pc];
            pc += 1;
            let code = u32::from(ins.code);
            match code & 0x07 {
                c if c == libc::BPF_LD => {
                    if ins.k == (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32 {
                        a = pkttype;
                        continue;
                    }
                    let k = ins.k as usize
                        + if code & 0xe0 == libc::BPF_IND {
                            x as usize
                        } else {
                            0
                        };
                    let width = match code & 0x18 {
                        w if w == W => 4,
                        w if w == H => 2,
                        _ => 1,
                    };
                    let Some(bytes) = frame.get(k..k + width) else {
                        return false;
                    };
                    a = bytes.iter().fold(0, |v, &b| v << 8 | u32::from(b));
                }
                c if c == libc::BPF_LDX => {
                    // BPF_MSH: X = 4 * (packet[k] & 0xf).
                    let Some(&b) = frame.get(ins.k as usize) else {
                        return false;
                    };
                    x = 4 * u32::from(b & 0xf);
                }
                c if c == libc::BPF_ALU => a &= ins.k,
                c if c == libc::BPF_JMP && code & 0xf0 == libc::BPF_JA => pc += ins.k as usize,
                c if c == libc::BPF_JMP => {
                    pc += usize::from(if a == ins.k { ins.jt } else { ins.jf });
                }
                _ => return ins.k != 0,
            }
        }
    }

    /// An Ethernet frame of `ethertype` whose network header is `ip`.
    fn frame(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    fn ipv4(protocol: u8, dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 1, protocol, 0, 0, 10, 0, 0, 1,
        ];
        h.extend_from_slice(&dst);
        h.extend_from_slice(&[0; 8]);
        h
    }

    fn ipv6(next: u8, dst_first: u8, hbh_next: Option<u8>) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 16, next, 1];
        h.extend_from_slice(&[0xfe, 0x80]);
        h.extend_from_slice(&[0; 14]);
        h.push(dst_first);
        h.extend_from_slice(&[0x0e; 15]);
        match hbh_next {
            Some(n) => h.extend_from_slice(&[n, 0, 5, 2, 0, 0, 1, 0]),
            None => h.extend_from_slice(&[0; 8]),
        }
        h
    }

    fn tagged(f: &[u8]) -> Vec<u8> {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        t.extend_from_slice(&f[12..]);
        t
    }

    #[test]
    fn admits_multicast_udp_of_both_families_and_nothing_else() {
        let p = program(&[]);
        let host = u32::from(libc::PACKET_MULTICAST);
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "v4 udp group",
                frame(0x0800, &ipv4(17, [239, 1, 1, 1])),
                true,
            ),
            (
                "v4 udp unicast",
                frame(0x0800, &ipv4(17, [10, 1, 1, 1])),
                false,
            ),
            ("v4 igmp", frame(0x0800, &ipv4(2, [224, 0, 0, 22])), false),
            ("v6 udp group", frame(0x86dd, &ipv6(17, 0xff, None)), true),
            (
                "v6 udp unicast",
                frame(0x86dd, &ipv6(17, 0x20, None)),
                false,
            ),
            ("v6 fragment", frame(0x86dd, &ipv6(44, 0xff, None)), true),
            (
                "v6 dest options",
                frame(0x86dd, &ipv6(60, 0xff, None)),
                true,
            ),
            ("v6 hbh udp", frame(0x86dd, &ipv6(0, 0xff, Some(17))), true),
            ("v6 hbh mld", frame(0x86dd, &ipv6(0, 0xff, Some(58))), false),
            ("v6 icmp", frame(0x86dd, &ipv6(58, 0xff, None)), false),
            ("v6 tcp", frame(0x86dd, &ipv6(6, 0xff, None)), false),
            ("arp", frame(0x0806, &[0; 28]), false),
            ("truncated v6", frame(0x86dd, &[0x60, 0, 0, 0]), false),
        ];
        for (name, f, want) in &cases {
            assert_eq!(run(&p, f, host), *want, "{name}");
            assert_eq!(run(&p, &tagged(f), host), *want, "{name}, tagged");
            for own in [libc::PACKET_OUTGOING, libc::PACKET_LOOPBACK] {
                assert!(!run(&p, f, u32::from(own)), "{name}: never our own");
            }
        }
    }

    #[test]
    fn labels_resolve_to_short_forward_jumps() {
        let p = program(&[]);
        assert!(p.len() < 128, "{} instructions", p.len());
        let last = p.len() - 1;
        assert_eq!(p[last].k, 0, "ends with drop");
        assert_eq!(p[last - 1].k, SNAP, "then accept");
    }

    /// UDP over IPv4 to `dst`:`port` with `options` words of IPv4 options.
    fn udp4_to(dst: [u8; 4], port: u16, options: usize) -> Vec<u8> {
        let mut h = vec![0x45 + options as u8, 0, 0, 28, 0, 0, 0x40, 0, 1, 17, 0, 0];
        h.extend_from_slice(&[10, 0, 0, 1]);
        h.extend_from_slice(&dst);
        h.extend(std::iter::repeat_n(1u8, 4 * options)); // NOP options
        h.extend_from_slice(&[0x9c, 0x40]);
        h.extend_from_slice(&port.to_be_bytes());
        h.extend_from_slice(&[0, 8, 0, 0]);
        frame(0x0800, &h)
    }

    fn udp6_to(dst: std::net::Ipv6Addr, port: u16) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        h.extend_from_slice(
            &"2001:db8:1::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(&[0x9c, 0x40]);
        h.extend_from_slice(&port.to_be_bytes());
        h.extend_from_slice(&[0, 8, 0, 0]);
        frame(0x86dd, &h)
    }

    #[test]
    fn unicast_inputs_admit_exactly_their_address_and_port() {
        let mine6: std::net::Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let other6: std::net::Ipv6Addr = "2001:db8:1::3".parse().unwrap();
        let p = program(&[
            (IpAddr::from([10, 1, 0, 2]), 6000),
            (IpAddr::V6(mine6), 6001),
        ]);
        let host = u32::from(libc::PACKET_HOST);
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("v4 address and port", udp4_to([10, 1, 0, 2], 6000, 0), true),
            ("v4 behind options", udp4_to([10, 1, 0, 2], 6000, 2), true),
            ("v4 other port", udp4_to([10, 1, 0, 2], 6001, 0), false),
            ("v4 other address", udp4_to([10, 1, 0, 3], 6000, 0), false),
            ("v6 address and port", udp6_to(mine6, 6001), true),
            ("v6 other port", udp6_to(mine6, 6000), false),
            ("v6 other address", udp6_to(other6, 6001), false),
            (
                "multicast still",
                frame(0x0800, &ipv4(17, [239, 1, 1, 1])),
                true,
            ),
        ];
        for (name, f, want) in &cases {
            assert_eq!(run(&p, f, host), *want, "{name}");
            assert_eq!(run(&p, &tagged(f), host), *want, "{name}, tagged");
            assert!(!run(&program(&[]), f, host) || name.starts_with("multicast"));
        }
    }

    #[test]
    fn the_longest_unicast_list_is_reachable_to_its_last_entry() {
        let list: Vec<(IpAddr, u16)> = (0..MAX_UNICAST as u16 + 10)
            .map(|i| (IpAddr::from([10, 1, (i >> 8) as u8, i as u8]), 7000 + i))
            .collect();
        let p = program(&list);
        assert!(p.len() < 4096, "{} instructions", p.len());
        let host = u32::from(libc::PACKET_HOST);
        let last = MAX_UNICAST as u16 - 1;
        let f = udp4_to([10, 1, (last >> 8) as u8, last as u8], 7000 + last, 0);
        assert!(run(&p, &f, host) && run(&p, &tagged(&f), host));
        let beyond = MAX_UNICAST as u16;
        let f = udp4_to([10, 1, (beyond >> 8) as u8, beyond as u8], 7000 + beyond, 0);
        assert!(!run(&p, &f, host), "past MAX_UNICAST: left out");
    }
}
