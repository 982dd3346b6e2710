//! The `workflow_runs` and `workflow_targets` tables: a workflow run (its file, the bundle of
//! every module it uses, how it is approved) and one row per target with its state and runs.

use super::*;
use crate::runs::variables::Declared;
use crate::workflows::{Target, TargetState, WorkflowState};

/// A workflow run as stored.
#[derive(Clone, Debug)]
pub struct WorkflowRun {
    pub id: String,
    pub file_name: String,
    /// The workflow file's text, as submitted.
    pub definition: String,
    /// Each `source` of the file and the bundle uploaded for it.
    pub bundles: BTreeMap<String, String>,
    /// Each source's variable declarations (sensitive or expression-typed only).
    pub decls: BTreeMap<String, BTreeMap<String, Declared>>,
    pub state: WorkflowState,
    pub destroy: bool,
    pub approval: tofuflow_proto::workflow::Approval,
    /// The pool of stacks that name none.
    pub pool: String,
    pub actor: String,
    /// Tags every run of the workflow run carries.
    pub tags: BTreeMap<String, String>,
    pub reason: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn workflow_from_row(r: &sqlx::any::AnyRow) -> Result<WorkflowRun> {
    let state = s(r, "state")?;
    let approval = s(r, "approval")?;
    Ok(WorkflowRun {
        id: s(r, "id")?,
        file_name: s(r, "file_name")?,
        definition: s(r, "definition")?,
        bundles: json_col(&s(r, "bundles")?, "workflow_runs", "bundles")?,
        decls: json_col(&s(r, "decls")?, "workflow_runs", "decls")?,
        state: WorkflowState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("workflow_runs.state holds {state:?}")))?,
        destroy: i(r, "destroy")? != 0,
        approval: tofuflow_proto::workflow::Approval::parse(&approval)
            .ok_or_else(|| Error::Internal(format!("workflow_runs.approval holds {approval:?}")))?,
        pool: s(r, "pool")?,
        actor: s(r, "actor")?,
        tags: json_col(&s(r, "tags")?, "workflow_runs", "tags")?,
        reason: s(r, "reason")?,
        created_ms: i(r, "created_ms")?,
        updated_ms: i(r, "updated_ms")?,
    })
}

fn target_from_row(r: &sqlx::any::AnyRow) -> Result<Target> {
    let state = s(r, "state")?;
    let each_key = s(r, "each_key")?;
    let each_value: serde_json::Value =
        json_col(&s(r, "each_value")?, "workflow_targets", "each_value")?;
    Ok(Target {
        key: s(r, "target_key")?,
        stack: s(r, "stack")?,
        each: (!each_key.is_empty()).then_some((each_key, each_value)),
        workspace: s(r, "workspace")?,
        pool: s(r, "pool")?,
        deps: json_col(&s(r, "deps")?, "workflow_targets", "deps")?,
        tags: json_col(&s(r, "tags")?, "workflow_targets", "tags")?,
        state: TargetState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("workflow_targets.state holds {state:?}")))?,
        run_id: s(r, "run_id")?,
        runs: json_col(&s(r, "runs")?, "workflow_targets", "runs")?,
        reason: s(r, "reason")?,
        candidate: i(r, "candidate")? as usize,
        cleaning: i(r, "cleaning")? != 0,
    })
}

