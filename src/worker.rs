//! Worker threads: each owns its receive rings (one per input interface) and one io_uring for
//! sends, and runs the packet path with no locks and no allocation:
//!
//! wait (poll, only when no ring has a ready frame) → load the table once → per ring, take up
//! to [`BATCH`] ready frames → parse → look up → queue a send per output straight from ring
//! memory (none while the relay is standby: [`crate::role`]) → one `io_uring_enter` for the
//! batch → count completions → hand frames back.
//!
//! The control thread talks to a worker only through [`Command`]s and an eventfd that wakes
//! it; the table arrives through `arc-swap`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use nix::sys::eventfd::{EfdFlags, EventFd};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::coalesce::{self, Coalesce};
use crate::egress::{self, Egress};
use crate::ingress::Ring;
use crate::playout::{Playout, Sink, Stored};
use crate::role::Role;
use crate::stats::{Drop, WorkerStats};
use crate::table::{FlowEntry, Table};
use crate::{loopguard, merge, sys, wire};

/// Frames taken from one ring before their sends are submitted.
pub const BATCH: usize = 64;
/// io_uring submission entries; a batch with more sends than this is flushed in parts.
const EGRESS_ENTRIES: u32 = 512;
/// How often idle workers wake to read kernel ring counters (and how long a missed wake-up
/// could delay a command — in practice commands wake the worker at once).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// What the control thread asks of a worker.
#[derive(Debug)]
pub enum Command {
    /// Start reading a new input interface.
    AddRing(Ring),
    /// Stop reading an interface that no flow uses any more.
    RemoveRing(u32),
    /// Replace the socket filter of the interface's ring (its unicast inputs changed).
    SetFilter(u32, Arc<Vec<libc::sock_filter>>),
    Stop,
}

/// Called once, from the worker's thread, when its loop ends by itself — an error from
/// poll or io_uring, or a panic — with the worker's id and what happened. Never called for a
/// stop the control thread asked for.
pub type OnExit = Arc<dyn Fn(usize, String) + Send + Sync>;

/// The control thread's handle on one worker.
pub struct Worker {
    thread: Option<JoinHandle<()>>,
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    stats: Arc<WorkerStats>,
}

