//! The local control socket: `mcr stats`, `mcr status` and `mcr reload` talk to a running
//! relay through it.
//!
//! Protocol (version [`PROTOCOL`]): the client connects to a Unix stream socket, writes one
//! JSON request line such as `{"v":1,"cmd":"stats"}`, and reads one JSON response line,
//! `{"v":1,"ok":true,...}` or `{"v":1,"ok":false,"error":"..."}`; then the connection closes.
//! A request with another `v` is answered with an error naming the supported version.
//!
//! The socket is served by a bounded poll loop on its own thread (`serve`): many clients at
//! once, each with a deadline and a size limit, so an idle or slow client never holds up
//! another. It never touches relay state: each request goes to the control thread as a
//! [`Call`] with a reply channel, so every state change and read stays on one thread.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::Snapshot;

/// Version of the request/response protocol.
pub const PROTOCOL: u32 = 1;

/// How long a client or the server waits for the other side.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Stats,
    Status,
    Reload,
    /// Forward (the active relay of a pair).
    Active,
    /// Receive and send nothing (the standby of a pair).
    Standby,
    /// Forward for `ms` milliseconds, then fall back to standby unless renewed: what the
    /// pair's health check sends while its keepalived says MASTER, so a master whose
    /// keepalived died stops forwarding by itself once its peer has taken over.
    Lease {
        ms: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    v: u32,
    cmd: Command,
}

/// Version, uptime, config and reload state, workers, memberships.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: f64,
    pub config_path: String,
    /// FNV-1a 64 of the config file's bytes behind the running table, as hex.
    pub config_hash: String,
    pub generation: u64,
    pub reloads_ok: u64,
    /// Rejected files: each distinct content counts once, whether the file watch, SIGHUP or
    /// `mcr reload` (or several of them) saw it; a file that cannot be read counts each time.
    pub reloads_failed: u64,
    /// The last reload's one-line result (applied summary or rejection message).
    pub last_reload: Option<String>,
    pub workers: usize,
    /// Groups joined per input interface name.
    pub groups: std::collections::BTreeMap<String, usize>,
    pub helper_sockets: usize,
    /// Bytes held by receive rings (one per worker per input interface).
    #[serde(default)]
    pub ring_bytes: u64,
    /// `[relay] ring_memory`: what they may hold together.
    #[serde(default)]
    pub ring_memory: u64,
    /// Every interface the config names, as the running table was built for it; `None`
    /// while it does not exist (its flows or outputs wait).
    #[serde(default)]
    pub interfaces: std::collections::BTreeMap<String, Option<InterfaceStatus>>,
    /// Flows per state ("active", "idle", "waiting").
    #[serde(default)]
    pub flow_states: std::collections::BTreeMap<String, usize>,
    /// Every flow that is not active and every output that is not up, one line each;
    /// empty when everything forwards. `mcr status` exits 3 when it is not empty.
    #[serde(default)]
    pub unhealthy: Vec<String>,
    /// Paths of merged flows that deliver nothing (idle or waiting), one line each: the flow
    /// still forwards from its other paths, but without redundancy. Not counted unhealthy
    /// (both relays of a pair usually share the failed path, and failing over would stop
    /// both); `mcr status` prints them.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// IGMP querier state per input interface: "querier", "other querier A.B.C.D", "off".
    #[serde(default)]
    pub queriers: std::collections::BTreeMap<String, String>,
    /// The ingress drop that keeps relayed datagrams out of the IP stack: "on: …" or
    /// "off: why".
    #[serde(default)]
    pub ingress_drop: String,
    /// Keys (relayed flow matches) the ingress drop holds.
    #[serde(default)]
    pub ingress_drop_keys: usize,
    /// "active" (forwards) or "standby" (receives, sends nothing).
    #[serde(default)]
    pub role: String,
    /// Seconds left of an active role's lease (`mcr active --lease`); `None`: no lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_lease_seconds: Option<f64>,
}

impl Status {
    /// Fills `flow_states` and `unhealthy` from a snapshot's states.
    pub fn set_health(&mut self, snap: &crate::stats::Snapshot) {
        for f in &snap.flows {
            *self.flow_states.entry(f.state.clone()).or_default() += 1;
            if f.state != "active" {
                self.unhealthy.push(format!("flow {}: {}", f.name, f.state));
            }
            for i in f.inputs.iter().filter(|i| i.state != "active") {
                self.degraded.push(format!(
                    "flow {} path {}:{} on {}: {} (the flow forwards from its other paths, without redundancy)",
                    f.name, i.group, i.port, i.interface, i.state
                ));
            }
            for o in f.outputs.iter().filter(|o| o.state != "up") {
                self.unhealthy.push(format!(
                    "flow {} output {} {}:{}: {}",
                    f.name, o.interface, o.group, o.port, o.state
                ));
            }
        }
    }
}

