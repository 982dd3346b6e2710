//! The `leader_leases` table: periodic work (the reaper today; schedules, TTL and drift later)
//! is done by one coordinator at a time. A coordinator holds a named lease until it expires and
//! renews it each round; another takes it over once it has expired, with the next epoch, so a
//! stalled holder that wakes up finds it lost the lease (its renewal fails) and stops.

use super::*;

/// A lease held: by whom, and its fencing epoch (one higher at every change of holder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub epoch: i64,
    /// The holder before this round, when it was someone else (a takeover).
    pub took_over_from: Option<String>,
}

impl Store {
    /// Takes or renews lease `name` for `holder` until `now + ttl_ms`; `None` while someone
    /// else holds it unexpired (then `holder_of` says who).
    pub async fn try_lead(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<Option<Leadership>> {
        let mut tx = self.pool.begin().await?;
        let prev = sqlx::query("SELECT holder FROM leader_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| s(&r, "holder"))
            .transpose()?;
        let row = if prev.is_none() {
            sqlx::query("INSERT INTO leader_leases (name, holder, epoch, expires_ms, acquired_ms) VALUES ($1, $2, 1, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING epoch")
                .bind(name)
                .bind(holder)
                .bind(now + ttl_ms)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
        } else {
            sqlx::query("UPDATE leader_leases SET epoch = CASE WHEN holder = $1 THEN epoch ELSE epoch + 1 END, acquired_ms = CASE WHEN holder = $1 THEN acquired_ms ELSE $3 END, holder = $1, expires_ms = $2 WHERE name = $4 AND (holder = $1 OR expires_ms < $3) RETURNING epoch")
                .bind(holder)
                .bind(now + ttl_ms)
                .bind(now)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
        };
        tx.commit().await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Leadership {
            epoch: i(&row, "epoch")?,
            took_over_from: prev.filter(|p| p != holder),
        }))
    }

    /// Who holds lease `name` and until when, if anyone ever did.
    pub async fn holder_of(&self, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT holder, expires_ms FROM leader_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((s(&r, "holder")?, i(&r, "expires_ms")?)))
            .transpose()
    }
}
