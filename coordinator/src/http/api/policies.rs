//! Plan policies (admin): add or replace, list, show with the source, remove; with their JSON
//! shapes. A run's verdicts are in its JSON (`RunJson.policy_verdicts`).

use super::{call, Body, Params, Problem, Reply};
use crate::http::App;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;
use utoipa::{IntoParams, ToSchema};

/// A plan policy in Rego, attached to a workspace glob.
#[derive(Serialize, ToSchema)]
pub struct PolicyJson {
    pub name: String,
    /// The workspace glob it applies to.
    pub workspaces: String,
    /// The Rego source (empty in lists).
    pub source: String,
    /// sha256 of the source, hex.
    pub digest: String,
    /// 1 when added, one more at every replacement.
    pub version: i64,
    pub description: String,
    /// The package its rules are read from (`data.main`).
    pub package: String,
    pub updated_by: String,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
}

impl From<v1::PlanPolicy> for PolicyJson {
    fn from(p: v1::PlanPolicy) -> PolicyJson {
        PolicyJson {
            name: p.name,
            workspaces: p.workspaces,
            source: p.source,
            digest: p.digest,
            version: p.version,
            description: p.description,
            package: p.package,
            updated_by: p.updated_by,
            created_unix_ms: p.created_unix_ms,
            updated_unix_ms: p.updated_unix_ms,
        }
    }
}

/// A policy to add (or to replace, by name).
#[derive(Deserialize, ToSchema)]
pub struct SetPolicyBody {
    pub name: String,
    /// The workspace glob it applies to (`**` for all).
    pub workspaces: String,
    /// The Rego source: checked (it must compile and evaluate an empty plan) before it is kept.
    pub source: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PoliciesQuery {
    /// Only the policies that apply to this workspace.
    pub workspace: Option<String>,
}

/// Every plan policy, by name, without sources (admin).
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", params(PoliciesQuery),
    responses((status = 200, body = Vec<PolicyJson>), (status = 403, body = Problem)))]
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Params(q): Params<PoliciesQuery>,
) -> Reply<Vec<PolicyJson>> {
    let msg = v1::ListPoliciesRequest {
        workspace: q.workspace.unwrap_or_default(),
    };
    let r = call!(app, headers, list_policies, msg);
    Ok(Json(r.policies.into_iter().map(PolicyJson::from).collect()))
}

/// Adds a plan policy, or replaces the one of that name (admin).
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", request_body = SetPolicyBody,
    responses((status = 200, body = PolicyJson), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn set(
    State(app): State<App>,
    headers: HeaderMap,
    Body(b): Body<SetPolicyBody>,
) -> Reply<PolicyJson> {
    let msg = v1::SetPolicyRequest {
        name: b.name,
        workspaces: b.workspaces,
        source: b.source,
        description: b.description,
    };
    Ok(Json(call!(app, headers, set_policy, msg).into()))
}

/// One plan policy with its source (admin).
#[utoipa::path(get, path = "/api/v1/policies/{name}", tag = "policies", params(("name" = String, Path)),
    responses((status = 200, body = PolicyJson), (status = 404, body = Problem)))]
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<PolicyJson> {
    let msg = v1::PolicyRequest { name };
    Ok(Json(call!(app, headers, get_policy, msg).into()))
}

/// Removes a plan policy; runs keep their verdicts (admin).
#[utoipa::path(delete, path = "/api/v1/policies/{name}", tag = "policies", params(("name" = String, Path)),
    responses((status = 200, body = PolicyJson), (status = 404, body = Problem)))]
pub async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<PolicyJson> {
    let msg = v1::PolicyRequest { name };
    Ok(Json(call!(app, headers, delete_policy, msg).into()))
}
