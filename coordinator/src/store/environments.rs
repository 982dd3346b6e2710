//! The `environments` table: a workspace whose applied resources live only as long as its TTL
//! (`run submit --ttl`). The row keeps the deadline, who set it, the run that applied it and
//! where its teardown stands. What to destroy with (bundle, variables, variable files) is not
//! copied: it is the source run's, sealed at rest in `runs` like every run's.

use super::*;
use crate::runs::ttl::EnvState;

/// An environment as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    pub workspace: String,
    pub state: EnvState,
    /// The TTL as given (the deadline counts from the apply).
    pub ttl_ms: i64,
    pub expires_ms: i64,
    pub set_by: String,
    /// The run whose apply started the TTL (its bundle and variables are destroyed with).
    pub source_run: String,
    /// The workflow run it belongs to, if any.
    pub workflow_run: String,
    /// The current (or last) teardown's destroy run.
    pub destroy_run: String,
    /// Failed teardown attempts so far.
    pub attempts: i64,
    /// When the next teardown attempt may start (after a failure).
    pub next_attempt_ms: i64,
    pub last_error: String,
    pub reminder_sent: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn env_from_row(r: &sqlx::any::AnyRow) -> Result<Environment> {
    Ok(Environment {
        workspace: s(r, "workspace")?,
        state: s(r, "state")?.parse().map_err(|e: String| Error::Corrupt {
            table: "environments",
            column: "state",
            detail: e,
        })?,
        ttl_ms: i(r, "ttl_ms")?,
        expires_ms: i(r, "expires_ms")?,
        set_by: s(r, "set_by")?,
        source_run: s(r, "source_run")?,
        workflow_run: s(r, "workflow_run")?,
        destroy_run: s(r, "destroy_run")?,
        attempts: i(r, "attempts")?,
        next_attempt_ms: i(r, "next_attempt_ms")?,
        last_error: s(r, "last_error")?,
        reminder_sent: i(r, "reminder_sent")? != 0,
        created_ms: i(r, "created_ms")?,
        updated_ms: i(r, "updated_ms")?,
    })
}

/// The TTL a run was submitted with (0: none).
pub(crate) async fn run_ttl_ms(c: &mut AnyConnection, run_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT ttl_ms FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut *c)
        .await?;
    i(&row, "ttl_ms")
}

/// The TTL set on a workspace (`workspace ttl`), if any: every apply there restarts it.
pub(crate) async fn workspace_ttl_ms(c: &mut AnyConnection, ws: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT ttl_ms FROM workspace_ttls WHERE workspace = $1")
        .bind(ws)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|r| i(&r, "ttl_ms")).transpose()
}

