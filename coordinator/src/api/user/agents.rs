//! Agents as users see them.

use super::{authorize, Reply, Shared};
use crate::api::convert::agent_to_pb;
use crate::auth::Action;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// Lists registered agents with pools, state and load (viewer).
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListAgentsRequest>,
) -> Reply<v1::ListAgentsResponse> {
    authorize(shared, &req, Action::ListAgents, None, None)?;
    let agents = shared.store.agents().await?;
    Ok(Response::new(v1::ListAgentsResponse {
        agents: agents.into_iter().map(agent_to_pb).collect(),
    }))
}
