//! Environments with a TTL (`lifecycle/ttl.rs`): list them (a viewer sees those of the
//! workspaces they may read) and extend a deadline (an operator on the workspace, as for
//! submitting the run that set it).

use super::{authorize_caller, authorize_recorded, Reply, Shared};
use crate::api::convert::environment_to_pb;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::lifecycle::ttl::Extend;
use crate::runs::ttl::EnvState;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// Every environment the caller may read, soonest deadline first (viewer).
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListEnvironmentsRequest>,
) -> Reply<v1::ListEnvironmentsResponse> {
    let (caller, _) = authorize_caller(shared, &req, Action::ReadRuns, None, None).await?;
    let want = match req.get_ref().state.as_str() {
        "" => None,
        s => Some(s.parse::<EnvState>().map_err(|e| {
            Error::InvalidInput(format!(
                "{e}: use active, tearing_down, destroyed or teardown_failed"
            ))
        })?),
    };
    let envs = shared.store.environments().await?;
    Ok(Response::new(v1::ListEnvironmentsResponse {
        environments: envs
            .into_iter()
            .filter(|e| want.is_none_or(|s| e.state == s))
            .filter(|e| caller.may(Action::ReadRuns, Some(&e.workspace)))
            .map(environment_to_pb)
            .collect(),
    }))
}

/// Moves an active environment's deadline (operator on its workspace).
pub(super) async fn extend(
    shared: &Shared,
    req: Request<v1::ExtendEnvironmentRequest>,
) -> Reply<v1::Environment> {
    let ws = req.get_ref().workspace.clone();
    let actor = authorize_recorded(shared, &req, Action::Submit, Some(&ws)).await?;
    let how = extension(req.get_ref())?;
    let env = shared.store.extend_environment(&ws, how, &actor).await?;
    tracing::info!(workspace = %ws, by = %actor, expires_unix_ms = env.expires_ms, "environment extended");
    Ok(Response::new(environment_to_pb(env)))
}

/// Exactly one of `by_ms` and `ttl_ms`, positive.
fn extension(r: &v1::ExtendEnvironmentRequest) -> Result<Extend> {
    match (r.by_ms, r.ttl_ms) {
        (by, 0) if by > 0 => Ok(Extend::By(by)),
        (0, ttl) if ttl > 0 => Ok(Extend::Ttl(ttl)),
        _ => Err(Error::InvalidInput(
            "give exactly one of --by (later by this much, e.g. 2h) and --ttl (this long from now)"
                .into(),
        )),
    }
}
