//! Frames captured on this project's test machine, shared by the wire tests.
//!
//! How they were captured: two network namespaces joined by a veth pair
//! (10.77.0.1/24 on the sender side, 10.77.0.2/24 on the receiver side, MTU
//! 1500); `tcpdump -i <receiver veth> -w` in the receiving namespace while a
//! Python `socket` sender in the other namespace sent to multicast groups with
//! `IP_MULTICAST_IF`/`IP_MULTICAST_TTL` set; the receiving side joined
//! 239.1.1.1 to make the kernel emit IGMP reports, and one refused TCP
//! `connect` produced a SYN. The bytes below are the pcap records verbatim, as
//! hex, 32 bytes per line.

/// (1) UDP datagram, 32-byte payload, 10.77.0.1:40000 -> 239.1.1.1:5001, TTL 8, DF.
/// Sent with the sender's veth TX checksum offload disabled (`ethtool -K tx off`),
/// so the UDP checksum is complete (0x49d8).
pub const UDP: &str = "\
    01005e010101c656f078dcce08004500003c185b4000081160060a4d0001ef01\
    01019c401389002849d86d637220776972652074657374200001020304050607\
    08090a0b0c0d0e0f1011";

/// The same datagram sent with veth TX checksum offload left on (the default):
/// the UDP checksum field holds only the pseudo-header sum (0xfa89), which is
/// why the relay must not verify UDP checksums of traffic seen on a veth.
pub const UDP_PARTIAL_CSUM: &str = "\
    01005e010101c656f078dcce08004500003c183d4000081160240a4d0001ef01\
    01019c4013890028fa896d637220776972652074657374200001020304050607\
    08090a0b0c0d0e0f1011";

/// (2) IGMPv3 membership report 10.77.0.2 -> 224.0.0.22 (join 239.1.1.1), sent by
/// the kernel when a socket in the receiving namespace joined. TOS 0xc0, TTL 1,
/// IHL 6: one 4-byte Router Alert option (94 04 00 00).
pub const IGMP_REPORT: &str = "\
    01005e0000164e988b679307080046c00028000040000102f9aa0a4d0002e000\
    0016940400002200e9fb0000000104000000ef010101";

/// (3a) First fragment (MF set, offset 0, total length 1500) of a 3000-byte UDP
/// datagram 10.77.0.1:40000 -> 239.1.1.2:5002, TTL 4, veth MTU 1500. The UDP
/// payload bytes follow the pattern `(i * 7 + 3) as u8`.
pub const FRAG_FIRST: &str = "\
    01005e010102c656f078dcce0800450005dcc79f20000411cf200a4d0001ef01\
    01029c40138a0bc0535d030a11181f262d343b424950575e656c737a81888f96\
    9da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f76\
    7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f56\
    5d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f36\
    3d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f16\
    1d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6\
    fd040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6\
    dde4ebf2f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6\
    bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f96\
    9da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f76\
    7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f56\
    5d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f36\
    3d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f16\
    1d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6\
    fd040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6\
    dde4ebf2f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6\
    bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f96\
    9da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f76\
    7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f56\
    5d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f36\
    3d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f16\
    1d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6\
    fd040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6\
    dde4ebf2f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6\
    bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f96\
    9da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f76\
    7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f56\
    5d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f36\
    3d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f16\
    1d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6\
    fd040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6\
    dde4ebf2f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6\
    bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f96\
    9da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f76\
    7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f56\
    5d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f36\
    3d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f16\
    1d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6\
    fd040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6\
    dde4ebf2f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6\
    bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f96\
    9da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f76\
    7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f56\
    5d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f36\
    3d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f16\
    1d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6\
    fd040b121920272e353c";

/// (3b) Last fragment (MF clear, offset 2960, total length 68) of the same datagram.
pub const FRAG_LAST: &str = "\
    01005e010102c656f078dcce080045000044c79f01720411f3460a4d0001ef01\
    0102bbc2c9d0d7dee5ecf3fa01080f161d242b323940474e555c636a71787f86\
    8d949ba2a9b0b7bec5ccd3dae1e8eff6fd04";

