//! Liveness and readiness: `/healthz` answers while the process runs, `/readyz` only while the
//! database is reachable and RabbitMQ connected.

use super::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;

/// The process is alive.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// The coordinator can do its work: 503 with the reason otherwise.
pub(super) async fn readyz(State(app): State<App>) -> Response {
    if let Err(e) = app
        .store
        .ping_within(std::time::Duration::from_secs(2))
        .await
    {
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
