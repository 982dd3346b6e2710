//! OpenTofu's `http` state backend at `/state/{workspace}`: this file routes a request by
//! method after authenticating it and checking its phase; [`read`] answers GET, [`write`]
//! POST/PUT and DELETE, [`lock`] LOCK and UNLOCK.
//!
//! The state backend trusts nothing the `http` client does not check itself: every request needs
//! a task's lease credential for that workspace (handed out at claim, dead with the lease), a
//! plan task's credential only reads and locks (providers run code during plan: an unreviewed
//! change must not write state), every write must carry the current lock ID while the state is
//! locked, and lineage and serial must move forward (an identical retry is accepted without a
//! new version).

mod lock;
mod read;
mod write;

use crate::auth::Api;
use crate::error::{Error, Result};
use crate::http::App;
use crate::runs::Phase;
use crate::store::Task;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Answers one state-backend request: checks the workspace name, the task's credential, its
/// phase and the body's `Content-MD5`, then hands the request to its verb.
pub async fn route(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(workspace): Path<String>,
    method: Method,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    tofuflow_proto::names::valid_workspace(&workspace).map_err(Error::InvalidInput)?;
    let Some(task) = authenticate(&app, peer, &headers, &workspace).await? else {
        return Ok(challenge());
    };
    if let Err(why) = phase_may(task.phase, &method) {
        tracing::warn!(%workspace, task_id = %task.id, method = %method, "state write by a plan task refused");
        return Err(Error::PermissionDenied(why));
    }
    check_md5(&headers, &body)?;
    match method.as_str() {
        "GET" => read::get(&app, &workspace).await,
        "POST" | "PUT" => write::put(&app, &workspace, q.get("ID"), &task, &body).await,
        "DELETE" => write::delete(&app, &workspace, &task).await,
        "LOCK" => lock::lock(&app, &workspace, &task, &body).await,
        "UNLOCK" => lock::unlock(&app, &workspace, &task, &body).await,
        m => Ok((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {m} is not part of the http backend protocol\n"),
        )
            .into_response()),
    }
}

/// The answer to a request without credentials: 401 asking for Basic credentials.
fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Basic realm=\"tofuflow state\"")],
        "credentials required: state is readable only with a task's lease credential\n",
    )
        .into_response()
}

/// The task whose lease credential came with the request, for this workspace; `None` when the
/// request has no credentials at all. A failure is counted and logged with the peer address
/// (never the credential).
async fn authenticate(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    workspace: &str,
) -> Result<Option<Task>> {
    let fail = |why: &str| app.auth_failures.record(Api::State, Some(peer), why);
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        fail("missing credentials");
        return Ok(None);
    };
    let decoded = auth
        .strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        fail("malformed Basic credentials");
        return Err(Error::Unauthenticated("malformed Basic credentials".into()));
    };
    match app.store.task_for_token(user, pass).await? {
        Some((task, ws)) if ws == workspace => Ok(Some(task)),
        Some((task, ws)) => {
            tracing::warn!(task_id = %task.id, credential_workspace = %ws, %workspace, "a task's state credential was used for another workspace");
            fail("credential of another workspace");
            Err(Error::PermissionDenied(format!(
                "this credential is for workspace {ws:?}, not {workspace:?}"
            )))
        }
        None => {
            fail("invalid or expired credential");
            Err(Error::PermissionDenied(
                "invalid or expired credential: it lives only as long as its task's lease".into(),
            ))
        }
    }
}

/// Whether a task of `phase` may use `method`: plan-phase credentials are read-only (GET, LOCK,
/// UNLOCK); only the apply phase of an approved run writes (POST, PUT, DELETE).
fn phase_may(phase: Phase, method: &Method) -> Result<(), String> {
    let writes = matches!(method.as_str(), "POST" | "PUT" | "DELETE");
    if writes && phase != Phase::Apply {
        return Err(format!(
            "{method} refused: this credential belongs to a {} task, and plan-phase credentials are read-only (GET, LOCK, UNLOCK); only the apply of an approved run writes state",
            phase.as_str()
        ));
    }
    Ok(())
}

/// Checks the body against its `Content-MD5` header, when there is one.
fn check_md5(headers: &HeaderMap, body: &[u8]) -> Result<()> {
    if let Some(md5) = headers.get("content-md5").and_then(|v| v.to_str().ok()) {
        let want = base64::engine::general_purpose::STANDARD.encode(Md5::digest(body));
        if md5.trim() != want {
            return Err(Error::InvalidInput(format!(
                "Content-MD5 mismatch: header {md5}, body {want}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_credentials_only_read_and_lock() {
        for m in ["GET", "LOCK", "UNLOCK"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(phase_may(Phase::Plan, &m).is_ok(), "{m}");
            assert!(phase_may(Phase::Apply, &m).is_ok(), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::DELETE] {
            let e = phase_may(Phase::Plan, &m).unwrap_err();
            assert!(e.contains("plan task") && e.contains("read-only"), "{e}");
            assert!(phase_may(Phase::Apply, &m).is_ok(), "{m}");
        }
    }
}
