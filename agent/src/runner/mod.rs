//! Running one task: a fresh working directory (0700; module, HOME and TMPDIR inside), the
//! bundle, the state-backend wiring, the tofu commands of the phase, artifacts, the result, and
//! removal of the directory afterwards. Each step has its file; `run` and `execute` here are the
//! sequence.

mod apply;
mod backend;
mod blobs;
mod connections;
mod egress;
mod env;
pub mod identity;
mod limits;
mod outcome;
mod output;
mod plan;
pub mod process;
pub mod secrets;
mod session;
mod tofu;
mod warm;
mod watchdog;
mod workdir;

pub use backend::{backend_inside, declared_backend};
pub use limits::Effective;
pub use plan::summarize;
pub use warm::{Backoff, Shape, Warm};
pub use workdir::sweep as sweep_workdirs;

use crate::config::Config;
use crate::error::{Result, TaskError};
use crate::mask::Masker;
use crate::report::Reporter;
use crate::sandbox::{self, cgroup::TaskCgroup, Network, Sandbox};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1;
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
    /// Where renewed ID tokens go (the heartbeat loop hands them over).
    pub id_token: identity::TokenSlot,
    /// When the coordinator's grant arrived.
    pub granted: std::time::Instant,
}

/// Runs the tasks this agent takes: one `run` per task, any number at once.
#[derive(Clone)]
pub struct Runner {
    pub sandbox: Arc<Sandbox>,
    pub cfg: Arc<Config>,
    pub client: crate::Client,
    pub agent_id: String,
    /// How the state-backend relay speaks TLS to an https coordinator (the --tls-ca or the
    /// system roots, and the agent's client certificate).
    pub backend_tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// The shape of the last task this agent ran: sandboxes built ahead take it.
    pub shape: Arc<std::sync::Mutex<Option<Shape>>>,
    /// When a sandbox may next be built ahead, after builds that failed (all slots alike).
    pub ahead: Arc<std::sync::Mutex<Backoff>>,
}

impl Runner {
    /// A runner for this agent's slots (nothing built ahead yet).
    pub fn new(
        sandbox: Sandbox,
        cfg: &Arc<Config>,
        client: &crate::Client,
        agent_id: &str,
        backend_tls: Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Runner {
        Runner {
            sandbox: Arc::new(sandbox),
            cfg: cfg.clone(),
            client: client.clone(),
            agent_id: agent_id.to_string(),
            backend_tls,
            shape: Default::default(),
            ahead: Default::default(),
        }
    }
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

impl Runner {
    /// Runs a task to its end and reports the result. Never panics on task errors: every path
    /// ends in a Complete (or the coordinator has already fenced this attempt). `warm` is the
    /// sandbox built ahead for it, if any; the answer is the one built for the slot's next task.
    pub async fn run(
        &self,
        spec: v1::TaskSpec,
        held: &Held,
        (slot, pool): (u32, &str),
        warm: Option<Warm>,
    ) -> Option<Warm> {
        let started = std::time::Instant::now();
        crate::metrics::metrics().task_started();
        let reporter = self.start_reporting(&spec, held);
        let phase = v1::Phase::try_from(spec.phase).unwrap_or(v1::Phase::Unspecified);
        let wd = self.cfg.work_root.join("work").join(&spec.run_id);
        let lim = Effective::of(&self.cfg, spec.limits.unwrap_or_default());
        if spec.limits.is_some_and(|l| l != v1::TaskLimits::default()) {
            reporter.system(format!(
                "tofuflow: limits for this run (within the agent's maxima): {}",
                lim.describe()
            ));
        }
        let watch = watchdog::Watchdog::start(self, &spec, held, &lim, &reporter);
        let ctx = TaskCtx {
            lim,
            slot,
            network: self.sandbox.network_for(&self.cfg, pool),
            cgroup: watch.cgroup.as_deref(),
            killed_by: Default::default(),
        };
        let result = self.execute(&spec, held, &wd, &reporter, &ctx, warm).await;
        let killed_by = ctx.killed_by.lock().ok().and_then(|k| k.clone());
        let hits = watch.finish();
        let stop = held.reason.lock().map(|r| r.clone()).unwrap_or(None);
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
            epoch: held.epoch,
            lease_token: held.lease_token.clone(),
            ..Default::default()
        });
        // The slot's next sandbox is built while this task's end is reported.
        let end = self.report_end((phase, &spec.task_id), req, reporter, (&wd, held), started);
        let (next, ()) = tokio::join!(self.warm(slot), end);
        next
    }

