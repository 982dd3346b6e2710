//! The agent's TLS: the files of its gRPC channel (`--tls-ca`, `--tls-cert`, `--tls-key`), and the
//! rustls client configuration the state-backend relay speaks to an https coordinator with.

use crate::Config;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tofuflow_proto::tls::{read_pem, ClientFiles};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The TLS files of the agent's configuration.
pub fn files(cfg: &Config) -> ClientFiles<'_> {
    ClientFiles {
        ca: cfg.tls_ca.as_deref(),
        cert: cfg.tls_cert.as_deref(),
        key: cfg.tls_key.as_deref(),
    }
}

/// The certificates of a PEM file given by `flag`.
fn certs(path: &std::path::Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(&read_pem(path, flag, "CERTIFICATE")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} file {} is not valid PEM: {e}", path.display()))
}

/// The roots the relay trusts: `--tls-ca`, or the system's.
fn roots(cfg: &Config) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &cfg.tls_ca {
        Some(ca) => {
            for c in certs(ca, "--tls-ca")? {
                roots
                    .add(c)
                    .map_err(|e| format!("--tls-ca file {}: {e}", ca.display()))?;
            }
        }
        None => {
            // Unreadable system certificates are skipped, as a browser would.
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            tracing::debug!(roots = added, "system CA certificates loaded");
        }
    }
    Ok(roots)
}

/// The relay's client configuration: the roots, and the agent's certificate when it has one.
pub fn relay_config(cfg: &Config) -> Result<Arc<ClientConfig>, String> {
    let provider = tofuflow_proto::tls::provider();
    let b = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(cfg)?);
    let mut c = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "--tls-cert")?;
            let k = PrivateKeyDer::from_pem_slice(&read_pem(key, "--tls-key", "PRIVATE KEY")?)
                .map_err(|e| format!("--tls-key file {}: {e}", key.display()))?;
            b.with_client_auth_cert(chain, k).map_err(|e| {
                format!(
                    "--tls-cert {} and --tls-key {} do not make a usable identity: {e} (is the \
                     key the one of this certificate?)",
                    cert.display(),
                    key.display()
                )
            })?
        }
        _ => b.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}
