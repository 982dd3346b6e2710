//! The store: runs, tasks, leases, outbox, transitions, events, blobs, agents and state versions,
//! on SQLite (one file, WAL, the default) or PostgreSQL (by URL), through one set of SQL.
//!
//! Every multi-row change is one transaction, and every state change is a compare-and-set
//! (`UPDATE ... WHERE state = <expected>`), so two coordinators on one PostgreSQL, or a late
//! report racing the lease reaper, can never both win.

pub mod crypt;
pub mod schema;
mod sqlite_file;

use crate::error::{Error, Result};
use crate::runs::variables::Declared;
use crate::runs::{self, Phase, RunKind, RunState};
use base64::Engine;
use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};
use tofuflow_proto::v1;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// What changed about a run (for watchers in this process).
#[derive(Clone, Debug)]
pub struct RunChange {
    pub run_id: String,
    /// The run itself (state, transitions); false when only log lines were added.
    pub state: bool,
}

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

#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    pub run_id: String,
    pub phase: Phase,
    pub attempt: u32,
    pub state: String,
    pub pool: String,
    pub agent_id: String,
    pub epoch: i64,
    pub lease_expires_ms: i64,
    pub cancel_requested: bool,
    /// SHA-256 of the live lease's secret ('' when no lease was granted).
    pub lease_sha256: String,
}

/// What an agent presents to act on a task: the lease it holds, and who it is (authenticated).
#[derive(Clone, Copy, Debug)]
pub struct LeaseProof<'a> {
    pub task_id: &'a str,
    pub attempt: u32,
    pub epoch: i64,
    pub agent_id: &'a str,
    pub token: &'a str,
}

impl LeaseProof<'_> {
    /// Whether this proof names `t`'s current lease: same attempt and epoch, the agent that
    /// claimed it, and the lease's secret. A stale lease is a conflict (the agent was fenced);
    /// someone else's lease is a permission error.
    pub fn check(&self, t: &Task) -> Result<()> {
        if t.attempt != self.attempt || t.epoch != self.epoch {
            return Err(Error::Conflict(format!(
                "stale lease: task {} attempt {} epoch {} is not the live lease (current attempt {}, epoch {}, state {})",
                self.task_id, self.attempt, self.epoch, t.attempt, t.epoch, t.state
            )));
        }
        if t.agent_id != self.agent_id
            || t.lease_sha256.is_empty()
            || t.lease_sha256 != sha256_hex(self.token.as_bytes())
        {
            return Err(Error::PermissionDenied(format!(
                "task {} attempt {} is leased to another agent: this agent does not hold its lease",
                self.task_id, self.attempt
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub actor: String,
    pub reason: String,
    pub at_ms: i64,
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
    pub traceparent: String,
}

pub struct OutboxRow {
    pub id: i64,
    pub task_id: String,
    pub attempt: u32,
    pub pool: String,
    pub payload: Vec<u8>,
    pub traceparent: String,
}

pub struct ClaimGrant {
    pub epoch: i64,
    pub task: Task,
    pub run: Run,
    /// The state-backend password for this lease (only its hash is stored).
    pub token: String,
    /// The lease's own secret, for the agent only (only its hash is stored).
    pub lease_token: String,
}

pub struct Agent {
    pub id: String,
    pub name: String,
    pub pools: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub capacity: i64,
    pub state: String,
    pub last_seen_ms: i64,
    pub running: i64,
}

pub struct LogRow {
    pub phase_order: i64,
    pub attempt: i64,
    pub seq: i64,
    pub unix_ms: i64,
    pub stream: i64,
    pub line: String,
}

pub struct StateLock {
    pub lock_id: String,
    pub info: String,
    pub task_id: String,
    pub epoch: i64,
}

/// Knobs the store's decisions depend on.
#[derive(Clone, Debug)]
pub struct Policy {
    pub lease_ttl_ms: i64,
    pub max_plan_attempts: u32,
    pub queue_timeout_ms: i64,
    pub approval_timeout_ms: i64,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    changes: tokio::sync::broadcast::Sender<RunChange>,
    keys: std::sync::Arc<crypt::Keys>,
    /// State versions kept per workspace (the newest N; 0 keeps all).
    keep_versions: i64,
}

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

fn s(row: &sqlx::any::AnyRow, c: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(c)?)
}
fn i(row: &sqlx::any::AnyRow, c: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(c)?)
}

/// A JSON column, decoded; a damaged one is an error naming table and column (never defaults:
/// a run must not plan with default variables because its row was damaged).
fn json_col<T: serde::de::DeserializeOwned>(text: &str, table: &str, col: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("{table}.{col} holds damaged JSON: {e}")))
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Internal(format!("cannot encode JSON: {e}"))
}

/// The associated data binding a run's sealed columns and log lines to it.
fn run_aad(run_id: &str) -> String {
    format!("run:{run_id}")
}

