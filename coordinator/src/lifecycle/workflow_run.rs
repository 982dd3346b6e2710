//! What users do to a workflow run: start it, approve it as a whole, cancel it, retry what
//! failed. Touches: workflow_runs, workflow_targets, runs (through `insert_run` and `cancel`),
//! audit_log. The engine that moves it on between these is `workflow.rs`.

use super::idempotency::{remember_key, Keyed};
use super::workflow::{advance, NewWorkflow};
use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::store::*;
use crate::workflows::{Target, TargetState, WorkflowState};
use tofuflow_proto::workflow::Approval;

impl Store {
    /// Writes a workflow run and its targets and starts the targets that wait for nothing
    /// (unless the workflow is approved as a whole first), in one transaction.
    pub async fn start_workflow(&self, n: NewWorkflow, policy: &Policy) -> Result<WorkflowRun> {
        let mut tx = self.begin().await?;
        let id = insert_workflow_run(&mut tx, n, policy).await?;
        self.commit(tx).await?;
        workflow_c(&mut *self.pool.acquire().await?, &id).await
    }

    /// Starts, unless a start with the same idempotency key (by the same actor, within a day)
    /// came first: then its workflow run, or a refusal when that request differed.
    pub async fn start_workflow_once(
        &self,
        n: NewWorkflow,
        policy: &Policy,
    ) -> Result<WorkflowRun> {
        let (actor, k) = (n.actor.clone(), n.idempotency.clone());
        let make = self.start_workflow(n, policy);
        self.once(
            Keyed::WorkflowRun,
            &actor,
            k.as_ref(),
            make,
            |id| async move { workflow_c(&mut *self.pool.acquire().await?, &id).await },
        )
        .await
    }
}

/// Writes a workflow run (and its TTL's environment, if it has one) and its targets, and
/// starts the targets that wait for nothing, in `tx`; answers its id. A start, or the TTL
/// sweep starting an expired workflow run's destroy.
pub(crate) async fn insert_workflow_run(
    tx: &mut Tx,
    n: NewWorkflow,
    policy: &Policy,
) -> Result<String> {
    let now = now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let k = n.idempotency.as_ref();
    remember_key(tx, Keyed::WorkflowRun, &n.actor, k, &id, now).await?;
    let w = WorkflowRun {
        id,
        file_name: n.file_name,
        definition: n.definition,
        bundles: n.bundles,
        decls: n.decls,
        state: if n.approval == Approval::Once {
            WorkflowState::AwaitingApproval
        } else {
            WorkflowState::Running
        },
        destroy: n.destroy,
        approval: n.approval,
        pool: n.pool,
        actor: n.actor,
        tags: n.tags,
        reason: String::new(),
        created_ms: now,
        updated_ms: now,
    };
    let targets: Vec<Target> = n.targets.into_iter().map(stored_target).collect();
    insert_workflow(tx, &w, &targets).await?;
    if n.ttl_ms > 0 {
        activate_workflow_environment(tx, &w, n.ttl_ms, now).await?;
    }
    tx.audit(
        AuditEntry::new(AuditKind::WorkflowStarted, &w.actor).detail(serde_json::json!({
            "workflow_run": w.id, "file": w.file_name, "bundles": w.bundles,
            "destroy": w.destroy, "approval": w.approval.as_str(),
            "targets": targets.iter().map(|t| (&t.key, &t.workspace)).collect::<Vec<_>>(),
        })),
    );
    advance(tx, policy, &w, targets).await?;
    Ok(w.id)
}

impl Store {
    /// Approves a workflow run that waits for approval as a whole: it starts, and its plans
    /// apply without asking again.
    pub async fn approve_workflow(
        &self,
        id: &str,
        actor: &str,
        policy: &Policy,
    ) -> Result<WorkflowRun> {
        let mut tx = self.begin().await?;
        let mut w = lock_workflow(&mut tx, id).await?;
        if w.state != WorkflowState::AwaitingApproval {
            return Err(Error::Conflict(format!(
                "workflow run {id} is {}, not awaiting approval",
                w.state.as_str()
            )));
        }
        let why = format!("approved by {actor}");
        set_workflow_state(&mut tx, id, WorkflowState::Running, &why).await?;
        w.state = WorkflowState::Running;
        tx.audit(
            AuditEntry::new(AuditKind::WorkflowApproved, actor)
                .detail(serde_json::json!({ "workflow_run": id })),
        );
        let targets = targets_c(&mut tx, id).await?;
        advance(&mut tx, policy, &w, targets).await?;
        self.commit(tx).await?;
        workflow_c(&mut *self.pool.acquire().await?, id).await
    }

