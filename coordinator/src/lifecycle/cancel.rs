//! Ending runs early: a user's cancel, an agent that cannot use a message, a message no queue takes. Touches: runs, tasks, transitions, outbox, audit_log.

use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::runs::TaskState;
use crate::runs::{self, RunState};
use crate::store::*;

impl Store {
    /// Cancels a run: at once when nothing runs; by asking the agent (next heartbeat) when a task
    /// is running.
    pub async fn cancel(&self, run_id: &str, actor: &str, reason: &str) -> Result<Run> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        if runs::is_terminal(run.state, run.kind) {
            return Err(Error::Conflict(format!(
                "run {run_id} already ended as {}",
                run.state
            )));
        }
        let why = if reason.is_empty() {
            format!("cancelled by {actor}")
        } else {
            format!("cancelled by {actor}: {reason}")
        };
        match run.state {
            RunState::Planning | RunState::Applying => {
                sqlx::query(
                    "UPDATE tasks SET cancel_requested = 1 WHERE run_id = $1 AND state = 'running'",
                )
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                note(
                    &mut tx,
                    run_id,
                    run.state,
                    actor,
                    &format!("cancel requested: {why}"),
                    now,
                )
                .await?;
            }
            state => {
                sqlx::query("UPDATE tasks SET state = 'cancelled', finished_ms = $1 WHERE run_id = $2 AND state = 'queued'")
                    .bind(now)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
                transition(
                    &mut tx,
                    run_id,
                    state,
                    RunState::Cancelled,
                    actor,
                    &why,
                    now,
                )
                .await?;
            }
        }
        tx.audit(
            AuditEntry::new(AuditKind::RunCancelled, actor)
                .workspace(&run.workspace)
                .run(run_id)
                .detail(serde_json::json!({"state": run.state.as_str(), "reason": reason})),
        );
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        self.commit(tx).await?;
        Ok(run)
    }

    /// An agent could not use a message for (task, attempt): fail the run with the reason.
    /// `actor` is the (authenticated) agent, which must serve the task's pool.
    pub async fn reject_task(
        &self,
        task_id: &str,
        attempt: u32,
        reason: &str,
        actor: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let Some(t) = get_task_c(&mut tx, task_id).await? else {
            return Ok(false);
        };
        if t.attempt != attempt || t.state != TaskState::Queued {
            return Ok(false);
        }
        // Only an agent of the task's pool received its message and may reject it.
        if !agent_serves(&mut tx, actor, &t.pool).await? {
            return Err(Error::PermissionDenied(format!(
                "agent {actor} is not registered for pool {:?}: it cannot reject task {task_id}",
                t.pool
            )));
        }
        let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
        self.fail_queued(&mut tx, &t, &run, reason, actor, now)
            .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    pub(crate) async fn fail_queued(
        &self,
        c: &mut Tx,
        t: &Task,
        run: &Run,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE tasks SET state = 'failed', error = $1, finished_ms = $2 WHERE id = $3 AND attempt = $4 AND state = 'queued'")
            .bind(reason)
            .bind(now)
            .bind(&t.id)
            .bind(t.attempt as i64)
            .execute(&mut **c)
            .await?;
        sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
            .bind(reason)
            .bind(&run.id)
            .execute(&mut **c)
            .await?;
        let from = run.state;
        if runs::allowed(from, RunState::Failed) {
            transition(c, &run.id, from, RunState::Failed, actor, reason, now).await?;
        }
        Ok(())
    }

    /// The broker returned the message (`mandatory`): no queue is bound for its pool.
    pub async fn unroutable(&self, row: &OutboxRow) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE outbox SET sent_ms = $1, last_error = 'unroutable' WHERE id = $2")
            .bind(now)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        if let Some(t) = get_task_c(&mut tx, &row.task_id).await? {
            if t.attempt == row.attempt && t.state == TaskState::Queued {
                let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
                let why = format!(
                    "no queue is bound for pool {:?}: start an agent with `--pool {}` (it declares the queue), or list the pool in the coordinator's --pools",
                    row.pool, row.pool
                );
                self.fail_queued(&mut tx, &t, &run, &why, "coordinator", now)
                    .await?;
                self.commit(tx).await?;
                return Ok(());
            }
        }
        self.commit(tx).await?;
        Ok(())
    }
}
