//! Who is calling, users' API tokens and the roles they hold on workspace globs.

use super::{audit, authorize, authorize_caller, authorize_change, caller, Reply, Shared};
use crate::api::convert::{grant_to_pb, token_to_pb};
use crate::audit::AuditKind;
use crate::auth::{Action, Caller, Role, WorkspaceGlob};
use crate::error::{Error, Result};
use crate::store::now_ms;
use serde_json::json;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// A user name as roles and tokens are given to: letters, digits and `-_.@`.
fn valid_user(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{name:?} is not a user name: use letters, digits and -_.@ (at most 100)"
        )))
    }
}

/// The caller's name and grants, and about the token used.
pub(super) async fn who_am_i(
    shared: &Shared,
    req: Request<v1::WhoAmIRequest>,
) -> Reply<v1::WhoAmIResponse> {
    let p = match caller(shared, &req).await? {
        Caller::Open => {
            return Ok(Response::new(v1::WhoAmIResponse {
                open: true,
                ..Default::default()
            }))
        }
        Caller::User(p) => p,
    };
    let expires = match &p.token_id {
        Some(id) => shared.store.api_token(id).await?.expires_ms,
        None => 0,
    };
    let detail = json!({"token_id": p.token_id.clone().unwrap_or_else(|| "users file".into())});
    audit(shared, AuditKind::Login, &p.name, detail).await?;
    Ok(Response::new(v1::WhoAmIResponse {
        grants: p
            .grants
            .iter()
            .map(|g| v1::RoleGrant {
                user: p.name.clone(),
                role: g.role.to_string(),
                workspaces: g.workspaces.as_str().to_string(),
                ..Default::default()
            })
            .collect(),
        name: p.name,
        open: false,
        token_id: p.token_id.unwrap_or_default(),
        token_expires_ms: expires,
    }))
}

/// The user a token request is about (the caller when `want` is empty or names them; anyone,
/// for an admin) and the name to record for who asks.
async fn token_owner<T>(shared: &Shared, req: &Request<T>, want: &str) -> Result<(String, String)> {
    let (c, me) = authorize_caller(shared, req, Action::ManageOwnTokens, None, None).await?;
    if want.is_empty() || want == me {
        if me.is_empty() {
            return Err(Error::InvalidInput(
                "this coordinator is --insecure-open: name the token's user with --user".into(),
            ));
        }
        return Ok((me.clone(), me));
    }
    crate::auth::authorize(&c, Action::ManageTokens, None, None)?;
    valid_user(want)?;
    let by = if me.is_empty() { "open".into() } else { me };
    Ok((want.to_string(), by))
}

/// Creates an API token (the caller's own, or an admin's for anyone); the token is in the
/// answer only.
pub(super) async fn create_token(
    shared: &Shared,
    req: Request<v1::CreateTokenRequest>,
) -> Reply<v1::CreateTokenResponse> {
    let (user, by) = token_owner(shared, &req, &req.get_ref().user).await?;
    let r = req.into_inner();
    if r.ttl_ms < 0 || r.description.len() > 200 {
        return Err(Error::InvalidInput(
            "a token's lifetime cannot be negative and its description is at most 200 characters"
                .into(),
        )
        .into());
    }
    let ttl = if r.ttl_ms == 0 {
        shared.token_ttl_ms
    } else {
        r.ttl_ms
    };
    let token = format!("tfu_{}", crate::store::secret());
    let t = shared
        .store
        .create_api_token(
            &user,
            &crate::auth::hash(&token),
            &r.description,
            &by,
            now_ms() + ttl,
        )
        .await?;
    tracing::info!(token_id = %t.id, %user, created_by = %by, "API token created");
    let detail = json!({"token_id": t.id, "user": user, "expires_ms": t.expires_ms});
    audit(shared, AuditKind::TokenCreated, &by, detail).await?;
    Ok(Response::new(v1::CreateTokenResponse {
        info: Some(token_to_pb(t)),
        token,
    }))
}

