//! Agents as users see and manage them: the list, join tokens, revocation.

use super::{audit, authorize, authorize_change, Reply, Shared};
use crate::api::convert::{agent_to_pb, join_token_to_pb};
use crate::audit::AuditKind;
use crate::auth::Action;
use crate::error::Error;
use crate::store::now_ms;
use serde_json::json;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// How long a join token lives unless asked otherwise.
const JOIN_TOKEN_TTL_MS: i64 = 3_600_000;

/// Lists registered agents with pools, state and load (viewer).
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListAgentsRequest>,
) -> Reply<v1::ListAgentsResponse> {
    authorize(shared, &req, Action::ListAgents, None, None).await?;
    let agents = shared.store.agents().await?;
    Ok(Response::new(v1::ListAgentsResponse {
        agents: agents.into_iter().map(agent_to_pb).collect(),
    }))
}

/// Creates a join token for some pools (admin); the token is in the answer only.
pub(super) async fn create_join_token(
    shared: &Shared,
    req: Request<v1::CreateJoinTokenRequest>,
) -> Reply<v1::CreateJoinTokenResponse> {
    let by = authorize_change(shared, &req, Action::ManageAgents).await?;
    let r = req.into_inner();
    if r.pools.is_empty() || r.ttl_ms < 0 {
        return Err(Error::InvalidInput(
            "a join token needs at least one pool (--pool NAME) and a lifetime that is not negative".into(),
        )
        .into());
    }
    for p in &r.pools {
        crate::queue::valid_pool(p).map_err(Error::InvalidInput)?;
    }
    let ttl = if r.ttl_ms == 0 {
        JOIN_TOKEN_TTL_MS
    } else {
        r.ttl_ms
    };
    let token = format!("tfj_{}", crate::store::secret());
    let t = shared
        .store
        .create_join_token(&crate::auth::hash(&token), &r.pools, &by, now_ms() + ttl)
        .await?;
    tracing::info!(join_token = %t.id, pools = ?t.pools, created_by = %by, "join token created");
    let detail = json!({"join_token": t.id, "pools": t.pools, "expires_ms": t.expires_ms});
    audit(shared, AuditKind::TokenCreated, &by, detail).await?;
    Ok(Response::new(v1::CreateJoinTokenResponse {
        info: Some(join_token_to_pb(t)),
        token,
    }))
}

/// Every join token (admin).
pub(super) async fn list_join_tokens(
    shared: &Shared,
    req: Request<v1::ListRulesRequest>,
) -> Reply<v1::ListJoinTokensResponse> {
    authorize(shared, &req, Action::ManageAgents, None, None).await?;
    let tokens = shared.store.join_tokens().await?;
    Ok(Response::new(v1::ListJoinTokensResponse {
        tokens: tokens.into_iter().map(join_token_to_pb).collect(),
    }))
}

/// Revokes a join token (admin); agents that joined with it keep their own identity.
pub(super) async fn revoke_join_token(
    shared: &Shared,
    req: Request<v1::RevokeTokenRequest>,
) -> Reply<v1::JoinTokenInfo> {
    let by = authorize_change(shared, &req, Action::ManageAgents).await?;
    let t = shared.store.revoke_join_token(&req.get_ref().id).await?;
    tracing::info!(join_token = %t.id, revoked_by = %by, "join token revoked");
    audit(
        shared,
        AuditKind::TokenRevoked,
        &by,
        json!({"join_token": t.id}),
    )
    .await?;
    Ok(Response::new(join_token_to_pb(t)))
}

/// Revokes an agent (admin): it stops at its next heartbeat and its leases fail over.
pub(super) async fn revoke_agent(
    shared: &Shared,
    req: Request<v1::RevokeAgentRequest>,
) -> Reply<v1::Agent> {
    let by = authorize_change(shared, &req, Action::ManageAgents).await?;
    let id = req.into_inner().agent_id;
    let a = shared.store.revoke_agent(&id).await?;
    if let Ok(mut m) = shared.agent_credentials.lock() {
        m.remove(&id);
    }
    tracing::warn!(agent_id = %id, revoked_by = %by, "agent revoked");
    let detail = json!({"agent_id": id, "name": a.name, "pools": a.pools});
    audit(shared, AuditKind::AgentRevoked, &by, detail).await?;
    Ok(Response::new(agent_to_pb(a)))
}
