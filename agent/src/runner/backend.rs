//! The state backend of a task: the coordinator's http backend unless the module declares its
//! own, its URLs as the task reaches them, and the `tofu init` arguments that wire it.

use crate::error::Result;
use crate::report::Reporter;
use std::path::Path;
use tofuflow_proto::v1;

/// The backend a module declares, if any (`backend "s3" {` → "s3").
pub fn declared_backend(dir: &Path) -> Option<String> {
    let rd = std::fs::read_dir(dir).ok()?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".tf") || name.ends_with(".tofu")) {
            continue;
        }
        let Ok(src) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in src.lines() {
            let l = line.trim_start();
            if l.starts_with('#') || l.starts_with("//") {
                continue;
            }
            if let Some(rest) = l.strip_prefix("backend") {
                let rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix('"') {
                    if let Some(end) = r.find('"') {
                        return Some(r[..end].to_string());
                    }
                }
            }
        }
    }
    None
}

/// A backend URL as the task uses it, and the host:port the gateway must reach for it.
/// `isolated` (no host network): a plain-http loopback URL stays as it is (the sandbox relays the
/// same port); any other is pointed at plain http on the task's loopback, and the gateway's relay
/// speaks https upstream for an https one (verifying the coordinator's certificate).
pub fn backend_inside(url: &str, isolated: bool) -> (String, Option<(String, u16)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || auth.starts_with('[') => {
            (h.to_string(), p.parse().unwrap_or(default))
        }
        _ => (auth.to_string(), default),
    };
    let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
    if !isolated {
        return (url.to_string(), None);
    }
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let target = Some((host, port));
    if scheme == "https" || !loopback {
        (format!("http://127.0.0.1:{port}{path}"), target)
    } else {
        (url.to_string(), target)
    }
}

/// The state wiring of one task.
pub(super) struct StateBackend {
    /// The coordinator's http backend holds the state (the module declares none, or `http`).
    pub managed: bool,
    /// The host:port the gateway must reach for the backend, when the network is isolated.
    pub target: Option<(String, u16)>,
    /// The backend is https: the gateway's relay speaks TLS upstream.
    pub tls: bool,
    /// On the host network tofu speaks https itself: the CA bundle it trusts (the system's
    /// roots and the agent's --tls-ca), as tofu sees the path (`SSL_CERT_FILE`).
    pub ca_bundle: Option<String>,
    /// `tofu init` with the backend's URLs.
    pub init: Vec<String>,
}

/// Decides where the state lives and says so in the log. Without the host network, the backend
/// is reached through the gateway's relay, on the task's loopback at the same port (the relay
/// speaks https upstream when the coordinator does).
pub(super) fn prepare(
    spec: &v1::TaskSpec,
    module: &Path,
    isolated: bool,
    rep: &Reporter,
) -> Result<StateBackend> {
    let declared = declared_backend(module);
    let managed = matches!(declared.as_deref(), None | Some("http"));
    let backend = spec.backend.as_ref().map(|b| {
        let (addr, target) = backend_inside(&b.address, isolated);
        let (lock, _) = backend_inside(&b.lock_address, isolated);
        let (unlock, _) = backend_inside(&b.unlock_address, isolated);
        (addr, lock, unlock, target)
    });
    let mut init = vec![
        "init".to_string(),
        "-input=false".into(),
        "-no-color".into(),
    ];
    if managed {
        if declared.is_none() {
            std::fs::write(module.join("tofuflow_backend.tf"), "# Written by tofuflow: state lives in the coordinator.\nterraform {\n  backend \"http\" {}\n}\n")?;
        }
        if let Some((addr, lock, unlock, _)) = &backend {
            init.push(format!("-backend-config=address={addr}"));
            init.push(format!("-backend-config=lock_address={lock}"));
            init.push(format!("-backend-config=unlock_address={unlock}"));
        }
        rep.system(format!(
            "tofuflow: state in the coordinator's http backend ({})",
            spec.backend
                .as_ref()
                .map(|b| b.address.as_str())
                .unwrap_or("?")
        ));
    } else {
        rep.system(format!(
            "tofuflow: the module declares backend {:?}; leaving it alone",
            declared.unwrap_or_default()
        ));
    }
    Ok(StateBackend {
        tls: spec
            .backend
            .as_ref()
            .is_some_and(|b| b.address.starts_with("https://")),
        ca_bundle: None,
        managed,
        target: backend.and_then(|b| b.3),
        init,
    })
}

/// Where the system's CA bundle usually is (Debian, RHEL, SUSE, Alpine).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

impl super::Runner {
    /// Decides where the state lives ([`prepare`]); on the host network with an https backend
    /// and a --tls-ca, writes the CA bundle tofu then trusts into the working directory `wd`
    /// (`inner` as tofu sees it): the system's roots, so providers still reach their APIs, and
    /// the coordinator's CA.
    pub(super) fn state_backend(
        &self,
        spec: &v1::TaskSpec,
        module: &Path,
        isolated: bool,
        (wd, inner): (&Path, &Path),
        rep: &Reporter,
    ) -> Result<StateBackend> {
        let mut state = prepare(spec, module, isolated, rep)?;
        let Some(ca) = self
            .cfg
            .tls_ca
            .as_deref()
            .filter(|_| state.tls && !isolated)
        else {
            return Ok(state);
        };
        let system = std::env::var("SSL_CERT_FILE")
            .ok()
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(|s| s.to_string()))
            .find_map(|p| std::fs::read(p).ok())
            .unwrap_or_default();
        let mut bundle = std::fs::read(ca).map_err(|e| {
            crate::error::TaskError::Setup(format!(
                "cannot read --tls-ca file {}: {e}",
                ca.display()
            ))
        })?;
        bundle.push(b'\n');
        bundle.extend_from_slice(&system);
        std::fs::write(wd.join("tofuflow-ca.pem"), bundle)?;
        state.ca_bundle = Some(inner.join("tofuflow-ca.pem").display().to_string());
        Ok(state)
    }
}