/// Lists tokens: the caller's own, or (admin) a user's or everyone's (`*`).
pub(super) async fn list_tokens(
    shared: &Shared,
    req: Request<v1::ListTokensRequest>,
) -> Reply<v1::ListTokensResponse> {
    let want = req.get_ref().user.clone();
    let user = if want == "*" {
        authorize(shared, &req, Action::ManageTokens, None, None).await?;
        None
    } else {
        Some(token_owner(shared, &req, &want).await?.0)
    };
    let tokens = shared.store.api_tokens(user.as_deref()).await?;
    Ok(Response::new(v1::ListTokensResponse {
        tokens: tokens.into_iter().map(token_to_pb).collect(),
    }))
}

/// Revokes a token: one's own, or (admin) anyone's.
pub(super) async fn revoke_token(
    shared: &Shared,
    req: Request<v1::RevokeTokenRequest>,
) -> Reply<v1::TokenInfo> {
    let t = shared.store.api_token(&req.get_ref().id).await?;
    let (_, by) = token_owner(shared, &req, &t.user).await?;
    let t = shared.store.revoke_api_token(&t.id).await?;
    let detail = json!({"token_id": t.id, "user": t.user});
    audit(shared, AuditKind::TokenRevoked, &by, detail).await?;
    tracing::info!(token_id = %t.id, user = %t.user, "API token revoked");
    Ok(Response::new(token_to_pb(t)))
}

/// The checked (user, role, glob) of a grant request.
fn grant_parts(r: &v1::RoleGrantRequest) -> Result<(Role, WorkspaceGlob)> {
    valid_user(&r.user)?;
    let role: Role = r.role.parse().map_err(Error::InvalidInput)?;
    let glob = WorkspaceGlob::parse(&r.workspaces).map_err(Error::InvalidInput)?;
    Ok((role, glob))
}

/// Grants a role on a workspace glob (admin).
pub(super) async fn grant_role(
    shared: &Shared,
    req: Request<v1::RoleGrantRequest>,
) -> Reply<v1::RoleGrant> {
    let by = authorize_change(shared, &req, Action::ManageRoles).await?;
    let (role, glob) = grant_parts(req.get_ref())?;
    let user = &req.get_ref().user;
    let g = shared
        .store
        .grant_role(user, role.as_str(), glob.as_str(), &by)
        .await?;
    tracing::info!(%user, role = %role, workspaces = %glob.as_str(), granted_by = %by, "role granted");
    let detail = json!({"user": user, "role": role.as_str(), "workspaces": glob.as_str()});
    audit(shared, AuditKind::RoleGranted, &by, detail).await?;
    Ok(Response::new(grant_to_pb(g)))
}

/// Takes a role back (admin).
pub(super) async fn revoke_role(
    shared: &Shared,
    req: Request<v1::RoleGrantRequest>,
) -> Reply<v1::RoleGrant> {
    let by = authorize_change(shared, &req, Action::ManageRoles).await?;
    let (role, glob) = grant_parts(req.get_ref())?;
    let user = req.get_ref().user.clone();
    shared
        .store
        .revoke_role(&user, role.as_str(), glob.as_str())
        .await?;
    tracing::info!(%user, role = %role, workspaces = %glob.as_str(), revoked_by = %by, "role revoked");
    let detail = json!({"user": user, "role": role.as_str(), "workspaces": glob.as_str()});
    audit(shared, AuditKind::RoleRevoked, &by, detail).await?;
    Ok(Response::new(v1::RoleGrant {
        user,
        role: role.to_string(),
        workspaces: glob.as_str().to_string(),
        granted_by: by,
        granted_ms: now_ms(),
    }))
}

/// Lists grants: one's own, or (admin) a user's or everyone's.
pub(super) async fn list_roles(
    shared: &Shared,
    req: Request<v1::ListRolesRequest>,
) -> Reply<v1::ListRolesResponse> {
    let (c, me) = authorize_caller(shared, &req, Action::WhoAmI, None, None).await?;
    let want = req.get_ref().user.clone();
    if want != me || want.is_empty() {
        crate::auth::authorize(&c, Action::ManageRoles, None, None)?;
    }
    let grants = shared
        .store
        .role_grants(Some(want.as_str()).filter(|w| !w.is_empty()))
        .await?;
    Ok(Response::new(v1::ListRolesResponse {
        grants: grants.into_iter().map(grant_to_pb).collect(),
    }))
}
