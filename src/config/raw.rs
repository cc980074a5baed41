//! The configuration file exactly as the operator wrote it.
//!
//! These types only mirror the TOML layout; they hold unchecked values and the
//! byte span of each one so that validation can point at the offending text.
//! Nothing outside `config` sees them.
//!
//! Invariants kept here:
//! - every table denies unknown keys, so a misspelt key is an error rather
//!   than a silently ignored setting;
//! - required keys are `Option`s all the same, so that a missing key becomes a
//!   validation error with a hint, reported together with every other problem
//!   instead of stopping deserialization at the first one;
//! - numbers are `i64` so that out-of-range values reach validation (which
//!   explains the allowed range) instead of failing inside serde.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub relay: Option<RawRelay>,
    #[serde(default)]
    pub flow: Vec<Spanned<RawFlow>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    pub workers: Option<Spanned<i64>>,
    pub stats_interval: Option<Spanned<String>>,
    pub watch: Option<bool>,
    pub control_socket: Option<Spanned<String>>,
    pub metrics: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub egress: Option<Spanned<String>>,
    pub idle_after: Option<Spanned<String>>,
    pub querier: Option<Spanned<String>>,
    pub query_interval: Option<Spanned<String>>,
    pub loop_guard: Option<Spanned<String>>,
    pub ring_memory: Option<Spanned<String>>,
    pub batch_delay: Option<Spanned<String>>,
    pub local_delivery: Option<bool>,
    pub role: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlow {
    pub name: Option<Spanned<String>>,
    pub input: Option<Spanned<RawInput>>,
    pub inputs: Option<Spanned<Vec<Spanned<RawInput>>>>,
    pub merge: Option<Spanned<String>>,
    pub merge_window: Option<Spanned<i64>>,
    pub merge_delay: Option<Spanned<String>>,
    pub outputs: Option<Spanned<Vec<Spanned<RawOutput>>>>,
    pub idle_after: Option<Spanned<String>>,
    pub loop_guard: Option<Spanned<String>>,
    pub local_delivery: Option<bool>,
    pub rtp: Option<bool>,
    pub rtp_clock_rate: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInput {
    pub interface: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub source: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub interface: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub ttl: Option<Spanned<i64>>,
    pub dscp: Option<Spanned<i64>>,
    pub source: Option<Spanned<String>>,
}
