//! Running one task: a fresh working directory (0700; module, HOME and TMPDIR inside), the
//! bundle, the state-backend wiring, the tofu commands of the phase, artifacts, the result, and
//! removal of the directory afterwards.

mod limits;
mod outcome;
pub mod process;

pub use limits::Effective;

use crate::bundle;
use crate::config::Config;
use crate::error::{Result, TaskError};
use crate::mask::Masker;
use crate::report::Reporter;
use crate::sandbox::{self, cgroup::TaskCgroup, gateway, Network, Sandbox};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// Why a running task was asked to stop.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    UserCancel,
    Timeout(Duration),
    /// The task's pids cgroup refused a fork: a runaway (fork bomb) is stopped.
    ProcessLimit(u64),
    LeaseLost(String),
    Shutdown,
}

/// A task the agent holds a lease for.
pub struct Held {
    pub attempt: u32,
    pub epoch: u64,
    /// The lease's secret: every call about this task carries it.
    pub lease_token: String,
    pub cancel: CancellationToken,
    pub reason: Arc<std::sync::Mutex<Option<StopReason>>>,
}

#[derive(Clone)]
pub struct Runner {
    pub sandbox: Arc<Sandbox>,
    pub cfg: Arc<Config>,
    pub client: crate::Client,
    pub agent_id: String,
}

/// Per-task settings beyond the spec.
struct TaskCtx<'a> {
    lim: Effective,
    slot: u32,
    network: Network,
    cgroup: Option<&'a TaskCgroup>,
    /// The signal that ended the last tofu command, if one did (SIGXCPU, SIGXFSZ, …).
    killed_by: std::sync::Mutex<Option<String>>,
}

struct Done {
    has_changes: bool,
    summary: v1::ChangeSummary,
    outputs_json: String,
    exit_code: i32,
    cancelled: bool,
}

impl Done {
    /// tofu was stopped (cancel, lease lost or shutdown) with exit `code`.
    fn cancelled(code: i32, has_changes: bool) -> Done {
        Done {
            has_changes,
            summary: Default::default(),
            outputs_json: String::new(),
            exit_code: code,
            cancelled: true,
        }
    }
}

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
/// `isolated` (no host network): a loopback URL stays as it is (the sandbox relays the same
/// port); a plain-http one is pointed at the task's loopback; https goes through the proxy.
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
    if scheme == "http" && !loopback {
        (format!("http://127.0.0.1:{port}{path}"), target)
    } else {
        (url.to_string(), target)
    }
}

/// Writes the task's variables files (0600, in its directory; values never go on a command
/// line) and returns their `-var-file=` arguments as tofu sees the paths.
fn write_var_files(spec: &v1::TaskSpec, wd: &Path, inner: &Path) -> Result<Vec<String>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut args = Vec::with_capacity(spec.var_files.len());
    for (i, f) in spec.var_files.iter().enumerate() {
        let safe: String = f
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect();
        let name = format!("varfile-{i}-{safe}");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(wd.join(&name))
            .and_then(|mut file| file.write_all(&f.content))
            .map_err(|e| {
                TaskError::workdir(format!("cannot write the variables file {name}"), e)
            })?;
        args.push(format!("-var-file={}", inner.join(&name).display()));
    }
    Ok(args)
}

/// Hands the working directory to the run user (no link is followed).
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    let (u, g) = (
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        dir,
        u,
        g,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| TaskError::workdir(format!("cannot hand {} to the run user", dir.display()), e))?;
    let rd = std::fs::read_dir(dir)?;
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            chown_tree(&p, uid, gid)?;
        } else {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &p,
                u,
                g,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| {
                TaskError::workdir(format!("cannot hand {} to the run user", p.display()), e)
            })?;
        }
    }
    Ok(())
}

/// Counts a plan's changes from `show -json` output.
pub fn summarize(plan_json: &str) -> Result<v1::ChangeSummary> {
    let v: serde_json::Value = serde_json::from_str(plan_json).map_err(TaskError::PlanJson)?;
    let mut s = v1::ChangeSummary::default();
    for rc in v
        .get("resource_changes")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        let acts: Vec<&str> = rc
            .pointer("/change/actions")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        match acts.as_slice() {
            ["create"] => s.add += 1,
            ["update"] => s.change += 1,
            ["delete"] => s.destroy += 1,
            ["delete", "create"] | ["create", "delete"] => {
                s.add += 1;
                s.destroy += 1
            }
            _ => {}
        }
    }
    Ok(s)
}

