//! Bounded request/response listeners: the control socket and the metrics endpoint.
//!
//! One thread per listener runs a `poll` loop over the listening socket and every client,
//! all non-blocking, so no client can hold up another: an idle connection costs one
//! descriptor and a small buffer until its deadline, a slow writer or reader is cut off at
//! its deadline, a request longer than [`Bounds::max_request`] is answered with an error and
//! closed, and when [`Bounds::max_clients`] are connected the oldest one still sending its
//! request makes room for the newcomer. An accept error (`EMFILE` when descriptors run out)
//! pauses accepting briefly instead of spinning. The protocol decides what a complete request
//! is and produces the answer, possibly later (the control thread answers through a channel);
//! the loop never blocks on it.
//!
//! Invariants: per client, memory is at most `max_request` plus one read chunk plus its
//! answer; every client leaves within `request_timeout` + `answer_timeout` +
//! `write_timeout` of connecting.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections served at once; one more evicts the oldest that is still sending.
    pub max_clients: usize,
    /// Largest request, in bytes.
    pub max_request: usize,
    /// Time from connecting to a complete request.
    pub request_timeout: Duration,
    /// Time the protocol may take to produce the answer.
    pub answer_timeout: Duration,
    /// Time to write the answer.
    pub write_timeout: Duration,
}

/// What the protocol makes of the bytes received so far.
pub enum Step<P> {
    /// Not a complete request yet.
    More,
    /// Send these bytes, then close.
    Respond(Vec<u8>),
    /// The answer will come from [`Protocol::poll`].
    Wait(P),
}

/// A request/response protocol served by [`spawn`].
pub trait Protocol: Send + 'static {
    /// An answer being prepared elsewhere.
    type Pending: Send;
    /// Looks at every byte received so far on one connection, of which the last `fresh`
    /// arrived since the previous call (so a protocol can look for its end marker in them
    /// alone, and a request trickling in byte by byte costs linear time, not quadratic).
    fn request(&mut self, received: &[u8], fresh: usize) -> Step<Self::Pending>;
    /// The answer to a request longer than [`Bounds::max_request`].
    fn too_long(&mut self) -> Vec<u8>;
    /// The answer, once ready.
    fn poll(&mut self, pending: &mut Self::Pending) -> Option<Vec<u8>>;
    /// The answer when [`Bounds::answer_timeout`] passed first.
    fn timed_out(&mut self) -> Vec<u8>;
}

/// A listening socket of either kind.
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        let stream = match self {
            Listener::Unix(l) => Stream::Unix(l.accept()?.0),
            Listener::Tcp(l) => Stream::Tcp(l.accept()?.0),
        };
        stream.set_nonblocking()?;
        Ok(stream)
    }
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(true),
            Stream::Tcp(s) => s.set_nonblocking(true),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
}

enum Phase<P> {
    Reading(Vec<u8>),
    Waiting(P),
    Writing(Vec<u8>, usize),
}

struct Client<P> {
    stream: Stream,
    phase: Phase<P>,
    /// When the current phase must be over.
    deadline: Instant,
    /// For choosing whom to evict: the oldest reader goes first.
    accepted: Instant,
    /// The last `poll` reported it readable or writable (false until it has been polled).
    ready: bool,
}

/// Bytes read per `read` call.
const CHUNK: usize = 4096;
/// How long accepting pauses after an accept error such as `EMFILE`.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How often the loop looks at answers being prepared (the only thing it cannot poll).
const ANSWER_POLL: Duration = Duration::from_millis(2);
/// Longest sleep with nothing to do.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Serves `listener` with `protocol` on a new thread named `name`, within `bounds`.
pub fn spawn<P: Protocol>(
    name: &str,
    listener: Listener,
    protocol: P,
    bounds: Bounds,
) -> io::Result<()> {
    match &listener {
        Listener::Unix(l) => l.set_nonblocking(true)?,
        Listener::Tcp(l) => l.set_nonblocking(true)?,
    }
    let name = name.to_string();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut server = Server {
                name,
                listener,
                protocol,
                bounds,
                clients: Vec::new(),
                paused_until: None,
                last_accept_warning: None,
                pollfds: Vec::new(),
            };
            loop {
                server.round();
            }
        })?;
    Ok(())
}

struct Server<P: Protocol> {
    name: String,
    listener: Listener,
    protocol: P,
    bounds: Bounds,
    clients: Vec<Client<P::Pending>>,
    paused_until: Option<Instant>,
    last_accept_warning: Option<Instant>,
    pollfds: Vec<libc::pollfd>,
}

