//! A merged flow's playout buffer (`merge_delay`): keeps the output in sequence order when
//! a packet one path lost comes late from another.
//!
//! Without it a merge forwards every first copy at once, so a packet recovered from a
//! lagging path leaves after the ones the leading path delivered meanwhile. With it, first
//! copies are released in sequence order: a packet that follows the last one released
//! leaves at once (an in-order stream is never delayed), and one that arrives after a gap
//! is held until the gap fills — the late path's copy arrives — or until `merge_delay`
//! after it arrived, when the missing numbers are given up (lost on every path) and what
//! is held leaves in order. A copy that arrives after its number was given up is `late`:
//! dropped, since sending it would reorder the output.
//!
//! Held packets are copies (up to [`SLOT_BYTES`] of payload; a larger one is released at
//! once and the flow's order is the arrival order again), one slot per sequence number
//! modulo the window, so memory is `merge_window × 2 KiB` per merged flow, allocated on its
//! first packet, and nothing else allocates. Sends point into the slots; a slot released
//! in the current egress batch is not overwritten before that batch is flushed.
//!
//! This module decides; the worker sends (`release` hands it each packet to send) and owns
//! the buffer, so it is touched by one thread only.

/// Where released packets go: the worker's egress.
pub trait Sink {
    /// Queues one packet for sending; its bytes stay untouched until the next `flush`.
    fn send(&mut self, payload: &[u8], tos: u8);
    /// Completes every queued send.
    fn flush(&mut self);
    /// The batch being filled: it changes with every flush.
    fn batch(&self) -> u64;
}

/// Payload bytes a slot holds.
pub const SLOT_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// When the held packet gives up waiting for the numbers before it.
    deadline: u64,
    len: u16,
    tos: u8,
    held: bool,
    /// The egress batch in which the slot's payload was last handed out for sending.
    sent_in: u64,
}

/// What happened to a stored packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Copied into the buffer (it may already be released by the next `release`).
    Held,
    /// Its number was already released or given up: dropped.
    Late,
    /// Larger than a slot: the caller sends it at once.
    TooLarge,
}

/// One merged flow's buffer.
#[derive(Debug)]
pub struct Playout {
    delay_ns: u64,
    /// A power of two: the merge's window.
    window: u16,
    /// The next sequence number to release; `None` before the first packet.
    next: Option<u16>,
    /// Packets held.
    held: usize,
    /// Held packets in arrival order, (number, deadline); entries whose packet has left
    /// are skipped when they reach the front, so the front is the oldest held packet.
    /// Preallocated to the window: it never grows past it.
    arrivals: std::collections::VecDeque<(u16, u64)>,
    slots: Box<[Slot]>,
    data: Box<[u8]>,
    /// Numbers given up (missing on every path when their wait ended).
    pub given_up: u64,
}

impl Playout {
    pub fn new(window: u16, delay_ns: u64) -> Playout {
        debug_assert!(window.is_power_of_two());
        Playout {
            delay_ns,
            window,
            next: None,
            held: 0,
            arrivals: std::collections::VecDeque::with_capacity(usize::from(window)),
            slots: vec![
                Slot {
                    sent_in: u64::MAX, // never sent
                    ..Slot::default()
                };
                usize::from(window)
            ]
            .into_boxed_slice(),
            data: vec![0; usize::from(window) * SLOT_BYTES].into_boxed_slice(),
            given_up: 0,
        }
    }

    /// The earliest moment `release` has work that no arrival brings: the oldest held
    /// packet's deadline.
    pub fn deadline(&self) -> Option<u64> {
        (self.held > 0).then(|| self.arrivals.front().map_or(u64::MAX, |&(_, d)| d))
    }

