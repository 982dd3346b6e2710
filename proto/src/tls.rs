//! TLS on the client side (the CLI, the agent): PEM files read with errors that name them, the
//! tonic configuration for an `https://` coordinator URL, and what a failed handshake means.

use std::path::Path;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// The TLS files a client was given (`--tls-ca`, and for an agent `--tls-cert`/`--tls-key`).
#[derive(Clone, Debug, Default)]
pub struct ClientFiles<'a> {
    /// The CA that signed the coordinator's certificate; the system roots when unset.
    pub ca: Option<&'a Path>,
    /// The client certificate (PEM chain) for mutual TLS.
    pub cert: Option<&'a Path>,
    /// The client certificate's private key (PEM).
    pub key: Option<&'a Path>,
}

/// Reads a PEM file given by `flag`, refusing a file that holds no PEM block of `label`
/// (`CERTIFICATE`, `PRIVATE KEY`) with what to do instead.
pub fn read_pem(path: &Path, flag: &str, label: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {flag} file {}: {e} (give the path of a PEM file)",
            path.display()
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains(label));
    if !found {
        return Err(format!(
            "{flag} file {} holds no PEM {label} (a -----BEGIN ...{label}----- block): is it DER? \
             convert it with `openssl x509 -in FILE -out FILE.pem` (a certificate) or \
             `openssl pkey -in FILE -out FILE.pem` (a key)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The tonic TLS configuration for these files: the CA (or the system roots) and, when both
/// are given, the client identity.
pub fn client_config(files: &ClientFiles) -> Result<ClientTlsConfig, String> {
    let mut tls = ClientTlsConfig::new();
    tls = match files.ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem(
            ca,
            "--tls-ca",
            "CERTIFICATE",
        )?)),
        None => tls.with_native_roots(),
    };
    match (files.cert, files.key) {
        (Some(c), Some(k)) => {
            let cert = read_pem(c, "--tls-cert", "CERTIFICATE")?;
            let key = read_pem(k, "--tls-key", "PRIVATE KEY")?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => return Err("--tls-cert and --tls-key go together: give both or neither".into()),
    }
    Ok(tls)
}

/// Adds TLS to `endpoint` for an `https://` URL; refuses TLS files with an `http://` one (they
/// would silently be ignored).
pub fn endpoint(endpoint: Endpoint, url: &str, files: &ClientFiles) -> Result<Endpoint, String> {
    let given = files.ca.is_some() || files.cert.is_some() || files.key.is_some();
    if !url.starts_with("https://") {
        if given {
            return Err(format!(
                "TLS files are given but the coordinator URL {url} is not https: use https://{}",
                url.split_once("://").map_or(url, |(_, rest)| rest)
            ));
        }
        return Ok(endpoint);
    }
    endpoint
        .tls_config(client_config(files)?)
        .map_err(|e| format!("cannot set up TLS for {url}: {}", chain(&e)))
}

/// An error with all its causes, `: `-separated (tonic's own message is only "transport error").
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A status's message and the causes behind it (a transport failure's reason is only there).
pub fn status_text(s: &tonic::Status) -> String {
    let mut text = s.message().to_string();
    let mut cur = std::error::Error::source(s);
    while let Some(c) = cur {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = c.source();
    }
    text
}

/// For a call that failed in transport (not an answer from the coordinator, which carries no
/// cause): the message when TLS is the likely reason, with what to do. A client certificate the
/// coordinator refuses shows only as a connection closed after the handshake (TLS 1.3 servers
/// check it once the client considers the handshake done), as does a plain-text client at a
/// TLS port.
pub fn transport_failure(s: &tonic::Status, url: &str, client_cert: bool) -> Option<String> {
    std::error::Error::source(s)?;
    let why = status_text(s);
    if let Some(h) = hint(&why) {
        return Some(format!(
            "TLS with the coordinator at {url} failed: {why} ({h})"
        ));
    }
    let w = why.to_ascii_lowercase();
    let closed = ["closed", "broken pipe", "reset", "protocol error"]
        .iter()
        .any(|x| w.contains(x))
        || w.trim() == "transport error";
    if !closed {
        return None;
    }
    if let Some(rest) = url.strip_prefix("http://") {
        Some(format!(
            "the coordinator at {url} closed the connection: {why} (if it serves TLS, use \
             https://{rest} with --tls-ca)"
        ))
    } else if client_cert {
        Some(format!(
            "TLS with the coordinator at {url} failed: {why} (the coordinator closed the \
             connection after the handshake: it most likely refused this client's certificate, \
             which must be signed by its --tls-client-ca; the coordinator's log says why)"
        ))
    } else {
        None
    }
}

