//! The coordinator's HTTP JSON API as a client sees it: one request at a time over HTTP/1.1
//! with a bearer token (status, headers, body), and a Server-Sent Events stream read to its
//! end as (id, event, data) triples.

use crate::Cluster;
use std::io::{Read, Write};
use std::time::Duration;

/// An answer: status, the header block (lower-cased names), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let name = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&name))
            .map(|l| l[name.len()..].trim().to_string())
    }
}

/// Removes chunked transfer encoding.
fn unchunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..p]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = p + 2;
        out.extend_from_slice(&rest[start..(start + n).min(rest.len())]);
        rest = rest.get(start + n + 2..).unwrap_or_default();
    }
    out
}

impl Cluster {
    /// `method path` on the coordinator's HTTP side with `token` (none: anonymous), a JSON or
    /// other body, and extra headers; waits for the whole answer.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &[u8])>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let host = self.http_url().trim_start_matches("http://").to_string();
        let mut s = std::net::TcpStream::connect(&host).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let (ctype, bytes) = body.unwrap_or(("application/json", b""));
        if body.is_some() {
            req.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(bytes).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let body = raw.get(split + 4..).unwrap_or_default().to_vec();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Answer {
            status,
            headers: head,
            body: if chunked { unchunk(&body) } else { body },
        }
    }

    /// An SSE stream read until the server ends it: the answer's status and its events as
    /// (id, event, data).
    pub fn api_events(
        &self,
        path: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> (u16, Vec<(String, String, String)>) {
        let extra: Vec<(&str, &str)> = last_event_id
            .map(|id| ("Last-Event-ID", id))
            .into_iter()
            .collect();
        let a = self.api("GET", path, Some(token), None, &extra);
        let text = String::from_utf8_lossy(&a.body).to_string();
        let mut events = Vec::new();
        for block in text.split("\n\n") {
            let (mut id, mut event, mut data) = (String::new(), String::new(), Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.trim_start().to_string());
                }
            }
            if !event.is_empty() || !data.is_empty() {
                events.push((id, event, data.join("\n")));
            }
        }
        (a.status, events)
    }
}
