//! The per-task gateway: the only way out of a task's network namespace.
//!
//! The sandbox's init listens on the task's loopback and carries each connection to this Unix
//! socket, prefixed with a tag line:
//!
//! - `backend`: straight to the coordinator's state backend (always allowed); over TLS when the
//!   coordinator serves https (the task speaks plain http to its loopback, the relay verifies
//!   the coordinator's certificate against the agent's `--tls-ca` and presents its own);
//! - `proxy`: an HTTP proxy (`HTTPS_PROXY=http://127.0.0.1:3128` in the task) for `CONNECT
//!   host:port` and plain `GET http://host/...`. The backend is always allowed; `none` allows
//!   nothing else, `allow-list` only `--allow-host` entries, `egress` anything. In `allow-list`
//!   and `egress` the proxy resolves the name itself and connects only to an address that is
//!   not the agent host's own, loopback, unspecified or link-local ([`classify`]): exactly the
//!   address it checked. Everything refused gets `403` and a line in the task's log.

use super::Network;
use crate::report::LineSink;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tofuflow_proto::v1::LogStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

const MAX_HEAD: usize = 16 * 1024;
/// How long resolving a name or connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An allowed destination: `host`, `host:port`, `*.suffix` or `*.suffix:port`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    host: String,
    port: Option<u16>,
}

pub fn parse_rule(s: &str) -> Result<Rule, String> {
    let s = s.trim().to_ascii_lowercase();
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
            h.trim_matches(|c| c == '[' || c == ']').to_string(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("--allow-host {s:?}: {p:?} is not a port"))?,
            ),
        ),
        _ => (s.trim_matches(|c| c == '[' || c == ']').to_string(), None),
    };
    let bare = host.strip_prefix("*.").unwrap_or(&host);
    if bare.is_empty()
        || bare.contains('*')
        || !bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    {
        return Err(format!(
            "--allow-host {s:?} must be HOST, HOST:PORT or *.DOMAIN[:PORT]"
        ));
    }
    Ok(Rule { host, port })
}

impl Rule {
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_matches(|c| c == '[' || c == ']')
            .to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == self.host,
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// What a task's gateway lets through.
#[derive(Clone, Debug)]
pub struct Policy {
    /// host, port of the state backend: always allowed, by name, through its own relay.
    pub backend: Option<(String, u16)>,
    /// Set when the state backend is https: how the relay speaks TLS to it.
    pub backend_tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    /// The pool's network mode: `none` (backend only), `allow-list` (backend and `rules`) or
    /// `egress` (anywhere); the last two never to a [`Blocked`] address.
    pub network: Network,
    pub rules: Vec<Rule>,
}

/// What the proxy does with a request for a host and port, before any name is resolved.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// The state backend: connect by name, no address check.
    Backend,
    /// Refused with this reason (for the run's log).
    Refused(String),
    /// Allowed by name: resolve, and connect only to an address [`classify`] lets through.
    CheckAddresses,
}

impl Policy {
    fn decide(&self, host: &str, port: u16) -> Verdict {
        let host = host.trim_matches(|c| c == '[' || c == ']');
        if self
            .backend
            .as_ref()
            .is_some_and(|(h, p)| h.eq_ignore_ascii_case(host) && *p == port)
        {
            return Verdict::Backend;
        }
        match self.network {
            Network::Egress => Verdict::CheckAddresses,
            Network::AllowList if self.rules.iter().any(|r| r.allows(host, port)) => {
                Verdict::CheckAddresses
            }
            Network::AllowList => {
                Verdict::Refused("is not in the allow-list (--allow-host)".into())
            }
            Network::None | Network::Host => Verdict::Refused(format!(
                "(network {}: only the state backend is reachable)",
                self.network.name()
            )),
        }
    }
}