fn run_from_row(keys: &crypt::Keys, r: &sqlx::any::AnyRow) -> Result<Run> {
    let id = s(r, "id")?;
    let aad = run_aad(&id);
    let open = |col: &str| -> Result<String> {
        keys.open_text(&aad, &s(r, col)?).map_err(Error::Internal)
    };
    let vf: Vec<(String, String)> = json_col(&open("var_files")?, "runs", "var_files")?;
    let var_files = vf
        .into_iter()
        .map(|(n, c)| {
            base64::engine::general_purpose::STANDARD
                .decode(c)
                .map(|c| (n, c))
                .map_err(|e| Error::Internal(format!("runs.var_files holds damaged base64: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Run {
        variables: json_col(&open("variables")?, "runs", "variables")?,
        var_files,
        outputs: open("outputs")?,
        variable_decls: json_col(&s(r, "sensitive_variables")?, "runs", "sensitive_variables")?,
        id,
        workspace: s(r, "workspace")?,
        pool: s(r, "pool")?,
        kind: RunKind::from_str(&s(r, "kind")?).map_err(Error::Internal)?,
        state: RunState::from_str(&s(r, "state")?).map_err(Error::Internal)?,
        bundle_digest: s(r, "bundle_digest")?,
        auto_approve: i(r, "auto_approve")? != 0,
        submitted_by: s(r, "submitted_by")?,
        commit: s(r, "commit_sha")?,
        pipeline_id: s(r, "pipeline_id")?,
        traceparent: s(r, "traceparent")?,
        created_ms: i(r, "created_ms")?,
        updated_ms: i(r, "updated_ms")?,
        has_changes: i(r, "has_changes")? != 0,
        add: i(r, "add_count")?,
        change: i(r, "change_count")?,
        destroy: i(r, "destroy_count")?,
        error: s(r, "error")?,
        plan_digest: s(r, "plan_digest")?,
        plan_json_digest: s(r, "plan_json_digest")?,
        limits: json_col(&s(r, "limits")?, "runs", "limits")?,
        limit_hit: s(r, "limit_hit")?,
    })
}

fn version_meta(r: &sqlx::any::AnyRow) -> Result<StateVersionMeta> {
    Ok(StateVersionMeta {
        version: i(r, "version")?,
        serial: i(r, "serial")?,
        lineage: s(r, "lineage")?,
        sha256: s(r, "sha256")?,
        size: i(r, "size")?,
        run_id: s(r, "run_id")?,
        attempt: i(r, "attempt")?,
        actor: s(r, "actor")?,
        created_ms: i(r, "created_ms")?,
    })
}

fn task_from_row(r: &sqlx::any::AnyRow) -> Result<Task> {
    Ok(Task {
        id: s(r, "id")?,
        run_id: s(r, "run_id")?,
        phase: Phase::from_str(&s(r, "phase")?).map_err(Error::Internal)?,
        attempt: i(r, "attempt")? as u32,
        state: s(r, "state")?,
        pool: s(r, "pool")?,
        agent_id: s(r, "agent_id")?,
        epoch: i(r, "epoch")?,
        lease_expires_ms: i(r, "lease_expires_ms")?,
        cancel_requested: i(r, "cancel_requested")? != 0,
        lease_sha256: s(r, "lease_sha256")?,
    })
}

async fn get_run_c(keys: &crypt::Keys, c: &mut AnyConnection, id: &str) -> Result<Run> {
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

async fn get_task_c(c: &mut AnyConnection, id: &str) -> Result<Option<Task>> {
    let row = sqlx::query("SELECT * FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

/// Moves a run from `from` to `to`, recording who and why. An illegal transition is a bug.
async fn transition(
    c: &mut AnyConnection,
    run_id: &str,
    from: RunState,
    to: RunState,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    if !runs::allowed(from, to) {
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
async fn note(
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

/// Queues a task attempt for publishing (the outbox publisher sends it after commit).
#[allow(clippy::too_many_arguments)]
async fn enqueue(
    c: &mut AnyConnection,
    run: &Run,
    task_id: &str,
    attempt: u32,
    phase: Phase,
    now: i64,
    deadline_ms: i64,
) -> Result<()> {
    let env = v1::TaskEnvelope {
        protocol_version: tofuflow_proto::PROTOCOL_VERSION,
        task_id: task_id.to_string(),
        attempt,
        run_id: run.id.clone(),
        phase: match phase {
            Phase::Plan => v1::Phase::Plan,
            Phase::Apply => v1::Phase::Apply,
        } as i32,
        pool: run.pool.clone(),
        workspace: run.workspace.clone(),
        bundle_digest: run.bundle_digest.clone(),
        deadline_unix_ms: deadline_ms,
    };
    sqlx::query(
        "INSERT INTO outbox (task_id, attempt, pool, payload, traceparent, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(task_id)
    .bind(attempt as i64)
    .bind(&run.pool)
    .bind(env.encode_to_vec())
    .bind(&run.traceparent)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn new_task(
    c: &mut AnyConnection,
    run: &Run,
    phase: Phase,
    now: i64,
    policy: &Policy,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO tasks (id, run_id, phase, attempt, state, pool, created_ms) VALUES ($1, $2, $3, 1, 'queued', $4, $5)",
    )
    .bind(&id)
    .bind(&run.id)
    .bind(phase.as_str())
    .bind(&run.pool)
    .bind(now)
    .execute(&mut *c)
    .await?;
    enqueue(c, run, &id, 1, phase, now, now + policy.queue_timeout_ms).await?;
    sqlx::query("UPDATE runs SET deadline_ms = $1 WHERE id = $2")
        .bind(now + policy.queue_timeout_ms)
        .bind(&run.id)
        .execute(&mut *c)
        .await?;
    Ok(id)
}

/// The run (that may apply) holding `workspace`, if any; with `count_pending`, waiting runs count
/// too (a new run queues behind them).
async fn workspace_holder(
    c: &mut AnyConnection,
    workspace: &str,
    count_pending: bool,
) -> Result<Option<String>> {
    let states = runs::HOLDS_WORKSPACE
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let pending = if count_pending { ", 'pending'" } else { "" };
    let sql = format!("SELECT id FROM runs WHERE workspace = $1 AND kind <> 'plan_only' AND state IN ({states}{pending}) ORDER BY created_ms LIMIT 1");
    let row = sqlx::query(&sql)
        .bind(workspace)
        .fetch_optional(&mut *c)
        .await?;
    row.map(|r| s(&r, "id")).transpose()
}

/// A fresh unguessable secret (256 bits from the OS's generator, hex).
pub fn secret() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random generator");
    hex::encode(b)
}

/// Whether `agent_id` is registered for `pool`.
async fn agent_serves(c: &mut AnyConnection, agent_id: &str, pool: &str) -> Result<bool> {
    let Some(row) = sqlx::query("SELECT pools FROM agents WHERE id = $1")
        .bind(agent_id)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(false);
    };
    let pools: Vec<String> = serde_json::from_str(&s(&row, "pools")?).map_err(|e| {
        Error::Internal(format!(
            "agents.pools of agent {agent_id} is not a JSON list: {e}"
        ))
    })?;
    Ok(pools.iter().any(|p| p == pool))
}

/// "name (id)" for an agent, as the audit trail shows it.
async fn agent_label(c: &mut AnyConnection, agent_id: &str) -> Result<String> {
    let row = sqlx::query("SELECT name FROM agents WHERE id = $1")
        .bind(agent_id)
        .fetch_optional(&mut *c)
        .await?;
    Ok(match row {
        Some(r) => format!("{} ({agent_id})", s(&r, "name")?),
        None => agent_id.to_string(),
    })
}

/// Releases a state lock held by a task's lease (the fence: its lock ID is now worthless).
async fn release_task_lock(c: &mut AnyConnection, task_id: &str) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM state_locks WHERE task_id = $1")
        .bind(task_id)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

impl Store {
    /// Connects (creating a SQLite file on first start) and applies migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres");
        if let Some(file) = sqlite_file::path_of(url) {
            // Before sqlx opens it with mode=rwc, which would create it world-readable.
            sqlite_file::prepare(&file)?;
        }
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.contains('?') {
                url.to_string()
            } else {
                format!("sqlite://{path}?mode=rwc")
            }
        } else {
            url.to_string()
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(|e| {
            Error::InvalidInput(format!(
                "bad database URL {url:?}: {e} (use sqlite://PATH or postgres://USER@HOST/DB)"
            ))
        })?;
        // SQLite takes one writer at a time: one connection avoids SQLITE_BUSY on upgrades.
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 10 } else { 1 })
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_with(opts)
            .await
            .map_err(|e| {
                Error::Internal(format!(
                    "cannot open the database at {url}: {e}; for PostgreSQL check that it is running and the database exists"
                ))
            })?;
        if !postgres {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            sqlx::query("PRAGMA busy_timeout = 10000")
                .execute(&pool)
                .await?;
        }
        let store = Store {
            pool,
            postgres,
            changes: tokio::sync::broadcast::channel(1024).0,
            keys: Default::default(),
            keep_versions: 0,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut c = self.pool.acquire().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")
            .execute(&mut *c)
            .await?;
        if self.postgres {
            // Two coordinators starting together must not both migrate.
            sqlx::query("SELECT pg_advisory_lock(7700)")
                .execute(&mut *c)
                .await?;
        }
        let result = async {
            for (version, sql) in schema::MIGRATIONS {
                let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *c)
                    .await?;
                if done.is_some() {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *c).await?;
                for stmt in schema::render(sql, self.postgres).split(';') {
                    if !stmt.trim().is_empty() {
                        sqlx::query(stmt).execute(&mut *tx).await?;
                    }
                }
                sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_unlock(7700)")
                .execute(&mut *c)
                .await?;
        }
        result
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// A receiver of run ids whose state or logs changed (in this process).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RunChange> {
        self.changes.subscribe()
    }

    fn changed(&self, run_id: &str) {
        let _ = self.changes.send(RunChange {
            run_id: run_id.to_string(),
            state: true,
        });
    }

    fn logs_added(&self, run_id: &str) {
        let _ = self.changes.send(RunChange {
            run_id: run_id.to_string(),
            state: false,
        });
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- runs --------------------------------------------------------------------------------

    /// Creates a run and its plan task, and queues the task, in one transaction.
    pub async fn submit(&self, n: NewRun, policy: &Policy) -> Result<Run> {
        let now = now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let vf: Vec<(String, String)> = n
            .var_files
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    base64::engine::general_purpose::STANDARD.encode(c),
                )
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        // Runs that may apply take turns on a workspace: the next one waits `pending`.
        let holder = if n.kind == RunKind::PlanOnly {
            None
        } else {
            workspace_holder(&mut tx, &n.workspace, true).await?
        };
        let state = if holder.is_some() {
            RunState::Pending
        } else {
            RunState::Queued
        };
        let aad = run_aad(&id);
        let seal = |v: String| self.keys.seal_text(&aad, &v).map_err(Error::Internal);
        let variables = seal(serde_json::to_string(&n.variables).map_err(json_err)?)?;
        let var_files = seal(serde_json::to_string(&vf).map_err(json_err)?)?;
        sqlx::query(
            "INSERT INTO runs (id, workspace, pool, kind, state, bundle_digest, variables, var_files, auto_approve, submitted_by, commit_sha, pipeline_id, traceparent, created_ms, updated_ms, deadline_ms, limits, sensitive_variables) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(&id)
        .bind(&n.workspace)
        .bind(&n.pool)
        .bind(n.kind.as_str())
        .bind(state.as_str())
        .bind(&n.bundle_digest)
        .bind(variables)
        .bind(var_files)
        .bind(n.auto_approve as i64)
        .bind(&n.actor)
        .bind(&n.commit)
        .bind(&n.pipeline_id)
        .bind(&n.traceparent)
        .bind(now)
        .bind(now)
        .bind(now + policy.queue_timeout_ms)
        .bind(serde_json::to_string(&n.limits).map_err(json_err)?)
        .bind(serde_json::to_string(&n.variable_decls).map_err(json_err)?)
        .execute(&mut *tx)
        .await?;
        let run = get_run_c(&self.keys, &mut tx, &id).await?;
        let mut why = format!("submitted ({}) to pool {}", n.kind.as_str(), n.pool);
        match &holder {
            None => {
                new_task(&mut tx, &run, Phase::Plan, now, policy).await?;
            }
            Some(h) => why.push_str(&format!("; waits for run {h} on workspace {}", n.workspace)),
        }
        sqlx::query(
            "INSERT INTO transitions (run_id, from_state, to_state, actor, reason, at_ms) VALUES ($1, '', $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(state.as_str())
        .bind(&n.actor)
        .bind(why)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.changed(&id);
        Ok(run)
    }

    pub async fn get_run(&self, id: &str) -> Result<Run> {
        let mut c = self.pool.acquire().await?;
        get_run_c(&self.keys, &mut c, id).await
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

    pub async fn plan_attempts(&self, run_id: &str) -> Result<u32> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM task_attempts WHERE run_id = $1 AND phase = 'plan'",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(i(&row, "n")? as u32)
    }

    pub async fn list_runs(&self, workspace: &str, state: &str, limit: i64) -> Result<Vec<Run>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE ($1 = '' OR workspace = $2) AND ($3 = '' OR state = $4) ORDER BY created_ms DESC, id DESC LIMIT $5",
        )
        .bind(workspace)
        .bind(workspace)
        .bind(state)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| run_from_row(&self.keys, r)).collect()
    }

    /// Every attempt ever claimed for a run's phase (the "executions" the fault tests count).
    pub async fn attempts_of(
        &self,
        run_id: &str,
        phase: Phase,
    ) -> Result<Vec<(u32, String, String)>> {
        let rows = sqlx::query("SELECT attempt, agent_id, outcome FROM task_attempts WHERE run_id = $1 AND phase = $2 ORDER BY attempt")
            .bind(run_id)
            .bind(phase.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((i(r, "attempt")? as u32, s(r, "agent_id")?, s(r, "outcome")?)))
            .collect()
    }

    // ---- claim, heartbeat, reports -------------------------------------------------------------

    /// Grants a lease on (task, attempt) if it is current and unclaimed. Exactly one claim of an
    /// attempt can win; a duplicate delivery or a stale attempt is refused with the reason.
    pub async fn claim(
        &self,
        agent_id: &str,
        task_id: &str,
        attempt: u32,
        policy: &Policy,
    ) -> Result<std::result::Result<ClaimGrant, String>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let Some(task) = get_task_c(&mut tx, task_id).await? else {
            return Ok(Err(format!("unknown task {task_id}")));
        };
        if let Err(why) = runs::claim_decision(attempt, task.attempt, &task.state) {
            return Ok(Err(why));
        }
        if !agent_serves(&mut tx, agent_id, &task.pool).await? {
            return Ok(Err(format!(
                "agent {agent_id} is not registered for pool {:?}",
                task.pool
            )));
        }
        let run = get_run_c(&self.keys, &mut tx, &task.run_id).await?;
        let (from, to) = match task.phase {
            Phase::Plan => (RunState::Queued, RunState::Planning),
            Phase::Apply => (RunState::Approved, RunState::Applying),
        };
        if run.state != from {
            return Ok(Err(format!("run {} is {}", run.id, run.state)));
        }
        let epoch = i(
            &sqlx::query(
                "UPDATE counters SET value = value + 1 WHERE name = 'epoch' RETURNING value",
            )
            .fetch_one(&mut *tx)
            .await?,
            "value",
        )?;
        let token = secret();
        let lease_token = secret();
        let r = sqlx::query(
            "UPDATE tasks SET state = 'running', agent_id = $1, epoch = $2, lease_expires_ms = $3, token_sha256 = $4, lease_sha256 = $5 WHERE id = $6 AND attempt = $7 AND state = 'queued'",
        )
        .bind(agent_id)
        .bind(epoch)
        .bind(now + policy.lease_ttl_ms)
        .bind(sha256_hex(token.as_bytes()))
        .bind(sha256_hex(lease_token.as_bytes()))
        .bind(task_id)
        .bind(attempt as i64)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(Err("task attempt was claimed by someone else".into()));
        }
        sqlx::query("INSERT INTO task_attempts (task_id, attempt, run_id, phase, agent_id, epoch, claimed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(task_id)
            .bind(attempt as i64)
            .bind(&run.id)
            .bind(task.phase.as_str())
            .bind(agent_id)
            .bind(epoch)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let who = agent_label(&mut tx, agent_id).await?;
        transition(
            &mut tx,
            &run.id,
            from,
            to,
            agent_id,
            &format!(
                "{} attempt {attempt} claimed by agent {who}",
                task.phase.as_str()
            ),
            now,
        )
        .await?;
        let task = get_task_c(&mut tx, task_id)
            .await?
            .ok_or_else(|| Error::Internal("task vanished".into()))?;
        let run = get_run_c(&self.keys, &mut tx, &run.id).await?;
        tx.commit().await?;
        self.changed(&run.id);
        Ok(Ok(ClaimGrant {
            epoch,
            task,
            run,
            token,
            lease_token,
        }))
    }

    /// Renews the leases an agent still holds; returns (tasks to cancel, leases that are gone).
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        leases: &[(String, u32, i64, String)],
        draining: bool,
        policy: &Policy,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let now = now_ms();
        let mut c = self.pool.acquire().await?;
        sqlx::query("UPDATE agents SET last_seen_ms = $1, state = $2 WHERE id = $3")
            .bind(now)
            .bind(if draining { "draining" } else { "active" })
            .bind(agent_id)
            .execute(&mut *c)
            .await?;
        let mut cancel = Vec::new();
        let mut lost = Vec::new();
        for (task_id, attempt, epoch, token) in leases {
            let r = sqlx::query(
                "UPDATE tasks SET lease_expires_ms = $1 WHERE id = $2 AND attempt = $3 AND epoch = $4 AND state = 'running' AND agent_id = $5 AND lease_sha256 = $6 AND lease_sha256 <> ''",
            )
            .bind(now + policy.lease_ttl_ms)
            .bind(task_id)
            .bind(*attempt as i64)
            .bind(*epoch)
            .bind(agent_id)
            .bind(sha256_hex(token.as_bytes()))
            .execute(&mut *c)
            .await?;
            if r.rows_affected() == 0 {
                lost.push(task_id.clone());
                continue;
            }
            if let Some(t) = get_task_c(&mut c, task_id).await? {
                if t.cancel_requested {
                    cancel.push(task_id.clone());
                }
            }
        }
        Ok((cancel, lost))
    }

    /// Checks that the proof names the live lease, held by its agent; returns the task.
    pub async fn check_lease(&self, proof: LeaseProof<'_>) -> Result<Task> {
        let mut c = self.pool.acquire().await?;
        let t = get_task_c(&mut c, proof.task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown task {}", proof.task_id)))?;
        proof.check(&t)?;
        if t.state != "running" {
            return Err(Error::Conflict(format!(
                "stale lease: task {} attempt {} is {}, not running",
                proof.task_id, proof.attempt, t.state
            )));
        }
        Ok(t)
    }

    /// Stores log lines; a retried batch is absorbed (idempotent by task, attempt, seq).
    pub async fn add_events(&self, proof: LeaseProof<'_>, events: &[v1::Event]) -> Result<u64> {
        let (task_id, attempt) = (proof.task_id, proof.attempt);
        let mut tx = self.pool.begin().await?;
        let t = get_task_c(&mut tx, task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown task {task_id}")))?;
        proof.check(&t)?;
        // Late lines of a finished attempt are still welcome; lines of a fenced one are not.
        if !["running", "succeeded", "failed", "cancelled"].contains(&t.state.as_str()) {
            return Err(Error::Conflict(format!(
                "stale lease: events for task {task_id} attempt {attempt} rejected (state {})",
                t.state
            )));
        }
        let order = if t.phase == Phase::Plan { 0 } else { 1 };
        let aad = run_aad(&t.run_id);
        let mut stored = 0;
        for e in events {
            let line = self
                .keys
                .seal_text(&aad, &e.line)
                .map_err(Error::Internal)?;
            let r = sqlx::query(
                "INSERT INTO events (task_id, attempt, seq, run_id, phase_order, unix_ms, stream, line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (task_id, attempt, seq) DO NOTHING",
            )
            .bind(task_id)
            .bind(attempt as i64)
            .bind(e.seq as i64)
            .bind(&t.run_id)
            .bind(order)
            .bind(e.unix_ms)
            .bind(e.stream as i64)
            .bind(line)
            .execute(&mut *tx)
            .await?;
            stored += r.rows_affected();
        }
        tx.commit().await?;
        self.logs_added(&t.run_id);
        Ok(stored)
    }

    pub async fn logs(&self, run_id: &str, offset: i64) -> Result<Vec<LogRow>> {
        let rows = sqlx::query("SELECT phase_order, attempt, seq, unix_ms, stream, line FROM events WHERE run_id = $1 ORDER BY phase_order, attempt, seq LIMIT 5000 OFFSET $2")
            .bind(run_id)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let aad = run_aad(run_id);
        rows.iter()
            .map(|r| {
                Ok(LogRow {
                    phase_order: i(r, "phase_order")?,
                    attempt: i(r, "attempt")?,
                    seq: i(r, "seq")?,
                    unix_ms: i(r, "unix_ms")?,
                    stream: i(r, "stream")?,
                    line: self
                        .keys
                        .open_text(&aad, &s(r, "line")?)
                        .map_err(Error::Internal)?,
                })
            })
            .collect()
    }

    pub async fn set_artifact(
        &self,
        proof: LeaseProof<'_>,
        kind: v1::ArtifactKind,
        digest: &str,
    ) -> Result<()> {
        let t = self.check_lease(proof).await?;
        let col = match kind {
            v1::ArtifactKind::PlanFile => "plan_digest",
            v1::ArtifactKind::PlanJson => "plan_json_digest",
            v1::ArtifactKind::Unspecified => {
                return Err(Error::InvalidInput("artifact kind is required".into()))
            }
        };
        if t.phase != Phase::Plan {
            return Err(Error::InvalidInput(
                "only plan tasks upload plan artifacts".into(),
            ));
        }
        sqlx::query(&format!("UPDATE runs SET {col} = $1 WHERE id = $2"))
            .bind(digest)
            .bind(&t.run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a task's result and moves the run on. Idempotent for a retried completion.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete(&self, req: &v1::CompleteRequest, policy: &Policy) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let t = get_task_c(&mut tx, &req.task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown task {}", req.task_id)))?;
        LeaseProof {
            task_id: &req.task_id,
            attempt: req.attempt,
            epoch: req.epoch as i64,
            agent_id: &req.agent_id,
            token: &req.lease_token,
        }
        .check(&t)?;
        if ["succeeded", "failed", "cancelled"].contains(&t.state.as_str()) {
            return Ok(()); // a retry of a completion we already have
        }
        if t.state != "running" {
            return Err(Error::Conflict(format!(
                "stale lease: completion for task {} attempt {} epoch {} rejected (current attempt {}, epoch {}, state {})",
                req.task_id, req.attempt, req.epoch, t.attempt, t.epoch, t.state
            )));
        }
        let outcome = v1::Outcome::try_from(req.outcome).unwrap_or(v1::Outcome::Unspecified);
        let tstate = match outcome {
            v1::Outcome::Succeeded => "succeeded",
            v1::Outcome::Cancelled => "cancelled",
            _ => "failed",
        };
        sqlx::query("UPDATE tasks SET state = $1, finished_ms = $2, exit_code = $3, error = $4, token_sha256 = '' WHERE id = $5 AND attempt = $6 AND state = 'running'")
            .bind(tstate)
            .bind(now)
            .bind(req.exit_code as i64)
            .bind(&req.error)
            .bind(&req.task_id)
            .bind(req.attempt as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE task_attempts SET ended_ms = $1, outcome = $2 WHERE task_id = $3 AND attempt = $4")
            .bind(now)
            .bind(tstate)
            .bind(&req.task_id)
            .bind(req.attempt as i64)
            .execute(&mut *tx)
            .await?;
        release_task_lock(&mut tx, &req.task_id).await?;
        if !req.limit_hit.is_empty() {
            sqlx::query("UPDATE runs SET limit_hit = $1 WHERE id = $2")
                .bind(&req.limit_hit)
                .bind(&t.run_id)
                .execute(&mut *tx)
                .await?;
        }
        let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
        let actor = &req.agent_id;
        match (t.phase, outcome) {
            (Phase::Plan, v1::Outcome::Succeeded) => {
                let sm = req.summary.unwrap_or_default();
                sqlx::query("UPDATE runs SET has_changes = $1, add_count = $2, change_count = $3, destroy_count = $4 WHERE id = $5")
                    .bind(req.has_changes as i64)
                    .bind(sm.add as i64)
                    .bind(sm.change as i64)
                    .bind(sm.destroy as i64)
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await?;
                let summary = format!(
                    "plan: {} to add, {} to change, {} to destroy",
                    sm.add, sm.change, sm.destroy
                );
                match runs::after_plan(run.kind, req.has_changes, run.auto_approve) {
                    runs::AfterPlan::NoChanges => {
                        transition(
                            &mut tx,
                            &run.id,
                            RunState::Planning,
                            RunState::PlannedNoChanges,
                            actor,
                            "plan found no changes",
                            now,
                        )
                        .await?;
                    }
                    next => {
                        transition(
                            &mut tx,
                            &run.id,
                            RunState::Planning,
                            RunState::Planned,
                            actor,
                            &summary,
                            now,
                        )
                        .await?;
                        match next {
                            runs::AfterPlan::AutoApprove => {
                                transition(
                                    &mut tx,
                                    &run.id,
                                    RunState::Planned,
                                    RunState::Approved,
                                    &run.submitted_by,
                                    "auto-approved at submit",
                                    now,
                                )
                                .await?;
                                new_task(&mut tx, &run, Phase::Apply, now, policy).await?;
                            }
                            runs::AfterPlan::AwaitApproval => {
                                transition(
                                    &mut tx,
                                    &run.id,
                                    RunState::Planned,
                                    RunState::AwaitingApproval,
                                    "coordinator",
                                    "waiting for `tofuflow run approve`",
                                    now,
                                )
                                .await?;
                                sqlx::query("UPDATE runs SET deadline_ms = $1 WHERE id = $2")
                                    .bind(now + policy.approval_timeout_ms)
                                    .bind(&run.id)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            _ => {}
                        }
                    }
                }
            }
            (Phase::Apply, v1::Outcome::Succeeded) => {
                let outputs = self
                    .keys
                    .seal_text(&run_aad(&run.id), &req.outputs_json)
                    .map_err(Error::Internal)?;
                sqlx::query("UPDATE runs SET outputs = $1 WHERE id = $2")
                    .bind(outputs)
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await?;
                transition(
                    &mut tx,
                    &run.id,
                    RunState::Applying,
                    RunState::Applied,
                    actor,
                    "apply complete",
                    now,
                )
                .await?;
            }
            (phase, v1::Outcome::Cancelled) => {
                let from = if phase == Phase::Plan {
                    RunState::Planning
                } else {
                    RunState::Applying
                };
                transition(
                    &mut tx,
                    &run.id,
                    from,
                    RunState::Cancelled,
                    actor,
                    &format!("{} cancelled: {}", phase.as_str(), req.error),
                    now,
                )
                .await?;
            }
            (phase, _) => {
                let from = if phase == Phase::Plan {
                    RunState::Planning
                } else {
                    RunState::Applying
                };
                let why = if req.error.is_empty() {
                    format!("{} failed (exit {})", phase.as_str(), req.exit_code)
                } else {
                    req.error.clone()
                };
                sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                    .bind(&why)
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await?;
                transition(&mut tx, &run.id, from, RunState::Failed, actor, &why, now).await?;
            }
        }
        tx.commit().await?;
        self.changed(&run.id);
        Ok(())
    }

    // ---- user actions ----------------------------------------------------------------------

    pub async fn approve(
        &self,
        run_id: &str,
        actor: &str,
        reason: &str,
        policy: &Policy,
    ) -> Result<Run> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        if run.state != RunState::AwaitingApproval {
            return Err(Error::Conflict(format!("run {run_id} is {}, not awaiting_approval: only a planned run waiting for approval can be approved", run.state)));
        }
        if run.plan_digest.is_empty() {
            return Err(Error::Internal(format!("run {run_id} has no saved plan")));
        }
        let why = if reason.is_empty() {
            "approved".to_string()
        } else {
            format!("approved: {reason}")
        };
        transition(
            &mut tx,
            run_id,
            RunState::AwaitingApproval,
            RunState::Approved,
            actor,
            &why,
            now,
        )
        .await?;
        new_task(&mut tx, &run, Phase::Apply, now, policy).await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        tx.commit().await?;
        self.changed(run_id);
        Ok(run)
    }

    pub async fn reject(&self, run_id: &str, actor: &str, reason: &str) -> Result<Run> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        if run.state != RunState::AwaitingApproval {
            return Err(Error::Conflict(format!(
                "run {run_id} is {}, not awaiting_approval",
                run.state
            )));
        }
        let why = if reason.is_empty() {
            "rejected".to_string()
        } else {
            format!("rejected: {reason}")
        };
        transition(
            &mut tx,
            run_id,
            RunState::AwaitingApproval,
            RunState::Rejected,
            actor,
            &why,
            now,
        )
        .await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        tx.commit().await?;
        self.changed(run_id);
        Ok(run)
    }

    /// Cancels a run: at once when nothing runs; by asking the agent (next heartbeat) when a task
    /// is running.
    pub async fn cancel(&self, run_id: &str, actor: &str, reason: &str) -> Result<Run> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        if runs::is_terminal(run.state, run.kind) {
            return Err(Error::Conflict(format!(
                "run {run_id} already ended as {}",
                run.state
            )));
        }
        let why = if reason.is_empty() {
            format!("cancelled by {actor}")
        } else {
            format!("cancelled by {actor}: {reason}")
        };
        match run.state {
            RunState::Planning | RunState::Applying => {
                sqlx::query(
                    "UPDATE tasks SET cancel_requested = 1 WHERE run_id = $1 AND state = 'running'",
                )
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                note(
                    &mut tx,
                    run_id,
                    run.state,
                    run.state,
                    actor,
                    &format!("cancel requested: {why}"),
                    now,
                )
                .await?;
            }
            state => {
                sqlx::query("UPDATE tasks SET state = 'cancelled', finished_ms = $1 WHERE run_id = $2 AND state = 'queued'")
                    .bind(now)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
                transition(
                    &mut tx,
                    run_id,
                    state,
                    RunState::Cancelled,
                    actor,
                    &why,
                    now,
                )
                .await?;
            }
        }
        let run = get_run_c(&self.keys, &mut tx, run_id).await?;
        tx.commit().await?;
        self.changed(run_id);
        Ok(run)
    }

    /// An agent could not use a message for (task, attempt): fail the run with the reason.
    /// `actor` is the (authenticated) agent, which must serve the task's pool.
    pub async fn reject_task(
        &self,
        task_id: &str,
        attempt: u32,
        reason: &str,
        actor: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let Some(t) = get_task_c(&mut tx, task_id).await? else {
            return Ok(false);
        };
        if t.attempt != attempt || t.state != "queued" {
            return Ok(false);
        }
        // Only an agent of the task's pool received its message and may reject it.
        if !agent_serves(&mut tx, actor, &t.pool).await? {
            return Err(Error::PermissionDenied(format!(
                "agent {actor} is not registered for pool {:?}: it cannot reject task {task_id}",
                t.pool
            )));
        }
        let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
        self.fail_queued(&mut tx, &t, &run, reason, actor, now)
            .await?;
        tx.commit().await?;
        self.changed(&run.id);
        Ok(true)
    }

    async fn fail_queued(
        &self,
        c: &mut AnyConnection,
        t: &Task,
        run: &Run,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE tasks SET state = 'failed', error = $1, finished_ms = $2 WHERE id = $3 AND attempt = $4 AND state = 'queued'")
            .bind(reason)
            .bind(now)
            .bind(&t.id)
            .bind(t.attempt as i64)
            .execute(&mut *c)
            .await?;
        sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
            .bind(reason)
            .bind(&run.id)
            .execute(&mut *c)
            .await?;
        let from = run.state;
        if runs::allowed(from, RunState::Failed) {
            transition(c, &run.id, from, RunState::Failed, actor, reason, now).await?;
        }
        Ok(())
    }

    // ---- outbox ------------------------------------------------------------------------------

    pub async fn unsent(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query("SELECT id, task_id, attempt, pool, payload, traceparent FROM outbox WHERE sent_ms = 0 ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    id: i(r, "id")?,
                    task_id: s(r, "task_id")?,
                    attempt: i(r, "attempt")? as u32,
                    pool: s(r, "pool")?,
                    payload: r.try_get::<Vec<u8>, _>("payload")?,
                    traceparent: s(r, "traceparent")?,
                })
            })
            .collect()
    }

    pub async fn mark_sent(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET sent_ms = $1, publish_attempts = publish_attempts + 1 WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_publish_failed(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The broker returned the message (`mandatory`): no queue is bound for its pool.
    pub async fn unroutable(&self, row: &OutboxRow) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE outbox SET sent_ms = $1, last_error = 'unroutable' WHERE id = $2")
            .bind(now)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        if let Some(t) = get_task_c(&mut tx, &row.task_id).await? {
            if t.attempt == row.attempt && t.state == "queued" {
                let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
                let why = format!(
                    "no queue is bound for pool {:?}: start an agent with `--pool {}` (it declares the queue), or list the pool in the coordinator's --pools",
                    row.pool, row.pool
                );
                self.fail_queued(&mut tx, &t, &run, &why, "coordinator", now)
                    .await?;
                tx.commit().await?;
                self.changed(&run.id);
                return Ok(());
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_stats(&self) -> Result<(i64, i64)> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sent_ms = 0")
            .fetch_one(&self.pool)
            .await?;
        let t = sqlx::query("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok((i(&r, "n")?, i(&t, "n")?))
    }

    // ---- the reaper --------------------------------------------------------------------------

    /// Handles expired leases and overdue runs; returns what it did, one line each.
    pub async fn reap(&self, policy: &Policy) -> Result<Vec<String>> {
        let now = now_ms();
        let mut done = Vec::new();
        let expired =
            sqlx::query("SELECT * FROM tasks WHERE state = 'running' AND lease_expires_ms < $1")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        for row in expired {
            let t = task_from_row(&row)?;
            let mut tx = self.pool.begin().await?;
            let since = now - t.lease_expires_ms + policy.lease_ttl_ms;
            let lost = format!(
                "agent {} stopped renewing its lease ({} ms without a heartbeat)",
                agent_label(&mut tx, &t.agent_id).await?,
                since
            );
            sqlx::query("UPDATE task_attempts SET ended_ms = $1, outcome = 'lost' WHERE task_id = $2 AND attempt = $3")
                .bind(now)
                .bind(&t.id)
                .bind(t.attempt as i64)
                .execute(&mut *tx)
                .await?;
            let released = release_task_lock(&mut tx, &t.id).await?;
            let run = get_run_c(&self.keys, &mut tx, &t.run_id).await?;
            match runs::on_lease_expiry(t.phase, t.attempt, policy.max_plan_attempts) {
                runs::LeaseExpiry::Redispatch { next_attempt } => {
                    let r = sqlx::query("UPDATE tasks SET attempt = $1, state = 'queued', agent_id = '', epoch = 0, lease_expires_ms = 0, token_sha256 = '', lease_sha256 = '' WHERE id = $2 AND attempt = $3 AND state = 'running' AND lease_expires_ms < $4")
                        .bind(next_attempt as i64)
                        .bind(&t.id)
                        .bind(t.attempt as i64)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() != 1 {
                        continue; // renewed or finished meanwhile
                    }
                    enqueue(
                        &mut tx,
                        &run,
                        &t.id,
                        next_attempt,
                        t.phase,
                        now,
                        now + policy.queue_timeout_ms,
                    )
                    .await?;
                    transition(
                        &mut tx,
                        &run.id,
                        RunState::Planning,
                        RunState::Queued,
                        "coordinator",
                        &format!("{lost}; plan re-dispatched as attempt {next_attempt}"),
                        now,
                    )
                    .await?;
                    done.push(format!(
                        "run {} plan re-dispatched as attempt {next_attempt}",
                        run.id
                    ));
                }
                runs::LeaseExpiry::GiveUp => {
                    let r = sqlx::query("UPDATE tasks SET state = 'lost', token_sha256 = '' WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_expires_ms < $3")
                        .bind(&t.id)
                        .bind(t.attempt as i64)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() != 1 {
                        continue;
                    }
                    let why = format!("{lost}; gave up after {} plan attempts", t.attempt);
                    sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                        .bind(&why)
                        .bind(&run.id)
                        .execute(&mut *tx)
                        .await?;
                    transition(
                        &mut tx,
                        &run.id,
                        RunState::Planning,
                        RunState::Failed,
                        "coordinator",
                        &why,
                        now,
                    )
                    .await?;
                    done.push(format!(
                        "run {} failed: plan lost {} times",
                        run.id, t.attempt
                    ));
                }
                runs::LeaseExpiry::Interrupt => {
                    let r = sqlx::query("UPDATE tasks SET state = 'lost', token_sha256 = '' WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_expires_ms < $3")
                        .bind(&t.id)
                        .bind(t.attempt as i64)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() != 1 {
                        continue;
                    }
                    let why = format!(
                        "{lost} during apply; the apply is not retried because part of it may have happened{}. Submit a new run to plan against the current state",
                        if released > 0 { "; its state lock was released" } else { "" }
                    );
                    sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                        .bind(&why)
                        .bind(&run.id)
                        .execute(&mut *tx)
                        .await?;
                    transition(
                        &mut tx,
                        &run.id,
                        RunState::Applying,
                        RunState::Interrupted,
                        "coordinator",
                        &why,
                        now,
                    )
                    .await?;
                    done.push(format!("run {} interrupted: apply lost its agent", run.id));
                }
            }
            tx.commit().await?;
            self.changed(&run.id);
        }
        // Pending runs start, oldest first, once their workspace is free.
        let pending =
            sqlx::query("SELECT * FROM runs WHERE state = 'pending' ORDER BY created_ms, id")
                .fetch_all(&self.pool)
                .await?;
        for row in pending {
            let run = run_from_row(&self.keys, &row)?;
            let mut tx = self.pool.begin().await?;
            if workspace_holder(&mut tx, &run.workspace, false)
                .await?
                .is_some()
            {
                continue;
            }
            match transition(
                &mut tx,
                &run.id,
                RunState::Pending,
                RunState::Queued,
                "coordinator",
                &format!("workspace {} is free: starting", run.workspace),
                now,
            )
            .await
            {
                Ok(()) => {}
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
            new_task(&mut tx, &run, Phase::Plan, now, policy).await?;
            tx.commit().await?;
            self.changed(&run.id);
            done.push(format!("run {} started: its workspace is free", run.id));
        }
        // Runs past their deadline: nobody claimed the task, or nobody approved.
        let overdue = sqlx::query("SELECT * FROM runs WHERE state IN ('pending', 'queued', 'approved', 'awaiting_approval') AND deadline_ms > 0 AND deadline_ms < $1")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        for row in overdue {
            let run = run_from_row(&self.keys, &row)?;
            let mut tx = self.pool.begin().await?;
            let why = if run.state == RunState::AwaitingApproval {
                "nobody approved the plan before the approval timeout".to_string()
            } else if run.state == RunState::Pending {
                format!(
                    "waited longer than the queue timeout for workspace {} to be free",
                    run.workspace
                )
            } else {
                format!("no agent of pool {:?} claimed the task before the queue timeout: is an agent running for that pool?", run.pool)
            };
            sqlx::query("UPDATE tasks SET state = 'expired', finished_ms = $1 WHERE run_id = $2 AND state = 'queued'")
                .bind(now)
                .bind(&run.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
                .bind(&why)
                .bind(&run.id)
                .execute(&mut *tx)
                .await?;
            match transition(
                &mut tx,
                &run.id,
                run.state,
                RunState::Expired,
                "coordinator",
                &why,
                now,
            )
            .await
            {
                Ok(()) => {
                    tx.commit().await?;
                    self.changed(&run.id);
                    done.push(format!("run {} expired", run.id));
                }
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    // ---- blobs -------------------------------------------------------------------------------

    /// Stores a blob under its SHA-256; returns true if it was already there.
    pub async fn put_blob(&self, data: &[u8]) -> Result<(String, bool)> {
        let digest = format!("sha256:{}", sha256_hex(data));
        let sealed = self.keys.encrypt(&digest, data).map_err(Error::Internal)?;
        let r = sqlx::query("INSERT INTO blobs (digest, size, data, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING")
            .bind(&digest)
            .bind(data.len() as i64)
            .bind(sealed)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok((digest, r.rows_affected() == 0))
    }

    pub async fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let row = sqlx::query("SELECT data FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no blob {digest}: upload the bundle first")))?;
        self.keys
            .decrypt(digest, &row.try_get::<Vec<u8>, _>("data")?)
            .map_err(Error::Internal)
    }

    pub async fn has_blob(&self, digest: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT digest FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    // ---- agents ------------------------------------------------------------------------------

    pub async fn register_agent(
        &self,
        id: &str,
        name: &str,
        pools: &[String],
        labels: &BTreeMap<String, String>,
        capacity: u32,
        secret_sha256: &str,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (id, name, pools, labels, capacity, state, registered_ms, last_seen_ms, secret_sha256) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, pools = excluded.pools, labels = excluded.labels, capacity = excluded.capacity, state = 'active', last_seen_ms = excluded.last_seen_ms, secret_sha256 = excluded.secret_sha256",
        )
        .bind(id)
        .bind(name)
        .bind(serde_json::to_string(pools).unwrap_or_default())
        .bind(serde_json::to_string(labels).unwrap_or_default())
        .bind(capacity as i64)
        .bind(now)
        .bind(now)
        .bind(secret_sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A registered agent's secret hash and pools, if the agent is known.
    pub async fn agent_credential(&self, id: &str) -> Result<Option<(String, Vec<String>)>> {
        let Some(r) = sqlx::query("SELECT secret_sha256, pools FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let pools = serde_json::from_str(&s(&r, "pools")?).map_err(|e| {
            Error::Internal(format!(
                "agents.pools of agent {id} is not a JSON list: {e}"
            ))
        })?;
        Ok(Some((s(&r, "secret_sha256")?, pools)))
    }

    pub async fn agents(&self) -> Result<Vec<Agent>> {
        let rows = sqlx::query("SELECT a.*, (SELECT COUNT(*) FROM tasks t WHERE t.agent_id = a.id AND t.state = 'running') AS running FROM agents a ORDER BY a.name, a.id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Agent {
                    id: s(r, "id")?,
                    name: s(r, "name")?,
                    pools: serde_json::from_str(&s(r, "pools")?).unwrap_or_default(),
                    labels: serde_json::from_str(&s(r, "labels")?).unwrap_or_default(),
                    capacity: i(r, "capacity")?,
                    state: s(r, "state")?,
                    last_seen_ms: i(r, "last_seen_ms")?,
                    running: i(r, "running")?,
                })
            })
            .collect()
    }

    // ---- state backend -----------------------------------------------------------------------

    /// The task a state-backend credential belongs to, if it is a live lease.
    pub async fn task_for_token(
        &self,
        task_id: &str,
        token: &str,
    ) -> Result<Option<(Task, String)>> {
        let mut c = self.pool.acquire().await?;
        let Some(t) = get_task_c(&mut c, task_id).await? else {
            return Ok(None);
        };
        if t.state != "running" || t.lease_expires_ms < now_ms() {
            return Ok(None);
        }
        let row = sqlx::query("SELECT token_sha256 FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_one(&mut *c)
            .await?;
        let stored = s(&row, "token_sha256")?;
        if stored.is_empty() || stored != sha256_hex(token.as_bytes()) {
            return Ok(None);
        }
        let run = get_run_c(&self.keys, &mut c, &t.run_id).await?;
        Ok(Some((t, run.workspace)))
    }

    /// Sets the encryption keys and rotates every stored state version under the current key
    /// (plaintext or an old key → current). Returns how many versions were rewritten.
    pub async fn set_keys(&mut self, keys: crypt::Keys, keep_versions: i64) -> Result<u64> {
        self.keys = std::sync::Arc::new(keys);
        self.keep_versions = keep_versions;
        if self.keys.current.is_none() {
            return Ok(0);
        }
        let n = self.rotate_state().await?
            + self.rotate_blobs().await?
            + self.rotate_runs().await?
            + self.rotate_events().await?;
        Ok(n)
    }

    /// Re-encrypts state versions not under the current key.
    async fn rotate_state(&self) -> Result<u64> {
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

    /// Re-encrypts blobs (bundles, plans) not under the current key, one at a time.
    async fn rotate_blobs(&self) -> Result<u64> {
        let digests = sqlx::query("SELECT digest FROM blobs")
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for d in digests {
            let digest = s(&d, "digest")?;
            let row = sqlx::query("SELECT data FROM blobs WHERE digest = $1")
                .bind(&digest)
                .fetch_one(&self.pool)
                .await?;
            let data = row.try_get::<Vec<u8>, _>("data")?;
            if !self.keys.needs_rotation(&data) {
                continue;
            }
            let plain = self.keys.decrypt(&digest, &data).map_err(Error::Internal)?;
            let fresh = self
                .keys
                .encrypt(&digest, &plain)
                .map_err(Error::Internal)?;
            sqlx::query("UPDATE blobs SET data = $1 WHERE digest = $2")
                .bind(fresh)
                .bind(&digest)
                .execute(&self.pool)
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Re-encrypts runs' variables, variable files and outputs not under the current key.
    async fn rotate_runs(&self) -> Result<u64> {
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

    /// Re-encrypts log lines not under the current key, a page at a time.
    async fn rotate_events(&self) -> Result<u64> {
        let Some(prefix) = self.keys.sealed_text_prefix() else {
            return Ok(0);
        };
        let mut n = 0;
        loop {
            let rows = sqlx::query("SELECT task_id, attempt, seq, run_id, line FROM events WHERE line NOT LIKE $1 LIMIT 1000")
                .bind(format!("{prefix}%"))
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(n);
            }
            let mut tx = self.pool.begin().await?;
            for r in rows {
                let aad = run_aad(&s(&r, "run_id")?);
                let plain = self
                    .keys
                    .open_text(&aad, &s(&r, "line")?)
                    .map_err(Error::Internal)?;
                let fresh = self.keys.seal_text(&aad, &plain).map_err(Error::Internal)?;
                sqlx::query(
                    "UPDATE events SET line = $1 WHERE task_id = $2 AND attempt = $3 AND seq = $4",
                )
                .bind(fresh)
                .bind(s(&r, "task_id")?)
                .bind(i(&r, "attempt")?)
                .bind(i(&r, "seq")?)
                .execute(&mut *tx)
                .await?;
                n += 1;
            }
            tx.commit().await?;
        }
    }

    fn open(&self, workspace: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
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

    async fn state_event(
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
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(next)
    }

    /// A lock taken by a person (not by a run's lease). Runs wait or fail while it is held.
    pub async fn lock_state_human(
        &self,
        workspace: &str,
        actor: &str,
        reason: &str,
    ) -> Result<std::result::Result<String, StateLock>> {
        let id = format!("human-{}", uuid::Uuid::new_v4());
        let info = serde_json::json!({"ID": id, "Operation": "tofuflow state lock", "Info": reason, "Who": actor, "Version": "", "Created": "", "Path": ""}).to_string();
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
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
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(owner)
    }

    /// The current state's content, if there is one (none yet, or deleted).
    pub async fn latest_state(&self, workspace: &str) -> Result<Option<Vec<u8>>> {
        match self.state_version(workspace, None).await {
            Ok((_, data)) => Ok(Some(data)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
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
        let r = sqlx::query("INSERT INTO state_locks (workspace, lock_id, info, task_id, epoch, owner, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace) DO NOTHING")
            .bind(workspace)
            .bind(lock_id)
            .bind(info)
            .bind(&task.id)
            .bind(task.epoch)
            .bind(&task.agent_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let held = self.state_lock(workspace).await?;
        match held {
            Some(h) if h.lock_id == lock_id && h.task_id == task.id && h.epoch == task.epoch => {
                Ok(Ok(()))
            }
            Some(h) => Ok(Err(h)),
            None => Box::pin(self.lock_state(workspace, lock_id, info, task)).await,
        }
    }

    pub async fn unlock_state(
        &self,
        workspace: &str,
        lock_id: &str,
        task_id: &str,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "DELETE FROM state_locks WHERE workspace = $1 AND lock_id = $2 AND task_id = $3",
        )
        .bind(workspace)
        .bind(lock_id)
        .bind(task_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
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
        let lock =
            sqlx::query("SELECT lock_id, task_id, epoch FROM state_locks WHERE workspace = $1")
                .bind(workspace)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(l) = lock {
            let held_by = s(&l, "lock_id")?;
            if lock_id != Some(held_by.as_str())
                || s(&l, "task_id")? != task.id
                || i(&l, "epoch")? != task.epoch
            {
                return Err(Error::Conflict(format!(
                    "state of workspace {workspace:?} is locked with ID {held_by}; this write carries {} and is rejected",
                    lock_id.map(|x| format!("ID {x}")).unwrap_or_else(|| "no lock ID".into())
                )));
            }
        } else if lock_id.is_some() {
            return Err(Error::Conflict(format!("write with lock ID {} rejected: workspace {workspace:?} is not locked (the lock was released or fenced)", lock_id.unwrap_or_default())));
        }
        let cur = sqlx::query("SELECT version, serial, lineage, sha256, size FROM state_versions WHERE workspace = $1 ORDER BY version DESC LIMIT 1")
            .bind(workspace)
            .fetch_optional(&mut *tx)
            .await?;
        let next = match &cur {
            // After a DELETE (a tombstone) the next write starts a new state.
            Some(c) if i(c, "size")? < 0 => i(c, "version")? + 1,
            Some(c) => {
                let (v, cs, cl, csha) = (
                    i(c, "version")?,
                    i(c, "serial")?,
                    s(c, "lineage")?,
                    s(c, "sha256")?,
                );
                if cl != lineage {
                    return Err(Error::Conflict(format!("lineage mismatch: workspace {workspace:?} holds lineage {cl}, the write has {lineage}")));
                }
                if serial < cs {
                    return Err(Error::Conflict(format!("stale serial: workspace {workspace:?} is at serial {cs}, the write has {serial}")));
                }
                if serial == cs {
                    if csha == sha {
                        return Ok(v); // identical retry
                    }
                    return Err(Error::Conflict(format!("serial {serial} already stored with different content for workspace {workspace:?}")));
                }
                v + 1
            }
            None => 1,
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

#[cfg(test)]
mod tests;
