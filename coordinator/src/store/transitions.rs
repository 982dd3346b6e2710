//! The `transitions` table: every run state change and note, with actor and reason; the one place a run's state moves
//! (and so where approvals, rejections and applies enter the audit log).

use super::*;
use crate::runs::events::RunEvent;

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
    c: &mut Tx,
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
        .execute(&mut **c)
        .await?;
    if r.rows_affected() != 1 {
        return Err(Error::Conflict(format!("run {run_id} is no longer {from}")));
    }
    history_row(c, run_id, from, to, actor, reason, now).await?;
    erase_run_env(c, run_id, to).await?;
    if let Some(kind) = crate::audit::AuditKind::of_transition(from, to) {
        let entry = transition_entry(c, kind, run_id, to, actor, reason).await?;
        c.audit(entry);
    }
    c.push(RunEvent::Moved {
        run_id: run_id.to_string(),
        from,
        to,
    });
    Ok(())
}

/// A run's own environment variables live only as long as the run: erased in the transaction
/// that ends it (a plan-only run ends planned).
async fn erase_run_env(c: &mut Tx, run_id: &str, to: RunState) -> Result<()> {
    use RunState as S;
    let sql = match to {
        S::Applied
        | S::PlannedNoChanges
        | S::Failed
        | S::Cancelled
        | S::Rejected
        | S::Interrupted
        | S::Expired => "UPDATE runs SET run_env = '' WHERE id = $1 AND run_env <> ''",
        S::Planned => {
            "UPDATE runs SET run_env = '' WHERE id = $1 AND run_env <> '' AND kind IN ('plan_only', 'drift_check')"
        }
        _ => return Ok(()),
    };
    sqlx::query(sql).bind(run_id).execute(&mut **c).await?;
    Ok(())
}

/// Records something in a run's history that does not change its state (a cancel request on a
/// running task, sensitive values shown).
pub(crate) async fn note(
    c: &mut Tx,
    run_id: &str,
    state: RunState,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    history_row(c, run_id, state, state, actor, reason, now).await?;
    c.push(RunEvent::Noted {
        run_id: run_id.to_string(),
    });
    Ok(())
}

/// Who made run `run_id`'s latest state change, read in `tx` (empty when nobody did yet).
pub(crate) async fn last_actor(tx: &mut Tx, run_id: &str) -> Result<String> {
    let row = sqlx::query(
        "SELECT actor FROM transitions WHERE run_id = $1 AND from_state <> to_state ORDER BY id DESC LIMIT 1",
    )
    .bind(run_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| s(&r, "actor"))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// One row of a run's history.
async fn history_row(
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
        let mut tx = self.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        note(&mut tx, run_id, run.state, actor, reason, now_ms()).await?;
        self.commit(tx).await?;
        Ok(())
    }
}
