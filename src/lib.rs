//! mcr — a userspace multicast relay for Linux.
//!
//! A packet walks `ingress` (AF_PACKET ring) → `wire` (zero-copy parse) → `table` (lookup) →
//! `egress` (io_uring sends), inside a `worker` thread. The operator's file walks `config`
//! (parse, validate) → `table` (compile) → `relay` (publish, join groups via `membership`).
//! See docs/ARCHITECTURE.md.

pub mod cli;
pub mod coalesce;
pub mod config;
pub mod control;
pub mod daemon;
pub mod egress;
pub mod ethtool;
pub mod ingress;
pub mod limits;
pub mod links;
pub mod loopguard;
pub mod membership;
pub mod merge;
pub mod metrics;
pub mod nft;
pub mod playout;
pub mod ports;
pub mod privilege;
pub mod querier;
pub mod relay;
pub mod reload;
pub mod role;
pub mod rtp;
pub mod serve;
pub mod stackdrop;
pub mod stats;
pub mod statsfile;
pub(crate) mod sys;
pub mod table;
pub mod tools;
pub mod watch;
pub mod wire;
pub mod worker;