    /// Says how the task ended, removes its directory, sends the rest of its log and then its
    /// result.
    async fn report_end(
        &self,
        (phase, task_id): (v1::Phase, &str),
        req: v1::CompleteRequest,
        reporter: Reporter,
        (wd, held): (&Path, &Held),
        started: std::time::Instant,
    ) {
        reporter.system(format!(
            "tofuflow: {phase} finished: {}",
            match v1::Outcome::try_from(req.outcome) {
                Ok(v1::Outcome::Succeeded) => "succeeded".to_string(),
                Ok(v1::Outcome::Cancelled) => format!("cancelled ({})", req.error),
                _ => format!("failed: {}", req.error),
            }
        ));
        workdir::clean_up(wd, self.cfg.keep_workdirs, &reporter);
        // Its log sink must go before the reporter can finish (it holds the log's sender).
        held.id_token.detach();
        if !reporter.finish(Duration::from_secs(60)).await {
            tracing::warn!("not all log lines reached the coordinator");
        }
        let outcome = match v1::Outcome::try_from(req.outcome) {
            Ok(v1::Outcome::Succeeded) => "succeeded",
            Ok(v1::Outcome::Cancelled) => "cancelled",
            _ => "failed",
        };
        self.complete(req).await;
        crate::metrics::metrics().task_ended(&phase.to_string(), outcome, started.elapsed());
        crate::mask::Registry::global().remove(task_id);
    }

