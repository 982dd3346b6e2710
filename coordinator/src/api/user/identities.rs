//! Identity configurations: per workspace glob, the audience of tasks' ID tokens and the cloud
//! roles they are presented to (`crate::oidc::identities`). Setting and deleting them is an
//! admin's (audited); anyone may read them (they hold no secret).

use super::{audit, authorize, authorize_change, Reply, Shared};
use crate::api::convert::{identity_config_to_pb, identity_fields};
use crate::audit::AuditKind;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::oidc::{Identity, IdentityName};
use serde_json::json;
use tofuflow_proto::v1;
use tonic::{Request, Response};

fn name(r: &v1::IdentityRequest) -> Result<IdentityName> {
    IdentityName::parse(r.name.trim()).map_err(Error::InvalidInput)
}

/// What the audit log records of a configuration (all of it: none of it is secret).
fn detail(i: &Identity, deleted: bool) -> serde_json::Value {
    let f = i.fields();
    json!({"identity": f.name, "workspaces": f.workspaces, "audience": f.audience,
        "aws_role_arn": f.aws_role_arn, "aws_plan_role_arn": f.aws_plan_role_arn,
        "aws_apply_role_arn": f.aws_apply_role_arn, "gcp_audience": f.gcp_audience,
        "gcp_service_account": f.gcp_service_account, "azure_client_id": f.azure_client_id,
        "azure_tenant_id": f.azure_tenant_id, "azure_subscription_id": f.azure_subscription_id,
        "deleted": deleted})
}

/// Creates or replaces a configuration (admin).
pub(super) async fn set(shared: &Shared, req: Request<v1::Identity>) -> Reply<v1::Identity> {
    let who = authorize_change(shared, &req, Action::ManageIdentities).await?;
    let fields = identity_fields(req.get_ref());
    let id = Identity::check(&fields, &who, crate::store::now_ms()).map_err(Error::InvalidInput)?;
    shared.store.set_identity(&id).await?;
    tracing::info!(identity = %id.name, workspaces = %id.workspaces.as_str(), by = %who, "identity configuration set");
    audit(shared, AuditKind::IdentityChanged, &who, detail(&id, false)).await?;
    Ok(Response::new(identity_config_to_pb(&id)))
}

/// One configuration (anyone).
pub(super) async fn get(shared: &Shared, req: Request<v1::IdentityRequest>) -> Reply<v1::Identity> {
    authorize(shared, &req, Action::ReadRuns, None, None).await?;
    let id = shared.store.identity(&name(req.get_ref())?).await?;
    Ok(Response::new(identity_config_to_pb(&id)))
}

/// Every configuration (anyone).
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListIdentitiesRequest>,
) -> Reply<v1::ListIdentitiesResponse> {
    authorize(shared, &req, Action::ReadRuns, None, None).await?;
    let all = shared.store.identities().await?;
    Ok(Response::new(v1::ListIdentitiesResponse {
        identities: all.iter().map(identity_config_to_pb).collect(),
    }))
}

/// Removes a configuration (admin): the workspaces it covered fall back to a less specific
/// one, or to the default audience.
pub(super) async fn delete(
    shared: &Shared,
    req: Request<v1::IdentityRequest>,
) -> Reply<v1::Identity> {
    let who = authorize_change(shared, &req, Action::ManageIdentities).await?;
    let id = shared.store.delete_identity(&name(req.get_ref())?).await?;
    tracing::info!(identity = %id.name, by = %who, "identity configuration deleted");
    audit(shared, AuditKind::IdentityChanged, &who, detail(&id, true)).await?;
    Ok(Response::new(identity_config_to_pb(&id)))
}
