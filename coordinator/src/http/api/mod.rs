//! The HTTP JSON API under `/api/v1/`: the user service over HTTP. Every endpoint builds the
//! same request its RPC takes, authenticates it with the same check as the gRPC interceptor
//! (a bearer token) and calls the same handler, so the rules, the `authorize` call and the
//! lifecycle are the gRPC API's, never a second copy. Errors are `application/problem+json`
//! ([`problem`]). The OpenAPI 3.1 document is generated from the handlers' annotations (the
//! routes and the document come from the same `routes!`), served at `/api/v1/openapi.json`.

mod agents;
mod drift;
mod dto;
mod environments;
pub mod logs;
mod policies;
mod problem;
mod runs;
mod state;
mod webhooks;
mod workflows;

pub use problem::{Problem, HTTP_STATUS_KEY};

use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the API's handlers need: the user service (with the coordinator's shared state) and
/// the credential check of its interceptor.
#[derive(Clone)]
pub struct Api {
    pub user: Arc<crate::api::user::UserApi>,
    pub auth: crate::auth::Auth,
    /// The web UI's sessions: their cookie is a credential too.
    pub sessions: Arc<crate::http::ui::Sessions>,
}

/// A handler's answer.
type Reply<T> = Result<Json<T>, Problem>;

/// A JSON request body; a malformed one is a 400 problem naming what is wrong.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Problem;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::bad_request(e.body_text()))?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            Problem::bad_request(format!(
                "the request body is not what this endpoint takes: {e}"
            ))
        })
    }
}

/// The `Idempotency-Key` header (empty when absent): text, at most 255 characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| Problem::bad_request("the Idempotency-Key header is not text"))?
        .unwrap_or_default();
    if key.len() > 255 {
        return Err(Problem::bad_request(
            "Idempotency-Key is at most 255 characters",
        ));
    }
    Ok(key)
}

/// Query parameters; malformed ones are a 400 problem.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = Problem;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// An optional JSON request body (empty: the defaults).
pub struct OptBody<T>(pub T);

impl<T: serde::de::DeserializeOwned + Default, S: Send + Sync> axum::extract::FromRequest<S>
    for OptBody<T>
{
    type Rejection = Problem;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::bad_request(e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptBody(T::default()));
        }
        let Body(t) =
            Body::<T>::from_request(axum::extract::Request::new(bytes.into()), state).await?;
        Ok(OptBody(t))
    }
}

