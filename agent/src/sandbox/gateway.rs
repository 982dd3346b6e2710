//! The per-task gateway: the only way out of a task's network namespace.
//!
//! The sandbox's init listens on the task's loopback and carries each connection to this Unix
//! socket, prefixed with a tag line:
//!
//! - `backend`: straight to the coordinator's state backend (always allowed);
//! - `proxy`: an HTTP proxy (`HTTPS_PROXY=http://127.0.0.1:3128` in the task). `CONNECT host:port`
//!   and plain `GET http://host/...` are allowed only to the backend and to `--allow-host`
//!   entries; everything else gets `403` and a line in the task's log.

use crate::report::LineSink;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tofuflow_proto::v1::LogStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

const MAX_HEAD: usize = 16 * 1024;

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
    /// host, port of the state backend.
    pub backend: Option<(String, u16)>,
    pub rules: Vec<Rule>,
    /// The pool's network mode, for the log.
    pub mode: &'static str,
}

impl Policy {
    fn allows(&self, host: &str, port: u16) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|(h, p)| h.eq_ignore_ascii_case(host) && *p == port)
            || self.rules.iter().any(|r| r.allows(host, port))
    }
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
    let path = dir.join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
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
    Ok(Gateway { path, task })
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
    tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("connecting to {host}:{port} timed out"))?
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))
}

async fn serve(mut conn: UnixStream, policy: &Policy, sink: &LineSink) -> Result<(), String> {
    let (tag, rest) = read_until(&mut conn, Vec::new(), b"\n", 64).await?;
    match std::str::from_utf8(&tag).unwrap_or("").trim() {
        "backend" => {
            let (h, p) = policy.backend.clone().ok_or("no backend")?;
            let mut up = connect(&h, p).await?;
            up.write_all(&rest).await.map_err(|e| e.to_string())?;
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
            Ok(())
        }
        "proxy" => proxy(conn, rest, policy, sink).await,
        other => Err(format!("unknown gateway tag {other:?}")),
    }
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

async fn proxy(
    mut conn: UnixStream,
    buf: Vec<u8>,
    policy: &Policy,
    sink: &LineSink,
) -> Result<(), String> {
    // `buf`: what arrived with the tag, possibly the whole head.
    let (head, rest) = read_until(&mut conn, buf, b"\r\n\r\n", MAX_HEAD).await?;
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let dest = if method.eq_ignore_ascii_case("CONNECT") {
        split_host_port(target, 443)
    } else {
        target.strip_prefix("http://").and_then(|r| {
            let auth = r.split('/').next().unwrap_or("");
            split_host_port(auth, 80)
        })
    };
    let Some((host, port)) = dest else {
        let _ = conn
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        return Err(format!("bad proxy request {first:?}"));
    };
    if !policy.allows(&host, port) {
        sink.line(
            LogStream::System,
            if policy.mode == "none" {
                format!("tofuflow: egress blocked: {method} {host}:{port} (network none: only the state backend is reachable)")
            } else {
                format!("tofuflow: egress blocked: {method} {host}:{port} is not in the allow-list (--allow-host)")
            },
        );
        let body = format!("tofuflow: egress to {host}:{port} is not allowed for this task\n");
        let _ = conn
            .write_all(format!("HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
            .await;
        return Ok(());
    }
    let mut up = match connect(&host, port).await {
        Ok(u) => u,
        Err(e) => {
            sink.line(LogStream::System, format!("tofuflow: egress: {e}"));
            let _ = conn
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return Ok(());
        }
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
    } else {
        // Origin-form request line; one destination per connection.
        let path = target
            .strip_prefix("http://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or("/");
        let version = parts.next().unwrap_or("HTTP/1.1");
        let mut out = format!("{method} {path} {version}\r\n");
        for l in lines.filter(|l| !l.is_empty()) {
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
        up.write_all(out.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    up.write_all(&rest).await.map_err(|e| e.to_string())?;
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
    Ok(())
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
}
