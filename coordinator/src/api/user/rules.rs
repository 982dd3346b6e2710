//! Workspace rules (allowed module sources, bundle digests and pools; four-eyes) and pool
//! rules (the workspaces a pool serves). Setting them is an admin's; anyone may read them.

use super::{audit, authorize, authorize_change, Reply, Shared};
use crate::api::convert::{pool_rule_to_pb, workspace_rule_to_pb};
use crate::audit::AuditKind;
use crate::auth::{Action, WorkspaceGlob};
use crate::error::{Error, Result};
use crate::store::{now_ms, PoolRule, WorkspaceRule};
use serde_json::json;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// A rule's checked fields.
fn checked_rule(r: &v1::WorkspaceRule, by: String) -> Result<WorkspaceRule> {
    let glob = WorkspaceGlob::parse(&r.workspaces).map_err(Error::InvalidInput)?;
    for p in &r.pools {
        crate::queue::valid_pool(p).map_err(Error::InvalidInput)?;
    }
    for d in &r.bundle_digests {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{d:?} is not a bundle digest: use sha256: and 64 hex digits, as `run show` prints"
            )));
        }
    }
    if let Some(s) = r
        .sources
        .iter()
        .find(|s| s.trim().is_empty() || s.len() > 500)
    {
        return Err(Error::InvalidInput(format!(
            "{s:?} is not a module source prefix: give a repository URL and path, e.g. git@github.com:acme/infra.git//modules/gpu"
        )));
    }
    Ok(WorkspaceRule {
        workspaces: glob.as_str().to_string(),
        four_eyes: r.four_eyes,
        sources: r.sources.clone(),
        digests: r.bundle_digests.clone(),
        pools: r.pools.clone(),
        updated_by: by,
        updated_ms: now_ms(),
    })
}

/// Creates or replaces the rule of a workspace glob (admin).
pub(super) async fn set_workspace_rule(
    shared: &Shared,
    req: Request<v1::WorkspaceRule>,
) -> Reply<v1::WorkspaceRule> {
    let who = authorize_change(shared, &req, Action::ManageRules).await?;
    let rule = checked_rule(req.get_ref(), who)?;
    shared.store.set_workspace_rule(&rule).await?;
    tracing::info!(workspaces = %rule.workspaces, by = %rule.updated_by, "workspace rule set");
    let detail = json!({"workspace_rule": rule.workspaces, "four_eyes": rule.four_eyes, "sources": rule.sources, "digests": rule.digests, "pools": rule.pools});
    audit(shared, AuditKind::RuleChanged, &rule.updated_by, detail).await?;
    Ok(Response::new(workspace_rule_to_pb(rule)))
}

/// Removes the rule of a workspace glob (admin).
pub(super) async fn delete_workspace_rule(
    shared: &Shared,
    req: Request<v1::DeleteWorkspaceRuleRequest>,
) -> Reply<v1::WorkspaceRule> {
    let who = authorize_change(shared, &req, Action::ManageRules).await?;
    let rule = shared
        .store
        .delete_workspace_rule(&req.get_ref().workspaces)
        .await?;
    tracing::info!(workspaces = %rule.workspaces, by = %who, "workspace rule deleted");
    let detail = json!({"workspace_rule": rule.workspaces, "deleted": true});
    audit(shared, AuditKind::RuleChanged, &who, detail).await?;
    Ok(Response::new(workspace_rule_to_pb(rule)))
}

/// Every workspace rule (anyone).
pub(super) async fn list_workspace_rules(
    shared: &Shared,
    req: Request<v1::ListRulesRequest>,
) -> Reply<v1::ListWorkspaceRulesResponse> {
    authorize(shared, &req, Action::ReadRuns, None, None).await?;
    let rules = shared.store.workspace_rules().await?;
    Ok(Response::new(v1::ListWorkspaceRulesResponse {
        rules: rules.into_iter().map(workspace_rule_to_pb).collect(),
    }))
}

/// Sets the workspaces a pool serves (admin); none removes the rule.
pub(super) async fn set_pool_rule(
    shared: &Shared,
    req: Request<v1::PoolRule>,
) -> Reply<v1::PoolRule> {
    let who = authorize_change(shared, &req, Action::ManageRules).await?;
    let r = req.into_inner();
    crate::queue::valid_pool(&r.pool).map_err(Error::InvalidInput)?;
    let mut workspaces = Vec::new();
    for g in &r.workspaces {
        workspaces.push(
            WorkspaceGlob::parse(g)
                .map_err(Error::InvalidInput)?
                .as_str()
                .to_string(),
        );
    }
    let rule = PoolRule {
        pool: r.pool,
        workspaces,
        updated_by: who,
        updated_ms: now_ms(),
    };
    shared.store.set_pool_rule(&rule).await?;
    tracing::info!(pool = %rule.pool, workspaces = ?rule.workspaces, "pool rule set");
    let detail = json!({"pool_rule": rule.pool, "workspaces": rule.workspaces});
    audit(shared, AuditKind::RuleChanged, &rule.updated_by, detail).await?;
    Ok(Response::new(pool_rule_to_pb(rule)))
}

/// Every pool rule (anyone).
pub(super) async fn list_pool_rules(
    shared: &Shared,
    req: Request<v1::ListRulesRequest>,
) -> Reply<v1::ListPoolRulesResponse> {
    authorize(shared, &req, Action::ReadRuns, None, None).await?;
    let rules = shared.store.pool_rules().await?;
    Ok(Response::new(v1::ListPoolRulesResponse {
        rules: rules.into_iter().map(pool_rule_to_pb).collect(),
    }))
}
