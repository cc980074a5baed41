//! Turns the raw file into a validated [`Config`], or into every error found.
//!
//! Invariants:
//! - Validation never stops at the first problem: each field is checked on
//!   its own, and cross-flow rules (unique names, unique inputs, no loops) are
//!   checked between whichever values did validate, so one run reports
//!   everything the operator has to fix.
//! - A `Config` is returned only when no error at all was recorded; every
//!   flow that failed a check recorded at least one error, so a returned
//!   `Config` contains every flow in the file.
//! - Every error sits at the most precise span available and its message
//!   says what is wrong and what to do.

use rustc_hash::FxHashMap as HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

mod addresses;
mod relay;
mod rtp;

use super::address;
use super::error::ConfigError;
use super::raw::{RawConfig, RawFlow, RawInput, RawOutput, RawRelay};
use super::{
    Config, EgressMode, Flow, IfName, Input, Output, QuerierMode, RelaySettings, DEFAULT_TTL,
    DEFAULT_UNICAST_TTL,
};

/// Flow names become metric labels, so they are kept short and plain.
const MAX_FLOW_NAME_LEN: usize = 64;
/// Outputs per flow; a send's io_uring token has 16 bits for the output index.
pub const MAX_OUTPUTS: usize = 4096;

const INPUT_EXAMPLE: &str = r#"input = { interface = "eth0", group = "239.1.1.1", port = 5001 }"#;
const OUTPUTS_EXAMPLE: &str =
    r#"outputs = [{ interface = "eth1", group = "239.9.9.9", port = 5099 }]"#;

pub(super) fn validate(
    raw: RawConfig,
    source: &str,
    path: &Path,
) -> Result<Config, Vec<ConfigError>> {
    let mut v = Validator {
        source,
        path,
        errors: Vec::new(),
        warnings: Vec::new(),
        line_starts: std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect(),
    };
    let relay = v.relay(raw.relay);
    let flows = v.flows(&raw.flow, relay.workers);
    if v.errors.is_empty() {
        let warnings = v.warnings;
        Ok(Config {
            relay,
            flows,
            warnings,
        })
    } else {
        Err(v.errors)
    }
}

/// (interface, group, port): what a loop or a duplicate output is judged by.
type Endpoint = (Option<IfName>, IpAddr, u16);

/// Where an earlier value was defined, for "first defined on line N" messages.
struct First {
    flow: String,
    line: usize,
}

/// What earlier flows defined, for the rules that span flows.
#[derive(Default)]
struct Seen {
    /// Flow name -> line of its first definition.
    names: HashMap<String, usize>,
    inputs: HashMap<Input, First>,
    /// Inputs without their source: an output here is a loop.
    input_endpoints: HashMap<Endpoint, First>,
    /// Every valid output of every flow, checked for loops at the end.
    outputs: Vec<(Endpoint, Range<usize>)>,
    /// Where each `merge` is, checked against `[relay] workers` at the end.
    merges: Vec<Range<usize>>,
}

