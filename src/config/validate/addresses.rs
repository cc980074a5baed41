//! The address rules of the validator: groups, sources and unicast addresses of either
//! family, each value checked where it stands in the file (the rules themselves, as pure
//! functions of an address, are `config::address`).

use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;

use super::super::address::{self, not_unicast};
use super::Validator;

impl Validator<'_> {
    pub(super) fn group(
        &mut self,
        field: Option<&Spanned<String>>,
        table: &Range<usize>,
        side: &str,
        example: &str,
    ) -> Option<IpAddr> {
        let raw = self.require(field, table, || {
            if side == "output" {
                format!("output has no destination; add group = \"{example}\" (multicast) or address = \"10.2.0.2\" (unicast)")
            } else {
                format!("{side} has no group; add group = \"{example}\"")
            }
        })?;
        let hint = format!("a multicast group such as \"{example}\" or \"ff3e::1:1\"");
        let group = self.ip(raw, "group", &hint)?;
        let Some(problem) = address::group_problem(group, example) else {
            return Some(group);
        };
        self.error(raw.span(), format!("{side} group {group} {problem}"));
        None
    }

    /// An input's `source`: the sender's unicast address, of the group's family (`group` is
    /// `None` when the group itself was invalid).
    pub(super) fn source_address(
        &mut self,
        raw: &Spanned<String>,
        group: Option<IpAddr>,
    ) -> Option<IpAddr> {
        let source = self.ip(
            raw,
            "source",
            "the sender's unicast address such as \"10.0.0.5\" or \"2001:db8::5\"",
        )?;
        if let Some(problem) = not_unicast(source) {
            self.error(
                raw.span(),
                format!("source {source} is {problem}; set source to the unicast address of the sender (source-specific multicast), or remove it to accept any sender"),
            );
            return None;
        }
        self.same_family(raw, "source", source, group)
    }

    /// `addr` (the value of `key` at `raw`) if it is of `group`'s family, else an error.
    fn same_family(
        &mut self,
        raw: &Spanned<String>,
        key: &str,
        addr: IpAddr,
        group: Option<IpAddr>,
    ) -> Option<IpAddr> {
        match group {
            Some(g) if g.is_ipv4() != addr.is_ipv4() => {
                let message = format!(
                    "{key} {addr} is an {} address but the group {g} is {}; a datagram has one family, so write an {} {key} such as {}",
                    address::family(addr),
                    address::family(g),
                    address::family(g),
                    address::example_source(g),
                );
                self.error(raw.span(), message);
                None
            }
            _ => Some(addr),
        }
    }

    /// A unicast input's address: one of this host's unicast addresses (checked when the
    /// relay binds it), not loopback.
    pub(super) fn input_address(&mut self, raw: &Spanned<String>) -> Option<IpAddr> {
        let hint = "an address of this host on the input interface, such as \"10.1.0.2\"";
        self.unicast_not_loopback(raw, "address", hint, |addr, problem| {
            let fix = if addr.is_multicast() {
                format!("write group = \"{addr}\" to receive a multicast group")
            } else {
                "write the address of this host that the feed is sent to".to_string()
            };
            format!("input address {addr} is {problem}; {fix}")
        })
    }

    /// A unicast output's destination: a host's unicast address (not loopback).
    pub(super) fn unicast_address(&mut self, raw: &Spanned<String>) -> Option<IpAddr> {
        let hint = "a receiver's unicast address such as \"10.2.0.2\" or \"2001:db8::2\"";
        self.unicast_not_loopback(raw, "address", hint, |addr, problem| {
            let fix = if addr.is_multicast() {
                format!("write group = \"{addr}\" for a multicast destination")
            } else {
                "write the unicast address of the receiver (head-end replication), or use group for multicast".to_string()
            };
            format!("output address {addr} is {problem}; {fix}")
        })
    }

    /// An output's `source`: a unicast address that is not loopback, of the family of the
    /// output's destination (`None` when that was invalid).
    pub(super) fn output_source(
        &mut self,
        raw: &Spanned<String>,
        dest: Option<IpAddr>,
    ) -> Option<IpAddr> {
        let hint = "a unicast address such as \"192.0.2.10\" or \"2001:db8::10\"";
        let source = self.unicast_not_loopback(raw, "source", hint, |source, problem| {
            format!("output source {source} is {problem}, which receivers drop; set the unicast address this output's datagrams should come from (e.g. the relay's address on the receivers' segment), or remove it to use the interface's own")
        })?;
        self.same_family(raw, "source", source, dest)
    }

    /// `raw` as a unicast address that is not loopback, else the error `message(address,
    /// what it is)` at its span.
    fn unicast_not_loopback(
        &mut self,
        raw: &Spanned<String>,
        key: &str,
        hint: &str,
        message: impl FnOnce(IpAddr, &str) -> String,
    ) -> Option<IpAddr> {
        let addr = self.ip(raw, key, hint)?;
        let problem = not_unicast(addr).or(addr.is_loopback().then_some("a loopback address"));
        let Some(problem) = problem else {
            return Some(addr);
        };
        self.error(raw.span(), message(addr, problem));
        None
    }

    fn ip(&mut self, raw: &Spanned<String>, key: &str, hint: &str) -> Option<IpAddr> {
        let addr = raw.get_ref().parse().ok();
        if addr.is_none() {
            let message = format!(
                "{key} {:?} is not an IPv4 or IPv6 address; write {hint}",
                raw.get_ref()
            );
            self.error(raw.span(), message);
        }
        addr
    }
}