/// Why an address is out of a task's reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// 127.0.0.0/8, ::1: the agent host's own services (RabbitMQ, databases, the coordinator).
    Loopback,
    /// 0.0.0.0/8, ::: connecting there reaches the agent's host too.
    Unspecified,
    /// 169.254.0.0/16, fe80::/10: cloud metadata services (169.254.169.254) and link neighbours.
    LinkLocal,
    /// An address of one of the host's interfaces: a service bound to 0.0.0.0 answers there.
    HostAddress,
}

impl Blocked {
    /// The reason, as the run's log says it.
    pub fn reason(self) -> &'static str {
        match self {
            Blocked::Loopback => "a loopback address: the agent host's own services are out of a task's reach",
            Blocked::Unspecified => "the unspecified address, which reaches the agent's own host",
            Blocked::LinkLocal => "link-local: cloud metadata services (169.254.169.254) and link neighbours are out of a task's reach",
            Blocked::HostAddress => "an address of the agent's own host: its services are out of a task's reach",
        }
    }
}

/// Classifies an address a task asked the proxy to connect to: `None` when it may, else why
/// not. `host_addrs` are the addresses of the agent host's interfaces. IPv4-mapped IPv6
/// addresses (`::ffff:127.0.0.1`) count as the IPv4 address they carry.
pub fn classify(ip: IpAddr, host_addrs: &[IpAddr]) -> Option<Blocked> {
    let ip = canonical(ip);
    let blocked = match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some(Blocked::Loopback)
            } else if v4.octets()[0] == 0 {
                Some(Blocked::Unspecified)
            } else if v4.is_link_local() {
                Some(Blocked::LinkLocal)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(Blocked::Loopback)
            } else if v6.is_unspecified() {
                Some(Blocked::Unspecified)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some(Blocked::LinkLocal)
            } else {
                None
            }
        }
    };
    blocked.or_else(|| {
        host_addrs
            .iter()
            .any(|a| canonical(*a) == ip)
            .then_some(Blocked::HostAddress)
    })
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses among `resolved` a task may connect to, in order; when there is none, the
/// first refused address and why.
pub fn permitted(
    resolved: &[SocketAddr],
    host_addrs: &[IpAddr],
) -> Result<Vec<SocketAddr>, (IpAddr, Blocked)> {
    let mut first_refused = None;
    let mut ok = Vec::new();
    for a in resolved {
        match classify(a.ip(), host_addrs) {
            None => ok.push(*a),
            Some(b) => {
                first_refused.get_or_insert((a.ip(), b));
            }
        }
    }
    match (ok.is_empty(), first_refused) {
        (true, Some(r)) => Err(r),
        _ => Ok(ok),
    }
}

/// The addresses of this host's interfaces (getifaddrs), read per request: interfaces come and
/// go while the agent runs.
/// Fails closed: without the list, nothing but the backend is let through.
fn host_addresses() -> Result<Vec<IpAddr>, String> {
    let ifs = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("cannot list this host's addresses (getifaddrs): {e}"))?;
    Ok(ifs
        .filter_map(|i| {
            let a = i.address?;
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect())
}

/// A running gateway; stops (and removes its socket) when dropped.
pub struct Gateway {
    pub path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn start(dir: &Path, name: &str, policy: Policy, sink: LineSink) -> Result<Gateway, String> {
    let (path, l) = bind(dir, name)?;
    Ok(serve_on(path, l, policy, sink))
}

/// The gateway's socket `DIR/NAME.sock`, listening; connections wait in its backlog until
/// [`serve_on`] serves it (a sandbox built ahead of its task relays to it already).
pub fn bind(dir: &Path, name: &str) -> Result<(PathBuf, UnixListener), String> {
    let path = dir.join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    Ok((path, l))
}

/// Serves the bound socket `path` with a task's `policy` until the gateway is dropped.
pub fn serve_on(path: PathBuf, l: UnixListener, policy: Policy, sink: LineSink) -> Gateway {
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            let (policy, sink) = (policy.clone(), sink.clone());
            tokio::spawn(async move {
                if let Err(e) = serve(conn, &policy, &sink).await {
                    tracing::debug!(error = %e, "gateway connection ended");
                }
            });
        }
    });
    Gateway { path, task }
}