fn env_allowed(name: &str, pass: &[String]) -> bool {
    const BASE: &[&str] = &[
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    BASE.contains(&name)
        || pass.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
}

impl Runner {
    /// The task's environment; `wd` is the working directory as tofu sees it.
    fn env(
        &self,
        spec: &v1::TaskSpec,
        wd: &Path,
        managed_backend: bool,
        proxy_port: Option<u16>,
    ) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| env_allowed(k, &self.cfg.pass_env))
            .collect();
        if self.sandbox.namespaces {
            // The agent's PATH may name directories the sandbox does not have.
            env.insert(
                "PATH".into(),
                "/tofuflow/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        env.entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        env.insert("HOME".into(), wd.join("home").display().to_string());
        env.insert("TMPDIR".into(), wd.join("tmp").display().to_string());
        if let Some(port) = proxy_port {
            let url = format!("http://127.0.0.1:{port}");
            for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
                env.insert(k.into(), url.clone());
            }
            for k in ["NO_PROXY", "no_proxy"] {
                env.insert(k.into(), "localhost,127.0.0.1,::1".into());
            }
        }
        env.insert("TF_IN_AUTOMATION".into(), "1".into());
        env.insert("TF_INPUT".into(), "0".into());
        // tofu joins the run's trace: as a child of this task's span when spans are exported,
        // else of the run's trace with a fresh span id.
        let fresh: [u8; 8] = uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([7; 8]);
        let tp = tofuflow_proto::telemetry::traceparent_of(&tracing::Span::current())
            .or_else(|| tofuflow_proto::child_traceparent(&spec.traceparent, fresh));
        if let Some(tp) = tp {
            env.insert("TRACEPARENT".into(), tp);
        }
        match (&self.cfg.plugin_cache_dir, self.sandbox.namespaces) {
            // In the sandbox the cache is read-only: a filesystem mirror (tofurc written by
            // execute); providers missing from it are installed into the task's own directory.
            (Some(_), true) => {
                env.insert(
                    "TF_CLI_CONFIG_FILE".into(),
                    wd.join("tofuflow.tofurc").display().to_string(),
                );
            }
            (Some(dir), false) => {
                env.insert("TF_PLUGIN_CACHE_DIR".into(), dir.display().to_string());
            }
            (None, _) => {}
        }
        if managed_backend {
            if let Some(b) = &spec.backend {
                env.insert("TF_HTTP_USERNAME".into(), b.username.clone());
                env.insert("TF_HTTP_PASSWORD".into(), b.password.clone());
            }
        }
        for (k, v) in &spec.env {
            env.insert(k.clone(), v.clone());
        }
        // Who and what this is, for scripts run by the module (local-exec) and for tracing.
        let phase = v1::Phase::try_from(spec.phase).unwrap_or(v1::Phase::Unspecified);
        for (k, v) in [
            ("TOFUFLOW_RUN_ID", spec.run_id.clone()),
            ("TOFUFLOW_TASK_ID", spec.task_id.clone()),
            ("TOFUFLOW_ATTEMPT", spec.attempt.to_string()),
            ("TOFUFLOW_WORKSPACE", spec.workspace.clone()),
            (
                "TOFUFLOW_PHASE",
                phase
                    .as_str_name()
                    .trim_start_matches("PHASE_")
                    .to_lowercase(),
            ),
            ("TOFUFLOW_AGENT_ID", self.agent_id.clone()),
            (
                "TOFUFLOW_AGENT_NAME",
                self.cfg
                    .name
                    .clone()
                    .unwrap_or_else(crate::labels::hostname),
            ),
        ] {
            env.insert(k.into(), v);
        }
        env
    }

    async fn fetch_blob(&self, spec: &v1::TaskSpec, lease: &Held, digest: &str) -> Result<Vec<u8>> {
        let mut c = self.client.clone();
        let req = v1::FetchBlobRequest {
            agent_id: self.agent_id.clone(),
            task_id: spec.task_id.clone(),
            epoch: lease.epoch,
            digest: digest.to_string(),
            attempt: spec.attempt,
            lease_token: lease.lease_token.clone(),
        };
        let mut s = c
            .fetch_blob(req)
            .await
            .map_err(|e| TaskError::Fetch {
                digest: digest.to_string(),
                message: e.message().to_string(),
            })?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = s.next().await {
            data.extend_from_slice(
                &chunk
                    .map_err(|e| TaskError::FetchBroken {
                        digest: digest.to_string(),
                        message: e.message().to_string(),
                    })?
                    .data,
            );
        }
        bundle::verify(digest, &data)?;
        Ok(data)
    }

    /// The bundle from the local cache, or fetched, verified and cached.
    async fn bundle(&self, spec: &v1::TaskSpec, lease: &Held) -> Result<Vec<u8>> {
        let cache = self.cfg.work_root.join("cache");
        let file = cache.join(spec.bundle_digest.replace(':', "-"));
        if let Ok(data) = tokio::fs::read(&file).await {
            if bundle::verify(&spec.bundle_digest, &data).is_ok() {
                return Ok(data);
            }
        }
        let data = self.fetch_blob(spec, lease, &spec.bundle_digest).await?;
        tokio::fs::create_dir_all(&cache).await.map_err(|e| {
            TaskError::workdir(format!("cannot create cache {}", cache.display()), e)
        })?;
        let tmp = cache.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, &data).await?;
        tokio::fs::rename(&tmp, &file).await?;
        Ok(data)
    }

    async fn upload(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        kind: v1::ArtifactKind,
        data: Vec<u8>,
    ) -> Result<String> {
        let mut chunks: Vec<v1::ArtifactChunk> = data
            .chunks(tofuflow_proto::CHUNK_BYTES)
            .map(|c| v1::ArtifactChunk {
                data: c.to_vec(),
                ..Default::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(v1::ArtifactChunk::default());
        }
        chunks[0].task_id = spec.task_id.clone();
        chunks[0].attempt = spec.attempt;
        chunks[0].epoch = lease.epoch;
        chunks[0].lease_token = lease.lease_token.clone();
        chunks[0].kind = kind as i32;
        let mut c = self.client.clone();
        let r = c
            .upload_artifact(tokio_stream::iter(chunks))
            .await
            .map_err(|e| TaskError::Upload {
                kind: format!("{kind:?}"),
                message: e.message().to_string(),
            })?;
        Ok(r.into_inner().digest)
    }

    /// Runs a task to its end and reports the result. Never panics on task errors: every path
    /// ends in a Complete (or the coordinator has already fenced this attempt).
    pub async fn run(&self, spec: v1::TaskSpec, held: &Held, slot: u32, pool: &str) {
        let epoch = held.epoch;
        let reporter = Reporter::start(
            self.client.clone(),
            crate::report::Lease {
                task_id: spec.task_id.clone(),
                attempt: spec.attempt,
                epoch,
                token: held.lease_token.clone(),
            },
            Masker::new(
                spec.secrets
                    .iter()
                    .chain(spec.backend.iter().map(|b| &b.password)),
            ),
        );
        let phase = v1::Phase::try_from(spec.phase).unwrap_or(v1::Phase::Unspecified);
        reporter.system(format!(
            "tofuflow: agent {} ({}) runs {phase} attempt {} of run {} for workspace {}",
            self.agent_id,
            crate::labels::hostname(),
            spec.attempt,
            spec.run_id,
            spec.workspace
        ));
        let wd = self.cfg.work_root.join("work").join(&spec.run_id);
        let lim = Effective::of(&self.cfg, spec.limits.unwrap_or_default());
        if spec.limits.is_some_and(|l| l != v1::TaskLimits::default()) {
            reporter.system(format!(
                "tofuflow: limits for this run (within the agent's maxima): {}",
                lim.describe()
            ));
        }
        // The task timeout stops tofu like a cancel, and the task then fails as timed out.
        let timeout = lim.timeout;
        let (cancel, reason) = (held.cancel.clone(), held.reason.clone());
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Ok(mut r) = reason.lock() {
                r.get_or_insert(StopReason::Timeout(timeout));
            }
            cancel.cancel();
        });
        // The task's cgroup: limits for all its processes together, and afterwards the record
        // of which limit it hit.
        // Only when a limit needs one: moving a process into a cgroup costs ~10 ms here (the
        // kernel waits for an RCU grace period), paid by every tofu command. Without limits the
        // PID namespace (or process group) already ends everything the task started.
        let wants_cgroup = lim.memory > 0 || lim.nproc > 0;
        let cgroup = match self.sandbox.cgroups.as_ref().filter(|_| wants_cgroup) {
            Some(c) => match c.create(
                // Unique per agent and attempt: two attempts of a task may overlap on a host.
                &format!(
                    "{}-{}-{}-{}",
                    self.sandbox.cgroup_prefix, self.agent_id, spec.task_id, spec.attempt
                ),
                lim.memory,
                lim.nproc,
            ) {
                Ok(cg) => Some(Arc::new(cg)),
                Err(e) => {
                    reporter.system(format!(
                        "tofuflow: warning: {e}; the task runs without its cgroup limits"
                    ));
                    None
                }
            },
            None => None,
        };
        // A task at its process limit is a runaway (a fork bomb): stop it.
        let monitor = cgroup.clone().map(|cg| {
            let (cancel, reason) = (held.cancel.clone(), held.reason.clone());
            let limit = lim.nproc;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    if limit > 0 && cg.hits().pids_max > 0 {
                        if let Ok(mut r) = reason.lock() {
                            r.get_or_insert(StopReason::ProcessLimit(limit));
                        }
                        cancel.cancel();
                        return;
                    }
                }
            })
        });
        let ctx = TaskCtx {
            lim,
            slot,
            network: self.sandbox.network_for(&self.cfg, pool),
            cgroup: cgroup.as_deref(),
            killed_by: Default::default(),
        };
        let result = self.execute(&spec, held, &wd, &reporter, &ctx).await;
        timer.abort();
        if let Some(m) = monitor {
            m.abort();
        }
        let hits = cgroup.as_ref().map(|c| c.hits()).unwrap_or_default();
        if let Some(cg) = &cgroup {
            cg.destroy();
        }
        let stop = held.reason.lock().map(|r| r.clone()).unwrap_or(None);
        let killed_by = ctx.killed_by.lock().ok().and_then(|k| k.clone());
        let verdict = outcome::decide(
            result,
            stop.as_ref(),
            held.cancel.is_cancelled(),
            hits,
            killed_by.as_deref(),
            &lim,
        );
        let req = verdict.into_request(v1::CompleteRequest {
            agent_id: self.agent_id.clone(),
            task_id: spec.task_id.clone(),
            attempt: spec.attempt,
            epoch,
            lease_token: held.lease_token.clone(),
            ..Default::default()
        });
        reporter.system(format!(
            "tofuflow: {phase} finished: {}",
            match v1::Outcome::try_from(req.outcome) {
                Ok(v1::Outcome::Succeeded) => "succeeded".to_string(),
                Ok(v1::Outcome::Cancelled) => format!("cancelled ({})", req.error),
                _ => format!("failed: {}", req.error),
            }
        ));
        if self.cfg.keep_workdirs {
            reporter.system(format!(
                "tofuflow: keeping the working directory {} (--keep-workdirs)",
                wd.display()
            ));
        } else if let Err(e) = std::fs::remove_dir_all(&wd) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %wd.display(), error = %e, "cannot remove the working directory");
            }
        }
        if !reporter.finish(Duration::from_secs(60)).await {
            tracing::warn!("not all log lines reached the coordinator");
        }
        self.complete(req).await;
    }

    async fn complete(&self, req: v1::CompleteRequest) {
        let mut backoff = Duration::from_millis(200);
        for _ in 0..30 {
            let mut c = self.client.clone();
            match c.complete(req.clone()).await {
                Ok(_) => return,
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::FailedPrecondition | tonic::Code::NotFound
                    ) =>
                {
                    tracing::warn!(error = %s.message(), "coordinator refused the completion (this attempt was fenced)");
                    return;
                }
                Err(s) => {
                    tracing::warn!(error = %s.message(), "reporting the result failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        tracing::error!("gave up reporting the result; the lease will expire and the coordinator will settle the run");
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        wd: &Path,
        rep: &Reporter,
        ctx: &TaskCtx<'_>,
    ) -> Result<Done> {
        let cancel = &lease.cancel;
        use std::os::unix::fs::DirBuilderExt;
        let sb = &self.sandbox;
        // Paths as tofu sees them: the fixed sandbox path with namespaces, else the host path.
        let inner: PathBuf = if sb.namespaces {
            sandbox::WORKDIR.into()
        } else {
            wd.to_path_buf()
        };
        if ctx.network != Network::Host && !sb.namespaces {
            return Err(TaskError::Setup(format!(
                "network mode {} needs a network namespace, which this agent does not have",
                ctx.network.name()
            )));
        }
        let user = sandbox::run_user(&self.cfg.run_user, self.cfg.run_uid_base, ctx.slot)
            .map_err(TaskError::Setup)?;
        if wd.exists() {
            std::fs::remove_dir_all(wd).map_err(|e| {
                TaskError::workdir(
                    format!("cannot clear old working directory {}", wd.display()),
                    e,
                )
            })?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(wd)
            .map_err(|e| {
                TaskError::workdir(
                    format!("cannot create working directory {}", wd.display()),
                    e,
                )
            })?;
        let module = wd.join("module");
        for d in [&module, &wd.join("home"), &wd.join("tmp")] {
            std::fs::DirBuilder::new().mode(0o700).create(d)?;
        }
        let data = self.bundle(spec, lease).await?;
        let size = bundle::extract(&data, &module, bundle::Limits::default())?;
        rep.system(format!(
            "tofuflow: bundle {} ({} bytes packed, {size} unpacked) in {}",
            spec.bundle_digest,
            data.len(),
            inner.join("module").display()
        ));
        let var_args = write_var_files(spec, wd, &inner)?;
        if sb.namespaces && sb.plugin_cache.is_some() {
            std::fs::write(
                wd.join("tofuflow.tofurc"),
                format!("# Written by tofuflow: the agent's provider cache, read-only.\nprovider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n  direct {{}}\n}}\n", sandbox::PROVIDERS),
            )?;
        }
        // State: the coordinator's http backend unless the module brings its own.
        let declared = declared_backend(&module);
        let managed = matches!(declared.as_deref(), None | Some("http"));
        // Without the host network, the backend is reached through the gateway: on the task's
        // loopback at the same port (a loopback or plain-http coordinator), or through the
        // proxy (https).
        let isolated = ctx.network != Network::Host;
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
        let plan_file = wd.join("tfplan");
        let phase = v1::Phase::try_from(spec.phase).unwrap_or(v1::Phase::Unspecified);
        if phase == v1::Phase::Apply {
            if spec.plan_digest.is_empty() {
                return Err(TaskError::Setup("apply task without a plan digest".into()));
            }
            let plan = self.fetch_blob(spec, lease, &spec.plan_digest).await?;
            std::fs::write(&plan_file, &plan)?;
        }
        // The gateway: the task's only way out when its network is not the host's.
        let mut relays = Vec::new();
        let mut proxy_port = None;
        let gw = if isolated {
            let target = backend.as_ref().and_then(|b| b.3.clone());
            let port = if target.as_ref().is_some_and(|t| t.1 == sandbox::PROXY_PORT) {
                sandbox::PROXY_PORT + 1
            } else {
                sandbox::PROXY_PORT
            };
            relays.push((port, "proxy".to_string()));
            proxy_port = Some(port);
            if let Some((_, p)) = &target {
                relays.push((*p, "backend".to_string()));
            }
            let rules = if ctx.network == Network::AllowList {
                self.cfg
                    .allow_hosts
                    .iter()
                    .map(|h| gateway::parse_rule(h))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(TaskError::Egress)?
            } else {
                vec![]
            };
            let policy = gateway::Policy {
                backend: target,
                network: ctx.network,
                rules,
            };
            rep.system(format!(
                "tofuflow: network {}: egress only through the agent's proxy{}",
                ctx.network.name(),
                match ctx.network {
                    Network::AllowList => format!(" to {}", self.cfg.allow_hosts.join(", ")),
                    Network::Egress =>
                        " to anywhere but the agent host's own, loopback and link-local addresses"
                            .to_string(),
                    _ => " (state backend only)".to_string(),
                }
            ));
            Some(
                gateway::start(
                    &sb.gateway_dir,
                    &format!("{}-{}", spec.task_id, spec.attempt),
                    policy,
                    rep.handle(),
                )
                .map_err(TaskError::Egress)?,
            )
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            chown_tree(wd, uid, gid)?;
        }
        let env = self.env(spec, &inner, managed, proxy_port);
        let sink = rep.handle();
        let grace = self.cfg.cancel_grace;
        let memory_cgroup = sb.cgroups.as_ref().is_some_and(|c| c.memory()) && ctx.cgroup.is_some();
        let limits = sandbox::Limits {
            cpu_secs: ctx.lim.cpu,
            address_space: if memory_cgroup { 0 } else { ctx.lim.memory },
            nofile: self.cfg.limit_nofile,
            fsize_bytes: ctx.lim.fsize,
            nproc: ctx.lim.nproc,
        };
        let module_in = inner.join("module");
        let sandboxed = sb.namespaces || user.is_some() || ctx.cgroup.is_some();
        let mut hspec = sb.spec(
            wd,
            gw.as_ref().map(|g| (g.path.as_path(), relays.clone())),
            isolated,
            user,
            limits,
            ctx.cgroup.map(|c| c.procs_files()).unwrap_or_default(),
        );
        hspec.cwd = module_in.clone();
        hspec.argv = vec![if sb.namespaces {
            sandbox::TOFU.to_string()
        } else {
            sb.tofu.display().to_string()
        }];
        let launch = if sandboxed {
            process::Launch::Sandboxed {
                helper: &sb.helper,
                spec: &hspec,
            }
        } else {
            process::Launch::Direct {
                bin: &sb.tofu,
                cwd: &module,
                limits,
                seccomp: sb.seccomp,
            }
        };
        if sandboxed {
            rep.system(format!(
                "tofuflow: sandbox: {}{}{}",
                if sb.namespaces {
                    "mount, PID, IPC and UTS namespaces"
                } else {
                    "no namespaces"
                },
                match user {
                    Some((u, _)) => format!(", run user {u}"),
                    None => String::new(),
                },
                if ctx.cgroup.is_some() {
                    ", task cgroup"
                } else {
                    ""
                }
            ));
        }
        let tofu = |args: Vec<String>, capture: bool| {
            let shown: Vec<&str> = args.iter().map(String::as_str).collect();
            rep.system(format!("$ tofu {}", shown.join(" ")));
            let (env, sink, launch) = (&env, &sink, &launch);
            async move {
                let fin = process::run(launch, &args, env, sink, capture, cancel, grace).await?;
                if let Ok(mut k) = ctx.killed_by.lock() {
                    k.clone_from(&fin.killed_by);
                }
                if sandboxed && !fin.cancelled && fin.code == sandbox::helper::SETUP_FAILED {
                    return Err(TaskError::Sandbox {
                        cmd: args.first().cloned().unwrap_or_default(),
                    });
                }
                Ok(fin)
            }
        };
        let fin = tofu(init, false).await?;
        if fin.cancelled {
            return Ok(Done::cancelled(fin.code, false));
        }
        if fin.code != 0 {
            return Err(TaskError::Tofu {
                cmd: "init".into(),
                exit: fin.code,
                signal: None,
            });
        }
        let plan_in = inner.join("tfplan");
        match phase {
            v1::Phase::Plan => {
                let mut args = vec![
                    "plan".to_string(),
                    "-input=false".into(),
                    "-no-color".into(),
                    "-json".into(),
                    "-detailed-exitcode".into(),
                    format!("-lock-timeout={}s", self.cfg.lock_timeout.as_secs()),
                    format!("-out={}", plan_in.display()),
                ];
                if spec.destroy {
                    args.push("-destroy".into());
                }
                args.extend(var_args);
                let fin = tofu(args, false).await?;
                if fin.cancelled {
                    return Ok(Done::cancelled(fin.code, false));
                }
                let has_changes = match fin.code {
                    0 => false,
                    2 => true,
                    c => {
                        return Err(TaskError::Tofu {
                            cmd: "plan".into(),
                            exit: c,
                            signal: fin.killed_by,
                        })
                    }
                };
                let mut summary = v1::ChangeSummary::default();
                if has_changes {
                    let show = tofu(
                        vec!["show".into(), "-json".into(), plan_in.display().to_string()],
                        true,
                    )
                    .await?;
                    if show.code != 0 {
                        return Err(TaskError::TofuData {
                            cmd: "show -json".into(),
                            exit: show.code,
                        });
                    }
                    summary = summarize(&show.stdout)?;
                    let plan = std::fs::read(&plan_file).map_err(TaskError::NoPlanFile)?;
                    let d = self
                        .upload(spec, lease, v1::ArtifactKind::PlanFile, plan)
                        .await?;
                    self.upload(
                        spec,
                        lease,
                        v1::ArtifactKind::PlanJson,
                        show.stdout.into_bytes(),
                    )
                    .await?;
                    rep.system(format!(
                        "tofuflow: plan saved as {d}: {} to add, {} to change, {} to destroy",
                        summary.add, summary.change, summary.destroy
                    ));
                }
                Ok(Done {
                    has_changes,
                    summary,
                    outputs_json: String::new(),
                    exit_code: fin.code,
                    cancelled: false,
                })
            }
            v1::Phase::Apply => {
                rep.system(format!(
                    "tofuflow: applying saved plan {} (sha256 verified)",
                    spec.plan_digest
                ));
                let fin = tofu(
                    vec![
                        "apply".into(),
                        format!("-lock-timeout={}s", self.cfg.lock_timeout.as_secs()),
                        "-input=false".into(),
                        "-no-color".into(),
                        "-json".into(),
                        plan_in.display().to_string(),
                    ],
                    false,
                )
                .await?;
                if fin.cancelled {
                    return Ok(Done::cancelled(fin.code, true));
                }
                if fin.code != 0 {
                    return Err(TaskError::Tofu {
                        cmd: "apply".into(),
                        exit: fin.code,
                        signal: fin.killed_by,
                    });
                }
                let out = tofu(
                    vec!["output".into(), "-json".into(), "-no-color".into()],
                    true,
                )
                .await?;
                if out.code != 0 {
                    return Err(TaskError::TofuData {
                        cmd: "output -json".into(),
                        exit: out.code,
                    });
                }
                Ok(Done {
                    has_changes: true,
                    summary: Default::default(),
                    outputs_json: out.stdout,
                    exit_code: 0,
                    cancelled: false,
                })
            }
            v1::Phase::Unspecified => Err(TaskError::Setup("task has no phase".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_detection_and_summary() {
        let d = std::env::temp_dir().join(format!("tofuflow-be-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(declared_backend(&d), None);
        std::fs::write(
            d.join("a.tf"),
            "# backend \"gcs\" {}\nterraform {\n  backend \"s3\" {\n  }\n}\n",
        )
        .unwrap();
        assert_eq!(declared_backend(&d).as_deref(), Some("s3"));
        std::fs::remove_dir_all(&d).unwrap();
        let s = summarize(r#"{"resource_changes":[{"change":{"actions":["create"]}},{"change":{"actions":["delete","create"]}},{"change":{"actions":["no-op"]}},{"change":{"actions":["update"]}}]}"#).unwrap();
        assert_eq!((s.add, s.change, s.destroy), (2, 1, 1));
        assert!(env_allowed("PATH", &[]));
        assert!(!env_allowed("TOFUFLOW_AMQP_URL", &[]));
        assert!(env_allowed("AWS_REGION", &["AWS_*".into()]));
    }

    #[test]
    fn the_backend_as_an_isolated_task_reaches_it() {
        let u = "http://127.0.0.1:7701/state/ws";
        assert_eq!(backend_inside(u, false), (u.to_string(), None));
        assert_eq!(
            backend_inside(u, true),
            (u.to_string(), Some(("127.0.0.1".into(), 7701)))
        );
        assert_eq!(
            backend_inside("http://coord.internal:7701/state/a/b", true),
            (
                "http://127.0.0.1:7701/state/a/b".to_string(),
                Some(("coord.internal".into(), 7701))
            )
        );
        assert_eq!(
            backend_inside("https://coord.example.com/state/a", true),
            (
                "https://coord.example.com/state/a".to_string(),
                Some(("coord.example.com".into(), 443))
            )
        );
        assert_eq!(
            backend_inside("http://[::1]:80/state/x", true).1,
            Some(("::1".into(), 80))
        );
    }
}
