//! Heartbeats: renewing an agent's leases, answering cancel or lost. Touches: agents, tasks,
//! id_tokens.

use super::group_commit::{Job, Kind, Writing};
use crate::error::Result;
use crate::store::*;
use tokio::sync::oneshot;

/// A lease an agent says it still holds.
#[derive(Clone, Debug)]
pub struct HeldLease {
    pub task_id: String,
    pub attempt: u32,
    pub epoch: i64,
    /// The lease's secret, as the claim gave it.
    pub token: String,
}

/// What a heartbeat tells the agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeartbeatAnswer {
    /// Tasks a user asked to cancel.
    pub cancel: Vec<String>,
    /// Leases the coordinator no longer honours: stop these tasks now.
    pub lost: Vec<String>,
    /// An admin revoked the agent: it must stop.
    pub revoked: bool,
    /// Fresh ID tokens for renewed leases whose token was past half its life.
    pub renewed: Vec<super::RenewedToken>,
}

/// A heartbeat holding leases, waiting for its group commit (`group_commit.rs`).
struct HeartbeatJob {
    agent_id: String,
    leases: Vec<HeldLease>,
    draining: bool,
    policy: Policy,
    told: HeartbeatAnswer,
    answer: oneshot::Sender<Result<HeartbeatAnswer>>,
}

impl Job for HeartbeatJob {
    fn kind(&self) -> Kind {
        Kind::Heartbeat
    }

    fn key(&self) -> &str {
        &self.agent_id
    }

    fn write<'a>(&'a mut self, store: &'a Store, tx: &'a mut Tx) -> Writing<'a> {
        Box::pin(async move {
            self.told = store
                .renew_leases(
                    tx,
                    &self.agent_id,
                    &self.leases,
                    self.draining,
                    &self.policy,
                )
                .await?;
            Ok(())
        })
    }

    fn answer(self: Box<Self>, r: Result<()>) {
        let HeartbeatJob { told, answer, .. } = *self;
        let _ = answer.send(r.map(|()| told));
    }
}

impl Store {
    /// Renews the agent's credential and the leases it still holds; a revoked agent's leases
    /// are all lost. Holding none, it is only noted, and written with the others (`seen.rs`);
    /// holding some, it shares a transaction with the calls that arrive with it (the group
    /// commit) and is answered once that has committed.
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        leases: &[HeldLease],
        draining: bool,
        policy: &Policy,
    ) -> Result<HeartbeatAnswer> {
        if leases.is_empty() {
            if let Some(revoked) = self.note_seen(agent_id, draining) {
                return Ok(HeartbeatAnswer {
                    revoked,
                    ..Default::default()
                });
            }
        }
        self.forget_seen(agent_id);
        let (answer, answered) = oneshot::channel();
        let job = HeartbeatJob {
            agent_id: agent_id.to_string(),
            leases: leases.to_vec(),
            draining,
            policy: policy.clone(),
            told: HeartbeatAnswer::default(),
            answer,
        };
        self.grouped(Box::new(job), answered).await
    }

    /// Writes a heartbeat into `tx`: the agent seen, each lease it holds renewed (or lost), and
    /// fresh ID tokens for renewed leases whose token was past half its life.
    async fn renew_leases(
        &self,
        tx: &mut Tx,
        agent_id: &str,
        leases: &[HeldLease],
        draining: bool,
        policy: &Policy,
    ) -> Result<HeartbeatAnswer> {
        let now = now_ms();
        let seen = sqlx::query("UPDATE agents SET last_seen_ms = $1, state = $2, credential_expires_ms = $4 WHERE id = $3 AND revoked_ms IS NULL")
            .bind(now)
            .bind(if draining { "draining" } else { "active" })
            .bind(agent_id)
            .bind(now + policy.agent_credential_ttl_ms)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if seen == 0 {
            return Ok(HeartbeatAnswer {
                lost: leases.iter().map(|l| l.task_id.clone()).collect(),
                revoked: true,
                ..Default::default()
            });
        }
        let mut answer = HeartbeatAnswer::default();
        for l in leases {
            let (task_id, token) = (&l.task_id, &l.token);
            let r = sqlx::query(
                "UPDATE tasks SET lease_expires_ms = $1 WHERE id = $2 AND attempt = $3 AND epoch = $4 AND state = 'running' AND agent_id = $5 AND lease_sha256 = $6 AND lease_sha256 <> ''",
            )
            .bind(now + policy.lease_ttl_ms)
            .bind(task_id)
            .bind(l.attempt as i64)
            .bind(l.epoch)
            .bind(agent_id)
            .bind(sha256_hex(token.as_bytes()))
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                answer.lost.push(task_id.clone());
                continue;
            }
            if let Some(t) = get_task_c(tx, task_id).await? {
                if t.cancel_requested {
                    answer.cancel.push(task_id.clone());
                }
                answer
                    .renewed
                    .extend(self.renew_or_keep(tx, &t, now).await?);
            }
        }
        Ok(answer)
    }

    /// A fresh ID token for `t` when its token is past half its life. A token that cannot be
    /// renewed now must not cost the lease its renewal: what it wrote is rolled back (its own
    /// savepoint), the task keeps its current token and the next heartbeat tries again.
    async fn renew_or_keep(
        &self,
        tx: &mut Tx,
        t: &Task,
        now: i64,
    ) -> Result<Option<super::RenewedToken>> {
        sqlx::query("SAVEPOINT renew").execute(&mut **tx).await?;
        let fresh = match self.renew_id_token(tx, t, now).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(task_id = %t.id, error = %e, "cannot renew the task's ID token; the next heartbeat tries again");
                sqlx::query("ROLLBACK TO SAVEPOINT renew")
                    .execute(&mut **tx)
                    .await?;
                None
            }
        };
        sqlx::query("RELEASE SAVEPOINT renew")
            .execute(&mut **tx)
            .await?;
        Ok(fresh)
    }
}
