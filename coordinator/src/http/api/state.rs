//! A workspace's state: versions and audit trail, one version's metadata and content (pull),
//! rollback, lock and unlock. Workspace names are percent-encoded in paths (`ml%2Fa`).

use super::dto::{LockJson, ReasonBody, RollbackBody, StateJson, StateVersionJson, UnlockBody};
use super::{call, Body, OptBody, Problem, Reply};
use crate::http::App;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;
use tokio_stream::StreamExt;

/// Versions (newest first), the state's audit trail (writes, rollbacks, locks) and its lock.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/state", tag = "state",
    params(("workspace" = String, Path, description = "percent-encoded: ml%2Fa")),
    responses((status = 200, body = StateJson), (status = 403, body = Problem)))]
pub async fn history(
    State(app): State<App>,
    headers: HeaderMap,
    Path(workspace): Path<String>,
) -> Reply<StateJson> {
    let msg = v1::StateRequest {
        workspace,
        version: 0,
    };
    Ok(Json(StateJson::from(call!(
        app,
        headers,
        list_state_versions,
        msg
    ))))
}

/// One version's state file and metadata, from the user service's stream.
async fn pull(
    app: &App,
    headers: &HeaderMap,
    workspace: String,
    version: i64,
) -> Result<(Option<v1::StateVersionInfo>, Vec<u8>), Problem> {
    let msg = v1::StateRequest { workspace, version };
    let mut stream = call!(app, headers, get_state, msg);
    let (mut info, mut data) = (None, Vec::new());
    while let Some(c) = stream.next().await {
        let c = c?;
        if c.info.is_some() {
            info = c.info;
        }
        data.extend_from_slice(&c.data);
    }
    Ok((info, data))
}

/// One version's metadata (`0` = the current one).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/state/versions/{version}", tag = "state",
    params(("workspace" = String, Path), ("version" = i64, Path, description = "0 = the current version")),
    responses((status = 200, body = StateVersionJson), (status = 404, body = Problem)))]
pub async fn version(
    State(app): State<App>,
    headers: HeaderMap,
    Path((workspace, version)): Path<(String, i64)>,
) -> Reply<StateVersionJson> {
    let (info, _) = pull(&app, &headers, workspace, version).await?;
    let info = info
        .ok_or_else(|| Problem::new(axum::http::StatusCode::NOT_FOUND, "no such state version"))?;
    Ok(Json(StateVersionJson::from(info)))
}

/// One version's state file, as stored (decrypted): what `tofu state pull` would print.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/state/versions/{version}/content", tag = "state",
    params(("workspace" = String, Path), ("version" = i64, Path, description = "0 = the current version")),
    responses((status = 200, content_type = "application/json", description = "the state file"), (status = 404, body = Problem)))]
pub async fn content(
    State(app): State<App>,
    headers: HeaderMap,
    Path((workspace, version)): Path<(String, i64)>,
) -> Result<Response, Problem> {
    let (_, data) = pull(&app, &headers, workspace, version).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], data).into_response())
}

/// Makes an older version current again (a new version with its content; admin; recorded).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/state/rollback", tag = "state",
    params(("workspace" = String, Path)), request_body = RollbackBody,
    responses((status = 200, body = StateVersionJson), (status = 403, body = Problem), (status = 423, body = Problem)))]
pub async fn rollback(
    State(app): State<App>,
    headers: HeaderMap,
    Path(workspace): Path<String>,
    Body(b): Body<RollbackBody>,
) -> Reply<StateVersionJson> {
    let msg = v1::RollbackStateRequest {
        workspace,
        to_version: b.to_version,
        actor: String::new(),
        reason: b.reason,
    };
    Ok(Json(StateVersionJson::from(call!(
        app,
        headers,
        rollback_state,
        msg
    ))))
}

/// Locks the workspace by hand: runs fail with the caller as the holder until unlocked.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/state/lock", tag = "state",
    params(("workspace" = String, Path)), request_body(content = Option<ReasonBody>),
    responses((status = 200, body = LockJson), (status = 423, body = Problem)))]
pub async fn lock(
    State(app): State<App>,
    headers: HeaderMap,
    Path(workspace): Path<String>,
    OptBody(body): OptBody<ReasonBody>,
) -> Reply<LockJson> {
    let msg = v1::StateLockRequest {
        workspace,
        actor: String::new(),
        reason: body.reason,
        force: false,
    };
    Ok(Json(LockJson::from(call!(app, headers, lock_state, msg))))
}

/// Releases the caller's lock; `force` releases anyone's (admin; recorded).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/state/unlock", tag = "state",
    params(("workspace" = String, Path)), request_body(content = Option<UnlockBody>),
    responses((status = 200, body = LockJson), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn unlock(
    State(app): State<App>,
    headers: HeaderMap,
    Path(workspace): Path<String>,
    OptBody(b): OptBody<UnlockBody>,
) -> Reply<LockJson> {
    let msg = v1::StateLockRequest {
        workspace,
        actor: String::new(),
        reason: b.reason,
        force: b.force,
    };
    Ok(Json(LockJson::from(call!(app, headers, unlock_state, msg))))
}
