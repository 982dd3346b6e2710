//! Webhooks (admin): create (the generated secret is in the answer, once), list, show with
//! deliveries, delete, enable, disable, test, redeliver; with their JSON shapes.

use super::{call, Body, Params, Problem, Reply};
use crate::http::App;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;
use utoipa::{IntoParams, ToSchema};

/// A webhook subscription (never its secret).
#[derive(Serialize, ToSchema)]
pub struct WebhookJson {
    pub name: String,
    pub url: String,
    pub workspaces: Vec<String>,
    /// needs_approval, applied, failed, planned_no_changes, cancelled, drift_found, ttl_near.
    pub events: Vec<String>,
    /// json or slack.
    pub format: String,
    pub enabled: bool,
    pub allow_private: bool,
    pub created_by: String,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    /// The newest deliveries, newest first (show only).
    pub deliveries: Vec<DeliveryJson>,
}

/// One notification to one webhook, with its attempts.
#[derive(Serialize, ToSchema)]
pub struct DeliveryJson {
    /// Sent as X-Tofuflow-Delivery.
    pub id: String,
    pub webhook: String,
    pub event: String,
    pub run_id: String,
    pub workspace: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: u32,
    pub give_up_after: u32,
    pub next_attempt_unix_ms: i64,
    pub created_unix_ms: i64,
    pub done_unix_ms: i64,
    /// The body sent.
    pub body: String,
    pub tries: Vec<AttemptJson>,
}

/// One attempt: the status answered (0: none, see error), the answer's start, how long.
#[derive(Serialize, ToSchema)]
pub struct AttemptJson {
    pub attempt: u32,
    pub started_unix_ms: i64,
    pub duration_ms: i64,
    pub status_code: u32,
    pub answer_excerpt: String,
    pub error: String,
}

/// A created webhook, and its secret when the coordinator generated it (shown once).
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhookJson {
    pub webhook: WebhookJson,
    pub secret: String,
}

/// A webhook to create.
#[derive(Deserialize, ToSchema)]
pub struct CreateWebhookBody {
    pub name: String,
    /// http:// or https://.
    pub url: String,
    /// Workspace globs (ml/*, prod/**, **); at least one.
    pub workspaces: Vec<String>,
    /// Default: the five run events.
    #[serde(default)]
    pub events: Vec<String>,
    /// json (default) or slack.
    #[serde(default)]
    pub format: String,
    /// The signing secret; absent: generated and returned once.
    #[serde(default)]
    pub secret: String,
    /// Allow a loopback, private or link-local address.
    #[serde(default)]
    pub allow_private: bool,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowWebhookQuery {
    /// How many of the newest deliveries (default 20, at most 1000).
    pub deliveries: Option<u32>,
}

impl From<v1::Webhook> for WebhookJson {
    fn from(w: v1::Webhook) -> WebhookJson {
        WebhookJson {
            name: w.name,
            url: w.url,
            workspaces: w.workspaces,
            events: w.events,
            format: w.format,
            enabled: w.enabled,
            allow_private: w.allow_private,
            created_by: w.created_by,
            created_unix_ms: w.created_unix_ms,
            updated_unix_ms: w.updated_unix_ms,
            deliveries: w.deliveries.into_iter().map(DeliveryJson::from).collect(),
        }
    }
}

impl From<v1::WebhookDelivery> for DeliveryJson {
    fn from(d: v1::WebhookDelivery) -> DeliveryJson {
        let tries = d
            .tries
            .into_iter()
            .map(|a| AttemptJson {
                attempt: a.attempt,
                started_unix_ms: a.started_unix_ms,
                duration_ms: a.duration_ms,
                status_code: a.status_code,
                answer_excerpt: a.answer_excerpt,
                error: a.error,
            })
            .collect();
        DeliveryJson {
            id: d.id,
            webhook: d.webhook,
            event: d.event,
            run_id: d.run_id,
            workspace: d.workspace,
            state: d.state,
            attempts: d.attempts,
            give_up_after: d.give_up_after,
            next_attempt_unix_ms: d.next_attempt_unix_ms,
            created_unix_ms: d.created_unix_ms,
            done_unix_ms: d.done_unix_ms,
            body: d.body,
            tries,
        }
    }
}

/// Webhooks, by name (admin).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<WebhookJson>), (status = 403, body = Problem)))]
pub async fn list(State(app): State<App>, headers: HeaderMap) -> Reply<Vec<WebhookJson>> {
    let r = call!(app, headers, list_webhooks, v1::ListWebhooksRequest {});
    Ok(Json(
        r.webhooks.into_iter().map(WebhookJson::from).collect(),
    ))
}

/// Creates a webhook; a generated secret is in the answer, and nowhere ever again (admin).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhookBody,
    responses((status = 201, body = CreatedWebhookJson), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Body(b): Body<CreateWebhookBody>,
) -> Result<(StatusCode, Json<CreatedWebhookJson>), Problem> {
    let msg = v1::CreateWebhookRequest {
        name: b.name,
        url: b.url,
        workspaces: b.workspaces,
        events: b.events,
        format: b.format,
        secret: b.secret,
        allow_private: b.allow_private,
        disabled: b.disabled,
    };
    let r = call!(app, headers, create_webhook, msg);
    let created = CreatedWebhookJson {
        webhook: WebhookJson::from(r.webhook.unwrap_or_default()),
        secret: r.secret,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// A webhook with its newest deliveries and their attempts (admin).
#[utoipa::path(get, path = "/api/v1/webhooks/{name}", tag = "webhooks", params(("name" = String, Path), ShowWebhookQuery),
    responses((status = 200, body = WebhookJson), (status = 404, body = Problem)))]
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Params(q): Params<ShowWebhookQuery>,
) -> Reply<WebhookJson> {
    let msg = v1::WebhookRequest {
        name,
        deliveries: q.deliveries.unwrap_or(0),
    };
    Ok(Json(WebhookJson::from(call!(
        app,
        headers,
        get_webhook,
        msg
    ))))
}

