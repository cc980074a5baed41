//! Hitless merge of redundant paths (`merge = "rtp"`, SMPTE ST 2022-7's idea): a flow with
//! several inputs carrying the same RTP stream forwards each sequence number once, from
//! whichever input delivers it first, and discards the later copies (drop `merged`).
//!
//! The decision is the flow's RTP tracker ([`crate::rtp`]): a sequence number it has seen
//! within its window ([`crate::rtp::WINDOW`] numbers behind the highest) is a duplicate;
//! anything else is forwarded — at once by default, so the output's order is the order in
//! which first copies arrive and a packet one path lost and the other delivers late is
//! forwarded late; or, with `merge_delay`, through the worker's playout buffer
//! ([`crate::playout`]), which releases first copies in sequence order. The same tracker gives
//! the merged stream's figures (lost on every path, reordered) and each input's counters
//! say what that path delivered: packets, first copies (the ones forwarded), duplicates.
//!
//! Where the paths meet: on one worker. A merged flow's inputs (other groups, sources or
//! interfaces) hash to arbitrary fanout members, and two workers deciding about one stream
//! would race (a number forwarded twice) and interleave their sends (reordering). So a
//! config with a merged flow runs one worker (validation refuses `workers` > 1 beside a
//! merge; see docs/ARCHITECTURE.md for the numbers behind that choice).
//!
//! Limits: the window is `merge_window` sequence numbers (default 1024, ~20 ms at 50k pps);
//! a path lagging more than that has its copies taken for a sender restart. After an SSRC change, copies of
//! the old SSRC still arriving on a slower path restart the tracker again.

use std::sync::atomic::Ordering::Relaxed;

use crate::rtp::Seen;
use crate::table::FlowEntry;
use crate::wire;

/// What a merge decided about one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The first copy of this RTP sequence number: forward it (through the playout buffer
    /// when the flow has a `merge_delay`).
    First(u16),
    /// Not RTP: forward it as it came.
    NotRtp,
    /// A later copy: discard it.
    Duplicate,
}

/// What to do with the datagram that arrived on `input` of merged `flow` at `arrival_ns`
/// (the ring's clock), in a batch read at `now_ns` ([`crate::stats::monotonic_ns`]).
#[inline]
pub fn decide(
    flow: &FlowEntry,
    input: usize,
    payload: &[u8],
    arrival_ns: u64,
    now_ns: u64,
) -> Decision {
    let Some((tracker, clock_rate)) = &flow.rtp else {
        return Decision::NotRtp;
    };
    let rtp = wire::rtp::parse(payload);
    let seen = tracker.record(rtp, arrival_ns, *clock_rate);
    if let Some(i) = flow.inputs.get(input) {
        i.stats.packets.fetch_add(1, Relaxed);
        i.stats.last_seen_ns.store(now_ns, Relaxed);
        match seen {
            Seen::Duplicate => i.stats.duplicates.fetch_add(1, Relaxed),
            Seen::New | Seen::NotRtp => i.stats.first.fetch_add(1, Relaxed),
        };
    }
    match (seen, rtp) {
        (Seen::Duplicate, _) => Decision::Duplicate,
        (Seen::New, Some(r)) => Decision::First(r.seq),
        _ => Decision::NotRtp,
    }
}
