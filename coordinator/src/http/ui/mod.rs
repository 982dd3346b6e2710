//! The web UI under `/ui/`: a login page taking an API token, the session it starts
//! ([`session`]), and plain ES modules and CSS embedded in the binary that read the JSON API
//! with the session cookie. Every answer carries a strict Content-Security-Policy; every
//! state-changing request made with the cookie passes the cross-site check ([`csrf`]).

pub mod csrf;
pub mod session;

pub use session::Sessions;

use crate::http::App;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;

/// The policy every UI answer carries: only this origin's scripts and styles, no framing.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const INDEX: &str = include_str!("static/index.html");
const LOGIN: &str = include_str!("static/login.html");

/// The embedded assets: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript", include_str!("static/app.js")),
    ("lib.js", "text/javascript", include_str!("static/lib.js")),
    (
        "pages.js",
        "text/javascript",
        include_str!("static/pages.js"),
    ),
    ("run.js", "text/javascript", include_str!("static/run.js")),
    ("plan.js", "text/javascript", include_str!("static/plan.js")),
    (
        "workflows.js",
        "text/javascript",
        include_str!("static/workflows.js"),
    ),
    (
        "statediff.js",
        "text/javascript",
        include_str!("static/statediff.js"),
    ),
    ("style.css", "text/css", include_str!("static/style.css")),
];

/// The UI's routes (and `/` sending browsers to it), with its security headers.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/assets/{name}", get(asset))
        .layer(axum::middleware::from_fn(headers))
}

/// Adds the CSP and its companions to every UI answer; refuses a cross-site POST.
async fn headers(req: Request, next: Next) -> Response {
    if req.method() == Method::POST {
        if let Err(why) = csrf::check(req.method(), req.headers()) {
            return (StatusCode::FORBIDDEN, why).into_response();
        }
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The application page for a logged-in browser; the login page for anyone else.
async fn index(State(app): State<App>, headers: HeaderMap) -> Response {
    let logged_in = match app.api.as_ref() {
        Some(a) => a
            .sessions
            .token_hash(&headers, crate::store::now_ms())
            .await
            .is_some(),
        None => false,
    };
    if !logged_in {
        return Redirect::to("/ui/login").into_response();
    }
    html(StatusCode::OK, INDEX.to_string())
}

async fn login_page() -> Response {
    html(StatusCode::OK, LOGIN.replace("<!--error-->", ""))
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Checks the pasted token as every API call is checked (the user service's `WhoAmI`), then
/// starts a session and sends the browser to the runs; the token goes no further.
async fn login(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let Some(api) = app.api.as_ref() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the API is not served here",
        )
            .into_response();
    };
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mut bearer = HeaderMap::new();
    let who = match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(v) if !token.is_empty() => {
            bearer.insert(header::AUTHORIZATION, v);
            match api.request(&bearer, v1::WhoAmIRequest {}).await {
                Ok(req) => api
                    .user
                    .who_am_i(req)
                    .await
                    .map_err(|s| s.message().to_string()),
                Err(p) => Err(p.detail),
            }
        }
        _ => Err("paste an API token (`tofuflow token create`)".to_string()),
    };
    match who {
        Ok(w) => {
            let w = w.into_inner();
            let now = crate::store::now_ms();
            let id = match api
                .sessions
                .create(&crate::auth::hash(&token), w.token_expires_ms, now)
                .await
            {
                Ok(id) => id,
                Err(e) => return e.into_response(),
            };
            tracing::info!(user = %w.name, "web session started");
            let mut res = Redirect::to("/ui/").into_response();
            res.headers_mut()
                .insert(header::SET_COOKIE, api.sessions.set_cookie(&id));
            res
        }
        Err(why) => {
            let msg = format!("<p class=\"error\" role=\"alert\">{}</p>", escape(&why));
            html(
                StatusCode::UNAUTHORIZED,
                LOGIN.replace("<!--error-->", &msg),
            )
        }
    }
}

/// Ends the session and removes the cookie.
async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    let mut res = Redirect::to("/ui/login").into_response();
    if let Some(api) = app.api.as_ref() {
        api.sessions.remove(&headers).await;
        res.headers_mut()
            .insert(header::SET_COOKIE, api.sessions.set_cookie(""));
    }
    res
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            super::escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
