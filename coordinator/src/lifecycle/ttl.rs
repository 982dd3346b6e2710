//! Environments with a TTL, no orphans. Three parts, each in the transaction of what it reacts
//! to:
//! - [`Ttl`] as a before-commit hook: a run submitted with a TTL that applies starts (or
//!   restarts) its workspace's deadline; a destroy run of that workspace that applies (or has
//!   nothing to destroy) marks it `destroyed`; a failed TTL destroy run counts an attempt and
//!   either schedules the next one after a backoff or, after the last, marks the environment
//!   `teardown_failed` (audited, a warn log line, a `teardown_failed` webhook event).
//! - [`Ttl::sweep`], called by the reaper (one coordinator holds the periodic-work lease): the
//!   `ttl_near` reminder before expiry, and at expiry (or when a retry is due) an auto-approved
//!   destroy run with the source run's bundle and variables, tagged `ttl=expired`.
//! - [`Store::extend_environment`]: `tofuflow env extend`.
//!
//! Touches: environments, runs (a destroy run: see `submit.rs`), webhook_deliveries, audit_log.

use super::submit::insert_run;
use super::workflow::NewWorkflow;
use super::workflow_run::insert_workflow_run;
use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::lifecycle::events::OnRunEvents;
use crate::runs::events::RunEvent;
use crate::runs::ttl::{after_failed_teardown, AfterFailure, EnvState, TtlPolicy};
use crate::runs::{RunKind, RunState};
use crate::store::*;
use crate::workflows::WorkflowState;
use std::collections::BTreeMap;
use std::sync::Arc;
use tofuflow_proto::workflow::{self as wf, Approval};
use tokio::sync::Notify;

/// Who the coordinator's own TTL actions are recorded as.
pub const TTL_ACTOR: &str = "coordinator (ttl)";

/// The TTL machinery: its knobs, the policy its destroy runs are queued with, and the webhook
/// delivery loop's wake-up.
pub struct Ttl {
    pub policy: TtlPolicy,
    pub runs: Policy,
    pub webhook_wake: Arc<Notify>,
}

#[tonic::async_trait]
impl OnRunEvents for Ttl {
    async fn on_run_events(&self, _store: &Store, tx: &mut Tx, events: &[RunEvent]) -> Result<()> {
        for e in events {
            if let RunEvent::Moved { run_id, to, .. } = e {
                if ends_a_ttl_step(*to) {
                    self.on_run_end(tx, run_id, *to).await?;
                }
            }
        }
        Ok(())
    }
}

/// The states whose entry may change an environment.
fn ends_a_ttl_step(to: RunState) -> bool {
    use RunState::*;
    matches!(
        to,
        Applied | PlannedNoChanges | Failed | Cancelled | Rejected | Interrupted | Expired
    )
}

