//! Agents, the audit log (entries, the chain verified) and the caller.

use super::dto::{AgentJson, AuditEntryJson, AuditQuery, AuditVerifyJson, WhoAmIJson};
use super::{call, Params, Problem, Reply};
use crate::http::App;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;

/// Agents: pools, labels (GPUs), capacity, running tasks, last heartbeat, revocation.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, body = Vec<AgentJson>), (status = 401, body = Problem)))]
pub async fn list(State(app): State<App>, headers: HeaderMap) -> Reply<Vec<AgentJson>> {
    let r = call!(app, headers, list_agents, v1::ListAgentsRequest {});
    Ok(Json(r.agents.into_iter().map(AgentJson::from).collect()))
}

/// Audit log entries, oldest first, with their hashes (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntryJson>), (status = 403, body = Problem)))]
pub async fn audit(
    State(app): State<App>,
    headers: HeaderMap,
    Params(q): Params<AuditQuery>,
) -> Reply<Vec<AuditEntryJson>> {
    let msg = v1::ListAuditRequest {
        run_id: q.run_id.unwrap_or_default(),
        workspace: q.workspace.unwrap_or_default(),
        kind: q.kind.unwrap_or_default(),
        since_seq: q.since_seq.unwrap_or(0),
        limit: q.limit.unwrap_or(100),
        latest: false,
        actor: String::new(),
    };
    let r = call!(app, headers, list_audit, msg);
    Ok(Json(
        r.entries.into_iter().map(AuditEntryJson::from).collect(),
    ))
}

/// Verifies the audit log's hash chain from its first entry (admin).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "access",
    responses((status = 200, body = AuditVerifyJson), (status = 403, body = Problem)))]
pub async fn verify_audit(State(app): State<App>, headers: HeaderMap) -> Reply<AuditVerifyJson> {
    let msg = v1::VerifyAuditRequest {
        actor: String::new(),
    };
    Ok(Json(AuditVerifyJson::from(call!(
        app,
        headers,
        verify_audit,
        msg
    ))))
}

/// Who the token stands for, and their roles.
#[utoipa::path(get, path = "/api/v1/me", tag = "access",
    responses((status = 200, body = WhoAmIJson), (status = 401, body = Problem)))]
pub async fn me(State(app): State<App>, headers: HeaderMap) -> Reply<WhoAmIJson> {
    Ok(Json(WhoAmIJson::from(call!(
        app,
        headers,
        who_am_i,
        v1::WhoAmIRequest {}
    ))))
}
