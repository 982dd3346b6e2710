//! Running one task: a fresh working directory (0700; module, HOME and TMPDIR inside), the
//! bundle, the state-backend wiring, the tofu commands of the phase, artifacts, the result, and
//! removal of the directory afterwards.

pub mod process;

use crate::bundle;
use crate::config::Config;
use crate::report::Reporter;
use std::collections::BTreeMap;
use std::path::Path;
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
    LeaseLost(String),
    Shutdown,
}

/// A task the agent holds a lease for.
pub struct Held {
    pub attempt: u32,
    pub epoch: u64,
    pub cancel: CancellationToken,
    pub reason: Arc<std::sync::Mutex<Option<StopReason>>>,
}

#[derive(Clone)]
pub struct Runner {
    pub cfg: Arc<Config>,
    pub client: crate::Client,
    pub agent_id: String,
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

/// Counts a plan's changes from `show -json` output.
pub fn summarize(plan_json: &str) -> Result<v1::ChangeSummary, String> {
    let v: serde_json::Value = serde_json::from_str(plan_json)
        .map_err(|e| format!("tofu show -json did not print JSON: {e}"))?;
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
    fn env(
        &self,
        spec: &v1::TaskSpec,
        wd: &Path,
        managed_backend: bool,
    ) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| env_allowed(k, &self.cfg.pass_env))
            .collect();
        env.entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        env.insert("HOME".into(), wd.join("home").display().to_string());
        env.insert("TMPDIR".into(), wd.join("tmp").display().to_string());
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
        if let Some(dir) = &self.cfg.plugin_cache_dir {
            env.insert("TF_PLUGIN_CACHE_DIR".into(), dir.display().to_string());
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
        env
    }

    async fn fetch_blob(
        &self,
        spec: &v1::TaskSpec,
        epoch: u64,
        digest: &str,
    ) -> Result<Vec<u8>, String> {
        let mut c = self.client.clone();
        let req = v1::FetchBlobRequest {
            agent_id: self.agent_id.clone(),
            task_id: spec.task_id.clone(),
            epoch,
            digest: digest.to_string(),
            attempt: spec.attempt,
        };
        let mut s = c
            .fetch_blob(req)
            .await
            .map_err(|e| format!("cannot fetch {digest}: {}", e.message()))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = s.next().await {
            data.extend_from_slice(
                &chunk
                    .map_err(|e| format!("fetching {digest} failed: {}", e.message()))?
                    .data,
            );
        }
        bundle::verify(digest, &data)?;
        Ok(data)
    }

