//! The `workspace_drift` table (a workspace's last drift check and since when it drifted) and
//! the workspace summary `tofuflow workspace list` shows (last run, last apply, drift, TTL).

use super::*;

/// A workspace's drift status as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DriftStatus {
    pub workspace: String,
    pub last_check_run: String,
    pub last_checked_ms: i64,
    /// When a check first found the drift still present (0: not drifted).
    pub drifted_since_ms: i64,
    /// Why the last check failed ('' when it finished).
    pub last_check_error: String,
    /// The remediation run started for the current drift ('' when none).
    pub remediation_run: String,
}

fn drift_from_row(r: &sqlx::any::AnyRow) -> Result<DriftStatus> {
    Ok(DriftStatus {
        workspace: s(r, "workspace")?,
        last_check_run: s(r, "last_check_run")?,
        last_checked_ms: i(r, "last_checked_ms")?,
        drifted_since_ms: i(r, "drifted_since_ms")?,
        last_check_error: s(r, "last_check_error")?,
        remediation_run: s(r, "remediation_run")?,
    })
}

/// A workspace's drift status, if it was ever checked.
pub(crate) async fn drift_status(c: &mut AnyConnection, ws: &str) -> Result<Option<DriftStatus>> {
    let row = sqlx::query("SELECT * FROM workspace_drift WHERE workspace = $1")
        .bind(ws)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(drift_from_row).transpose()
}

/// Writes a workspace's drift status (inserted or replaced).
pub(crate) async fn put_drift_status(c: &mut AnyConnection, d: &DriftStatus) -> Result<()> {
    sqlx::query(
        "INSERT INTO workspace_drift (workspace, last_check_run, last_checked_ms, drifted_since_ms, last_check_error, remediation_run) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace) DO UPDATE SET \
         last_check_run = excluded.last_check_run, last_checked_ms = excluded.last_checked_ms, \
         drifted_since_ms = excluded.drifted_since_ms, last_check_error = excluded.last_check_error, \
         remediation_run = excluded.remediation_run",
    )
    .bind(&d.workspace)
    .bind(&d.last_check_run)
    .bind(d.last_checked_ms)
    .bind(d.drifted_since_ms)
    .bind(&d.last_check_error)
    .bind(&d.remediation_run)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// An apply brought the workspace to its configuration: it no longer counts as drifted.
pub(crate) async fn clear_drift(c: &mut AnyConnection, ws: &str) -> Result<()> {
    sqlx::query("UPDATE workspace_drift SET drifted_since_ms = 0, remediation_run = '' WHERE workspace = $1 AND drifted_since_ms <> 0")
        .bind(ws)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The newest run of `ws` that applied a configuration (what a drift check plans again).
pub(crate) async fn last_applied_run(c: &mut AnyConnection, ws: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT id FROM runs WHERE workspace = $1 AND kind = 'plan_and_apply' AND state = 'applied' ORDER BY updated_ms DESC, id LIMIT 1")
        .bind(ws)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|r| s(&r, "id")).transpose()
}

/// A drift check of `ws` that has not finished, if there is one.
pub(crate) async fn active_drift_check(c: &mut AnyConnection, ws: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT id FROM runs WHERE workspace = $1 AND kind = 'drift_check' AND state IN ('queued', 'planning') LIMIT 1")
        .bind(ws)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|r| s(&r, "id")).transpose()
}

/// Records a drift check's options on its run.
pub(crate) async fn set_drift_options(
    c: &mut AnyConnection,
    run_id: &str,
    o: DriftOptions,
) -> Result<()> {
    sqlx::query("UPDATE runs SET drift_refresh_only = $1, drift_remediate = $2 WHERE id = $3")
        .bind(o.refresh_only as i64)
        .bind(o.remediate as i64)
        .bind(run_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// One workspace's summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkspaceSummary {
    pub name: String,
    pub last_run: String,
    pub last_run_state: String,
    pub last_applied_run: String,
    pub last_applied_ms: i64,
    pub drift: Option<DriftStatus>,
    pub expires_ms: i64,
    /// The workspace's own TTL setting (0: none).
    pub ttl_ms: i64,
}

impl Store {
    /// Every workspace that has a run (or a TTL setting), by name: its newest run, its last
    /// apply, its drift status, its TTL and deadline.
    pub async fn workspaces(&self) -> Result<Vec<WorkspaceSummary>> {
        let mut out: BTreeMap<String, WorkspaceSummary> = BTreeMap::new();
        let newest = sqlx::query("SELECT workspace, id, state FROM runs r WHERE created_ms = (SELECT MAX(created_ms) FROM runs r2 WHERE r2.workspace = r.workspace) ORDER BY workspace, id")
            .fetch_all(&self.pool)
            .await?;
        for r in newest {
            let w = out.entry(s(&r, "workspace")?).or_default();
            w.last_run = s(&r, "id")?;
            w.last_run_state = s(&r, "state")?;
        }
        let applied = sqlx::query("SELECT workspace, id, updated_ms FROM runs WHERE state = 'applied' AND kind IN ('plan_and_apply', 'destroy') ORDER BY updated_ms, id")
            .fetch_all(&self.pool)
            .await?;
        for r in applied {
            let w = out.entry(s(&r, "workspace")?).or_default();
            (w.last_applied_run, w.last_applied_ms) = (s(&r, "id")?, i(&r, "updated_ms")?);
        }
        for r in sqlx::query("SELECT * FROM workspace_drift")
            .fetch_all(&self.pool)
            .await?
        {
            let d = drift_from_row(&r)?;
            let ws = d.workspace.clone();
            out.entry(ws).or_default().drift = Some(d);
        }
        for (ws, ttl_ms) in self.workspace_ttls().await? {
            out.entry(ws).or_default().ttl_ms = ttl_ms;
        }
        for e in self.environments().await? {
            if e.state == crate::runs::ttl::EnvState::Active {
                out.entry(e.workspace.clone()).or_default().expires_ms = e.expires_ms;
            }
        }
        Ok(out
            .into_iter()
            .map(|(name, w)| WorkspaceSummary { name, ..w })
            .collect())
    }
}
