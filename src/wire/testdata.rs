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

/// The UDP payload pattern of the fragmented 3000-byte datagram.
pub fn frag_pattern(i: usize) -> u8 {
    (i * 7 + 3) as u8
}
