//! Workflow runs as users drive them: start (the file checked again here, every target's
//! workspace authorised and its rules checked before anything is written), show, list,
//! approve as a whole, cancel, retry. A caller acts on a workflow run only with the right on
//! every workspace it touches.

use super::runs::check_rules;
use super::{caller, Reply, Shared};
use crate::api::convert::workflow_to_pb;
use crate::auth::{self, Action, Caller};
use crate::error::{Error, Result};
use crate::lifecycle::rollout::RolloutVerb;
use crate::lifecycle::workflow::NewWorkflow;
use crate::store::{Store, WorkflowRun};
use crate::workflows::rollout::{failures, wave_of, Progress};
use crate::workflows::Target;
use std::collections::BTreeMap;
use tofuflow_proto::names::{valid_pool, valid_tags, valid_workspace};
use tofuflow_proto::v1;
use tofuflow_proto::workflow::{self as wf, Approval};
use tonic::{Request, Response};

/// The name to record if `c` may perform `action` on every one of `workspaces`.
fn authorize_all<'a>(
    c: &Caller,
    action: Action,
    workspaces: impl IntoIterator<Item = &'a str>,
    claimed: Option<&str>,
) -> Result<String> {
    let mut name = String::new();
    for ws in workspaces {
        name = auth::authorize(c, action, Some(ws), claimed)?.name;
    }
    Ok(name)
}

/// Starts a workflow run (operator on every workspace it touches).
#[tracing::instrument(skip_all, fields(file = %req.get_ref().file_name))]
pub(super) async fn start(
    shared: &Shared,
    req: Request<v1::StartWorkflowRequest>,
) -> Reply<v1::WorkflowRun> {
    let c = caller(shared, &req).await?;
    let r = req.into_inner();
    let n = prepare(shared, &c, &r).await?;
    let actor = n.actor.clone();
    let w = shared.store.start_workflow_once(n, &shared.policy).await?;
    tracing::info!(workflow_run = %w.id, actor = %actor, "workflow run started");
    Ok(Response::new(shown(&shared.store, &w.id).await?))
}

/// The workflow run `r` asks for, checked as a start checks it: the file, the caller's right on
/// every target's workspace, each target's names, tags and rules (also for a schedule that
/// will start it).
pub(super) async fn prepare(
    shared: &Shared,
    c: &Caller,
    r: &v1::StartWorkflowRequest,
) -> Result<NewWorkflow> {
    let (file, targets) = shared.store.parse_workflow(r)?;
    let actor = authorize_all(
        c,
        Action::Submit,
        targets.iter().map(|t| t.workspace.as_str()),
        Some(&r.actor),
    )?;
    let n = shared.store.workflow_from_request(r, &actor).await?;
    check_targets(
        shared, &file, &targets, &n.bundles, &n.pool, n.approval, &r.tags,
    )
    .await?;
    Ok(n)
}