/// What mcr last read of one interface.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InterfaceStatus {
    pub ifindex: u32,
    pub up: bool,
    pub mtu: u32,
    pub mac: String,
    pub ipv4: Vec<std::net::Ipv4Addr>,
    /// IPv6 addresses past duplicate address detection.
    #[serde(default)]
    pub ipv6: Vec<std::net::Ipv6Addr>,
}

impl From<&crate::links::LinkFacts> for InterfaceStatus {
    fn from(f: &crate::links::LinkFacts) -> Self {
        let m = f.mac;
        InterfaceStatus {
            ifindex: f.ifindex,
            up: f.up,
            mtu: f.mtu,
            mac: format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            ipv4: f.ipv4.clone(),
            ipv6: f.ipv6.clone(),
        }
    }
}

/// The outcome of a reload request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ReloadOutcome {
    Applied { summary: String },
    Unchanged,
    Rejected { errors: Vec<String> },
}

/// A response body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    Stats(Snapshot),
    Status(Box<Status>),
    Reload(ReloadOutcome),
    Role(RoleChange),
}

/// The answer to `active` / `standby`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleChange {
    /// The role now: "active" or "standby".
    pub role: String,
    /// False when the relay already had that role.
    pub changed: bool,
    /// The lease now in force, in seconds (`None`: the role holds until changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    v: u32,
    ok: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    reply: Option<Reply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A request handed to the control thread, with where to send the answer.
pub struct Call {
    pub command: Command,
    pub reply: mpsc::SyncSender<Reply>,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source} (is mcr running? is the path right? see [relay] control_socket)")]
    Connect { path: PathBuf, source: io::Error },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control socket {path}: bad response: {message}")]
    Protocol { path: PathBuf, message: String },
    #[error("mcr answered: {0}")]
    Refused(String),
}

/// The listening socket; the file is removed on drop.
pub struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (mode 0660, group `mcr` if that group exists) and serves it on a thread,
/// forwarding each request through `forward`.
pub fn serve<F>(path: &Path, forward: F) -> io::Result<Server>
where
    F: Fn(Call) -> bool + Send + 'static,
{
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another mcr is serving this control socket",
            ));
        }
        std::fs::remove_file(path)?; // stale, from a relay that died
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("mcr") {
        if let Err(e) = nix::unistd::chown(path, None, Some(group.gid)) {
            log::warn!("cannot give {} to group mcr: {e}", path.display());
        }
    }
    crate::serve::spawn(
        "mcr-control",
        crate::serve::Listener::Unix(listener),
        ControlProtocol { forward },
        BOUNDS,
    )?;
    Ok(Server {
        path: path.to_path_buf(),
    })
}

/// Limits of the control socket: many clients at once, none able to hold up another.
const BOUNDS: crate::serve::Bounds = crate::serve::Bounds {
    max_clients: 256,
    max_request: 64 * 1024,
    request_timeout: Duration::from_secs(5),
    // The control thread answers in turn; as long as a client waits (`call`'s timeout).
    answer_timeout: TIMEOUT,
    write_timeout: Duration::from_secs(10),
};

/// One JSON line in, one JSON line out, answered by the control thread through `forward`.
struct ControlProtocol<F> {
    forward: F,
}

impl<F: Fn(Call) -> bool + Send + 'static> crate::serve::Protocol for ControlProtocol<F> {
    type Pending = mpsc::Receiver<Reply>;

    fn request(&mut self, received: &[u8], fresh: usize) -> crate::serve::Step<Self::Pending> {
        use crate::serve::Step;
        let from = received.len() - fresh;
        let Some(end) = received[from..].iter().position(|&b| b == b'\n') else {
            return Step::More;
        };
        let end = from + end;
        let command = std::str::from_utf8(&received[..end])
            .map_err(|_| "bad request (not UTF-8)".to_string())
            .and_then(parse_request);
        match command {
            Err(message) => Step::Respond(encode(&failure(message))),
            Ok(command) => {
                let (tx, rx) = mpsc::sync_channel(1);
                if (self.forward)(Call { command, reply: tx }) {
                    Step::Wait(rx)
                } else {
                    Step::Respond(encode(&failure("mcr is shutting down".into())))
                }
            }
        }
    }

    fn too_long(&mut self) -> Vec<u8> {
        encode(&failure(format!(
            "request longer than {} KiB; send one JSON line such as {{\"v\":{PROTOCOL},\"cmd\":\"stats\"}}",
            BOUNDS.max_request / 1024
        )))
    }

    fn poll(&mut self, pending: &mut Self::Pending) -> Option<Vec<u8>> {
        match pending.try_recv() {
            Ok(reply) => Some(encode(&Response {
                v: PROTOCOL,
                ok: true,
                reply: Some(reply),
                error: None,
            })),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                Some(encode(&failure("mcr is shutting down".into())))
            }
        }
    }

    fn timed_out(&mut self) -> Vec<u8> {
        encode(&failure("mcr did not answer in time".into()))
    }
}