    /// Copies the first copy of `seq` (arrived at `now_ns`) into the buffer, flushing `out`
    /// first when the slot's previous payload may still be in flight. A number far ahead (a
    /// window or more past the next to release) first releases or gives up what is in
    /// between, through `out`.
    pub fn store(
        &mut self,
        seq: u16,
        payload: &[u8],
        tos: u8,
        now_ns: u64,
        out: &mut dyn Sink,
    ) -> Stored {
        if payload.len() > SLOT_BYTES {
            return Stored::TooLarge;
        }
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next);
        if ahead >= 0x8000 {
            return Stored::Late;
        }
        if ahead >= self.window {
            // Make room: everything before seq − window + 1 leaves now, in order.
            let keep_from = seq.wrapping_sub(self.window - 1);
            self.advance_to(keep_from, out);
        }
        let i = usize::from(seq & (self.window - 1));
        if self.slots[i].held {
            return Stored::Late; // the same number twice: the tracker's window is the same
        }
        if self.slots[i].sent_in == out.batch() {
            out.flush();
        }
        let deadline = now_ns.saturating_add(self.delay_ns);
        self.data[i * SLOT_BYTES..][..payload.len()].copy_from_slice(payload);
        self.slots[i] = Slot {
            deadline,
            len: payload.len() as u16,
            tos,
            held: true,
            sent_in: self.slots[i].sent_in,
        };
        self.held += 1;
        self.arrivals.push_back((seq, deadline));
        Stored::Held
    }

    /// Releases, in sequence order, what may leave at `now_ns`: the run of held packets from
    /// the next number, and past a gap once the oldest held packet's wait is over.
    pub fn release(&mut self, now_ns: u64, out: &mut dyn Sink) {
        loop {
            self.release_run(out);
            self.forget_released();
            match self.arrivals.front() {
                Some(&(_, deadline)) if now_ns >= deadline => {}
                _ => return,
            }
            // The wait is over: give up the missing numbers up to the next held packet.
            let Some(mut next) = self.next else { return };
            while !self.slots[usize::from(next & (self.window - 1))].held {
                next = next.wrapping_add(1);
                self.given_up += 1;
            }
            self.next = Some(next);
        }
    }

    /// Drops the front entries of packets that have left.
    fn forget_released(&mut self) {
        while let Some(&(seq, deadline)) = self.arrivals.front() {
            let slot = &self.slots[usize::from(seq & (self.window - 1))];
            if slot.held && slot.deadline == deadline {
                return;
            }
            self.arrivals.pop_front();
        }
    }

    /// Releases everything held, in order, giving up the gaps (a reload, a role change).
    pub fn release_all(&mut self, out: &mut dyn Sink) {
        self.release(u64::MAX, out);
    }

    /// Sends the consecutive held packets from the next number.
    fn release_run(&mut self, out: &mut dyn Sink) {
        let Some(mut next) = self.next else { return };
        while self.send_slot(next, out) {
            next = next.wrapping_add(1);
        }
        self.next = Some(next);
    }

    /// Sends the packet held for `seq`, if one is: true when there was.
    fn send_slot(&mut self, seq: u16, out: &mut dyn Sink) -> bool {
        let i = usize::from(seq & (self.window - 1));
        let slot = &mut self.slots[i];
        if !slot.held {
            return false;
        }
        slot.held = false;
        slot.sent_in = out.batch();
        self.held -= 1;
        out.send(
            &self.data[i * SLOT_BYTES..][..usize::from(slot.len)],
            slot.tos,
        );
        true
    }

    /// Releases or gives up every number before `to`.
    fn advance_to(&mut self, to: u16, out: &mut dyn Sink) {
        let Some(mut next) = self.next else { return };
        while next != to {
            if !self.send_slot(next, out) {
                self.given_up += 1;
            }
            next = next.wrapping_add(1);
        }
        self.next = Some(next);
        self.forget_released();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Records what is sent (the payload's first two bytes) and counts flushes.
    #[derive(Default)]
    struct Out {
        sent: Vec<u16>,
        flushes: u64,
    }

    impl Sink for Out {
        fn send(&mut self, b: &[u8], _: u8) {
            self.sent.push(u16::from_be_bytes([b[0], b[1]]));
        }
        fn flush(&mut self) {
            self.flushes += 1;
        }
        fn batch(&self) -> u64 {
            self.flushes
        }
    }

    /// Feeds `(seq, arrival ms)` and releases after each (a flush per arrival, as a worker
    /// flushes per batch); returns what was sent and what came late.
    fn run(p: &mut Playout, arrivals: &[(u16, u64)], end_ms: u64) -> (Vec<u16>, Vec<u16>) {
        let mut out = Out::default();
        let mut late = Vec::new();
        for &(seq, at) in arrivals {
            if p.store(seq, &seq.to_be_bytes(), 0, at * MS, &mut out) == Stored::Late {
                late.push(seq);
            }
            p.release(at * MS, &mut out);
            out.flush();
        }
        p.release(end_ms * MS, &mut out);
        (out.sent, late)
    }

    #[test]
    fn in_order_packets_leave_at_once() {
        let mut p = Playout::new(64, 10 * MS);
        let mut out = Out::default();
        for s in 0..5u16 {
            p.store(s, &s.to_be_bytes(), 0, 0, &mut out);
            p.release(0, &mut out);
            assert_eq!(
                out.sent.len(),
                usize::from(s) + 1,
                "released without waiting"
            );
        }
        assert_eq!(p.deadline(), None, "nothing held");
    }

    #[test]
    fn a_gap_filled_late_keeps_the_order() {
        let mut p = Playout::new(64, 10 * MS);
        // 2 comes 3 ms late from the other path.
        let (out, late) = run(
            &mut p,
            &[(0, 0), (1, 1), (3, 2), (4, 3), (2, 5), (5, 6)],
            100,
        );
        assert_eq!(out, [0, 1, 2, 3, 4, 5]);
        assert!(late.is_empty());
        assert_eq!(p.given_up, 0);
    }

    #[test]
    fn a_gap_is_given_up_after_the_delay_and_a_later_copy_is_late() {
        let mut p = Playout::new(64, 10 * MS);
        let (out, late) = run(
            &mut p,
            &[(0, 0), (2, 1), (3, 2), (4, 12), (1, 13), (5, 14)],
            100,
        );
        // At 12 ms, 2's wait (until 11 ms) is over: 1 is given up, 2, 3, 4 leave.
        assert_eq!(out, [0, 2, 3, 4, 5]);
        assert_eq!(late, [1]);
        assert_eq!(p.given_up, 1);
    }

    #[test]
    fn the_deadline_is_the_oldest_held_packets() {
        let mut p = Playout::new(64, 10 * MS);
        run(&mut p, &[(0, 0), (2, 1), (3, 4)], 0);
        assert_eq!(p.deadline(), Some(11 * MS));
        p.release(11 * MS, &mut Out::default());
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn a_number_a_window_ahead_pushes_the_oldest_out_in_order() {
        let mut p = Playout::new(64, 1000 * MS);
        let (out, _) = run(&mut p, &[(0, 0), (2, 0), (3, 0), (66, 1)], 1);
        // 66 needs 3..=66 in the window: 1 given up, 2 released, then 3 follows at once;
        // 66 waits behind 4..=65 (its deadline is far).
        assert_eq!(out, [0, 2, 3]);
        assert_eq!(p.given_up, 1);
        p.release_all(&mut Out::default());
        assert_eq!(p.given_up, 1 + 62);
    }

    #[test]
    fn sequence_numbers_wrap_and_big_payloads_are_not_held() {
        let mut p = Playout::new(64, 10 * MS);
        let (out, _) = run(&mut p, &[(65_534, 0), (0, 1), (65_535, 2), (1, 3)], 50);
        assert_eq!(out, [65_534, 65_535, 0, 1]);
        let big = vec![0u8; SLOT_BYTES + 1];
        assert_eq!(
            p.store(2, &big, 0, 0, &mut Out::default()),
            Stored::TooLarge
        );
    }

    #[test]
    fn a_slot_sent_in_this_batch_is_flushed_before_it_is_overwritten() {
        let mut p = Playout::new(64, 10 * MS);
        let mut out = Out::default();
        for s in [0u16, 64] {
            p.store(s, &[1, 2], 0, 0, &mut out);
            p.release(0, &mut out);
        }
        assert_eq!(
            out.flushes, 1,
            "64 reuses 0's slot, released in the same batch"
        );
        assert_eq!(out.sent.len(), 1, "64 waits behind 1..=63");
    }
}
