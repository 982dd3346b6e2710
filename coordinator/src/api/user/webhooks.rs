//! Webhooks: outgoing notifications of run events (`crate::webhooks`). Everything here is an
//! admin's (`Action::ManageWebhooks`). A webhook's secret is returned once, by the create call
//! that generated it, and never again; a test send and a redelivery are stored as deliveries
//! (visible in `GetWebhook`) and sent by the delivery loop, which they wake.

use super::{authorize_change, Reply, Shared};
use crate::api::convert::{delivery_to_pb, webhook_to_pb};
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::store::{now_ms, NewDelivery, Webhook};
use crate::webhooks;
use tofuflow_proto::v1;
use tonic::{Request, Response};

/// Deliveries `GetWebhook` shows unless asked for another number.
const SHOWN_DELIVERIES: u32 = 20;

/// Checks a given secret: long enough to resist guessing, short enough to be a secret.
fn checked_secret(given: &str) -> Result<String> {
    if given.is_empty() {
        return Ok(format!("tfwhsec_{}", crate::store::secret()));
    }
    if given.len() < 16 || given.len() > 256 || given.chars().any(char::is_control) {
        return Err(Error::InvalidInput(
            "a webhook secret is 16 to 256 characters, with no control characters (or give none: the coordinator generates one and shows it once)".into(),
        ));
    }
    Ok(given.to_string())
}

/// Creates a webhook; the answer carries the secret when the coordinator generated it.
pub(super) async fn create(
    shared: &Shared,
    req: Request<v1::CreateWebhookRequest>,
) -> Reply<v1::CreateWebhookResponse> {
    let who = authorize_change(shared, &req, Action::ManageWebhooks).await?;
    let r = req.get_ref();
    let w = webhooks::checked(Webhook {
        name: r.name.clone(),
        url: r.url.clone(),
        workspaces: r.workspaces.clone(),
        events: r.events.clone(),
        format: r.format.clone(),
        enabled: !r.disabled,
        allow_private: r.allow_private,
        ..Webhook::default()
    })?;
    if webhooks::policy::is_own(&w.url, &shared.public_http_url) {
        return Err(Error::InvalidInput(format!(
            "webhook URL {} is this coordinator's own address ({}): a webhook notifies another service",
            webhooks::redacted_url(&w.url),
            shared.public_http_url
        ))
        .into());
    }
    let secret = checked_secret(&r.secret)?;
    let saved = shared.store.create_webhook(&w, &secret, &who).await?;
    tracing::info!(webhook = %saved.name, url = %webhooks::redacted_url(&saved.url), by = %who, "webhook created");
    Ok(Response::new(v1::CreateWebhookResponse {
        webhook: Some(webhook_to_pb(saved, Vec::new())),
        secret: if r.secret.is_empty() {
            secret
        } else {
            String::new()
        },
    }))
}

/// Every webhook (without deliveries).
pub(super) async fn list(
    shared: &Shared,
    req: Request<v1::ListWebhooksRequest>,
) -> Reply<v1::ListWebhooksResponse> {
    authorize_change(shared, &req, Action::ManageWebhooks).await?;
    let all = shared.store.webhooks().await?;
    Ok(Response::new(v1::ListWebhooksResponse {
        webhooks: all
            .into_iter()
            .map(|w| webhook_to_pb(w, Vec::new()))
            .collect(),
    }))
}

/// One webhook with its newest deliveries and their attempts.
pub(super) async fn get(shared: &Shared, req: Request<v1::WebhookRequest>) -> Reply<v1::Webhook> {
    authorize_change(shared, &req, Action::ManageWebhooks).await?;
    let r = req.get_ref();
    let w = shared.store.webhook(&r.name).await?;
    let n = match r.deliveries {
        0 => SHOWN_DELIVERIES,
        n => n.min(1000),
    };
    let deliveries = shared.store.webhook_deliveries(&r.name, n as i64).await?;
    Ok(Response::new(webhook_to_pb(w, deliveries)))
}

/// Deletes a webhook with its deliveries.
pub(super) async fn delete(
    shared: &Shared,
    req: Request<v1::WebhookRequest>,
) -> Reply<v1::Webhook> {
    let who = authorize_change(shared, &req, Action::ManageWebhooks).await?;
    let gone = shared
        .store
        .delete_webhook(&req.get_ref().name, &who)
        .await?;
    tracing::info!(webhook = %gone.name, by = %who, "webhook deleted");
    Ok(Response::new(webhook_to_pb(gone, Vec::new())))
}

/// Enables or disables a webhook.
pub(super) async fn set_enabled(
    shared: &Shared,
    req: Request<v1::SetWebhookEnabledRequest>,
) -> Reply<v1::Webhook> {
    let who = authorize_change(shared, &req, Action::ManageWebhooks).await?;
    let r = req.get_ref();
    let w = shared
        .store
        .set_webhook_enabled(&r.name, r.enabled, &who)
        .await?;
    tracing::info!(webhook = %w.name, enabled = w.enabled, by = %who, "webhook changed");
    Ok(Response::new(webhook_to_pb(w, Vec::new())))
}

/// Queues a test delivery (event `test`) to an enabled webhook and wakes the delivery loop.
pub(super) async fn test(
    shared: &Shared,
    req: Request<v1::WebhookRequest>,
) -> Reply<v1::WebhookDelivery> {
    authorize_change(shared, &req, Action::ManageWebhooks).await?;
    let w = shared.store.webhook(&req.get_ref().name).await?;
    if !w.enabled {
        return Err(Error::Conflict(format!(
            "webhook {} is disabled: enable it first (tofuflow webhook enable {})",
            w.name, w.name
        ))
        .into());
    }
    let id = webhooks::new_delivery_id();
    let d = NewDelivery {
        body: webhooks::payload::render_test(&w.format, &w.name, &id, now_ms()),
        id,
        webhook: w.name.clone(),
        event: "test".into(),
        run_id: String::new(),
        workspace: String::new(),
    };
    let queued = shared.store.queue_delivery(&d).await?;
    shared.webhook_wake.notify_one();
    Ok(Response::new(delivery_to_pb(queued)))
}

/// Sends a delivery again (same id and body, a fresh set of attempts).
pub(super) async fn redeliver(
    shared: &Shared,
    req: Request<v1::RedeliverWebhookRequest>,
) -> Reply<v1::WebhookDelivery> {
    let who = authorize_change(shared, &req, Action::ManageWebhooks).await?;
    let d = shared.store.redeliver(&req.get_ref().delivery_id).await?;
    shared.webhook_wake.notify_one();
    tracing::info!(delivery = %d.id, webhook = %d.webhook, by = %who, "webhook delivery queued again");
    Ok(Response::new(delivery_to_pb(d)))
}