/// UDP datagram, 24-byte payload, 10.77.0.1:40000 -> 239.1.1.3:5003, TTL 16.
/// (4) The capture kernel has no 8021q support, so the tagged frame used by the
/// tests is built from these bytes by [`with_vlan_tag`], which inserts
/// `81 00 <tci>` after the source MAC.
pub const UDP_FOR_VLAN: &str = "\
    01005e010103c656f078dcce0800450000343367400010113d000a4d0001ef01\
    01039c40138b00207e1c6d637220776972652074657374200001020304050607\
    0809";

/// TCP SYN 10.77.0.1:40001 -> 10.77.0.2:5555 (a refused `connect`).
pub const TCP_SYN: &str = "\
    4e988b679307c656f078dcce08004500003ca1a040004006847f0a4d00010a4d\
    00029c4115b334c908d800000000a002faf09e5d0000020405b40402080afb79\
    af02000000000103030a";

/// ARP request who-has 10.77.0.2 (EtherType 0x0806).
pub const ARP_REQUEST: &str = "\
    ffffffffffffc656f078dcce08060001080006040001c656f078dcce0a4d0001\
    0000000000000a4d0002";

/// ICMPv6 router solicitation (EtherType 0x86dd).
pub const IPV6_ROUTER_SOLICIT: &str = "\
    333300000002c656f078dcce86dd6000000000103afffe80000000000000c456\
    f0fffe78dcceff020000000000000000000000000002850057f1000000000101\
    c656f078dcce";

// IPv6, captured the same way: a veth pair in a network namespace (fd00:77::1/64 on the
// sender side, fd00:77::2/64 on the receiver side, MTU 1280, TX checksum offload off on both
// ends, so UDP checksums are complete), `tcpdump -i <receiver veth> -w ip6`, a Python
// `socket` sender with `IPV6_MULTICAST_IF`, `IPV6_MULTICAST_HOPS` and `IPV6_TCLASS` set.
// Linux chose the flow labels. tcpdump reported every UDP and ICMPv6 checksum correct.

/// (5) UDP datagram, the 32-byte payload of (1), fd00:77::1:40000 -> ff3e::1234:5001, hop
/// limit 8, traffic class 0, flow label 0x752b8.
pub const UDP6: &str = "\
    333300001234c656f078dcce86dd600752b800281108fd000077000000000000\
    000000000001ff3e00000000000000000000000012349c4013890028353d6d63\
    722077697265207465737420000102030405060708090a0b0c0d0e0f1011";

/// (6) UDP datagram, 24-byte payload, fd00:77::1:40001 -> ff15::1:5002, hop limit 16,
/// traffic class 0xb9 (DSCP 46, ECN ECT(1)), behind an 8-byte hop-by-hop header with a router
/// alert (value 0) and a PadN option, set on the socket with `IPV6_HOPOPTS`.
pub const UDP6_HOP_BY_HOP: &str = "\
    333300000001c656f078dcce86dd6b9a27a900280010fd000077000000000000\
    000000000001ff15000000000000000000000000000111000502000001009c41\
    138a00207bdf6d6372207769726520746573742000010203040506070809";

/// (7) The datagram of (5) from port 40002, behind a 16-byte destination options header
/// (one 14-byte PadN option), set with `IPV6_DSTOPTS`.
pub const UDP6_DEST_OPTS: &str = "\
    333300001234c656f078dcce86dd600e054700383c08fd000077000000000000\
    000000000001ff3e00000000000000000000000012341101010c000000000000\
    0000000000009c4213890028353b6d6372207769726520746573742000010203\
    0405060708090a0b0c0d0e0f1011";

/// (8a) First fragment (offset 0, M set, identification 0x760e3e52) of a 1500-byte UDP
/// datagram fd00:77::1:40003 -> ff3e::1234:5003, hop limit 4, fragmented by the sender's
/// kernel for the 1280-byte MTU. The UDP payload follows [`frag_pattern`].
pub const FRAG6_FIRST: &str = "\
    333300001234c656f078dcce86dd600413ae04d82c04fd000077000000000000\
    000000000001ff3e000000000000000000000000123411000001760e3e529c43\
    138b05e49c4d030a11181f262d343b424950575e656c737a81888f969da4abb2\
    b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b92\
    99a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b72\
    7980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b52\
    5960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b32\
    3940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b12\
    1920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2\
    f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2\
    d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2\
    b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b92\
    99a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b72\
    7980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b52\
    5960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b32\
    3940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b12\
    1920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2\
    f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2\
    d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2\
    b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b92\
    99a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b72\
    7980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b52\
    5960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b32\
    3940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b12\
    1920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2\
    f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2\
    d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2\
    b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b92\
    99a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b72\
    7980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b52\
    5960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b32\
    3940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b12\
    1920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2\
    f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2\
    d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2\
    b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b92\
    99a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b72\
    7980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b52\
    5960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b32\
    3940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b12\
    1920272e353c434a51585f666d74";