/// What a client-side TLS failure means and what to do, when `message` (an error chain) is one.
pub fn hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    if m.contains("unknownissuer") || m.contains("unknown issuer") {
        Some("the coordinator's certificate is not signed by a CA this client trusts: give the CA that signed it with --tls-ca (TOFUFLOW_TLS_CA)")
    } else if m.contains("notvalidforname") || m.contains("not valid for name") {
        Some("the coordinator's certificate does not name the host in the URL: use a name or address listed in its subjectAltName")
    } else if m.contains("certificate") && m.contains("expired") {
        Some("a certificate has expired: renew it")
    } else if m.contains("certificaterequired") || m.contains("certificate required") {
        Some("the coordinator requires a client certificate: give --tls-cert and --tls-key")
    } else if m.contains("unknownca")
        || m.contains("unknown ca")
        || m.contains("badcertificate")
        || m.contains("bad certificate")
        || m.contains("decrypterror")
    {
        Some("the coordinator refused this client's certificate: it must be signed by the coordinator's --tls-client-ca")
    } else if m.contains("invalidcontenttype")
        || m.contains("corrupt message")
        || m.contains("wrong version number")
    {
        Some("the coordinator does not speak TLS on this port: use an http:// URL, or start it with --tls-cert and --tls-key")
    } else {
        None
    }
}

/// The crypto provider of every rustls configuration here: ring (no C toolchain needed).
/// rustls marks ring's default provider deprecated only for lacking post-quantum key exchange,
/// which aws-lc-rs would bring at the cost of a C build.
#[allow(deprecated)]
pub fn provider() -> std::sync::Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_handshakes_say_what_to_fix() {
        let unknown = "transport error: invalid peer certificate: UnknownIssuer";
        assert!(hint(unknown).unwrap().contains("--tls-ca"));
        let refused = "received fatal alert: UnknownCA";
        assert!(hint(refused).unwrap().contains("--tls-client-ca"));
        let plain = "received corrupt message of type InvalidContentType";
        assert!(hint(plain).unwrap().contains("http://"));
        assert_eq!(hint("tcp connect error: Connection refused"), None);
        assert_eq!(hint("lease expired"), None, "only certificates expire here");
    }

    #[test]
    fn a_closed_connection_points_at_tls() {
        let closed =
            || tonic::Status::from_error(Box::new(std::io::Error::other("connection closed")));
        let e = transport_failure(&closed(), "http://h:7700", false).unwrap();
        assert!(e.contains("use https://h:7700 with --tls-ca"), "{e}");
        let e = transport_failure(&closed(), "https://h:7700", true).unwrap();
        assert!(e.contains("--tls-client-ca"), "{e}");
        assert_eq!(transport_failure(&closed(), "https://h:7700", false), None);
        let answer = tonic::Status::unauthenticated("connection closed by policy");
        assert_eq!(
            transport_failure(&answer, "http://h:7700", true),
            None,
            "an answer from the coordinator is not a transport failure"
        );
    }

    #[test]
    fn tls_files_with_a_plain_http_url_are_refused() {
        let ca = Path::new("/nonexistent/ca.pem");
        let files = ClientFiles {
            ca: Some(ca),
            ..Default::default()
        };
        let url = "http://127.0.0.1:7700";
        let e = endpoint(Endpoint::from_static("http://127.0.0.1:7700"), url, &files).unwrap_err();
        assert!(e.contains("use https://127.0.0.1:7700"), "{e}");
        let e = client_config(&files).unwrap_err();
        assert!(
            e.contains("cannot read --tls-ca file /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_pem_is_refused_with_the_conversion() {
        let dir = std::env::temp_dir().join(format!("tofuflow-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("cert.der");
        std::fs::write(&f, [0x30, 0x82, 0x01]).unwrap();
        let e = read_pem(&f, "--tls-ca", "CERTIFICATE").unwrap_err();
        assert!(
            e.contains("holds no PEM CERTIFICATE") && e.contains("openssl"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
