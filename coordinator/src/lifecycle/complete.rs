//! Completing a task: its result moves the run on (plan → approval or apply, apply → applied, failures). Touches: tasks, task_attempts, state_locks, runs, transitions, outbox.

use crate::error::{Error, Result};
use crate::runs::{self, Phase, RunState};
use crate::store::*;
use tofuflow_proto::v1;

impl Store {
    /// Records a task's result and moves the run on. Idempotent for a retried completion.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete(&self, req: &v1::CompleteRequest, policy: &Policy) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let t = get_task_c(&mut tx, &req.task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown task {}", req.task_id)))?;
        LeaseProof {
            task_id: &req.task_id,
            attempt: req.attempt,
            epoch: req.epoch as i64,
            agent_id: &req.agent_id,
            token: &req.lease_token,
        }
        .check(&t)?;
        if ["succeeded", "failed", "cancelled"].contains(&t.state.as_str()) {
            return Ok(()); // a retry of a completion we already have
        }
        if t.state != "running" {
            return Err(Error::Conflict(format!(
                "stale lease: completion for task {} attempt {} epoch {} rejected (current attempt {}, epoch {}, state {})",
                req.task_id, req.attempt, req.epoch, t.attempt, t.epoch, t.state
            )));
        }
        let outcome = v1::Outcome::try_from(req.outcome).unwrap_or(v1::Outcome::Unspecified);
        let tstate = match outcome {
            v1::Outcome::Succeeded => "succeeded",
            v1::Outcome::Cancelled => "cancelled",
            _ => "failed",
        };
        sqlx::query("UPDATE tasks SET state = $1, finished_ms = $2, exit_code = $3, error = $4, token_sha256 = '' WHERE id = $5 AND attempt = $6 AND state = 'running'")
            .bind(tstate)
            .bind(now)
            .bind(req.exit_code as i64)
            .bind(&req.error)
            .bind(&req.task_id)
            .bind(req.attempt as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE task_attempts SET ended_ms = $1, outcome = $2 WHERE task_id = $3 AND attempt = $4")
            .bind(now)
            .bind(tstate)
            .bind(&req.task_id)
            .bind(req.attempt as i64)
            .execute(&mut *tx)
            .await?;
        release_task_lock(&mut tx, &req.task_id).await?;
        if !req.limit_hit.is_empty() {
            sqlx::query("UPDATE runs SET limit_hit = $1 WHERE id = $2")
                .bind(&req.limit_hit)
                .bind(&t.run_id)
                .execute(&mut *tx)
                .await?;
        }
        let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
        let actor = &req.agent_id;
        match (t.phase, outcome) {
            (Phase::Plan, v1::Outcome::Succeeded) => {
                let sm = req.summary.unwrap_or_default();
                sqlx::query("UPDATE runs SET has_changes = $1, add_count = $2, change_count = $3, destroy_count = $4 WHERE id = $5")
                    .bind(req.has_changes as i64)
                    .bind(sm.add as i64)
                    .bind(sm.change as i64)
                    .bind(sm.destroy as i64)
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await?;
                let summary = format!(
                    "plan: {} to add, {} to change, {} to destroy",
                    sm.add, sm.change, sm.destroy
                );
                match runs::after_plan(run.kind, req.has_changes, run.auto_approve) {
                    runs::AfterPlan::NoChanges => {
                        transition(
                            &mut tx,
                            &run.id,
                            RunState::Planning,
                            RunState::PlannedNoChanges,
                            actor,
                            "plan found no changes",
                            now,
                        )
                        .await?;
                    }
                    next => {
                        transition(
                            &mut tx,
                            &run.id,
                            RunState::Planning,
                            RunState::Planned,
                            actor,
                            &summary,
                            now,
                        )
                        .await?;
                        match next {
                            runs::AfterPlan::AutoApprove => {
                                transition(
                                    &mut tx,
                                    &run.id,
                                    RunState::Planned,
                                    RunState::Approved,
                                    &run.submitted_by,
                                    "auto-approved at submit",
                                    now,
                                )
                                .await?;
                                new_task(&mut tx, &run, Phase::Apply, now, policy).await?;
                            }
                            runs::AfterPlan::AwaitApproval => {
                                transition(
                                    &mut tx,
                                    &run.id,
                                    RunState::Planned,
                                    RunState::AwaitingApproval,
                                    "coordinator",
                                    "waiting for `tofuflow run approve`",
                                    now,
                                )
                                .await?;
                                sqlx::query("UPDATE runs SET deadline_ms = $1 WHERE id = $2")
                                    .bind(now + policy.approval_timeout_ms)
                                    .bind(&run.id)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            _ => {}
                        }
                    }
                }
            }
            (Phase::Apply, v1::Outcome::Succeeded) => {
                let outputs = self
                    .keys
                    .seal_text(&run_aad(&run.id), &req.outputs_json)
                    .map_err(Error::Internal)?;
                sqlx::query("UPDATE runs SET outputs = $1 WHERE id = $2")
                    .bind(outputs)
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await?;
                transition(
                    &mut tx,
                    &run.id,
                    RunState::Applying,
                    RunState::Applied,
                    actor,
                    "apply complete",
                    now,
                )
                .await?;
            }
            (phase, v1::Outcome::Cancelled) => {
                let from = if phase == Phase::Plan {
                    RunState::Planning
                } else {
                    RunState::Applying
                };
                transition(
                    &mut tx,
                    &run.id,
                    from,
                    RunState::Cancelled,
                    actor,
                    &format!("{} cancelled: {}", phase.as_str(), req.error),
                    now,
                )
                .await?;
            }
            (phase, _) => {
                let from = if phase == Phase::Plan {
                    RunState::Planning
                } else {
                    RunState::Applying
                };
                let why = if req.error.is_empty() {
                    format!("{} failed (exit {})", phase.as_str(), req.exit_code)
                } else {
                    req.error.clone()
                };
                sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                    .bind(&why)
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await?;
                transition(&mut tx, &run.id, from, RunState::Failed, actor, &why, now).await?;
            }
        }
        tx.commit().await?;
        self.changed(&run.id);
        Ok(())
    }
}
