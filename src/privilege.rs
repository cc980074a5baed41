//! Dropping root: `[relay] user = "mcr"` makes a relay started as root switch to that user
//! once the rings, sockets and memberships of the first table exist, keeping only the
//! capabilities that later reloads need.
//!
//! Kept, on the control thread only (capabilities are per thread; the control thread is the
//! one that opens rings and sockets on reload): `CAP_NET_RAW`, effective, for the
//! `AF_PACKET` sockets of new input interfaces; and `CAP_NET_ADMIN`, permitted but not
//! effective, raised by [`with_net_admin`] only around the nftables transaction of the
//! ingress drop (`stackdrop`) and `SO_SNDBUFFORCE` on new sockets. Nothing else is needed —
//! joining groups takes no capability — and the end-to-end tests prove forwarding, the drop
//! and a reload that adds an interface with them.
//!
//! Every other thread loses all capabilities with the switch (the kernel clears them when
//! the uid leaves 0 and keep-caps is off, which it is on threads other than this one). The
//! bounding set is per thread too: `mcr run` cuts it to the kept set before it starts any
//! thread ([`cut_bounding_set`]), so every thread has the cut set. The user keeps its
//! supplementary groups (`initgroups`), as a login would give them.

use caps::{CapSet, Capability, CapsHashSet};

/// Why mcr could not switch user.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "user `{0}` does not exist; create it (the packages do: `mcr`) or change [relay] user"
    )]
    NoSuchUser(String),
    #[error("looking up user `{user}`: {source}")]
    Lookup { user: String, source: nix::Error },
    #[error("switching to user `{user}`: {step}: {source}")]
    Switch {
        user: String,
        step: &'static str,
        source: std::io::Error,
    },
}

/// The capabilities a dropped relay keeps.
pub fn kept() -> CapsHashSet {
    [Capability::CAP_NET_RAW, Capability::CAP_NET_ADMIN]
        .into_iter()
        .collect()
}

/// The kept capabilities that stay effective; `CAP_NET_ADMIN` is only permitted, raised by
/// [`with_net_admin`] for the moment it is needed.
fn effective() -> CapsHashSet {
    [Capability::CAP_NET_RAW].into_iter().collect()
}

/// Takes `CAP_NET_ADMIN` out of the calling thread's effective set, keeping it permitted.
/// `mcr run` calls this before it starts any thread, so no thread holds it effective until
/// [`with_net_admin`] raises it.
pub fn lower_net_admin() {
    if let Err(e) = caps::drop(None, CapSet::Effective, Capability::CAP_NET_ADMIN) {
        log::debug!("lowering CAP_NET_ADMIN: {e}");
    }
}

/// Runs `f` with `CAP_NET_ADMIN` effective on the calling thread if it is permitted, and
/// lowers it again after: programming nf_tables and forcing socket buffers past the sysctl
/// limits need it, and netlink checks the capability of the task that sends each message,
/// not only of the one that opened the socket. Without it `f` runs all the same (and gets
/// `EPERM` where it matters).
pub fn with_net_admin<T>(f: impl FnOnce() -> T) -> T {
    let cap = Capability::CAP_NET_ADMIN;
    let raised = !caps::has_cap(None, CapSet::Effective, cap).unwrap_or(true)
        && caps::has_cap(None, CapSet::Permitted, cap).unwrap_or(false)
        && caps::raise(None, CapSet::Effective, cap).is_ok();
    let out = f();
    if raised {
        let _ = caps::drop(None, CapSet::Effective, cap);
    }
    out
}

/// Cuts the bounding set of the calling thread to [`kept`]. The bounding set is per thread
/// and inherited by threads created afterwards, so `mcr run` calls this before it starts any
/// thread when it will switch user: every thread then has the cut set, not only the one that
/// switches. A root process keeps its permitted capabilities meanwhile (the bounding set
/// only limits what an `execve` could grant, and mcr never executes anything).
pub fn cut_bounding_set() -> Result<(), PrivilegeError> {
    for cap in caps::all().difference(&kept()) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| PrivilegeError::Switch {
            user: String::new(),
            step: "bounding set",
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(())
}

/// Switches the process to `user`, keeping [`kept`] capabilities on the calling thread.
/// A process that already runs as that user is left alone.
pub fn drop_to(user: &str) -> Result<(), PrivilegeError> {
    use nix::unistd;
    let entry = unistd::User::from_name(user)
        .map_err(|source| PrivilegeError::Lookup {
            user: user.to_string(),
            source,
        })?
        .ok_or_else(|| PrivilegeError::NoSuchUser(user.to_string()))?;
    if unistd::getuid() == entry.uid {
        return Ok(());
    }
    let fail = |step: &'static str| {
        let user = user.to_string();
        move |e: std::io::Error| PrivilegeError::Switch {
            user: user.clone(),
            step,
            source: e,
        }
    };
    let caps_err = |e: caps::errors::CapsError| std::io::Error::other(e.to_string());
    nix::sys::prctl::set_keepcaps(true)
        .map_err(std::io::Error::from)
        .map_err(fail("keep capabilities"))?;
    for cap in caps::all().difference(&kept()) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(caps_err)
            .map_err(fail("bounding set"))?;
    }
    // The user's own supplementary groups, as a login would give them (e.g. the group that
    // may read a config file or use the control socket).
    let name =
        std::ffi::CString::new(user).map_err(|e| fail("initgroups")(std::io::Error::other(e)))?;
    unistd::initgroups(&name, entry.gid)
        .map_err(std::io::Error::from)
        .map_err(fail("initgroups"))?;
    unistd::setgid(entry.gid)
        .map_err(std::io::Error::from)
        .map_err(fail("setgid"))?;
    unistd::setuid(entry.uid)
        .map_err(std::io::Error::from)
        .map_err(fail("setuid"))?;
    caps::set(None, CapSet::Permitted, &kept())
        .map_err(caps_err)
        .map_err(fail("permitted set"))?;
    caps::set(None, CapSet::Effective, &effective())
        .map_err(caps_err)
        .map_err(fail("effective set"))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(caps_err)
        .map_err(fail("inheritable set"))?;
    nix::sys::prctl::set_keepcaps(false)
        .map_err(std::io::Error::from)
        .map_err(fail("keep capabilities"))?;
    Ok(())
}
