//! Claiming a task attempt: the lease. Touches: tasks, task_attempts, agents (read), runs,
//! transitions, id_tokens.

use super::group_commit::{Job, Kind, Writing};
use crate::error::{Error, Result};
use crate::runs::{self, Phase, RunState};
use crate::store::*;
use tokio::sync::oneshot;

/// What a claim gets.
pub enum ClaimOutcome {
    /// The lease, with what the task needs.
    Granted(Box<ClaimGrant>),
    /// Refused, with the reason (a stale or duplicate attempt, a run that moved on, an agent
    /// not serving the pool): the agent drops the message.
    Refused(String),
    /// Refused because the message's envelope was claimed before or is not the attempt's
    /// current one: the agent dead-letters the message as replayed.
    Replayed(String),
}

impl ClaimOutcome {
    /// The grant, if the claim won.
    pub fn granted(self) -> Option<ClaimGrant> {
        match self {
            ClaimOutcome::Granted(g) => Some(*g),
            ClaimOutcome::Refused(_) | ClaimOutcome::Replayed(_) => None,
        }
    }
}

/// A claim waiting for its group commit (`group_commit.rs`).
struct ClaimJob {
    agent_id: String,
    task_id: String,
    attempt: u32,
    envelope_id: String,
    policy: Policy,
    rules: crate::auth::Rules,
    t0: std::time::Instant,
    outcome: Option<(ClaimOutcome, Option<Waits>)>,
    answer: oneshot::Sender<Result<ClaimOutcome>>,
}

impl Job for ClaimJob {
    fn kind(&self) -> Kind {
        Kind::Claim
    }

    fn key(&self) -> &str {
        &self.task_id
    }

    fn write<'a>(&'a mut self, store: &'a Store, tx: &'a mut Tx) -> Writing<'a> {
        Box::pin(async move {
            self.outcome = Some(store.claim_in(tx, self).await?);
            Ok(())
        })
    }

    fn answer(self: Box<Self>, r: Result<()>) {
        let ClaimJob {
            outcome,
            answer,
            t0,
            ..
        } = *self;
        let r = r.and_then(|()| {
            outcome.ok_or_else(|| Error::Internal("a committed claim without its outcome".into()))
        });
        let _ = answer.send(r.map(|(outcome, waits)| {
            if let (Some(w), ClaimOutcome::Granted(g)) = (waits, &outcome) {
                w.record(t0.elapsed(), g.task.phase);
            }
            outcome
        }));
    }
}

impl Store {
    /// Grants a lease on (task, attempt) if it is current and unclaimed, for the attempt's
    /// current signed envelope. Exactly one claim of an attempt can win; a stale attempt is
    /// refused with the reason, an envelope claimed before or superseded as a replay. Shares a
    /// transaction with the calls that arrive with it (the group commit); answered once that
    /// has committed.
    pub async fn claim(
        &self,
        agent_id: &str,
        task_id: &str,
        attempt: u32,
        envelope_id: &str,
        policy: &Policy,
    ) -> Result<ClaimOutcome> {
        let t0 = std::time::Instant::now();
        let rules = crate::auth::Rules::load(self).await?;
        let (answer, answered) = oneshot::channel();
        let job = ClaimJob {
            agent_id: agent_id.to_string(),
            task_id: task_id.to_string(),
            attempt,
            envelope_id: envelope_id.to_string(),
            policy: policy.clone(),
            rules,
            t0,
            outcome: None,
            answer,
        };
        self.grouped(Box::new(job), answered).await
    }

    /// The claim's checks and writes in `tx`; with a granted lease, how long its task waited.
    async fn claim_in(&self, tx: &mut Tx, c: &ClaimJob) -> Result<(ClaimOutcome, Option<Waits>)> {
        let refused = |why: String| Ok((ClaimOutcome::Refused(why), None));
        let (agent_id, task_id, attempt) = (c.agent_id.as_str(), c.task_id.as_str(), c.attempt);
        let now = now_ms();
        let Some(task) = get_task_c(tx, task_id).await? else {
            return refused(format!("unknown task {task_id}"));
        };
        if let Some(why) = replayed(tx, &task, attempt, &c.envelope_id).await? {
            return Ok((ClaimOutcome::Replayed(why), None));
        }
        if let Err(why) = runs::claim_decision(attempt, task.attempt, task.state) {
            return refused(why);
        }
        if !agent_serves(tx, agent_id, &task.pool).await? {
            return refused(format!(
                "agent {agent_id} is not registered for pool {:?}",
                task.pool
            ));
        }
        let run = get_run_c(&self.keys, tx, &task.run_id).await?;
        if let Err(why) = within_rules(&c.rules, &task, &run) {
            self.fail_queued(tx, &task, &run, &why, "coordinator", now)
                .await?;
            return refused(why);
        }
        let (from, to) = match task.phase {
            Phase::Plan => (RunState::Queued, RunState::Planning),
            Phase::Apply => (RunState::Approved, RunState::Applying),
        };
        if run.state != from {
            return refused(format!("run {} is {}", run.id, run.state));
        }
        let Some(lease) = grant_lease(tx, &task, agent_id, now + c.policy.lease_ttl_ms).await?
        else {
            return refused("task attempt was claimed by someone else".into());
        };
        record_attempt(tx, &task, &run.id, agent_id, lease.epoch, now).await?;
        let identity = self.issue_identity(tx, &task, &run, now, now).await?;
        let who = agent_label(tx, agent_id).await?;
        let why = format!(
            "{} attempt {attempt} claimed by agent {who}",
            task.phase.as_str()
        );
        transition(tx, &run.id, from, to, agent_id, &why, now).await?;
        let waits = Waits::of(&task, &run, now);
        let (task, run, connections) = self.granted(tx, task_id, &run.id, agent_id).await?;
        let grant = ClaimGrant {
            epoch: lease.epoch,
            task,
            run,
            token: lease.state_token,
            lease_token: lease.lease_token,
            identity,
            connections,
        };
        Ok((ClaimOutcome::Granted(Box::new(grant)), Some(waits)))
    }
}

