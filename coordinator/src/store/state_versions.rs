//! The `state_versions` and `state_events` tables: every accepted state write as a version, with the workspace's audit trail.

use super::*;
use crate::runs::state::{check_write_lock, next_version, Current, HeldLock, Written};

/// A state version's metadata (no content).
#[derive(Clone, Debug)]
pub struct StateVersionMeta {
    pub version: i64,
    pub serial: i64,
    pub lineage: String,
    pub sha256: String,
    pub size: i64,
    pub run_id: String,
    pub attempt: i64,
    pub actor: String,
    pub created_ms: i64,
}

/// An entry of a workspace's state audit trail.
#[derive(Clone, Debug)]
pub struct StateEvent {
    pub version: i64,
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub at_ms: i64,
}

impl Store {
    /// Re-encrypts state versions not under the current key.
    pub(crate) async fn rotate_state(&self) -> Result<u64> {
        let rows =
            sqlx::query("SELECT workspace, version, data FROM state_versions WHERE size >= 0")
                .fetch_all(&self.pool)
                .await?;
        let mut n = 0;
        for r in rows {
            let data = r.try_get::<Vec<u8>, _>("data")?;
            if !self.keys.needs_rotation(&data) {
                continue;
            }
            let ws = s(&r, "workspace")?;
            let plain = self.keys.decrypt(&ws, &data).map_err(Error::Internal)?;
            let fresh = self.keys.encrypt(&ws, &plain).map_err(Error::Internal)?;
            sqlx::query(
                "UPDATE state_versions SET data = $1 WHERE workspace = $2 AND version = $3",
            )
            .bind(fresh)
            .bind(&ws)
            .bind(i(&r, "version")?)
            .execute(&self.pool)
            .await?;
            n += 1;
        }
        Ok(n)
    }

    pub(crate) fn open(&self, workspace: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        self.keys
            .decrypt(workspace, &stored)
            .map_err(Error::Internal)
    }

