//! Drift checks, the workspace list with drift status, and schedules of checks
//! (`api/user/drift.rs` holds the rules); with their JSON shapes.

use super::dto::{RunJson, StartWorkflowBody};
use super::{call, Body, Params, Reply};
use crate::http::App;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;
use utoipa::{IntoParams, ToSchema};

/// A workspace: its newest run, its last apply, its drift status and TTL deadline.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceJson {
    pub name: String,
    pub last_run: String,
    pub last_run_state: String,
    /// 0: never applied.
    pub last_applied_unix_ms: i64,
    pub last_applied_run: String,
    /// 0: never checked.
    pub last_checked_unix_ms: i64,
    pub last_check_run: String,
    /// in_sync, drifted, check_failed or unchecked.
    pub drift: String,
    /// 0: not drifted.
    pub drifted_since_unix_ms: i64,
    pub remediation_run: String,
    pub last_check_error: String,
    /// An environment TTL's deadline (0: none).
    pub expires_unix_ms: i64,
    /// The workspace's TTL: every apply restarts its deadline (0: none).
    pub ttl_ms: i64,
}

impl From<v1::Workspace> for WorkspaceJson {
    fn from(w: v1::Workspace) -> WorkspaceJson {
        WorkspaceJson {
            name: w.name,
            last_run: w.last_run,
            last_run_state: w.last_run_state,
            last_applied_unix_ms: w.last_applied_unix_ms,
            last_applied_run: w.last_applied_run,
            last_checked_unix_ms: w.last_checked_unix_ms,
            last_check_run: w.last_check_run,
            drift: w.drift,
            drifted_since_unix_ms: w.drifted_since_unix_ms,
            remediation_run: w.remediation_run,
            last_check_error: w.last_check_error,
            expires_unix_ms: w.expires_unix_ms,
            ttl_ms: w.ttl_ms,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkspacesQuery {
    /// Only drifted workspaces.
    pub drifted_only: Option<bool>,
}

/// How a drift check plans and what it does on drift.
#[derive(Deserialize, ToSchema, Default)]
pub struct DriftCheckBody {
    /// Plan with -refresh-only (the state against the real infrastructure only).
    #[serde(default)]
    pub refresh_only: bool,
    /// On drift, submit a remediation run (it waits for approval).
    #[serde(default)]
    pub remediate: bool,
}

/// A cron schedule of drift checks or of a workflow run.
#[derive(Serialize, ToSchema)]
pub struct ScheduleJson {
    pub name: String,
    /// 5 fields, or 6 with seconds first.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Workspace glob.
    pub workspace: String,
    pub refresh_only: bool,
    pub remediate: bool,
    /// once or skip.
    pub missed: String,
    pub next_tick_unix_ms: i64,
    pub last_tick_unix_ms: i64,
    pub created_by: String,
    pub created_unix_ms: i64,
    /// A workflow schedule's file name ('' for drift checks).
    pub workflow_file: String,
}

impl From<v1::Schedule> for ScheduleJson {
    fn from(s: v1::Schedule) -> ScheduleJson {
        ScheduleJson {
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            workspace: s.workspace,
            refresh_only: s.refresh_only,
            remediate: s.remediate,
            missed: s.missed,
            next_tick_unix_ms: s.next_tick_unix_ms,
            last_tick_unix_ms: s.last_tick_unix_ms,
            created_by: s.created_by,
            created_unix_ms: s.created_unix_ms,
            workflow_file: s.workflow_file,
        }
    }
}

/// A new schedule: of drift checks (`workspace`) or of a workflow run (`workflow`).
#[derive(Deserialize, ToSchema)]
pub struct ScheduleBody {
    pub name: String,
    pub cron: String,
    /// IANA time zone (default UTC).
    #[serde(default)]
    pub timezone: String,
    /// Workspace glob (drift checks).
    #[serde(default)]
    pub workspace: String,
    /// The workflow run to start at every tick, as `POST /api/v1/workflow-runs` takes it.
    #[serde(default)]
    pub workflow: Option<StartWorkflowBody>,
    #[serde(default)]
    pub refresh_only: bool,
    #[serde(default)]
    pub remediate: bool,
    /// once (default) or skip.
    #[serde(default)]
    pub missed: String,
}

/// One settled tick.
#[derive(Serialize, ToSchema)]
pub struct ScheduleTickJson {
    pub tick_unix_ms: i64,
    /// fired or missed.
    pub outcome: String,
    pub settled_unix_ms: i64,
    pub runs: Vec<String>,
    pub detail: String,
}

/// Workspaces one may read, with their drift status (viewer).
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "drift", params(WorkspacesQuery),
    responses((status = 200, body = Vec<WorkspaceJson>)))]
pub async fn workspaces(
    State(app): State<App>,
    headers: HeaderMap,
    Params(q): Params<WorkspacesQuery>,
) -> Reply<Vec<WorkspaceJson>> {
    let msg = v1::ListWorkspacesRequest {
        drifted_only: q.drifted_only.unwrap_or(false),
    };
    let r = call!(app, headers, list_workspaces, msg);
    Ok(Json(r.workspaces.into_iter().map(Into::into).collect()))
}

/// Queues a drift check of a workspace now (operator on it).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/drift-checks", tag = "drift",
    params(("workspace" = String, Path, description = "percent-encoded: prod%2Fnet")),
    request_body = DriftCheckBody,
    responses((status = 201, body = RunJson), (status = 400, body = super::Problem), (status = 409, body = super::Problem)))]
