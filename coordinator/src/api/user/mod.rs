//! The gRPC service users (the CLI) call. This file is the tonic service only: each RPC
//! delegates to its command group, one file each: [`runs`] (submit, show, list, watch, logs,
//! approve, reject, cancel), [`state`] (versions, pull, rollback, lock, unlock), [`agents`],
//! [`bundles`], [`dead_letters`], [`audit`], [`webhooks`], [`environments`] and [`drift`]
//! (drift checks, workspaces, schedules). Every handler asks
//! [`auth::authorize`] first.

mod access;
mod agents;
mod audit;
mod bundles;
mod connections;
mod dead_letters;
mod drift;
mod environments;
mod identities;
mod policies;
mod rules;
mod runs;
mod state;
mod webhooks;
mod workflows;

use super::Shared;
use crate::audit::{AuditEntry, AuditKind};
use crate::auth::{self, Action, Api, Caller, Grant, Principal, WorkspaceGlob};
use crate::error::{Error, Result};
use std::pin::Pin;
use tofuflow_proto::v1::{self, user_service_server::UserService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Stores a bundle that arrived whole (the HTTP API's upload), as `UploadBundle` does.
pub async fn upload_bundle_bytes(
    api: &UserApi,
    req: Request<Vec<u8>>,
) -> Result<v1::UploadBundleResponse, Status> {
    Ok(bundles::upload_bytes(&api.shared, req).await?.into_inner())
}

/// The user service over the coordinator's shared state.
pub struct UserApi {
    /// What every handler needs.
    pub shared: Shared,
}

/// What a handler answers.
type Reply<T> = Result<Response<T>, Status>;
type RunStream = Pin<Box<dyn Stream<Item = Result<v1::Run, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<v1::LogLine, Status>> + Send>>;
type StateStream = Pin<Box<dyn Stream<Item = Result<v1::StateChunk, Status>> + Send>>;

/// Who is calling: the interceptor's [`auth::UserCredential`], with an API token looked up in
/// the store (unknown, expired and revoked ones are refused and counted) and the user's grants
/// from the store added to a users-file user's.
async fn caller<T>(shared: &Shared, req: &Request<T>) -> Result<Caller> {
    let principal = match req.extensions().get::<auth::UserCredential>() {
        Some(auth::UserCredential::Open) => return Ok(Caller::Open),
        Some(auth::UserCredential::File(p)) => p.clone(),
        Some(auth::UserCredential::ApiToken { sha256 }) => match api_token(shared, sha256).await? {
            Ok(p) => p,
            Err(why) => {
                shared.failures.record(Api::User, req.remote_addr(), why);
                return Err(Error::Unauthenticated(format!(
                    "{why}: log in with a valid token (`tofuflow login`; an admin creates one with `tofuflow token create --user NAME`)"
                )));
            }
        },
        None => return Err(Error::Unauthenticated("no credential on this call".into())),
    };
    let mut p = principal;
    for g in shared.store.role_grants(Some(&p.name)).await? {
        if let (Ok(role), Ok(workspaces)) = (g.role.parse(), WorkspaceGlob::parse(&g.workspaces)) {
            p.grants.push(Grant { role, workspaces });
        }
    }
    Ok(Caller::User(p))
}

/// Appends an access-control entry to the audit log (its own transaction: the change it
/// records is already stored).
async fn audit(
    shared: &Shared,
    kind: AuditKind,
    actor: &str,
    detail: serde_json::Value,
) -> Result<()> {
    shared
        .store
        .audit_now(AuditEntry::new(kind, actor).detail(detail))
        .await
}

/// The user an API token stands for, or why it does not count.
async fn api_token(
    shared: &Shared,
    sha256: &str,
) -> Result<std::result::Result<Principal, &'static str>> {
    let Some(t) = shared.store.use_api_token(sha256).await? else {
        return Ok(Err("invalid user token"));
    };
    if t.revoked_ms > 0 {
        return Ok(Err("revoked user token"));
    }
    let now = crate::store::now_ms();
    if t.expires_ms > 0 && t.expires_ms <= now {
        return Ok(Err("expired user token"));
    }
    if now - t.last_used_ms >= crate::store::LAST_USED_EVERY_MS {
        let detail = serde_json::json!({"token_id": t.id, "since_ms": t.last_used_ms});
        audit(shared, AuditKind::TokenUsed, &t.user, detail).await?;
    }
    Ok(Ok(Principal {
        name: t.user,
        grants: Vec::new(),
        token_id: Some(t.id),
    }))
}

/// The caller of `req` and the name to record for it, if they may perform `action` (see
/// [`auth::authorize`]).
async fn authorize_caller<T>(
    shared: &Shared,
    req: &Request<T>,
    action: Action,
    workspace: Option<&str>,
    claimed: Option<&str>,
) -> Result<(Caller, String)> {
    let c = caller(shared, req).await?;
    let name = auth::authorize(&c, action, workspace, claimed)?.name;
    Ok((c, name))
}

/// The name an access-control change records, if the caller may perform `action` (global,
/// naming no workspace): the caller's, or `open` on an `--insecure-open` coordinator.
async fn authorize_change<T>(shared: &Shared, req: &Request<T>, action: Action) -> Result<String> {
    authorize_recorded(shared, req, action, None).await
}

/// The name a change records, if the caller may perform `action` on `workspace` (or globally
/// when `None`): the caller's, or `open` on an `--insecure-open` coordinator.
async fn authorize_recorded<T>(
    shared: &Shared,
    req: &Request<T>,
    action: Action,
    workspace: Option<&str>,
) -> Result<String> {
    let name = authorize(shared, req, action, workspace, None).await?;
    Ok(if name.is_empty() { "open".into() } else { name })
}

/// The name to record for the caller of `req`, if they may perform `action`.
async fn authorize<T>(
    shared: &Shared,
    req: &Request<T>,
    action: Action,
    workspace: Option<&str>,
    claimed: Option<&str>,
) -> Result<String> {
    Ok(authorize_caller(shared, req, action, workspace, claimed)
        .await?
        .1)
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn upload_bundle(
        &self,
        req: Request<Streaming<v1::Chunk>>,
    ) -> Reply<v1::UploadBundleResponse> {
        bundles::upload(&self.shared, req).await
    }

    async fn submit_run(&self, req: Request<v1::SubmitRunRequest>) -> Reply<v1::Run> {
        runs::submit(&self.shared, req).await
    }

    async fn get_run(&self, req: Request<v1::GetRunRequest>) -> Reply<v1::Run> {
        runs::get(&self.shared, req).await
    }

    async fn get_plan(&self, req: Request<v1::GetRunRequest>) -> Reply<v1::Plan> {
        runs::plan(&self.shared, req).await
    }

    async fn list_runs(&self, req: Request<v1::ListRunsRequest>) -> Reply<v1::ListRunsResponse> {
        runs::list(&self.shared, req).await
    }

    type WatchRunStream = RunStream;

    async fn watch_run(&self, req: Request<v1::GetRunRequest>) -> Reply<RunStream> {
        runs::watch(&self.shared, req).await
    }

    type RunLogsStream = LogStream;

    async fn run_logs(&self, req: Request<v1::RunLogsRequest>) -> Reply<LogStream> {
        runs::logs(&self.shared, req).await
    }

    async fn approve_run(&self, req: Request<v1::RunActionRequest>) -> Reply<v1::Run> {
        runs::run_action(&self.shared, req, runs::RunVerb::Approve).await
    }

    async fn reject_run(&self, req: Request<v1::RunActionRequest>) -> Reply<v1::Run> {
        runs::run_action(&self.shared, req, runs::RunVerb::Reject).await
    }

    async fn cancel_run(&self, req: Request<v1::RunActionRequest>) -> Reply<v1::Run> {
        runs::run_action(&self.shared, req, runs::RunVerb::Cancel).await
    }

    async fn list_agents(
        &self,
        req: Request<v1::ListAgentsRequest>,
    ) -> Reply<v1::ListAgentsResponse> {
        agents::list(&self.shared, req).await
    }

    async fn list_state_versions(
        &self,
        req: Request<v1::StateRequest>,
    ) -> Reply<v1::StateVersionList> {
        state::list_versions(&self.shared, req).await
    }

    type GetStateStream = StateStream;

    async fn get_state(&self, req: Request<v1::StateRequest>) -> Reply<StateStream> {
        state::pull(&self.shared, req).await
    }

    async fn rollback_state(
        &self,
        req: Request<v1::RollbackStateRequest>,
    ) -> Reply<v1::StateVersionInfo> {
        state::rollback(&self.shared, req).await
    }

    async fn lock_state(&self, req: Request<v1::StateLockRequest>) -> Reply<v1::StateLockInfo> {
        state::lock(&self.shared, req).await
    }

    async fn unlock_state(&self, req: Request<v1::StateLockRequest>) -> Reply<v1::StateLockInfo> {
        state::unlock(&self.shared, req).await
    }

    async fn list_dead_letters(
        &self,
        req: Request<v1::ListDeadLettersRequest>,
    ) -> Reply<v1::ListDeadLettersResponse> {
        dead_letters::list(&self.shared, req).await
    }

    async fn purge_dead_letters(
        &self,
        req: Request<v1::PurgeDeadLettersRequest>,
    ) -> Reply<v1::PurgeDeadLettersResponse> {
        dead_letters::purge(&self.shared, req).await
    }

    async fn who_am_i(&self, req: Request<v1::WhoAmIRequest>) -> Reply<v1::WhoAmIResponse> {
        access::who_am_i(&self.shared, req).await
    }

    async fn create_token(
        &self,
        req: Request<v1::CreateTokenRequest>,
    ) -> Reply<v1::CreateTokenResponse> {
        access::create_token(&self.shared, req).await
    }

    async fn list_tokens(
        &self,
        req: Request<v1::ListTokensRequest>,
    ) -> Reply<v1::ListTokensResponse> {
        access::list_tokens(&self.shared, req).await
    }

    async fn revoke_token(&self, req: Request<v1::RevokeTokenRequest>) -> Reply<v1::TokenInfo> {
        access::revoke_token(&self.shared, req).await
    }

    async fn grant_role(&self, req: Request<v1::RoleGrantRequest>) -> Reply<v1::RoleGrant> {
        access::grant_role(&self.shared, req).await
    }

    async fn revoke_role(&self, req: Request<v1::RoleGrantRequest>) -> Reply<v1::RoleGrant> {
        access::revoke_role(&self.shared, req).await
    }

    async fn list_roles(&self, req: Request<v1::ListRolesRequest>) -> Reply<v1::ListRolesResponse> {
        access::list_roles(&self.shared, req).await
    }

    async fn set_workspace_rule(
        &self,
        req: Request<v1::WorkspaceRule>,
    ) -> Reply<v1::WorkspaceRule> {
        rules::set_workspace_rule(&self.shared, req).await
    }

    async fn delete_workspace_rule(
        &self,
        req: Request<v1::DeleteWorkspaceRuleRequest>,
    ) -> Reply<v1::WorkspaceRule> {
        rules::delete_workspace_rule(&self.shared, req).await
    }

    async fn list_workspace_rules(
        &self,
        req: Request<v1::ListRulesRequest>,
    ) -> Reply<v1::ListWorkspaceRulesResponse> {
        rules::list_workspace_rules(&self.shared, req).await
    }

    async fn set_pool_rule(&self, req: Request<v1::PoolRule>) -> Reply<v1::PoolRule> {
        rules::set_pool_rule(&self.shared, req).await
    }

    async fn list_pool_rules(
        &self,
        req: Request<v1::ListRulesRequest>,
    ) -> Reply<v1::ListPoolRulesResponse> {
        rules::list_pool_rules(&self.shared, req).await
    }

    async fn create_join_token(
        &self,
        req: Request<v1::CreateJoinTokenRequest>,
    ) -> Reply<v1::CreateJoinTokenResponse> {
        agents::create_join_token(&self.shared, req).await
    }

    async fn list_join_tokens(
        &self,
        req: Request<v1::ListRulesRequest>,
    ) -> Reply<v1::ListJoinTokensResponse> {
        agents::list_join_tokens(&self.shared, req).await
    }

    async fn revoke_join_token(
        &self,
        req: Request<v1::RevokeTokenRequest>,
    ) -> Reply<v1::JoinTokenInfo> {
        agents::revoke_join_token(&self.shared, req).await
    }

    async fn revoke_agent(&self, req: Request<v1::RevokeAgentRequest>) -> Reply<v1::Agent> {
        agents::revoke_agent(&self.shared, req).await
    }

    async fn set_connection(
        &self,
        req: Request<v1::SetConnectionRequest>,
    ) -> Reply<v1::Connection> {
        connections::set(&self.shared, req).await
    }

    async fn rotate_connection(
        &self,
        req: Request<v1::RotateConnectionRequest>,
    ) -> Reply<v1::Connection> {
        connections::rotate(&self.shared, req).await
    }

    async fn delete_connection(
        &self,
        req: Request<v1::ConnectionRequest>,
    ) -> Reply<v1::Connection> {
        connections::delete(&self.shared, req).await
    }

    async fn get_connection(&self, req: Request<v1::ConnectionRequest>) -> Reply<v1::Connection> {
        connections::get(&self.shared, req).await
    }

    async fn list_connections(
        &self,
        req: Request<v1::ListConnectionsRequest>,
    ) -> Reply<v1::ListConnectionsResponse> {
        connections::list(&self.shared, req).await
    }

    async fn list_audit(&self, req: Request<v1::ListAuditRequest>) -> Reply<v1::ListAuditResponse> {
        audit::list(&self.shared, req).await
    }

    async fn verify_audit(
        &self,
        req: Request<v1::VerifyAuditRequest>,
    ) -> Reply<v1::VerifyAuditResponse> {
        audit::verify(&self.shared, req).await
    }

    async fn set_identity(&self, req: Request<v1::Identity>) -> Reply<v1::Identity> {
        identities::set(&self.shared, req).await
    }

    async fn get_identity(&self, req: Request<v1::IdentityRequest>) -> Reply<v1::Identity> {
        identities::get(&self.shared, req).await
    }

    async fn list_identities(
        &self,
        req: Request<v1::ListIdentitiesRequest>,
    ) -> Reply<v1::ListIdentitiesResponse> {
        identities::list(&self.shared, req).await
    }

    async fn delete_identity(&self, req: Request<v1::IdentityRequest>) -> Reply<v1::Identity> {
        identities::delete(&self.shared, req).await
    }

    async fn start_workflow(
        &self,
        req: Request<v1::StartWorkflowRequest>,
    ) -> Reply<v1::WorkflowRun> {
        workflows::start(&self.shared, req).await
    }

    async fn get_workflow_run(
        &self,
        req: Request<v1::WorkflowRunRequest>,
    ) -> Reply<v1::WorkflowRun> {
        workflows::get(&self.shared, req).await
    }

    async fn list_workflow_runs(
        &self,
        req: Request<v1::ListWorkflowRunsRequest>,
    ) -> Reply<v1::ListWorkflowRunsResponse> {
        workflows::list(&self.shared, req).await
    }

    async fn approve_workflow(
        &self,
        req: Request<v1::WorkflowRunRequest>,
    ) -> Reply<v1::WorkflowRun> {
        workflows::approve(&self.shared, req).await
    }

    async fn cancel_workflow(
        &self,
        req: Request<v1::WorkflowRunRequest>,
    ) -> Reply<v1::CancelWorkflowResponse> {
        workflows::cancel(&self.shared, req).await
    }

    async fn retry_workflow(&self, req: Request<v1::WorkflowRunRequest>) -> Reply<v1::WorkflowRun> {
        workflows::retry(&self.shared, req).await
    }

    async fn rollout_action(&self, req: Request<v1::RolloutRequest>) -> Reply<v1::WorkflowRun> {
        workflows::rollout(&self.shared, req).await
    }

    async fn rollback_workflow(
        &self,
        req: Request<v1::RollbackWorkflowRequest>,
    ) -> Reply<v1::WorkflowRun> {
        workflows::rollback(&self.shared, req).await
    }

    async fn create_webhook(
        &self,
        req: Request<v1::CreateWebhookRequest>,
    ) -> Reply<v1::CreateWebhookResponse> {
        webhooks::create(&self.shared, req).await
    }

    async fn list_webhooks(
        &self,
        req: Request<v1::ListWebhooksRequest>,
    ) -> Reply<v1::ListWebhooksResponse> {
        webhooks::list(&self.shared, req).await
    }

    async fn get_webhook(&self, req: Request<v1::WebhookRequest>) -> Reply<v1::Webhook> {
        webhooks::get(&self.shared, req).await
    }

    async fn delete_webhook(&self, req: Request<v1::WebhookRequest>) -> Reply<v1::Webhook> {
        webhooks::delete(&self.shared, req).await
    }

    async fn set_webhook_enabled(
        &self,
        req: Request<v1::SetWebhookEnabledRequest>,
    ) -> Reply<v1::Webhook> {
        webhooks::set_enabled(&self.shared, req).await
    }

    async fn test_webhook(&self, req: Request<v1::WebhookRequest>) -> Reply<v1::WebhookDelivery> {
        webhooks::test(&self.shared, req).await
    }

    async fn redeliver_webhook(
        &self,
        req: Request<v1::RedeliverWebhookRequest>,
    ) -> Reply<v1::WebhookDelivery> {
        webhooks::redeliver(&self.shared, req).await
    }

    async fn list_environments(
        &self,
        req: Request<v1::ListEnvironmentsRequest>,
    ) -> Reply<v1::ListEnvironmentsResponse> {
        environments::list(&self.shared, req).await
    }

    async fn extend_environment(
        &self,
        req: Request<v1::ExtendEnvironmentRequest>,
    ) -> Reply<v1::Environment> {
        environments::extend(&self.shared, req).await
    }

    async fn check_drift(&self, req: Request<v1::CheckDriftRequest>) -> Reply<v1::Run> {
        drift::check(&self.shared, req).await
    }

    async fn list_workspaces(
        &self,
        req: Request<v1::ListWorkspacesRequest>,
    ) -> Reply<v1::ListWorkspacesResponse> {
        drift::workspaces(&self.shared, req).await
    }

    async fn set_workspace_ttl(
        &self,
        req: Request<v1::SetWorkspaceTtlRequest>,
    ) -> Reply<v1::Workspace> {
        drift::set_ttl(&self.shared, req).await
    }

    async fn add_schedule(&self, req: Request<v1::AddScheduleRequest>) -> Reply<v1::Schedule> {
        drift::add_schedule(&self.shared, req).await
    }

    async fn list_schedules(
        &self,
        req: Request<v1::ListSchedulesRequest>,
    ) -> Reply<v1::ListSchedulesResponse> {
        drift::schedules(&self.shared, req).await
    }

    async fn remove_schedule(&self, req: Request<v1::ScheduleRequest>) -> Reply<v1::Schedule> {
        drift::remove_schedule(&self.shared, req).await
    }

    async fn list_schedule_ticks(
        &self,
        req: Request<v1::ScheduleRequest>,
    ) -> Reply<v1::ListScheduleTicksResponse> {
        drift::ticks(&self.shared, req).await
    }

    async fn set_policy(&self, req: Request<v1::SetPolicyRequest>) -> Reply<v1::PlanPolicy> {
        policies::set(&self.shared, req).await
    }

    async fn get_policy(&self, req: Request<v1::PolicyRequest>) -> Reply<v1::PlanPolicy> {
        policies::get(&self.shared, req).await
    }

    async fn list_policies(
        &self,
        req: Request<v1::ListPoliciesRequest>,
    ) -> Reply<v1::ListPoliciesResponse> {
        policies::list(&self.shared, req).await
    }

    async fn delete_policy(&self, req: Request<v1::PolicyRequest>) -> Reply<v1::PlanPolicy> {
        policies::delete(&self.shared, req).await
    }
}