/// Reads (after what `buf` already holds) until `end`: a line for the tag, the end of an HTTP
/// head. Returns (up to and including `end`, what came after it).
async fn read_until(
    s: &mut UnixStream,
    mut buf: Vec<u8>,
    end: &[u8],
    max: usize,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(end.len()).position(|w| w == end) {
            let rest = buf.split_off(i + end.len());
            return Ok((buf, rest));
        }
        if buf.len() > max {
            return Err("request head too large".into());
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("connecting to {host}:{port} timed out"))?
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    // Relayed writes go out at once (no Nagle delay waiting on a delayed ACK).
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn serve(mut conn: UnixStream, policy: &Policy, sink: &LineSink) -> Result<(), String> {
    let (tag, rest) = read_until(&mut conn, Vec::new(), b"\n", 64).await?;
    match std::str::from_utf8(&tag).unwrap_or("").trim() {
        "backend" => relay_backend(conn, rest, policy, sink).await,
        "proxy" => proxy(conn, rest, policy, sink).await,
        other => Err(format!("unknown gateway tag {other:?}")),
    }
}

/// Carries one connection of the task to the state backend, speaking TLS upstream when the
/// backend is https; a failed handshake goes to the task's log with what to do.
async fn relay_backend(
    mut conn: UnixStream,
    rest: Vec<u8>,
    policy: &Policy,
    sink: &LineSink,
) -> Result<(), String> {
    let (h, p) = policy.backend.clone().ok_or("no backend")?;
    let mut up = connect(&h, p).await?;
    let Some(tls) = &policy.backend_tls else {
        up.write_all(&rest).await.map_err(|e| e.to_string())?;
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
        return Ok(());
    };
    let name = rustls_pki_types::ServerName::try_from(h.clone())
        .map_err(|e| format!("state backend host {h:?}: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let mut up = match connector.connect(name, up).await {
        Ok(s) => s,
        Err(e) => {
            let e = e.to_string();
            let hint = tofuflow_proto::tls::hint(&e).unwrap_or("check the agent's --tls-ca");
            sink.line(
                LogStream::System,
                format!("tofuflow: TLS to the state backend {h}:{p} failed: {e} ({hint})"),
            );
            respond(
                &mut conn,
                "502 Bad Gateway",
                "TLS to the state backend failed",
            )
            .await;
            return Err(e);
        }
    };
    up.write_all(&rest).await.map_err(|e| e.to_string())?;
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
    Ok(())
}

fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((s.to_string(), default)),
    }
}

/// A proxy request's head: `CONNECT host:port` or an absolute-form `METHOD http://host/...`.
struct Request {
    method: String,
    target: String,
    version: String,
    /// The destination, when the request names one this proxy serves.
    dest: Option<(String, u16)>,
    headers: Vec<String>,
}

