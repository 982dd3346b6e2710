//! Plan policies (`lifecycle/policy.rs` evaluates them): add or replace, show, list and
//! remove. Everything here is an admin's (`Action::ManagePolicies`): a policy can approve
//! applies without a human. A policy is checked before it is stored: it must compile and
//! evaluate an empty plan without error.

use super::{authorize_change, Reply, Shared};
use crate::api::convert::plan_policy_to_pb;
use crate::auth::{Action, WorkspaceGlob};
use crate::error::{Error, Result};
use crate::store::PlanPolicy;
use tofuflow_proto::names::valid_policy_name;
use tofuflow_proto::{policy, v1};
use tonic::{Request, Response};

/// The largest policy source accepted.
const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// The package a stored policy's rules are read from ('' if it no longer compiles).
fn package_of(p: &PlanPolicy) -> String {
    policy::compile(&p.name, &p.source)
        .map(|c| c.package)
        .unwrap_or_default()
}

/// Checks a policy to add: its name, glob, size, and that it compiles; returns its package.
fn checked(r: &v1::SetPolicyRequest) -> Result<String> {
    valid_policy_name(&r.name).map_err(Error::InvalidInput)?;
    WorkspaceGlob::parse(&r.workspaces).map_err(|e| {
        Error::InvalidInput(format!(
            "{e}: give the workspaces the policy applies to as a glob (--workspace 'prod/*', or '**' for all)"
        ))
    })?;
    if r.source.trim().is_empty() || r.source.len() > MAX_SOURCE_BYTES {
        return Err(Error::InvalidInput(format!(
            "policy {} is empty or larger than {MAX_SOURCE_BYTES} bytes: give a Rego file (--file policy.rego)",
            r.name
        )));
    }
    policy::check(&r.name, &r.source)
        .map(|c| c.package)
        .map_err(Error::InvalidInput)
}

/// Adds a policy, or replaces the one of that name (its version grows).
pub(super) async fn set(
    shared: &Shared,
    req: Request<v1::SetPolicyRequest>,
) -> Reply<v1::PlanPolicy> {
    let who = authorize_change(shared, &req, Action::ManagePolicies).await?;
    let r = req.get_ref();
    let probe = r.clone();
    // Compiling and the trial evaluation take milliseconds, at most the check's second.
    let package = tokio::task::spawn_blocking(move || checked(&probe))
        .await
        .map_err(|e| Error::Internal(format!("policy check failed: {e}")))??;
    let p = PlanPolicy {
        name: r.name.clone(),
        workspaces: r.workspaces.clone(),
        source: r.source.clone(),
        description: r.description.clone(),
        ..PlanPolicy::default()
    };
    let saved = shared.store.put_plan_policy(&p, &who).await?;
    tracing::info!(policy = %saved.name, version = saved.version, workspaces = %saved.workspaces, by = %who, "plan policy set");
    Ok(Response::new(plan_policy_to_pb(saved, package, true)))
}

/// One policy with its source.
pub(super) async fn get(shared: &Shared, req: Request<v1::PolicyRequest>) -> Reply<v1::PlanPolicy> {
    authorize_change(shared, &req, Action::ManagePolicies).await?;
    let p = shared.store.plan_policy(&req.get_ref().name).await?;
    let package = package_of(&p);
    Ok(Response::new(plan_policy_to_pb(p, package, true)))
}

/// Every policy (or those applying to one workspace), without sources.
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListPoliciesRequest>,
) -> Reply<v1::ListPoliciesResponse> {
    authorize_change(shared, &req, Action::ManagePolicies).await?;
    let ws = req.get_ref().workspace.clone();
    let all = shared.store.plan_policies().await?;
    Ok(Response::new(v1::ListPoliciesResponse {
        policies: all
            .into_iter()
            .filter(|p| {
                ws.is_empty()
                    || WorkspaceGlob::parse(&p.workspaces).map_or(true, |g| g.matches(&ws))
            })
            .map(|p| {
                let package = package_of(&p);
                plan_policy_to_pb(p, package, false)
            })
            .collect(),
    }))
}

/// Removes a policy (its past verdicts stay with their runs).
pub(super) async fn delete(
    shared: &Shared,
    req: Request<v1::PolicyRequest>,
) -> Reply<v1::PlanPolicy> {
    let who = authorize_change(shared, &req, Action::ManagePolicies).await?;
    let gone = shared
        .store
        .delete_plan_policy(&req.get_ref().name, &who)
        .await?;
    tracing::info!(policy = %gone.name, by = %who, "plan policy removed");
    Ok(Response::new(plan_policy_to_pb(gone, String::new(), true)))
}
