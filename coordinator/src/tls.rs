//! TLS for the coordinator's two listeners (rustls, the ring provider): the certificate and key
//! read with errors that name the file, optional client certificates checked against
//! `--tls-client-ca`, and an accept loop that finishes each handshake in its own task and logs
//! a failed one with the peer and what it most likely means.
//!
//! Mutual TLS is optional at the handshake (users may connect without a client certificate), but
//! a certificate that is presented must be signed by the client CA, or the handshake fails. The
//! agent API then requires one: [`require_client_cert`] runs before the agent token check.

use crate::auth::{Api, Failures};
use crate::error::Error;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{server::WebPkiClientVerifier, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of both listeners: gRPC offers `h2`, the HTTP side `http/1.1`.
#[derive(Clone)]
pub struct Tls {
    pub grpc: TlsAcceptor,
    pub http: TlsAcceptor,
    /// Agents must present a client certificate (signed by `--tls-client-ca`).
    pub agent_certs: bool,
}

/// Reads a PEM file, naming the flag and the file when it cannot be read.
fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {flag} file {}: {e} (give the path of a PEM file)",
            path.display()
        )
    })
}

/// The certificates of a PEM file (a chain, or the client CA's certificates).
fn certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&read(path, flag)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): is it DER, \
             or the key? convert DER with `openssl x509 -inform der -in FILE -out FILE.pem`",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&read(path, "--tls-key")?).map_err(|e| {
        format!(
            "--tls-key file {} holds no usable PEM private key ({e}): give the key of the \
             --tls-cert certificate (-----BEGIN PRIVATE KEY-----; convert with `openssl pkey -in \
             FILE -out FILE.pem`)",
            path.display()
        )
    })
}

impl Tls {
    /// Loads the server identity and the client CA; `None` when TLS is not configured.
    pub fn load(
        cert: Option<&Path>,
        key_file: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<Tls>, String> {
        let (cert, key_file) = match (cert, key_file) {
            (Some(c), Some(k)) => (c, k),
            (None, None) if client_ca.is_some() => {
                return Err("--tls-client-ca needs --tls-cert and --tls-key (the coordinator's own certificate)".into())
            }
            (None, None) => return Ok(None),
            _ => return Err("--tls-cert and --tls-key go together: give both or neither".into()),
        };
        let provider = tofuflow_proto::tls::provider();
        let verifier = match client_ca {
            None => None,
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca, "--tls-client-ca")? {
                    roots
                        .add(c)
                        .map_err(|e| format!("--tls-client-ca file {}: {e}", ca.display()))?;
                }
                let v =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| format!("--tls-client-ca file {}: {e}", ca.display()))?;
                Some(v)
            }
        };
        let (chain, key) = (certs(cert, "--tls-cert")?, key(key_file)?);
        let config = |alpn: &[u8]| -> Result<TlsAcceptor, String> {
            let b = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?;
            let b = match &verifier {
                Some(v) => b.with_client_cert_verifier(v.clone()),
                None => b.with_no_client_auth(),
            };
            let mut c = b
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| {
                    format!(
                    "--tls-cert {} and --tls-key {} do not make a usable identity: {e} (is the \
                     key the one of this certificate?)",
                    cert.display(),
                    key_file.display()
                )
                })?;
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsAcceptor::from(Arc::new(c)))
        };
        Ok(Some(Tls {
            grpc: config(b"h2")?,
            http: config(b"http/1.1")?,
            agent_certs: client_ca.is_some(),
        }))
    }
}

/// What a failed server-side handshake most likely means, for the log.
pub fn handshake_hint(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("unknownissuer") || e.contains("badsignature") {
        "the client's certificate is not signed by --tls-client-ca"
    } else if e.contains("unknownca") || e.contains("badcertificate") {
        "the client does not trust this coordinator's certificate: give it the CA with --tls-ca"
    } else if e.contains("expired") {
        "a certificate has expired"
    } else if e.contains("invalidcontenttype") || e.contains("corrupt message") {
        "the client speaks plain text: it must use an https:// URL"
    } else if e.contains("timed out") {
        "the client did not finish the handshake"
    } else {
        "see the error"
    }
}

/// Accepts connections on `listener` and finishes each handshake in its own task (a slow
/// client holds up no one), handing finished streams to the receiver until `shutdown`.
pub fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    api: &'static str,
    shutdown: CancellationToken,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(api, error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                let error = match r {
                    Ok(Ok(s)) => {
                        let _ = tx.send((s, peer)).await;
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "handshake timed out".to_string(),
                };
                tracing::warn!(api, %peer, %error, hint = handshake_hint(&error), "TLS handshake failed");
            });
        }
    });
    rx
}

/// The HTTP side's listener over finished handshakes (for `axum::serve`).
pub struct HttpListener {
    pub incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for HttpListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(c) => c,
            // The accept loop stopped (shutdown): the server is closing anyway.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Refuses an agent-API call that came without a client certificate (with `--tls-client-ca`,
/// every certificate presented was checked against it in the handshake).
pub fn require_client_cert(
    req: &tonic::Request<()>,
    failures: &Failures,
) -> Result<(), tonic::Status> {
    if req.peer_certs().is_some_and(|c| !c.is_empty()) {
        return Ok(());
    }
    failures.record(Api::Agent, req.remote_addr(), "no client certificate");
    Err(Error::Unauthenticated(
        "the agent API requires a client certificate signed by the coordinator's --tls-client-ca: \
         start the agent with --tls-cert and --tls-key"
            .into(),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_handshakes_are_explained() {
        let h = handshake_hint("invalid peer certificate: UnknownIssuer");
        assert!(h.contains("--tls-client-ca"), "{h}");
        let h = handshake_hint("received fatal alert: BadCertificate");
        assert!(h.contains("--tls-ca"), "{h}");
        let h = handshake_hint("received corrupt message of type InvalidContentType");
        assert!(h.contains("https://"), "{h}");
    }

    #[test]
    fn tls_flags_go_together() {
        let p = Path::new("/nonexistent.pem");
        assert!(Tls::load(None, None, None).unwrap().is_none());
        let e = Tls::load(Some(p), None, None).err().unwrap();
        assert!(e.contains("go together"), "{e}");
        let e = Tls::load(None, None, Some(p)).err().unwrap();
        assert!(e.contains("needs --tls-cert"), "{e}");
        let e = Tls::load(Some(p), Some(p), None).err().unwrap();
        assert!(
            e.contains("cannot read --tls-cert file /nonexistent.pem"),
            "{e}"
        );
    }
}
