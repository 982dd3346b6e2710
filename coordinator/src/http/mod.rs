//! The HTTP side of the coordinator: the routes of OpenTofu's `http` state backend
//! ([`crate::state_backend`]), `/healthz`, `/readyz` ([`health`]), `/metrics` ([`metrics`]),
//! the OIDC discovery document and JWKS of tasks' ID tokens ([`oidc`]),
//! the JSON API under `/api/v1` ([`api`]) and the web UI under `/ui/` ([`ui`]).

pub mod api;
mod health;
mod metrics;
mod oidc;
pub mod ui;

use crate::auth::Failures;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct App {
    /// Runs, leases and state.
    pub store: Store,
    /// Whether the outbox publisher is connected to RabbitMQ.
    pub amqp_ready: Arc<AtomicBool>,
    /// Failed authentications of every API (the gRPC checks count into the same).
    pub auth_failures: Arc<Failures>,
    /// The dead-letter queue, counted in `/metrics`.
    pub dead_letters: Arc<crate::queue::dead::DeadLetters>,
    /// The JSON API's user service and credential check (absent: no `/api/v1`).
    pub api: Option<api::Api>,
}

/// The routes. Serve them with `into_make_service_with_connect_info::<SocketAddr>()`: failed
/// state-backend authentications are logged with the peer address.
pub fn router(app: App) -> Router {
    let (api_routes, _) = api::routes(&app);
    Router::new()
        .merge(api_routes)
        .merge(ui::routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/.well-known/openid-configuration",
            get(oidc::openid_configuration),
        )
        .route("/.well-known/jwks", get(oidc::jwks))
        .route("/.well-known/jwks.json", get(oidc::jwks))
        .route("/state/{*workspace}", any(crate::state_backend::route))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(app)
}
