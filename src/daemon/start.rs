//! The start-up steps of `mcr run` that stand on their own: how many workers, the link
//! watch, the descriptor budget, worker-exit and signal events, the queriers, and the
//! ready announcement.

use std::sync::mpsc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::{Event, RunError, RunOptions};
use crate::config::Config;
use crate::limits::Descriptors;
use crate::links;
use crate::membership::Limits;
use crate::querier::Queriers;
use crate::relay::Relay;

/// One line for systemd's STATUS= and logs.
pub(super) fn ready_status(relay: &Relay) -> String {
    let table = relay.table();
    let waiting = table.flows().iter().filter(|f| f.ifindex.is_none()).count();

    format!(
        "{}, generation {}: {} flows ({} waiting for an interface), {} groups on {} interfaces",
        relay.role().name(),
        table.generation(),
        table.flows().len(),
        waiting,
        table.memberships().len(),
        table.input_ifindexes().len()
    )
}

/// `[relay] workers`, else one per online CPU — or one when a flow merges its inputs (a
/// merged flow's paths meet on one worker: see `merge`).
pub(super) fn worker_count(config: &Config) -> usize {
    config.relay.workers.map_or_else(
        || {
            if config.flows.iter().any(|f| f.merge) {
                return 1;
            }
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(crate::config::MAX_WORKERS)
        },
        |w| w.get(),
    )
}

/// Follows link changes as `LinksChanged` events; a failure is logged (reloads re-read the
/// interfaces).
pub(super) fn watch_links(events: &mpsc::Sender<Event>) -> Option<links::Watch> {
    let events = std::sync::Mutex::new(events.clone());
    links::Watch::spawn(move || {
        events
            .lock()
            .is_ok_and(|tx| tx.send(Event::LinksChanged).is_ok())
    })
    .map_err(|e| log::warn!("cannot follow interface changes ({e}); `mcr reload` re-reads them"))
    .ok()
}

/// Raises the open-file limit and refuses a config that needs more descriptors than it.
pub(super) fn fit_descriptors(config: &Config, workers: usize) -> Result<(), RunError> {
    let nofile = crate::limits::raise_nofile().unwrap_or_else(|e| {
        log::warn!("cannot read or raise the open-file limit: {e}");
        u64::MAX
    });
    let need = Descriptors::estimate(config, workers, Limits::read());
    need.fit(nofile).map_err(RunError::Descriptors)?;
    log::info!("open files: about {} needed, limit {nofile}", need.total());
    Ok(())
}

/// A worker that ends by itself becomes a `WorkerDied` event for the control thread.
pub(super) fn worker_exit_events(events: &mpsc::Sender<Event>) -> crate::worker::OnExit {
    let events = std::sync::Mutex::new(events.clone());
    std::sync::Arc::new(move |id, reason| {
        if let Ok(tx) = events.lock() {
            let _ = tx.send(Event::WorkerDied(id, reason));
        }
    })
}

/// Logs the ready line and tells systemd (`READY=1` with a status).
pub(super) fn announce_ready(relay: &Relay, config: &Config, opts: &RunOptions) {
    let table = relay.table();
    log::info!(
        "ready: {} flows, {} groups joined on {} interfaces ({} helper sockets), {} workers, \
         receive rings {} of {}, egress {}, config {}",
        table.flows().len(),
        table.memberships().len(),
        table.input_ifindexes().len(),
        relay.helper_sockets(),
        relay.worker_count(),
        crate::config::format_size(relay.ring_memory().0),
        crate::config::format_size(relay.ring_memory().1),
        config.relay.egress.name(),
        opts.config.display()
    );
    let ready = ready_status(relay);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&ready),
    ]);
}

/// The IGMP querier, unless `querier = "off"`; a failure to open it is logged, not fatal
/// (forwarding does not need it).
pub(super) fn open_queriers(config: &Config, events: &mpsc::Sender<Event>) -> Option<Queriers> {
    let relay = &config.relay;
    if relay.querier == crate::config::QuerierMode::Off {
        return None;
    }
    let events = std::sync::Mutex::new(events.clone());
    let heard = move |ifindex, src| {
        events
            .lock()
            .is_ok_and(|tx| tx.send(Event::QueryHeard(ifindex, src)).is_ok())
    };
    match Queriers::open(relay.querier, relay.query_interval, heard) {
        Ok(q) => Some(q),
        Err(e) => {
            log::warn!("no IGMP querier ({e}); snooping switches without a querier will age out mcr's groups");
            None
        }
    }
}

/// Forwards SIGINT, SIGTERM and SIGHUP to the control thread as events.
pub(super) fn spawn_signals(
    events: mpsc::Sender<Event>,
) -> Result<signal_hook::iterator::Handle, RunError> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(RunError::Signals)?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("mcr-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if events.send(Event::Signal(s)).is_err() {
                    break;
                }
            }
        })
        .map_err(RunError::Signals)?;
    Ok(handle)
}
