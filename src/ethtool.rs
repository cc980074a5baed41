//! Interface offload features, read with the ethtool ioctl (`SIOCETHTOOL`): enough to tell
//! whether a run of datagrams that mcr sends as one frame (UDP segmentation, `egress` runs)
//! is cut back into datagrams before it leaves this host.
//!
//! It is cut when the interface is a device of its own (a NIC: it segments in hardware, or
//! the kernel does before the driver sees it when the NIC lacks USO), and when any interface
//! lacks the `tx-udp-segmentation` feature (the kernel segments before its transmit). A
//! virtual link with the feature — veth, a bridge, macvlan — hands the frame on whole to
//! another namespace's stack, where a socket cuts it up but a packet tap (tcpdump, another
//! mcr's ring) sees one frame of many datagrams: outputs there send datagram by datagram.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
/// The string set of feature names (`ETH_SS_FEATURES`).
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// More feature names than any kernel has (about 70 today): a sanity bound on the reply.
const MAX_FEATURES: usize = 1024;

/// The feature that lets a device take a UDP run whole.
const UDP_SEGMENTATION: &str = "tx-udp-segmentation";

/// Whether a run of UDP datagrams sent on interface `name` as one frame leaves this host as
/// separate datagrams (see the module docs). When the features cannot be read, only a device
/// of its own is trusted to.
pub fn cuts_runs(name: &str) -> bool {
    is_device(name) || feature_active(name, UDP_SEGMENTATION).is_ok_and(|on| !on)
}

/// Whether interface `name` is backed by a device (a NIC, also a VM's virtio NIC), not a
/// virtual link: sysfs gives such an interface a `device` link.
fn is_device(name: &str) -> bool {
    !name.contains('/')
        && Path::new("/sys/class/net")
            .join(name)
            .join("device")
            .exists()
}

/// Whether feature `feature` (an ethtool feature name, as `ethtool -k` prints it) is active on
/// interface `name`.
pub fn feature_active(name: &str, feature: &str) -> io::Result<bool> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let fd = socket.as_raw_fd();
    // How many feature names there are.
    let mut info = [0u32; 5]; // cmd, reserved, sset_mask (u64), data[1]
    info[0] = ETHTOOL_GSSET_INFO;
    let mask = (1u64 << ETH_SS_FEATURES).to_ne_bytes();
    info[2] = u32::from_ne_bytes([mask[0], mask[1], mask[2], mask[3]]);
    info[3] = u32::from_ne_bytes([mask[4], mask[5], mask[6], mask[7]]);
    ethtool(fd, name, &mut info)?;
    let count = info[4] as usize;
    if count == 0 || count > MAX_FEATURES {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    // Their names, to find the bit of `feature`.
    let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
    ethtool(fd, name, &mut strings)?;
    let names: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let Some(bit) = names.chunks(ETH_GSTRING_LEN).position(|n| {
        let end = n.iter().position(|&b| b == 0).unwrap_or(n.len());
        &n[..end] == feature.as_bytes()
    }) else {
        return Ok(false); // this kernel does not know the feature
    };
    // The feature words: per block of 32, available, requested, active, never_changed.
    let blocks = count.div_ceil(32);
    let mut features = vec![0u32; 2 + 4 * blocks];
    features[..2].copy_from_slice(&[ETHTOOL_GFEATURES, blocks as u32]);
    ethtool(fd, name, &mut features)?;
    let active = features[2 + 4 * (bit / 32) + 2];
    Ok(active & (1 << (bit % 32)) != 0)
}

/// One `SIOCETHTOOL` request on interface `name`, its command in `data[0]`; the kernel reads
/// and writes `data` in place.
fn ethtool(fd: i32, name: &str, data: &mut [u32]) -> io::Result<()> {
    // SAFETY: `ifreq` is plain data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = data.as_mut_ptr().cast();
    // SAFETY: the request names a NUL-terminated interface and points at `data`, which is
    // as large as its command says (the callers size it from the counts they pass) and lives
    // for the whole call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_virtual_and_its_features_read_back() {
        assert!(!is_device("lo"));
        // lo offloads checksums and takes UDP runs whole (it is software all the way).
        assert!(feature_active("lo", "tx-checksum-ip-generic").unwrap());
        assert!(!feature_active("lo", "no-such-feature").unwrap());
        assert!(feature_active("no-such-if0", UDP_SEGMENTATION).is_err());
        assert!(!cuts_runs("no-such-if0"), "unknown: not trusted");
    }
}
