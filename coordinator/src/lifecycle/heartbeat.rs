//! Heartbeats: renewing an agent's leases, answering cancel or lost. Touches: agents, tasks.

use crate::error::Result;
use crate::store::*;

impl Store {
    /// Renews the leases an agent still holds; returns (tasks to cancel, leases that are gone).
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        leases: &[(String, u32, i64, String)],
        draining: bool,
        policy: &Policy,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let now = now_ms();
        let mut c = self.pool.acquire().await?;
        sqlx::query("UPDATE agents SET last_seen_ms = $1, state = $2 WHERE id = $3")
            .bind(now)
            .bind(if draining { "draining" } else { "active" })
            .bind(agent_id)
            .execute(&mut *c)
            .await?;
        let mut cancel = Vec::new();
        let mut lost = Vec::new();
        for (task_id, attempt, epoch, token) in leases {
            let r = sqlx::query(
                "UPDATE tasks SET lease_expires_ms = $1 WHERE id = $2 AND attempt = $3 AND epoch = $4 AND state = 'running' AND agent_id = $5 AND lease_sha256 = $6 AND lease_sha256 <> ''",
            )
            .bind(now + policy.lease_ttl_ms)
            .bind(task_id)
            .bind(*attempt as i64)
            .bind(*epoch)
            .bind(agent_id)
            .bind(sha256_hex(token.as_bytes()))
            .execute(&mut *c)
            .await?;
            if r.rows_affected() == 0 {
                lost.push(task_id.clone());
                continue;
            }
            if let Some(t) = get_task_c(&mut c, task_id).await? {
                if t.cancel_requested {
                    cancel.push(task_id.clone());
                }
            }
        }
        Ok((cancel, lost))
    }
}
