//! Optional Prometheus endpoint (`[relay] metrics = "127.0.0.1:9810"`), OpenMetrics text at
//! `/metrics`, encoded by `prometheus-client` from a fresh [`Snapshot`] and [`Status`] per
//! scrape.
//!
//! Label sets are bounded by the config: flow names, output (interface, group, port), drop
//! reasons (a closed enum), interface names. A removed flow disappears from the next scrape.

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::control::Status;
use crate::stats::Snapshot;

type Labels = Vec<(String, String)>;

/// OpenMetrics text for one snapshot.
pub fn render(snap: &Snapshot, status: &Status) -> String {
    let mut r = Registry::with_prefix("mcr");
    let counter = || Family::<Labels, Counter>::default();
    let gauge = || Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();

    let flow_packets = counter();
    let flow_bytes = counter();
    let flow_age = gauge();
    let flow_looped = counter();
    let rtp_packets = counter();
    let rtp_duplicates = counter();
    let rtp_reordered = counter();
    let rtp_ssrc_changes = counter();
    let rtp_seq_resets = counter();
    let rtp_not_rtp = counter();
    let rtp_lost = Family::<Labels, Gauge>::default();
    let input_up = Family::<Labels, Gauge>::default();
    let rtp_jitter = gauge();
    let out_packets = counter();
    let out_bytes = counter();
    let out_drops = counter();
    let int_gauge = || Family::<Labels, Gauge>::default();
    let flow_up = int_gauge();
    let flow_state = int_gauge();
    let out_up = int_gauge();
    for f in &snap.flows {
        let l = vec![("flow".to_string(), f.name.clone())];
        flow_up
            .get_or_create(&l)
            .set(i64::from(f.state == "active"));
        for state in crate::table::FlowState::ALL.map(crate::table::FlowState::name) {
            let mut sl = l.clone();
            sl.push(("state".to_string(), state.to_string()));
            flow_state
                .get_or_create(&sl)
                .set(i64::from(f.state == state));
        }
        flow_packets.get_or_create(&l).inc_by(f.packets);
        flow_bytes.get_or_create(&l).inc_by(f.bytes);
        flow_looped.get_or_create(&l).inc_by(f.looped);
        if let Some(rtp) = &f.rtp {
            rtp_packets.get_or_create(&l).inc_by(rtp.packets);
            rtp_duplicates.get_or_create(&l).inc_by(rtp.duplicates);
            rtp_reordered.get_or_create(&l).inc_by(rtp.reordered);
            rtp_ssrc_changes.get_or_create(&l).inc_by(rtp.ssrc_changes);
            rtp_seq_resets.get_or_create(&l).inc_by(rtp.seq_resets);
            rtp_not_rtp.get_or_create(&l).inc_by(rtp.not_rtp);
            rtp_lost.get_or_create(&l).set(rtp.lost);
            rtp_jitter.get_or_create(&l).set(rtp.jitter_us / 1e6);
        }
        for i in &f.inputs {
            let il = vec![
                ("flow".to_string(), f.name.clone()),
                ("interface".to_string(), i.interface.clone()),
                ("group".to_string(), i.group.clone()),
                ("port".to_string(), i.port.to_string()),
            ];
            input_up
                .get_or_create(&il)
                .set(i64::from(i.state == "active"));
        }
        if let Some(age) = f.idle_seconds {
            flow_age.get_or_create(&l).set(age);
        }
        for o in &f.outputs {
            let ol = vec![
                ("flow".to_string(), f.name.clone()),
                ("interface".to_string(), o.interface.clone()),
                ("group".to_string(), o.group.clone()),
                ("port".to_string(), o.port.to_string()),
            ];
            out_up.get_or_create(&ol).set(i64::from(o.state == "up"));
            out_packets.get_or_create(&ol).inc_by(o.packets);
            out_bytes.get_or_create(&ol).inc_by(o.bytes);
            for (reason, n) in [
                ("egress_full", o.egress_full),
                ("send_error", o.send_errors),
            ] {
                let mut dl = ol.clone();
                dl.push(("reason".to_string(), reason.to_string()));
                out_drops.get_or_create(&dl).inc_by(n);
            }
        }
    }
    r.register(
        "flow_up",
        "1 when the flow is active (a packet within its idle_after), else 0",
        flow_up,
    );
    r.register(
        "flow_state",
        "The flow's state: 1 for the current one of active, idle, waiting",
        flow_state,
    );
    r.register(
        "output_up",
        "1 when the output can send, 0 while it waits for its interface",
        out_up,
    );
    r.register("flow_packets", "Packets received for a flow", flow_packets);
    r.register(
        "flow_bytes",
        "UDP payload bytes received for a flow",
        flow_bytes,
    );
    r.register(
        "flow_looped",
        "Looped copies the loop guard dropped for a flow (same payload back from another sender)",
        flow_looped,
    );
    r.register(
        "flow_rtp_packets",
        "RTP packets received for a monitored flow, duplicates included",
        rtp_packets,
    );
    r.register(
        "flow_rtp_duplicates",
        "RTP packets whose sequence number had arrived already",
        rtp_duplicates,
    );
    r.register(
        "flow_rtp_reordered",
        "RTP packets that arrived after a later sequence number",
        rtp_reordered,
    );
    r.register(
        "flow_rtp_ssrc_changes",
        "Times the flow's RTP SSRC changed",
        rtp_ssrc_changes,
    );
    r.register(
        "flow_rtp_seq_resets",
        "Sequence jumps taken as a sender restart",
        rtp_seq_resets,
    );
    r.register(
        "flow_rtp_not_rtp",
        "Datagrams of a monitored flow that were not RTP",
        rtp_not_rtp,
    );
    r.register(
        "flow_rtp_lost",
        "RTP sequence numbers missing so far (late arrivals subtracted)",
        rtp_lost,
    );
    r.register(
        "input_up",
        "1 when a merged flow's path delivers (a packet within idle_after), else 0",
        input_up,
    );
    r.register(
        "flow_rtp_jitter_seconds",
        "RFC 3550 interarrival jitter of a monitored flow",
        rtp_jitter,
    );
    r.register(
        "flow_last_packet_age_seconds",
        "Seconds since the flow's last packet (absent until the first)",
        flow_age,
    );
    r.register("output_packets", "Packets sent by an output", out_packets);
    r.register(
        "output_bytes",
        "UDP payload bytes sent by an output",
        out_bytes,
    );
    r.register(
        "output_drops",
        "Copies an output did not send, by reason",
        out_drops,
    );

    let drops = counter();
    for (reason, n) in &snap.drops {
        drops
            .get_or_create(&vec![("reason".to_string(), reason.clone())])
            .inc_by(*n);
    }
    r.register(
        "drops",
        "Frames or copies not forwarded, by reason (all flows)",
        drops,
    );

    let generation = Gauge::<i64>::default();
    generation.set(status.generation as i64);
    r.register(
        "reload_generation",
        "Generation of the running forwarding table",
        generation,
    );
    let reloads = counter();
    reloads
        .get_or_create(&vec![("result".into(), "ok".into())])
        .inc_by(status.reloads_ok);
    reloads
        .get_or_create(&vec![("result".into(), "failed".into())])
        .inc_by(status.reloads_failed);
    r.register(
        "reloads",
        "Reloads by result; failed counts each distinct rejected file once, however many triggers saw it",
        reloads,
    );
    let groups = Family::<Labels, Gauge>::default();
    for (iface, n) in &status.groups {
        groups
            .get_or_create(&vec![("interface".into(), iface.clone())])
            .set(*n as i64);
    }
    r.register(
        "joined_groups",
        "Multicast groups joined per input interface",
        groups,
    );
    let role = Family::<Labels, Gauge>::default();
    for name in ["active", "standby"] {
        role.get_or_create(&vec![("role".into(), name.into())])
            .set(i64::from(status.role == name));
    }
    r.register(
        "role",
        "1 for the relay's role: active (forwards) or standby (receives, sends nothing)",
        role,
    );
    let drop_keys = Gauge::<i64>::default();
    drop_keys.set(status.ingress_drop_keys as i64);
    r.register(
        "ingress_drop_keys",
        "Relayed flow matches the nftables ingress drop keeps out of the host's IP stack (0: the drop is off, see mcr status)",
        drop_keys,
    );
    let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    uptime.set(status.uptime_seconds);
    r.register("uptime_seconds", "Seconds since mcr started", uptime);
    r.register(
        "build",
        "mcr version and the hash of the running config",
        Info::new(vec![
            ("version".to_string(), status.version.clone()),
            ("config_hash".to_string(), status.config_hash.clone()),
        ]),
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// Serves `/metrics` on `addr` from a bounded listener thread (`serve`): `scrape` asks the
/// control thread for one scrape's data and returns where the answer will arrive (`None`
/// when the relay is shutting down); the text is rendered on the listener's thread.
///
/// A small HTTP/1.1 listener on std rather than an HTTP crate: a scrape is one `GET`, and
/// what matters here is what tiny_http lacked — a connection cap, deadlines, a bounded
/// request and an accept loop that survives errors — all of which `serve` gives the
/// control socket too.
pub fn serve<F>(addr: SocketAddr, scrape: F) -> std::io::Result<SocketAddr>
where
    F: Fn() -> Option<Receiver<(Snapshot, Status)>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    crate::serve::spawn(
        "mcr-metrics",
        crate::serve::Listener::Tcp(listener),
        Http { scrape },
        BOUNDS,
    )?;
    Ok(bound)
}

/// Limits of the metrics endpoint: a few scrapers at once, a request is one short header.
const BOUNDS: crate::serve::Bounds = crate::serve::Bounds {
    max_clients: 64,
    max_request: 8 * 1024,
    request_timeout: Duration::from_secs(5),
    answer_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(10),
};

struct Http<F> {
    scrape: F,
}

impl<F> crate::serve::Protocol for Http<F>
where
    F: Fn() -> Option<Receiver<(Snapshot, Status)>> + Send + 'static,
{
    type Pending = Receiver<(Snapshot, Status)>;

    fn request(&mut self, received: &[u8], fresh: usize) -> crate::serve::Step<Self::Pending> {
        use crate::serve::Step;
        // The blank line ending the head may straddle the previous read: look 3 bytes back.
        let tail = &received[(received.len() - fresh).saturating_sub(3)..];
        let ends = |sep: &[u8]| tail.windows(sep.len()).any(|w| w == sep);
        if !ends(b"\r\n\r\n") && !ends(b"\n\n") {
            return Step::More;
        }
        let line = received.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        if method != "GET" {
            return Step::Respond(http(405, "text/plain", "only GET; scrape /metrics\n"));
        }
        if path != "/metrics" {
            return Step::Respond(http(404, "text/plain", "not found; scrape /metrics\n"));
        }
        match (self.scrape)() {
            Some(rx) => Step::Wait(rx),
            None => Step::Respond(http(503, "text/plain", "shutting down\n")),
        }
    }

    fn too_long(&mut self) -> Vec<u8> {
        http(431, "text/plain", "request header too large\n")
    }

    fn poll(&mut self, pending: &mut Self::Pending) -> Option<Vec<u8>> {
        match pending.try_recv() {
            Ok((snap, status)) => Some(http(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &render(&snap, &status),
            )),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(http(503, "text/plain", "shutting down\n")),
        }
    }

    fn timed_out(&mut self) -> Vec<u8> {
        http(503, "text/plain", "mcr did not answer in time\n")
    }
}

/// A complete HTTP/1.1 response that closes the connection.
fn http(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{Protocol, Step};
    use crate::stats::{FlowSnapshot, OutputSnapshot};

    fn status_line(step: Step<Receiver<(Snapshot, Status)>>) -> String {
        match step {
            Step::Respond(out) => String::from_utf8_lossy(&out)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            Step::More => "more".into(),
            Step::Wait(_) => "wait".into(),
        }
    }

    #[test]
    fn a_request_head_is_complete_only_at_its_blank_line_even_across_reads() {
        let mut http = Http { scrape: || None };
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let split = head.len() - 2; // the blank line straddles the two reads
        assert_eq!(status_line(http.request(&head[..split], split)), "more");
        assert_eq!(
            status_line(http.request(head, 2)),
            "HTTP/1.1 503 Service Unavailable"
        );
        let other = b"GET / HTTP/1.1\n\n";
        assert_eq!(
            status_line(http.request(other, other.len())),
            "HTTP/1.1 404 Not Found"
        );
        let post = b"POST /metrics HTTP/1.1\r\n\r\n";
        assert_eq!(
            status_line(http.request(post, post.len())),
            "HTTP/1.1 405 Method Not Allowed"
        );
        // A scrape handed to a relay that goes away before answering.
        let mut http = Http {
            scrape: || Some(std::sync::mpsc::sync_channel(1).1),
        };
        let Step::Wait(mut pending) = http.request(head, head.len()) else {
            panic!("a scrape waits for the relay");
        };
        let answer = http.poll(&mut pending).expect("an answer");
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"));
    }

    #[test]
    fn exposition_has_bounded_labels_and_ends_with_eof() {
        let snap = Snapshot {
            flows: vec![FlowSnapshot {
                name: "cam-1".into(),
                packets: 5,
                bytes: 500,
                idle_seconds: Some(0.5),
                outputs: vec![OutputSnapshot {
                    interface: "eth1".into(),
                    group: "239.9.9.9".into(),
                    port: 5099,
                    packets: 4,
                    bytes: 400,
                    egress_full: 1,
                    ..OutputSnapshot::default()
                }],
                rtp: Some(crate::rtp::RtpSnapshot {
                    packets: 5,
                    lost: 2,
                    duplicates: 1,
                    jitter_us: 250.0,
                    ..crate::rtp::RtpSnapshot::default()
                }),
                inputs: vec![crate::stats::InputSnapshot {
                    interface: "red0".into(),
                    group: "239.10.1.1".into(),
                    port: 5004,
                    state: "idle".into(),
                    ..crate::stats::InputSnapshot::default()
                }],
                ..FlowSnapshot::default()
            }],
            drops: [("no_match".to_string(), 3)].into_iter().collect(),
            ..Snapshot::default()
        };
        let status = Status {
            version: "0.1.0".into(),
            config_hash: "abc".into(),
            generation: 2,
            reloads_ok: 1,
            groups: [("eth0".to_string(), 1)].into_iter().collect(),
            ..Status::default()
        };
        let text = render(&snap, &status);
        for want in [
            "mcr_flow_packets_total{flow=\"cam-1\"} 5",
            "mcr_output_packets_total{flow=\"cam-1\",interface=\"eth1\",group=\"239.9.9.9\",port=\"5099\"} 4",
            "mcr_output_drops_total{flow=\"cam-1\",interface=\"eth1\",group=\"239.9.9.9\",port=\"5099\",reason=\"egress_full\"} 1",
            "mcr_drops_total{reason=\"no_match\"} 3",
            "mcr_reload_generation 2",
            "mcr_reloads_total{result=\"ok\"} 1",
            "mcr_joined_groups{interface=\"eth0\"} 1",
            "mcr_build_info{version=\"0.1.0\",config_hash=\"abc\"} 1",
            "mcr_flow_last_packet_age_seconds{flow=\"cam-1\"} 0.5",
            "mcr_flow_rtp_packets_total{flow=\"cam-1\"} 5",
            "mcr_flow_rtp_duplicates_total{flow=\"cam-1\"} 1",
            "mcr_flow_rtp_lost{flow=\"cam-1\"} 2",
            "mcr_flow_rtp_jitter_seconds{flow=\"cam-1\"} 0.00025",
            "mcr_input_up{flow=\"cam-1\",interface=\"red0\",group=\"239.10.1.1\",port=\"5004\"} 0",
        ] {
            assert!(text.contains(want), "missing {want} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
