//! Submitting a run. Touches: runs, tasks, outbox, transitions, audit_log.

use super::group_commit::{Job, Kind, Writing};
use super::idempotency::{remember_key, Keyed};
use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::runs::{Phase, RunState};
use crate::store::*;
use base64::Engine;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// A submit waiting for its group commit (`group_commit.rs`).
struct SubmitJob {
    new: NewRun,
    policy: Policy,
    run: Option<Run>,
    answer: oneshot::Sender<Result<Run>>,
}

impl Job for SubmitJob {
    fn kind(&self) -> Kind {
        Kind::Submit
    }

    fn key(&self) -> &str {
        &self.new.workspace
    }

    fn write<'a>(&'a mut self, _: &'a Store, tx: &'a mut Tx) -> Writing<'a> {
        Box::pin(async move {
            self.run = Some(insert_run(tx, &self.new, &self.policy).await?);
            Ok(())
        })
    }

    fn answer(self: Box<Self>, r: Result<()>) {
        let run = self.run;
        let _ = self.answer.send(r.and_then(|()| {
            run.ok_or_else(|| Error::Internal("a committed submit without its run".into()))
        }));
    }
}

impl Store {
    /// Creates a run and its plan task, and queues the task, in one transaction (shared with
    /// the calls that arrive with it, when the group commit runs).
    pub async fn submit(&self, new: NewRun, policy: &Policy) -> Result<Run> {
        let (answer, answered) = oneshot::channel();
        let job = SubmitJob {
            new,
            policy: policy.clone(),
            run: None,
            answer,
        };
        self.grouped(Box::new(job), answered).await
    }
}

/// Writes a run, its plan task (or its wait for the workspace) and its outbox row into `tx`: a
/// submit, or a workflow starting one of its targets in the transaction that ended an upstream.
pub(crate) async fn insert_run(tx: &mut Tx, n: &NewRun, policy: &Policy) -> Result<Run> {
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
    // Runs that may apply take turns on a workspace: the next one waits `pending`.
    let holder = if !n.kind.takes_turns() {
        None
    } else {
        workspace_holder(tx, &n.workspace, true).await?
    };
    let state = if holder.is_some() {
        RunState::Pending
    } else {
        RunState::Queued
    };
    let aad = run_aad(&id);
    let keys = tx.keys.clone();
    let seal = |v: String| keys.seal_text(&aad, &v).map_err(Error::Internal);
    let variables = seal(serde_json::to_string(&n.variables).map_err(json_err)?)?;
    let var_files = seal(serde_json::to_string(&vf).map_err(json_err)?)?;
    sqlx::query(
            "INSERT INTO runs (id, workspace, pool, kind, state, bundle_digest, variables, var_files, auto_approve, submitted_by, commit_sha, pipeline_id, traceparent, created_ms, updated_ms, deadline_ms, limits, sensitive_variables, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
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
        .bind(&n.source)
        .execute(&mut **tx)
        .await?;
    run_extras(tx, n, &id, now).await?;
    if n.ttl_ms > 0 {
        set_run_ttl(tx, &id, n.ttl_ms).await?;
    }
    let run = get_run_c(&keys, tx, &id).await?;
    let mut why = format!("submitted ({}) to pool {}", n.kind.as_str(), n.pool);
    match &holder {
        None => {
            new_task(tx, &run, Phase::Plan, now, policy).await?;
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
        .execute(&mut **tx)
        .await?;
    tx.audit(submitted(n, &id));
    Ok(run)
}

/// The audit entry of a submitted run: where its module comes from and what it is.
fn submitted(n: &NewRun, id: &str) -> AuditEntry {
    AuditEntry::new(AuditKind::RunSubmitted, &n.actor)
        .workspace(&n.workspace)
        .run(id)
        .detail(serde_json::json!({
            "kind": n.kind.as_str(),
            "pool": n.pool,
            "source": n.source,
            "commit": n.commit,
            "pipeline_id": n.pipeline_id,
            "bundle_digest": n.bundle_digest,
            "auto_approve": n.auto_approve,
            "tags": n.tags,
            "ttl_ms": n.ttl_ms,
        }))
}

/// What a new run has besides its row: tags, its own environment, the idempotency key.
async fn run_extras(tx: &mut Tx, n: &NewRun, id: &str, now: i64) -> Result<()> {
    insert_tags(tx, id, &n.tags).await?;
    store_run_env(tx, id, &n.env).await?;
    remember_key(tx, Keyed::Run, &n.actor, n.idempotency.as_ref(), id, now).await
}

/// A run's own environment variables, sealed with the state key (refused without one, as
/// connections are): kept only until the run ends (`store/transitions.rs` erases them).
async fn store_run_env(tx: &mut Tx, run_id: &str, env: &ConnectionValues) -> Result<()> {
    if env.env.is_empty() {
        return Ok(());
    }
    if tx.keys.current.is_none() {
        return Err(Error::InvalidInput(
            "a run's env is stored encrypted and this coordinator has no --state-key: start it with --state-key (make one with `head -c32 /dev/urandom | base64`), or use the workspace's connections".into(),
        ));
    }
    let json = serde_json::to_string(env).map_err(json_err)?;
    let sealed = tx
        .keys
        .seal_text(&run_aad(run_id), &json)
        .map_err(Error::Internal)?;
    sqlx::query("UPDATE runs SET run_env = $1 WHERE id = $2")
        .bind(sealed)
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A new run's tags: on the run (to show) and one row each (to filter on).
async fn insert_tags(tx: &mut Tx, run_id: &str, tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE runs SET tags = $1 WHERE id = $2")
        .bind(serde_json::to_string(tags).map_err(json_err)?)
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    for (k, v) in tags {
        sqlx::query("INSERT INTO run_tags (run_id, tag_key, tag_value) VALUES ($1, $2, $3)")
            .bind(run_id)
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Submits, unless a submit with the same idempotency key (by the same actor, within
    /// [`IDEMPOTENCY_KEEP_MS`](super::idempotency::IDEMPOTENCY_KEEP_MS)) came first: then its
    /// run, or a refusal when that request differed.
    pub async fn submit_once(&self, n: NewRun, policy: &Policy) -> Result<Run> {
        let (actor, k) = (n.actor.clone(), n.idempotency.clone());
        let make = self.submit(n, policy);
        self.once(Keyed::Run, &actor, k.as_ref(), make, |id| async move {
            self.get_run(&id).await
        })
        .await
    }
}
