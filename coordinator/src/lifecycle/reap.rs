//! The reaper's three sweeps: expired leases (a plan is re-dispatched or given up, an apply is
//! interrupted and never re-run), pending runs whose workspace is free (oldest first), and runs
//! past their deadline (nobody claimed, nobody approved). Touches: tasks, task_attempts,
//! state_locks, runs, transitions, outbox, audit_log.

use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::runs::{self, LeaseExpiry, Phase, RunState};
use crate::store::*;

impl Store {
    /// Handles expired leases, pending runs and overdue runs; returns what it did, one line each.
    pub async fn reap(&self, policy: &Policy) -> Result<Vec<String>> {
        let now = now_ms();
        let mut done = self.expire_leases(policy, now).await?;
        done.extend(self.start_pending(policy, now).await?);
        done.extend(self.expire_overdue(now).await?);
        done.extend(self.resign_expired(now).await?);
        done.extend(self.resume_due_rollouts(policy, now).await?);
        self.forget_idempotency_keys(now).await?;
        done.extend(self.prune_logs(policy, now).await?);
        if let Some(key_id) = self.rotate_signing_keys().await? {
            done.push(format!("signing key {key_id} is now the active one"));
        }
        if let Some(key_id) = self.rotate_oidc_keys().await? {
            done.push(format!(
                "ID-token signing key {key_id} is now the active one"
            ));
        }
        self.prune_id_token_records().await?;
        Ok(done)
    }

    /// Queued attempts whose signed message expired before anyone claimed it: each gets a
    /// freshly signed envelope through the outbox, so the task is not lost; the expired message,
    /// wherever it is, is dead-lettered by the agent that sees it, and its envelope id is no
    /// longer granted.
    async fn resign_expired(&self, now: i64) -> Result<Vec<String>> {
        let expired = sqlx::query("SELECT * FROM tasks WHERE state = 'queued' AND envelope_expires_ms > 0 AND envelope_expires_ms <= $1")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let mut done = Vec::new();
        for row in expired {
            let t = task_from_row(&row)?;
            let mut tx = self.begin().await?;
            // Only if nobody claimed it or signed it again meanwhile.
            let r = sqlx::query("UPDATE tasks SET envelope_expires_ms = 0 WHERE id = $1 AND attempt = $2 AND state = 'queued' AND envelope_id = $3")
                .bind(&t.id)
                .bind(t.attempt as i64)
                .bind(&t.envelope_id)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() != 1 {
                continue;
            }
            let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
            let deadline = sqlx::query("SELECT deadline_ms FROM runs WHERE id = $1")
                .bind(&run.id)
                .fetch_one(&mut *tx)
                .await?;
            let deadline = i(&deadline, "deadline_ms")?;
            enqueue(&mut tx, &run, &t.id, t.attempt, t.phase, now, deadline).await?;
            self.commit(tx).await?;
            done.push(format!(
                "run {} {} attempt {}: its task message expired unclaimed; signed and queued again",
                run.id,
                t.phase.as_str(),
                t.attempt
            ));
        }
        Ok(done)
    }

    /// Settles every lease nobody renewed, each in its own transaction.
    async fn expire_leases(&self, policy: &Policy, now: i64) -> Result<Vec<String>> {
        let expired =
            sqlx::query("SELECT * FROM tasks WHERE state = 'running' AND lease_expires_ms < $1")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        let mut done = Vec::new();
        for row in expired {
            let t = task_from_row(&row)?;
            let mut tx = self.begin().await?;
            if let Some(what) = self.expire_lease(&mut tx, &t, policy, now).await? {
                self.commit(tx).await?;
                done.push(what);
            }
        }
        Ok(done)
    }

    /// One expired lease: its attempt is lost, its state lock released (the fence), and the run
    /// goes on as `runs::on_lease_expiry` decides. `None` when the lease was renewed or the task
    /// finished meanwhile (nothing is committed then).
    async fn expire_lease(
        &self,
        tx: &mut Tx,
        t: &Task,
        policy: &Policy,
        now: i64,
    ) -> Result<Option<String>> {
        let since = now - t.lease_expires_ms + policy.lease_ttl_ms;
        let lost = format!(
            "agent {} stopped renewing its lease ({} ms without a heartbeat)",
            agent_label(tx, &t.agent_id).await?,
            since
        );
        sqlx::query("UPDATE task_attempts SET ended_ms = $1, outcome = 'lost' WHERE task_id = $2 AND attempt = $3")
            .bind(now)
            .bind(&t.id)
            .bind(t.attempt as i64)
            .execute(&mut **tx)
            .await?;
        let released = release_task_lock(tx, &t.id).await?;
        let run = get_run_c(&self.keys, tx, &t.run_id).await?;
        if released > 0 {
            tx.audit(fenced(&run, t));
        }
        match runs::on_lease_expiry(t.phase, t.attempt, policy.max_plan_attempts) {
            LeaseExpiry::Redispatch { next_attempt } => {
                if !requeue(tx, t, next_attempt, now).await? {
                    return Ok(None); // renewed or finished meanwhile
                }
                let deadline = now + policy.queue_timeout_ms;
                enqueue(tx, &run, &t.id, next_attempt, t.phase, now, deadline).await?;
                let why = format!("{lost}; plan re-dispatched as attempt {next_attempt}");
                let (from, to) = (RunState::Planning, RunState::Queued);
                transition(tx, &run.id, from, to, "coordinator", &why, now).await?;
                Ok(Some(format!(
                    "run {} plan re-dispatched as attempt {next_attempt}",
                    run.id
                )))
            }
            LeaseExpiry::GiveUp => {
                if !mark_lost(tx, t, now).await? {
                    return Ok(None);
                }
                let why = format!("{lost}; gave up after {} plan attempts", t.attempt);
                let (from, to) = (RunState::Planning, RunState::Failed);
                end_run(tx, &run.id, from, to, "coordinator", &why, now).await?;
                Ok(Some(format!(
                    "run {} failed: plan lost {} times",
                    run.id, t.attempt
                )))
            }
            LeaseExpiry::Interrupt => {
                if !mark_lost(tx, t, now).await? {
                    return Ok(None);
                }
                let why = format!(
                    "{lost} during apply; the apply is not retried because part of it may have happened{}. Submit a new run to plan against the current state",
                    if released > 0 { "; its state lock was released" } else { "" }
                );
                let (from, to) = (RunState::Applying, RunState::Interrupted);
                end_run(tx, &run.id, from, to, "coordinator", &why, now).await?;
                Ok(Some(format!(
                    "run {} interrupted: apply lost its agent",
                    run.id
                )))
            }
        }
    }