/// How long a claimed task waited: since it was queued, and since its run was submitted (the
/// first plan attempt only), for `/metrics`.
struct Waits {
    queued_ms: i64,
    submitted: Option<(i64, bool)>,
}

impl Waits {
    fn of(task: &Task, run: &Run, now: i64) -> Waits {
        let first = task.phase == Phase::Plan && task.attempt == 1;
        Waits {
            queued_ms: now - run.updated_ms,
            submitted: first.then(|| (now - run.created_ms, run.tags.contains_key("workflow_run"))),
        }
    }

    fn record(self, took: std::time::Duration, phase: Phase) {
        crate::metrics::recorded().claimed(took, phase.as_str(), self.queued_ms, self.submitted);
    }
}

impl Store {
    /// The task and run as the claim left them, and the connections the task receives.
    async fn granted(
        &self,
        tx: &mut Tx,
        task_id: &str,
        run_id: &str,
        agent_id: &str,
    ) -> Result<(Task, Run, Vec<GrantedConnection>)> {
        let task = get_task_c(tx, task_id)
            .await?
            .ok_or_else(|| Error::Internal("task vanished".into()))?;
        let run = get_run_c(&self.keys, tx, run_id).await?;
        let connections = self.grant_connections(tx, &run, &task, agent_id).await?;
        Ok((task, run, connections))
    }
}

/// Why a claim presents a replayed envelope: not the attempt's current one (superseded by a
/// re-signed one, or of an older attempt), or the current one of an attempt already claimed.
/// Tasks queued before envelopes were signed have no envelope id and are not checked.
async fn replayed(
    tx: &mut Tx,
    task: &Task,
    attempt: u32,
    envelope_id: &str,
) -> Result<Option<String>> {
    if task.envelope_id.is_empty() {
        return Ok(None);
    }
    if envelope_id != task.envelope_id {
        return Ok(Some(format!(
            "envelope {envelope_id:?} is not the current one of task {} (attempt {}): superseded or replayed",
            task.id, task.attempt
        )));
    }
    let claimed =
        sqlx::query("SELECT agent_id FROM task_attempts WHERE task_id = $1 AND attempt = $2")
            .bind(&task.id)
            .bind(attempt as i64)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(claimed.map(|_| {
        format!(
            "envelope {envelope_id} of task {} attempt {attempt} was already claimed",
            task.id
        )
    }))
}

/// Refuses a claim the workspace and pool rules no longer allow (they may have changed while
/// the task waited), naming the rule.
fn within_rules(
    rules: &crate::auth::Rules,
    task: &Task,
    run: &Run,
) -> std::result::Result<(), String> {
    rules
        .check_pool(&run.workspace, &task.pool)
        .and_then(|()| rules.check_module(&run.workspace, &run.source, &run.bundle_digest))
        .map_err(|why| format!("refused at claim: {why}"))
}

/// A lease just granted: its fencing epoch and its two secrets (kept only as hashes).
struct Lease {
    epoch: i64,
    /// The state backend's password for the task.
    state_token: String,
    /// The lease's own secret, for the agent.
    lease_token: String,
}

/// Takes the next fencing epoch and gives the queued attempt to `agent_id` until `expires_ms`;
/// `None` when someone else claimed it first.
async fn grant_lease(
    tx: &mut Tx,
    task: &Task,
    agent_id: &str,
    expires_ms: i64,
) -> Result<Option<Lease>> {
    let row =
        sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'epoch' RETURNING value")
            .fetch_one(&mut **tx)
            .await?;
    let lease = Lease {
        epoch: i(&row, "value")?,
        state_token: secret(),
        lease_token: secret(),
    };
    let r = sqlx::query(
        "UPDATE tasks SET state = 'running', agent_id = $1, epoch = $2, lease_expires_ms = $3, token_sha256 = $4, lease_sha256 = $5 WHERE id = $6 AND attempt = $7 AND state = 'queued'",
    )
    .bind(agent_id)
    .bind(lease.epoch)
    .bind(expires_ms)
    .bind(sha256_hex(lease.state_token.as_bytes()))
    .bind(sha256_hex(lease.lease_token.as_bytes()))
    .bind(&task.id)
    .bind(task.attempt as i64)
    .execute(&mut **tx)
    .await?;
    Ok((r.rows_affected() == 1).then_some(lease))
}

/// Keeps the attempt (who ran it, with which epoch) for the record and the fault tests.
async fn record_attempt(
    tx: &mut Tx,
    task: &Task,
    run_id: &str,
    agent_id: &str,
    epoch: i64,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO task_attempts (task_id, attempt, run_id, phase, agent_id, epoch, claimed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&task.id)
        .bind(task.attempt as i64)
        .bind(run_id)
        .bind(task.phase.as_str())
        .bind(agent_id)
        .bind(epoch)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
