//! POST/PUT (a new state version) and DELETE (a tombstone version): the only verbs that change
//! state, open to apply tasks only.

use crate::error::{Error, Result};
use crate::http::App;
use crate::store::Task;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Stores `body` as the workspace's next state version. The store checks the lock ID (`?ID=`),
/// lineage and serial; a refusal is a 409 with the reason, logged.
pub(super) async fn put(
    app: &App,
    workspace: &str,
    lock_id: Option<&String>,
    task: &Task,
    body: &[u8],
) -> Result<Response> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidInput(format!("state is not JSON: {e}")))?;
    let (Some(serial), Some(lineage)) = (
        v.get("serial").and_then(|s| s.as_i64()),
        v.get("lineage").and_then(|s| s.as_str()),
    ) else {
        return Err(Error::InvalidInput(
            "state needs top-level \"serial\" and \"lineage\"".into(),
        ));
    };
    let lock_id = lock_id.map(String::as_str);
    let version = app
        .store
        .write_state(
            workspace,
            body,
            serial,
            lineage,
            lock_id,
            task,
            &task.agent_id,
        )
        .await
        .inspect_err(|e| {
            if let Error::Conflict(m) = e {
                tracing::warn!(%workspace, task_id = %task.id, reason = %m, "state write rejected");
            }
        })?;
    tracing::info!(%workspace, version, serial, task_id = %task.id, "state written");
    Ok(StatusCode::OK.into_response())
}

/// Deletes the workspace's state: a tombstone version, the history kept.
pub(super) async fn delete(app: &App, workspace: &str, task: &Task) -> Result<Response> {
    app.store
        .delete_state(workspace, task, &task.agent_id)
        .await?;
    tracing::warn!(%workspace, task_id = %task.id, "state deleted (a tombstone version; history kept)");
    Ok(StatusCode::OK.into_response())
}
