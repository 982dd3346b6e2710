//! The OIDC discovery document and the JWKS of tasks' ID tokens, unauthenticated: clouds
//! fetch them to verify the tokens tasks present (`crate::oidc`).

use super::App;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// A JSON answer that relying parties may cache for a minute (a new key is announced before
/// it signs in shared mode, and verifiers fetch again on an unknown `kid`).
fn json(v: serde_json::Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        v.to_string(),
    )
        .into_response()
}

/// `/.well-known/openid-configuration`.
pub(super) async fn openid_configuration(State(app): State<App>) -> Response {
    json(crate::oidc::discovery_document(&app.store.oidc().issuer))
}

/// `/.well-known/jwks` (and `/.well-known/jwks.json`): every key whose tokens may still be
/// valid.
pub(super) async fn jwks(State(app): State<App>) -> Response {
    match app.store.oidc_public_keys().await {
        Ok(keys) => json(crate::oidc::jwks_document(&keys)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the ID-token keys");
            (e.http_status(), format!("{e}\n")).into_response()
        }
    }
}
