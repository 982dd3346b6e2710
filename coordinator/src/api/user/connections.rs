//! Connections: named credential sets attached to workspace globs. Managing them is an admin's;
//! no call returns a secret value (only plain keys' values); the values go to agents only in
//! a claim answer (`api/convert.rs` `task_spec`).

use super::{authorize_change, Reply, Shared};
use crate::api::convert::{connection_to_pb, connection_values};
use crate::auth::{Action, WorkspaceGlob};
use crate::error::{Error, Result};
use crate::runs::Phase;
use crate::store::Connection;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// A set request's name, globs and description, checked.
fn checked(r: &v1::SetConnectionRequest) -> Result<Connection> {
    tofuflow_proto::connections::valid_name(&r.name).map_err(Error::InvalidInput)?;
    if r.workspaces.is_empty() {
        return Err(Error::InvalidInput(format!(
            "connection {} is attached to no workspace: give --workspace GLOB (e.g. 'ml/*', or '**' for every workspace)",
            r.name
        )));
    }
    let mut workspaces = Vec::with_capacity(r.workspaces.len());
    for w in &r.workspaces {
        let g = WorkspaceGlob::parse(w).map_err(Error::InvalidInput)?;
        workspaces.push(g.as_str().to_string());
    }
    if r.description.len() > 500 {
        return Err(Error::InvalidInput(
            "a connection's description is at most 500 characters".into(),
        ));
    }
    let mut phases = Vec::new();
    for p in &r.phases {
        match v1::Phase::try_from(*p) {
            Ok(v1::Phase::Plan) => phases.push(Phase::Plan),
            Ok(v1::Phase::Apply) => phases.push(Phase::Apply),
            _ => {
                return Err(Error::InvalidInput(
                    "a connection's phases are plan and apply".into(),
                ))
            }
        }
    }
    phases.dedup();
    Ok(Connection {
        name: r.name.clone(),
        workspaces,
        phases,
        description: r.description.clone(),
        ..Connection::default()
    })
}

/// Creates or replaces a connection (a new version).
pub(super) async fn set(
    shared: &Shared,
    req: Request<v1::SetConnectionRequest>,
) -> Reply<v1::Connection> {
    let who = authorize_change(shared, &req, Action::ManageConnections).await?;
    let r = req.get_ref();
    let c = checked(r)?;
    let values = connection_values(r.values.as_ref());
    let saved = shared.store.set_connection(&c, &values, &who).await?;
    tracing::info!(connection = %saved.name, version = saved.version, by = %who, "connection set");
    Ok(Response::new(connection_to_pb(saved)))
}

/// New values for some keys, or keys removed (a new version, taken by the next task).
pub(super) async fn rotate(
    shared: &Shared,
    req: Request<v1::RotateConnectionRequest>,
) -> Reply<v1::Connection> {
    let who = authorize_change(shared, &req, Action::ManageConnections).await?;
    let r = req.get_ref();
    let update = connection_values(r.values.as_ref());
    if update.env.is_empty() && update.files.is_empty() && r.remove_keys.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to rotate: give new values (--from-file, --file) or --remove KEY".into(),
        )
        .into());
    }
    let saved = shared
        .store
        .rotate_connection(&r.name, &update, &r.remove_keys, &who)
        .await?;
    tracing::info!(connection = %saved.name, version = saved.version, by = %who, "connection rotated");
    Ok(Response::new(connection_to_pb(saved)))
}

/// Removes a connection and every version of it.
pub(super) async fn delete(
    shared: &Shared,
    req: Request<v1::ConnectionRequest>,
) -> Reply<v1::Connection> {
    let who = authorize_change(shared, &req, Action::ManageConnections).await?;
    let gone = shared
        .store
        .delete_connection(&req.get_ref().name, &who)
        .await?;
    tracing::info!(connection = %gone.name, by = %who, "connection deleted");
    Ok(Response::new(connection_to_pb(gone)))
}

/// One connection: globs, keys, history, plain values.
pub(super) async fn get(
    shared: &Shared,
    req: Request<v1::ConnectionRequest>,
) -> Reply<v1::Connection> {
    authorize_change(shared, &req, Action::ManageConnections).await?;
    let c = shared.store.connection(&req.get_ref().name).await?;
    Ok(Response::new(connection_to_pb(c)))
}

/// Every connection, or those a task of one workspace would receive.
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListConnectionsRequest>,
) -> Reply<v1::ListConnectionsResponse> {
    authorize_change(shared, &req, Action::ManageConnections).await?;
    let ws = &req.get_ref().workspace;
    if !ws.is_empty() {
        tofuflow_proto::names::valid_workspace(ws).map_err(Error::InvalidInput)?;
    }
    let found = shared
        .store
        .connections((!ws.is_empty()).then_some(ws.as_str()))
        .await?;
    Ok(Response::new(v1::ListConnectionsResponse {
        connections: found.into_iter().map(connection_to_pb).collect(),
    }))
}
