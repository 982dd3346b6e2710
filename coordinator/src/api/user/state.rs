//! Workspaces' state as users see it: versions and their audit trail, pulling a version,
//! rollback, and locking by hand.

use super::{authorize, Reply, Shared, StateStream};
use crate::api::convert::{state_event_to_pb, version_to_pb};
use crate::auth::Action;
use crate::error::Error;
use crate::store::StateLock;
use tofuflow_proto::names::valid_workspace;
use tofuflow_proto::v1;
use tonic::{Request, Response, Status};

/// Who holds a lock and its LockInfo: the `Who` of the LockInfo, else the holding task.
fn lock_holder(lock: Option<StateLock>) -> (String, String) {
    match lock {
        Some(l) => (
            serde_json::from_str::<serde_json::Value>(&l.info)
                .ok()
                .and_then(|v| v.get("Who").and_then(|w| w.as_str()).map(str::to_string))
                .unwrap_or(l.task_id),
            l.info,
        ),
        None => (String::new(), String::new()),
    }
}

/// Lists a workspace's state versions, its audit trail and its lock (viewer).
pub(super) async fn list_versions(
    shared: &Shared,
    req: Request<v1::StateRequest>,
) -> Reply<v1::StateVersionList> {
    authorize(
        shared,
        &req,
        Action::ReadState,
        Some(&req.get_ref().workspace),
        None,
    )
    .await?;
    let r = req.into_inner();
    valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
    let st = &shared.store;
    let versions = st.list_state_versions(&r.workspace).await?;
    let events = st.state_events(&r.workspace).await?;
    let (lock_owner, lock_info) = lock_holder(st.state_lock(&r.workspace).await?);
    Ok(Response::new(v1::StateVersionList {
        versions: versions.into_iter().map(version_to_pb).collect(),
        events: events.into_iter().map(state_event_to_pb).collect(),
        lock_owner,
        lock_info,
    }))
}

/// Streams one state version (the latest unless one is asked for), its metadata in the first
/// chunk (viewer).
pub(super) async fn pull(shared: &Shared, req: Request<v1::StateRequest>) -> Reply<StateStream> {
    authorize(
        shared,
        &req,
        Action::ReadState,
        Some(&req.get_ref().workspace),
        None,
    )
    .await?;
    let r = req.into_inner();
    valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
    let (meta, data) = shared
        .store
        .state_version(&r.workspace, (r.version > 0).then_some(r.version))
        .await?;
    let mut chunks: Vec<Result<v1::StateChunk, Status>> = data
        .chunks(tofuflow_proto::CHUNK_BYTES)
        .map(|c| {
            Ok(v1::StateChunk {
                info: None,
                data: c.to_vec(),
            })
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(Ok(v1::StateChunk::default()));
    }
    if let Some(Ok(first)) = chunks.first_mut() {
        first.info = Some(version_to_pb(meta));
    }
    Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
}

/// Makes an older version current as a new version, recorded with who and why (admin).
pub(super) async fn rollback(
    shared: &Shared,
    req: Request<v1::RollbackStateRequest>,
) -> Reply<v1::StateVersionInfo> {
    let actor = authorize(
        shared,
        &req,
        Action::Rollback,
        Some(&req.get_ref().workspace),
        Some(&req.get_ref().actor),
    )
    .await?;
    let mut r = req.into_inner();
    r.actor = actor;
    valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
    let v = shared
        .store
        .rollback_state(&r.workspace, r.to_version, &r.actor, &r.reason)
        .await?;
    tracing::warn!(workspace = %r.workspace, to = r.to_version, new_version = v, actor = %r.actor, "state rolled back");
    let (meta, _) = shared.store.state_version(&r.workspace, Some(v)).await?;
    Ok(Response::new(version_to_pb(meta)))
}

/// Locks a workspace by hand (operator); refused while anyone holds its lock.
pub(super) async fn lock(
    shared: &Shared,
    req: Request<v1::StateLockRequest>,
) -> Reply<v1::StateLockInfo> {
    let actor = authorize(
        shared,
        &req,
        Action::LockState,
        Some(&req.get_ref().workspace),
        Some(&req.get_ref().actor),
    )
    .await?;
    let mut r = req.into_inner();
    r.actor = actor;
    valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
    match shared
        .store
        .lock_state_human(&r.workspace, &r.actor, &r.reason)
        .await?
    {
        Ok(id) => Ok(Response::new(v1::StateLockInfo {
            lock_id: id,
            owner: r.actor,
            info: String::new(),
        })),
        Err(held) => Err(Error::Conflict(format!(
            "workspace {:?} is already locked: {}",
            r.workspace, held.info
        ))
        .into()),
    }
}

/// Releases one's own lock (operator), or with `force` anyone's (admin, logged at warn).
pub(super) async fn unlock(
    shared: &Shared,
    req: Request<v1::StateLockRequest>,
) -> Reply<v1::StateLockInfo> {
    let action = if req.get_ref().force {
        Action::ForceUnlock
    } else {
        Action::UnlockState
    };
    let actor = authorize(
        shared,
        &req,
        action,
        Some(&req.get_ref().workspace),
        Some(&req.get_ref().actor),
    )
    .await?;
    let mut r = req.into_inner();
    r.actor = actor;
    valid_workspace(&r.workspace).map_err(Error::InvalidInput)?;
    let owner = shared
        .store
        .unlock_state_human(&r.workspace, &r.actor, r.force, &r.reason)
        .await?;
    if r.force {
        tracing::warn!(workspace = %r.workspace, actor = %r.actor, previous_owner = %owner, "state lock force-released");
    }
    Ok(Response::new(v1::StateLockInfo {
        lock_id: String::new(),
        owner,
        info: String::new(),
    }))
}