/// A response as one line.
fn encode(response: &Response) -> Vec<u8> {
    let mut out = serde_json::to_vec(response).unwrap_or_else(|e| {
        format!("{{\"v\":{PROTOCOL},\"ok\":false,\"error\":\"cannot encode the answer: {e}\"}}")
            .into_bytes()
    });
    out.push(b'\n');
    out
}

/// Parses one request line: the command, or the error message to answer with.
pub fn parse_request(line: &str) -> Result<Command, String> {
    match serde_json::from_str::<Request>(line) {
        Err(e) => Err(format!(
            "bad request ({e}); send e.g. {{\"v\":{PROTOCOL},\"cmd\":\"stats\"}}"
        )),
        Ok(req) if req.v != PROTOCOL => Err(format!(
            "protocol version {} is not supported; this mcr speaks version {PROTOCOL}",
            req.v
        )),
        Ok(req) => Ok(req.cmd),
    }
}

fn failure(message: String) -> Response {
    Response {
        v: PROTOCOL,
        ok: false,
        reply: None,
        error: Some(message),
    }
}

/// Sends one request to the relay behind `path` and returns its reply.
pub fn call(path: &Path, command: Command) -> Result<Reply, ClientError> {
    let io_err = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let conn = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    conn.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let mut req = serde_json::to_vec(&Request {
        v: PROTOCOL,
        cmd: command,
    })
    .map_err(|e| io_err(io::Error::other(e)))?;
    req.push(b'\n');
    (&conn).write_all(&req).map_err(io_err)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).map_err(io_err)?;
    let response: Response = serde_json::from_str(&line).map_err(|e| ClientError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    match (response.ok, response.reply, response.error) {
        (true, Some(reply), _) => Ok(reply),
        (_, _, Some(error)) => Err(ClientError::Refused(error)),
        _ => Err(ClientError::Protocol {
            path: path.to_path_buf(),
            message: "neither a reply nor an error".into(),
        }),
    }
}

/// FNV-1a, 64 bit: a stable content hash for config files (not for security).
pub fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{Protocol, Step};

    #[test]
    fn a_request_line_is_complete_only_at_its_newline_even_across_reads() {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let mut control = ControlProtocol {
            forward: move |call: Call| {
                seen.lock().unwrap().push(call.command);
                true
            },
        };
        let line = b"{\"v\":1,\"cmd\":\"status\"}\n";
        let split = 10;
        assert!(matches!(control.request(&line[..split], split), Step::More));
        assert!(matches!(
            control.request(line, line.len() - split),
            Step::Wait(_)
        ));
        assert_eq!(*calls.lock().unwrap(), [Command::Status]);
        let answer = |step: Step<mpsc::Receiver<Reply>>| match step {
            Step::Respond(out) => String::from_utf8(out).unwrap(),
            _ => panic!("expected an immediate answer"),
        };
        let bad = answer(control.request(b"hello\n", 6));
        assert!(
            bad.contains("\"ok\":false") && bad.contains("bad request"),
            "{bad}"
        );
        let binary = answer(control.request(b"\xff\n", 2));
        assert!(binary.contains("not UTF-8"), "{binary}");
        assert!(String::from_utf8(control.too_long())
            .unwrap()
            .contains("longer than 64 KiB"));
    }

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), "cbf29ce484222325");
        assert_eq!(fnv1a(b"a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn requests_round_trip_and_versions_are_checked() {
        let dir = std::env::temp_dir().join(format!("mcr-control-test-{}", std::process::id()));
        let path = dir.join("control.sock");
        let server = serve(&path, |call: Call| {
            let reply = match call.command {
                Command::Stats => Reply::Stats(Snapshot::default()),
                Command::Status => Reply::Status(Box::new(Status {
                    generation: 7,
                    ..Status::default()
                })),
                Command::Reload => Reply::Reload(ReloadOutcome::Unchanged),
                Command::Active | Command::Standby | Command::Lease { .. } => {
                    Reply::Role(RoleChange {
                        role: "active".into(),
                        changed: false,
                        lease_seconds: None,
                    })
                }
            };
            call.reply.send(reply).is_ok()
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        match call(&path, Command::Status).unwrap() {
            Reply::Status(s) => assert_eq!(s.generation, 7),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            call(&path, Command::Reload).unwrap(),
            Reply::Reload(ReloadOutcome::Unchanged)
        );
        // A future client speaking version 2 gets a clear refusal.
        let mut conn = UnixStream::connect(&path).unwrap();
        conn.write_all(b"{\"v\":2,\"cmd\":\"stats\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        assert!(
            line.contains("\"ok\":false") && line.contains("version 2"),
            "{line}"
        );
        // A second server on the same path is refused while the first lives.
        assert!(serve(&path, |_| false).is_err());
        drop(server);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