/// Refuses a call without a credential the interceptor would accept before anything else is
/// read (API tokens are looked up by the handler, as on the gRPC side).
async fn authenticate(
    axum::extract::State(app): axum::extract::State<crate::http::App>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(api) = app.api.as_ref() else {
        return unavailable().into_response();
    };
    if api.by_session(req.headers()) {
        if let Err(why) = crate::http::ui::csrf::check(req.method(), req.headers()) {
            return Problem::new(axum::http::StatusCode::FORBIDDEN, why).into_response();
        }
    }
    match api.request(req.headers(), ()).await {
        Ok(_) => next.run(req).await,
        Err(p) => p.into_response(),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tofuflow",
        description = "Runs, plans, state, agents and the audit log of a tofuflow coordinator. Authenticate with `Authorization: Bearer <API token>` (`tofuflow token create`). Errors are application/problem+json (RFC 9457). Workspace names in paths are percent-encoded (`ml%2Fa`)."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "runs", description = "Submit, list, show, approve, reject, cancel; logs"),
        (name = "state", description = "A workspace's state versions, rollback and lock"),
        (name = "agents", description = "Agents and the pools they serve"),
        (name = "access", description = "The caller, and the audit log"),
        (name = "webhooks", description = "Outgoing notifications of run events, their deliveries and attempts"),
        (name = "environments", description = "Environments with a TTL: what expires when, and extending a deadline"),
        (name = "drift", description = "Workspaces and their drift status, drift checks, schedules of checks"),
        (name = "policies", description = "Plan policies in Rego, attached to workspace globs")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The API's routes and its OpenAPI document, from the same annotations.
pub fn routes(app: &crate::http::App) -> (Router<crate::http::App>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(runs::list, runs::submit))
        .routes(routes!(runs::show))
        .routes(routes!(runs::plan))
        .routes(routes!(runs::approve))
        .routes(routes!(runs::reject))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::upload_bundle))
        .routes(routes!(logs::page))
        .routes(routes!(logs::stream))
        .routes(routes!(state::history))
        .routes(routes!(state::version))
        .routes(routes!(state::content))
        .routes(routes!(state::rollback))
        .routes(routes!(state::lock))
        .routes(routes!(state::unlock))
        .routes(routes!(agents::list))
        .routes(routes!(agents::audit))
        .routes(routes!(agents::verify_audit))
        .routes(routes!(workflows::list, workflows::start))
        .routes(routes!(workflows::show))
        .routes(routes!(workflows::approve))
        .routes(routes!(workflows::cancel))
        .routes(routes!(workflows::retry))
        .routes(routes!(workflows::rollback))
        .routes(routes!(workflows::rollout))
        .routes(routes!(agents::me))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::show, webhooks::delete))
        .routes(routes!(webhooks::enable))
        .routes(routes!(webhooks::disable))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(environments::list))
        .routes(routes!(environments::extend))
        .routes(routes!(drift::workspaces))
        .routes(routes!(drift::check))
        .routes(routes!(drift::set_ttl))
        .routes(routes!(drift::schedules, drift::add_schedule))
        .routes(routes!(drift::remove_schedule))
        .routes(routes!(drift::ticks))
        .routes(routes!(policies::list, policies::set))
        .routes(routes!(policies::show, policies::delete))
        .split_for_parts();
    let served = doc.clone();
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            authenticate,
        ))
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(served) }),
        )
        .route("/api/v1/{*rest}", axum::routing::any(not_found));
    (router, doc)
}

async fn not_found() -> Problem {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "no such endpoint: the API's endpoints are listed in /api/v1/openapi.json",
    )
}

impl Api {
    /// `msg` as the user service's request, with the caller's credential checked exactly as
    /// the gRPC interceptor checks it (and refused the same way).
    /// A call without an `Authorization` header is authenticated by a live session's cookie
    /// (the token's hash it keeps), through the same check.
    pub(crate) async fn request<T>(
        &self,
        headers: &HeaderMap,
        msg: T,
    ) -> Result<tonic::Request<T>, Problem> {
        if headers.get(header::AUTHORIZATION).is_none() {
            if let Some(h) = self
                .sessions
                .token_hash(headers, crate::store::now_ms())
                .await
            {
                let unit = tonic::Request::new(());
                let (meta, ext, ()) = self.auth.check_user_hash(unit, &h).into_parts();
                return Ok(tonic::Request::from_parts(meta, ext, msg));
            }
        }
        let mut meta = tonic::metadata::MetadataMap::new();
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let v = v
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Problem::bad_request("the Authorization header is not text"))?;
            meta.insert("authorization", v);
        }
        let unit = tonic::Request::from_parts(meta, tonic::Extensions::default(), ());
        let (meta, ext, ()) = self.auth.check_user(unit)?.into_parts();
        Ok(tonic::Request::from_parts(meta, ext, msg))
    }

    /// Whether the call is authenticated by a session cookie (and so made by a browser).
    fn by_session(&self, headers: &HeaderMap) -> bool {
        headers.get(header::AUTHORIZATION).is_none()
            && crate::http::ui::session::cookie_value(headers, self.sessions.cookie_name())
                .is_some()
    }

    fn service(&self) -> &crate::api::user::UserApi {
        &self.user
    }
}

/// Calls `$method` of the user service with `$msg` for the caller of `$headers`.
macro_rules! call {
    ($app:expr, $headers:expr, $method:ident, $msg:expr) => {{
        let api = $app.api.as_ref().ok_or_else(super::unavailable)?;
        let req = api.request(&$headers, $msg).await?;
        api.service().$method(req).await?.into_inner()
    }};
}
pub(crate) use call;

/// The API is not served by this HTTP side (a test router without it).
fn unavailable() -> Problem {
    Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "the API is not served here",
    )
}
