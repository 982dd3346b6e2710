//! Watching a running task: the task timeout, and its cgroup with the process-limit monitor. Both
//! stop the task like a cancel, after recording why (the outcome names the reason).

use super::limits::Effective;
use super::{Held, Runner, StopReason};
use crate::report::Reporter;
use crate::sandbox::cgroup::{Hits, TaskCgroup};
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1;
use tokio::task::JoinHandle;

/// The watchers of one task, stopped by [`Watchdog::finish`].
pub(super) struct Watchdog {
    timer: JoinHandle<()>,
    monitor: Option<JoinHandle<()>>,
    /// The task's cgroup, when a limit needs one and the host has them.
    pub cgroup: Option<Arc<TaskCgroup>>,
}

impl Watchdog {
    /// Starts the timeout timer, the task's cgroup and its process-limit monitor.
    pub fn start(
        runner: &Runner,
        spec: &v1::TaskSpec,
        held: &Held,
        lim: &Effective,
        rep: &Reporter,
    ) -> Watchdog {
        let timer = timer(held, lim.timeout);
        let cgroup = runner.task_cgroup(spec, lim, rep);
        let monitor = cgroup.clone().map(|cg| nproc_monitor(held, cg, lim.nproc));
        Watchdog {
            timer,
            monitor,
            cgroup,
        }
    }

    /// Stops the watchers, removes the cgroup and returns what it recorded.
    pub fn finish(self) -> Hits {
        self.timer.abort();
        if let Some(m) = self.monitor {
            m.abort();
        }
        let hits = self.cgroup.as_ref().map(|c| c.hits()).unwrap_or_default();
        if let Some(cg) = &self.cgroup {
            cg.destroy();
        }
        hits
    }
}

/// The task timeout stops tofu like a cancel, and the task then fails as timed out.
fn timer(held: &Held, timeout: Duration) -> JoinHandle<()> {
    let (cancel, reason) = (held.cancel.clone(), held.reason.clone());
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        if let Ok(mut r) = reason.lock() {
            r.get_or_insert(StopReason::Timeout(timeout));
        }
        cancel.cancel();
    })
}

/// A task at its process limit is a runaway (a fork bomb): stop it.
fn nproc_monitor(held: &Held, cg: Arc<TaskCgroup>, limit: u64) -> JoinHandle<()> {
    let (cancel, reason) = (held.cancel.clone(), held.reason.clone());
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
}

impl Runner {
    /// The task's cgroup: limits for all its processes together, and afterwards the record of
    /// which limit it hit.
    /// Only when a limit needs one: moving a process into a cgroup costs ~10 ms here (the kernel
    /// waits for an RCU grace period), paid by every tofu command. Without limits the PID
    /// namespace (or process group) already ends everything the task started.
    fn task_cgroup(
        &self,
        spec: &v1::TaskSpec,
        lim: &Effective,
        rep: &Reporter,
    ) -> Option<Arc<TaskCgroup>> {
        let wants_cgroup = lim.memory > 0 || lim.nproc > 0;
        let c = self.sandbox.cgroups.as_ref().filter(|_| wants_cgroup)?;
        // Unique per agent and attempt: two attempts of a task may overlap on a host.
        let name = format!(
            "{}-{}-{}-{}",
            self.sandbox.cgroup_prefix, self.agent_id, spec.task_id, spec.attempt
        );
        match c.create(&name, lim.memory, lim.nproc) {
            Ok(cg) => Some(Arc::new(cg)),
            Err(e) => {
                rep.system(format!(
                    "tofuflow: warning: {e}; the task runs without its cgroup limits"
                ));
                None
            }
        }
    }
}
