//! The gRPC service users (the CLI) call. This file is the tonic service only: each RPC
//! delegates to its command group, one file each: [`runs`] (submit, show, list, watch, logs,
//! approve, reject, cancel), [`state`] (versions, pull, rollback, lock, unlock), [`agents`],
//! [`bundles`], [`dead_letters`] and [`audit`]. Every handler asks [`auth::authorize`] first.

mod access;
mod agents;
mod audit;
mod bundles;
mod dead_letters;
mod runs;
mod state;

use super::Shared;
use crate::auth::{self, Action};
use std::pin::Pin;
use tofuflow_proto::v1::{self, user_service_server::UserService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

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

/// The name to record for the caller of `req`, if they may perform `action` (see
/// [`auth::authorize`]).
fn authorize<T>(
    shared: &Shared,
    req: &Request<T>,
    action: Action,
    workspace: Option<&str>,
    claimed: Option<&str>,
) -> crate::error::Result<String> {
    auth::authorize(req, shared.users_open, action, workspace, claimed).map(|a| a.name)
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
        access::set_workspace_rule(&self.shared, req).await
    }

    async fn delete_workspace_rule(
        &self,
        req: Request<v1::DeleteWorkspaceRuleRequest>,
    ) -> Reply<v1::WorkspaceRule> {
        access::delete_workspace_rule(&self.shared, req).await
    }

    async fn list_workspace_rules(
        &self,
        req: Request<v1::ListRulesRequest>,
    ) -> Reply<v1::ListWorkspaceRulesResponse> {
        access::list_workspace_rules(&self.shared, req).await
    }

    async fn set_pool_rule(&self, req: Request<v1::PoolRule>) -> Reply<v1::PoolRule> {
        access::set_pool_rule(&self.shared, req).await
    }

    async fn list_pool_rules(
        &self,
        req: Request<v1::ListRulesRequest>,
    ) -> Reply<v1::ListPoolRulesResponse> {
        access::list_pool_rules(&self.shared, req).await
    }

    async fn create_join_token(
        &self,
        req: Request<v1::CreateJoinTokenRequest>,
    ) -> Reply<v1::CreateJoinTokenResponse> {
        access::create_join_token(&self.shared, req).await
    }

    async fn list_join_tokens(
        &self,
        req: Request<v1::ListRulesRequest>,
    ) -> Reply<v1::ListJoinTokensResponse> {
        access::list_join_tokens(&self.shared, req).await
    }

    async fn revoke_join_token(
        &self,
        req: Request<v1::RevokeTokenRequest>,
    ) -> Reply<v1::JoinTokenInfo> {
        access::revoke_join_token(&self.shared, req).await
    }

    async fn revoke_agent(&self, req: Request<v1::RevokeAgentRequest>) -> Reply<v1::Agent> {
        access::revoke_agent(&self.shared, req).await
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
}
