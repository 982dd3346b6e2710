//! The `state_locks` table: OpenTofu state locks, held by a task's lease or by a person.

use super::*;
use crate::audit::{AuditEntry, AuditKind};

pub struct StateLock {
    pub lock_id: String,
    pub info: String,
    pub task_id: String,
    pub epoch: i64,
}

/// Releases a state lock held by a task's lease (the fence: its lock ID is now worthless).
pub(crate) async fn release_task_lock(c: &mut AnyConnection, task_id: &str) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM state_locks WHERE task_id = $1")
        .bind(task_id)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

impl Store {
    /// A lock taken by a person (not by a run's lease). Runs wait or fail while it is held.
    pub async fn lock_state_human(
        &self,
        workspace: &str,
        actor: &str,
        reason: &str,
    ) -> Result<std::result::Result<String, StateLock>> {
        let id = format!("human-{}", uuid::Uuid::new_v4());
        let info = serde_json::json!({"ID": id, "Operation": "tofuflow state lock", "Info": reason, "Who": actor, "Version": "", "Created": "", "Path": ""}).to_string();
        let mut tx = self.begin().await?;
        let r = sqlx::query("INSERT INTO state_locks (workspace, lock_id, info, task_id, epoch, owner, created_ms) VALUES ($1, $2, $3, '', 0, $4, $5) ON CONFLICT (workspace) DO NOTHING")
            .bind(workspace)
            .bind(&id)
            .bind(&info)
            .bind(actor)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            drop(tx);
            return Ok(Err(self
                .state_lock(workspace)
                .await?
                .ok_or_else(|| Error::Conflict("lock vanished; retry".into()))?));
        }
        self.state_event(&mut tx, workspace, 0, "lock", actor, reason)
            .await?;
        tx.audit(
            AuditEntry::new(AuditKind::StateLocked, actor)
                .workspace(workspace)
                .detail(serde_json::json!({"lock_id": id, "reason": reason})),
        );
        self.commit(tx).await?;
        Ok(Ok(id))
    }

    /// Releases a person's lock; `force` (an admin's choice, recorded) releases anyone's lock,
    /// including a run's.
    pub async fn unlock_state_human(
        &self,
        workspace: &str,
        actor: &str,
        force: bool,
        reason: &str,
    ) -> Result<String> {
        let mut tx = self.begin().await?;
        let Some(l) =
            sqlx::query("SELECT lock_id, owner, task_id FROM state_locks WHERE workspace = $1")
                .bind(workspace)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Err(Error::Conflict(format!(
                "workspace {workspace:?} is not locked"
            )));
        };
        let (owner, task) = (s(&l, "owner")?, s(&l, "task_id")?);
        if !force && (owner != actor || !task.is_empty()) {
            return Err(Error::PermissionDenied(format!(
                "the lock on {workspace:?} belongs to {}{}: only its owner can unlock it; an admin can with --force (recorded)",
                owner,
                if task.is_empty() { String::new() } else { format!(" (task {task})") }
            )));
        }
        sqlx::query("DELETE FROM state_locks WHERE workspace = $1")
            .bind(workspace)
            .execute(&mut *tx)
            .await?;
        let action = if force { "force-unlock" } else { "unlock" };
        self.state_event(
            &mut tx,
            workspace,
            0,
            action,
            actor,
            &format!("{reason} (lock of {owner})"),
        )
        .await?;
        let kind = if force {
            AuditKind::StateForceUnlocked
        } else {
            AuditKind::StateUnlocked
        };
        tx.audit(
            AuditEntry::new(kind, actor)
                .workspace(workspace)
                .detail(serde_json::json!({
                    "lock_id": s(&l, "lock_id")?, "owner": owner, "task_id": task, "reason": reason,
                })),
        );
        self.commit(tx).await?;
        Ok(owner)
    }

    pub async fn state_lock(&self, workspace: &str) -> Result<Option<StateLock>> {
        let row = sqlx::query("SELECT * FROM state_locks WHERE workspace = $1")
            .bind(workspace)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(StateLock {
                lock_id: s(&r, "lock_id")?,
                info: s(&r, "info")?,
                task_id: s(&r, "task_id")?,
                epoch: i(&r, "epoch")?,
            })
        })
        .transpose()
    }

    /// Takes the workspace lock for a task's lease; `Err(holder)` if someone else has it.
    pub async fn lock_state(
        &self,
        workspace: &str,
        lock_id: &str,
        info: &str,
        task: &Task,
    ) -> Result<std::result::Result<(), StateLock>> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("INSERT INTO state_locks (workspace, lock_id, info, task_id, epoch, owner, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace) DO NOTHING")
            .bind(workspace)
            .bind(lock_id)
            .bind(info)
            .bind(&task.id)
            .bind(task.epoch)
            .bind(&task.agent_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 1 {
            tx.audit(task_lock_entry(
                AuditKind::StateLocked,
                workspace,
                lock_id,
                task,
            ));
            self.commit(tx).await?;
            return Ok(Ok(()));
        }
        drop(tx);
        let held = self.state_lock(workspace).await?;
        match held {
            Some(h) if h.lock_id == lock_id && h.task_id == task.id && h.epoch == task.epoch => {
                Ok(Ok(()))
            }
            Some(h) => Ok(Err(h)),
            None => Box::pin(self.lock_state(workspace, lock_id, info, task)).await,
        }
    }

    /// Releases the lock `task` holds with `lock_id`; false when it holds no such lock.
    pub async fn unlock_state(&self, workspace: &str, lock_id: &str, task: &Task) -> Result<bool> {
        let mut tx = self.begin().await?;
        let released = sqlx::query(
            "DELETE FROM state_locks WHERE workspace = $1 AND lock_id = $2 AND task_id = $3",
        )
        .bind(workspace)
        .bind(lock_id)
        .bind(&task.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if released {
            tx.audit(task_lock_entry(
                AuditKind::StateUnlocked,
                workspace,
                lock_id,
                task,
            ));
            self.commit(tx).await?;
        }
        Ok(released)
    }
}

/// The audit entry of a lock a task's tofu took or released (the agent is the actor).
fn task_lock_entry(kind: AuditKind, workspace: &str, lock_id: &str, task: &Task) -> AuditEntry {
    AuditEntry::new(kind, &task.agent_id)
        .workspace(workspace)
        .run(&task.run_id)
        .detail(serde_json::json!({
            "lock_id": lock_id, "task_id": task.id, "attempt": task.attempt,
        }))
}