    /// Cancels a workflow run: targets not started are cancelled now, running ones have their
    /// runs cancelled (the engine records them as they end). Answers the runs asked to stop.
    pub async fn cancel_workflow(
        &self,
        id: &str,
        actor: &str,
        policy: &Policy,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let mut w = lock_workflow(&mut tx, id).await?;
        if w.state.is_end() {
            return Err(Error::Conflict(format!(
                "workflow run {id} already ended as {}",
                w.state.as_str()
            )));
        }
        let why = format!("cancelled by {actor}");
        let mut targets = targets_c(&mut tx, id).await?;
        for t in targets
            .iter_mut()
            .filter(|t| t.state == TargetState::Waiting)
        {
            set_target(&mut tx, id, t, TargetState::Cancelled, None, &why).await?;
            t.state = TargetState::Cancelled;
        }
        if w.state == WorkflowState::AwaitingApproval {
            set_workflow_state(&mut tx, id, WorkflowState::Running, &why).await?;
            w.state = WorkflowState::Running;
        }
        let running: Vec<String> = targets
            .iter()
            .filter(|t| t.state == TargetState::Running)
            .map(|t| t.run_id.clone())
            .collect();
        tx.audit(
            AuditEntry::new(AuditKind::WorkflowCancelled, actor)
                .detail(serde_json::json!({ "workflow_run": id, "runs": running })),
        );
        advance(&mut tx, policy, &w, targets).await?;
        self.commit(tx).await?;
        for run_id in &running {
            match self
                .cancel(run_id, actor, &format!("workflow run {id} cancelled"))
                .await
            {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(running)
    }

    /// Starts again what failed, was skipped or was cancelled in a workflow run that ended;
    /// what succeeded is kept (its outputs feed the retried targets).
    pub async fn retry_workflow(
        &self,
        id: &str,
        actor: &str,
        policy: &Policy,
    ) -> Result<WorkflowRun> {
        let mut tx = self.begin().await?;
        let mut w = lock_workflow(&mut tx, id).await?;
        if !matches!(w.state, WorkflowState::Failed | WorkflowState::Cancelled) {
            return Err(Error::Conflict(format!(
                "workflow run {id} is {}: only a failed or cancelled workflow run can be retried",
                w.state.as_str()
            )));
        }
        let why = format!("retried by {actor}");
        let mut targets = targets_c(&mut tx, id).await?;
        let mut again = Vec::new();
        for t in targets.iter_mut().filter(|t| {
            matches!(
                t.state,
                TargetState::Failed | TargetState::Skipped | TargetState::Cancelled
            )
        }) {
            set_target(&mut tx, id, t, TargetState::Waiting, None, &why).await?;
            t.state = TargetState::Waiting;
            again.push(t.key.clone());
        }
        set_workflow_state(&mut tx, id, WorkflowState::Running, &why).await?;
        w.state = WorkflowState::Running;
        tx.audit(
            AuditEntry::new(AuditKind::WorkflowRetried, actor)
                .detail(serde_json::json!({ "workflow_run": id, "targets": again })),
        );
        advance(&mut tx, policy, &w, targets).await?;
        self.commit(tx).await?;
        workflow_c(&mut *self.pool.acquire().await?, id).await
    }
}

/// A target of the file, as stored before it starts.
fn stored_target(t: tofuflow_proto::workflow::Target) -> Target {
    Target {
        key: t.key,
        stack: t.stack,
        each: t.each,
        workspace: t.workspace,
        pool: t.pool,
        deps: t.deps,
        tags: t.tags,
        state: TargetState::Waiting,
        run_id: String::new(),
        runs: Vec::new(),
        reason: String::new(),
        candidate: 0,
        cleaning: false,
    }
}