    /// Pending runs start, oldest first, once their workspace is free.
    async fn start_pending(&self, policy: &Policy, now: i64) -> Result<Vec<String>> {
        let pending =
            sqlx::query("SELECT * FROM runs WHERE state = 'pending' ORDER BY created_ms, id")
                .fetch_all(&self.pool)
                .await?;
        let mut done = Vec::new();
        for row in pending {
            let run = run_from_row(&self.keys, &row)?;
            let mut tx = self.begin().await?;
            if workspace_holder(&mut tx, &run.workspace, false)
                .await?
                .is_some()
            {
                continue;
            }
            let why = format!("workspace {} is free: starting", run.workspace);
            let (from, to) = (RunState::Pending, RunState::Queued);
            // Recorded now, not when the sweep began: the run that freed the workspace may have
            // ended since, and a history must not show the next run starting before it.
            let at = now.max(now_ms());
            match transition(&mut tx, &run.id, from, to, "coordinator", &why, at).await {
                Ok(()) => {}
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
            new_task(&mut tx, &run, Phase::Plan, now, policy).await?;
            self.commit(tx).await?;
            done.push(format!("run {} started: its workspace is free", run.id));
        }
        Ok(done)
    }

    /// Runs past their deadline: nobody claimed the task, or nobody approved the plan.
    async fn expire_overdue(&self, now: i64) -> Result<Vec<String>> {
        let overdue = sqlx::query("SELECT * FROM runs WHERE state IN ('pending', 'queued', 'approved', 'awaiting_approval') AND deadline_ms > 0 AND deadline_ms < $1")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let mut done = Vec::new();
        for row in overdue {
            let run = run_from_row(&self.keys, &row)?;
            let mut tx = self.begin().await?;
            sqlx::query("UPDATE tasks SET state = 'expired', finished_ms = $1 WHERE run_id = $2 AND state = 'queued'")
                .bind(now)
                .bind(&run.id)
                .execute(&mut *tx)
                .await?;
            let why = overdue_reason(&run);
            let (from, to) = (run.state, RunState::Expired);
            match end_run(&mut tx, &run.id, from, to, "coordinator", &why, now).await {
                Ok(()) => {
                    self.commit(tx).await?;
                    done.push(format!("run {} expired", run.id));
                }
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// Why an overdue run expires, in the user's words.
fn overdue_reason(run: &Run) -> String {
    match run.state {
        RunState::AwaitingApproval => {
            "nobody approved the plan before the approval timeout".to_string()
        }
        RunState::Pending => format!(
            "waited longer than the queue timeout for workspace {} to be free",
            run.workspace
        ),
        _ => format!("no agent of pool {:?} claimed the task before the queue timeout: is an agent running for that pool?", run.pool),
    }
}

/// Puts a plan task whose lease expired back in the queue as `next_attempt`; false when the
/// lease was renewed or the task finished meanwhile.
async fn requeue(tx: &mut Tx, t: &Task, next_attempt: u32, now: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE tasks SET attempt = $1, state = 'queued', agent_id = '', epoch = 0, lease_expires_ms = 0, token_sha256 = '', lease_sha256 = '' WHERE id = $2 AND attempt = $3 AND state = 'running' AND lease_expires_ms < $4")
        .bind(next_attempt as i64)
        .bind(&t.id)
        .bind(t.attempt as i64)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks a task whose lease expired as lost; false when it was renewed or finished meanwhile.
async fn mark_lost(tx: &mut Tx, t: &Task, now: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE tasks SET state = 'lost', token_sha256 = '' WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_expires_ms < $3")
        .bind(&t.id)
        .bind(t.attempt as i64)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The audit entry of a state lock the coordinator released because its task's lease expired.
fn fenced(run: &Run, t: &Task) -> AuditEntry {
    AuditEntry::new(AuditKind::StateForceUnlocked, "coordinator")
        .workspace(&run.workspace)
        .run(&run.id)
        .detail(serde_json::json!({
            "task_id": t.id,
            "attempt": t.attempt,
            "reason": "the lease of the task holding the lock expired (the fence)",
        }))
}
