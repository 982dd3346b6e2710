//! Runs: list (filters, tags, paging), submit (idempotent with `Idempotency-Key`), show,
//! approve, reject, cancel; bundles.

use super::dto::{
    BundleJson, PlanJson, ReasonBody, RunJson, RunPage, RunQuery, ShowQuery, SubmitBody,
};
use super::{call, Body, OptBody, Params, Problem, Reply};
use crate::http::App;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;

/// Runs, newest first: filtered by workspace, state and tags, a page at a time.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery),
    responses((status = 200, body = RunPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list(State(app): State<App>, headers: HeaderMap, q: RunQuery) -> Reply<RunPage> {
    let tags = super::dto::tag_filter(&q.tag)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let msg = v1::ListRunsRequest {
        workspace: q.workspace.unwrap_or_default(),
        state: q.state.unwrap_or_default(),
        limit,
        tags,
        before: q.before.unwrap_or_default(),
    };
    let r = call!(app, headers, list_runs, msg);
    let next = (r.runs.len() as u32 == limit)
        .then(|| r.runs.last().map(|x| x.id.clone()))
        .flatten();
    Ok(Json(RunPage {
        runs: r.runs.into_iter().map(RunJson::from).collect(),
        next,
    }))
}

/// Starts a run from an uploaded bundle. With `Idempotency-Key`, a retry (same key, same
/// body) answers the run the first request started; the same key with another body is 422.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", request_body = SubmitBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes a retried submit return the same run")),
    responses((status = 201, body = RunJson), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    Body(body): Body<SubmitBody>,
) -> Result<(StatusCode, Json<RunJson>), Problem> {
    let key = super::idempotency_key(&headers)?;
    let msg = body.into_request(key).map_err(Problem::bad_request)?;
    let run = call!(app, headers, submit_run, msg);
    Ok((StatusCode::CREATED, Json(RunJson::from(run))))
}

/// A run with its history, plan counts, outputs, state versions and audit entries.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", params(("id" = String, Path), ShowQuery),
    responses((status = 200, body = RunJson), (status = 404, body = Problem)))]
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(q): Params<ShowQuery>,
) -> Reply<RunJson> {
    let msg = v1::GetRunRequest {
        run_id: id,
        show_sensitive: q.show_sensitive,
        actor: String::new(),
    };
    Ok(Json(RunJson::from(call!(app, headers, get_run, msg))))
}

/// The run's saved plan: what it will create, change, replace and destroy, attribute by
/// attribute, with sensitive values masked and unknown ones marked (`after_unknown`).
#[utoipa::path(get, path = "/api/v1/runs/{id}/plan", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = PlanJson), (status = 404, body = Problem)))]
pub async fn plan(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<PlanJson> {
    let msg = v1::GetRunRequest {
        run_id: id,
        ..Default::default()
    };
    Ok(Json(PlanJson::from(call!(app, headers, get_plan, msg))))
}

fn action(id: String, body: ReasonBody) -> v1::RunActionRequest {
    v1::RunActionRequest {
        run_id: id,
        actor: String::new(),
        reason: body.reason,
    }
}

/// Approves a plan that waits for approval: its saved plan is applied (approver).
#[utoipa::path(post, path = "/api/v1/runs/{id}/approve", tag = "runs", params(("id" = String, Path)),
    request_body(content = Option<ReasonBody>), responses((status = 200, body = RunJson), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn approve(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptBody(body): OptBody<ReasonBody>,
) -> Reply<RunJson> {
    Ok(Json(RunJson::from(call!(
        app,
        headers,
        approve_run,
        action(id, body)
    ))))
}

/// Rejects a plan that waits for approval (final).
#[utoipa::path(post, path = "/api/v1/runs/{id}/reject", tag = "runs", params(("id" = String, Path)),
    request_body(content = Option<ReasonBody>), responses((status = 200, body = RunJson), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn reject(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptBody(body): OptBody<ReasonBody>,
) -> Reply<RunJson> {
    Ok(Json(RunJson::from(call!(
        app,
        headers,
        reject_run,
        action(id, body)
    ))))
}

/// Cancels a run: at once if nothing runs, else its task is interrupted (SIGINT, then SIGKILL).
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", params(("id" = String, Path)),
    request_body(content = Option<ReasonBody>), responses((status = 200, body = RunJson), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptBody(body): OptBody<ReasonBody>,
) -> Reply<RunJson> {
    Ok(Json(RunJson::from(call!(
        app,
        headers,
        cancel_run,
        action(id, body)
    ))))
}

/// Stores a module bundle (a tar.gz of the module directory, as `tofuflow run submit` packs
/// it); answers its digest for submitting. Stored once per content.
#[utoipa::path(post, path = "/api/v1/bundles", tag = "runs",
    request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses((status = 201, body = BundleJson), (status = 400, body = Problem), (status = 413, body = Problem)))]
pub async fn upload_bundle(
    State(app): State<App>,
    headers: HeaderMap,
    data: Bytes,
) -> Result<(StatusCode, Json<BundleJson>), Problem> {
    let api = app.api.as_ref().ok_or_else(super::unavailable)?;
    let req = api.request(&headers, data.to_vec()).await?;
    let r = crate::api::user::upload_bundle_bytes(&api.user, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(BundleJson {
            digest: r.digest,
            size: r.size,
            existed: r.existed,
        }),
    ))
}