    pub async fn list_state_versions(&self, workspace: &str) -> Result<Vec<StateVersionMeta>> {
        let rows = sqlx::query("SELECT version, serial, lineage, sha256, size, run_id, attempt, actor, created_ms FROM state_versions WHERE workspace = $1 ORDER BY version DESC")
            .bind(workspace)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_meta).collect()
    }

    /// The versions `run_id` wrote to `workspace`, oldest first.
    pub async fn run_state_versions(
        &self,
        workspace: &str,
        run_id: &str,
    ) -> Result<Vec<StateVersionMeta>> {
        let rows = sqlx::query("SELECT version, serial, lineage, sha256, size, run_id, attempt, actor, created_ms FROM state_versions WHERE workspace = $1 AND run_id = $2 ORDER BY version")
            .bind(workspace)
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_meta).collect()
    }

    /// One version's content (the latest when `version` is `None`).
    pub async fn state_version(
        &self,
        workspace: &str,
        version: Option<i64>,
    ) -> Result<(StateVersionMeta, Vec<u8>)> {
        let row = match version {
            Some(v) => sqlx::query("SELECT * FROM state_versions WHERE workspace = $1 AND version = $2").bind(workspace).bind(v).fetch_optional(&self.pool).await?,
            None => sqlx::query("SELECT * FROM state_versions WHERE workspace = $1 ORDER BY version DESC LIMIT 1").bind(workspace).fetch_optional(&self.pool).await?,
        }
        .ok_or_else(|| {
            Error::NotFound(match version {
                Some(v) => format!("workspace {workspace:?} has no state version {v}: list them with `tofuflow state list {workspace}`"),
                None => format!("workspace {workspace:?} has no state yet"),
            })
        })?;
        let meta = version_meta(&row)?;
        if meta.size < 0 {
            return Err(Error::NotFound(format!(
                "workspace {workspace:?} version {} is a deletion, not a state: pick an earlier version (`tofuflow state list {workspace}`)",
                meta.version
            )));
        }
        let data = self.open(workspace, row.try_get::<Vec<u8>, _>("data")?)?;
        Ok((meta, data))
    }

    pub(crate) async fn state_event(
        &self,
        c: &mut AnyConnection,
        workspace: &str,
        version: i64,
        action: &str,
        actor: &str,
        reason: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO state_events (workspace, version, action, actor, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(workspace)
            .bind(version)
            .bind(action)
            .bind(actor)
            .bind(reason)
            .bind(now_ms())
            .execute(&mut *c)
            .await?;
        Ok(())
    }

    pub async fn state_events(&self, workspace: &str) -> Result<Vec<StateEvent>> {
        let rows = sqlx::query("SELECT version, action, actor, reason, at_ms FROM state_events WHERE workspace = $1 ORDER BY id")
            .bind(workspace)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StateEvent {
                    version: i(r, "version")?,
                    action: s(r, "action")?,
                    actor: s(r, "actor")?,
                    reason: s(r, "reason")?,
                    at_ms: i(r, "at_ms")?,
                })
            })
            .collect()
    }

    /// Makes version `to`'s content the newest version again (byte for byte), recording who and
    /// why. Refused while the state is locked.
    pub async fn rollback_state(
        &self,
        workspace: &str,
        to: i64,
        actor: &str,
        reason: &str,
    ) -> Result<i64> {
        let (meta, data) = self.state_version(workspace, Some(to)).await?;
        let mut tx = self.begin().await?;
        if let Some(l) = sqlx::query("SELECT owner FROM state_locks WHERE workspace = $1")
            .bind(workspace)
            .fetch_optional(&mut *tx)
            .await?
        {
            return Err(Error::Conflict(format!(
                "workspace {workspace:?} is locked by {}: wait for it, or unlock it first",
                s(&l, "owner")?
            )));
        }
        let next = i(&sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM state_versions WHERE workspace = $1").bind(workspace).fetch_one(&mut *tx).await?, "v")?;
        let stored = self
            .keys
            .encrypt(workspace, &data)
            .map_err(Error::Internal)?;
        sqlx::query("INSERT INTO state_versions (workspace, version, serial, lineage, sha256, size, data, run_id, attempt, actor, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, '', 0, $8, $9)")
            .bind(workspace)
            .bind(next)
            .bind(meta.serial)
            .bind(&meta.lineage)
            .bind(&meta.sha256)
            .bind(meta.size)
            .bind(stored)
            .bind(actor)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let why = if reason.is_empty() {
            format!("rollback to version {to}")
        } else {
            format!("rollback to version {to}: {reason}")
        };
        self.state_event(&mut tx, workspace, next, "rollback", actor, &why)
            .await?;
        tx.audit(
            crate::audit::AuditEntry::new(crate::audit::AuditKind::StateRolledBack, actor)
                .workspace(workspace)
                .detail(serde_json::json!({
                    "to_version": to, "new_version": next, "serial": meta.serial,
                    "sha256": meta.sha256, "reason": reason,
                })),
        );
        self.commit(tx).await?;
        Ok(next)
    }

    /// The current state's content, if there is one (none yet, or deleted).
    pub async fn latest_state(&self, workspace: &str) -> Result<Option<Vec<u8>>> {
        match self.state_version(workspace, None).await {
            Ok((_, data)) => Ok(Some(data)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores a new state version if it passes the checks the `http` client never makes.
    /// Returns the version number, or the existing one for an identical retry.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_state(
        &self,
        workspace: &str,
        data: &[u8],
        serial: i64,
        lineage: &str,
        lock_id: Option<&str>,
        task: &Task,
        actor: &str,
    ) -> Result<i64> {
        let now = now_ms();
        let sha = sha256_hex(data);
        let mut tx = self.pool.begin().await?;
        let held = write_lock(&mut tx, workspace).await?;
        check_write_lock(workspace, held.as_ref(), lock_id, &task.id, task.epoch)?;
        let cur = current_version(&mut tx, workspace).await?;
        let next = match next_version(workspace, cur.as_ref(), serial, lineage, &sha)? {
            Written::Same(v) => return Ok(v), // identical retry
            Written::New(v) => v,
        };
        sqlx::query("INSERT INTO state_versions (workspace, version, serial, lineage, sha256, size, data, run_id, attempt, actor, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
            .bind(workspace)
            .bind(next)
            .bind(serial)
            .bind(lineage)
            .bind(&sha)
            .bind(data.len() as i64)
            .bind(self.keys.encrypt(workspace, data).map_err(Error::Internal)?)
            .bind(&task.run_id)
            .bind(task.attempt as i64)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        self.state_event(
            &mut tx,
            workspace,
            next,
            "write",
            actor,
            &format!(
                "serial {serial} by run {} attempt {}",
                task.run_id, task.attempt
            ),
        )
        .await?;
        if self.keep_versions > 0 {
            // Retention: the newest N versions stay; the latest is never removed.
            sqlx::query("DELETE FROM state_versions WHERE workspace = $1 AND version <= $2")
                .bind(workspace)
                .bind(next - self.keep_versions)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    /// OpenTofu's DELETE: the state is gone for readers (a tombstone version), its history is
    /// kept and can be rolled back to. Refused while someone else holds the lock.
    pub async fn delete_state(&self, workspace: &str, task: &Task, actor: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(l) = sqlx::query("SELECT task_id, owner FROM state_locks WHERE workspace = $1")
            .bind(workspace)
            .fetch_optional(&mut *tx)
            .await?
        {
            if s(&l, "task_id")? != task.id {
                return Err(Error::Conflict(format!(
                    "state of workspace {workspace:?} is locked by {}; it cannot be deleted now",
                    s(&l, "owner")?
                )));
            }
        }
        let cur = sqlx::query("SELECT version, size FROM state_versions WHERE workspace = $1 ORDER BY version DESC LIMIT 1").bind(workspace).fetch_optional(&mut *tx).await?;
        let next = match &cur {
            None => return Ok(()),
            Some(c) if i(c, "size")? < 0 => return Ok(()), // already deleted
            Some(c) => i(c, "version")? + 1,
        };
        sqlx::query("INSERT INTO state_versions (workspace, version, serial, lineage, sha256, size, data, run_id, attempt, actor, created_ms) VALUES ($1, $2, 0, '', '', -1, $3, $4, $5, $6, $7)")
            .bind(workspace)
            .bind(next)
            .bind(Vec::<u8>::new())
            .bind(&task.run_id)
            .bind(task.attempt as i64)
            .bind(actor)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        self.state_event(
            &mut tx,
            workspace,
            next,
            "delete",
            actor,
            &format!("DELETE by run {} attempt {}", task.run_id, task.attempt),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn state_version_count(&self, workspace: &str) -> Result<i64> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM state_versions WHERE workspace = $1")
            .bind(workspace)
            .fetch_one(&self.pool)
            .await?;
        i(&r, "n")
    }
}

/// The workspace's lock, as a write checks it.
async fn write_lock(c: &mut AnyConnection, workspace: &str) -> Result<Option<HeldLock>> {
    let row = sqlx::query("SELECT lock_id, task_id, epoch FROM state_locks WHERE workspace = $1")
        .bind(workspace)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|l| {
        Ok(HeldLock {
            lock_id: s(&l, "lock_id")?,
            task_id: s(&l, "task_id")?,
            epoch: i(&l, "epoch")?,
        })
    })
    .transpose()
}

/// The workspace's newest version, as a write checks it.
async fn current_version(c: &mut AnyConnection, workspace: &str) -> Result<Option<Current>> {
    let row = sqlx::query("SELECT version, serial, lineage, sha256, size FROM state_versions WHERE workspace = $1 ORDER BY version DESC LIMIT 1")
        .bind(workspace)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|c| {
        Ok(Current {
            version: i(&c, "version")?,
            serial: i(&c, "serial")?,
            lineage: s(&c, "lineage")?,
            sha256: s(&c, "sha256")?,
            deleted: i(&c, "size")? < 0,
        })
    })
    .transpose()
}
