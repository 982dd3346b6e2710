//! The `runs` table: a run as stored, its limits and variables (sealed with the state key), the workspace queue.

use super::*;

/// A run as stored.
#[derive(Clone, Debug)]
pub struct Run {
    pub id: String,
    pub workspace: String,
    pub pool: String,
    pub kind: RunKind,
    pub state: RunState,
    pub bundle_digest: String,
    pub variables: BTreeMap<String, String>,
    pub var_files: Vec<(String, Vec<u8>)>,
    pub auto_approve: bool,
    pub submitted_by: String,
    pub commit: String,
    pub pipeline_id: String,
    /// Where the module comes from (repository URL and path), as declared at submit.
    pub source: String,
    pub traceparent: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub has_changes: bool,
    pub add: i64,
    pub change: i64,
    pub destroy: i64,
    pub outputs: String,
    pub error: String,
    pub plan_digest: String,
    pub plan_json_digest: String,
    pub limits: Limits,
    /// The limit that ended the run's last task, if one did.
    pub limit_hit: String,
    /// The module's variable declarations that matter here (sensitive, expression-typed),
    /// plus variables the submitter marked sensitive.
    pub variable_decls: BTreeMap<String, Declared>,
    /// key=value tags given at submit.
    pub tags: BTreeMap<String, String>,
    /// A drift check's options (`lifecycle/drift.rs`).
    pub drift: DriftOptions,
}

/// How a drift check plans and what it does when it finds drift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriftOptions {
    /// `-refresh-only`: the state against the real infrastructure only.
    pub refresh_only: bool,
    /// Drift found: submit a remediation run (normal approval).
    pub remediate: bool,
}

impl Run {
    /// Names of the variables whose values are never shown or logged.
    pub fn sensitive(&self) -> std::collections::BTreeSet<String> {
        self.variable_decls
            .iter()
            .filter(|(_, d)| d.sensitive)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// What a user submits.
/// Resource limits a run asks for (0 = not set); agents cap each by their own.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub cpu_secs: u64,
    #[serde(default)]
    pub memory_bytes: u64,
    #[serde(default)]
    pub nproc: u64,
    #[serde(default)]
    pub fsize_bytes: u64,
    #[serde(default)]
    pub timeout_secs: u64,
}

pub struct NewRun {
    pub limits: Limits,
    pub variable_decls: BTreeMap<String, Declared>,
    pub workspace: String,
    pub pool: String,
    pub kind: RunKind,
    pub bundle_digest: String,
    pub variables: BTreeMap<String, String>,
    pub var_files: Vec<(String, Vec<u8>)>,
    pub auto_approve: bool,
    pub actor: String,
    pub commit: String,
    pub pipeline_id: String,
    /// Where the module comes from (repository URL and path), as declared at submit.
    pub source: String,
    pub traceparent: String,
    pub tags: BTreeMap<String, String>,
    /// A retried submit with this key returns the first one's run.
    pub idempotency: Option<Idempotency>,
    /// Environment variables for this run's tasks only (erased when it ends).
    pub env: crate::store::ConnectionValues,
    /// The environment's time to live, counted from the apply (0: none; `lifecycle/ttl.rs`).
    pub ttl_ms: i64,
}

/// A submit's idempotency key (scoped to its actor) and what the request was.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    /// SHA-256 of the request's canonical form: the same key with another request is refused.
    pub request_sha256: String,
}

/// Which runs `list_runs` returns ('' = any), newest first.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub workspace: String,
    pub state: String,
    /// Runs carrying every one of these tags.
    pub tags: BTreeMap<String, String>,
    /// Paging: only runs older than this one.
    pub before: String,
    pub limit: i64,
}

/// The associated data binding a run's sealed columns and log lines to it.
pub(crate) fn run_aad(run_id: &str) -> String {
    format!("run:{run_id}")
}

pub(crate) async fn get_run_c(keys: &crypt::Keys, c: &mut AnyConnection, id: &str) -> Result<Run> {
    let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no run with id {id:?}: list runs with `tofuflow run list`"
            ))
        })?;
    run_from_row(keys, &row)
}

