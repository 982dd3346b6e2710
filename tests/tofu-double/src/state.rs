//! State v4 files and the two backends the stand-in speaks: `local` (a file plus an OS lock) and
//! `http` (OpenTofu's wire protocol: LOCK, GET, POST `?ID=`, UNLOCK, exactly as
//! `internal/backend/remote-state/http/client.go` sends them).

use crate::http;
use crate::ui::{self, Diag};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StateOutput {
    pub value: Value,
    #[serde(rename = "type")]
    pub typ: Value,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Instance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub schema_version: u32,
    pub attributes: Value,
    #[serde(default)]
    pub sensitive_attributes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub mode: String,
    #[serde(rename = "type")]
    pub typ: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
    pub provider: String,
    pub instances: Vec<Instance>,
}

pub const PROVIDER: &str = "provider[\"terraform.io/builtin/terraform\"]";

/// A state file in format version 4.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StateFile {
    pub version: u32,
    pub terraform_version: String,
    pub serial: u64,
    pub lineage: String,
    #[serde(default)]
    pub outputs: BTreeMap<String, StateOutput>,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub check_results: Option<Value>,
}

impl StateFile {
    /// A state with nothing in it (serial 0, no lineage).
    pub fn empty() -> StateFile {
        StateFile {
            version: 4,
            terraform_version: crate::ui::VERSION.into(),
            serial: 0,
            lineage: String::new(),
            outputs: BTreeMap::new(),
            resources: Vec::new(),
            check_results: None,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<StateFile, Diag> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            Diag::error(
                "Failed to load state",
                format!("The state is not valid JSON: {e}"),
            )
        })?;
        match v.get("version").and_then(Value::as_u64) {
            Some(4) => {}
            other => {
                return Err(Diag::error(
                    "Unsupported state file format",
                    format!(
                    "The state file uses format version {}, which is not supported by OpenTofu {}.",
                    other.map(|x| x.to_string()).unwrap_or("(missing)".into()),
                    ui::VERSION
                ),
                ))
            }
        }
        serde_json::from_value(v).map_err(|e| {
            Diag::error(
                "Failed to load state",
                format!("The state file is malformed: {e}"),
            )
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).unwrap_or_default();
        b.push(b'\n');
        b
    }

    /// Same content apart from serial (what decides whether a write is needed).
    pub fn same_content(&self, other: &StateFile) -> bool {
        self.outputs == other.outputs
            && self.resources == other.resources
            && self.lineage == other.lineage
    }
}

/// Wraps a dynamic attribute value the way state v4 stores `DynamicPseudoType` values.
pub fn wrap_dynamic(v: &Option<Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(v) => json!({"value": v, "type": crate::eval::cty_type(v)}),
    }
}

pub fn unwrap_dynamic(v: Option<&Value>) -> Option<Value> {
    match v {
        None | Some(Value::Null) => None,
        Some(v) => v.get("value").cloned(),
    }
}

/// OpenTofu's LockInfo (`internal/states/statemgr/locker.go`): every key always present.
pub fn lock_info(id: &str, operation: &str) -> Value {
    let who = format!(
        "{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "root".into()),
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    );
    json!({
        "ID": id,
        "Operation": operation,
        "Info": "",
        "Who": who,
        "Version": ui::VERSION,
        "Created": ui::rfc3339_nanos(SystemTime::now()),
        "Path": "",
    })
}

fn lock_error(holder: &Value, msg: &str) -> Diag {
    let g = |k: &str| {
        holder
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Diag::error(
        "Error acquiring the state lock",
        format!(
            "Error message: {msg}\nLock Info:\n  ID:        {}\n  Path:      {}\n  Operation: {}\n  Who:       {}\n  Version:   {}\n  Created:   {}\n  Info:      {}\n\n\
             OpenTofu acquires a state lock to protect the state from being written\n\
             by multiple users at the same time. Please resolve the issue above and try\n\
             again. For most commands, you can disable locking with the \"-lock=false\"\n\
             flag, but this is not recommended.",
            g("ID"), g("Path"), g("Operation"), g("Who"), g("Version"), g("Created"), g("Info")
        ),
    )
}

#[allow(clippy::large_enum_variant)] // one per process
pub enum Backend {
    Local {
        path: PathBuf,
        lock_file: Option<nix::fcntl::Flock<std::fs::File>>,
    },
    Http {
        address: String,
        lock_address: Option<String>,
        unlock_address: Option<String>,
        update_method: String,
        lock_method: String,
        unlock_method: String,
        client: http::Client,
        lock: Option<Value>,
    },
}

fn cfg_str(cfg: &Map<String, Value>, key: &str) -> Option<String> {
    let env = format!("TF_HTTP_{}", key.to_ascii_uppercase());
    match cfg.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => std::env::var(env).ok().filter(|s| !s.is_empty()),
    }
}

