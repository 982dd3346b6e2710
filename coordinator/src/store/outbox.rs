//! The `outbox` table: task messages written in the transaction that queues them, marked sent after the broker's confirm.

use super::*;

pub struct OutboxRow {
    pub id: i64,
    pub task_id: String,
    pub attempt: u32,
    pub pool: String,
    pub payload: Vec<u8>,
    pub traceparent: String,
}

/// Queues a task attempt for publishing (the outbox publisher sends it after commit): its
/// envelope is signed now, and the task remembers the envelope's id and expiry (only that
/// envelope is granted on claim; the reaper signs a new one if it expires unclaimed).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn enqueue(
    c: &mut Tx,
    run: &Run,
    task_id: &str,
    attempt: u32,
    phase: Phase,
    now: i64,
    deadline_ms: i64,
) -> Result<()> {
    let envelope = crate::queue::envelope(run, task_id, attempt, phase, deadline_ms);
    let (signer, keys) = (c.signer.clone(), c.keys.clone());
    let signed = signer.sign(c, &keys, envelope, now).await?;
    sqlx::query("UPDATE tasks SET envelope_id = $1, envelope_expires_ms = $2 WHERE id = $3 AND attempt = $4")
        .bind(&signed.envelope_id)
        .bind(signed.expires_ms)
        .bind(task_id)
        .bind(attempt as i64)
        .execute(&mut **c)
        .await?;
    // An unsent message of this attempt is superseded: it would only die expired.
    sqlx::query("UPDATE outbox SET sent_ms = $1, last_error = 'superseded by a newer envelope' WHERE task_id = $2 AND attempt = $3 AND sent_ms = 0")
        .bind(now)
        .bind(task_id)
        .bind(attempt as i64)
        .execute(&mut **c)
        .await?;
    let payload = signed.payload;
    sqlx::query(
        "INSERT INTO outbox (task_id, attempt, pool, payload, traceparent, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(task_id)
    .bind(attempt as i64)
    .bind(&run.pool)
    .bind(payload)
    .bind(&run.traceparent)
    .bind(now)
    .execute(&mut **c)
    .await?;
    c.push(crate::runs::events::RunEvent::TaskQueued {
        run_id: run.id.clone(),
        task_id: task_id.to_string(),
        attempt,
        phase,
    });
    Ok(())
}

impl Store {
    pub async fn unsent(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query("SELECT id, task_id, attempt, pool, payload, traceparent FROM outbox WHERE sent_ms = 0 ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    id: i(r, "id")?,
                    task_id: s(r, "task_id")?,
                    attempt: i(r, "attempt")? as u32,
                    pool: s(r, "pool")?,
                    payload: r.try_get::<Vec<u8>, _>("payload")?,
                    traceparent: s(r, "traceparent")?,
                })
            })
            .collect()
    }

    pub async fn mark_sent(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET sent_ms = $1, publish_attempts = publish_attempts + 1 WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the rows `ids` sent, in one transaction (one commit for a batch of confirms).
    pub async fn mark_all_sent(&self, ids: &[i64]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET sent_ms = $1, publish_attempts = publish_attempts + 1 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn mark_publish_failed(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_stats(&self) -> Result<(i64, i64)> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sent_ms = 0")
            .fetch_one(&self.pool)
            .await?;
        let t = sqlx::query("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok((i(&r, "n")?, i(&t, "n")?))
    }
}
