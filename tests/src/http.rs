//! HTTP/1.1 requests (health, `/metrics`, the state backend as OpenTofu's client sends
//! them; HTTPS for a TLS cluster), with nothing fancier than the fixture needs.

use crate::Cluster;
use std::time::Duration;

/// A plain HTTP GET (the fixture needs nothing fancier).
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    get_on(&mut s, host, path)
}

/// An HTTPS GET trusting only the CA in the PEM file `ca`.
pub fn https_get(url: &str, ca: &std::path::Path) -> std::io::Result<(u16, String)> {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
        roots
            .add(c.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(tofuflow_proto::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
    let name = rustls_pki_types::ServerName::try_from(name).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(std::io::Error::other)?;
    let tcp = std::net::TcpStream::connect(host)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    get_on(&mut rustls::StreamOwned::new(conn, tcp), host, path)
}

/// Sends a GET for `path` on `s` and reads the answer to the end: (status, body).
fn get_on<S: std::io::Read + std::io::Write>(
    s: &mut S,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    // One write: a server that answers after the first bytes and closes must not turn the
    // rest of the request into a broken pipe.
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        if path.is_empty() { "/" } else { path }
    );
    s.write_all(req.as_bytes())?;
    s.flush()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify: the answer is complete anyway.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    let buf = String::from_utf8_lossy(&raw);
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// One HTTP/1.1 request as OpenTofu's `http` backend client sends it (Basic auth, JSON body with
/// `Content-MD5`); returns status and body.
pub fn http_request(
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
) -> (u16, String) {
    use base64::Engine;
    use md5::Digest;
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ));
    }
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
        if !extra_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-md5"))
        {
            req.push_str(&format!(
                "Content-MD5: {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
            ));
        }
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Undo chunked transfer encoding if the server used it.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n.min(tail.len())]);
            rest = tail.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        body.to_string()
    };
    (code, body)
}

/// The value of one Prometheus sample line (`name{labels} value`) in the coordinator's
/// `/metrics`, if present.
pub fn metric(c: &Cluster, sample: &str) -> Option<f64> {
    let (code, body) = c.get("/metrics").ok()?;
    if code != 200 {
        return None;
    }
    sample_in(&body, sample)
}

/// The value of one Prometheus sample line (`name{labels} value`, the sample written whole)
/// in `/metrics` text, if present.
pub fn sample_in(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == sample)
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// A histogram's mean over what was observed between two scrapes of `/metrics` text: the
/// growth of `NAME_sum{LABELS}` over that of `NAME_count{LABELS}` (`labels` as written, e.g.
/// `step="claim"`), if any was observed.
pub fn mean_between(before: &str, after: &str, name: &str, labels: &str) -> Option<f64> {
    let value = |text: &str, sample: String| sample_in(text, &sample).unwrap_or(0.0);
    let delta = |suffix: &str| {
        let sample = match labels {
            "" => format!("{name}_{suffix}"),
            _ => format!("{name}_{suffix}{{{labels}}}"),
        };
        value(after, sample.clone()) - value(before, sample)
    };
    let n = delta("count");
    (n > 0.0).then(|| delta("sum") / n)
}
