//! The traffic tools' system calls that need `unsafe`: batched send and receive, the thread's
//! timer slack, and (for tests) entering a network namespace.
//!
//! Every `mmsghdr`/`iovec` array lives on the stack of the call that fills it, so the pointers
//! the kernel sees are derived from borrows that outlive the system call and are never kept
//! afterwards. Control-message parsing is plain byte parsing and needs no `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockAddr;

use super::MAX_BATCH;

/// One datagram to send: its payload and, for an unconnected socket, its destination
/// (IPv4 or IPv6, of the socket's family).
pub(crate) type Outgoing<'a> = (&'a [u8], Option<&'a SockAddr>);

/// `sendmmsg` of up to [`MAX_BATCH`] datagrams (extra items are not consumed).
///
/// Returns how many the kernel accepted, counted from the first. An error means the first
/// datagram failed (a later failure shows up as a short count, as with `sendmmsg(2)`).
pub(crate) fn send_batch<'a>(
    fd: BorrowedFd<'_>,
    msgs: impl IntoIterator<Item = Outgoing<'a>>,
) -> io::Result<usize> {
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    let mut names: [Option<&SockAddr>; MAX_BATCH] = [None; MAX_BATCH];
    let mut n = 0;
    for ((buf, dest), (iov, name)) in msgs.into_iter().zip(iovs.iter_mut().zip(names.iter_mut())) {
        *iov = libc::iovec {
            iov_base: buf.as_ptr().cast_mut().cast(),
            iov_len: buf.len(),
        };
        *name = dest;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    let mut hdrs = [zeroed_mmsghdr(); MAX_BATCH];
    for ((hdr, iov), name) in hdrs
        .iter_mut()
        .zip(iovs.iter_mut())
        .zip(names.iter())
        .take(n)
    {
        let m = &mut hdr.msg_hdr;
        m.msg_iov = iov;
        m.msg_iovlen = 1;
        if let Some(addr) = name {
            m.msg_name = addr.as_ptr().cast_mut().cast();
            m.msg_namelen = addr.len();
        }
    }
    // SAFETY: the first `n` headers point at `iovs` and at destinations borrowed by the caller,
    // and each iovec at a caller-borrowed buffer of exactly `iov_len` readable bytes; all of
    // them outlive the call, and the kernel only reads them during it.
    let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// What `recvmmsg` reported about one received datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// Bytes of payload written to the datagram's buffer.
    pub len: usize,
    /// Bytes of control messages written to the datagram's control buffer.
    pub control_len: usize,
    /// The datagram did not fit its buffer (`MSG_TRUNC`) or its control messages did not
    /// fit theirs (`MSG_CTRUNC`).
    pub truncated: bool,
}

/// `recvmmsg` with `MSG_WAITFORONE`: blocks (up to the socket's `SO_RCVTIMEO`) for the first
/// datagram, then takes whatever else is queued, up to `out.len()` and [`MAX_BATCH`].
///
/// Datagram `i` lands in `bufs[i * stride..][..stride]` with its control messages in
/// `control[i * control_stride..][..control_stride]`; at most as many datagrams as both
/// buffers have room for are requested.
pub(crate) fn recv_batch(
    fd: BorrowedFd<'_>,
    bufs: &mut [u8],
    stride: usize,
    control: &mut [u8],
    control_stride: usize,
    out: &mut [Received],
) -> io::Result<usize> {
    if stride == 0 || control_stride == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    let mut hdrs = [zeroed_mmsghdr(); MAX_BATCH];
    let mut n = 0;
    let slots = bufs
        .chunks_exact_mut(stride)
        .zip(control.chunks_exact_mut(control_stride));
    for ((buf, ctl), (iov, hdr)) in slots
        .zip(iovs.iter_mut().zip(hdrs.iter_mut()))
        .take(out.len())
    {
        *iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let m = &mut hdr.msg_hdr;
        m.msg_iov = iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.as_mut_ptr().cast();
        m.msg_controllen = ctl.len() as _;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` headers point at `iovs` and at disjoint, writable chunks of the
    // caller's `bufs` and `control`, each exactly as long as the length stored next to it; all
    // outlive the call and the kernel writes only within those lengths. No timeout pointer.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = (rc as usize).min(n);
    for (r, hdr) in out.iter_mut().zip(&hdrs[..got]) {
        // `msg_controllen` is `size_t` on glibc but `socklen_t` on musl.
        #[allow(clippy::unnecessary_cast)]
        let control_len = hdr.msg_hdr.msg_controllen as usize;
        *r = Received {
            len: hdr.msg_len as usize,
            control_len,
            truncated: hdr.msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0,
        };
    }
    Ok(got)
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which all zeros
    // (null pointers, zero lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}

/// One control message: `(level, type, data)`.
pub(crate) type Cmsg<'a> = (i32, i32, &'a [u8]);

/// Iterates the control messages in `control` (the bytes `recvmsg` wrote), stopping at the
/// first malformed header.
pub(crate) fn cmsgs(control: &[u8]) -> impl Iterator<Item = Cmsg<'_>> {
    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } followed by data;
    // headers are aligned to size_t (CMSG_ALIGN).
    const LEN: usize = size_of::<libc::size_t>();
    const HDR: usize = size_of::<libc::cmsghdr>();
    let align = |n: usize| n.checked_add(LEN - 1).map(|n| n & !(LEN - 1));
    let mut rest = control;
    std::iter::from_fn(move || {
        let hdr = rest.get(..HDR)?;
        let len = usize::from_ne_bytes(hdr[..LEN].try_into().ok()?);
        let level = i32::from_ne_bytes(hdr[LEN..LEN + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(hdr[LEN + 4..LEN + 8].try_into().ok()?);
        let data = rest.get(HDR..len)?;
        rest = rest.get(align(len)?..).unwrap_or(&[]);
        Some((level, kind, data))
    })
}

/// Bytes of control buffer one `CMSG_SPACE(len)` message takes.
pub(crate) const fn cmsg_space(len: usize) -> usize {
    let a = size_of::<libc::size_t>();
    size_of::<libc::cmsghdr>() + len.div_ceil(a) * a
}

/// Sets the calling thread's timer slack; returns the previous value.
///
/// The default 50 µs slack lets the kernel fire a sleeper's timer up to that late, which is
/// most of a paced sender's error budget at 1–20k packets/s.
pub(crate) fn set_timer_slack(ns: u64) -> io::Result<u64> {
    // SAFETY: PR_GET_TIMERSLACK takes no pointer arguments and only returns a value.
    let old = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    if old < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument, no pointers; it affects only the
    // calling thread's timer behaviour.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old as u64)
}

/// Moves the calling thread into the network namespace at `path` (e.g. `/run/netns/NAME`).
#[cfg(test)]
pub(crate) fn enter_netns(path: &std::path::Path) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: `file` is an open namespace file descriptor for the duration of the call; setns
    // reads nothing else from user memory.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let len = size_of::<libc::cmsghdr>() + data.len();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(cmsg_space(data.len()), 0);
        v
    }

    #[test]
    fn parses_consecutive_control_messages() {
        let mut buf = cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &[1; 12]);
        buf.extend(cmsg(libc::IPPROTO_IP, libc::IP_TTL, &64i32.to_ne_bytes()));
        let all: Vec<_> = cmsgs(&buf).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], (libc::IPPROTO_IP, libc::IP_PKTINFO, &[1u8; 12][..]));
        assert_eq!(
            all[1],
            (libc::IPPROTO_IP, libc::IP_TTL, &64i32.to_ne_bytes()[..])
        );
        // The kernel's own arithmetic agrees with ours.
        // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(12) } as usize;
        assert_eq!(cmsg_space(12), space);
    }

    #[test]
    fn malformed_control_messages_end_the_iteration() {
        assert_eq!(cmsgs(&[]).count(), 0);
        assert_eq!(cmsgs(&[0; 7]).count(), 0);
        let mut buf = cmsg(libc::IPPROTO_IP, libc::IP_TTL, &[0; 4]);
        // Claim more data than there is.
        buf[..size_of::<usize>()].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(cmsgs(&buf).count(), 0);
        // A length shorter than the header is malformed too.
        buf[..size_of::<usize>()].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(cmsgs(&buf).count(), 0);
        let mut huge = cmsg(libc::IPPROTO_IP, libc::IP_TTL, &[0; 4]);
        huge[..size_of::<usize>()].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(cmsgs(&huge).count(), 0);
    }
}
