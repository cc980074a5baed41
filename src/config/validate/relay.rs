//! Relay-wide settings that take a size or a short duration: `ring_memory` and
//! `batch_delay`.

use toml::Spanned;

use super::Validator;

impl Validator<'_> {
    /// A `ring_memory` size within [`RING_MEMORY_RANGE`], or `None` after recording why not.
    pub(super) fn ring_memory(&mut self, raw: &Spanned<String>) -> Option<u64> {
        let (min, max) = super::super::RING_MEMORY_RANGE;
        match super::super::parse_size(raw.get_ref()) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            parsed => {
                let what = if parsed.is_some() {
                    "is out of range"
                } else {
                    "is not a size"
                };
                self.error(
                    raw.span(),
                    format!(
                        "ring_memory {:?} {what}; write a size from \"1MiB\" to \"64GiB\" such as \"256MiB\" (the default), in B, KiB, MiB or GiB: all receive rings together (one per worker per input interface) use at most this much",
                        raw.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A `batch_delay` within [`BATCH_DELAY_RANGE`](super::super::BATCH_DELAY_RANGE) ("0s"
    /// turns coalescing off), or `None` after recording why not.
    pub(super) fn batch_delay(&mut self, raw: &Spanned<String>) -> Option<std::time::Duration> {
        let (min, max) = super::super::BATCH_DELAY_RANGE;
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if d.is_zero() || (min..=max).contains(&d) => Some(d),
            parsed => {
                let what = if parsed.is_ok() {
                    "is out of range"
                } else {
                    "is not a duration"
                };
                self.error(
                    raw.span(),
                    format!(
                        "batch_delay {:?} {what}; write a duration from {} to {} such as \"50us\" (the default: under load a worker waits this long for more packets before it sends, so one send carries several), or \"0s\" to send every packet at once",
                        raw.get_ref(),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
        }
    }
}