struct Validator<'a> {
    source: &'a str,
    path: &'a Path,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Byte offset where each line starts: line numbers by binary search, so recording
    /// where every flow was defined stays O(log n) per flow, not a rescan of the file.
    line_starts: Vec<usize>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: String) {
        self.errors
            .push(ConfigError::at(self.path, self.source, span, message));
    }

    fn warn(&mut self, span: Range<usize>, message: String) {
        let at = ConfigError::at(self.path, self.source, span, format!("warning: {message}"));
        self.warnings.push(at.to_string());
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.line_starts
            .partition_point(|&start| start <= span.start)
    }

    /// Returns the field, or records that it is missing from `table`.
    fn require<'r, T>(
        &mut self,
        field: Option<&'r Spanned<T>>,
        table: &Range<usize>,
        message: impl FnOnce() -> String,
    ) -> Option<&'r Spanned<T>> {
        if field.is_none() {
            self.error(table.clone(), message());
        }
        field
    }

    fn relay(&mut self, raw: Option<RawRelay>) -> RelaySettings {
        let defaults = RelaySettings::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let workers = raw.workers.and_then(|w| {
            let n = usize::try_from(*w.get_ref())
                .ok()
                .filter(|&n| n <= super::MAX_WORKERS)
                .and_then(NonZeroUsize::new);
            if n.is_none() {
                self.error(
                    w.span(),
                    format!(
                        "workers = {} is invalid; use 1 to {} (the kernel's limit of sockets in one fanout group), or remove the key to run one worker per online CPU",
                        w.get_ref(),
                        super::MAX_WORKERS
                    ),
                );
            }
            n
        });
        let stats_interval = match raw.stats_interval {
            None => defaults.stats_interval,
            Some(s) => {
                let (min, max) = super::STATS_INTERVAL_RANGE;
                match humantime::parse_duration(s.get_ref()) {
                    Ok(d) if d.is_zero() => None,
                    Ok(d) if (min..=max).contains(&d) => Some(d),
                    Ok(_) => {
                        self.error(
                            s.span(),
                            format!(
                                "stats_interval {:?} is out of range; use a duration from {} to {}, or \"0s\" to disable periodic stats",
                                s.get_ref(),
                                humantime::format_duration(min),
                                humantime::format_duration(max)
                            ),
                        );
                        defaults.stats_interval
                    }
                    Err(e) => {
                        self.error(
                            s.span(),
                            format!(
                                "stats_interval {:?} is not a duration ({e}); write one such as \"10s\", \"500ms\" or \"1m\", or \"0s\" to disable periodic stats",
                                s.get_ref()
                            ),
                        );
                        defaults.stats_interval
                    }
                }
            }
        };
        let control_socket = match &raw.control_socket {
            None => defaults.control_socket,
            Some(p) if p.get_ref().starts_with('/') && p.get_ref().len() < 108 => {
                std::path::PathBuf::from(p.get_ref())
            }
            Some(p) => {
                self.error(
                    p.span(),
                    format!(
                        "control_socket {:?} must be an absolute path shorter than 108 bytes, such as \"/run/mcr/control.sock\"",
                        p.get_ref()
                    ),
                );
                defaults.control_socket
            }
        };
        let metrics = raw.metrics.as_ref().and_then(|m| match m.get_ref().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    m.span(),
                    format!(
                        "metrics {:?} is not an address with a port; write one such as \"127.0.0.1:9810\", or remove the key to serve no metrics",
                        m.get_ref()
                    ),
                );
                None
            }
        });
        let user = raw.user.as_ref().and_then(|u| {
            let name = u.get_ref();
            let valid = !name.is_empty()
                && name.len() <= 32
                && !name.starts_with('-')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if valid {
                Some(name.clone())
            } else {
                self.error(
                    u.span(),
                    format!("user {name:?} is not a valid user name; use an existing system user such as \"mcr\""),
                );
                None
            }
        });
        let egress = match raw.egress.as_ref().map(|e| (e, e.get_ref().as_str())) {
            None => defaults.egress,
            Some((_, "packet")) => EgressMode::Packet,
            Some((_, "udp")) => EgressMode::Udp,
            Some((e, other)) => {
                self.error(
                    e.span(),
                    format!(
                        "egress {other:?} is not a way to send; use \"packet\" (the default: frames through AF_PACKET) or \"udp\" (the kernel's UDP stack, for netfilter or IPsec on output)"
                    ),
                );
                defaults.egress
            }
        };
        let idle_after = raw
            .idle_after
            .as_ref()
            .and_then(|d| self.idle_after(d))
            .unwrap_or(defaults.idle_after);
        let querier = match raw.querier.as_ref().map(|q| (q, q.get_ref().as_str())) {
            None => defaults.querier,
            Some((_, "auto")) => QuerierMode::Auto,
            Some((_, "on")) => QuerierMode::On,
            Some((_, "off")) => QuerierMode::Off,
            Some((q, other)) => {
                self.error(
                    q.span(),
                    format!(
                        "querier {other:?} is not a querier mode; use \"auto\" (the default: query on input interfaces unless a lower address does), \"on\" or \"off\""
                    ),
                );
                defaults.querier
            }
        };
        let query_interval = raw
            .query_interval
            .as_ref()
            .and_then(|d| self.query_interval(d))
            .unwrap_or(defaults.query_interval);
        let loop_guard = match &raw.loop_guard {
            Some(g) => self.loop_guard(g).unwrap_or(defaults.loop_guard),
            None => defaults.loop_guard,
        };
        let ring_memory = raw
            .ring_memory
            .as_ref()
            .and_then(|m| self.ring_memory(m))
            .unwrap_or(defaults.ring_memory);
        let batch_delay = raw
            .batch_delay
            .as_ref()
            .and_then(|d| self.batch_delay(d))
            .unwrap_or(defaults.batch_delay);
        let role_standby = match raw.role.as_ref().map(|r| (r, r.get_ref().as_str())) {
            None | Some((_, "active")) => false,
            Some((_, "standby")) => true,
            Some((r, other)) => {
                self.error(
                    r.span(),
                    format!("role {other:?} is not a role; use \"active\" (the default: forward) or \"standby\" (receive and send nothing until `mcr active`, for the standby of a pair)"),
                );
                false
            }
        };
        RelaySettings {
            role_standby,
            ring_memory,
            batch_delay,
            loop_guard,
            idle_after,
            querier,
            query_interval,
            workers,
            stats_interval,
            watch: raw.watch.unwrap_or(defaults.watch),
            local_delivery: raw.local_delivery.unwrap_or(defaults.local_delivery),
            control_socket,
            metrics,
            user,
            egress,
        }
    }

    fn flows(&mut self, raw: &[Spanned<RawFlow>], workers: Option<NonZeroUsize>) -> Vec<Flow> {
        let mut seen = Seen::default();
        let flows = raw
            .iter()
            .filter_map(|flow| self.flow(flow, &mut seen))
            .collect();
        // Checked after every input is known: an output may loop into a flow
        // defined further down the file.
        for (endpoint, span) in seen.outputs {
            if let Some(first) = seen.input_endpoints.get(&endpoint) {
                let (interface, group, port) = endpoint;
                let interface = interface.map_or(super::ROUTED.to_string(), |i| i.to_string());
                let message = format!(
                    "output {group}:{port} on {interface} is the input of flow {} (line {}); relaying to it would feed the relay its own output, so change the output's interface, group or port",
                    first.flow, first.line
                );
                self.error(span, message);
            }
        }
        if let Some(n) = workers.filter(|n| n.get() > 1) {
            for span in seen.merges {
                self.error(span, format!(
                    "merge needs one worker, and [relay] workers = {n}: a merged flow's paths must meet on one thread to be forwarded once and in order; set workers = 1 (or remove it: a config with merged flows then runs one worker)"
                ));
            }
        }
        flows
    }

    /// An `idle_after` duration within [`IDLE_AFTER_RANGE`], or an error at its span.
    fn idle_after(&mut self, raw: &Spanned<String>) -> Option<std::time::Duration> {
        let (min, max) = super::IDLE_AFTER_RANGE;
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if (min..=max).contains(&d) => Some(d),
            Ok(_) | Err(_) => {
                self.error(
                    raw.span(),
                    format!(
                        "idle_after {:?} is not a duration between {} and {}; write one such as \"5s\" or \"2m\" (a flow with no packet for that long is reported idle)",
                        raw.get_ref(),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
        }
    }

    /// A `loop_guard`: "off" (`None`) or a window within [`LOOP_GUARD_RANGE`]; `None` from
    /// the outer option after an error at its span.
    fn loop_guard(&mut self, raw: &Spanned<String>) -> Option<Option<std::time::Duration>> {
        let (min, max) = super::LOOP_GUARD_RANGE;
        if raw.get_ref() == "off" {
            return Some(None);
        }
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if (min..=max).contains(&d) => Some(Some(d)),
            Ok(_) | Err(_) => {
                self.error(
                    raw.span(),
                    format!(
                        "loop_guard {:?} is neither \"off\" nor a duration between {} and {}; write one such as \"1s\" (the default: the same payload from another sender within it is a looped copy and is dropped)",
                        raw.get_ref(),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
        }
    }

    /// A `query_interval` from 1 s to 31744 s (the largest an IGMPv3 query can announce).
    fn query_interval(&mut self, raw: &Spanned<String>) -> Option<std::time::Duration> {
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if (1..=31_744).contains(&d.as_secs()) && d.subsec_nanos() == 0 => Some(d),
            Ok(_) | Err(_) => {
                self.error(
                    raw.span(),
                    format!(
                        "query_interval {:?} is not a whole number of seconds from 1s to 31744s; the default is \"125s\" (RFC 3376); keep it below the membership timeout of the switches on the segment",
                        raw.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// Validates one flow and records what later flows are checked against.
    /// Returns the flow only if every part of it is valid.
    fn flow(&mut self, raw: &Spanned<RawFlow>, seen: &mut Seen) -> Option<Flow> {
        let span = raw.span();
        let label = self.flow_label(raw);
        let raw = raw.get_ref();

        let name = self.name(raw, &span);
        if let Some((name, name_span)) = &name {
            self.unique_name(name, name_span, seen);
        }
        let inputs = self.flow_inputs(raw, &span, &label);
        for (input, input_span) in inputs.iter().flatten() {
            self.unique_input(input, input_span, &label, seen);
        }
        let outputs = self.flow_outputs(raw, &span, &label, &mut seen.outputs);
        let idle_after = match &raw.idle_after {
            Some(d) => Some(self.idle_after(d)?),
            None => None,
        };
        let loop_guard = match &raw.loop_guard {
            Some(g) => Some(self.loop_guard(g)?),
            None => None,
        };
        let merge = self.merge(raw, inputs.as_ref().map_or(1, Vec::len), &label, seen)?;
        let merge_window = self.merge_window(raw, merge)?;
        let merge_delay = self.merge_delay(raw, merge)?;
        let rtp = self.rtp(raw)?;
        let rtp = rtp.or(merge.then_some(crate::rtp::DEFAULT_CLOCK_RATE));
        let mut inputs = inputs?.into_iter().map(|(input, _)| input);
        let input = inputs.next()?;

        Some(Flow {
            idle_after,
            loop_guard,
            local_delivery: raw.local_delivery,
            rtp,
            merge,
            merge_window,
            merge_delay,
            name: name?.0,
            input,
            more_inputs: inputs.collect(),
            outputs: outputs?,
        })
    }

    fn unique_name(&mut self, name: &str, span: &Range<usize>, seen: &mut Seen) {
        if let Some(first) = seen.names.get(name) {
            let message = format!(
                "flow name {name:?} is already used by the flow on line {first}; give each flow a unique name"
            );
            self.error(span.clone(), message);
        } else {
            seen.names.insert(name.to_string(), self.line(span));
        }
    }

    fn unique_input(&mut self, input: &Input, span: &Range<usize>, label: &str, seen: &mut Seen) {
        let here = || First {
            flow: label.to_string(),
            line: self.line(span),
        };
        let endpoint = (Some(input.interface.clone()), input.group, input.port);
        seen.input_endpoints.entry(endpoint).or_insert_with(here);
        if let Some(first) = seen.inputs.get(input) {
            let message = format!(
                "flow {label} has the same input ({input}) as flow {} on line {}; a packet can enter only one flow, so move these outputs into that flow",
                first.flow, first.line
            );
            self.error(span.clone(), message);
        } else {
            seen.inputs.insert(input.clone(), here());
        }
    }

    /// How messages refer to a flow: by its name if it has one, else by line.
    fn flow_label(&self, flow: &Spanned<RawFlow>) -> String {
        match &flow.get_ref().name {
            Some(name) => format!("{:?}", name.get_ref()),
            None => format!("on line {}", self.line(&flow.span())),
        }
    }

    fn name(&mut self, flow: &RawFlow, span: &Range<usize>) -> Option<(String, Range<usize>)> {
        let raw = self.require(flow.name.as_ref(), span, || {
            "this flow has no name; add name = \"cam-1\" (it labels the flow's metrics and log lines)".to_string()
        })?;
        let name = raw.get_ref();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        let problem = if name.is_empty() {
            "flow name is empty; give the flow a name such as \"cam-1\"".to_string()
        } else if let Some(c) = name.chars().find(|&c| !allowed(c)) {
            format!("flow name {name:?} contains {c:?}; use only ASCII letters, digits, '_', '.' and '-' (the name is used as a metric label)")
        } else if name.len() > MAX_FLOW_NAME_LEN {
            format!(
                "flow name {name:?} is {} characters long; shorten it to at most {MAX_FLOW_NAME_LEN} (the name is used as a metric label)",
                name.len()
            )
        } else {
            return Some((name.clone(), raw.span()));
        };
        self.error(raw.span(), problem);
        None
    }

    /// Validates a flow's outputs. Every valid output is also added to
    /// `valid` for the loop check, even when a sibling is invalid; the flow's
    /// output list is returned only when all of them are valid.
    fn flow_outputs(
        &mut self,
        flow: &RawFlow,
        span: &Range<usize>,
        label: &str,
        valid: &mut Vec<(Endpoint, Range<usize>)>,
    ) -> Option<Vec<Output>> {
        let raw = self.require(flow.outputs.as_ref(), span, || {
            format!("flow {label} has no outputs; add {OUTPUTS_EXAMPLE}")
        })?;
        if raw.get_ref().is_empty() {
            self.error(
                raw.span(),
                format!("flow {label} has an empty output list; add at least one output, e.g. {OUTPUTS_EXAMPLE}"),
            );
            return None;
        }
        if raw.get_ref().len() > MAX_OUTPUTS {
            self.error(
                raw.span(),
                format!(
                    "flow {label} has {} outputs; at most {MAX_OUTPUTS} are allowed, so split it into several flows with other input groups",
                    raw.get_ref().len()
                ),
            );
            return None;
        }
        let mut first_lines: HashMap<Endpoint, usize> = HashMap::default();
        let mut outputs = Vec::with_capacity(raw.get_ref().len());
        let mut complete = true;
        for raw_output in raw.get_ref() {
            let Some(output) = self.output(raw_output) else {
                complete = false;
                continue;
            };
            let output_span = raw_output.span();
            let endpoint = endpoint_of(&output);
            if let Some(first) = first_lines.get(&endpoint) {
                let message = format!(
                    "output {}:{} on {} is listed twice in flow {label} (first on line {first}); remove the duplicate",
                    output.group,
                    output.port,
                    output.interface_name()
                );
                self.error(output_span, message);
                complete = false;
                continue;
            }
            first_lines.insert(endpoint.clone(), self.line(&output_span));
            valid.push((endpoint, output_span));
            outputs.push(output);
        }
        complete.then_some(outputs)
    }

    fn input(&mut self, raw: &Spanned<RawInput>) -> Option<Input> {
        let span = raw.span();
        let raw = raw.get_ref();
        let interface = self.interface(raw.interface.as_ref(), &span, "input", "eth0");
        let (group, unicast) = match (&raw.group, &raw.address) {
            (Some(_), Some(a)) => {
                self.error(
                    a.span(),
                    "an input receives a multicast `group` or datagrams to a unicast `address` of this host, not both; keep one".to_string(),
                );
                (None, true)
            }
            (None, Some(a)) => (self.input_address(a), true),
            _ => (
                self.group(raw.group.as_ref(), &span, "input", "239.1.1.1"),
                false,
            ),
        };
        let port = self.port(raw.port.as_ref(), &span, "input", 5001);
        let source = match &raw.source {
            None => Some(None),
            Some(s) => self.source_address(s, group).map(Some),
        };
        if let (Some(g), Some(None), false) = (group, source, unicast) {
            if address::is_ssm(g) {
                let span = raw.group.as_ref().map_or(span.clone(), Spanned::span);
                self.warn(span, format!(
                    "input group {g} is in the source-specific range {} but has no source: routers and snooping switches forward it only to receivers that name the sender (IGMPv3/MLDv2 include mode), so it arrives only from senders on this link; add source = \"{}\" (the sender's address), or use a group outside the range",
                    address::ssm_range(g),
                    address::example_source(g),
                ));
            }
        }
        Some(Input {
            interface: interface?,
            group: group?,
            unicast,
            port: port?,
            source: source?,
        })
    }

    fn output(&mut self, raw: &Spanned<RawOutput>) -> Option<Output> {
        let span = raw.span();
        let raw = raw.get_ref();
        // A unicast output may leave its interface to the kernel's routing table.
        let interface = match (&raw.interface, &raw.address) {
            (None, Some(_)) => Some(None),
            (field, _) => self
                .interface(field.as_ref(), &span, "output", "eth1")
                .map(Some),
        };
        let (group, unicast) = match (&raw.group, &raw.address) {
            (Some(_), Some(a)) => {
                self.error(
                    a.span(),
                    "an output sends to a multicast `group` or to a unicast `address`, not both; keep one".to_string(),
                );
                (None, true)
            }
            (None, Some(a)) => (self.unicast_address(a), true),
            _ => (
                self.group(raw.group.as_ref(), &span, "output", "239.9.9.9"),
                false,
            ),
        };
        let port = self.port(raw.port.as_ref(), &span, "output", 5099);
        let ttl = match &raw.ttl {
            None if unicast => Some(DEFAULT_UNICAST_TTL),
            None => Some(DEFAULT_TTL),
            Some(t) => self.ttl(t),
        };
        let dscp = match &raw.dscp {
            None => Some(None),
            Some(d) => self.dscp(d).map(Some),
        };
        let source = match &raw.source {
            None => Some(None),
            Some(s) => self.output_source(s, group).map(Some),
        };
        Some(Output {
            interface: interface?,
            group: group?,
            unicast,
            port: port?,
            ttl: ttl?,
            dscp: dscp?,
            source: source?,
        })
    }

    fn interface(
        &mut self,
        field: Option<&Spanned<String>>,
        table: &Range<usize>,
        side: &str,
        example: &str,
    ) -> Option<IfName> {
        let raw = self.require(field, table, || {
            format!("{side} has no interface; add interface = \"{example}\"")
        })?;
        match IfName::new(raw.get_ref()) {
            Ok(name) => Some(name),
            Err(reason) => {
                let message = format!(
                    "invalid interface name {:?}: {reason}; use the name shown by `ip link`, such as \"{example}\"",
                    raw.get_ref()
                );
                self.error(raw.span(), message);
                None
            }
        }
    }

    fn port(
        &mut self,
        field: Option<&Spanned<i64>>,
        table: &Range<usize>,
        side: &str,
        example: u16,
    ) -> Option<u16> {
        let raw = self.require(field, table, || {
            format!("{side} has no port; add port = {example}")
        })?;
        let port = u16::try_from(*raw.get_ref()).ok().filter(|&p| p != 0);
        if port.is_none() {
            self.error(
                raw.span(),
                format!(
                    "port {} is out of range; use a UDP port from 1 to 65535",
                    raw.get_ref()
                ),
            );
        }
        port
    }

    fn dscp(&mut self, raw: &Spanned<i64>) -> Option<u8> {
        let dscp = u8::try_from(*raw.get_ref()).ok().filter(|&d| d < 64);
        if dscp.is_none() {
            self.error(
                raw.span(),
                format!(
                    "dscp {} is out of range; use 0 to 63 (46 is EF, 34 AF41), or remove it to keep each datagram's own",
                    raw.get_ref()
                ),
            );
        }
        dscp
    }

    fn ttl(&mut self, raw: &Spanned<i64>) -> Option<u8> {
        let ttl = u8::try_from(*raw.get_ref()).ok().filter(|&t| t != 0);
        if ttl.is_none() {
            self.error(
                raw.span(),
                format!("ttl {} is out of range; use 1 to 255, or remove it for the default of {DEFAULT_TTL}, which keeps packets on the output's own segment", raw.get_ref()),
            );
        }
        ttl
    }
}

fn endpoint_of(output: &Output) -> Endpoint {
    (output.interface.clone(), output.group, output.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_by_index_match_a_rescan() {
        let source = "a\n\nbc\nd\u{e9}f\n\nlast";
        let v = Validator {
            source,
            path: Path::new("x"),
            errors: Vec::new(),
            warnings: Vec::new(),
            line_starts: std::iter::once(0)
                .chain(source.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        };
        for offset in 0..=source.len() {
            assert_eq!(
                v.line(&(offset..offset)),
                super::super::error::line_col(source, offset).0,
                "offset {offset}"
            );
        }
    }
}