impl Worker {
    /// Starts worker `id` on `rings`; returns once its io_uring is set up (or failed).
    pub fn spawn(
        id: usize,
        table: Arc<ArcSwap<Table>>,
        role: Arc<Role>,
        rings: Vec<Ring>,
        on_exit: OnExit,
    ) -> io::Result<Worker> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        let stats = Arc::new(WorkerStats::default());
        let (commands, inbox) = mpsc::channel();
        let (started_tx, started) = mpsc::sync_channel(1);
        let state = (wake.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(format!("mcr-worker-{id}"))
            .spawn(move || {
                // The ring is single-issuer: it must be created by the thread that submits.
                let egress = match Egress::new(EGRESS_ENTRIES, egress::runs_supported()) {
                    Ok(e) => {
                        let _ = started_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let mut w = Loop {
                    id,
                    cache: Cache::new(table),
                    role,
                    egress,
                    rings,
                    inbox,
                    wake: state.0,
                    stats: state.1,
                    pollfds: Vec::new(),
                    playouts: FxHashMap::default(),
                    table_in_use: None,
                    coalesce: Coalesce::default(),
                };
                // Waits of tens of microseconds (`batch_delay`) must not take the default
                // 50 µs of slack on top; the call cannot fail for a valid value.
                let slack = coalesce::TIMER_SLACK.as_nanos() as u64;
                if let Err(e) = nix::sys::prctl::set_timerslack(slack) {
                    log::debug!("worker {id}: PR_SET_TIMERSLACK: {e}");
                }
                let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run()));
                let reason = match ended {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(panic) => Some(format!("panicked: {}", panic_message(&*panic))),
                };
                if let Some(reason) = reason {
                    log::error!("worker {id} stopped: {reason}");
                    on_exit(id, reason);
                }
                w.collect_ring_stats();
            })?;
        started
            .recv()
            .map_err(|_| io::Error::other("worker thread died during start"))??;
        Ok(Worker {
            thread: Some(thread),
            commands,
            wake,
            stats,
        })
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// Queues a command and wakes the worker.
    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.wake.write(1);
        }
    }

    /// Wakes the worker so it loads a newly published table now and lets the old one go
    /// (an idle worker would otherwise hold it, and its sockets, until its next wake-up).
    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Stops the worker and waits for it.
    pub fn stop(mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Loop {
    id: usize,
    cache: Cache<Arc<ArcSwap<Table>>, Arc<Table>>,
    role: Arc<Role>,
    // Fields drop in this order: the io_uring goes before the rings its sends point into, so
    // after a failed flush (the only way out with sends possibly in flight) the kernel is told
    // to cancel them before the ring memory is unmapped.
    egress: Egress,
    rings: Vec<Ring>,
    inbox: mpsc::Receiver<Command>,
    wake: Arc<EventFd>,
    stats: Arc<WorkerStats>,
    pollfds: Vec<libc::pollfd>,
    /// Merged flows' playout buffers (`merge_delay`), by [`playout_key`], with the flow's
    /// index in `table_in_use`. Their held packets are sent under the table they came in
    /// with: a new table first releases them all.
    playouts: FxHashMap<usize, (u32, Playout)>,
    table_in_use: Option<Arc<Table>>,
    coalesce: Coalesce,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut last_housekeeping = Instant::now();
        loop {
            if !self.rings.iter().any(|r| r.frame(0).is_some()) {
                self.wait()?;
                if self.pollfds[0].revents != 0 {
                    let _ = self.wake.read();
                }
            }
            // A non-blocking check per round, so commands are seen under load too.
            if !self.handle_commands() {
                return Ok(());
            }
            let table = self.cache.load().clone();
            self.settle_playouts(&table)?;
            let (mut frames, mut last_arrival) = (0, 0);
            for i in 0..self.rings.len() {
                let (n, last) = self.drain(i, &table)?;
                frames += n;
                last_arrival = last_arrival.max(last);
            }
            self.release_due(&table)?;
            self.stats.sends.store(self.egress.sends(), Relaxed);
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                self.collect_ring_stats();
                #[cfg(feature = "fault-injection")]
                fault::inject(self.id)?;
                last_housekeeping = Instant::now();
            }
            let delay = table.batch_delay();
            if let Some(wait) = self
                .coalesce
                .after_round(frames, BATCH, last_arrival, delay)
            {
                std::thread::sleep(wait);
            }
        }
    }

    /// Before the first batch under a new table: sends what the playout buffers hold under
    /// the table it came in with (its flow indexes), and drops the buffers of flows gone.
    fn settle_playouts(&mut self, table: &Arc<Table>) -> io::Result<()> {
        if self
            .table_in_use
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, table))
        {
            return Ok(()); // the common case: no refcount traffic per round
        }
        let Some(old) = self.table_in_use.replace(table.clone()) else {
            return Ok(());
        };
        if self.playouts.is_empty() {
            return Ok(());
        }
        let standby = self.role.is_standby();
        for (fi, playout) in self.playouts.values_mut() {
            let Some(flow) = old.flow(*fi) else { continue };
            let mut out = Copies::new(&mut self.egress, &old, *fi, flow);
            if standby {
                playout.release_all(&mut Discard(&self.stats));
            } else {
                playout.release_all(&mut out);
            }
            out.result?;
        }
        self.egress.flush(|t, r, n| complete(&old, t, r, n))?;
        let kept: FxHashSet<usize> = (table.flows().iter())
            .filter(|f| f.spec.merge && !f.spec.merge_delay.is_zero())
            .map(playout_key)
            .collect();
        self.playouts.retain(|key, _| kept.contains(key));
        Ok(())
    }

    /// Releases what the playout buffers may send now (a wait that ended with no arrival).
    fn release_due(&mut self, table: &Table) -> io::Result<()> {
        if self.playouts.is_empty() {
            return Ok(());
        }
        let now = realtime_ns();
        let standby = self.role.is_standby();
        let mut sent = false;
        for (fi, playout) in self.playouts.values_mut() {
            if playout.deadline().is_none_or(|d| d > now) {
                continue;
            }
            let Some(flow) = table.flow(*fi) else {
                continue;
            };
            let mut out = Copies::new(&mut self.egress, table, *fi, flow);
            if standby {
                playout.release(now, &mut Discard(&self.stats));
            } else {
                playout.release(now, &mut out);
                sent = true;
            }
            out.result?;
        }
        if sent {
            self.egress.flush(|t, r, n| complete(table, t, r, n))?;
        }
        Ok(())
    }

    /// How long the worker may sleep: until housekeeping, or a playout buffer's deadline.
    fn sleep_ms(&self) -> i32 {
        let housekeeping = HOUSEKEEPING.as_millis() as i32;
        let Some(deadline) = self
            .playouts
            .values()
            .filter_map(|(_, p)| p.deadline())
            .min()
        else {
            return housekeeping;
        };
        let ms = deadline.saturating_sub(realtime_ns()).div_ceil(1_000_000);
        (ms as i32).clamp(0, housekeeping)
    }

    /// Sleeps until a ring has a frame, a command arrives, or housekeeping is due.
    fn wait(&mut self) -> io::Result<()> {
        let pollin = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        self.pollfds.clear();
        self.pollfds.push(pollin(self.wake.as_fd().as_raw_fd()));
        self.pollfds
            .extend(self.rings.iter().map(|r| pollin(r.raw_fd())));
        let timeout = self.sleep_ms();
        sys::poll(&mut self.pollfds, timeout)?;
        // A ring whose interface went down (or away) holds a pending socket error (ENETDOWN,
        // ENODEV) that makes every poll return at once until it is read: read it, once per
        // link event, so an idle worker sleeps again.
        for (pfd, ring) in self.pollfds[1..].iter().zip(&self.rings) {
            if pfd.revents & libc::POLLERR != 0 {
                match ring.take_error() {
                    Ok(errno) => log::debug!(
                        "worker {}: ring on ifindex {}: {}",
                        self.id,
                        ring.ifindex(),
                        io::Error::from_raw_os_error(errno)
                    ),
                    Err(e) => log::warn!("worker {}: SO_ERROR: {e}", self.id),
                }
            }
        }
        Ok(())
    }

    /// Applies pending commands; false on `Stop`.
    fn handle_commands(&mut self) -> bool {
        while let Ok(cmd) = self.inbox.try_recv() {
            match cmd {
                Command::AddRing(ring) => self.rings.push(ring),
                Command::RemoveRing(ifindex) => {
                    self.collect_ring_stats();
                    self.rings.retain(|r| r.ifindex() != ifindex);
                }
                Command::SetFilter(ifindex, filter) => {
                    for ring in self.rings.iter().filter(|r| r.ifindex() == ifindex) {
                        if let Err(e) = ring.set_filter(&filter) {
                            log::error!("worker {}: socket filter on ifindex {ifindex} not replaced: {e}; its unicast inputs keep the previous one", self.id);
                        }
                    }
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Forwards up to one batch from ring `i`; returns how many frames it took and the
    /// receive timestamp of the last.
    #[allow(unsafe_code)] // sends from ring memory through `Copies::queue`; see SAFETY
    fn drain(&mut self, i: usize, table: &Table) -> io::Result<(usize, u64)> {
        let ring = &self.rings[i];
        let ifindex = ring.ifindex();
        let drops = &self.stats.drops;
        let now_ns = crate::stats::monotonic_ns();
        let standby = self.role.is_standby();
        let mut n = 0;
        while n < BATCH {
            let Some(frame) = ring.frame(n) else { break };
            n += 1;
            if frame.vlan_tagged {
                // Tagged frames belong to the VLAN interface, which has its own ring.
                drops.add(Drop::Unsupported, 1);
                continue;
            }
            if (frame.data.len() as u32) < frame.wire_len {
                drops.add(Drop::Truncated, 1);
                continue;
            }
            let d = match wire::parse(frame.data) {
                Ok(d) => d,
                Err(reject) => {
                    drops.add(reject_reason(reject), 1);
                    continue;
                }
            };
            if d.vlan.is_some_and(|id| id != 0) {
                // A tag the kernel left in the frame (the inner one of two): another VLAN's.
                drops.add(Drop::Unsupported, 1);
                continue;
            }
            let Some(hit) = table.lookup(ifindex, d.src, d.dst, d.dst_port) else {
                drops.add(Drop::NoMatch, 1);
                continue;
            };
            let fi = hit.flow();
            let Some(flow) = table.flow(fi) else { continue };
            if !frame.checksum_trusted && !wire::verify_checksums(frame.data) {
                drops.add(Drop::Checksum, 1);
                continue;
            }
            let mut hold = None;
            if flow.spec.merge {
                match merge::decide(flow, hit.input(), d.payload, frame.arrival_ns(), now_ns) {
                    merge::Decision::Duplicate => {
                        drops.add(Drop::Merged, 1);
                        continue;
                    }
                    merge::Decision::First(seq) if !flow.spec.merge_delay.is_zero() => {
                        hold = Some(seq);
                    }
                    _ => {}
                }
            }
            let sender = loopguard::sender(d.src, d.src_port);
            if table
                .guard()
                .looped(fi, sender, d.payload, now_ns, flow.loop_window)
            {
                drops.add(Drop::Loop, 1);
                flow.stats.looped.fetch_add(1, Relaxed);
                continue;
            }
            flow.stats.add(d.payload.len(), now_ns);
            match &flow.rtp {
                Some((monitor, clock_rate)) if !flow.spec.merge => {
                    monitor.record(wire::rtp::parse(d.payload), frame.arrival_ns(), *clock_rate);
                }
                _ => {}
            }
            if standby {
                drops.add(Drop::Standby, 1);
                continue;
            }
            let mut out = Copies::new(&mut self.egress, table, fi, flow);
            if let Some(seq) = hold {
                // SAFETY: as for the `queue` below (ring memory, released after the flush).
                let late = unsafe { hold_back(&mut self.playouts, &mut out, seq, &d, &frame) };
                if late {
                    drops.add(Drop::Late, 1);
                    if let Some(i) = flow.inputs.get(hit.input()) {
                        i.stats.late.fetch_add(1, Relaxed);
                    }
                }
                out.result?;
                continue;
            }
            // SAFETY: `d.payload` points into a frame this worker owns until `ring.release`
            // below, which runs after every flush of these sends; the sockets are kept open
            // by `table`, held for the whole batch.
            unsafe { out.queue(d.payload, d.tos) };
            out.result?;
        }
        if n == 0 {
            return Ok((0, 0));
        }
        // The last frame is still ours (released below): its timestamp, once per batch.
        let last_arrival = ring.frame(n - 1).map_or(0, |f| f.arrival_ns());
        self.stats.frames.fetch_add(n as u64, Relaxed);
        self.egress.flush(|t, r, n| complete(table, t, r, n))?;
        self.rings[i].release(n);
        Ok((n, last_arrival))
    }

    /// Moves the kernel's ring-full drop counts into the worker's counters.
    fn collect_ring_stats(&self) {
        for ring in &self.rings {
            match ring.take_stats() {
                Ok(s) => self.stats.drops.add(Drop::RingFull, u64::from(s.drops)),
                Err(e) => log::debug!("worker {}: PACKET_STATISTICS: {e}", self.id),
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn reject_reason(reject: wire::Reject) -> Drop {
    match reject {
        wire::Reject::Fragment => Drop::Fragment,
        wire::Reject::Malformed => Drop::Malformed,
        wire::Reject::Unsupported => Drop::Unsupported,
        wire::Reject::Extension => Drop::Extension,
    }
}

/// What a send's io_uring `user_data` carries: flow index (high 32 bits), output index (16
/// bits; validation allows at most 4096 outputs per flow) and payload length (16 bits, which
/// holds any UDP payload). A successful send counts the payload, whatever headers it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token(u64);

impl Token {
    #[inline]
    fn new(flow: u32, output: usize, payload_len: usize) -> Token {
        debug_assert!(output <= usize::from(u16::MAX) && payload_len <= usize::from(u16::MAX));
        Token(
            (u64::from(flow) << 32)
                | ((output as u64 & 0xffff) << 16)
                | (payload_len as u64 & 0xffff),
        )
    }

    #[inline]
    fn flow(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[inline]
    fn output(self) -> usize {
        ((self.0 >> 16) & 0xffff) as usize
    }

    /// What to record for a send that completed with `result`: the payload length on success
    /// (a frame's result also counts the headers mcr wrote), else the negative errno.
    #[inline]
    fn outcome(self, result: i32) -> i32 {
        if result >= 0 {
            (self.0 & 0xffff) as i32
        } else {
            result
        }
    }
}

/// Queues a payload's copies to every output of one flow, flushing when the queue is full;
/// the playout buffer's [`Sink`].
struct Copies<'a> {
    egress: &'a mut Egress,
    table: &'a Table,
    fi: u32,
    flow: &'a FlowEntry,
    /// The first flush error; the worker stops on it.
    result: io::Result<()>,
}

#[allow(unsafe_code)] // the one call site of `Egress::push_route`; see its SAFETY notes
impl<'a> Copies<'a> {
    #[inline]
    fn new(egress: &'a mut Egress, table: &'a Table, fi: u32, flow: &'a FlowEntry) -> Self {
        Copies {
            egress,
            table,
            fi,
            flow,
            result: Ok(()),
        }
    }

    /// Queues one send per output of `payload` with `tos`.
    ///
    /// # Safety
    /// `payload` must stay valid and unchanged until the egress is next flushed.
    #[inline]
    unsafe fn queue(&mut self, payload: &[u8], tos: u8) {
        for (oi, out) in self.flow.outputs.iter().enumerate() {
            // A waiting output (interface missing, down or without an address) has no socket.
            let Some(path) = &out.path else { continue };
            let route = path.route(payload.len());
            let token = Token::new(self.fi, oi, payload.len()).0;
            // SAFETY: the payload outlives the sends (this function's contract); the sockets
            // are kept open by `table`, held for the whole batch.
            if !unsafe { self.egress.push_route(route, payload, tos, token) } {
                self.flush();
                // SAFETY: as above; the queue is empty after the flush.
                if !unsafe { self.egress.push_route(route, payload, tos, token) } {
                    out.stats.queue_full();
                }
            }
        }
    }
}

#[allow(unsafe_code)] // sends from the playout buffer; see the SAFETY note
impl Sink for Copies<'_> {
    fn send(&mut self, payload: &[u8], tos: u8) {
        // SAFETY: the playout buffer leaves a released slot alone until the batch it was
        // released in is flushed (it checks `batch`), and a buffer is dropped only after a
        // flush (`Loop::settle_playouts`).
        unsafe { self.queue(payload, tos) }
    }

    fn flush(&mut self) {
        let table = self.table;
        if let Err(e) = self.egress.flush(|t, r, n| complete(table, t, r, n)) {
            if self.result.is_ok() {
                self.result = Err(e);
            }
        }
    }

    fn batch(&self) -> u64 {
        self.egress.batch()
    }
}

/// Puts the first copy of `seq` in its merged flow's playout buffer and sends what may leave
/// now; true when it came too late (its number was already given up) and was dropped.
///
/// # Safety
/// As for [`Copies::queue`]: a datagram larger than a slot is sent from `d` at once.
#[allow(unsafe_code)] // forwards `Copies::queue`'s contract
#[inline]
unsafe fn hold_back(
    playouts: &mut FxHashMap<usize, (u32, Playout)>,
    out: &mut Copies<'_>,
    seq: u16,
    d: &wire::Datagram<'_>,
    frame: &crate::ingress::Frame<'_>,
) -> bool {
    let flow = out.flow;
    let (at, playout) = playouts.entry(playout_key(flow)).or_insert_with(|| {
        let window = (flow.rtp.as_ref()).map_or(crate::rtp::WINDOW, |(m, _)| m.window());
        let delay = u64::try_from(flow.spec.merge_delay.as_nanos()).unwrap_or(u64::MAX);
        (out.fi, Playout::new(window, delay))
    });
    *at = out.fi;
    match playout.store(seq, d.payload, d.tos, frame.arrival_ns(), out) {
        Stored::Held => playout.release(frame.arrival_ns(), out),
        Stored::Late => return true,
        // SAFETY: forwarded from the caller.
        Stored::TooLarge => unsafe { out.queue(d.payload, d.tos) },
    }
    false
}

/// Where a standby relay's released packets go: counted, not sent.
struct Discard<'a>(&'a WorkerStats);

impl Sink for Discard<'_> {
    fn send(&mut self, _: &[u8], _: u8) {
        self.0.drops.add(Drop::Standby, 1);
    }
    fn flush(&mut self) {}
    fn batch(&self) -> u64 {
        0
    }
}

/// CLOCK_REALTIME in nanoseconds: the clock of the rings' receive timestamps.
fn realtime_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// A merged flow's playout buffer is keyed by its tracker, which outlives reloads that keep
/// the flow (its index may change).
fn playout_key(flow: &FlowEntry) -> usize {
    flow.rtp
        .as_ref()
        .map_or(0, |(m, _)| Arc::as_ptr(m) as *const u8 as usize)
}

/// Records one send's completion, of `packets` datagrams, on the output its token names.
#[inline]
fn complete(table: &Table, token: u64, result: i32, packets: u16) {
    let token = Token(token);
    if let Some(out) = table
        .flow(token.flow())
        .and_then(|f| f.outputs.get(token.output()))
    {
        out.stats.record(token.outcome(result), u64::from(packets));
    }
}

/// Test builds only (`--features fault-injection`, never in a package): a worker fails on
/// purpose at its housekeeping tick when the file named by `MCR_FAULT_FILE` exists and says
/// `panic` or `error`, so tests can prove a dead worker never leaves a healthy-looking relay.
#[cfg(feature = "fault-injection")]
mod fault {
    pub fn inject(worker: usize) -> std::io::Result<()> {
        let Some(path) = std::env::var_os("MCR_FAULT_FILE") else {
            return Ok(());
        };
        match std::fs::read_to_string(path).unwrap_or_default().trim() {
            "panic" => panic!("fault injected into worker {worker}"),
            "error" => Err(std::io::Error::other(format!(
                "fault injected into worker {worker}"
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_count_the_payload() {
        let t = Token::new(7, 3, 1000);
        assert_eq!((t.flow(), t.output()), (7, 3));
        assert_eq!(
            t.outcome(1052),
            1000,
            "a frame's result includes its headers"
        );
        assert_eq!(t.outcome(1000), 1000);
        assert_eq!(t.outcome(-libc::ENOBUFS), -libc::ENOBUFS);
        let t = Token::new(u32::MAX, 4095, 65507);
        assert_eq!(
            (t.flow(), t.output(), t.outcome(0)),
            (u32::MAX, 4095, 65507)
        );
    }
}
