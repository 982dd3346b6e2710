//! Launching the task's tofu commands: confined as this host allows (straight from the agent with
//! rlimits, or through the sandbox helper), each command shown in the log, its end recorded.

use super::egress::Egress;
use super::process::{self, Finished, Launch};
use super::session::Session;
use super::{Runner, TaskCtx};
use crate::error::{Result, TaskError};
use crate::report::{LineSink, Reporter};
use crate::sandbox::{self, Network, Sandbox};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// How every tofu command of a task is confined.
pub(super) struct Confinement {
    pub limits: sandbox::Limits,
    /// The sandbox helper's spec (used only when `sandboxed`).
    pub spec: sandbox::Spec,
    /// Started through the sandbox helper: namespaces, a run user or a cgroup.
    pub sandboxed: bool,
}

impl Runner {
    /// The task's confinement; `inner` is the working directory as tofu sees it.
    pub(super) fn confinement(
        &self,
        ctx: &TaskCtx<'_>,
        wd: &Path,
        inner: &Path,
        egress: Option<&Egress>,
        user: Option<(u32, u32)>,
    ) -> Confinement {
        let sb = &self.sandbox;
        let memory_cgroup = sb.cgroups.as_ref().is_some_and(|c| c.memory()) && ctx.cgroup.is_some();
        let limits = sandbox::Limits {
            cpu_secs: ctx.lim.cpu,
            address_space: if memory_cgroup { 0 } else { ctx.lim.memory },
            nofile: self.cfg.limit_nofile,
            fsize_bytes: ctx.lim.fsize,
            nproc: ctx.lim.nproc,
        };
        let mut spec = sb.spec(
            wd,
            egress.map(|e| (e.gateway.path.as_path(), e.relays.clone())),
            ctx.network != Network::Host,
            user,
            limits,
            ctx.cgroup.map(|c| c.procs_files()).unwrap_or_default(),
        );
        spec.cwd = inner.join("module");
        spec.argv = vec![if sb.namespaces {
            sandbox::TOFU.to_string()
        } else {
            sb.tofu.display().to_string()
        }];
        Confinement {
            limits,
            spec,
            sandboxed: sb.namespaces || user.is_some() || ctx.cgroup.is_some(),
        }
    }
}

impl Confinement {
    /// How a command starts: through the helper when sandboxed, else directly in `module`.
    pub fn launch<'a>(&'a self, sb: &'a Sandbox, module: &'a Path) -> Launch<'a> {
        if self.sandboxed {
            Launch::Sandboxed {
                helper: &sb.helper,
                spec: &self.spec,
                session: None,
            }
        } else {
            Launch::Direct {
                bin: &sb.tofu,
                cwd: module,
                limits: self.limits,
                seccomp: sb.seccomp,
            }
        }
    }

    /// Says in the run's log what confines the task (nothing when it runs unconfined).
    /// `ahead`: its namespaces were built before the task arrived.
    pub fn describe(
        &self,
        sb: &Sandbox,
        (user, cgroup, ahead): (Option<(u32, u32)>, bool, bool),
        rep: &Reporter,
    ) {
        if !self.sandboxed {
            return;
        }
        rep.system(format!(
            "tofuflow: sandbox: {}{}{}",
            match (sb.namespaces, ahead) {
                (true, false) => "mount, PID, IPC and UTS namespaces, one set for all the task's commands",
                (true, true) => "mount, PID, IPC and UTS namespaces, one set for all the task's commands, built (fresh, for this task alone) before it arrived",
                (false, _) => "no namespaces",
            },
            match user {
                Some((u, _)) => format!(", run user {u}"),
                None => String::new(),
            },
            if cgroup { ", task cgroup" } else { "" }
        ));
    }
}

/// How the log names the binary the agent runs (`tofu`, `terraform`, …): its file name.
pub(super) fn shown_as(bin: &Path) -> String {
    bin.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "tofu".into())
}

/// Runs the task's tofu commands, one at a time, all alike.
pub(super) struct Tofu<'a> {
    /// The binary's name as the log shows it (`$ terraform plan …` when that is what runs).
    pub shown_as: String,
    pub launch: Launch<'a>,
    pub env: BTreeMap<String, String>,
    pub rep: &'a Reporter,
    pub sink: LineSink,
    pub cancel: &'a CancellationToken,
    pub grace: Duration,
    pub sandboxed: bool,
    /// Where the signal that ended the last command is recorded (for the task's limit hit).
    pub killed_by: &'a Mutex<Option<String>>,
    /// The task's sandbox session, started by its first command (with namespaces).
    pub session: OnceCell<Session>,
}

impl Tofu<'_> {
    /// Runs `tofu ARGS` (shown in the log); with `capture`, its stdout is returned, not logged.
    pub async fn run(&self, args: Vec<String>, capture: bool) -> Result<Finished> {
        let shown: Vec<&str> = args.iter().map(String::as_str).collect();
        self.rep
            .system(format!("$ {} {}", self.shown_as, shown.join(" ")));
        let launch = self.launch_in_session(&args).await?;
        let t0 = std::time::Instant::now();
        let fin = process::run(
            launch.as_ref().unwrap_or(&self.launch),
            &args,
            &self.env,
            &self.sink,
            capture,
            self.cancel,
            self.grace,
        )
        .await?;
        let step = format!("tofu_{}", args.first().map(String::as_str).unwrap_or("?"));
        crate::metrics::metrics().step(step, t0.elapsed());
        if let Ok(mut k) = self.killed_by.lock() {
            k.clone_from(&fin.killed_by);
        }
        if self.sandboxed && !fin.cancelled && fin.code == sandbox::helper::SETUP_FAILED {
            return Err(TaskError::Sandbox {
                cmd: args.first().cloned().unwrap_or_default(),
            });
        }
        Ok(fin)
    }

    /// With namespaces, how a command enters the task's session (started on first use).
    async fn launch_in_session(&self, args: &[String]) -> Result<Option<Launch<'_>>> {
        let Launch::Sandboxed { helper, spec, .. } = &self.launch else {
            return Ok(None);
        };
        if !spec.namespaces {
            return Ok(None);
        }
        let session = self
            .session
            .get_or_try_init(|| async {
                let t0 = std::time::Instant::now();
                let s = Session::start(helper, spec, Some(&self.sink)).await?;
                crate::metrics::metrics().step("sandbox".into(), t0.elapsed());
                Ok::<_, String>(s)
            })
            .await
            .map_err(|e| {
                self.rep.system(format!("tofuflow sandbox: {e}"));
                TaskError::Sandbox {
                    cmd: args.first().cloned().unwrap_or_default(),
                }
            })?;
        Ok(Some(Launch::Sandboxed {
            helper,
            spec,
            session: Some(session),
        }))
    }

    /// Ends the task's sandbox session, if it has one: nothing it started outlives this.
    pub async fn end(self) {
        if let Some(s) = self.session.into_inner() {
            s.end().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_names_the_binary_that_runs() {
        assert_eq!(shown_as(Path::new("/usr/local/bin/terraform")), "terraform");
        assert_eq!(shown_as(Path::new("tofu")), "tofu");
        assert_eq!(shown_as(Path::new("/")), "tofu");
    }
}
