//! The `transitions` table: every run state change and note, with actor and reason; the one place a run's state moves.

use super::*;

#[derive(Clone, Debug)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub actor: String,
    pub reason: String,
    pub at_ms: i64,
}

/// Moves a run from `from` to `to`, recording who and why. An illegal transition is a bug.
pub(crate) async fn transition(
    c: &mut AnyConnection,
    run_id: &str,
    from: RunState,
    to: RunState,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    if !crate::runs::allowed(from, to) {
        return Err(Error::Internal(format!(
            "illegal run transition {from} -> {to} for run {run_id}"
        )));
    }
    let r = sqlx::query("UPDATE runs SET state = $1, updated_ms = $2 WHERE id = $3 AND state = $4")
        .bind(to.as_str())
        .bind(now)
        .bind(run_id)
        .bind(from.as_str())
        .execute(&mut *c)
        .await?;
    if r.rows_affected() != 1 {
        return Err(Error::Conflict(format!("run {run_id} is no longer {from}")));
    }
    note(c, run_id, from, to, actor, reason, now).await
}

/// Records an audit row (also used for events that do not change state, such as a cancel
/// request on a running task).
pub(crate) async fn note(
    c: &mut AnyConnection,
    run_id: &str,
    from: RunState,
    to: RunState,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO transitions (run_id, from_state, to_state, actor, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(run_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(actor)
    .bind(reason)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

impl Store {
    pub async fn transitions(&self, run_id: &str) -> Result<Vec<Transition>> {
        let rows = sqlx::query("SELECT * FROM transitions WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Transition {
                    from: s(r, "from_state")?,
                    to: s(r, "to_state")?,
                    actor: s(r, "actor")?,
                    reason: s(r, "reason")?,
                    at_ms: i(r, "at_ms")?,
                })
            })
            .collect()
    }

    /// Records an action on a run that does not change its state (in its history).
    pub async fn record(&self, run_id: &str, actor: &str, reason: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        note(
            &mut tx,
            run_id,
            run.state,
            run.state,
            actor,
            reason,
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        self.changed(run_id);
        Ok(())
    }
}
