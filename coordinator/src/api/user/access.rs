//! Access control over the API: who is calling, API tokens, roles on workspace globs,
//! workspace and pool rules, agents' join tokens and revocation.

use super::{Reply, Shared};
use tofuflow_proto::v1;
use tonic::{Request, Status};

pub(super) async fn who_am_i(
    _shared: &Shared,
    _req: Request<v1::WhoAmIRequest>,
) -> Reply<v1::WhoAmIResponse> {
    Err(Status::unimplemented("who_am_i"))
}

pub(super) async fn create_token(
    _shared: &Shared,
    _req: Request<v1::CreateTokenRequest>,
) -> Reply<v1::CreateTokenResponse> {
    Err(Status::unimplemented("create_token"))
}

pub(super) async fn list_tokens(
    _shared: &Shared,
    _req: Request<v1::ListTokensRequest>,
) -> Reply<v1::ListTokensResponse> {
    Err(Status::unimplemented("list_tokens"))
}

pub(super) async fn revoke_token(
    _shared: &Shared,
    _req: Request<v1::RevokeTokenRequest>,
) -> Reply<v1::TokenInfo> {
    Err(Status::unimplemented("revoke_token"))
}

pub(super) async fn grant_role(
    _shared: &Shared,
    _req: Request<v1::RoleGrantRequest>,
) -> Reply<v1::RoleGrant> {
    Err(Status::unimplemented("grant_role"))
}

pub(super) async fn revoke_role(
    _shared: &Shared,
    _req: Request<v1::RoleGrantRequest>,
) -> Reply<v1::RoleGrant> {
    Err(Status::unimplemented("revoke_role"))
}

pub(super) async fn list_roles(
    _shared: &Shared,
    _req: Request<v1::ListRolesRequest>,
) -> Reply<v1::ListRolesResponse> {
    Err(Status::unimplemented("list_roles"))
}

pub(super) async fn set_workspace_rule(
    _shared: &Shared,
    _req: Request<v1::WorkspaceRule>,
) -> Reply<v1::WorkspaceRule> {
    Err(Status::unimplemented("set_workspace_rule"))
}

pub(super) async fn delete_workspace_rule(
    _shared: &Shared,
    _req: Request<v1::DeleteWorkspaceRuleRequest>,
) -> Reply<v1::WorkspaceRule> {
    Err(Status::unimplemented("delete_workspace_rule"))
}

pub(super) async fn list_workspace_rules(
    _shared: &Shared,
    _req: Request<v1::ListRulesRequest>,
) -> Reply<v1::ListWorkspaceRulesResponse> {
    Err(Status::unimplemented("list_workspace_rules"))
}

pub(super) async fn set_pool_rule(
    _shared: &Shared,
    _req: Request<v1::PoolRule>,
) -> Reply<v1::PoolRule> {
    Err(Status::unimplemented("set_pool_rule"))
}

pub(super) async fn list_pool_rules(
    _shared: &Shared,
    _req: Request<v1::ListRulesRequest>,
) -> Reply<v1::ListPoolRulesResponse> {
    Err(Status::unimplemented("list_pool_rules"))
}

pub(super) async fn create_join_token(
    _shared: &Shared,
    _req: Request<v1::CreateJoinTokenRequest>,
) -> Reply<v1::CreateJoinTokenResponse> {
    Err(Status::unimplemented("create_join_token"))
}

pub(super) async fn list_join_tokens(
    _shared: &Shared,
    _req: Request<v1::ListRulesRequest>,
) -> Reply<v1::ListJoinTokensResponse> {
    Err(Status::unimplemented("list_join_tokens"))
}

pub(super) async fn revoke_join_token(
    _shared: &Shared,
    _req: Request<v1::RevokeTokenRequest>,
) -> Reply<v1::JoinTokenInfo> {
    Err(Status::unimplemented("revoke_join_token"))
}

pub(super) async fn revoke_agent(
    _shared: &Shared,
    _req: Request<v1::RevokeAgentRequest>,
) -> Reply<v1::Agent> {
    Err(Status::unimplemented("revoke_agent"))
}
