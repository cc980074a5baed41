//! The rules of RTP monitoring and merged flows: `rtp`, `rtp_clock_rate`, a flow's `input`
//! or merged `inputs`, `merge`, `merge_window` and `merge_delay`.

use std::ops::Range;

use toml::Spanned;

use super::super::raw::RawFlow;
use super::super::Input;
use super::{Seen, Validator, INPUT_EXAMPLE};

impl Validator<'_> {
    /// `rtp` and `rtp_clock_rate`: the clock rate when monitoring is on, `Some(None)` when
    /// it is off, `None` after an error.
    pub(super) fn rtp(&mut self, raw: &RawFlow) -> Option<Option<u32>> {
        let rate = match &raw.rtp_clock_rate {
            None => crate::rtp::DEFAULT_CLOCK_RATE,
            Some(r) => match u32::try_from(*r.get_ref()) {
                Ok(hz) if (1000..=10_000_000).contains(&hz) => hz,
                _ => {
                    self.error(
                        r.span(),
                        format!(
                            "rtp_clock_rate {} is not a clock rate from 1000 to 10000000 Hz; write the payload format's RTP clock, e.g. 90000 (video, MPEG-TS) or 48000 (audio)",
                            r.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        match (raw.rtp.unwrap_or(false), &raw.rtp_clock_rate) {
            (true, _) => Some(Some(rate)),
            (false, None) => Some(None),
            (false, Some(r)) => {
                self.error(
                    r.span(),
                    "rtp_clock_rate only applies to a monitored flow; add rtp = true to the flow, or remove rtp_clock_rate".to_string(),
                );
                None
            }
        }
    }

    /// `merge_delay`: zero when unset, `None` after an error.
    pub(super) fn merge_delay(
        &mut self,
        flow: &RawFlow,
        merge: bool,
    ) -> Option<std::time::Duration> {
        let Some(raw) = &flow.merge_delay else {
            return Some(std::time::Duration::ZERO);
        };
        if !merge {
            self.error(
                raw.span(),
                "merge_delay only applies to a merged flow; add merge = \"rtp\", or remove merge_delay".to_string(),
            );
            return None;
        }
        let (min, max) = super::super::MERGE_DELAY_RANGE;
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if d.is_zero() || (min..=max).contains(&d) => Some(d),
            _ => {
                self.error(
                    raw.span(),
                    format!(
                        "merge_delay {:?} is not \"0s\" or a duration from {} to {}; write the paths' largest skew, e.g. \"10ms\" (a packet after a gap waits that long for the other path's copy)",
                        raw.get_ref(),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
        }
    }

    /// `merge_window`: `Some(None)` when unset, `None` after an error.
    pub(super) fn merge_window(&mut self, flow: &RawFlow, merge: bool) -> Option<Option<u16>> {
        let Some(raw) = &flow.merge_window else {
            return Some(None);
        };
        let (min, max) = crate::rtp::WINDOW_RANGE;
        let n = *raw.get_ref();
        if !merge {
            self.error(
                raw.span(),
                "merge_window only applies to a merged flow; add merge = \"rtp\", or remove merge_window".to_string(),
            );
            return None;
        }
        match u16::try_from(n) {
            Ok(w) if (min..=max).contains(&w) && w.is_power_of_two() => Some(Some(w)),
            _ => {
                let near = u16::try_from(n.clamp(i64::from(min), i64::from(max)))
                    .map_or(max, |w| w.next_power_of_two().min(max));
                self.error(
                    raw.span(),
                    format!(
                        "merge_window {n} is not a power of two from {min} to {max} sequence numbers; write {near} (it should cover the paths' skew times the packet rate, e.g. 1024 for 20 ms at 50k pps)"
                    ),
                );
                None
            }
        }
    }

    /// `input`, or the `inputs` of a merged flow: each valid one with its span, or `None`
    /// when any is invalid.
    pub(super) fn flow_inputs(
        &mut self,
        flow: &RawFlow,
        span: &Range<usize>,
        label: &str,
    ) -> Option<Vec<(Input, Range<usize>)>> {
        let list = match (&flow.input, &flow.inputs) {
            (Some(_), Some(list)) => {
                self.error(
                    list.span(),
                    format!("flow {label} has both `input` and `inputs`; keep `input` for one path, or put every path in `inputs` with merge = \"rtp\""),
                );
                return None;
            }
            (None, Some(list)) => list,
            (_, None) => {
                let raw = self.require(flow.input.as_ref(), span, || {
                    format!("flow {label} has no input; add {INPUT_EXAMPLE}")
                })?;
                return Some(vec![(self.input(raw)?, raw.span())]);
            }
        };
        let n = list.get_ref().len();
        if !(1..=super::super::MAX_MERGE_INPUTS).contains(&n) {
            self.error(
                list.span(),
                format!(
                    "flow {label} has {n} inputs; a merged flow takes 1 to {} (one per redundant path)",
                    super::super::MAX_MERGE_INPUTS
                ),
            );
            return None;
        }
        let inputs: Vec<_> = list
            .get_ref()
            .iter()
            .map(|raw| Some((self.input(raw)?, raw.span())))
            .collect();
        inputs.into_iter().collect()
    }

    /// `merge`: whether the flow merges its inputs; `None` after an error. Several inputs
    /// need it, and it needs one worker (a merged flow's paths meet on one thread).
    pub(super) fn merge(
        &mut self,
        flow: &RawFlow,
        inputs: usize,
        label: &str,
        seen: &mut Seen,
    ) -> Option<bool> {
        match &flow.merge {
            None if inputs > 1 => {
                let span = flow.inputs.as_ref().map_or(0..0, Spanned::span);
                self.error(
                    span,
                    format!("flow {label} has {inputs} inputs but no merge; add merge = \"rtp\" (each RTP sequence number is forwarded once, from whichever input delivers it first)"),
                );
                None
            }
            None => Some(false),
            Some(m) if m.get_ref() == "rtp" => {
                seen.merges.push(m.span());
                Some(true)
            }
            Some(m) => {
                self.error(
                    m.span(),
                    format!(
                        "merge {:?} is not a way to merge; the only one is \"rtp\" (by RTP sequence number, first arrival wins)",
                        m.get_ref()
                    ),
                );
                None
            }
        }
    }
}
