//! Hitless merge of redundant paths (`merge = "rtp"`, SMPTE ST 2022-7's idea): a flow with
//! several inputs carrying the same RTP stream forwards each sequence number once, from
//! whichever input delivers it first, and discards the later copies (drop `merged`).
//!
//! The decision is the flow's RTP tracker ([`crate::rtp`]): a sequence number it has seen
//! within its window ([`crate::rtp::WINDOW`] numbers behind the highest) is a duplicate;
//! anything else is forwarded at once — nothing is buffered, so the output's order is the
//! order in which first copies arrive, and a packet one path lost and the other delivers
//! late is forwarded late (the paths' own reordering, never more). The same tracker gives
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

/// Whether the datagram that arrived on `input` of merged `flow` at `arrival_ns` is the
/// first copy of its sequence number (forward it) or a later one (discard it).
#[inline]
pub fn first(flow: &FlowEntry, input: usize, payload: &[u8], arrival_ns: u64) -> bool {
    let Some((tracker, clock_rate)) = &flow.rtp else {
        return true;
    };
    let seen = tracker.record(wire::rtp::parse(payload), arrival_ns, *clock_rate);
    if let Some(i) = flow.inputs.get(input) {
        i.stats.packets.fetch_add(1, Relaxed);
        match seen {
            Seen::Duplicate => i.stats.duplicates.fetch_add(1, Relaxed),
            Seen::New | Seen::NotRtp => i.stats.first.fetch_add(1, Relaxed),
        };
    }
    seen != Seen::Duplicate
}
