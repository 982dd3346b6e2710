//! Real `tofuflow-agent` processes: starting one with the stand-in `tofu`, killing, stopping
//! and watching it.

use crate::{wait_for, Cluster};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    pub id: String,
    pub name: String,
    child: Child,
    pub work_root: PathBuf,
}

impl Agent {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    /// SIGKILL: the agent vanishes as a spot node would.
    pub fn kill(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
    pub fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options for one agent.
#[derive(Clone, Default)]
pub struct AgentOpts {
    pub pools: Vec<String>,
    pub concurrency: u32,
    pub env: BTreeMap<String, String>,
    pub cancel_grace: Option<&'static str>,
    pub drain_grace: Option<&'static str>,
    /// More agent flags.
    pub args: Vec<&'static str>,
    /// More agent flags, made at run time.
    pub owned_args: Vec<String>,
    /// Reach RabbitMQ through this URL instead (e.g. a `Proxy`).
    pub amqp_url: Option<String>,
    /// The agent's `--lock-timeout` (default 3s).
    pub lock_timeout: Option<&'static str>,
    /// Reach the coordinator through this URL instead (e.g. a `Proxy`).
    pub coordinator_url: Option<String>,
    /// Run this tofu instead of the stand-in (e.g. the machine's real `terraform`).
    pub tofu_bin: Option<PathBuf>,
    /// Use this work root (e.g. a killed agent's, to restart it) instead of a new one.
    pub work_root: Option<PathBuf>,
}

impl Cluster {
    pub async fn agent(&mut self, opts: AgentOpts) -> usize {
        let n = self.agents.len();
        let name = format!("agent-{n}");
        let work_root = opts
            .work_root
            .clone()
            .unwrap_or_else(|| self.dir.join(&name));
        let ready = self.dir.join(format!("{name}.ready"));
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let pools = if opts.pools.is_empty() {
            vec!["default".to_string()]
        } else {
            opts.pools.clone()
        };
        let coordinator = opts
            .coordinator_url
            .clone()
            .unwrap_or_else(|| self.grpc_url());
        let amqp = opts
            .amqp_url
            .clone()
            .unwrap_or_else(|| self.amqp_url.clone());
        let credential = self.agent_credential(&pools).await;
        let mut cmd = Command::new(self.bins.join("tofuflow-agent"));
        cmd.args(["--coordinator", &coordinator, "--amqp-url", &amqp])
            .args(["--pool", &pools.join(",")])
            .args(["--concurrency", &opts.concurrency.max(1).to_string()])
            .arg("--tofu-bin")
            .arg(
                opts.tofu_bin
                    .clone()
                    .unwrap_or_else(|| self.bins.join("tofu-double")),
            )
            .arg("--work-root")
            .arg(&work_root)
            .args(["--name", &name, "--pass-env", "TOFU_DOUBLE_*"])
            .args(["--cancel-grace", opts.cancel_grace.unwrap_or("5s")])
            .args(["--drain-grace", opts.drain_grace.unwrap_or("30s")])
            .args(["--lock-timeout", opts.lock_timeout.unwrap_or("3s")])
            .arg("--sandbox-bind")
            .arg(format!("{}:rw", self.dir.join("trace").display()))
            .args(&opts.args)
            .args(&opts.owned_args)
            .arg("--ready-file")
            .arg(&ready)
            .env(
                "TOFUFLOW_LOG",
                std::env::var("TOFUFLOW_E2E_LOG")
                    .unwrap_or_else(|_| "info,tofuflow_agent=debug".into()),
            )
            .env("TOFU_DOUBLE_TRACE", self.dir.join("trace/tofu-trace.jsonl"))
            .envs(
                self.tls
                    .iter()
                    .map(|t| ("TOFUFLOW_TLS_CA", t.ca.as_os_str())),
            )
            .envs(&opts.env)
            .envs(
                credential
                    .iter()
                    .map(|t| ("TOFUFLOW_AGENT_TOKEN", t.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("start agent");
        let r = ready.clone();
        let id: String = wait_for("the agent to register", Duration::from_secs(30), || {
            let r = r.clone();
            async move {
                let s = std::fs::read_to_string(&r).ok()?;
                let v: serde_json::Value = serde_json::from_str(&s).ok()?;
                v.get("agent_id")
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
            }
        })
        .await;
        self.agents.push(Agent {
            id,
            name,
            child,
            work_root,
        });
        n
    }
}
