//! Workflow runs: starting one, and the engine that moves it on. Touches: workflow_runs,
//! workflow_targets, runs (a target's run is an ordinary run, inserted like a submit),
//! audit_log.
//!
//! The engine is the store's before-commit hook ([`Engine`]): when a run of a workflow ends, in
//! the very transaction that ends it, its target is updated, dependants whose upstreams all
//! succeeded start (their inputs evaluated from the upstreams' stored state), dependants of a
//! failure are skipped naming it, and the workflow run ends when nothing is left. No polling.

use super::events::OnRunEvents;
use super::submit::insert_run;
use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::runs::events::RunEvent;
use crate::runs::RunKind;
use crate::store::*;
use crate::workflows::rollout::{self, Progress};
use crate::workflows::{self, Target, TargetState, WorkflowState};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use tofuflow_proto::workflow::{self as wf, Approval, Outputs, Upstream};

/// The variables file a target's run gets its inputs in (JSON keeps their types).
pub const INPUTS_FILE: &str = "tofuflow-inputs.tfvars.json";

/// A workflow run to start (the file checked, its bundles uploaded).
#[derive(Clone, Debug)]
pub struct NewWorkflow {
    pub file_name: String,
    pub definition: String,
    pub bundles: BTreeMap<String, String>,
    pub decls: BTreeMap<String, BTreeMap<String, crate::runs::variables::Declared>>,
    pub destroy: bool,
    pub approval: Approval,
    pub pool: String,
    pub actor: String,
    pub tags: BTreeMap<String, String>,
    pub targets: Vec<wf::Target>,
    /// A time to live for what it creates, from its start (0: none; `lifecycle/ttl.rs`).
    pub ttl_ms: i64,
    /// The start's idempotency key (scoped to its actor) and what the request was.
    pub idempotency: Option<crate::store::Idempotency>,
}

/// The before-commit hook that moves workflow runs on.
pub struct Engine {
    pub policy: Policy,
}

#[tonic::async_trait]
impl OnRunEvents for Engine {
    async fn on_run_events(&self, _store: &Store, tx: &mut Tx, events: &[RunEvent]) -> Result<()> {
        for e in events {
            let RunEvent::Moved { run_id, to, .. } = e else {
                continue;
            };
            if workflows::outcome(*to, "").is_none() {
                continue;
            }
            if let Some((wf_id, key)) = target_of_run(tx, run_id).await? {
                run_ended(tx, &self.policy, &wf_id, &key, run_id).await?;
            }
        }
        Ok(())
    }
}

/// A target's run ended: record how, then move the workflow run on from that target alone
/// (`workflow_step.rs`: the work does not grow with the workflow run's size).
async fn run_ended(
    tx: &mut Tx,
    policy: &Policy,
    wf_id: &str,
    key: &str,
    run_id: &str,
) -> Result<()> {
    let w = lock_workflow(tx, wf_id).await?;
    let Some(mut t) = targets_named_c(tx, wf_id, &[key]).await?.pop() else {
        return Ok(());
    };
    if t.run_id != run_id {
        return Ok(()); // a run of an earlier attempt of this target
    }
    let keys = tx.keys.clone();
    let run = get_run_c(&keys, tx, run_id).await?;
    let Some((state, why)) = workflows::outcome(run.state, &run.error) else {
        return Ok(());
    };
    let (state, why) = match fallback_step(tx, policy, &w, &mut t, state, &why).await? {
        Some(moved) => moved,
        None => (state, why),
    };
    set_target(tx, wf_id, &t, state, None, &why).await?;
    t.state = state;
    t.reason = why;
    super::workflow_step::step(tx, policy, &w, t).await
}

/// A stack with a `fallback`: a run that failed for lack of capacity is cleaned up (a destroy
/// of what it left, with the same inputs), then the target goes back to waiting on its next
/// candidate. Answers the target's new state and why, when the fallback takes over.
async fn fallback_step(
    tx: &mut Tx,
    policy: &Policy,
    w: &WorkflowRun,
    t: &mut Target,
    state: TargetState,
    why: &str,
) -> Result<Option<(TargetState, String)>> {
    let file = parsed(w)?;
    let Some(f) = file.stack(&t.stack).and_then(|s| s.fallback.clone()) else {
        return Ok(None);
    };
    let value = |i: usize| f.values.get(i).map(|v| v.to_string()).unwrap_or_default();
    if t.cleaning {
        t.cleaning = false;
        if state != TargetState::Succeeded {
            return Ok(Some((
                TargetState::Failed,
                format!("cleaning up after a capacity error failed: {why}"),
            )));
        }
        t.candidate += 1;
        return Ok(Some((
            TargetState::Waiting,
            format!("cleaned up; trying {} = {}", f.variable, value(t.candidate)),
        )));
    }
    if state != TargetState::Failed || w.destroy || t.candidate + 1 >= f.values.len() {
        return Ok(None);
    }
    let keys = tx.keys.clone();
    let lines = last_log_lines_c(tx, &keys, &t.run_id, 2000).await?;
    let Some(found) = workflows::capacity::capacity_error(lines.iter().map(String::as_str)) else {
        return Ok(None);
    };
    let upstream = upstream_outputs(tx, &file, &w.id, t).await?;
    let cleanup = start_target(tx, policy, w, &file, t, &upstream, Some(RunKind::Destroy)).await?;
    t.cleaning = true;
    let reason = format!("capacity error ({found}) with {} = {}: destroying what it left (run {cleanup}), then trying {}", f.variable, value(t.candidate), value(t.candidate + 1));
    tx.audit(AuditEntry::new(AuditKind::WorkflowFallback, &w.actor).workspace(&t.workspace).run(&t.run_id).detail(serde_json::json!({
        "workflow_run": w.id, "target": t.key, "matched": found, "variable": f.variable,
        "from": f.values.get(t.candidate), "to": f.values.get(t.candidate + 1), "cleanup_run": cleanup,
    })));
    set_target(tx, &w.id, t, TargetState::Running, Some(&cleanup), &reason).await?;
    t.runs.push(cleanup.clone());
    t.run_id = cleanup;
    Ok(Some((TargetState::Running, reason)))
}

