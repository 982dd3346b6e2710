//! Reports during a task: log lines and plan artifacts, from the live lease only. Touches: events, runs (plan digests).

use super::group_commit::{Job, Kind, Writing};
use crate::error::{Error, Result};
use crate::runs::events::RunEvent;
use crate::runs::{Artifact, LogLine, Phase, TaskState};
use crate::store::*;
use tokio::sync::oneshot;

/// A log batch waiting for its group commit (`group_commit.rs`).
struct LogJob {
    task_id: String,
    attempt: u32,
    epoch: i64,
    agent_id: String,
    token: String,
    events: Vec<LogLine>,
    stored: u64,
    answer: oneshot::Sender<Result<u64>>,
}

impl Job for LogJob {
    fn kind(&self) -> Kind {
        Kind::Log
    }

    fn key(&self) -> &str {
        &self.task_id
    }

    fn write<'a>(&'a mut self, store: &'a Store, tx: &'a mut Tx) -> Writing<'a> {
        Box::pin(async move {
            let proof = LeaseProof {
                task_id: &self.task_id,
                attempt: self.attempt,
                epoch: self.epoch,
                agent_id: &self.agent_id,
                token: &self.token,
            };
            self.stored = store.write_events(tx, proof, &self.events).await?;
            Ok(())
        })
    }

    fn answer(self: Box<Self>, r: Result<()>) {
        let _ = self.answer.send(r.map(|()| self.stored));
    }
}

impl Store {
    /// Stores log lines (sharing a transaction with the batches and submits that arrive with
    /// them); a retried batch is absorbed (idempotent by task, attempt, seq). Answered once
    /// committed.
    pub async fn add_events(&self, proof: LeaseProof<'_>, events: &[LogLine]) -> Result<u64> {
        let (answer, answered) = oneshot::channel();
        let job = LogJob {
            task_id: proof.task_id.to_string(),
            attempt: proof.attempt,
            epoch: proof.epoch,
            agent_id: proof.agent_id.to_string(),
            token: proof.token.to_string(),
            events: events.to_vec(),
            stored: 0,
            answer,
        };
        self.grouped(Box::new(job), answered).await
    }

    /// Writes a log batch into `tx`, from the live lease (or a reported attempt) only.
    async fn write_events(
        &self,
        tx: &mut Tx,
        proof: LeaseProof<'_>,
        events: &[LogLine],
    ) -> Result<u64> {
        let (task_id, attempt) = (proof.task_id, proof.attempt);
        let t = get_task_c(tx, task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown task {task_id}")))?;
        proof.check(&t)?;
        // Late lines of a finished attempt are still welcome; lines of a fenced one are not.
        if !(t.state == TaskState::Running || t.state.reported()) {
            return Err(Error::Conflict(format!(
                "stale lease: events for task {task_id} attempt {attempt} rejected (state {})",
                t.state
            )));
        }
        let order = if t.phase == Phase::Plan { 0 } else { 1 };
        let aad = run_aad(&t.run_id);
        let mut stored = 0;
        for e in events {
            let line = self
                .keys
                .seal_text(&aad, &e.line)
                .map_err(Error::Internal)?;
            let r = sqlx::query(
                "INSERT INTO events (task_id, attempt, seq, run_id, phase_order, unix_ms, stream, line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (task_id, attempt, seq) DO NOTHING",
            )
            .bind(task_id)
            .bind(attempt as i64)
            .bind(e.seq as i64)
            .bind(&t.run_id)
            .bind(order)
            .bind(e.unix_ms)
            .bind(e.stream)
            .bind(line)
            .execute(&mut **tx)
            .await?;
            stored += r.rows_affected();
        }
        tx.push(RunEvent::LogsAdded {
            run_id: t.run_id.clone(),
        });
        Ok(stored)
    }

    pub async fn set_artifact(
        &self,
        proof: LeaseProof<'_>,
        kind: Artifact,
        digest: &str,
    ) -> Result<()> {
        let t = self.check_lease(proof).await?;
        let col = match kind {
            Artifact::PlanFile => "plan_digest",
            Artifact::PlanJson => "plan_json_digest",
        };
        if t.phase != Phase::Plan {
            return Err(Error::InvalidInput(
                "only plan tasks upload plan artifacts".into(),
            ));
        }
        sqlx::query(&format!("UPDATE runs SET {col} = $1 WHERE id = $2"))
            .bind(digest)
            .bind(&t.run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
