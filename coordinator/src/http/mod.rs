//! The HTTP side of the coordinator: OpenTofu's `http` state backend at `/state/{workspace}`,
//! `/healthz`, `/readyz` and `/metrics` (Prometheus text format).
//!
//! The state backend trusts nothing the `http` client does not check itself: every request needs
//! a task's lease credential for that workspace (handed out at claim, dead with the lease), a
//! plan task's credential only reads and locks (providers run code during plan: an unreviewed
//! change must not write state), every write must carry the current lock ID while the state is
//! locked, and lineage and serial must move forward (an identical retry is accepted without a
//! new version).

use crate::auth::{Api, Failures};
use crate::error::Error;
use crate::runs::Phase;
use crate::store::{Store, Task};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use base64::Engine;
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub amqp_ready: Arc<AtomicBool>,
    /// Failed authentications of every API (the gRPC checks count into the same).
    pub auth_failures: Arc<Failures>,
    /// The dead-letter queue, counted in `/metrics`.
    pub dead_letters: Arc<crate::queue::dead::DeadLetters>,
}

/// The routes. Serve them with `into_make_service_with_connect_info::<SocketAddr>()`: failed
/// state-backend authentications are logged with the peer address.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/state/{*workspace}", any(state))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(app)
}

async fn readyz(State(app): State<App>) -> Response {
    if let Err(e) = app.store.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database not reachable: {e}\n"),
        )
            .into_response();
    }
    if !app.amqp_ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "RabbitMQ not connected\n").into_response();
    }
    "ready\n".into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    let mut out = String::new();
    out.push_str("# HELP tofuflow_runs Runs by state.\n# TYPE tofuflow_runs gauge\n");
    if let Ok(counts) = app.store.run_counts().await {
        for (s, n) in counts {
            out.push_str(&format!("tofuflow_runs{{state=\"{s}\"}} {n}\n"));
        }
    }
    if let Ok((unsent, total)) = app.store.outbox_stats().await {
        out.push_str("# HELP tofuflow_outbox_unsent Task messages not yet confirmed by RabbitMQ.\n# TYPE tofuflow_outbox_unsent gauge\n");
        out.push_str(&format!("tofuflow_outbox_unsent {unsent}\n"));
        out.push_str("# HELP tofuflow_outbox_messages_total Task messages ever queued for publishing.\n# TYPE tofuflow_outbox_messages_total counter\n");
        out.push_str(&format!("tofuflow_outbox_messages_total {total}\n"));
    }
    if let Ok(agents) = app.store.agents().await {
        out.push_str(
            "# HELP tofuflow_agents Registered agents by state.\n# TYPE tofuflow_agents gauge\n",
        );
        let mut by: HashMap<String, usize> = HashMap::new();
        for a in agents {
            *by.entry(a.state).or_default() += 1;
        }
        for (s, n) in by {
            out.push_str(&format!("tofuflow_agents{{state=\"{s}\"}} {n}\n"));
        }
    }
    out.push_str("# HELP tofuflow_amqp_connected Whether the outbox publisher is connected.\n# TYPE tofuflow_amqp_connected gauge\n");
    out.push_str(&format!(
        "tofuflow_amqp_connected {}\n",
        app.amqp_ready.load(Ordering::SeqCst) as u8
    ));
    // Left out while RabbitMQ cannot be asked (tofuflow_amqp_connected says so).
    let depth = tokio::time::timeout(std::time::Duration::from_secs(2), app.dead_letters.depth());
    if let Ok(Ok(n)) = depth.await {
        out.push_str("# HELP tofuflow_dead_letters Messages in the dead-letter queue (tofuflow.dead).\n# TYPE tofuflow_dead_letters gauge\n");
        out.push_str(&format!("tofuflow_dead_letters {n}\n"));
    }
    out.push_str("# HELP tofuflow_auth_failures_total Failed authentications by API (agent and user gRPC, state backend).\n# TYPE tofuflow_auth_failures_total counter\n");
    for api in [Api::Agent, Api::User, Api::State] {
        out.push_str(&format!(
            "tofuflow_auth_failures_total{{api=\"{}\"}} {}\n",
            api.as_str(),
            app.auth_failures.count(api)
        ));
    }
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, format!("{}\n", msg.into())).into_response()
}

