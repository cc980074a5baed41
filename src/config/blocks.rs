//! Reading a large config again after a small change. The file is split at its `[[flow]]`
//! headers into the part before them (`[relay]`) and one block per flow; each block's parse is
//! remembered by its exact text, so a reload parses only the blocks that changed (and the
//! small part before them) and a linear pass does the rest. Validation then runs on the whole,
//! exactly as after a whole-file parse.
//!
//! Invariants:
//! - the result is the whole-file parse's, errors included, byte for byte: whenever the split
//!   cannot be proven to mean what the whole file means, or any part fails to parse on its
//!   own, the whole file is parsed instead (and that parse words any error);
//! - a part is taken as meaning what it means inside the file only when it cannot reach
//!   across a header: the file has no multi-line strings, the part before the first header
//!   holds no `flow` key, and each block holds exactly one flow and nothing else;
//! - spans are absolute: a remembered block's spans are relative to its text and are moved to
//!   where the block now starts.

use std::ops::Range;
use std::path::Path;

use rustc_hash::FxHashMap;
use toml::Spanned;

use super::raw::{RawConfig, RawFlow, RawInput, RawOutput, RawRelay};
use super::{validate, Config, ConfigError, ConfigErrors};

/// The blocks of the last file read, by text, with spans relative to each block.
#[derive(Debug, Default)]
pub struct ParseCache {
    /// Block text → its flow and the number of the read that last saw it.
    blocks: FxHashMap<String, (Spanned<RawFlow>, u64)>,
    reads: u64,
}

impl ParseCache {
    /// Reads the file at `path` once and parses it as [`Config::load`] does, remembering its
    /// blocks; returns the bytes read with the config.
    ///
    /// # Errors
    /// Exactly those of [`Config::load`].
    pub fn load(&mut self, path: &Path) -> Result<(Vec<u8>, Config), ConfigErrors> {
        let bytes = std::fs::read(path)
            .map_err(|e| ConfigError::whole_file(path, format!("cannot read file: {e}")))?;
        let config = self.parse_bytes(&bytes, path)?;
        Ok((bytes, config))
    }

    /// [`Config::parse_bytes`], remembering the file's blocks for the next call.
    ///
    /// # Errors
    /// Exactly those of [`Config::parse_bytes`].
    pub fn parse_bytes(&mut self, bytes: &[u8], path: &Path) -> Result<Config, ConfigErrors> {
        match std::str::from_utf8(bytes) {
            Ok(source) => self.parse(source, path),
            Err(_) => Config::parse_bytes(bytes, path),
        }
    }

    /// [`Config::parse`], remembering the file's blocks for the next call.
    ///
    /// # Errors
    /// Exactly those of [`Config::parse`].
    pub fn parse(&mut self, source: &str, path: &Path) -> Result<Config, ConfigErrors> {
        match self.assemble(source) {
            Some(raw) => validate::validate(raw, source, path).map_err(ConfigErrors::new),
            None => {
                self.blocks.clear();
                Config::parse(source, path)
            }
        }
    }

    /// The raw config from the parts of `source`, or `None` when only a whole-file parse
    /// can say what `source` means.
    fn assemble(&mut self, source: &str) -> Option<RawConfig> {
        if source.contains("\"\"\"") || source.contains("'''") {
            return None;
        }
        let starts = flow_headers(source);
        let preamble_end = starts.first().map_or(source.len(), |r| r.start);
        let preamble: Preamble = toml::from_str(&source[..preamble_end]).ok()?;
        if preamble.flow.is_some() {
            return None;
        }
        self.reads += 1;
        let read = self.reads;
        let mut flows = Vec::with_capacity(starts.len());
        for (i, header) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(source.len(), |r| r.start);
            let text = &source[header.start..end];
            let flow = match self.blocks.get_mut(text) {
                Some((flow, seen)) => {
                    *seen = read;
                    flow.clone()
                }
                None => {
                    let flow = parse_block(text)?;
                    self.blocks.insert(text.to_owned(), (flow.clone(), read));
                    flow
                }
            };
            flows.push(flow.shift(header.start));
        }
        // Forget the blocks this file no longer has.
        self.blocks.retain(|_, (_, seen)| *seen == read);
        Some(RawConfig {
            relay: preamble.relay,
            flow: flows,
        })
    }
}