    /// Starts streaming the task's log (secrets masked) and says who runs what.
    fn start_reporting(&self, spec: &v1::TaskSpec, held: &Held) -> Reporter {
        let reporter = Reporter::start(
            self.client.clone(),
            crate::report::Lease {
                task_id: spec.task_id.clone(),
                attempt: spec.attempt,
                epoch: held.epoch,
                token: held.lease_token.clone(),
            },
            Masker::new(
                spec.secrets
                    .iter()
                    .chain(spec.backend.iter().map(|b| &b.password))
                    .chain(connections::secret_values(spec).iter())
                    .chain(spec.identity.iter().map(|i| &i.id_token)),
            ),
        );
        held.id_token.set_sink(reporter.handle());
        let phase = v1::Phase::try_from(spec.phase).unwrap_or(v1::Phase::Unspecified);
        reporter.system(format!(
            "tofuflow: agent {} ({}) runs {phase} attempt {} of run {} for workspace {}",
            self.agent_id,
            crate::labels::hostname(),
            spec.attempt,
            spec.run_id,
            spec.workspace
        ));
        reporter
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

    /// The task's steps: the working directory, bundle and variables, the state backend, the
    /// saved plan (apply), the gateway, then `tofu init` and the phase's commands.
    async fn execute(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        wd: &Path,
        rep: &Reporter,
        ctx: &TaskCtx<'_>,
        warm: Option<Warm>,
    ) -> Result<Done> {
        let sb = &self.sandbox;
        let inner = workdir::inner(sb, wd);
        if ctx.network != Network::Host && !sb.namespaces {
            return Err(TaskError::Setup(format!(
                "network mode {} needs a network namespace, which this agent does not have",
                ctx.network.name()
            )));
        }
        let user = sandbox::run_user(&self.cfg.run_user, self.cfg.run_uid_base, ctx.slot)
            .map_err(TaskError::Setup)?;
        let (secrets, taken) = self
            .working_dir(wd, &inner, user, ctx.network, warm)
            .await?;
        let module = wd.join("module");
        crate::metrics::metrics().step("setup".into(), lease.granted.elapsed());
        self.unpack_bundle(spec, lease, &module, &inner, rep)
            .await?;
        let prepared = std::time::Instant::now();
        let var_args = workdir::write_var_files(spec, wd, &inner)?;
        workdir::write_tofurc(sb, wd)?;
        let connection_env = connections::apply(spec, &secrets, rep)?;
        let identity_env = identity::apply(spec, &secrets, &lease.id_token, rep)?;
        // State: the coordinator's http backend unless the module brings its own.
        let isolated = ctx.network != Network::Host;
        let state = self.state_backend(spec, &module, isolated, (wd, &inner), rep)?;
        let plan_file = wd.join("tfplan");
        let phase = v1::Phase::try_from(spec.phase).unwrap_or(v1::Phase::Unspecified);
        if phase == v1::Phase::Apply {
            self.fetch_plan(spec, lease, &plan_file).await?;
        }
        // The gateway lives (and relays) until this function returns.
        let (egress, session) = self
            .egress_and_session(spec, ctx, &state, rep, taken)
            .await?;
        if let Some((uid, gid)) = user {
            workdir::chown_tree(wd, uid, gid)?;
        }
        let mut env = self.env(spec, &inner, &state, egress.as_ref().map(|e| e.proxy_port));
        env.extend(connection_env);
        env.extend(identity_env);
        let confinement = self.confinement(ctx, wd, &inner, egress.as_ref(), user);
        confinement.describe(sb, (user, ctx.cgroup.is_some(), session.is_some()), rep);
        let tofu = tofu::Tofu {
            shown_as: tofu::shown_as(&sb.tofu),
            launch: confinement.launch(sb, &module),
            env,
            rep,
            sink: rep.handle(),
            cancel: &lease.cancel,
            grace: self.cfg.cancel_grace,
            sandboxed: confinement.sandboxed,
            killed_by: &ctx.killed_by,
            session: tokio::sync::OnceCell::new_with(session),
        };
        let steps = Steps {
            spec,
            lease,
            phase,
            plan_file: &plan_file,
            plan_in: &inner.join("tfplan"),
            var_args,
            init: state.init.clone(),
        };
        crate::metrics::metrics().step("prepare".into(), prepared.elapsed());
        let done = self.tofu_steps(&tofu, steps).await;
        tofu.end().await;
        done
    }

    /// The task's working directory and its secrets directory (unmounted when dropped, however
    /// the task ends): the sandbox built ahead when the task can take it (then also its gateway
    /// socket and session), else made now.
    async fn working_dir(
        &self,
        wd: &Path,
        inner: &Path,
        user: Option<(u32, u32)>,
        network: Network,
        warm: Option<Warm>,
    ) -> Result<(secrets::SecretsDir, Option<warm::Taken>)> {
        if let Some(w) = warm {
            if let Some((secrets, taken)) = w.take(wd, network).await {
                return Ok((secrets, Some(taken)));
            }
        }
        workdir::fresh(wd)?;
        Ok((secrets::SecretsDir::create(wd, inner, user)?, None))
    }

    /// The gateway (for an isolated network) and the sandbox built ahead when it has this
    /// task's shape (it is moved into the task's cgroup); the shape is remembered for the next.
    async fn egress_and_session(
        &self,
        spec: &v1::TaskSpec,
        ctx: &TaskCtx<'_>,
        state: &backend::StateBackend,
        rep: &Reporter,
        taken: Option<warm::Taken>,
    ) -> Result<(Option<egress::Egress>, Option<session::Session>)> {
        let isolated = ctx.network != Network::Host;
        let shape = Shape {
            network: ctx.network,
            relays: match isolated {
                true => egress::relays(state).0,
                false => vec![],
            },
        };
        if let Ok(mut last) = self.shape.lock() {
            *last = Some(shape.clone());
        }
        let mut taken = match taken {
            Some(t) if t.shape == shape => t.adopt(ctx.cgroup).await,
            Some(t) => {
                t.discard().await;
                None
            }
            None => None,
        };
        let bound = taken.as_mut().and_then(|t| t.gateway.take());
        let egress = match isolated {
            true => Some(self.start_egress(spec, ctx.network, state, rep, bound)?),
            false => None,
        };
        Ok((egress, taken.map(|t| t.session)))
    }

    /// The task's tofu commands: init, then the phase's own.
    async fn tofu_steps(&self, tofu: &tofu::Tofu<'_>, s: Steps<'_>) -> Result<Done> {
        let fin = tofu.run(s.init, false).await?;
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
        match s.phase {
            v1::Phase::Plan => {
                self.plan_steps(tofu, s.spec, s.lease, s.plan_file, s.plan_in, s.var_args)
                    .await
            }
            v1::Phase::Apply => self.apply_steps(tofu, s.spec, s.plan_in).await,
            v1::Phase::Unspecified => Err(TaskError::Setup("task has no phase".into())),
        }
    }
}

/// What the task's tofu commands need besides tofu.
struct Steps<'a> {
    spec: &'a v1::TaskSpec,
    lease: &'a Held,
    phase: v1::Phase,
    plan_file: &'a Path,
    plan_in: &'a Path,
    var_args: Vec<String>,
    init: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::env::env_allowed;
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
                "http://127.0.0.1:443/state/a".to_string(),
                Some(("coord.example.com".into(), 443))
            )
        );
        assert_eq!(
            backend_inside("https://localhost:7701/state/a", true),
            (
                "http://127.0.0.1:7701/state/a".to_string(),
                Some(("localhost".into(), 7701))
            )
        );
        assert_eq!(
            backend_inside("http://[::1]:80/state/x", true).1,
            Some(("::1".into(), 80))
        );
    }
}