/// The task whose lease credential came with the request, for this workspace. A failure is
/// counted and logged with the peer address (never the credential).
async fn authenticate(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    workspace: &str,
) -> Result<Task, Response> {
    let fail = |why: &str| app.auth_failures.record(Api::State, Some(peer), why);
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        fail("missing credentials");
        return Err((
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"tofuflow state\"")],
            "credentials required: state is readable only with a task's lease credential\n",
        )
            .into_response());
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
        return Err(text(
            StatusCode::UNAUTHORIZED,
            "malformed Basic credentials",
        ));
    };
    match app.store.task_for_token(user, pass).await {
        Ok(Some((task, ws))) if ws == workspace => Ok(task),
        Ok(Some((task, ws))) => {
            tracing::warn!(task_id = %task.id, credential_workspace = %ws, %workspace, "a task's state credential was used for another workspace");
            fail("credential of another workspace");
            Err(text(
                StatusCode::FORBIDDEN,
                format!("this credential is for workspace {ws:?}, not {workspace:?}"),
            ))
        }
        Ok(None) => {
            fail("invalid or expired credential");
            Err(text(
                StatusCode::FORBIDDEN,
                "invalid or expired credential: it lives only as long as its task's lease",
            ))
        }
        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
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

/// The lock ID in a LockInfo body (`None` for an empty body); the error is a 400 message.
fn lock_id_of(body: &[u8]) -> Result<Option<String>, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("lock info is not JSON: {e}"))?;
    let id = v
        .get("ID")
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || id.len() > 255 {
        return Err("lock info needs an ID of 1-255 characters".into());
    }
    Ok(Some(id))
}

async fn state(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(workspace): Path<String>,
    method: Method,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = tofuflow_proto::names::valid_workspace(&workspace) {
        return text(StatusCode::BAD_REQUEST, e);
    }
    let task = match authenticate(&app, peer, &headers, &workspace).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Err(why) = phase_may(task.phase, &method) {
        tracing::warn!(%workspace, task_id = %task.id, method = %method, "state write by a plan task refused");
        return text(StatusCode::FORBIDDEN, why);
    }
    if let Some(md5) = headers.get("content-md5").and_then(|v| v.to_str().ok()) {
        let want = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
        if md5.trim() != want {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Content-MD5 mismatch: header {md5}, body {want}"),
            );
        }
    }
    match method.as_str() {
        "GET" => match app.store.latest_state(&workspace).await {
            Ok(Some(data)) => {
                let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&data));
                (
                    [
                        ("content-type", "application/json"),
                        ("content-md5", md5.as_str()),
                    ],
                    data,
                )
                    .into_response()
            }
            Ok(None) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        "POST" | "PUT" => {
            let v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("state is not JSON: {e}")),
            };
            let (Some(serial), Some(lineage)) = (
                v.get("serial").and_then(|s| s.as_i64()),
                v.get("lineage").and_then(|s| s.as_str()),
            ) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "state needs top-level \"serial\" and \"lineage\"",
                );
            };
            match app
                .store
                .write_state(
                    &workspace,
                    &body,
                    serial,
                    lineage,
                    q.get("ID").map(String::as_str),
                    &task,
                    &task.agent_id,
                )
                .await
            {
                Ok(version) => {
                    tracing::info!(%workspace, version, serial, task_id = %task.id, "state written");
                    StatusCode::OK.into_response()
                }
                Err(Error::Conflict(m)) => {
                    tracing::warn!(%workspace, task_id = %task.id, reason = %m, "state write rejected");
                    text(StatusCode::CONFLICT, m)
                }
                Err(e) => text(e.http_status(), e.to_string()),
            }
        }
        "LOCK" => {
            let id = match lock_id_of(&body) {
                Ok(Some(id)) => id,
                Ok(None) => {
                    return text(StatusCode::BAD_REQUEST, "LOCK needs the lock info as body")
                }
                Err(m) => return text(StatusCode::BAD_REQUEST, m),
            };
            match app
                .store
                .lock_state(&workspace, &id, &String::from_utf8_lossy(&body), &task)
                .await
            {
                Ok(Ok(())) => StatusCode::OK.into_response(),
                Ok(Err(holder)) => (
                    StatusCode::LOCKED,
                    [("content-type", "application/json")],
                    holder.info,
                )
                    .into_response(),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        "UNLOCK" => {
            let held = match app.store.state_lock(&workspace).await {
                Ok(h) => h,
                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let Some(held) = held else {
                return text(StatusCode::CONFLICT, "state is not locked");
            };
            // OpenTofu 1.9's force-unlock sends no body: it means "the lock I hold".
            let id = match lock_id_of(&body) {
                Ok(Some(id)) => id,
                Ok(None) => held.lock_id.clone(),
                Err(m) => return text(StatusCode::BAD_REQUEST, m),
            };
            match app.store.unlock_state(&workspace, &id, &task.id).await {
                Ok(true) => StatusCode::OK.into_response(),
                Ok(false) => (
                    StatusCode::CONFLICT,
                    [("content-type", "application/json")],
                    held.info,
                )
                    .into_response(),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        "DELETE" => match app
            .store
            .delete_state(&workspace, &task, &task.agent_id)
            .await
        {
            Ok(()) => {
                tracing::warn!(%workspace, task_id = %task.id, "state deleted (a tombstone version; history kept)");
                StatusCode::OK.into_response()
            }
            Err(Error::Conflict(m)) => text(StatusCode::CONFLICT, m),
            Err(e) => text(e.http_status(), e.to_string()),
        },
        m => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {m} is not part of the http backend protocol"),
        ),
    }
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