/// The part before the first header: `[relay]`, and no `flow` key in any form (an empty
/// `flow = []` would still clash with the headers after it).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Preamble {
    relay: Option<RawRelay>,
    flow: Option<serde::de::IgnoredAny>,
}

/// One block alone: exactly one flow and nothing else, or `None`.
fn parse_block(text: &str) -> Option<Spanned<RawFlow>> {
    let raw: RawConfig = toml::from_str(text).ok()?;
    if raw.relay.is_some() || raw.flow.len() != 1 {
        return None;
    }
    raw.flow.into_iter().next()
}

/// The byte range of each line that is exactly a `[[flow]]` header (whitespace inside and
/// around it, and a trailing comment, allowed as TOML allows them).
fn flow_headers(source: &str) -> Vec<Range<usize>> {
    let mut headers = Vec::new();
    let mut at = 0;
    for line in source.split_inclusive('\n') {
        if is_flow_header(line) {
            headers.push(at..at + line.len());
        }
        at += line.len();
    }
    headers
}

fn ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

fn is_flow_header(line: &str) -> bool {
    let Some(rest) = ws(line).strip_prefix("[[") else {
        return false;
    };
    let Some(rest) = ws(rest).strip_prefix("flow") else {
        return false;
    };
    let Some(rest) = ws(rest).strip_prefix("]]") else {
        return false;
    };
    let rest = ws(rest).trim_end_matches(['\n', '\r']);
    rest.is_empty() || rest.starts_with('#')
}

/// Moves every span `by` bytes on. Destructured exhaustively, so a new raw field cannot be
/// forgotten.
trait Shift: Sized {
    fn shift(self, by: usize) -> Self;
}

impl Shift for String {
    fn shift(self, _: usize) -> Self {
        self
    }
}

impl Shift for i64 {
    fn shift(self, _: usize) -> Self {
        self
    }
}

impl<T: Shift> Shift for Spanned<T> {
    fn shift(self, by: usize) -> Self {
        let span = self.span();
        Spanned::new(span.start + by..span.end + by, self.into_inner().shift(by))
    }
}

impl<T: Shift> Shift for Option<T> {
    fn shift(self, by: usize) -> Self {
        self.map(|v| v.shift(by))
    }
}

impl<T: Shift> Shift for Vec<T> {
    fn shift(self, by: usize) -> Self {
        self.into_iter().map(|v| v.shift(by)).collect()
    }
}

impl Shift for RawFlow {
    fn shift(self, by: usize) -> Self {
        let RawFlow {
            name,
            input,
            inputs,
            merge,
            merge_window,
            merge_delay,
            outputs,
            idle_after,
            loop_guard,
            local_delivery,
            rtp,
            rtp_clock_rate,
        } = self;
        RawFlow {
            name: name.shift(by),
            input: input.shift(by),
            inputs: inputs.shift(by),
            merge: merge.shift(by),
            merge_window: merge_window.shift(by),
            merge_delay: merge_delay.shift(by),
            outputs: outputs.shift(by),
            idle_after: idle_after.shift(by),
            loop_guard: loop_guard.shift(by),
            local_delivery,
            rtp,
            rtp_clock_rate: rtp_clock_rate.shift(by),
        }
    }
}

impl Shift for RawInput {
    fn shift(self, by: usize) -> Self {
        let RawInput {
            interface,
            group,
            address,
            port,
            source,
        } = self;
        RawInput {
            interface: interface.shift(by),
            group: group.shift(by),
            address: address.shift(by),
            port: port.shift(by),
            source: source.shift(by),
        }
    }
}