impl<P: Protocol> Server<P> {
    /// One wait and everything that became possible.
    fn round(&mut self) {
        let now = Instant::now();
        let accepting = self.paused_until.is_none_or(|t| t <= now);
        self.wait(now, accepting);
        let now = Instant::now();
        // pollfds[1..] lines up with the clients until the list changes: record each
        // client's result on the client itself before accepting (or evicting) changes it.
        for (c, p) in self.clients.iter_mut().zip(&self.pollfds[1..]) {
            c.ready = p.revents != 0;
        }
        if accepting && self.pollfds[0].revents != 0 {
            self.accept(now);
        }
        let mut i = 0;
        while i < self.clients.len() {
            if self.step(i, now) {
                i += 1;
            } else {
                self.clients.swap_remove(i);
            }
        }
    }

    fn wait(&mut self, now: Instant, accepting: bool) {
        let pollfd = |fd, events| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        self.pollfds.clear();
        // A paused listener is left out (fd -1 is ignored by poll).
        let listener = if accepting { self.listener.fd() } else { -1 };
        self.pollfds.push(pollfd(listener, libc::POLLIN));
        let mut timeout = IDLE_POLL;
        if let Some(t) = self.paused_until {
            timeout = timeout.min(t.saturating_duration_since(now));
        }
        for c in &self.clients {
            let events = match c.phase {
                Phase::Reading(_) => libc::POLLIN,
                Phase::Writing(..) => libc::POLLOUT,
                Phase::Waiting(_) => {
                    timeout = timeout.min(ANSWER_POLL);
                    0
                }
            };
            timeout = timeout.min(c.deadline.saturating_duration_since(now));
            self.pollfds.push(pollfd(c.stream.fd(), events));
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        if let Err(e) = crate::sys::poll(&mut self.pollfds, ms) {
            log::debug!("{}: poll: {e}", self.name);
            std::thread::sleep(ANSWER_POLL); // never spin on a persistent error
        }
    }

    fn accept(&mut self, now: Instant) {
        // A bounded number per round, so a flood of connections cannot starve the clients.
        for _ in 0..64 {
            match self.listener.accept() {
                Ok(stream) => {
                    if self.clients.len() >= self.bounds.max_clients {
                        self.evict();
                    }
                    self.clients.push(Client {
                        stream,
                        phase: Phase::Reading(Vec::new()),
                        deadline: now + self.bounds.request_timeout,
                        accepted: now,
                        ready: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS and the like: the pending connection stays
                    // queued, so polling again at once would spin. Pause instead.
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    if self
                        .last_accept_warning
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                    {
                        log::warn!("{}: cannot accept connections: {e}", self.name);
                        self.last_accept_warning = Some(now);
                    }
                    return;
                }
            }
        }
    }

    /// Drops the client that has been sending its request the longest, else the oldest.
    fn evict(&mut self) {
        let reading = |c: &Client<P::Pending>| matches!(c.phase, Phase::Reading(_));
        let victim = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| reading(c))
            .min_by_key(|(_, c)| c.accepted)
            .or_else(|| {
                self.clients
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, c)| c.accepted)
            })
            .map(|(i, _)| i);
        if let Some(i) = victim {
            self.clients.swap_remove(i);
        }
    }

    /// Advances client `i`; false when it is done or cut off.
    fn step(&mut self, i: usize, now: Instant) -> bool {
        let bounds = self.bounds;
        let c = &mut self.clients[i];
        let ready = c.ready;
        if now >= c.deadline {
            match c.phase {
                Phase::Waiting(_) => {
                    c.phase = Phase::Writing(self.protocol.timed_out(), 0);
                    c.deadline = now + bounds.write_timeout;
                }
                _ => return false,
            }
        }
        match &mut c.phase {
            Phase::Reading(buf) => {
                if !ready {
                    return true;
                }
                let start = buf.len();
                buf.resize(start + CHUNK, 0);
                let n = match c.stream.read(&mut buf[start..]) {
                    Ok(0) => return false,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                    Err(_) => return false,
                };
                buf.truncate(start + n);
                let next = if buf.len() > bounds.max_request {
                    Step::Respond(self.protocol.too_long())
                } else if n == 0 {
                    Step::More
                } else {
                    self.protocol.request(buf, n)
                };
                match next {
                    Step::More => {}
                    Step::Respond(out) => {
                        c.phase = Phase::Writing(out, 0);
                        c.deadline = now + bounds.write_timeout;
                    }
                    Step::Wait(p) => {
                        c.phase = Phase::Waiting(p);
                        c.deadline = now + bounds.answer_timeout;
                    }
                }
                true
            }
            Phase::Waiting(p) => {
                if let Some(out) = self.protocol.poll(p) {
                    c.phase = Phase::Writing(out, 0);
                    c.deadline = now + bounds.write_timeout;
                }
                true
            }
            Phase::Writing(out, sent) => {
                if !ready && *sent > 0 {
                    return true;
                }
                match c.stream.write(&out[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => return false,
                }
                *sent < out.len()
            }
        }
    }
}