pub async fn check(
    State(app): State<App>,
    headers: HeaderMap,
    Path(workspace): Path<String>,
    Body(b): Body<DriftCheckBody>,
) -> Result<(StatusCode, Json<RunJson>), super::Problem> {
    let msg = v1::CheckDriftRequest {
        workspace,
        refresh_only: b.refresh_only,
        remediate: b.remediate,
    };
    let run = call!(app, headers, check_drift, msg);
    Ok((StatusCode::CREATED, Json(RunJson::from(run))))
}

/// A workspace's TTL: `ttl_ms` > 0 sets it, 0 clears it.
#[derive(Deserialize, ToSchema)]
pub struct WorkspaceTtlBody {
    pub ttl_ms: i64,
}

/// Sets or clears a workspace's TTL (operator on it): every later apply there starts (or
/// restarts) its environment's deadline.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/ttl", tag = "drift",
    params(("workspace" = String, Path, description = "percent-encoded: preview%2Fpr-42")),
    request_body = WorkspaceTtlBody,
    responses((status = 200, body = WorkspaceJson), (status = 400, body = super::Problem)))]
pub async fn set_ttl(
    State(app): State<App>,
    headers: HeaderMap,
    Path(workspace): Path<String>,
    Body(b): Body<WorkspaceTtlBody>,
) -> Reply<WorkspaceJson> {
    let msg = v1::SetWorkspaceTtlRequest {
        workspace,
        ttl_ms: b.ttl_ms,
    };
    Ok(Json(call!(app, headers, set_workspace_ttl, msg).into()))
}

/// Every schedule (viewer).
#[utoipa::path(get, path = "/api/v1/schedules", tag = "drift",
    responses((status = 200, body = Vec<ScheduleJson>)))]
pub async fn schedules(State(app): State<App>, headers: HeaderMap) -> Reply<Vec<ScheduleJson>> {
    let r = call!(app, headers, list_schedules, v1::ListSchedulesRequest {});
    Ok(Json(r.schedules.into_iter().map(Into::into).collect()))
}

/// Adds a schedule of drift checks (admin).
#[utoipa::path(post, path = "/api/v1/schedules", tag = "drift", request_body = ScheduleBody,
    responses((status = 201, body = ScheduleJson), (status = 400, body = super::Problem), (status = 409, body = super::Problem)))]
pub async fn add_schedule(
    State(app): State<App>,
    headers: HeaderMap,
    Body(b): Body<ScheduleBody>,
) -> Result<(StatusCode, Json<ScheduleJson>), super::Problem> {
    let msg = v1::AddScheduleRequest {
        name: b.name,
        cron: b.cron,
        timezone: b.timezone,
        workspace: b.workspace,
        refresh_only: b.refresh_only,
        remediate: b.remediate,
        missed: b.missed,
        workflow: b.workflow.map(|w| w.into_request(String::new())),
    };
    let s = call!(app, headers, add_schedule, msg);
    Ok((StatusCode::CREATED, Json(s.into())))
}

/// Removes a schedule (admin).
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", tag = "drift",
    params(("name" = String, Path, description = "the schedule's name")),
    responses((status = 200, body = ScheduleJson), (status = 404, body = super::Problem)))]
pub async fn remove_schedule(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<ScheduleJson> {
    let msg = v1::ScheduleRequest { name };
    Ok(Json(call!(app, headers, remove_schedule, msg).into()))
}

/// A schedule's settled ticks, newest first (viewer).
#[utoipa::path(get, path = "/api/v1/schedules/{name}/ticks", tag = "drift",
    params(("name" = String, Path, description = "the schedule's name")),
    responses((status = 200, body = Vec<ScheduleTickJson>)))]
pub async fn ticks(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<Vec<ScheduleTickJson>> {
    let r = call!(
        app,
        headers,
        list_schedule_ticks,
        v1::ScheduleRequest { name }
    );
    Ok(Json(
        r.ticks
            .into_iter()
            .map(|t| ScheduleTickJson {
                tick_unix_ms: t.tick_unix_ms,
                outcome: t.outcome,
                settled_unix_ms: t.settled_unix_ms,
                runs: t.runs,
                detail: t.detail,
            })
            .collect(),
    ))
}
