//! The `tasks` and `task_attempts` tables: a run's plan and apply tasks, their attempts and leases, and the proof an agent presents for a lease.

use super::*;
use crate::runs::TaskState;

#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    pub run_id: String,
    pub phase: Phase,
    pub attempt: u32,
    pub state: TaskState,
    pub pool: String,
    pub agent_id: String,
    pub epoch: i64,
    pub lease_expires_ms: i64,
    pub cancel_requested: bool,
    /// SHA-256 of the live lease's secret ('' when no lease was granted).
    pub lease_sha256: String,
    /// The id of the attempt's current signed task message, and when it expires.
    pub envelope_id: String,
    pub envelope_expires_ms: i64,
}

pub struct ClaimGrant {
    pub epoch: i64,
    pub task: Task,
    pub run: Run,
    /// The state-backend password for this lease (only its hash is stored).
    pub token: String,
    /// The lease's own secret, for the agent only (only its hash is stored).
    pub lease_token: String,
    /// The task's ID token and the cloud settings that go with it.
    pub identity: crate::lifecycle::IssuedIdentity,
    /// The connections attached to the run's workspace, current at the claim.
    pub connections: Vec<GrantedConnection>,
}

/// What an agent presents to act on a task: the lease it holds, and who it is (authenticated).
#[derive(Clone, Copy, Debug)]
pub struct LeaseProof<'a> {
    pub task_id: &'a str,
    pub attempt: u32,
    pub epoch: i64,
    pub agent_id: &'a str,
    pub token: &'a str,
}

impl LeaseProof<'_> {
    /// Whether this proof names `t`'s current lease: same attempt and epoch, the agent that
    /// claimed it, and the lease's secret. A stale lease is a conflict (the agent was fenced);
    /// someone else's lease is a permission error.
    pub fn check(&self, t: &Task) -> Result<()> {
        if t.attempt != self.attempt || t.epoch != self.epoch {
            return Err(Error::Conflict(format!(
                "stale lease: task {} attempt {} epoch {} is not the live lease (current attempt {}, epoch {}, state {})",
                self.task_id, self.attempt, self.epoch, t.attempt, t.epoch, t.state
            )));
        }
        if t.agent_id != self.agent_id
            || t.lease_sha256.is_empty()
            || t.lease_sha256 != sha256_hex(self.token.as_bytes())
        {
            return Err(Error::PermissionDenied(format!(
                "task {} attempt {} is leased to another agent: this agent does not hold its lease",
                self.task_id, self.attempt
            )));
        }
        Ok(())
    }
}

pub(crate) async fn get_task_c(c: &mut AnyConnection, id: &str) -> Result<Option<Task>> {
    let row = sqlx::query("SELECT * FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

pub(crate) async fn new_task(
    c: &mut Tx,
    run: &Run,
    phase: Phase,
    now: i64,
    policy: &Policy,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO tasks (id, run_id, phase, attempt, state, pool, created_ms) VALUES ($1, $2, $3, 1, 'queued', $4, $5)",
    )
    .bind(&id)
    .bind(&run.id)
    .bind(phase.as_str())
    .bind(&run.pool)
    .bind(now)
    .execute(&mut **c)
    .await?;
    enqueue(c, run, &id, 1, phase, now, now + policy.queue_timeout_ms).await?;
    sqlx::query("UPDATE runs SET deadline_ms = $1 WHERE id = $2")
        .bind(now + policy.queue_timeout_ms)
        .bind(&run.id)
        .execute(&mut **c)
        .await?;
    Ok(id)
}

impl Store {
    /// Every attempt ever claimed for a run's phase (the "executions" the fault tests count).
    pub async fn attempts_of(
        &self,
        run_id: &str,
        phase: Phase,
    ) -> Result<Vec<(u32, String, String)>> {
        let rows = sqlx::query("SELECT attempt, agent_id, outcome FROM task_attempts WHERE run_id = $1 AND phase = $2 ORDER BY attempt")
            .bind(run_id)
            .bind(phase.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((i(r, "attempt")? as u32, s(r, "agent_id")?, s(r, "outcome")?)))
            .collect()
    }

    pub async fn plan_attempts(&self, run_id: &str) -> Result<u32> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM task_attempts WHERE run_id = $1 AND phase = 'plan'",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(i(&row, "n")? as u32)
    }

    /// Checks that the proof names the live lease, held by its agent; returns the task.
    pub async fn check_lease(&self, proof: LeaseProof<'_>) -> Result<Task> {
        let mut c = self.pool.acquire().await?;
        let t = get_task_c(&mut c, proof.task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown task {}", proof.task_id)))?;
        proof.check(&t)?;
        if t.state != TaskState::Running {
            return Err(Error::Conflict(format!(
                "stale lease: task {} attempt {} is {}, not running",
                proof.task_id, proof.attempt, t.state
            )));
        }
        Ok(t)
    }

    /// The task a state-backend credential belongs to, if it is a live lease.
    pub async fn task_for_token(
        &self,
        task_id: &str,
        token: &str,
    ) -> Result<Option<(Task, String)>> {
        let mut c = self.pool.acquire().await?;
        let Some(t) = get_task_c(&mut c, task_id).await? else {
            return Ok(None);
        };
        if t.state != TaskState::Running || t.lease_expires_ms < now_ms() {
            return Ok(None);
        }
        let row = sqlx::query("SELECT token_sha256 FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_one(&mut *c)
            .await?;
        let stored = s(&row, "token_sha256")?;
        if stored.is_empty() || stored != sha256_hex(token.as_bytes()) {
            return Ok(None);
        }
        let run = get_run_c(&self.keys, &mut c, &t.run_id).await?;
        Ok(Some((t, run.workspace)))
    }
}
