//! The reaper's sweeps: expired leases (re-dispatch, give up, interrupt), pending runs whose workspace is free, overdue runs. Touches: tasks, task_attempts, state_locks, runs, transitions, outbox.

use crate::error::{Error, Result};
use crate::runs::{self, Phase, RunState};
use crate::store::*;

impl Store {
    /// Handles expired leases and overdue runs; returns what it did, one line each.
    pub async fn reap(&self, policy: &Policy) -> Result<Vec<String>> {
        let now = now_ms();
        let mut done = Vec::new();
        let expired =
            sqlx::query("SELECT * FROM tasks WHERE state = 'running' AND lease_expires_ms < $1")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        for row in expired {
            let t = task_from_row(&row)?;
            let mut tx = self.pool.begin().await?;
            let since = now - t.lease_expires_ms + policy.lease_ttl_ms;
            let lost = format!(
                "agent {} stopped renewing its lease ({} ms without a heartbeat)",
                agent_label(&mut tx, &t.agent_id).await?,
                since
            );
            sqlx::query("UPDATE task_attempts SET ended_ms = $1, outcome = 'lost' WHERE task_id = $2 AND attempt = $3")
                .bind(now)
                .bind(&t.id)
                .bind(t.attempt as i64)
                .execute(&mut *tx)
                .await?;
            let released = release_task_lock(&mut tx, &t.id).await?;
            let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
            match runs::on_lease_expiry(t.phase, t.attempt, policy.max_plan_attempts) {
                runs::LeaseExpiry::Redispatch { next_attempt } => {
                    let r = sqlx::query("UPDATE tasks SET attempt = $1, state = 'queued', agent_id = '', epoch = 0, lease_expires_ms = 0, token_sha256 = '', lease_sha256 = '' WHERE id = $2 AND attempt = $3 AND state = 'running' AND lease_expires_ms < $4")
                        .bind(next_attempt as i64)
                        .bind(&t.id)
                        .bind(t.attempt as i64)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() != 1 {
                        continue; // renewed or finished meanwhile
                    }
                    enqueue(
                        &mut tx,
                        &run,
                        &t.id,
                        next_attempt,
                        t.phase,
                        now,
                        now + policy.queue_timeout_ms,
                    )
                    .await?;
                    transition(
                        &mut tx,
                        &run.id,
                        RunState::Planning,
                        RunState::Queued,
                        "coordinator",
                        &format!("{lost}; plan re-dispatched as attempt {next_attempt}"),
                        now,
                    )
                    .await?;
                    done.push(format!(
                        "run {} plan re-dispatched as attempt {next_attempt}",
                        run.id
                    ));
                }
                runs::LeaseExpiry::GiveUp => {
                    let r = sqlx::query("UPDATE tasks SET state = 'lost', token_sha256 = '' WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_expires_ms < $3")
                        .bind(&t.id)
                        .bind(t.attempt as i64)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() != 1 {
                        continue;
                    }
                    let why = format!("{lost}; gave up after {} plan attempts", t.attempt);
                    sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                        .bind(&why)
                        .bind(&run.id)
                        .execute(&mut *tx)
                        .await?;
                    transition(
                        &mut tx,
                        &run.id,
                        RunState::Planning,
                        RunState::Failed,
                        "coordinator",
                        &why,
                        now,
                    )
                    .await?;
                    done.push(format!(
                        "run {} failed: plan lost {} times",
                        run.id, t.attempt
                    ));
                }
                runs::LeaseExpiry::Interrupt => {
                    let r = sqlx::query("UPDATE tasks SET state = 'lost', token_sha256 = '' WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_expires_ms < $3")
                        .bind(&t.id)
                        .bind(t.attempt as i64)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() != 1 {
                        continue;
                    }
                    let why = format!(
                        "{lost} during apply; the apply is not retried because part of it may have happened{}. Submit a new run to plan against the current state",
                        if released > 0 { "; its state lock was released" } else { "" }
                    );
                    sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                        .bind(&why)
                        .bind(&run.id)
                        .execute(&mut *tx)
                        .await?;
                    transition(
                        &mut tx,
                        &run.id,
                        RunState::Applying,
                        RunState::Interrupted,
                        "coordinator",
                        &why,
                        now,
                    )
                    .await?;
                    done.push(format!("run {} interrupted: apply lost its agent", run.id));
                }
            }
            tx.commit().await?;
            self.changed(&run.id);
        }
        // Pending runs start, oldest first, once their workspace is free.
        let pending =
            sqlx::query("SELECT * FROM runs WHERE state = 'pending' ORDER BY created_ms, id")
                .fetch_all(&self.pool)
                .await?;
        for row in pending {
            let run = run_from_row(&self.keys, &row)?;
            let mut tx = self.pool.begin().await?;
            if workspace_holder(&mut tx, &run.workspace, false)
                .await?
                .is_some()
            {
                continue;
            }
            match transition(
                &mut tx,
                &run.id,
                RunState::Pending,
                RunState::Queued,
                "coordinator",
                &format!("workspace {} is free: starting", run.workspace),
                now,
            )
            .await
            {
                Ok(()) => {}
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
            new_task(&mut tx, &run, Phase::Plan, now, policy).await?;
            tx.commit().await?;
            self.changed(&run.id);
            done.push(format!("run {} started: its workspace is free", run.id));
        }
        // Runs past their deadline: nobody claimed the task, or nobody approved.
        let overdue = sqlx::query("SELECT * FROM runs WHERE state IN ('pending', 'queued', 'approved', 'awaiting_approval') AND deadline_ms > 0 AND deadline_ms < $1")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        for row in overdue {
            let run = run_from_row(&self.keys, &row)?;
            let mut tx = self.pool.begin().await?;
            let why = if run.state == RunState::AwaitingApproval {
                "nobody approved the plan before the approval timeout".to_string()
            } else if run.state == RunState::Pending {
                format!(
                    "waited longer than the queue timeout for workspace {} to be free",
                    run.workspace
                )
            } else {
                format!("no agent of pool {:?} claimed the task before the queue timeout: is an agent running for that pool?", run.pool)
            };
            sqlx::query("UPDATE tasks SET state = 'expired', finished_ms = $1 WHERE run_id = $2 AND state = 'queued'")
                .bind(now)
                .bind(&run.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                .bind(&why)
                .bind(&run.id)
                .execute(&mut *tx)
                .await?;
            match transition(
                &mut tx,
                &run.id,
                run.state,
                RunState::Expired,
                "coordinator",
                &why,
                now,
            )
            .await
            {
                Ok(()) => {
                    tx.commit().await?;
                    self.changed(&run.id);
                    done.push(format!("run {} expired", run.id));
                }
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}
