//! The environment of a task's tofu commands: cleared, then only what the agent passes on, the
//! task's paths, its proxy, trace context, provider cache, backend credential and identity.

use super::Runner;
use std::collections::BTreeMap;
use std::path::Path;
use tofuflow_proto::v1;

type Env = BTreeMap<String, String>;

/// Whether the agent's variable `name` passes to tofu: a few basics always, else `--pass-env`
/// names and `PREFIX*` patterns.
pub(super) fn env_allowed(name: &str, pass: &[String]) -> bool {
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
    pub(super) fn env(
        &self,
        spec: &v1::TaskSpec,
        wd: &Path,
        state: &super::backend::StateBackend,
        proxy_port: Option<u16>,
    ) -> Env {
        let mut env = self.base_env(wd);
        if let Some(port) = proxy_port {
            proxy_env(&mut env, port);
        }
        env.insert("TF_IN_AUTOMATION".into(), "1".into());
        env.insert("TF_INPUT".into(), "0".into());
        trace_env(&mut env, spec);
        self.plugin_cache_env(&mut env, wd);
        if state.managed {
            if let Some(b) = &spec.backend {
                env.insert("TF_HTTP_USERNAME".into(), b.username.clone());
                env.insert("TF_HTTP_PASSWORD".into(), b.password.clone());
            }
        }
        if let Some(bundle) = &state.ca_bundle {
            env.insert("SSL_CERT_FILE".into(), bundle.clone());
        }
        for (k, v) in &spec.env {
            env.insert(k.clone(), v.clone());
        }
        self.identity_env(&mut env, spec);
        env
    }

    /// The agent's passed-on variables, PATH, HOME and TMPDIR.
    fn base_env(&self, wd: &Path) -> Env {
        let mut env: Env = std::env::vars()
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
        env
    }

    fn plugin_cache_env(&self, env: &mut Env, wd: &Path) {
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
    }

    /// Who and what this is, for scripts run by the module (local-exec) and for tracing.
    fn identity_env(&self, env: &mut Env, spec: &v1::TaskSpec) {
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
    }
}

/// Everything goes through the agent's proxy on the task's loopback, except loopback itself.
fn proxy_env(env: &mut Env, port: u16) {
    let url = format!("http://127.0.0.1:{port}");
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(k.into(), url.clone());
    }
    for k in ["NO_PROXY", "no_proxy"] {
        env.insert(k.into(), "localhost,127.0.0.1,::1".into());
    }
}

/// tofu joins the run's trace: as a child of this task's span when spans are exported, else of
/// the run's trace with a fresh span id.
fn trace_env(env: &mut Env, spec: &v1::TaskSpec) {
    let fresh: [u8; 8] = uuid::Uuid::new_v4().as_bytes()[..8]
        .try_into()
        .unwrap_or([7; 8]);
    let tp = tofuflow_proto::telemetry::traceparent_of(&tracing::Span::current())
        .or_else(|| tofuflow_proto::child_traceparent(&spec.traceparent, fresh));
    if let Some(tp) = tp {
        env.insert("TRACEPARENT".into(), tp);
    }
}
