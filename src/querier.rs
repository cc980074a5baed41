//! IGMP querier on input interfaces, for segments where a snooping switch has no querier.
//!
//! A switch with IGMP snooping forwards a group only to ports that reported membership, and
//! forgets a membership that no query refreshes (the classic "multicast stops after a few
//! minutes"). mcr's kernel answers queries for the groups it joined, but on a segment without
//! a querier nobody asks. With `[relay] querier = "auto"` (the default) mcr first *listens*
//! on each input interface for one query interval plus the max response time; if it hears a
//! querier, it stays silent while that querier keeps querying (within the Other Querier
//! Present Interval), whatever its address — mcr never competes with a querier the network
//! already has (a Linux bridge, for one, hands the role to whoever queried last, so two
//! queriers that both insist would take turns). If nobody queries, mcr sends general queries
//! every `query_interval`; once it is the querier, it yields only to a lower address, as
//! RFC 3376 §6.6.2 says, so two mcr that start together settle on one. `"on"` always queries
//! (from the start); `"off"` never does.
//!
//! Split like the rest of mcr: [`Election`] is the pure per-interface state machine, owned by
//! the control thread with the socket ([`Queriers`]); the `mcr-igmp` thread only receives
//! queries and reports them to the control thread as events; timers are the control thread's.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::config::IfName;
use crate::links::LinkView;
use crate::sys;
use crate::wire::igmp;

pub use crate::config::QuerierMode as Mode;

/// Max response time in the queries mcr sends: the RFC 3376 default of 10 s, or half the
/// query interval when that is shorter (it must be less than the interval).
pub fn max_response(query_interval: Duration) -> Duration {
    Duration::from_secs(10).min(query_interval / 2)
}

/// RFC 3376 §8.5: robustness × query interval + half the max response time.
pub fn other_querier_present(query_interval: Duration) -> Duration {
    query_interval * u32::from(igmp::ROBUSTNESS) + max_response(query_interval) / 2
}

/// The querier election on one interface.
#[derive(Debug, Clone)]
pub struct Election {
    mode: Mode,
    interval: Duration,
    /// The querier mcr defers to, and until when it counts as present.
    other: Option<(Ipv4Addr, Instant)>,
    next_query: Instant,
    /// mcr has sent a query since it last deferred (it is the segment's querier).
    querying: bool,
}

impl Election {
    /// A new election. `On` queries at once; `Auto` listens for one query interval plus the
    /// max response time first, so that a querier already on the segment is heard.
    pub fn new(mode: Mode, interval: Duration, now: Instant) -> Election {
        let listen = match mode {
            Mode::Auto => interval + max_response(interval),
            Mode::On | Mode::Off => Duration::ZERO,
        };
        Election {
            mode,
            interval,
            other: None,
            next_query: now + listen,
            querying: false,
        }
    }

    /// A query from `src` was heard at `now`; `mine` is this host's address on the link.
    /// While mcr is not querying, any querier counts; while it is, only a lower address.
    pub fn heard(&mut self, src: Ipv4Addr, mine: Option<Ipv4Addr>, now: Instant) {
        if !self.querying || mine.is_none_or(|m| src < m) {
            self.other = Some((src, now + other_querier_present(self.interval)));
            self.querying = false;
        }
    }

    /// The lower-address querier currently present, if any.
    pub fn other(&self, now: Instant) -> Option<Ipv4Addr> {
        self.other.filter(|&(_, until)| until > now).map(|(a, _)| a)
    }

    pub fn is_querier(&self, now: Instant) -> bool {
        match self.mode {
            Mode::Off => false,
            Mode::On => true,
            Mode::Auto => self.other(now).is_none(),
        }
    }

