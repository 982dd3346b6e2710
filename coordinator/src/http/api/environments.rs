//! Environments with a TTL (`lifecycle/ttl.rs`): list them (viewer: the workspaces one may
//! read) and extend an active one's deadline (operator on the workspace); with their JSON
//! shapes.

use super::{call, Body, Params, Reply};
use crate::http::App;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;
use utoipa::{IntoParams, ToSchema};

/// A workspace (or `workflow-run:ID`) whose resources are destroyed when its TTL runs out.
#[derive(Serialize, ToSchema)]
pub struct EnvironmentJson {
    pub workspace: String,
    /// active, tearing_down, destroyed or teardown_failed.
    pub state: String,
    pub ttl_ms: i64,
    pub expires_unix_ms: i64,
    pub set_by: String,
    /// The run whose apply started the TTL.
    pub source_run: String,
    pub workflow_run: String,
    /// The current (or last) teardown's destroy run (or destroy workflow run).
    pub destroy_run: String,
    /// Failed teardown attempts.
    pub attempts: u32,
    pub next_attempt_unix_ms: i64,
    pub last_error: String,
    pub reminder_sent: bool,
}

impl From<v1::Environment> for EnvironmentJson {
    fn from(e: v1::Environment) -> EnvironmentJson {
        EnvironmentJson {
            workspace: e.workspace,
            state: e.state,
            ttl_ms: e.ttl_ms,
            expires_unix_ms: e.expires_unix_ms,
            set_by: e.set_by,
            source_run: e.source_run,
            workflow_run: e.workflow_run,
            destroy_run: e.destroy_run,
            attempts: e.attempts,
            next_attempt_unix_ms: e.next_attempt_unix_ms,
            last_error: e.last_error,
            reminder_sent: e.reminder_sent,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentsQuery {
    /// Only this state: active, tearing_down, destroyed, teardown_failed.
    pub state: Option<String>,
}

/// How to move a deadline: exactly one of `by_ms` and `ttl_ms`.
#[derive(Deserialize, ToSchema)]
pub struct ExtendBody {
    /// Later than the current deadline by this much.
    #[serde(default)]
    pub by_ms: i64,
    /// This long from now.
    #[serde(default)]
    pub ttl_ms: i64,
}

/// Environments with a TTL, soonest deadline first (viewer: those of workspaces one may read).
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", params(EnvironmentsQuery),
    responses((status = 200, body = Vec<EnvironmentJson>), (status = 400, body = super::Problem)))]
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Params(q): Params<EnvironmentsQuery>,
) -> Reply<Vec<EnvironmentJson>> {
    let msg = v1::ListEnvironmentsRequest {
        state: q.state.unwrap_or_default(),
    };
    let r = call!(app, headers, list_environments, msg);
    Ok(Json(
        r.environments
            .into_iter()
            .map(EnvironmentJson::from)
            .collect(),
    ))
}

/// Moves an active environment's deadline (operator on the workspace).
#[utoipa::path(post, path = "/api/v1/environments/{workspace}/extend", tag = "environments",
    params(("workspace" = String, Path, description = "percent-encoded: preview%2Fpr-42")),
    request_body = ExtendBody,
    responses((status = 200, body = EnvironmentJson), (status = 400, body = super::Problem), (status = 404, body = super::Problem), (status = 409, body = super::Problem)))]
pub async fn extend(
    State(app): State<App>,
    headers: HeaderMap,
    Path(workspace): Path<String>,
    Body(b): Body<ExtendBody>,
) -> Reply<EnvironmentJson> {
    let msg = v1::ExtendEnvironmentRequest {
        workspace,
        by_ms: b.by_ms,
        ttl_ms: b.ttl_ms,
    };
    Ok(Json(call!(app, headers, extend_environment, msg).into()))
}
