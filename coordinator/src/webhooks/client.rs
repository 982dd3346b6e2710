//! The HTTP client deliveries are sent with: one HTTP/1.1 POST per connection, with hyper's
//! client (already in the tree through tonic and axum) over a tokio TCP stream, and rustls
//! (the system's roots) for https. The host is resolved here, its addresses checked
//! (`policy::is_private`) and the connection made to a checked address, so a name that
//! resolves to the coordinator's own network is refused even when the URL looked public (and
//! cannot be re-resolved between the check and the connection). Redirects are not followed.

use super::policy;
use axum::http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// How much of an answer's body is kept (for `webhook show`).
pub const EXCERPT_BYTES: usize = 512;

/// What a receiver answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// The start of the answer's body (lossy UTF-8, at most [`EXCERPT_BYTES`]).
    pub excerpt: String,
}

/// Why no answer came.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The URL or the address its host resolves to is not allowed: final, not retried.
    Refused(String),
    /// Resolution, connection, TLS, the exchange or the timeout failed: retried.
    Network(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(m) | Failure::Network(m) => f.write_str(m),
        }
    }
}

/// Sends POST requests to webhook receivers.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl Client {
    /// A client trusting the system's CA certificates, giving up on a request after `timeout`
    /// (connecting, TLS, sending and the answer's head and excerpt together).
    pub fn new(timeout: Duration) -> Result<Client, String> {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped, as a browser would.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let cfg = ClientConfig::builder_with_provider(tofuflow_proto::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            timeout,
        })
    }

    /// How long an attempt may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `body` (JSON) with `headers` to `url`; an error says why no answer came.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
        allow_private: bool,
    ) -> Result<Answer, Failure> {
        let uri = policy::check_url(url, allow_private).map_err(Failure::Refused)?;
        let exchange = self.exchange(&uri, headers, body, allow_private);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Network(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn exchange(
        &self,
        uri: &Uri,
        headers: &[(&str, String)],
        body: String,
        allow_private: bool,
    ) -> Result<Answer, Failure> {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = connect(host, port, allow_private).await?;
        let _ = tcp.set_nodelay(true);
        let req = request(uri, headers, body).map_err(Failure::Refused)?;
        let answer = if https {
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| Failure::Refused(format!("{host} is not a TLS server name: {e}")))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| Failure::Network(format!("TLS with {host}: {e}")))?;
            send(tls, req).await
        } else {
            send(tcp, req).await
        };
        answer.map_err(Failure::Network)
    }
}

/// Resolves `host` and connects to the first address allowed.
async fn connect(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<tokio::net::TcpStream, Failure> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::Network(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = Failure::Network(format!("{host} resolves to no address"));
    for a in addrs {
        if !allow_private && policy::is_private(a.ip()) {
            last = Failure::Refused(format!(
                "refused: {host} resolves to {}, a loopback, private or link-local address (create the webhook with --allow-private if that is meant)",
                a.ip()
            ));
            continue;
        }
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Failure::Network(format!("cannot connect to {a}: {e}")),
        }
    }
    Err(last)
}

fn request(
    uri: &Uri,
    headers: &[(&str, String)],
    body: String,
) -> Result<Request<Full<Bytes>>, String> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let mut b = Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("tofuflow-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("connection", "close");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))
}

/// Sends `req` over `io` (one request, then the connection is dropped) and reads the status
/// and the start of the body.
async fn send<S>(io: S, req: Request<Full<Bytes>>) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = res.status().as_u16();
        let mut body = res.into_body();
        let mut got = Vec::new();
        while got.len() < EXCERPT_BYTES {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        got.extend_from_slice(d);
                    }
                }
                // The status is the answer; a body cut short only shortens the excerpt.
                Some(Err(_)) | None => break,
            }
        }
        got.truncate(EXCERPT_BYTES);
        Ok(Answer {
            status,
            excerpt: String::from_utf8_lossy(&got).into_owned(),
        })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_resolved_to_the_coordinators_network_is_refused_before_connecting() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        match connect("127.0.0.1", port, false).await {
            Err(Failure::Refused(m)) => assert!(m.contains("--allow-private"), "{m}"),
            other => panic!("not refused: {:?}", other.map(|_| ())),
        }
        assert!(connect("127.0.0.1", port, true).await.is_ok());
    }

    #[tokio::test]
    async fn an_answer_is_read_up_to_the_excerpt_and_a_dead_port_is_a_network_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let body = "x".repeat(2 * EXCERPT_BYTES);
            let head = format!(
                "HTTP/1.1 503 Busy\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all((head + &body).as_bytes()).await;
        });
        let c = Client::new(Duration::from_secs(5)).unwrap();
        let url = format!("http://127.0.0.1:{port}/hook");
        let a = c.post(&url, &[], "{}".into(), true).await.unwrap();
        assert_eq!((a.status, a.excerpt.len()), (503, EXCERPT_BYTES));
        let dead = c.post(&url, &[], "{}".into(), true).await.unwrap_err();
        assert!(matches!(dead, Failure::Network(_)), "{dead}");
    }
}