impl Shift for RawOutput {
    fn shift(self, by: usize) -> Self {
        let RawOutput {
            interface,
            group,
            address,
            port,
            ttl,
            dscp,
            source,
        } = self;
        RawOutput {
            interface: interface.shift(by),
            group: group.shift(by),
            address: address.shift(by),
            port: port.shift(by),
            ttl: ttl.shift(by),
            dscp: dscp.shift(by),
            source: source.shift(by),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "t.toml";

    fn flow(i: usize) -> String {
        format!(
            "[[flow]]\nname = \"f{i}\"\ninput = {{ interface = \"eth0\", group = \"239.1.{}.{}\", port = 5001 }}\n\
             outputs = [ {{ interface = \"eth1\", group = \"239.2.{}.{}\", port = 5099 }} ]\n",
            i / 250,
            i % 250 + 1,
            i / 250,
            i % 250 + 1
        )
    }

    /// The cached parse (cold and then warm, after `before` warmed it) says exactly what the
    /// whole-file parse says.
    fn same(before: &str, source: &str) {
        let whole = Config::parse(source, Path::new(PATH));
        let render = |r: &Result<Config, ConfigErrors>| match r {
            Ok(c) => format!("{c:?}"),
            Err(e) => format!("ERR {e}"),
        };
        let mut cache = ParseCache::default();
        let cold = cache.parse(source, Path::new(PATH));
        assert_eq!(render(&cold), render(&whole), "cold:\n{source}");
        let mut cache = ParseCache::default();
        let _ = cache.parse(before, Path::new(PATH));
        let warm = cache.parse(source, Path::new(PATH));
        assert_eq!(
            render(&warm),
            render(&whole),
            "after\n{before}\nthen\n{source}"
        );
        let again = cache.parse(source, Path::new(PATH));
        assert_eq!(render(&again), render(&whole), "again:\n{source}");
    }

    #[test]
    fn headers_are_whole_lines_only() {
        for yes in [
            "[[flow]]\n",
            "  [[ flow ]]  # x\r\n",
            "[[flow]]",
            "\t[[flow]]\t\n",
        ] {
            assert!(is_flow_header(yes), "{yes:?}");
        }
        for no in [
            "# [[flow]]\n",
            "[[flow]] x\n",
            "[[\"flow\"]]\n",
            "[[flow.x]]\n",
            "[flow]\n",
            "name = \"[[flow]]\"\n",
            "[[flows]]\n",
        ] {
            assert!(!is_flow_header(no), "{no:?}");
        }
    }

    #[test]
    fn every_edit_reads_as_the_whole_file_does() {
        let base: String = (0..20).map(flow).collect();
        let head = "# mcr\n[relay]\nworkers = 2\n\n";
        let file = format!("{head}{base}");
        same("", &file);
        // One flow changed, added, removed; blocks reordered.
        same(&file, &file.replace("239.2.0.5\"", "239.2.0.99\""));
        same(&file, &format!("{file}{}", flow(99)));
        same(&file, &file.replace(&flow(7), ""));
        same(&file, &format!("{head}{}{}", flow(1), flow(0)));
        // The relay part changed.
        same(&file, &file.replace("workers = 2", "workers = 3"));
        // Errors: in a block (syntax and validation), in the relay part, across blocks.
        same(
            &file,
            &file.replace("port = 5001 }\noutputs", "port = 5001 \noutputs"),
        );
        same(&file, &file.replace("port = 5099", "port = 0"));
        same(&file, &file.replace("workers = 2", "workers = 0"));
        same(&file, &file.replace("name = \"f3\"", "name = \"f4\""));
        same(&file, &file.replace("239.1.0.4\"", "239.1.0.5\""));
        same(&file, &format!("{file}{}", flow(0)));
    }

    #[test]
    fn what_the_split_cannot_mean_is_read_whole() {
        let two = format!("{}{}", flow(0), flow(1));
        for tricky in [
            // [relay] after the flows belongs to the top level, not to the last block.
            format!("{two}[relay]\nworkers = 2\n"),
            format!("[relay]\nworkers = 2\n{two}[relay]\nworkers = 3\n"),
            // A multi-line string could hide a header.
            format!("{}name2 = \"\"\"\n[[flow]]\n\"\"\"\n{}", flow(0), flow(1)),
            // Headers the split does not take: their table stays in the block before.
            format!("{two}[[\"flow\"]]\nname = \"q\"\n"),
            format!("{two}[flow.x]\ny = 1\n"),
            format!("{two}[[flow.x]]\n"),
            // Top-level keys before any header, and an inline flow array.
            format!("flow = []\n{two}"),
            format!("x = 1\n{two}"),
            // CRLF, indented headers, comments after them, blank blocks.
            two.replace('\n', "\r\n"),
            two.replace("[[flow]]", "  [[ flow ]] # here"),
            format!("[[flow]]\n{two}"),
            String::new(),
        ] {
            same(&two, &tricky);
            same(&tricky, &two);
        }
    }
}