impl Ttl {
    /// A run ended in `to`: what it means for its workspace's environment.
    async fn on_run_end(&self, tx: &mut Tx, run_id: &str, to: RunState) -> Result<()> {
        let keys = tx.keys.clone();
        let run = get_run_c(&keys, tx, run_id).await?;
        let now = now_ms();
        let ok = matches!(to, RunState::Applied | RunState::PlannedNoChanges);
        if let Some(wr) = run.tags.get("workflow_run") {
            if let Some(env) = environment_torn_down_by(tx, wr).await? {
                return self.on_workflow_teardown(tx, &env, now).await;
            }
        }
        match run.kind {
            RunKind::PlanAndApply if ok => {
                let ttl_ms = match run_ttl_ms(tx, run_id).await? {
                    0 => workspace_ttl_ms(tx, &run.workspace).await?.unwrap_or(0),
                    own => own,
                };
                if ttl_ms > 0 {
                    activate_environment(tx, &run, ttl_ms, now).await?;
                    tx.audit(
                        AuditEntry::new(AuditKind::EnvironmentTtlSet, &run.submitted_by)
                            .workspace(&run.workspace)
                            .run(&run.id)
                            .detail(serde_json::json!({"ttl_ms": ttl_ms, "expires_unix_ms": now + ttl_ms})),
                    );
                }
            }
            RunKind::Destroy => {
                let Some(env) = environment_c(tx, &run.workspace).await? else {
                    return Ok(());
                };
                if env.state == EnvState::Destroyed {
                    return Ok(());
                }
                if ok {
                    destroyed(tx, &env, &run.id, now).await?;
                } else if env.destroy_run == run.id {
                    let why = format!("destroy run {} ended {}: {}", run.id, run.state, run.error);
                    self.teardown_failed_once(tx, &env, &why, now).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The environment's destroy run failed: the next attempt after a backoff, or, after the
    /// last, `teardown_failed`, loudly.
    async fn teardown_failed_once(
        &self,
        tx: &mut Tx,
        env: &Environment,
        why: &str,
        now: i64,
    ) -> Result<()> {
        let attempts = env.attempts + 1;
        let mut u = EnvUpdate::of(env);
        u.attempts = attempts;
        u.last_error = why.to_string();
        let decision = after_failed_teardown(&self.policy, attempts, now);
        match decision {
            AfterFailure::RetryAt(at) => {
                u.state = EnvState::TearingDown;
                u.destroy_run = String::new();
                u.next_attempt_ms = at;
            }
            AfterFailure::GiveUp => u.state = EnvState::TeardownFailed,
        }
        if !update_environment(tx, env, &u, now).await? {
            return Ok(());
        }
        if decision == AfterFailure::GiveUp {
            tracing::warn!(workspace = %env.workspace, attempts, destroy_run = %env.destroy_run, error = %u.last_error, "TEARDOWN FAILED: environment {} still exists after {attempts} destroy attempts; fix the cause and destroy it with `tofuflow run submit --destroy`", env.workspace);
            tx.audit(
                AuditEntry::new(AuditKind::EnvironmentTeardownFailed, TTL_ACTOR)
                    .workspace(&env.workspace)
                    .run(&env.source_run)
                    .detail(serde_json::json!({"attempts": attempts, "last_error": u.last_error, "destroy_run": env.destroy_run})),
            );
            if let Some(now_env) = environment_c(tx, &env.workspace).await? {
                let wake = self.webhook_wake.clone();
                crate::webhooks::queue_env_event(tx, &wake, "teardown_failed", &now_env).await?;
            }
        } else {
            tracing::warn!(workspace = %env.workspace, attempts, destroy_run = %env.destroy_run, next_attempt_ms = u.next_attempt_ms, "environment teardown failed; retrying after a backoff");
        }
        Ok(())
    }
}

/// A destroy run of the workspace applied (or a workflow run's destroy succeeded): the
/// environment is gone.
async fn destroyed(tx: &mut Tx, env: &Environment, destroy_run: &str, now: i64) -> Result<()> {
    let mut u = EnvUpdate::of(env);
    u.state = EnvState::Destroyed;
    u.destroy_run = destroy_run.to_string();
    if update_environment(tx, env, &u, now).await? {
        tx.audit(
            AuditEntry::new(AuditKind::EnvironmentDestroyed, TTL_ACTOR)
                .workspace(&env.workspace)
                .run(destroy_run)
                .detail(serde_json::json!({"expired_unix_ms": env.expires_ms, "failed_attempts": env.attempts})),
        );
    }
    Ok(())
}

impl Ttl {
    /// The reaper's TTL sweep: reminders due, then teardowns due; one line per action.
    pub async fn sweep(&self, store: &Store) -> Result<Vec<String>> {
        self.sweep_at(store, now_ms()).await
    }

    /// The sweep as of `now`.
    pub(crate) async fn sweep_at(&self, store: &Store, now: i64) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for env in store.environments_in(EnvState::Active).await? {
            let lead = self.policy.reminder_lead_ms(env.ttl_ms);
            if env.expires_ms <= now {
                done.extend(self.start_teardown(store, &env, now).await?);
            } else if !env.reminder_sent && env.expires_ms - lead <= now {
                done.extend(self.remind(store, &env, now).await?);
            }
        }
        for env in store.environments_in(EnvState::TearingDown).await? {
            if env.destroy_run.is_empty() && env.next_attempt_ms <= now {
                done.extend(self.start_teardown(store, &env, now).await?);
            }
        }
        Ok(done)
    }

    /// The `ttl_near` reminder: an audit entry and a webhook event, once per deadline.
    async fn remind(&self, store: &Store, env: &Environment, now: i64) -> Result<Option<String>> {
        let mut tx = store.begin().await?;
        let mut u = EnvUpdate::of(env);
        u.reminder_sent = true;
        if !update_environment(&mut tx, env, &u, now).await? {
            return Ok(None);
        }
        tx.audit(
            AuditEntry::new(AuditKind::EnvironmentReminded, TTL_ACTOR)
                .workspace(&env.workspace)
                .run(&env.source_run)
                .detail(serde_json::json!({"expires_unix_ms": env.expires_ms, "in_ms": env.expires_ms - now})),
        );
        crate::webhooks::queue_env_event(&mut tx, &self.webhook_wake, "ttl_near", env).await?;
        store.commit(tx).await?;
        Ok(Some(format!(
            "environment {} expires in {} ms: reminder sent",
            env.workspace,
            env.expires_ms - now
        )))
    }

    /// Expired (or a retry is due): queues an auto-approved destroy run of the workspace with
    /// the source run's bundle and variables, tagged `ttl=expired`.
    async fn start_teardown(
        &self,
        store: &Store,
        env: &Environment,
        now: i64,
    ) -> Result<Option<String>> {
        if !env.workflow_run.is_empty() {
            return self.start_workflow_teardown(store, env, now).await;
        }
        let mut tx = store.begin().await?;
        let keys = tx.keys.clone();
        let source = get_run_c(&keys, &mut tx, &env.source_run).await?;
        let run = insert_run(&mut tx, &destroy_of(&source), &self.runs).await?;
        let mut u = EnvUpdate::of(env);
        u.state = EnvState::TearingDown;
        u.destroy_run = run.id.clone();
        if !update_environment(&mut tx, env, &u, now).await? {
            return Ok(None); // changed meanwhile (extended, destroyed): the rollback drops the run
        }
        let late_ms = now - env.expires_ms;
        tx.audit(expired(env, &run.id, late_ms));
        store.commit(tx).await?;
        tracing::info!(workspace = %env.workspace, destroy_run = %run.id, attempt = env.attempts + 1, started_after_expiry_ms = late_ms, "environment expired: destroy run queued");
        Ok(Some(format!(
            "environment {} expired: destroy run {} queued ({} ms after expiry)",
            env.workspace, run.id, late_ms
        )))
    }
}

/// The audit entry of an expired environment whose destroy (run or workflow run) started.
fn expired(env: &Environment, destroy_run: &str, late_ms: i64) -> AuditEntry {
    AuditEntry::new(AuditKind::EnvironmentExpired, TTL_ACTOR)
        .workspace(&env.workspace)
        .run(destroy_run)
        .detail(serde_json::json!({
            "source_run": env.source_run,
            "workflow_run": env.workflow_run,
            "destroy_run": destroy_run,
            "attempt": env.attempts + 1,
            "expires_unix_ms": env.expires_ms,
            "started_after_expiry_ms": late_ms,
        }))
}

/// The destroy run tearing down what `source` applied: same workspace, pool, bundle,
/// variables and variable files, auto-approved, tagged `ttl=expired`.
fn destroy_of(source: &Run) -> NewRun {
    NewRun {
        limits: source.limits.clone(),
        variable_decls: source.variable_decls.clone(),
        workspace: source.workspace.clone(),
        pool: source.pool.clone(),
        kind: RunKind::Destroy,
        bundle_digest: source.bundle_digest.clone(),
        variables: source.variables.clone(),
        var_files: source.var_files.clone(),
        auto_approve: true,
        actor: TTL_ACTOR.to_string(),
        commit: source.commit.clone(),
        pipeline_id: source.pipeline_id.clone(),
        source: source.source.clone(),
        traceparent: String::new(),
        tags: BTreeMap::from([
            ("ttl".to_string(), "expired".to_string()),
            ("source_run".to_string(), source.id.clone()),
        ]),
        idempotency: None,
        env: Default::default(),
        ttl_ms: 0,
    }
}

/// How `env extend` moves a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// Later by this much.
    By(i64),
    /// This long from now.
    Ttl(i64),
}

impl Store {
    /// Moves an active environment's deadline (and re-arms its reminder); audited.
    pub async fn extend_environment(
        &self,
        workspace: &str,
        how: Extend,
        actor: &str,
    ) -> Result<Environment> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let env = environment_c(&mut tx, workspace).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "workspace {workspace:?} has no TTL: list environments with `tofuflow env list`"
            ))
        })?;
        if env.state != EnvState::Active {
            return Err(Error::Conflict(format!(
                "environment {workspace} is {}: only an active one can be extended (a new apply with --ttl starts a new TTL)",
                env.state
            )));
        }
        let mut u = EnvUpdate::of(&env);
        u.expires_ms = match how {
            Extend::By(ms) => env.expires_ms.saturating_add(ms),
            Extend::Ttl(ms) => now.saturating_add(ms),
        };
        u.reminder_sent = false;
        if !update_environment(&mut tx, &env, &u, now).await? {
            return Err(Error::Conflict(format!(
                "environment {workspace} changed meanwhile: look at `tofuflow env list` and retry"
            )));
        }
        tx.audit(
            AuditEntry::new(AuditKind::EnvironmentExtended, actor)
                .workspace(workspace)
                .run(&env.source_run)
                .detail(
                    serde_json::json!({"from_unix_ms": env.expires_ms, "to_unix_ms": u.expires_ms}),
                ),
        );
        self.commit(tx).await?;
        self.environment(workspace).await
    }
}

