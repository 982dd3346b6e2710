//! `/metrics` in the OpenMetrics text format (Prometheus scrapes it): the histograms the
//! lifecycle records (`crate::metrics`), and the figures read when scraped: runs and agents by
//! state, the outbox, webhook deliveries, environments, the AMQP connection, the dead-letter
//! queue, rejected envelopes and failed authentications.

use super::App;
use crate::auth::Api;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use tofuflow_proto::metrics::Labels;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The current metrics; a figure that cannot be read now is left out.
pub(super) async fn metrics(State(app): State<App>) -> Response {
    let mut now = Registry::with_prefix("tofuflow");
    stored_figures(&app, &mut now).await;
    process_figures(&app, &mut now).await;
    let mut out = String::new();
    let encoded = encode_registry(&mut out, &crate::metrics::recorded().registry)
        .and_then(|_| encode_registry(&mut out, &now))
        .and_then(|_| encode_eof(&mut out));
    match encoded {
        Ok(()) => ([("content-type", CONTENT_TYPE)], out).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
            .into_response(),
    }
}

/// A gauge per label value, from `(value, n)` pairs.
fn gauges<V: ToString>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    rows: impl IntoIterator<Item = (V, i64)>,
) {
    let f = Family::<Labels, Gauge>::default();
    for (v, n) in rows {
        f.get_or_create(&vec![(label, v.to_string())]).set(n);
    }
    r.register(name, help, f);
}

/// A counter per label value, from totals kept elsewhere.
fn counters<V: ToString>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    rows: impl IntoIterator<Item = (V, u64)>,
) {
    let f = Family::<Labels, Counter>::default();
    for (v, n) in rows {
        f.get_or_create(&vec![(label, v.to_string())]).inc_by(n);
    }
    r.register(name, help, f);
}

fn gauge(r: &mut Registry, name: &str, help: &str, n: i64) {
    let g = Gauge::<i64>::default();
    g.set(n);
    r.register(name, help, g);
}

/// Figures read from the store: runs, the outbox, webhook deliveries, environments, agents.
async fn stored_figures(app: &App, r: &mut Registry) {
    if let Ok(counts) = app.store.run_counts().await {
        gauges(r, "runs", "Runs by state.", "state", counts);
    }
    let ended = app.store.ended_counts();
    counters(
        r,
        "runs_ended",
        "Runs this coordinator saw end, by final state (from the run events).",
        "state",
        ended,
    );
    if let Ok((unsent, total)) = app.store.outbox_stats().await {
        gauge(
            r,
            "outbox_unsent",
            "Task messages not yet confirmed by RabbitMQ.",
            unsent,
        );
        let c = Counter::<u64>::default();
        c.inc_by(total.max(0) as u64);
        r.register(
            "outbox_messages",
            "Task messages ever queued for publishing.",
            c,
        );
    }
    if let Ok(counts) = app.store.delivery_counts().await {
        gauges(
            r,
            "webhook_deliveries",
            "Webhook deliveries by state (pending, delivered, failed).",
            "state",
            counts,
        );
    }
    if let Ok(counts) = app.store.environment_counts().await {
        gauges(
            r,
            "environments",
            "Environments with a TTL by state (active, tearing_down, destroyed, teardown_failed).",
            "state",
            counts,
        );
    }
    if let Ok(agents) = app.store.agents().await {
        let mut by: HashMap<String, i64> = HashMap::new();
        for a in agents {
            *by.entry(a.state).or_default() += 1;
        }
        gauges(r, "agents", "Registered agents by state.", "state", by);
    }
}

/// Figures this process keeps: the AMQP link, the dead-letter queue, rejected envelopes and
/// failed authentications.
async fn process_figures(app: &App, r: &mut Registry) {
    let connected = app.amqp_ready.load(Ordering::SeqCst) as i64;
    gauge(
        r,
        "amqp_connected",
        "Whether the outbox publisher is connected.",
        connected,
    );
    // Left out while RabbitMQ cannot be asked (tofuflow_amqp_connected says so).
    let depth = tokio::time::timeout(std::time::Duration::from_secs(2), app.dead_letters.depth());
    if let Ok(Ok(n)) = depth.await {
        gauge(
            r,
            "dead_letters",
            "Messages in the dead-letter queue (tofuflow.dead).",
            n as i64,
        );
    }
    let reasons = ["tampered", "expired", "replayed"];
    counters(r, "envelopes_rejected", "Task messages agents dead-lettered without running them, by reason (tampered, expired, replayed), as the agents heartbeating here counted them.", "reason", reasons.into_iter().zip(app.dead_letters.rejections()));
    let apis = [Api::Agent, Api::User, Api::State];
    let failures = apis.map(|api| (api.as_str(), app.auth_failures.count(api)));
    counters(
        r,
        "auth_failures",
        "Failed authentications by API (agent and user gRPC, state backend).",
        "api",
        failures,
    );
}
