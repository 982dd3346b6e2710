//! The `events` table: a task's log lines, idempotent by (task, attempt, sequence), sealed with the state key.

use super::*;

pub struct LogRow {
    pub phase_order: i64,
    pub attempt: i64,
    pub seq: i64,
    pub unix_ms: i64,
    pub stream: i64,
    pub line: String,
}

/// What a run whose log was deleted under `--log-retention` shows instead (a system line).
fn pruned_note(at_ms: i64) -> LogRow {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms.max(0) as u64);
    LogRow {
        phase_order: 0,
        attempt: 0,
        seq: 0,
        unix_ms: at_ms,
        stream: tofuflow_proto::v1::LogStream::System as i64,
        line: format!(
            "tofuflow: this run's log was deleted at {} under the coordinator's --log-retention (the audit trail has a logs_pruned entry)",
            humantime::format_rfc3339_seconds(at)
        ),
    }
}

impl Store {
    pub async fn logs(&self, run_id: &str, offset: i64) -> Result<Vec<LogRow>> {
        let rows = sqlx::query("SELECT phase_order, attempt, seq, unix_ms, stream, line FROM events WHERE run_id = $1 ORDER BY phase_order, attempt, seq LIMIT 5000 OFFSET $2")
            .bind(run_id)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() && offset == 0 {
            if let Some(at) = self.logs_pruned_at(run_id).await? {
                return Ok(vec![pruned_note(at)]);
            }
        }
        let aad = run_aad(run_id);
        rows.iter()
            .map(|r| {
                Ok(LogRow {
                    phase_order: i(r, "phase_order")?,
                    attempt: i(r, "attempt")?,
                    seq: i(r, "seq")?,
                    unix_ms: i(r, "unix_ms")?,
                    stream: i(r, "stream")?,
                    line: self
                        .keys
                        .open_text(&aad, &s(r, "line")?)
                        .map_err(Error::Internal)?,
                })
            })
            .collect()
    }

    /// Re-encrypts log lines not under the current key, a page at a time.
    pub(crate) async fn rotate_events(&self) -> Result<u64> {
        let Some(prefix) = self.keys.sealed_text_prefix() else {
            return Ok(0);
        };
        let mut n = 0;
        loop {
            let rows = sqlx::query("SELECT task_id, attempt, seq, run_id, line FROM events WHERE line NOT LIKE $1 LIMIT 1000")
                .bind(format!("{prefix}%"))
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(n);
            }
            let mut tx = self.pool.begin().await?;
            for r in rows {
                let aad = run_aad(&s(&r, "run_id")?);
                let plain = self
                    .keys
                    .open_text(&aad, &s(&r, "line")?)
                    .map_err(Error::Internal)?;
                let fresh = self.keys.seal_text(&aad, &plain).map_err(Error::Internal)?;
                sqlx::query(
                    "UPDATE events SET line = $1 WHERE task_id = $2 AND attempt = $3 AND seq = $4",
                )
                .bind(fresh)
                .bind(s(&r, "task_id")?)
                .bind(i(&r, "attempt")?)
                .bind(i(&r, "seq")?)
                .execute(&mut *tx)
                .await?;
                n += 1;
            }
            tx.commit().await?;
        }
    }
}
