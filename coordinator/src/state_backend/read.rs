//! GET: the workspace's current state, with its `Content-MD5`.

use crate::error::Result;
use crate::http::App;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use md5::{Digest, Md5};

/// The latest state version's content (200), or 204 when there is none (or it was deleted).
pub(super) async fn get(app: &App, workspace: &str) -> Result<Response> {
    let Some(data) = app.store.latest_state(workspace).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&data));
    Ok((
        [
            ("content-type", "application/json"),
            ("content-md5", md5.as_str()),
        ],
        data,
    )
        .into_response())
}