/// The advisory lock key of a workspace's turn-taking on PostgreSQL (a stable 64-bit hash).
fn workspace_lock_key(workspace: &str) -> i64 {
    let d = Sha256::digest(format!("tofuflow-workspace:{workspace}").as_bytes());
    i64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// The run (that may apply) holding `workspace`, if any; with `count_pending`, waiting runs count
/// too (a new run queues behind them). On PostgreSQL the workspace's turn is locked first, until
/// the transaction ends: two coordinators submitting to (or starting a pending run of) one
/// workspace at once take turns, so only one of them can find it free.
pub(crate) async fn workspace_holder(
    c: &mut AnyConnection,
    workspace: &str,
    count_pending: bool,
) -> Result<Option<String>> {
    let states = crate::runs::HOLDS_WORKSPACE
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    if c.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(workspace_lock_key(workspace))
            .execute(&mut *c)
            .await?;
    }
    let pending = if count_pending { ", 'pending'" } else { "" };
    let sql = format!("SELECT id FROM runs WHERE workspace = $1 AND kind NOT IN ('plan_only', 'drift_check') AND state IN ({states}{pending}) ORDER BY created_ms LIMIT 1");
    let row = sqlx::query(&sql)
        .bind(workspace)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|r| s(&r, "id")).transpose()
}

impl Store {
    pub async fn get_run(&self, id: &str) -> Result<Run> {
        let mut c = self.pool.acquire().await?;
        get_run_c(&self.keys, &mut c, id).await
    }

    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<Run>> {
        let (sql, binds) = list_runs_sql(f);
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(f.limit).fetch_all(&self.pool).await?;
        rows.iter().map(|r| run_from_row(&self.keys, r)).collect()
    }

    /// Re-encrypts runs' variables, variable files and outputs not under the current key.
    pub(crate) async fn rotate_runs(&self) -> Result<u64> {
        let rows = sqlx::query("SELECT id, variables, var_files, outputs FROM runs")
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for r in rows {
            let id = s(&r, "id")?;
            let aad = run_aad(&id);
            for col in ["variables", "var_files", "outputs"] {
                let stored = s(&r, col)?;
                if !self.keys.text_needs_rotation(&stored) {
                    continue;
                }
                let plain = self
                    .keys
                    .open_text(&aad, &stored)
                    .map_err(Error::Internal)?;
                let fresh = self.keys.seal_text(&aad, &plain).map_err(Error::Internal)?;
                sqlx::query(&format!("UPDATE runs SET {col} = $1 WHERE id = $2"))
                    .bind(fresh)
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Counts for `/metrics`.
    pub async fn run_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM runs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((s(r, "state")?, i(r, "n")?)))
            .collect()
    }
}

/// Ends a run in `to` (failed, interrupted, expired) from `from`, keeping `why` as its error.
pub(crate) async fn end_run(
    tx: &mut Tx,
    run_id: &str,
    from: RunState,
    to: RunState,
    actor: &str,
    why: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
        .bind(why)
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    transition(tx, run_id, from, to, actor, why, now).await
}

/// The query of a run list, newest first, with only the filters asked for (so the database can
/// use an index: the workspace's, or `runs_by_age`); the cursor is the last run of the previous
/// page. The limit is bound last, after these values.
fn list_runs_sql(f: &RunFilter) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let next = |binds: &mut Vec<String>, v: &str| {
        binds.push(v.to_string());
        format!("${}", binds.len())
    };
    if !f.workspace.is_empty() {
        conds.push(format!("workspace = {}", next(&mut binds, &f.workspace)));
    }
    if !f.state.is_empty() {
        conds.push(format!("state = {}", next(&mut binds, &f.state)));
    }
    for (k, v) in &f.tags {
        let (k, v) = (next(&mut binds, k), next(&mut binds, v));
        conds.push(format!("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.tag_key = {k} AND t.tag_value = {v})"));
    }
    if !f.before.is_empty() {
        let b = next(&mut binds, &f.before);
        let at = format!("(SELECT created_ms FROM runs WHERE id = {b})");
        conds.push(format!(
            "created_ms <= {at} AND (created_ms < {at} OR id < {b})"
        ));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let limit = format!("${}", binds.len() + 1);
    let sql = format!("SELECT * FROM runs{filter} ORDER BY created_ms DESC, id DESC LIMIT {limit}");
    (sql, binds)
}