/// Locks a local state file with an OS lock on `.NAME.lock.info` (holding the lock's info):
/// `None` when locked, the holder's info and the error when another process holds it.
fn lock_local(
    path: &std::path::Path,
    lock_file: &mut Option<nix::fcntl::Flock<std::fs::File>>,
    info: &Value,
) -> Result<Option<(Value, String)>, Diag> {
    let mut lp = path.as_os_str().to_os_string();
    lp.push(".lock.info");
    let lp = PathBuf::from(lp);
    let lp = lp.with_file_name(format!(
        ".{}",
        lp.file_name().unwrap_or_default().to_string_lossy()
    ));
    if let Some(parent) = lp.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lp)
        .map_err(|e| Diag::error("Error acquiring the state lock", e.to_string()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(guard) => {
            std::fs::write(&lp, serde_json::to_vec(info).unwrap_or_default()).ok();
            *lock_file = Some(guard);
            Ok(None)
        }
        Err(_) => {
            let holder = std::fs::read(&lp)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            Ok(Some((holder, "resource temporarily unavailable".into())))
        }
    }
}

impl Backend {
    /// Opens the backend described by its type and (merged) configuration.
    pub fn open(
        kind: &str,
        cfg: &Map<String, Value>,
        dir: &Path,
        workspace: &str,
    ) -> Result<Backend, Diag> {
        match kind {
            "http" => {
                if workspace != "default" {
                    return Err(Diag::error(
                        "Failed to select workspace",
                        "workspaces not supported",
                    ));
                }
                let address = cfg_str(cfg, "address").ok_or_else(|| {
                    Diag::error(
                        "Missing required argument",
                        "The http backend needs \"address\" (in the backend block, -backend-config or TF_HTTP_ADDRESS).",
                    )
                })?;
                let secs =
                    |k: &str, d: u64| cfg_str(cfg, k).and_then(|v| v.parse().ok()).unwrap_or(d);
                Ok(Backend::Http {
                    address,
                    lock_address: cfg_str(cfg, "lock_address"),
                    unlock_address: cfg_str(cfg, "unlock_address"),
                    update_method: cfg_str(cfg, "update_method").unwrap_or_else(|| "POST".into()),
                    lock_method: cfg_str(cfg, "lock_method").unwrap_or_else(|| "LOCK".into()),
                    unlock_method: cfg_str(cfg, "unlock_method").unwrap_or_else(|| "UNLOCK".into()),
                    client: http::Client {
                        username: cfg_str(cfg, "username"),
                        password: cfg_str(cfg, "password"),
                        retry_max: secs("retry_max", 2) as u32,
                        retry_wait_min: Duration::from_secs(secs("retry_wait_min", 1)),
                        retry_wait_max: Duration::from_secs(secs("retry_wait_max", 30)),
                    },
                    lock: None,
                })
            }
            _ => {
                let rel = match cfg.get("path").and_then(Value::as_str) {
                    Some(p) => PathBuf::from(p),
                    None if workspace == "default" => PathBuf::from("terraform.tfstate"),
                    None => PathBuf::from("terraform.tfstate.d")
                        .join(workspace)
                        .join("terraform.tfstate"),
                };
                Ok(Backend::Local {
                    path: dir.join(rel),
                    lock_file: None,
                })
            }
        }
    }