    /// Whether a query should go out now; if the time has come, the next one is scheduled.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next_query {
            return false;
        }
        self.next_query = now + self.interval;
        self.querying = self.is_querier(now);
        self.querying
    }

    pub fn next_wake(&self) -> Instant {
        self.next_query
    }

    /// "querier", "listening", "off", or "other querier A.B.C.D".
    pub fn describe(&self, now: Instant) -> String {
        match (self.mode, self.other(now)) {
            (Mode::Off, _) => "off".into(),
            (Mode::Auto, Some(other)) => format!("other querier {other}"),
            (Mode::Auto, None) if !self.querying => "listening".into(),
            _ => "querier".into(),
        }
    }
}

/// The control thread's queriers: one raw IGMP socket and an election per input interface.
pub struct Queriers {
    socket: OwnedFd,
    mode: Mode,
    interval: Duration,
    /// By input ifindex: interface name and election.
    elections: BTreeMap<u32, (IfName, Election)>,
}

impl Queriers {
    /// Opens the raw IGMP socket (needs CAP_NET_RAW) and starts the `mcr-igmp` thread that
    /// reports every query heard (ingress ifindex, source) through `heard`.
    pub fn open(
        mode: Mode,
        interval: Duration,
        heard: impl Fn(u32, Ipv4Addr) -> bool + Send + 'static,
    ) -> io::Result<Queriers> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW.cloexec(),
            Some(Protocol::from(libc::IPPROTO_IGMP)),
        )?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_multicast_ttl_v4(1)?;
        // IP_MULTICAST_ALL stays on: queries go to 224.0.0.1, which the kernel joins on every
        // interface but this socket does not, and only that option lets them through.
        // IGMP queries carry the Router Alert option (RFC 2113).
        sys::setsockopt(
            socket.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            &[0x94u8, 4, 0, 0],
        )?;
        sys::setsockopt(socket.as_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, &1i32)?;
        let socket: OwnedFd = socket.into();
        let listener = socket.try_clone()?;
        std::thread::Builder::new()
            .name("mcr-igmp".into())
            .spawn(move || listen(&listener, heard))?;
        Ok(Queriers {
            socket,
            mode,
            interval,
            elections: BTreeMap::new(),
        })
    }

    /// Follows the table's input interfaces: new ones start an election, gone ones end it.
    pub fn sync(&mut self, inputs: &BTreeMap<u32, IfName>, now: Instant) {
        self.elections.retain(|i, _| inputs.contains_key(i));
        for (&ifindex, name) in inputs {
            self.elections
                .entry(ifindex)
                .or_insert_with(|| (name.clone(), Election::new(self.mode, self.interval, now)));
        }
    }

    pub fn heard(&mut self, ifindex: u32, src: Ipv4Addr, links: &LinkView, now: Instant) {
        if let Some((name, e)) = self.elections.get_mut(&ifindex) {
            let was = e.is_querier(now);
            e.heard(src, own_address(links, name), now);
            if was && !e.is_querier(now) {
                log::info!("querier on {name}: {src} has a lower address and queries; mcr stops");
            }
        }
    }

    /// When the next query is due on some interface.
    pub fn next_wake(&self) -> Option<Instant> {
        self.elections.values().map(|(_, e)| e.next_wake()).min()
    }

    /// Sends the queries that are due.
    pub fn tick(&mut self, links: &LinkView, now: Instant) {
        let query = igmp::general_query(self.interval, max_response(self.interval));
        for (&ifindex, (name, e)) in &mut self.elections {
            if !e.due(now) {
                continue;
            }
            // A query needs a source address on the link; without one mcr cannot be querier.
            if own_address(links, name).is_none() {
                continue;
            }
            if let Err(err) = send(&self.socket, ifindex, &query) {
                log::debug!("querier on {name}: {err}");
            }
        }
    }

    /// Each interface's querier state, by name.
    pub fn describe(&self, now: Instant) -> BTreeMap<String, String> {
        self.elections
            .values()
            .map(|(name, e)| (name.to_string(), e.describe(now)))
            .collect()
    }
}

/// This host's (lowest) IPv4 address on the interface named `name`.
fn own_address(links: &LinkView, name: &IfName) -> Option<Ipv4Addr> {
    links.get(name)?.as_ref()?.ipv4.first().copied()
}

