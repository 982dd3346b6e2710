//! Workflow runs and their rollouts: start (from a workflow file and uploaded bundles), list,
//! show, approve, cancel, retry, and the rollout actions.

use super::dto::{
    RolloutActionPath, StartWorkflowBody, WorkflowRollbackBody, WorkflowRunJson, WorkflowsQuery,
};
use super::{call, Body, OptBody, Problem, Reply};
use crate::http::App;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;

fn req(id: String) -> v1::WorkflowRunRequest {
    v1::WorkflowRunRequest {
        workflow_run_id: id,
    }
}

/// Starts a workflow run: the workflow file's text and, for each `source` it names, the digest
/// of a bundle uploaded with `POST /api/v1/bundles` (operator on every workspace it touches).
/// With `Idempotency-Key`, a retry (same key, same body) answers the workflow run the first
/// request started; the same key with another body is 422.
#[utoipa::path(post, path = "/api/v1/workflow-runs", tag = "workflows", request_body = StartWorkflowBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes a retried start return the same workflow run")),
    responses((status = 200, body = WorkflowRunJson), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn start(
    State(app): State<App>,
    headers: HeaderMap,
    Body(b): Body<StartWorkflowBody>,
) -> Reply<WorkflowRunJson> {
    let msg = b.into_request(super::idempotency_key(&headers)?);
    Ok(Json(call!(app, headers, start_workflow, msg).into()))
}

/// Workflow runs, newest first, filtered by tags (those whose every workspace the caller may
/// read).
#[utoipa::path(get, path = "/api/v1/workflow-runs", tag = "workflows", params(WorkflowsQuery),
    responses((status = 200, body = Vec<WorkflowRunJson>), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    q: WorkflowsQuery,
) -> Reply<Vec<WorkflowRunJson>> {
    let msg = v1::ListWorkflowRunsRequest {
        before: q.before.unwrap_or_default(),
        limit: q.limit.unwrap_or(50),
        tags: super::dto::tag_filter(&q.tag)?,
    };
    let r = call!(app, headers, list_workflow_runs, msg);
    Ok(Json(r.workflow_runs.into_iter().map(Into::into).collect()))
}

/// A workflow run: every target with its state, run and why; its rollouts.
#[utoipa::path(get, path = "/api/v1/workflow-runs/{id}", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = WorkflowRunJson), (status = 404, body = Problem)))]
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<WorkflowRunJson> {
    Ok(Json(call!(app, headers, get_workflow_run, req(id)).into()))
}

/// Approves a workflow run that waits for approval as a whole.
#[utoipa::path(post, path = "/api/v1/workflow-runs/{id}/approve", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = WorkflowRunJson), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn approve(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<WorkflowRunJson> {
    Ok(Json(call!(app, headers, approve_workflow, req(id)).into()))
}

/// Cancels a workflow run: targets not started are cancelled, running runs are stopped.
#[utoipa::path(post, path = "/api/v1/workflow-runs/{id}/cancel", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = WorkflowRunJson), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<WorkflowRunJson> {
    let r = call!(app, headers, cancel_workflow, req(id));
    Ok(Json(r.workflow_run.unwrap_or_default().into()))
}

/// Runs again what failed, was skipped or cancelled in a workflow run.
#[utoipa::path(post, path = "/api/v1/workflow-runs/{id}/retry", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = WorkflowRunJson), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn retry(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<WorkflowRunJson> {
    Ok(Json(call!(app, headers, retry_workflow, req(id)).into()))
}

/// Pauses, resumes, aborts or retries the failed targets of a stack's rollout
/// (`action`: pause, resume, abort, retry-failed).
#[utoipa::path(post, path = "/api/v1/workflow-runs/{id}/rollouts/{stack}/{action}", tag = "workflows",
    params(RolloutActionPath),
    responses((status = 200, body = WorkflowRunJson), (status = 400, body = Problem), (status = 409, body = Problem)))]
pub async fn rollout(
    State(app): State<App>,
    headers: HeaderMap,
    Path(p): Path<RolloutActionPath>,
) -> Reply<WorkflowRunJson> {
    let msg = v1::RolloutRequest {
        workflow_run_id: p.id,
        stack: p.stack,
        action: p.action,
    };
    Ok(Json(call!(app, headers, rollout_action, msg).into()))
}

/// Re-applies what an earlier, succeeded workflow run applied, as a new workflow run
/// (`to`: that run; default the newest succeeded one before this with the same workspaces).
#[utoipa::path(post, path = "/api/v1/workflow-runs/{id}/rollback", tag = "workflows", params(("id" = String, Path)),
    request_body(content = Option<WorkflowRollbackBody>),
    responses((status = 200, body = WorkflowRunJson), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn rollback(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptBody(b): OptBody<WorkflowRollbackBody>,
) -> Reply<WorkflowRunJson> {
    let msg = v1::RollbackWorkflowRequest {
        workflow_run_id: id,
        to: b.to.unwrap_or_default(),
        approval: b.approval.unwrap_or_default(),
    };
    Ok(Json(call!(app, headers, rollback_workflow, msg).into()))
}