/// Deletes a webhook and its deliveries (admin).
#[utoipa::path(delete, path = "/api/v1/webhooks/{name}", tag = "webhooks", params(("name" = String, Path)),
    responses((status = 200, body = WebhookJson), (status = 404, body = Problem)))]
pub async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<WebhookJson> {
    let msg = v1::WebhookRequest {
        name,
        deliveries: 0,
    };
    Ok(Json(WebhookJson::from(call!(
        app,
        headers,
        delete_webhook,
        msg
    ))))
}

async fn set_enabled(
    app: App,
    headers: HeaderMap,
    name: String,
    enabled: bool,
) -> Reply<WebhookJson> {
    let msg = v1::SetWebhookEnabledRequest { name, enabled };
    Ok(Json(WebhookJson::from(call!(
        app,
        headers,
        set_webhook_enabled,
        msg
    ))))
}

/// Enables a webhook (admin).
#[utoipa::path(post, path = "/api/v1/webhooks/{name}/enable", tag = "webhooks", params(("name" = String, Path)),
    responses((status = 200, body = WebhookJson), (status = 404, body = Problem)))]
pub async fn enable(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<WebhookJson> {
    set_enabled(app, headers, name, true).await
}

/// Disables a webhook: nothing new is queued for it (admin).
#[utoipa::path(post, path = "/api/v1/webhooks/{name}/disable", tag = "webhooks", params(("name" = String, Path)),
    responses((status = 200, body = WebhookJson), (status = 404, body = Problem)))]
pub async fn disable(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<WebhookJson> {
    set_enabled(app, headers, name, false).await
}

/// Queues a test delivery (event `test`) to an enabled webhook (admin).
#[utoipa::path(post, path = "/api/v1/webhooks/{name}/test", tag = "webhooks", params(("name" = String, Path)),
    responses((status = 200, body = DeliveryJson), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn test(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply<DeliveryJson> {
    let msg = v1::WebhookRequest {
        name,
        deliveries: 0,
    };
    Ok(Json(DeliveryJson::from(call!(
        app,
        headers,
        test_webhook,
        msg
    ))))
}

/// Sends a delivery again: same id and body, a fresh set of attempts (admin).
#[utoipa::path(post, path = "/api/v1/webhook-deliveries/{id}/redeliver", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryJson), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn redeliver(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<DeliveryJson> {
    let msg = v1::RedeliverWebhookRequest { delivery_id: id };
    Ok(Json(DeliveryJson::from(call!(
        app,
        headers,
        redeliver_webhook,
        msg
    ))))
}
