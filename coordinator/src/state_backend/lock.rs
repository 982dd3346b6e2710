//! LOCK and UNLOCK: a task takes and releases its workspace's state lock; a holder's LockInfo
//! answers a refused request, as OpenTofu's client expects.

use crate::error::{Error, Result};
use crate::http::App;
use crate::store::Task;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The lock ID in a LockInfo body (`None` for an empty body).
fn lock_id_of(body: &[u8]) -> Result<Option<String>> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidInput(format!("lock info is not JSON: {e}")))?;
    let id = v
        .get("ID")
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || id.len() > 255 {
        return Err(Error::InvalidInput(
            "lock info needs an ID of 1-255 characters".into(),
        ));
    }
    Ok(Some(id))
}

/// A JSON answer carrying a lock holder's LockInfo.
fn holder(status: StatusCode, info: String) -> Response {
    (status, [("content-type", "application/json")], info).into_response()
}

/// Takes the workspace's lock for `task` (200), or answers 423 with the holder's LockInfo.
pub(super) async fn lock(app: &App, workspace: &str, task: &Task, body: &[u8]) -> Result<Response> {
    let Some(id) = lock_id_of(body)? else {
        return Err(Error::InvalidInput(
            "LOCK needs the lock info as body".into(),
        ));
    };
    let info = String::from_utf8_lossy(body);
    match app.store.lock_state(workspace, &id, &info, task).await? {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(held) => Ok(holder(StatusCode::LOCKED, held.info)),
    }
}

/// Releases `task`'s lock (200); a wrong ID gets 409 with the current lock. OpenTofu 1.9's
/// force-unlock sends no body: it means "the lock I hold".
pub(super) async fn unlock(
    app: &App,
    workspace: &str,
    task: &Task,
    body: &[u8],
) -> Result<Response> {
    let Some(held) = app.store.state_lock(workspace).await? else {
        return Err(Error::Conflict("state is not locked".into()));
    };
    let id = lock_id_of(body)?.unwrap_or_else(|| held.lock_id.clone());
    if app.store.unlock_state(workspace, &id, task).await? {
        Ok(StatusCode::OK.into_response())
    } else {
        Ok(holder(StatusCode::CONFLICT, held.info))
    }
}