fn parse_head(head: &[u8]) -> Request {
    let text = String::from_utf8_lossy(head).to_string();
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let dest = if method.eq_ignore_ascii_case("CONNECT") {
        split_host_port(&target, 443)
    } else {
        target.strip_prefix("http://").and_then(|r| {
            let auth = r.split('/').next().unwrap_or("");
            split_host_port(auth, 80)
        })
    };
    Request {
        method,
        target,
        version,
        dest,
        headers: lines
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Answers the task with `status` and closes.
async fn respond(conn: &mut UnixStream, status: &str, body: &str) {
    let _ = conn
        .write_all(
            format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                .as_bytes(),
        )
        .await;
}

/// Opens the connection the policy allows for `method host:port`: the state backend by name;
/// anything else resolved once here, checked, and connected to exactly a checked address (a
/// name cannot re-resolve elsewhere in between). A refusal is logged and answered with its
/// status line.
async fn open(
    policy: &Policy,
    method: &str,
    host: &str,
    port: u16,
    sink: &LineSink,
) -> Result<TcpStream, &'static str> {
    let dest = host_port(host, port);
    let blocked = |why: String| {
        sink.line(
            LogStream::System,
            format!("tofuflow: egress blocked: {method} {dest}{why}"),
        );
        "403 Forbidden"
    };
    let unreachable = |e: String| {
        sink.line(LogStream::System, format!("tofuflow: egress: {e}"));
        "502 Bad Gateway"
    };
    match policy.decide(host, port) {
        Verdict::Backend => connect(host, port).await.map_err(unreachable),
        Verdict::Refused(why) => Err(blocked(format!(" {why}"))),
        Verdict::CheckAddresses => {
            let resolved: Vec<SocketAddr> =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| format!("resolving {host} timed out"))
                    .and_then(|r| r.map_err(|e| format!("cannot resolve {host}: {e}")))
                    .map_err(unreachable)?
                    .collect();
            let host_addrs = host_addresses().map_err(unreachable)?;
            let addrs = permitted(&resolved, &host_addrs)
                .map_err(|(ip, b)| blocked(format!(": {ip} is {}", b.reason())))?;
            connect_any(&addrs, &dest).await.map_err(unreachable)
        }
    }
}

/// Connects to the first of `addrs` that answers.
async fn connect_any(addrs: &[SocketAddr], dest: &str) -> Result<TcpStream, String> {
    let mut last = format!("{dest} has no address");
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("cannot connect to {dest} ({a}): {e}"),
            Err(_) => last = format!("connecting to {dest} ({a}) timed out"),
        }
    }
    Err(last)
}

