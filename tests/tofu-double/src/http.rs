//! A minimal HTTP/1.1 client (plain `http://` only) for the `http` state backend: custom methods
//! (LOCK/UNLOCK), Basic auth, `Content-MD5`, and go-retryablehttp's retry rule (connection errors,
//! 429 and 5xx other than 501, exponential backoff between `retry_wait_min` and `retry_wait_max`).

use base64::Engine;
use md5::{Digest, Md5};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct Client {
    pub username: Option<String>,
    pub password: Option<String>,
    pub retry_max: u32,
    pub retry_wait_min: Duration,
    pub retry_wait_max: Duration,
}

impl Client {
    /// Sends one request, retrying as the real client does. `Err` is a transport failure after
    /// all retries.
    pub fn send(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<Response, String> {
        let mut attempt = 0;
        loop {
            let r = self.send_once(method, url, body);
            let retry = match &r {
                Err(_) => true,
                Ok(resp) => resp.status == 429 || (resp.status >= 500 && resp.status != 501),
            };
            if !retry || attempt >= self.retry_max {
                return r;
            }
            let wait = self
                .retry_wait_min
                .saturating_mul(1 << attempt.min(16))
                .min(self.retry_wait_max);
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    fn send_once(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<Response, String> {
        crate::ui::tf_log("DEBUG", &format!("[http backend] {method} {url}"));
        let what = format!("{method} {url}");
        let (mut s, hostport, path) = connect(url, &what)?;
        let req = self.request_head(method, path, hostport, body);
        s.write_all(req.as_bytes())
            .and_then(|_| s.write_all(body.unwrap_or_default()))
            .map_err(|e| format!("{what}: {e}"))?;
        read_response(BufReader::new(s), &what)
    }

    /// The request line and headers (Basic auth, and `Content-MD5` with a body).
    fn request_head(
        &self,
        method: &str,
        path: &str,
        hostport: &str,
        body: Option<&[u8]>,
    ) -> String {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: OpenTofu/1.9.0 (tofu-double)\r\nConnection: close\r\n"
        );
        if let Some(u) = &self.username {
            let cred = format!("{}:{}", u, self.password.clone().unwrap_or_default());
            req.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(cred)
            ));
        }
        match body {
            Some(b) => {
                let md5 = Md5::digest(b);
                req.push_str("Content-Type: application/json\r\n");
                req.push_str(&format!(
                    "Content-MD5: {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(md5)
                ));
                req.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            }
            None => req.push_str("Content-Length: 0\r\n\r\n"),
        }
        req
    }
}

/// Connects to an `http://` URL's host: the stream, `host:port` as given and the path.
fn connect<'u>(url: &'u str, what: &str) -> Result<(TcpStream, &'u str, &'u str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url:?}: the stand-in speaks plain http only"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("{what}: {e}"))?
        .next()
        .ok_or_else(|| format!("{what}: no address"))?;
    let s = TcpStream::connect_timeout(&sock, Duration::from_secs(10))
        .map_err(|e| format!("{what}: dial tcp {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    Ok((s, hostport, path))
}

/// A response's status and body (by `Content-Length`, chunked, or to the end).
fn read_response(mut r: BufReader<TcpStream>, what: &str) -> Result<Response, String> {
    let io = |e: std::io::Error| format!("{what}: {e}");
    let mut line = String::new();
    r.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{what}: malformed response {line:?}"))?;
    let (mut len, mut chunked): (Option<usize>, bool) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line).map_err(io)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(io)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| format!("{what}: bad chunk size"))?;
            if n == 0 {
                break;
            }
            let mut buf = vec![0; n];
            r.read_exact(&mut buf).map_err(io)?;
            body.extend_from_slice(&buf);
            line.clear();
            r.read_line(&mut line).ok();
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    } else {
        r.read_to_end(&mut body).map_err(io)?;
    }
    Ok(Response { status, body })
}