/// Writes a new workflow run and its targets (all waiting).
pub(crate) async fn insert_workflow(
    tx: &mut Tx,
    w: &WorkflowRun,
    targets: &[Target],
) -> Result<()> {
    sqlx::query("INSERT INTO workflow_runs (id, file_name, definition, bundles, decls, state, destroy, approval, pool, actor, tags, reason, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
        .bind(&w.id)
        .bind(&w.file_name)
        .bind(&w.definition)
        .bind(serde_json::to_string(&w.bundles).map_err(json_err)?)
        .bind(serde_json::to_string(&w.decls).map_err(json_err)?)
        .bind(w.state.as_str())
        .bind(w.destroy as i64)
        .bind(w.approval.as_str())
        .bind(&w.pool)
        .bind(&w.actor)
        .bind(serde_json::to_string(&w.tags).map_err(json_err)?)
        .bind(&w.reason)
        .bind(w.created_ms)
        .bind(w.updated_ms)
        .execute(&mut **tx)
        .await?;
    for (k, v) in &w.tags {
        sqlx::query("INSERT INTO workflow_run_tags (workflow_run_id, tag_key, tag_value) VALUES ($1, $2, $3)")
            .bind(&w.id)
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await?;
    }
    for (n, t) in targets.iter().enumerate() {
        let (each_key, each_value) = t.each.clone().unwrap_or_default();
        sqlx::query("INSERT INTO workflow_targets (workflow_run_id, target_key, position, stack, each_key, each_value, workspace, pool, deps, tags, state, run_id, runs, reason, candidate, cleaning, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', '[]', '', 0, 0, $12)")
            .bind(&w.id)
            .bind(&t.key)
            .bind(n as i64)
            .bind(&t.stack)
            .bind(each_key)
            .bind(each_value.to_string())
            .bind(&t.workspace)
            .bind(&t.pool)
            .bind(serde_json::to_string(&t.deps).map_err(json_err)?)
            .bind(serde_json::to_string(&t.tags).map_err(json_err)?)
            .bind(t.state.as_str())
            .bind(w.created_ms)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A workflow run, locked for the rest of the transaction (its targets change together: two
/// upstreams ending at once must not both miss that the other ended).
pub(crate) async fn lock_workflow(c: &mut AnyConnection, id: &str) -> Result<WorkflowRun> {
    sqlx::query("UPDATE workflow_runs SET updated_ms = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&mut *c)
        .await?;
    workflow_c(c, id).await
}

pub(crate) async fn workflow_c(c: &mut AnyConnection, id: &str) -> Result<WorkflowRun> {
    let row = sqlx::query("SELECT * FROM workflow_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no workflow run {id}: list them with `tofuflow workflow list`"
            ))
        })?;
    workflow_from_row(&row)
}

/// A workflow run's targets, in file order.
pub(crate) async fn targets_c(c: &mut AnyConnection, id: &str) -> Result<Vec<Target>> {
    let rows =
        sqlx::query("SELECT * FROM workflow_targets WHERE workflow_run_id = $1 ORDER BY position")
            .bind(id)
            .fetch_all(&mut *c)
            .await?;
    rows.iter().map(target_from_row).collect()
}

/// Some targets of a workflow run (those of `keys` that exist), in file order.
pub(crate) async fn targets_named_c(
    c: &mut AnyConnection,
    id: &str,
    keys: &[&str],
) -> Result<Vec<Target>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..keys.len()).map(|n| format!("${}", n + 2)).collect();
    let sql = format!(
        "SELECT * FROM workflow_targets WHERE workflow_run_id = $1 AND target_key IN ({}) ORDER BY position",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(id);
    for k in keys {
        q = q.bind(*k);
    }
    q.fetch_all(&mut *c)
        .await?
        .iter()
        .map(target_from_row)
        .collect()
}

/// How many of a stack's targets are in `state` (read through the index on the state: the
/// work is the answer's size, not the stack's).
pub(crate) async fn count_in_state_c(
    c: &mut AnyConnection,
    id: &str,
    stack: &str,
    state: TargetState,
) -> Result<usize> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM workflow_targets WHERE workflow_run_id = $1 AND stack = $2 AND state = $3")
        .bind(id)
        .bind(stack)
        .bind(state.as_str())
        .fetch_one(&mut *c)
        .await?;
    Ok(i(&row, "n")? as usize)
}

/// The position of a stack's first target in `state`, if any (one index seek).
pub(crate) async fn first_in_state_c(
    c: &mut AnyConnection,
    id: &str,
    stack: &str,
    state: TargetState,
) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT position FROM workflow_targets WHERE workflow_run_id = $1 AND stack = $2 AND state = $3 ORDER BY position LIMIT 1")
        .bind(id)
        .bind(stack)
        .bind(state.as_str())
        .fetch_optional(&mut *c)
        .await?;
    row.map(|r| i(&r, "position")).transpose()
}

/// The keys of up to `limit` waiting targets of a stack at or before `last` (a position), in
/// order.
pub(crate) async fn waiting_upto_c(
    c: &mut AnyConnection,
    id: &str,
    stack: &str,
    last: i64,
    limit: usize,
) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT target_key FROM workflow_targets WHERE workflow_run_id = $1 AND stack = $2 AND state = 'waiting' AND position <= $3 ORDER BY position LIMIT $4")
        .bind(id)
        .bind(stack)
        .bind(last)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(|r| s(r, "target_key")).collect()
}

/// Whether any target of a workflow run is in `state` (one index seek).
pub(crate) async fn any_in_state_c(
    c: &mut AnyConnection,
    id: &str,
    state: TargetState,
) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS x FROM workflow_targets WHERE workflow_run_id = $1 AND state = $2 LIMIT 1",
    )
    .bind(id)
    .bind(state.as_str())
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.is_some())
}