impl Store {
    /// Sets (or with 0 clears) a workspace's TTL; every later apply there starts its deadline.
    pub async fn set_workspace_ttl(&self, ws: &str, ttl_ms: i64, actor: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM workspace_ttls WHERE workspace = $1")
            .bind(ws)
            .execute(&mut *tx)
            .await?;
        if ttl_ms > 0 {
            sqlx::query("INSERT INTO workspace_ttls (workspace, ttl_ms, set_by, set_ms) VALUES ($1, $2, $3, $4)")
                .bind(ws)
                .bind(ttl_ms)
                .bind(actor)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.audit(
            crate::audit::AuditEntry::new(crate::audit::AuditKind::WorkspaceTtlSet, actor)
                .workspace(ws)
                .detail(serde_json::json!({"ttl_ms": ttl_ms})),
        );
        self.commit(tx).await
    }

    /// Every workspace's TTL setting.
    pub async fn workspace_ttls(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT workspace, ttl_ms FROM workspace_ttls")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((s(r, "workspace")?, i(r, "ttl_ms")?)))
            .collect()
    }
}

/// Records a run's TTL (set at submit, counted from its apply).
pub(crate) async fn set_run_ttl(c: &mut AnyConnection, run_id: &str, ttl_ms: i64) -> Result<()> {
    sqlx::query("UPDATE runs SET ttl_ms = $1 WHERE id = $2")
        .bind(ttl_ms)
        .bind(run_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Starts (or restarts) a workspace's TTL: `active`, expiring `ttl_ms` after `now`, destroyed
/// with `run`'s bundle and variables; attempts and reminder reset.
pub(crate) async fn activate_environment(
    c: &mut AnyConnection,
    run: &Run,
    ttl_ms: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO environments (workspace, state, ttl_ms, expires_ms, set_by, source_run, workflow_run, destroy_run, attempts, next_attempt_ms, last_error, reminder_sent, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, '', '', 0, 0, '', 0, $7, $7) \
         ON CONFLICT (workspace) DO UPDATE SET state = excluded.state, ttl_ms = excluded.ttl_ms, expires_ms = excluded.expires_ms, set_by = excluded.set_by, source_run = excluded.source_run, destroy_run = '', attempts = 0, next_attempt_ms = 0, last_error = '', reminder_sent = 0, updated_ms = excluded.updated_ms",
    )
    .bind(&run.workspace)
    .bind(EnvState::Active.as_str())
    .bind(ttl_ms)
    .bind(now + ttl_ms)
    .bind(&run.submitted_by)
    .bind(&run.id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The name a workflow run's environment is listed under (not a workspace name: those have
/// no `:`).
pub fn workflow_env_name(workflow_run: &str) -> String {
    format!("workflow-run:{workflow_run}")
}

/// Starts a workflow run's TTL (from its start): `active`, expiring `ttl_ms` after `now`,
/// listed as [`workflow_env_name`].
pub(crate) async fn activate_workflow_environment(
    c: &mut AnyConnection,
    w: &WorkflowRun,
    ttl_ms: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO environments (workspace, state, ttl_ms, expires_ms, set_by, source_run, workflow_run, destroy_run, attempts, next_attempt_ms, last_error, reminder_sent, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, '', $6, '', 0, 0, '', 0, $7, $7)",
    )
    .bind(workflow_env_name(&w.id))
    .bind(EnvState::Active.as_str())
    .bind(ttl_ms)
    .bind(now + ttl_ms)
    .bind(&w.actor)
    .bind(&w.id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The environment whose current teardown is `destroy_run` (a run or a workflow run), if any.
pub(crate) async fn environment_torn_down_by(
    c: &mut AnyConnection,
    destroy_run: &str,
) -> Result<Option<Environment>> {
    let row = sqlx::query("SELECT * FROM environments WHERE destroy_run = $1 AND state = $2")
        .bind(destroy_run)
        .bind(EnvState::TearingDown.as_str())
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(env_from_row).transpose()
}

/// A workspace's environment, if it has one.
pub(crate) async fn environment_c(
    c: &mut AnyConnection,
    workspace: &str,
) -> Result<Option<Environment>> {
    let row = sqlx::query("SELECT * FROM environments WHERE workspace = $1")
        .bind(workspace)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(env_from_row).transpose()
}

/// What changes about an environment: its state, teardown bookkeeping and deadline.
#[derive(Clone, Debug)]
pub(crate) struct EnvUpdate {
    pub state: EnvState,
    pub destroy_run: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: String,
    pub expires_ms: i64,
    pub reminder_sent: bool,
}

impl EnvUpdate {
    /// The update that leaves `e` as it is (to change a field or two).
    pub fn of(e: &Environment) -> EnvUpdate {
        EnvUpdate {
            state: e.state,
            destroy_run: e.destroy_run.clone(),
            attempts: e.attempts,
            next_attempt_ms: e.next_attempt_ms,
            last_error: e.last_error.clone(),
            expires_ms: e.expires_ms,
            reminder_sent: e.reminder_sent,
        }
    }
}

/// Writes `u` over `e`, only if `e` was not changed meanwhile (its `updated_ms` and state);
/// false when it was (another transaction got there first).
pub(crate) async fn update_environment(
    c: &mut AnyConnection,
    e: &Environment,
    u: &EnvUpdate,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query("UPDATE environments SET state = $1, destroy_run = $2, attempts = $3, next_attempt_ms = $4, last_error = $5, expires_ms = $6, reminder_sent = $7, updated_ms = $8 WHERE workspace = $9 AND state = $10 AND updated_ms = $11 AND destroy_run = $12")
        .bind(u.state.as_str())
        .bind(&u.destroy_run)
        .bind(u.attempts)
        .bind(u.next_attempt_ms)
        .bind(&u.last_error)
        .bind(u.expires_ms)
        .bind(u.reminder_sent as i64)
        .bind(now.max(e.updated_ms + 1))
        .bind(&e.workspace)
        .bind(e.state.as_str())
        .bind(e.updated_ms)
        .bind(&e.destroy_run)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() == 1)
}

impl Store {
    /// Every environment, soonest deadline first.
    pub async fn environments(&self) -> Result<Vec<Environment>> {
        let rows = sqlx::query("SELECT * FROM environments ORDER BY expires_ms, workspace")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// A workspace's environment.
    pub async fn environment(&self, workspace: &str) -> Result<Environment> {
        let mut c = self.pool.acquire().await?;
        environment_c(&mut c, workspace).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "workspace {workspace:?} has no TTL: give one with `tofuflow run submit --ttl 4h`; list them with `tofuflow env list`"
            ))
        })
    }

    /// Environments in `state`.
    pub(crate) async fn environments_in(&self, state: EnvState) -> Result<Vec<Environment>> {
        let rows = sqlx::query("SELECT * FROM environments WHERE state = $1 ORDER BY expires_ms")
            .bind(state.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Counts by state for `/metrics` (every state, zeros included).
    pub async fn environment_counts(&self) -> Result<Vec<(EnvState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM environments GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut counts: Vec<(EnvState, i64)> = EnvState::ALL.iter().map(|s| (*s, 0)).collect();
        for r in rows {
            let st = s(&r, "state")?;
            if let Some(c) = counts.iter_mut().find(|(s, _)| s.as_str() == st) {
                c.1 = i(&r, "n")?;
            }
        }
        Ok(counts)
    }
}
