//! A task's sandbox built before the task: while a slot waits for its next task, it makes a
//! working directory (with its secrets tmpfs), the gateway's socket and the sandbox session over
//! them, so the task's first tofu command does not wait for the sandbox to be built. It is shaped
//! like the last task this agent ran (its network mode and the ports its sandbox relays), and a
//! task takes it only when its own shape is the same; otherwise the task builds its own, as it
//! would without one. Each is used by one task at most, or ended when the slot stops: the
//! isolation between tasks is the same. A build that fails is tried again only after a
//! [`Backoff`]: 1 s after the first failure, doubling up to 5 minutes, until one succeeds.

use super::secrets::SecretsDir;
use super::session::Session;
use super::Runner;
use crate::error::{Result, TaskError};
use crate::sandbox::{self, cgroup::TaskCgroup, Network};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

/// The first wait after a failed build ahead, and the longest.
const FIRST_WAIT: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(300);

/// When the next build ahead may be tried, after consecutive failures.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// Whether a build may be tried at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now >= u)
    }

    /// Records a failure at `now`: the wait before the next try (doubling each time).
    pub fn failed(&mut self, now: Instant) -> Duration {
        let wait = FIRST_WAIT
            .saturating_mul(1 << self.failures.min(16))
            .min(LONGEST_WAIT);
        self.failures += 1;
        self.until = Some(now + wait);
        wait
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// A gateway socket bound ahead (its path and listener).
pub type Bound = (PathBuf, UnixListener);

/// What a sandbox built ahead must match: a task's network mode and the ports it relays.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub network: Network,
    pub relays: Vec<(u16, String)>,
}

/// A sandbox waiting for the slot's next task.
pub struct Warm {
    wd: PathBuf,
    secrets: SecretsDir,
    gateway: Option<Bound>,
    shape: Shape,
    session: Session,
}

/// What a task takes from a [`Warm`] once its directory is its own.
pub(super) struct Taken {
    pub gateway: Option<Bound>,
    pub shape: Shape,
    pub session: Session,
}

impl Runner {
    /// Builds a sandbox for slot `slot`'s next task, shaped like the last task this agent ran.
    /// None when there was none yet, this agent has no namespaces, a failed build's backoff is
    /// not over, or the build failed (said in the agent's log; the task then builds its own).
    pub async fn warm(&self, slot: u32) -> Option<Warm> {
        if !self.sandbox.namespaces || !self.cfg.sandbox_ahead {
            return None;
        }
        let shape = self.shape.lock().ok()?.clone()?;
        let t0 = Instant::now();
        if !self.ahead.lock().ok()?.ready(t0) {
            return None;
        }
        let built = self.build_warm(slot, shape).await;
        let mut backoff = self.ahead.lock().ok()?;
        match built {
            Ok(w) => {
                backoff.succeeded();
                crate::metrics::metrics().step("sandbox_ahead".into(), t0.elapsed());
                Some(w)
            }
            Err(e) => {
                let wait = backoff.failed(Instant::now());
                tracing::warn!(slot, error = %e, next_try_in = ?wait, "cannot build a sandbox ahead; the next task builds its own");
                None
            }
        }
    }

    async fn build_warm(&self, slot: u32, shape: Shape) -> Result<Warm> {
        let name = format!("warm-{}", uuid::Uuid::new_v4().simple());
        let wd = self.cfg.work_root.join("work").join(&name);
        let user = sandbox::run_user(&self.cfg.run_user, self.cfg.run_uid_base, slot)
            .map_err(TaskError::Setup)?;
        super::workdir::fresh(&wd)?;
        let inner = super::workdir::inner(&self.sandbox, &wd);
        let secrets = SecretsDir::create(&wd, &inner, user)?;
        let isolated = shape.network != Network::Host;
        let gateway = match isolated {
            true => Some(
                sandbox::gateway::bind(&self.sandbox.gateway_dir, &name)
                    .map_err(TaskError::Egress)?,
            ),
            false => None,
        };
        let gw = gateway
            .as_ref()
            .map(|g| (g.0.as_path(), shape.relays.clone()));
        let spec = self
            .sandbox
            .spec(&wd, gw, isolated, user, Default::default(), vec![]);
        let session = Session::start(&self.sandbox.helper, &spec, None)
            .await
            .map_err(TaskError::Setup);
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                drop(secrets);
                let _ = std::fs::remove_dir_all(&wd);
                return Err(e);
            }
        };
        Ok(Warm {
            wd,
            secrets,
            gateway,
            shape,
            session,
        })
    }
}

impl Warm {
    /// Makes this the directory `wd` of a task whose network is `network`, when it can serve
    /// it (its shape's network, its session still there); otherwise ends it and answers None.
    pub(super) async fn take(mut self, wd: &Path, network: Network) -> Option<(SecretsDir, Taken)> {
        if self.shape.network != network || !self.session.alive() {
            self.discard().await;
            return None;
        }
        if let Err(e) = super::workdir::clear(wd).and_then(|()| {
            std::fs::rename(&self.wd, wd)
                .map_err(|e| TaskError::workdir(format!("cannot move {}", self.wd.display()), e))
        }) {
            tracing::warn!(error = %e, "cannot use the sandbox built ahead");
            self.discard().await;
            return None;
        }
        let taken = Taken {
            gateway: self.gateway,
            shape: self.shape,
            session: self.session,
        };
        Some((self.secrets.moved_to(wd), taken))
    }

    /// Ends the session and removes the directory (its secrets tmpfs first) and the gateway's
    /// socket.
    pub async fn discard(self) {
        self.session.end().await;
        drop(self.secrets);
        if let Some((path, _)) = self.gateway {
            let _ = std::fs::remove_file(path);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.wd) {
            tracing::warn!(dir = %self.wd.display(), error = %e, "cannot remove a sandbox built ahead");
        }
    }
}

impl Taken {
    /// Moves the session into the task's cgroup, if it has one; a session that cannot join it
    /// is ended (the task builds its own, inside the cgroup).
    pub(super) async fn adopt(self, cgroup: Option<&TaskCgroup>) -> Option<Taken> {
        let Some(cg) = cgroup else {
            return Some(self);
        };
        match self.session.join_cgroup(&cg.procs_files()) {
            Ok(()) => Some(self),
            Err(e) => {
                tracing::warn!(error = %e, "the sandbox built ahead cannot join the task's cgroup; building one in it");
                self.discard().await;
                None
            }
        }
    }

    /// Ends the session and removes the gateway's socket (the task's shape differs).
    pub(super) async fn discard(self) {
        self.session.end().await;
        if let Some((path, _)) = self.gateway {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_build_waits_doubling_up_to_five_minutes_and_a_success_resets_it() {
        let t = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(t));
        assert_eq!(b.failed(t), Duration::from_secs(1));
        assert!(!b.ready(t + Duration::from_millis(999)));
        assert!(b.ready(t + Duration::from_secs(1)));
        assert_eq!(b.failed(t), Duration::from_secs(2));
        assert_eq!(b.failed(t), Duration::from_secs(4));
        for _ in 0..30 {
            b.failed(t);
        }
        assert_eq!(b.failed(t), LONGEST_WAIT);
        b.succeeded();
        assert!(b.ready(t));
        assert_eq!(b.failed(t), FIRST_WAIT);
    }
}