impl Ttl {
    /// A run of an environment's destroy workflow run ended: once the workflow run has ended
    /// (the engine hook, added first, has moved it on in this transaction), the environment is
    /// destroyed, or the attempt failed.
    async fn on_workflow_teardown(&self, tx: &mut Tx, env: &Environment, now: i64) -> Result<()> {
        let w = workflow_c(tx, &env.destroy_run).await?;
        match w.state {
            WorkflowState::Succeeded => destroyed(tx, env, &w.id, now).await,
            WorkflowState::Failed | WorkflowState::Cancelled => {
                let why = format!(
                    "destroy workflow run {} ended {}: {}",
                    w.id,
                    w.state.as_str(),
                    w.reason
                );
                self.teardown_failed_once(tx, env, &why, now).await
            }
            _ => Ok(()),
        }
    }

    /// An expired workflow run's teardown: once the workflow run has ended (succeeded, failed
    /// or cancelled half-way), a destroy workflow run of the targets that applied something
    /// (a workspace with state), dependants first, auto-approved, tagged `ttl=expired`. A target
    /// that never applied is left out: it has nothing to destroy, and its inputs could not be
    /// read from upstreams that never applied either.
    async fn start_workflow_teardown(
        &self,
        store: &Store,
        env: &Environment,
        now: i64,
    ) -> Result<Option<String>> {
        let mut tx = store.begin().await?;
        let w = workflow_c(&mut tx, &env.workflow_run).await?;
        if !w.state.is_end() {
            return Ok(None); // expired while running: torn down once it ends
        }
        let targets = applied_targets(&mut tx, &w).await?;
        if targets.is_empty() {
            destroyed(&mut tx, env, "", now).await?;
            store.commit(tx).await?;
            return Ok(Some(format!(
                "environment {} expired: nothing was applied",
                env.workspace
            )));
        }
        let mut tags = w.tags.clone();
        tags.insert("ttl".into(), "expired".into());
        let n = NewWorkflow {
            file_name: w.file_name.clone(),
            definition: w.definition.clone(),
            bundles: w.bundles.clone(),
            decls: w.decls.clone(),
            destroy: true,
            approval: Approval::Auto,
            pool: w.pool.clone(),
            actor: TTL_ACTOR.to_string(),
            tags,
            targets,
            ttl_ms: 0,
            idempotency: None,
        };
        let id = insert_workflow_run(&mut tx, n, &self.runs).await?;
        let mut u = EnvUpdate::of(env);
        u.state = EnvState::TearingDown;
        u.destroy_run = id.clone();
        if !update_environment(&mut tx, env, &u, now).await? {
            return Ok(None);
        }
        tx.audit(expired(env, &id, now - env.expires_ms));
        // A destroy workflow run that ended as it started (no target could start) is a
        // failed attempt now: no run of it will end later to say so.
        if let Some(torn) = environment_torn_down_by(&mut tx, &id).await? {
            if workflow_c(&mut tx, &id).await?.state.is_end() {
                self.on_workflow_teardown(&mut tx, &torn, now).await?;
            }
        }
        store.commit(tx).await?;
        Ok(Some(format!(
            "environment {} expired: destroy workflow run {id} started",
            env.workspace
        )))
    }
}

/// The targets of workflow run `w` whose workspace has state (applied something).
async fn applied_targets(tx: &mut Tx, w: &WorkflowRun) -> Result<Vec<wf::Target>> {
    let bad = |p: Vec<wf::Problem>| {
        Error::Internal(format!(
            "stored workflow file no longer parses: {}",
            wf::describe(&p)
        ))
    };
    let file = wf::parse(&w.file_name, &w.definition).map_err(bad)?;
    let keys = tx.keys.clone();
    let mut out = Vec::new();
    for t in wf::expand(&file, &w.file_name).map_err(bad)? {
        if current_state_c(tx, &keys, &t.workspace).await?.is_some() {
            out.push(t);
        }
    }
    Ok(out)
}
