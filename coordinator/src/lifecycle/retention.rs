//! Log retention (`--log-retention`): the reaper deletes the logs of runs that ended longer ago
//! than the retention, a batch per sweep, each recorded in the audit trail; `run logs` then
//! says when and why the log went. Touches: runs (`logs_pruned_ms`), events, audit_log.

use crate::audit::{AuditEntry, AuditKind};
use crate::error::Result;
use crate::runs::{self, RunKind, RunState};
use crate::store::*;

/// Who the audit trail names for a pruned log.
pub const RETENTION_ACTOR: &str = "coordinator (log retention)";
/// Runs looked at per sweep (the rest wait for the next sweep).
const BATCH: i64 = 200;
/// `logs_pruned_ms` of a run that ended with no log lines: looked at, nothing to delete.
const NOTHING_TO_PRUNE: i64 = -1;

/// The states some kind of run ends in (whether this run's kind ends there is checked per run).
fn ending_states() -> String {
    runs::ALL_STATES
        .iter()
        .filter(|s| {
            [RunKind::PlanAndApply, RunKind::PlanOnly]
                .iter()
                .any(|k| runs::is_terminal(**s, *k))
        })
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Deletes the logs of finished runs whose last change is older than the retention; returns
    /// one line per run whose log went.
    pub(crate) async fn prune_logs(&self, policy: &Policy, now: i64) -> Result<Vec<String>> {
        if policy.log_retention_ms <= 0 {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT id, workspace, state, kind FROM runs WHERE logs_pruned_ms = 0 AND updated_ms < $1 AND state IN ({}) ORDER BY updated_ms LIMIT {BATCH}",
            ending_states()
        );
        let rows = sqlx::query(&sql)
            .bind(now - policy.log_retention_ms)
            .fetch_all(&self.pool)
            .await?;
        let mut done = Vec::new();
        for row in rows {
            let (id, ws) = (s(&row, "id")?, s(&row, "workspace")?);
            let state: RunState = s(&row, "state")?
                .parse()
                .map_err(crate::error::Error::Internal)?;
            let kind: RunKind = s(&row, "kind")?
                .parse()
                .map_err(crate::error::Error::Internal)?;
            if !runs::is_terminal(state, kind) {
                continue;
            }
            if let Some(lines) = self.prune_run_log(&id, &ws, policy, now).await? {
                done.push(format!(
                    "log of run {id} deleted ({lines} lines, --log-retention)"
                ));
            }
        }
        Ok(done)
    }

    /// Deletes one run's log and records it, unless another coordinator did first; returns how
    /// many lines went (None: nothing was there, or it was done already).
    async fn prune_run_log(
        &self,
        id: &str,
        ws: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<Option<u64>> {
        let mut tx = self.begin().await?;
        let lines = sqlx::query("DELETE FROM events WHERE run_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mark = if lines > 0 { now } else { NOTHING_TO_PRUNE };
        let r =
            sqlx::query("UPDATE runs SET logs_pruned_ms = $1 WHERE id = $2 AND logs_pruned_ms = 0")
                .bind(mark)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if r.rows_affected() != 1 || lines == 0 {
            // Done by another coordinator (its deletion is the one kept), or no log at all.
            self.commit(tx).await?;
            return Ok(None);
        }
        let retention = std::time::Duration::from_millis(policy.log_retention_ms as u64);
        tx.audit(
            AuditEntry::new(AuditKind::LogsPruned, RETENTION_ACTOR)
                .workspace(ws)
                .run(id)
                .detail(serde_json::json!({
                    "lines": lines,
                    "retention": humantime::format_duration(retention).to_string(),
                })),
        );
        self.commit(tx).await?;
        Ok(Some(lines))
    }

    /// When this run's log was deleted under the retention, if it was.
    pub(crate) async fn logs_pruned_at(&self, run_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT logs_pruned_ms FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(i(&r, "logs_pruned_ms")?).filter(|ms| *ms > 0),
            None => None,
        })
    }
}
