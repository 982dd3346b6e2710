//! Heartbeats: renewing an agent's leases, answering cancel or lost. Touches: agents, tasks.

use crate::error::Result;
use crate::store::*;

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

impl Store {
    /// Renews the agent's credential and the leases it still holds; a revoked agent's leases
    /// are all lost. Holding none, it is only noted, and written with the others (`seen.rs`).
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
        let now = now_ms();
        let mut c = self.pool.acquire().await?;
        let seen = sqlx::query("UPDATE agents SET last_seen_ms = $1, state = $2, credential_expires_ms = $4 WHERE id = $3 AND revoked_ms IS NULL")
            .bind(now)
            .bind(if draining { "draining" } else { "active" })
            .bind(agent_id)
            .bind(now + policy.agent_credential_ttl_ms)
            .execute(&mut *c)
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
            .execute(&mut *c)
            .await?;
            if r.rows_affected() == 0 {
                answer.lost.push(task_id.clone());
                continue;
            }
            if let Some(t) = get_task_c(&mut c, task_id).await? {
                if t.cancel_requested {
                    answer.cancel.push(task_id.clone());
                }
                // A token that cannot be renewed now must not cost the lease its renewal: the
                // task keeps its current token and the next heartbeat tries again.
                match self.renew_id_token(&mut c, &t, now).await {
                    Ok(fresh) => answer.renewed.extend(fresh),
                    Err(e) => {
                        tracing::warn!(task_id = %t.id, error = %e, "cannot renew the task's ID token; the next heartbeat tries again")
                    }
                }
            }
        }
        Ok(answer)
    }
}