/// How many targets of a workflow run are in each state.
pub(crate) async fn state_counts_c(
    c: &mut AnyConnection,
    id: &str,
) -> Result<BTreeMap<String, usize>> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM workflow_targets WHERE workflow_run_id = $1 GROUP BY state")
        .bind(id)
        .fetch_all(&mut *c)
        .await?;
    rows.iter()
        .map(|r| Ok((s(r, "state")?, i(r, "n")? as usize)))
        .collect()
}

/// The workflow run and target a run belongs to, if any.
pub(crate) async fn target_of_run(
    c: &mut AnyConnection,
    run_id: &str,
) -> Result<Option<(String, String)>> {
    let row =
        sqlx::query("SELECT workflow_run_id, target_key FROM workflow_targets WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&mut *c)
            .await?;
    row.map(|r| Ok((s(&r, "workflow_run_id")?, s(&r, "target_key")?)))
        .transpose()
}

/// Moves a target to `state` (with a new current run when `run_id` is given).
pub(crate) async fn set_target(
    c: &mut AnyConnection,
    wf: &str,
    t: &Target,
    state: TargetState,
    run_id: Option<&str>,
    reason: &str,
) -> Result<()> {
    let mut runs = t.runs.clone();
    if let Some(r) = run_id {
        runs.push(r.to_string());
    }
    sqlx::query("UPDATE workflow_targets SET state = $1, run_id = $2, runs = $3, reason = $4, candidate = $5, cleaning = $6, updated_ms = $7 WHERE workflow_run_id = $8 AND target_key = $9")
        .bind(state.as_str())
        .bind(run_id.unwrap_or(&t.run_id))
        .bind(serde_json::to_string(&runs).map_err(json_err)?)
        .bind(reason)
        .bind(t.candidate as i64)
        .bind(t.cleaning as i64)
        .bind(now_ms())
        .bind(wf)
        .bind(&t.key)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(crate) async fn set_workflow_state(
    c: &mut AnyConnection,
    id: &str,
    state: WorkflowState,
    reason: &str,
) -> Result<()> {
    sqlx::query("UPDATE workflow_runs SET state = $1, reason = $2, updated_ms = $3 WHERE id = $4")
        .bind(state.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The current state's content of a workspace, read in `c` (None: no state, or deleted).
pub(crate) async fn current_state_c(
    c: &mut AnyConnection,
    keys: &crypt::Keys,
    workspace: &str,
) -> Result<Option<Vec<u8>>> {
    let row = sqlx::query(
        "SELECT size, data FROM state_versions WHERE workspace = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(workspace)
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(r) if i(&r, "size")? >= 0 => Ok(Some(
            keys.decrypt(workspace, &r.try_get::<Vec<u8>, _>("data")?)
                .map_err(Error::Internal)?,
        )),
        _ => Ok(None),
    }
}

impl Store {
    /// A workflow run and its targets.
    pub async fn workflow_run(&self, id: &str) -> Result<(WorkflowRun, Vec<Target>)> {
        let (w, t, _) = self.workflow_view(id).await?;
        Ok((w, t))
    }

    /// A workflow run, its targets and its rollouts as of one moment: read in one read-only
    /// snapshot, so a rollout's state never disagrees with its targets' (an event that ends a
    /// target and halts its rollout commits both at once).
    pub async fn workflow_view(
        &self,
        id: &str,
    ) -> Result<(WorkflowRun, Vec<Target>, Vec<Progress>)> {
        let mut tx = self.pool.begin().await?;
        if self.is_postgres() {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let w = workflow_c(&mut tx, id).await?;
        let t = targets_c(&mut tx, id).await?;
        let p = rollouts_c(&mut tx, id).await?;
        tx.rollback().await?;
        Ok((w, t, p))
    }

    /// Workflow runs, newest first (`before`: only those older than that one).
    pub async fn list_workflow_runs(
        &self,
        before: &str,
        limit: i64,
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<WorkflowRun>> {
        let mut sql = "SELECT * FROM workflow_runs w WHERE 1 = 1".to_string();
        for n in 0..tags.len() {
            let (k, v) = (2 + 2 * n, 3 + 2 * n);
            sql.push_str(&format!(" AND EXISTS (SELECT 1 FROM workflow_run_tags t WHERE t.workflow_run_id = w.id AND t.tag_key = ${k} AND t.tag_value = ${v})"));
        }
        if !before.is_empty() {
            let n = 2 + 2 * tags.len();
            sql.push_str(&format!(" AND EXISTS (SELECT 1 FROM workflow_runs b WHERE b.id = ${n} AND (w.created_ms < b.created_ms OR (w.created_ms = b.created_ms AND w.id < b.id)))"));
        }
        sql.push_str(" ORDER BY w.created_ms DESC, w.id DESC LIMIT $1");
        let mut q = sqlx::query(&sql).bind(limit);
        for (k, v) in tags {
            q = q.bind(k).bind(v);
        }
        if !before.is_empty() {
            q = q.bind(before);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(workflow_from_row).collect()
    }
}

use crate::workflows::rollout::{Progress, RolloutState};

fn progress_from_row(r: &sqlx::any::AnyRow) -> Result<Progress> {
    let state = s(r, "state")?;
    Ok(Progress {
        stack: s(r, "stack")?,
        state: RolloutState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("workflow_rollouts.state holds {state:?}")))?,
        wave: i(r, "wave")? as usize,
        forgiven: i(r, "forgiven")? as usize,
        resume_after_ms: i(r, "resume_after_ms")?,
        reason: s(r, "reason")?,
    })
}

/// A workflow run's rollouts (one per `for_each` stack with a `rollout` block).
pub(crate) async fn rollouts_c(c: &mut AnyConnection, id: &str) -> Result<Vec<Progress>> {
    let rows =
        sqlx::query("SELECT * FROM workflow_rollouts WHERE workflow_run_id = $1 ORDER BY stack")
            .bind(id)
            .fetch_all(&mut *c)
            .await?;
    rows.iter().map(progress_from_row).collect()
}

/// Writes a rollout's progress (new or changed).
pub(crate) async fn save_rollout(c: &mut AnyConnection, id: &str, p: &Progress) -> Result<()> {
    let changed = sqlx::query("UPDATE workflow_rollouts SET state = $1, wave = $2, forgiven = $3, resume_after_ms = $4, reason = $5, updated_ms = $6 WHERE workflow_run_id = $7 AND stack = $8")
        .bind(p.state.as_str())
        .bind(p.wave as i64)
        .bind(p.forgiven as i64)
        .bind(p.resume_after_ms)
        .bind(&p.reason)
        .bind(now_ms())
        .bind(id)
        .bind(&p.stack)
        .execute(&mut *c)
        .await?
        .rows_affected();
    if changed == 0 {
        sqlx::query("INSERT INTO workflow_rollouts (workflow_run_id, stack, state, wave, forgiven, resume_after_ms, reason, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(id)
            .bind(&p.stack)
            .bind(p.state.as_str())
            .bind(p.wave as i64)
            .bind(p.forgiven as i64)
            .bind(p.resume_after_ms)
            .bind(&p.reason)
            .bind(now_ms())
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Workflow runs with a rollout whose timed pause is over.
    pub(crate) async fn rollouts_due(&self, now: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT workflow_run_id FROM workflow_rollouts WHERE resume_after_ms > 0 AND resume_after_ms <= $1 AND state = 'running'")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| s(r, "workflow_run_id")).collect()
    }
}

impl Store {
    /// The newest succeeded, applying workflow run older than `id` with its file name and the
    /// same workspaces: what a rollback of `id` goes back to.
    pub async fn rollback_target(&self, id: &str) -> Result<WorkflowRun> {
        let (w, targets) = self.workflow_run(id).await?;
        let mine: std::collections::BTreeSet<&str> =
            targets.iter().map(|t| t.workspace.as_str()).collect();
        let rows = sqlx::query("SELECT * FROM workflow_runs WHERE file_name = $1 AND state = 'succeeded' AND destroy = 0 AND created_ms < $2 ORDER BY created_ms DESC LIMIT 50")
            .bind(&w.file_name)
            .bind(w.created_ms)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            let old = workflow_from_row(r)?;
            let (_, theirs) = self.workflow_run(&old.id).await?;
            if theirs
                .iter()
                .map(|t| t.workspace.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                == mine
            {
                return Ok(old);
            }
        }
        Err(Error::NotFound(format!(
            "no succeeded workflow run of {} with the same workspaces before {id}: name one with --to",
            w.file_name
        )))
    }
}

/// The last `limit` log lines of a run, newest first, read in `c` (to classify its failure).
pub(crate) async fn last_log_lines_c(
    c: &mut AnyConnection,
    keys: &crypt::Keys,
    run_id: &str,
    limit: i64,
) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT line FROM events WHERE run_id = $1 ORDER BY phase_order DESC, attempt DESC, seq DESC LIMIT $2")
        .bind(run_id)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
    let aad = run_aad(run_id);
    rows.iter()
        .map(|r| {
            keys.open_text(&aad, &s(r, "line")?)
                .map_err(Error::Internal)
        })
        .collect()
}