/// (8b) Last fragment (offset 1232, M clear) of the same datagram.
pub const FRAG6_LAST: &str = "\
    333300001234c656f078dcce86dd600413ae011c2c04fd000077000000000000\
    000000000001ff3e0000000000000000000000001234110004d0760e3e527b82\
    8990979ea5acb3bac1c8cfd6dde4ebf2f900070e151c232a31383f464d545b62\
    6970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b42\
    4950575e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b22\
    2930373e454c535a61686f767d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb02\
    0910171e252c333a41484f565d646b727980878e959ca3aab1b8bfc6cdd4dbe2\
    e9f0f7fe050c131a21282f363d444b525960676e757c838a91989fa6adb4bbc2\
    c9d0d7dee5ecf3fa01080f161d242b323940474e555c636a71787f868d949ba2\
    a9b0b7bec5ccd3dae1e8eff6fd040b121920272e353c434a51585f666d747b82\
    8990979ea5acb3bac1c8cfd6dde4ebf2f900";

/// (9) MLDv2 report fe80::4c98:8bff:fe67:9307 -> ff02::16 (join ff3e::1234, exclude none),
/// sent by the receiver's kernel when a socket joined: hop limit 1, an 8-byte hop-by-hop
/// header with a router alert (value 0, MLD), then ICMPv6.
pub const MLD2_REPORT: &str = "\
    3333000000164e988b67930786dd6000000000240001fe800000000000004c98\
    8bfffe679307ff0200000000000000000000000000163a000502000001008f00\
    f3930000000104000000ff3e0000000000000000000000001234";

/// Decodes one of the hex constants above.
pub fn bytes(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd number of hex digits");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Inserts an 802.1Q tag (TPID 0x8100, `tci`) after the source MAC, which is
/// exactly how a tagging switch port (or the kernel's 8021q driver) turns an
/// untagged frame into a tagged one.
pub fn with_vlan_tag(untagged: &[u8], tci: u16) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(untagged.len() + 4);
    tagged.extend_from_slice(&untagged[..12]);
    tagged.extend_from_slice(&[0x81, 0x00]);
    tagged.extend_from_slice(&tci.to_be_bytes());
    tagged.extend_from_slice(&untagged[12..]);
    tagged
}

/// Inserts an IPv6 extension header right after the fixed header of an untagged IPv6 frame:
/// the fixed header's next header becomes `kind`, `header`'s first byte becomes the old next
/// header, and the payload length grows by `header.len()`.
pub fn with_ipv6_extension(untagged: &[u8], kind: u8, header: &[u8]) -> Vec<u8> {
    const FIXED: usize = 14 + 40;
    let mut frame = Vec::with_capacity(untagged.len() + header.len());
    frame.extend_from_slice(&untagged[..FIXED]);
    frame.extend_from_slice(header);
    frame[FIXED] = untagged[14 + 6];
    frame[14 + 6] = kind;
    let payload_len = u16::from_be_bytes([untagged[18], untagged[19]]) + header.len() as u16;
    frame[18..20].copy_from_slice(&payload_len.to_be_bytes());
    frame.extend_from_slice(&untagged[FIXED..]);
    frame
}

/// The UDP payload pattern of the fragmented datagrams (3000 bytes over IPv4, 1500 over
/// IPv6).
pub fn frag_pattern(i: usize) -> u8 {
    (i * 7 + 3) as u8
}

/// Every IPv6 capture above; the router solicitation (not UDP) last.
pub const IPV6_CAPTURES: [&str; 7] = [
    UDP6,
    UDP6_HOP_BY_HOP,
    UDP6_DEST_OPTS,
    FRAG6_FIRST,
    FRAG6_LAST,
    MLD2_REPORT,
    IPV6_ROUTER_SOLICIT,
];
