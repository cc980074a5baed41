//! The relay's role in an active/standby pair: an active relay forwards; a standby one keeps
//! its rings open and its groups joined and takes in every datagram as usual, but sends
//! nothing (each is counted as a `standby` drop). Taking over is therefore a flag flip: no
//! ring to open, no join to wait for, no table to build.
//!
//! The control thread sets it (`mcr active` / `mcr standby`, or `[relay] role` at start);
//! workers read it once per batch. Something outside decides which relay of a pair is
//! active — keepalived's VRRP, typically — and mcr follows.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether the relay forwards (active) or only receives (standby).
#[derive(Debug, Default)]
pub struct Role {
    standby: AtomicBool,
}

impl Role {
    pub fn new(standby: bool) -> Role {
        Role {
            standby: AtomicBool::new(standby),
        }
    }

    /// Read once per batch by each worker.
    #[inline]
    pub fn is_standby(&self) -> bool {
        self.standby.load(Relaxed)
    }

    /// Sets the role; returns whether it changed.
    pub fn set_standby(&self, standby: bool) -> bool {
        self.standby.swap(standby, Relaxed) != standby
    }

    pub fn name(&self) -> &'static str {
        if self.is_standby() {
            "standby"
        } else {
            "active"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_reports_whether_it_changed_anything() {
        let r = Role::new(false);
        assert_eq!(r.name(), "active");
        assert!(r.set_standby(true));
        assert!(!r.set_standby(true));
        assert_eq!(r.name(), "standby");
        assert!(r.set_standby(false));
        assert!(!r.is_standby());
    }
}