fn send(socket: &OwnedFd, ifindex: u32, query: &[u8]) -> io::Result<()> {
    sys::set_multicast_if(socket.as_fd(), ifindex)?;
    let to = std::net::SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 0);
    socket2::SockRef::from(socket).send_to(query, &to.into())?;
    Ok(())
}

/// The `mcr-igmp` thread: every IGMP query received, with the interface it came in on.
fn listen(socket: &OwnedFd, heard: impl Fn(u32, Ipv4Addr) -> bool) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<SockaddrIn>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            Ok(m) => m,
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                log::error!("querier: receiving IGMP stopped: {e}");
                return;
            }
        };
        let ifindex = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::Ipv4PacketInfo(info) => Some(info.ipi_ifindex as u32),
                _ => None,
            })
        });
        let len = msg.bytes;
        let (Some(ifindex), Some(src)) = (ifindex, igmp::query_source(&buf[..len])) else {
            continue;
        };
        if !heard(ifindex, src) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QI: Duration = Duration::from_secs(10);

    #[test]
    fn auto_listens_first_then_queries_every_interval() {
        let t0 = Instant::now();
        let mut e = Election::new(Mode::Auto, QI, t0);
        assert_eq!(max_response(QI), Duration::from_secs(5));
        assert!(!e.due(t0), "listening first");
        assert_eq!(e.describe(t0), "listening");
        let first = t0 + QI + max_response(QI);
        assert!(e.due(first));
        assert_eq!(e.describe(first), "querier");
        assert!(!e.due(first + Duration::from_secs(9)));
        assert!(e.due(first + QI));
    }

    #[test]
    fn auto_defers_to_any_querier_heard_while_silent() {
        let t0 = Instant::now();
        let mut e = Election::new(Mode::Auto, QI, t0);
        let mine = Some(Ipv4Addr::new(10, 1, 0, 2));
        e.heard(
            Ipv4Addr::new(10, 1, 0, 9),
            mine,
            t0 + Duration::from_secs(1),
        );
        assert!(
            !e.due(t0 + QI * 2),
            "a querier was already there: stay silent"
        );
        assert_eq!(e.describe(t0 + QI * 2), "other querier 10.1.0.9");
        // It goes quiet for the Other Querier Present Interval: mcr takes over.
        let gone = t0 + Duration::from_secs(1) + other_querier_present(QI);
        assert!(e.is_querier(gone));
        assert!(e.due(t0 + QI * 3), "at its next scheduled query");
    }

    #[test]
    fn once_querying_auto_yields_only_to_a_lower_address() {
        let t0 = Instant::now();
        let mine = Some(Ipv4Addr::new(10, 1, 0, 2));
        let mut e = Election::new(Mode::Auto, QI, t0);
        let start = t0 + QI + max_response(QI);
        assert!(e.due(start));
        e.heard(Ipv4Addr::new(10, 1, 0, 9), mine, start);
        assert!(e.is_querier(start), "a higher address loses the election");
        e.heard(Ipv4Addr::new(10, 1, 0, 1), mine, start);
        assert!(!e.is_querier(start));
        assert_eq!(e.describe(start), "other querier 10.1.0.1");
        let present = other_querier_present(QI);
        assert_eq!(present, Duration::from_millis(22_500));
        assert!(!e.is_querier(start + present - Duration::from_millis(1)));
        assert!(
            e.is_querier(start + present),
            "silent for the OQPI: mcr takes over"
        );
    }

    #[test]
    fn on_always_queries_and_off_never_does() {
        let t0 = Instant::now();
        let lower = Ipv4Addr::new(10, 0, 0, 1);
        let mut on = Election::new(Mode::On, QI, t0);
        on.heard(lower, Some(Ipv4Addr::new(10, 0, 0, 2)), t0);
        assert!(on.due(t0));
        let mut off = Election::new(Mode::Off, QI, t0);
        assert!(!off.due(t0));
        assert_eq!(off.describe(t0), "off");
    }
}