/// Every target's names, tags and rules, checked as a submit would check its run.
async fn check_targets(
    shared: &Shared,
    file: &wf::Workflow,
    targets: &[wf::Target],
    bundles: &BTreeMap<String, String>,
    pool: &str,
    approval: Approval,
    tags: &std::collections::HashMap<String, String>,
) -> Result<()> {
    for t in targets {
        let bad = |m: String| Error::InvalidInput(format!("target {}: {m}", t.key));
        valid_workspace(&t.workspace).map_err(bad)?;
        let pool = if t.pool.is_empty() {
            pool
        } else {
            t.pool.as_str()
        };
        valid_pool(pool).map_err(bad)?;
        let mut all: BTreeMap<String, String> = tags.clone().into_iter().collect();
        all.extend(t.tags.clone());
        for k in ["workflow_run", "stack", "each_key"] {
            all.insert(k.into(), "x".into());
        }
        valid_tags(&all).map_err(bad)?;
        let source = &file
            .stack(&t.stack)
            .ok_or_else(|| Error::Internal("stack vanished".into()))?
            .source;
        let probe = v1::SubmitRunRequest {
            workspace: t.workspace.clone(),
            source: source.clone(),
            bundle_digest: bundles[source].clone(),
            auto_approve: approval != Approval::Each,
            ..Default::default()
        };
        check_rules(shared, &probe, pool)
            .await
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

/// A workflow run with its targets and their runs' states.
async fn shown(store: &Store, id: &str) -> Result<v1::WorkflowRun> {
    let (w, targets, progress) = store.workflow_view(id).await?;
    let mut runs = BTreeMap::new();
    for t in targets.iter().filter(|t| !t.run_id.is_empty()) {
        let r = store.get_run(&t.run_id).await?;
        runs.insert(
            t.run_id.clone(),
            (r.state.as_str().to_string(), r.bundle_digest),
        );
    }
    let states = runs.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    let mut pb = workflow_to_pb(&w, &targets, &states);
    for t in &mut pb.targets {
        t.bundle_digest = runs.get(&t.run_id).map(|r| r.1.clone()).unwrap_or_default();
    }
    if let Ok(file) = wf::parse(&w.file_name, &w.definition) {
        add_rollouts(&mut pb, &file, &targets, &progress);
    }
    Ok(pb)
}

/// Each rollout's progress, and the wave of each of its targets.
fn add_rollouts(
    pb: &mut v1::WorkflowRun,
    file: &wf::Workflow,
    targets: &[Target],
    progress: &[Progress],
) {
    for p in progress {
        let Some(r) = file.stack(&p.stack).and_then(|s| s.rollout.as_ref()) else {
            continue;
        };
        let mine: Vec<&Target> = targets.iter().filter(|t| t.stack == p.stack).collect();
        let total = mine.len();
        for (n, t) in mine.iter().enumerate() {
            if let Some(x) = pb.targets.iter_mut().find(|x| x.key == t.key) {
                x.wave = wave_of(r, total, n) as u32;
            }
        }
        pb.rollouts.push(v1::RolloutStatus {
            stack: p.stack.clone(),
            state: p.state.as_str().into(),
            wave: (p.wave + 1) as u32,
            waves: r.wave_ends(total).len() as u32,
            failures: failures(p, &mine) as u32,
            max_failures: r.budget(total) as u32,
            max_parallel: r.max_parallel,
            reason: p.reason.clone(),
            resume_after_unix_ms: p.resume_after_ms,
        });
    }
}

/// Pauses, resumes, aborts or retries the failed targets of a rollout (operator on every
/// workspace of the workflow run).
pub(super) async fn rollout(
    shared: &Shared,
    req: Request<v1::RolloutRequest>,
) -> Reply<v1::WorkflowRun> {
    let c = caller(shared, &req).await?;
    let r = req.get_ref();
    let verb = match r.action.as_str() {
        "pause" => RolloutVerb::Pause,
        "resume" => RolloutVerb::Resume,
        "abort" => RolloutVerb::Abort,
        "retry-failed" => RolloutVerb::RetryFailed,
        a => {
            return Err(Error::InvalidInput(format!(
                "rollout action {a:?}: use pause, resume, abort or retry-failed"
            ))
            .into())
        }
    };
    let (_, _, who) = with_right(shared, &c, &r.workflow_run_id, Action::Submit).await?;
    shared
        .store
        .rollout_action(&r.workflow_run_id, &r.stack, verb, &who, &shared.policy)
        .await?;
    tracing::info!(workflow_run = %r.workflow_run_id, stack = %r.stack, action = %r.action, by = %who, "rollout changed");
    Ok(Response::new(
        shown(&shared.store, &r.workflow_run_id).await?,
    ))
}

/// A workflow run the caller may `action` on (every workspace of it).
async fn with_right(
    shared: &Shared,
    c: &Caller,
    id: &str,
    action: Action,
) -> Result<(WorkflowRun, Vec<Target>, String)> {
    let (w, targets) = shared.store.workflow_run(id).await?;
    let name = authorize_all(
        c,
        action,
        targets.iter().map(|t| t.workspace.as_str()),
        None,
    )?;
    Ok((w, targets, name))
}

/// One workflow run (reader of its workspaces).
pub(super) async fn get(
    shared: &Shared,
    req: Request<v1::WorkflowRunRequest>,
) -> Reply<v1::WorkflowRun> {
    let c = caller(shared, &req).await?;
    with_right(shared, &c, &req.get_ref().workflow_run_id, Action::ReadRuns).await?;
    Ok(Response::new(
        shown(&shared.store, &req.get_ref().workflow_run_id).await?,
    ))
}

/// Workflow runs, newest first: those whose every workspace the caller may read.
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListWorkflowRunsRequest>,
) -> Reply<v1::ListWorkflowRunsResponse> {
    let c = caller(shared, &req).await?;
    let r = req.get_ref();
    let limit = if r.limit == 0 { 50 } else { r.limit.min(500) } as i64;
    let mut out = Vec::new();
    let tags: BTreeMap<String, String> = r.tags.clone().into_iter().collect();
    for w in shared
        .store
        .list_workflow_runs(&r.before, limit, &tags)
        .await?
    {
        let (_, targets) = shared.store.workflow_run(&w.id).await?;
        if authorize_all(
            &c,
            Action::ReadRuns,
            targets.iter().map(|t| t.workspace.as_str()),
            None,
        )
        .is_ok()
        {
            out.push(workflow_to_pb(&w, &targets, &BTreeMap::new()));
        }
    }
    Ok(Response::new(v1::ListWorkflowRunsResponse {
        workflow_runs: out,
    }))
}

/// Approves a workflow run awaiting approval as a whole (approver on every workspace; where a
/// four-eyes rule holds, not the user who started it).
pub(super) async fn approve(
    shared: &Shared,
    req: Request<v1::WorkflowRunRequest>,
) -> Reply<v1::WorkflowRun> {
    let c = caller(shared, &req).await?;
    let id = &req.get_ref().workflow_run_id;
    let (w, targets, who) = with_right(shared, &c, id, Action::Approve).await?;
    let rules = crate::auth::Rules::load(&shared.store).await?;
    if let Some(t) = targets
        .iter()
        .find(|t| rules.four_eyes(&t.workspace).is_some())
    {
        if who == w.actor {
            return Err(Error::PermissionDenied(format!(
                "workspace {} requires four eyes: {who} started this workflow run, so another user with the approver role must approve it",
                t.workspace
            )).into());
        }
    }
    shared
        .store
        .approve_workflow(id, &who, &shared.policy)
        .await?;
    Ok(Response::new(shown(&shared.store, id).await?))
}

/// Cancels a workflow run (cancel right on every workspace).
pub(super) async fn cancel(
    shared: &Shared,
    req: Request<v1::WorkflowRunRequest>,
) -> Reply<v1::CancelWorkflowResponse> {
    let c = caller(shared, &req).await?;
    let id = &req.get_ref().workflow_run_id;
    let (_, _, who) = with_right(shared, &c, id, Action::Cancel).await?;
    let runs = shared
        .store
        .cancel_workflow(id, &who, &shared.policy)
        .await?;
    Ok(Response::new(v1::CancelWorkflowResponse {
        workflow_run: Some(shown(&shared.store, id).await?),
        cancelled_runs: runs,
    }))
}

/// Starts again what failed, was skipped or cancelled (operator on every workspace).
pub(super) async fn retry(
    shared: &Shared,
    req: Request<v1::WorkflowRunRequest>,
) -> Reply<v1::WorkflowRun> {
    let c = caller(shared, &req).await?;
    let id = &req.get_ref().workflow_run_id;
    let (_, _, who) = with_right(shared, &c, id, Action::Submit).await?;
    shared
        .store
        .retry_workflow(id, &who, &shared.policy)
        .await?;
    Ok(Response::new(shown(&shared.store, id).await?))
}

/// Re-applies what an earlier, succeeded workflow run applied (its file and bundles) as a new
/// workflow run, tagged with what it rolls back (operator on every workspace).
pub(super) async fn rollback(
    shared: &Shared,
    req: Request<v1::RollbackWorkflowRequest>,
) -> Reply<v1::WorkflowRun> {
    let c = caller(shared, &req).await?;
    let r = req.into_inner();
    // The right on what is rolled back first: nothing about other runs is told to a caller
    // who may not (the one rolled back to is authorised below, on its own workspaces).
    let from = with_right(shared, &c, &r.workflow_run_id, Action::Submit)
        .await?
        .0;
    let to = if r.to.is_empty() {
        shared.store.rollback_target(&r.workflow_run_id).await?
    } else {
        shared.store.workflow_run(&r.to).await?.0
    };
    if to.state != crate::workflows::WorkflowState::Succeeded || to.destroy {
        return Err(Error::Conflict(format!(
            "workflow run {} is {}{}: roll back to one that applied and succeeded",
            to.id,
            to.state.as_str(),
            if to.destroy { " (a destroy)" } else { "" }
        ))
        .into());
    }
    let file =
        wf::parse(&to.file_name, &to.definition).map_err(|p| Error::Internal(wf::describe(&p)))?;
    let targets =
        wf::expand(&file, &to.file_name).map_err(|p| Error::Internal(wf::describe(&p)))?;
    let actor = authorize_all(
        &c,
        Action::Submit,
        targets.iter().map(|t| t.workspace.as_str()),
        None,
    )?;
    let approval = match r.approval.as_str() {
        "" => to.approval,
        a => Approval::parse(a).ok_or_else(|| {
            Error::InvalidInput(format!("approval {a:?}: use each, once or auto"))
        })?,
    };
    let mut tags = to.tags.clone();
    tags.insert("rollback_of".into(), from.id.clone());
    tags.insert("rollback_to".into(), to.id.clone());
    let n = NewWorkflow {
        file_name: to.file_name,
        definition: to.definition,
        bundles: to.bundles,
        decls: to.decls,
        destroy: false,
        approval,
        pool: to.pool,
        actor: actor.clone(),
        tags,
        targets,
        // A rollback re-applies; the environments' TTLs, if any, are those already set.
        ttl_ms: 0,
        idempotency: None,
    };
    let w = shared.store.start_workflow(n, &shared.policy).await?;
    tracing::info!(workflow_run = %w.id, rollback_of = %from.id, rollback_to = %to.id, actor = %actor, "workflow rollback started");
    Ok(Response::new(shown(&shared.store, &w.id).await?))
}
