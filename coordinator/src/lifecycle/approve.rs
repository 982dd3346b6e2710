//! A person's verdict on a plan: approve (queues the apply) or reject. Touches: runs, transitions, tasks, outbox.

use crate::error::{Error, Result};
use crate::runs::{Phase, RunState};
use crate::store::*;

impl Store {
    pub async fn approve(
        &self,
        run_id: &str,
        actor: &str,
        reason: &str,
        policy: &Policy,
    ) -> Result<Run> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        if run.state != RunState::AwaitingApproval {
            return Err(Error::Conflict(format!("run {run_id} is {}, not awaiting_approval: only a planned run waiting for approval can be approved", run.state)));
        }
        if run.plan_digest.is_empty() {
            return Err(Error::Internal(format!("run {run_id} has no saved plan")));
        }
        let why = if reason.is_empty() {
            "approved".to_string()
        } else {
            format!("approved: {reason}")
        };
        transition(
            &mut tx,
            run_id,
            RunState::AwaitingApproval,
            RunState::Approved,
            actor,
            &why,
            now,
        )
        .await?;
        new_task(&mut tx, &run, Phase::Apply, now, policy).await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        self.commit(tx).await?;
        Ok(run)
    }

    pub async fn reject(&self, run_id: &str, actor: &str, reason: &str) -> Result<Run> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        if run.state != RunState::AwaitingApproval {
            return Err(Error::Conflict(format!(
                "run {run_id} is {}, not awaiting_approval",
                run.state
            )));
        }
        let why = if reason.is_empty() {
            "rejected".to_string()
        } else {
            format!("rejected: {reason}")
        };
        transition(
            &mut tx,
            run_id,
            RunState::AwaitingApproval,
            RunState::Rejected,
            actor,
            &why,
            now,
        )
        .await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        self.commit(tx).await?;
        Ok(run)
    }
}
