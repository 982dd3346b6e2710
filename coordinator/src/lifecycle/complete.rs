//! Completing a task: its result moves the run on (plan → approval or apply, apply → applied,
//! cancelled, failed). Touches: tasks, task_attempts, state_locks, runs, transitions, outbox.

use crate::error::{Error, Result};
use crate::lifecycle::policy::PlanVerdicts;
use crate::runs::policy::PolicyGate;
use crate::runs::{self, Phase, RunKind, RunState, TaskOutcome, TaskReport, TaskState};
use crate::store::*;

impl Store {
    /// Records a task's result and moves the run on. Idempotent for a retried completion.
    /// A plan's policies are evaluated first, before the transaction opens.
    pub async fn complete_task(&self, r: &TaskReport, policy: &Policy) -> Result<()> {
        let limit = std::time::Duration::from_millis(policy.plan_policy_timeout_ms.max(1) as u64);
        let verdicts = self.evaluate_plan_policies(r, limit).await?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        let t = get_task_c(&mut tx, &r.task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown task {}", r.task_id)))?;
        r.lease().check(&t)?;
        if t.state.reported() {
            return Ok(()); // a retry of a completion we already have
        }
        if t.state != TaskState::Running {
            return Err(Error::Conflict(format!(
                "stale lease: completion for task {} attempt {} epoch {} rejected (current attempt {}, epoch {}, state {})",
                r.task_id, r.attempt, r.epoch, t.attempt, t.epoch, t.state
            )));
        }
        let claimed_ms = finish_task(&mut tx, r, &t.run_id, now).await?;
        let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
        let step = Step {
            run: &run,
            report: r,
            now,
        };
        match (t.phase, r.outcome) {
            (Phase::Plan, TaskOutcome::Succeeded) => {
                step.planned(&mut tx, policy, &verdicts).await?
            }
            (Phase::Apply, TaskOutcome::Succeeded) => step.applied(&mut tx, &self.keys).await?,
            (phase, TaskOutcome::Cancelled) => step.cancelled(&mut tx, phase).await?,
            (phase, TaskOutcome::Failed) => step.failed(&mut tx, phase).await?,
        }
        self.commit(tx).await?;
        if let Some(claimed) = claimed_ms {
            let outcome = r.outcome.task_state();
            crate::metrics::recorded().task_ended(t.phase.as_str(), outcome, now - claimed);
        }
        Ok(())
    }
}

/// Ends the task and its attempt, releases the state lock its lease held, and keeps the limit
/// that ended it. Returns when the attempt was claimed.
async fn finish_task(tx: &mut Tx, r: &TaskReport, run_id: &str, now: i64) -> Result<Option<i64>> {
    let state = r.outcome.task_state();
    sqlx::query("UPDATE tasks SET state = $1, finished_ms = $2, exit_code = $3, error = $4, token_sha256 = '' WHERE id = $5 AND attempt = $6 AND state = 'running'")
        .bind(state)
        .bind(now)
        .bind(r.exit_code as i64)
        .bind(&r.error)
        .bind(&r.task_id)
        .bind(r.attempt as i64)
        .execute(&mut **tx)
        .await?;
    let claimed_ms: Option<i64> = sqlx::query_scalar(
        "UPDATE task_attempts SET ended_ms = $1, outcome = $2 WHERE task_id = $3 AND attempt = $4 RETURNING claimed_ms",
    )
    .bind(now)
    .bind(state)
    .bind(&r.task_id)
    .bind(r.attempt as i64)
    .fetch_optional(&mut **tx)
    .await?;
    release_task_lock(tx, &r.task_id).await?;
    if !r.limit_hit.is_empty() {
        sqlx::query("UPDATE runs SET limit_hit = $1 WHERE id = $2")
            .bind(&r.limit_hit)
            .bind(run_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(claimed_ms)
}

/// What a finished task does to its run, one named step per outcome.
struct Step<'a> {
    run: &'a Run,
    report: &'a TaskReport,
    now: i64,
}

impl Step<'_> {
    fn actor(&self) -> &str {
        &self.report.agent_id
    }

    /// A plan succeeded: its policy verdicts are recorded (a deny fails the run, not a drift
    /// check); no changes
    /// ends the run; otherwise planned, then approved without a human (the apply is queued) or
    /// waiting for approval (with its deadline).
    async fn planned(&self, tx: &mut Tx, policy: &Policy, pv: &PlanVerdicts) -> Result<()> {
        let (run, r, now) = (self.run, self.report, self.now);
        let sm = r.summary;
        sqlx::query("UPDATE runs SET has_changes = $1, add_count = $2, change_count = $3, destroy_count = $4 WHERE id = $5")
            .bind(r.has_changes as i64)
            .bind(sm.add as i64)
            .bind(sm.change as i64)
            .bind(sm.destroy as i64)
            .bind(&run.id)
            .execute(&mut **tx)
            .await?;
        record_verdicts(tx, run, &pv.verdicts).await?;
        let gate = runs::policy::gate(&pv.verdicts);
        // A drift check only looks: its verdicts are recorded, and the remediation run it may
        // start is judged on its own plan.
        if let (PolicyGate::Fail(why), false) = (&gate, run.kind == RunKind::DriftCheck) {
            let (from, to) = (RunState::Planning, RunState::Failed);
            return end_run(tx, &run.id, from, to, "coordinator", why, now).await;
        }
        let auto = runs::policy::approved_without_human(run.auto_approve, &gate, pv.four_eyes);
        let next = runs::after_plan(run.kind, r.has_changes, auto);
        if next == runs::AfterPlan::NoChanges {
            let why = "plan found no changes";
            let (from, to) = (RunState::Planning, RunState::PlannedNoChanges);
            return transition(tx, &run.id, from, to, self.actor(), why, now).await;
        }
        let summary = format!(
            "plan: {} to add, {} to change, {} to destroy",
            sm.add, sm.change, sm.destroy
        );
        let (from, to) = (RunState::Planning, RunState::Planned);
        transition(tx, &run.id, from, to, self.actor(), &summary, now).await?;
        match next {
            runs::AfterPlan::AutoApprove => self.approve(tx, policy, &gate).await,
            runs::AfterPlan::AwaitApproval => self.await_approval(tx, policy, &gate).await,
            runs::AfterPlan::Stop | runs::AfterPlan::NoChanges => Ok(()),
        }
    }

    /// Approves the apply without a human (the submitter's `--auto-approve`, or a policy's
    /// `auto_approve`) and queues it.
    async fn approve(&self, tx: &mut Tx, policy: &Policy, gate: &PolicyGate) -> Result<()> {
        let run = self.run;
        let (actor, why) = match gate {
            PolicyGate::AutoApprove(why) => ("coordinator", why.as_str()),
            _ => (run.submitted_by.as_str(), "auto-approved at submit"),
        };
        let (from, to) = (RunState::Planned, RunState::Approved);
        transition(tx, &run.id, from, to, actor, why, self.now).await?;
        new_task(tx, run, Phase::Apply, self.now, policy).await?;
        Ok(())
    }

    /// Waits for `tofuflow run approve` until the approval deadline; a policy's warnings are
    /// the reason shown.
    async fn await_approval(&self, tx: &mut Tx, policy: &Policy, gate: &PolicyGate) -> Result<()> {
        let run = self.run;
        let why = match gate {
            PolicyGate::Review(why) => format!("{why}; waiting for `tofuflow run approve`"),
            _ => "waiting for `tofuflow run approve`".to_string(),
        };
        let (from, to) = (RunState::Planned, RunState::AwaitingApproval);
        transition(tx, &run.id, from, to, "coordinator", &why, self.now).await?;
        sqlx::query("UPDATE runs SET deadline_ms = $1 WHERE id = $2")
            .bind(self.now + policy.approval_timeout_ms)
            .bind(&run.id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// An apply succeeded: its outputs are kept (sealed) and the run is applied.
    async fn applied(&self, tx: &mut Tx, keys: &crypt::Keys) -> Result<()> {
        let outputs = keys
            .seal_text(&run_aad(&self.run.id), &self.report.outputs_json)
            .map_err(Error::Internal)?;
        sqlx::query("UPDATE runs SET outputs = $1 WHERE id = $2")
            .bind(outputs)
            .bind(&self.run.id)
            .execute(&mut **tx)
            .await?;
        let (from, to) = (RunState::Applying, RunState::Applied);
        transition(
            tx,
            &self.run.id,
            from,
            to,
            self.actor(),
            "apply complete",
            self.now,
        )
        .await
    }

    /// The task was stopped (a cancel, a shutdown, a lost lease the agent noticed).
    async fn cancelled(&self, tx: &mut Tx, phase: Phase) -> Result<()> {
        let why = format!("{} cancelled: {}", phase.as_str(), self.report.error);
        let (from, to) = (running_state(phase), RunState::Cancelled);
        transition(tx, &self.run.id, from, to, self.actor(), &why, self.now).await
    }

    /// The task failed: the run fails with the agent's reason (or the exit code).
    async fn failed(&self, tx: &mut Tx, phase: Phase) -> Result<()> {
        let r = self.report;
        let why = if r.error.is_empty() {
            format!("{} failed (exit {})", phase.as_str(), r.exit_code)
        } else {
            r.error.clone()
        };
        let (from, to) = (running_state(phase), RunState::Failed);
        end_run(tx, &self.run.id, from, to, self.actor(), &why, self.now).await
    }
}

/// The run state while a task of `phase` runs.
fn running_state(phase: Phase) -> RunState {
    match phase {
        Phase::Plan => RunState::Planning,
        Phase::Apply => RunState::Applying,
    }
}