/// Starts what can start, skips what cannot run any more, ends the workflow run when nothing
/// is left. A target that cannot start (its inputs cannot be evaluated) fails, and the loop
/// goes round again for its dependants.
pub(crate) async fn advance(
    tx: &mut Tx,
    policy: &Policy,
    w: &WorkflowRun,
    mut targets: Vec<Target>,
) -> Result<()> {
    if w.state != WorkflowState::Running {
        return Ok(());
    }
    let file = parsed(w)?;
    let stored = rollouts_c(tx, &w.id).await?;
    let mut rollouts = stored.clone();
    for s in file.stacks.iter().filter(|s| s.rollout.is_some()) {
        if !rollouts.iter().any(|p| p.stack == s.name) {
            rollouts.push(Progress::new(&s.name));
        }
    }
    loop {
        let mut next = workflows::next(&targets, w.destroy);
        for (key, why) in &next.skip {
            let t = find(&mut targets, key)?;
            set_target(tx, &w.id, t, TargetState::Skipped, None, why).await?;
            t.state = TargetState::Skipped;
            t.reason = why.clone();
        }
        gate_rollouts(&file, &mut rollouts, &targets, &mut next.start);
        let mut failed_to_start = false;
        for key in &next.start {
            let t = find(&mut targets, key)?;
            failed_to_start |= !start_one(tx, policy, w, &file, t).await?;
        }
        if failed_to_start {
            continue;
        }
        for p in rollouts.iter().filter(|p| !stored.contains(p)) {
            save_rollout(tx, &w.id, p).await?;
        }
        if let Some(end) = next.end {
            finish(tx, w, end).await?;
        }
        return Ok(());
    }
}

/// Starts one target (its inputs from its upstreams' stored outputs): running with its run,
/// or failed with why it could not start. Answers whether it started.
pub(super) async fn start_one(
    tx: &mut Tx,
    policy: &Policy,
    w: &WorkflowRun,
    file: &wf::Workflow,
    t: &mut Target,
) -> Result<bool> {
    let started = match upstream_outputs(tx, file, &w.id, t).await {
        Ok(up) => start_target(tx, policy, w, file, t, &up, None).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(run_id) => {
            set_target(tx, &w.id, t, TargetState::Running, Some(&run_id), "started").await?;
            t.runs.push(run_id.clone());
            t.run_id = run_id;
            t.state = TargetState::Running;
            Ok(true)
        }
        Err(e) => {
            let why = format!("could not start: {e}");
            set_target(tx, &w.id, t, TargetState::Failed, None, &why).await?;
            t.state = TargetState::Failed;
            t.reason = why;
            Ok(false)
        }
    }
}

/// Keeps, of the targets about to start, only those their stack's rollout lets go now.
fn gate_rollouts(
    file: &wf::Workflow,
    rollouts: &mut [Progress],
    targets: &[Target],
    start: &mut Vec<String>,
) {
    let now = now_ms();
    for p in rollouts.iter_mut() {
        let Some(r) = file.stack(&p.stack).and_then(|s| s.rollout.as_ref()) else {
            continue;
        };
        let mine: Vec<&Target> = targets.iter().filter(|t| t.stack == p.stack).collect();
        let allowed = rollout::gate(r, p, &mine, now);
        start.retain(|k| allowed.contains(k) || mine.iter().all(|t| &t.key != k));
    }
}

/// A workflow run's file, parsed once per process (a workflow run's file never changes):
/// parsing it on every event would make the work per event grow with the file.
pub(super) fn parsed(w: &WorkflowRun) -> Result<Arc<wf::Workflow>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<wf::Workflow>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(f) = cache.lock().ok().and_then(|c| c.get(&w.id).cloned()) {
        return Ok(f);
    }
    let f = wf::parse(&w.file_name, &w.definition).map_err(|p| {
        Error::Internal(format!(
            "stored workflow file no longer parses: {}",
            wf::describe(&p)
        ))
    })?;
    let f = Arc::new(f);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(w.id.clone(), f.clone());
    }
    Ok(f)
}