    /// Reads the current state (`None` when there is none).
    pub fn read(&self) -> Result<Option<StateFile>, Diag> {
        match self {
            Backend::Local { path, .. } => match std::fs::read(path) {
                Ok(b) if b.iter().all(|c| c.is_ascii_whitespace()) => Ok(None),
                Ok(b) => StateFile::parse(&b).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Diag::error("Failed to load state", e.to_string())),
            },
            Backend::Http {
                address, client, ..
            } => {
                let r = client.send("GET", address, None).map_err(|e| {
                    Diag::error("Failed to load state", format!("Failed to get state: {e}"))
                })?;
                match r.status {
                    200 if r.body.is_empty() => Ok(None),
                    200 => StateFile::parse(&r.body).map(Some),
                    204 | 404 => Ok(None),
                    401 => Err(Diag::error(
                        "Failed to load state",
                        "HTTP remote state endpoint requires auth",
                    )),
                    403 => Err(Diag::error(
                        "Failed to load state",
                        "HTTP remote state endpoint invalid auth",
                    )),
                    500 => Err(Diag::error(
                        "Failed to load state",
                        "HTTP remote state internal server error",
                    )),
                    n => Err(Diag::error(
                        "Failed to load state",
                        format!("Unexpected HTTP response code {n}"),
                    )),
                }
            }
        }
    }

    /// Writes a state (with `?ID=` while this process holds a lock).
    pub fn write(&mut self, st: &StateFile) -> Result<(), Diag> {
        let body = st.to_bytes();
        match self {
            Backend::Local { path, .. } => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).ok();
                }
                if path.exists() {
                    let mut backup = path.clone().into_os_string();
                    backup.push(".backup");
                    std::fs::copy(&*path, backup).ok();
                }
                let tmp = path.with_extension("tfstate.tmp");
                std::fs::write(&tmp, &body)
                    .and_then(|_| std::fs::rename(&tmp, &*path))
                    .map_err(|e| Diag::error("Failed to save state", e.to_string()))
            }
            Backend::Http {
                address,
                update_method,
                client,
                lock,
                ..
            } => {
                let url = match lock
                    .as_ref()
                    .and_then(|l| l.get("ID"))
                    .and_then(Value::as_str)
                {
                    Some(id) => format!(
                        "{address}{}ID={id}",
                        if address.contains('?') { '&' } else { '?' }
                    ),
                    None => address.clone(),
                };
                let r = client
                    .send(update_method, &url, Some(&body))
                    .map_err(|e| Diag::error("Failed to save state", e))?;
                match r.status {
                    200 | 201 | 204 => Ok(()),
                    n => Err(Diag::error(
                        "Failed to save state",
                        format!("HTTP error: {n}{}", body_hint(&r.body)),
                    )),
                }
            }
        }
    }

    /// True for a local state file (written at every change of an apply).
    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Local { .. })
    }

    pub fn locking_enabled(&self) -> bool {
        match self {
            Backend::Local { .. } => true,
            Backend::Http { unlock_address, .. } => unlock_address.is_some(),
        }
    }

    /// Takes the lock, retrying with OpenTofu's backoff (1 s doubling, capped at 16 s) until
    /// `timeout`.
    pub fn lock(&mut self, operation: &str, timeout: Duration, ui: &ui::Ui) -> Result<(), Diag> {
        let id = uuid::Uuid::new_v4().to_string();
        let info = lock_info(&id, operation);
        let start = Instant::now();
        let mut wait = Duration::from_secs(1);
        let mut announced = false;
        loop {
            match self.try_lock(&info)? {
                None => {
                    if announced {
                        ui.line(
                            "info",
                            "state_lock_acquire",
                            "Acquiring state lock. This may take a few moments...",
                            json!({}),
                        );
                    }
                    return Ok(());
                }
                Some((holder, msg)) => {
                    if start.elapsed() + wait > timeout {
                        return Err(lock_error(&holder, &msg));
                    }
                    announced = ui.json;
                    std::thread::sleep(wait);
                    if crate::signals::interrupted() {
                        return Err(lock_error(&holder, "context canceled"));
                    }
                    wait = (wait * 2).min(Duration::from_secs(16));
                }
            }
        }
    }

    /// One lock attempt: `Ok(None)` = acquired, `Ok(Some(holder))` = held by someone else.
    fn try_lock(&mut self, info: &Value) -> Result<Option<(Value, String)>, Diag> {
        match self {
            Backend::Local { path, lock_file } => lock_local(path, lock_file, info),
            Backend::Http {
                lock_address,
                lock_method,
                client,
                lock,
                ..
            } => {
                let Some(addr) = lock_address.clone() else {
                    return Ok(None);
                };
                let body = serde_json::to_vec(info).unwrap_or_default();
                let r = client
                    .send(lock_method, &addr, Some(&body))
                    .map_err(|e| Diag::error("Error acquiring the state lock", e))?;
                match r.status {
                    200 => {
                        *lock = Some(info.clone());
                        Ok(None)
                    }
                    409 | 423 => {
                        let holder: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        let id = holder
                            .get("ID")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        Ok(Some((
                            holder,
                            format!("HTTP remote state already locked: ID={id}"),
                        )))
                    }
                    401 => Err(Diag::error(
                        "Error acquiring the state lock",
                        "HTTP remote state endpoint requires auth",
                    )),
                    403 => Err(Diag::error(
                        "Error acquiring the state lock",
                        "HTTP remote state endpoint invalid auth",
                    )),
                    n => Err(Diag::error(
                        "Error acquiring the state lock",
                        format!("Unexpected HTTP response code {n}{}", body_hint(&r.body)),
                    )),
                }
            }
        }
    }

    /// Releases the lock this process holds.
    pub fn unlock(&mut self) -> Result<(), Diag> {
        match self {
            Backend::Local { path, lock_file } => {
                if lock_file.take().is_some() {
                    let mut lp = path.clone().into_os_string();
                    lp.push(".lock.info");
                    let lp = PathBuf::from(lp);
                    let lp = lp.with_file_name(format!(
                        ".{}",
                        lp.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    std::fs::remove_file(lp).ok();
                }
                Ok(())
            }
            Backend::Http { .. } => {
                let info = match self {
                    Backend::Http { lock, .. } => lock.take(),
                    _ => None,
                };
                match info {
                    Some(info) => {
                        self.send_unlock(Some(serde_json::to_vec(&info).unwrap_or_default()))
                    }
                    None => Ok(()),
                }
            }
        }
    }

    /// UNLOCK with the given body (`None` = OpenTofu 1.9's body-less force-unlock).
    pub fn send_unlock(&mut self, body: Option<Vec<u8>>) -> Result<(), Diag> {
        if let Backend::Http {
            unlock_address: Some(addr),
            unlock_method,
            client,
            ..
        } = self
        {
            let r = client
                .send(unlock_method, addr, body.as_deref())
                .map_err(|e| Diag::error("Error releasing the state lock", e))?;
            if r.status != 200 {
                return Err(Diag::error(
                    "Error releasing the state lock",
                    format!(
                        "Error message: HTTP error: {}{}",
                        r.status,
                        body_hint(&r.body)
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn body_hint(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {}", s.chars().take(400).collect::<String>())
    }
}

/// `.terraform/terraform.tfstate`: the backend configuration saved by `init`.
pub fn read_backend_cache(data_dir: &Path) -> Option<(String, Map<String, Value>)> {
    let b = std::fs::read(data_dir.join("terraform.tfstate")).ok()?;
    let v: Value = serde_json::from_slice(&b).ok()?;
    let be = v.get("backend")?;
    Some((
        be.get("type")?.as_str()?.to_string(),
        be.get("config")?.as_object()?.clone(),
    ))
}

pub fn write_backend_cache(
    data_dir: &Path,
    kind: &str,
    cfg: &Map<String, Value>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let text = serde_json::to_string(cfg).unwrap_or_default();
    let hash = text
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    let v = json!({
        "version": 3,
        "serial": 1,
        "lineage": uuid::Uuid::new_v4().to_string(),
        "backend": {"type": kind, "config": cfg, "hash": hash},
        "modules": [{"path": ["root"], "outputs": {}, "resources": {}, "depends_on": []}]
    });
    std::fs::write(
        data_dir.join("terraform.tfstate"),
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}