async fn proxy(
    mut conn: UnixStream,
    buf: Vec<u8>,
    policy: &Policy,
    sink: &LineSink,
) -> Result<(), String> {
    // `buf`: what arrived with the tag, possibly the whole head.
    let (head, rest) = read_until(&mut conn, buf, b"\r\n\r\n", MAX_HEAD).await?;
    let req = parse_head(&head);
    let Some((host, port)) = req.dest.clone() else {
        respond(&mut conn, "400 Bad Request", "").await;
        return Err(format!("bad proxy request {} {}", req.method, req.target));
    };
    let mut up = match open(policy, &req.method, &host, port, sink).await {
        Ok(u) => u,
        Err(status) => {
            let body = if status.starts_with("403") {
                format!(
                    "tofuflow: egress to {} is not allowed for this task\n",
                    host_port(&host, port)
                )
            } else {
                String::new()
            };
            respond(&mut conn, status, &body).await;
            return Ok(());
        }
    };
    if req.method.eq_ignore_ascii_case("CONNECT") {
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
    } else {
        up.write_all(origin_form(&req).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    up.write_all(&rest).await.map_err(|e| e.to_string())?;
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
    Ok(())
}

/// The head of a plain-HTTP request as its origin expects it: origin-form request line, hop
/// headers dropped, one destination per connection.
fn origin_form(req: &Request) -> String {
    let path = req
        .target
        .strip_prefix("http://")
        .and_then(|r| r.find('/').map(|i| &r[i..]))
        .unwrap_or("/");
    let mut out = format!("{} {path} {}\r\n", req.method, req.version);
    for l in &req.headers {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "connection" | "proxy-connection" | "proxy-authorization" | "keep-alive"
        ) {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let r = parse_rule("registry.opentofu.org").unwrap();
        assert!(r.allows("registry.opentofu.org", 443));
        assert!(r.allows("REGISTRY.opentofu.org", 80));
        assert!(!r.allows("evil.org", 443));
        let r = parse_rule("*.amazonaws.com:443").unwrap();
        assert!(r.allows("ec2.us-east-1.amazonaws.com", 443));
        assert!(!r.allows("amazonaws.com", 443));
        assert!(!r.allows("ec2.amazonaws.com", 80));
        assert!(!r.allows("amazonaws.com.evil.org", 443));
        let r = parse_rule("127.0.0.1:8080").unwrap();
        assert!(r.allows("127.0.0.1", 8080));
        assert!(!r.allows("127.0.0.1", 8081));
        let r = parse_rule("[::1]:80").unwrap();
        assert!(r.allows("::1", 80));
        assert!(parse_rule("a b").is_err());
        assert!(parse_rule("*").is_err());
        assert!(parse_rule("x:notaport").is_err());
        assert_eq!(split_host_port("h:1", 2), Some(("h".into(), 1)));
        assert_eq!(split_host_port("h", 2), Some(("h".into(), 2)));
        assert_eq!(split_host_port("[::1]:5", 2), Some(("::1".into(), 5)));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_of_the_host_loopback_unspecified_and_link_local_are_blocked() {
        let host = [ip("10.0.0.7"), ip("fd00::7"), ip("127.0.0.1")];
        for (a, want) in [
            ("127.0.0.1", Some(Blocked::Loopback)),
            ("127.255.3.4", Some(Blocked::Loopback)),
            ("::1", Some(Blocked::Loopback)),
            ("::ffff:127.0.0.1", Some(Blocked::Loopback)),
            ("0.0.0.0", Some(Blocked::Unspecified)),
            ("0.1.2.3", Some(Blocked::Unspecified)),
            ("::", Some(Blocked::Unspecified)),
            ("::ffff:0.0.0.0", Some(Blocked::Unspecified)),
            ("169.254.169.254", Some(Blocked::LinkLocal)),
            ("::ffff:169.254.169.254", Some(Blocked::LinkLocal)),
            ("fe80::1", Some(Blocked::LinkLocal)),
            ("febf::1", Some(Blocked::LinkLocal)),
            ("10.0.0.7", Some(Blocked::HostAddress)),
            ("::ffff:10.0.0.7", Some(Blocked::HostAddress)),
            ("fd00::7", Some(Blocked::HostAddress)),
            // Elsewhere: the internet and other hosts of private networks stay reachable.
            ("10.0.0.8", None),
            ("192.168.1.1", None),
            ("1.1.1.1", None),
            ("fec0::1", None),
            ("2001:db8::1", None),
            ("fd00::8", None),
        ] {
            assert_eq!(classify(ip(a), &host), want, "{a}");
        }
    }

    #[test]
    fn only_checked_addresses_are_connected_to() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let host = [ip("10.0.0.7")];
        assert_eq!(
            permitted(&[sa("127.0.0.1:443"), sa("1.2.3.4:443")], &host),
            Ok(vec![sa("1.2.3.4:443")])
        );
        assert_eq!(
            permitted(&[sa("10.0.0.7:80"), sa("[::1]:80")], &host),
            Err((ip("10.0.0.7"), Blocked::HostAddress))
        );
        assert_eq!(permitted(&[], &host), Ok(vec![]));
    }

    #[test]
    fn policies_by_network_mode() {
        let mut p = Policy {
            backend: Some(("127.0.0.1".into(), 7701)),
            backend_tls: None,
            network: Network::Egress,
            rules: vec![parse_rule("registry.opentofu.org").unwrap()],
        };
        assert_eq!(p.decide("127.0.0.1", 7701), Verdict::Backend);
        assert_eq!(p.decide("127.0.0.1", 5672), Verdict::CheckAddresses);
        assert_eq!(p.decide("example.org", 443), Verdict::CheckAddresses);
        p.network = Network::AllowList;
        assert_eq!(p.decide("127.0.0.1", 7701), Verdict::Backend);
        assert_eq!(
            p.decide("registry.opentofu.org", 443),
            Verdict::CheckAddresses
        );
        assert!(matches!(p.decide("example.org", 443), Verdict::Refused(_)));
        p.network = Network::None;
        assert_eq!(p.decide("127.0.0.1", 7701), Verdict::Backend);
        assert!(matches!(
            p.decide("registry.opentofu.org", 443),
            Verdict::Refused(_)
        ));
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("a", 80), "a:80");
    }
}