fn find<'a>(targets: &'a mut [Target], key: &str) -> Result<&'a mut Target> {
    targets
        .iter_mut()
        .find(|t| t.key == key)
        .ok_or_else(|| Error::Internal(format!("workflow target {key} vanished")))
}

/// The workflow run is over: its state, and an audit entry.
pub(super) async fn finish(tx: &mut Tx, w: &WorkflowRun, end: WorkflowState) -> Result<()> {
    let counts = state_counts_c(tx, &w.id).await?;
    let count = |s: TargetState| counts.get(s.as_str()).copied().unwrap_or(0);
    let why = format!(
        "{} succeeded, {} failed, {} skipped, {} cancelled",
        count(TargetState::Succeeded),
        count(TargetState::Failed),
        count(TargetState::Skipped),
        count(TargetState::Cancelled)
    );
    set_workflow_state(tx, &w.id, end, &why).await?;
    tx.audit(
        AuditEntry::new(AuditKind::WorkflowFinished, &w.actor).detail(
            serde_json::json!({ "workflow_run": w.id, "state": end.as_str(), "summary": why }),
        ),
    );
    Ok(())
}

/// The outputs of the targets `t` reads from, from the state tofuflow stores for them.
async fn upstream_outputs(
    tx: &mut Tx,
    file: &wf::Workflow,
    wf_id: &str,
    t: &Target,
) -> Result<Upstream> {
    let stack = file
        .stack(&t.stack)
        .ok_or_else(|| Error::Internal(format!("no stack {}", t.stack)))?;
    let my_key = t.each.as_ref().map(|(k, _)| k.as_str());
    let keys = tx.keys.clone();
    let mut up = Upstream::new();
    for r in &stack.refs {
        let k = match &r.index {
            wf::Index::None => wf::target_key(&r.stack, None),
            wf::Index::EachKey => wf::target_key(&r.stack, my_key),
            wf::Index::Key(x) => wf::target_key(&r.stack, Some(x)),
        };
        if up.contains_key(&k) {
            continue;
        }
        let ws = targets_named_c(tx, wf_id, &[&k])
            .await?
            .pop()
            .ok_or_else(|| Error::Internal(format!("no target {k}")))?
            .workspace;
        let ws = &ws;
        let state = current_state_c(tx, &keys, ws).await?.ok_or_else(|| {
            Error::Conflict(format!(
                "{k} has no state in workspace {ws} to read outputs from"
            ))
        })?;
        up.insert(k, Outputs::from_state(&state).map_err(Error::Internal)?);
    }
    Ok(up)
}

/// Inserts the run of one target (in the transaction that let it start; `kind`: other than the
/// workflow run's, e.g. a fallback's cleanup); answers its id.
async fn start_target(
    tx: &mut Tx,
    policy: &Policy,
    w: &WorkflowRun,
    file: &wf::Workflow,
    t: &Target,
    up: &Upstream,
    kind: Option<RunKind>,
) -> Result<String> {
    let stack = file
        .stack(&t.stack)
        .ok_or_else(|| Error::Internal(format!("no stack {}", t.stack)))?;
    let (mut inputs, sensitive) =
        wf::inputs(file, &t.stack, &t.each, up).map_err(Error::Conflict)?;
    if let Some(f) = &stack.fallback {
        let v = f.values.get(t.candidate).cloned().unwrap_or_default();
        inputs.insert(f.variable.clone(), v);
    }
    let mut decls = w.decls.get(&stack.source).cloned().unwrap_or_default();
    for k in sensitive {
        decls.entry(k).or_default().sensitive = true;
    }
    let var_files = if inputs.is_empty() {
        Vec::new()
    } else {
        vec![(
            INPUTS_FILE.to_string(),
            serde_json::to_vec_pretty(&inputs).map_err(json_err)?,
        )]
    };
    let mut tags = w.tags.clone();
    tags.extend(t.tags.clone());
    tags.insert("workflow_run".into(), w.id.clone());
    tags.insert("stack".into(), t.stack.clone());
    if let Some((k, _)) = &t.each {
        tags.insert("each_key".into(), k.clone());
    }
    let n = NewRun {
        limits: Limits::default(),
        variable_decls: decls,
        workspace: t.workspace.clone(),
        pool: if t.pool.is_empty() {
            w.pool.clone()
        } else {
            t.pool.clone()
        },
        kind: kind.unwrap_or(if w.destroy {
            RunKind::Destroy
        } else {
            RunKind::PlanAndApply
        }),
        bundle_digest: w
            .bundles
            .get(&stack.source)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no bundle for {}", stack.source)))?,
        variables: BTreeMap::new(),
        var_files,
        // A fallback's cleanup destroys only what the failed try left: it needs no approval.
        auto_approve: w.approval != Approval::Each || kind == Some(RunKind::Destroy),
        actor: w.actor.clone(),
        commit: String::new(),
        pipeline_id: w.id.clone(),
        source: stack.source.clone(),
        traceparent: String::new(),
        tags,
        idempotency: None,
        env: Default::default(),
        ttl_ms: 0,
    };
    Ok(insert_run(tx, &n, policy).await?.id)
}