    /// The bundle from the local cache, or fetched, verified and cached.
    async fn bundle(&self, spec: &v1::TaskSpec, epoch: u64) -> Result<Vec<u8>, String> {
        let cache = self.cfg.work_root.join("cache");
        let file = cache.join(spec.bundle_digest.replace(':', "-"));
        if let Ok(data) = tokio::fs::read(&file).await {
            if bundle::verify(&spec.bundle_digest, &data).is_ok() {
                return Ok(data);
            }
        }
        let data = self.fetch_blob(spec, epoch, &spec.bundle_digest).await?;
        tokio::fs::create_dir_all(&cache)
            .await
            .map_err(|e| format!("cannot create cache {}: {e}", cache.display()))?;
        let tmp = cache.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, &data)
            .await
            .map_err(|e| e.to_string())?;
        tokio::fs::rename(&tmp, &file)
            .await
            .map_err(|e| e.to_string())?;
        Ok(data)
    }

    async fn upload(
        &self,
        spec: &v1::TaskSpec,
        epoch: u64,
        kind: v1::ArtifactKind,
        data: Vec<u8>,
    ) -> Result<String, String> {
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
        chunks[0].epoch = epoch;
        chunks[0].kind = kind as i32;
        let mut c = self.client.clone();
        let r = c
            .upload_artifact(tokio_stream::iter(chunks))
            .await
            .map_err(|e| format!("uploading the {kind:?} failed: {}", e.message()))?;
        Ok(r.into_inner().digest)
    }

    /// Runs a task to its end and reports the result. Never panics on task errors: every path
    /// ends in a Complete (or the coordinator has already fenced this attempt).
    pub async fn run(&self, spec: v1::TaskSpec, epoch: u64, held: &Held) {
        let reporter = Reporter::start(
            self.client.clone(),
            spec.task_id.clone(),
            spec.attempt,
            epoch,
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
        // The task timeout stops tofu like a cancel, and the task then fails as timed out.
        let timeout = self.cfg.task_timeout;
        let (cancel, reason) = (held.cancel.clone(), held.reason.clone());
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Ok(mut r) = reason.lock() {
                r.get_or_insert(StopReason::Timeout(timeout));
            }
            cancel.cancel();
        });
        let result = self
            .execute(&spec, epoch, &wd, &reporter, &held.cancel)
            .await;
        timer.abort();
        let stop = held.reason.lock().map(|r| r.clone()).unwrap_or(None);
        let mut req = v1::CompleteRequest {
            agent_id: self.agent_id.clone(),
            task_id: spec.task_id.clone(),
            attempt: spec.attempt,
            epoch,
            ..Default::default()
        };
        match result {
            Ok(d) if d.cancelled && matches!(stop, Some(StopReason::Timeout(_))) => {
                // A distinct result: failed, and saying so.
                req.outcome = v1::Outcome::Failed as i32;
                req.exit_code = d.exit_code;
                req.error = format!(
                    "timed out after {} (--task-timeout); tofu was interrupted",
                    humantime::format_duration(self.cfg.task_timeout)
                );
            }
            Ok(d) if d.cancelled => {
                req.outcome = v1::Outcome::Cancelled as i32;
                req.exit_code = d.exit_code;
                req.error = match &stop {
                    Some(StopReason::UserCancel) => {
                        "cancelled by user; tofu was interrupted".into()
                    }
                    Some(StopReason::Shutdown) => {
                        "the agent shut down before the task finished".into()
                    }
                    Some(StopReason::LeaseLost(why)) => format!("stopped: {why}"),
                    Some(StopReason::Timeout(_)) | None => "cancelled".into(),
                };
            }
            Ok(d) => {
                req.outcome = v1::Outcome::Succeeded as i32;
                req.has_changes = d.has_changes;
                req.summary = Some(d.summary);
                req.outputs_json = d.outputs_json;
                req.exit_code = d.exit_code;
            }
            Err(e) => {
                req.outcome = if held.cancel.is_cancelled() {
                    v1::Outcome::Cancelled
                } else {
                    v1::Outcome::Failed
                } as i32;
                req.error = e;
            }
        }
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

    async fn execute(
        &self,
        spec: &v1::TaskSpec,
        epoch: u64,
        wd: &Path,
        rep: &Reporter,
        cancel: &CancellationToken,
    ) -> Result<Done, String> {
        use std::os::unix::fs::DirBuilderExt;
        if wd.exists() {
            std::fs::remove_dir_all(wd)
                .map_err(|e| format!("cannot clear old working directory {}: {e}", wd.display()))?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(wd)
            .map_err(|e| format!("cannot create working directory {}: {e}", wd.display()))?;
        let module = wd.join("module");
        for d in [&module, &wd.join("home"), &wd.join("tmp")] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(d)
                .map_err(|e| e.to_string())?;
        }
        let data = self.bundle(spec, epoch).await?;
        let size = bundle::extract(&data, &module, bundle::Limits::default())?;
        rep.system(format!(
            "tofuflow: bundle {} ({} bytes packed, {size} unpacked) in {}",
            spec.bundle_digest,
            data.len(),
            module.display()
        ));
        let mut var_args = Vec::new();
        let mut names: Vec<_> = spec.variables.iter().collect();
        names.sort();
        for (k, v) in names {
            var_args.push(format!("-var={k}={v}"));
        }
        for (i, f) in spec.var_files.iter().enumerate() {
            let safe: String = f
                .name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .collect();
            let p = wd.join(format!("varfile-{i}-{safe}"));
            std::fs::write(&p, &f.content).map_err(|e| e.to_string())?;
            var_args.push(format!("-var-file={}", p.display()));
        }
        // State: the coordinator's http backend unless the module brings its own.
        let declared = declared_backend(&module);
        let managed = matches!(declared.as_deref(), None | Some("http"));
        let mut init = vec![
            "init".to_string(),
            "-input=false".into(),
            "-no-color".into(),
        ];
        if managed {
            if declared.is_none() {
                std::fs::write(module.join("tofuflow_backend.tf"), "# Written by tofuflow: state lives in the coordinator.\nterraform {\n  backend \"http\" {}\n}\n").map_err(|e| e.to_string())?;
            }
            if let Some(b) = &spec.backend {
                init.push(format!("-backend-config=address={}", b.address));
                init.push(format!("-backend-config=lock_address={}", b.lock_address));
                init.push(format!(
                    "-backend-config=unlock_address={}",
                    b.unlock_address
                ));
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
        let env = self.env(spec, wd, managed);
        let sink = rep.handle();
        let grace = self.cfg.cancel_grace;
        let limits = process::Limits {
            cpu_secs: self.cfg.limit_cpu,
            memory_bytes: self.cfg.limit_memory,
            nofile: self.cfg.limit_nofile,
            fsize_bytes: self.cfg.limit_fsize,
            nproc: self.cfg.limit_nproc,
        };
        let bin = &self.cfg.tofu_bin;
        let tofu = |args: Vec<String>, capture: bool| {
            let shown: Vec<&str> = args.iter().map(String::as_str).collect();
            rep.system(format!("$ tofu {}", shown.join(" ")));
            let (env, sink, module) = (&env, &sink, &module);
            async move {
                process::run(
                    bin, &args, module, env, sink, capture, cancel, grace, limits,
                )
                .await
            }
        };
        let fin = tofu(init, false).await?;
        if fin.cancelled {
            return Ok(Done::cancelled(fin.code, false));
        }
        if fin.code != 0 {
            return Err(format!(
                "tofu init failed (exit {}): see the run's log",
                fin.code
            ));
        }
        let plan_file = wd.join("tfplan");
        match v1::Phase::try_from(spec.phase).unwrap_or(v1::Phase::Unspecified) {
            v1::Phase::Plan => {
                let mut args = vec![
                    "plan".to_string(),
                    "-input=false".into(),
                    "-no-color".into(),
                    "-json".into(),
                    "-detailed-exitcode".into(),
                    format!("-lock-timeout={}s", self.cfg.lock_timeout.as_secs()),
                    format!("-out={}", plan_file.display()),
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
                        return Err(format!(
                            "tofu plan failed (exit {c}{}): see the run's log",
                            fin.killed_by
                                .map(|s| format!(", {}", process::explain_signal(&s)))
                                .unwrap_or_default()
                        ))
                    }
                };
                let mut summary = v1::ChangeSummary::default();
                if has_changes {
                    let show = tofu(
                        vec![
                            "show".into(),
                            "-json".into(),
                            plan_file.display().to_string(),
                        ],
                        true,
                    )
                    .await?;
                    if show.code != 0 {
                        return Err(format!("tofu show -json failed (exit {})", show.code));
                    }
                    summary = summarize(&show.stdout)?;
                    let plan = std::fs::read(&plan_file)
                        .map_err(|e| format!("tofu plan wrote no plan file: {e}"))?;
                    let d = self
                        .upload(spec, epoch, v1::ArtifactKind::PlanFile, plan)
                        .await?;
                    self.upload(
                        spec,
                        epoch,
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
                if spec.plan_digest.is_empty() {
                    return Err("apply task without a plan digest".into());
                }
                let plan = self.fetch_blob(spec, epoch, &spec.plan_digest).await?;
                std::fs::write(&plan_file, &plan).map_err(|e| e.to_string())?;
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
                        plan_file.display().to_string(),
                    ],
                    false,
                )
                .await?;
                if fin.cancelled {
                    return Ok(Done::cancelled(fin.code, true));
                }
                if fin.code != 0 {
                    return Err(format!(
                        "tofu apply failed (exit {}{}): see the run's log",
                        fin.code,
                        fin.killed_by
                            .map(|s| format!(", {}", process::explain_signal(&s)))
                            .unwrap_or_default()
                    ));
                }
                let out = tofu(
                    vec!["output".into(), "-json".into(), "-no-color".into()],
                    true,
                )
                .await?;
                if out.code != 0 {
                    return Err(format!("tofu output -json failed (exit {})", out.code));
                }
                Ok(Done {
                    has_changes: true,
                    summary: Default::default(),
                    outputs_json: out.stdout,
                    exit_code: 0,
                    cancelled: false,
                })
            }
            v1::Phase::Unspecified => Err("task has no phase".into()),
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
}
