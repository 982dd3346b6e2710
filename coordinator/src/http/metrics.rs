//! `/metrics` in the Prometheus text format: runs and agents by state, the outbox, the AMQP
//! connection, the dead-letter queue, webhook deliveries and failed authentications.

use super::App;
use crate::auth::Api;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// The current metrics; a figure that cannot be read now is left out.
pub(super) async fn metrics(State(app): State<App>) -> Response {
    let mut out = String::new();
    stored_figures(&app, &mut out).await;
    process_figures(&app, &mut out).await;
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}

/// Figures read from the store: runs, the outbox, webhook deliveries, environments, agents.
async fn stored_figures(app: &App, out: &mut String) {
    out.push_str("# HELP tofuflow_runs Runs by state.\n# TYPE tofuflow_runs gauge\n");
    if let Ok(counts) = app.store.run_counts().await {
        for (s, n) in counts {
            out.push_str(&format!("tofuflow_runs{{state=\"{s}\"}} {n}\n"));
        }
    }
    out.push_str("# HELP tofuflow_runs_ended_total Runs this coordinator saw end, by final state (from the run events).\n# TYPE tofuflow_runs_ended_total counter\n");
    for (state, n) in app.store.ended_counts() {
        out.push_str(&format!(
            "tofuflow_runs_ended_total{{state=\"{state}\"}} {n}\n"
        ));
    }
    if let Ok((unsent, total)) = app.store.outbox_stats().await {
        out.push_str("# HELP tofuflow_outbox_unsent Task messages not yet confirmed by RabbitMQ.\n# TYPE tofuflow_outbox_unsent gauge\n");
        out.push_str(&format!("tofuflow_outbox_unsent {unsent}\n"));
        out.push_str("# HELP tofuflow_outbox_messages_total Task messages ever queued for publishing.\n# TYPE tofuflow_outbox_messages_total counter\n");
        out.push_str(&format!("tofuflow_outbox_messages_total {total}\n"));
    }
    if let Ok(counts) = app.store.delivery_counts().await {
        out.push_str("# HELP tofuflow_webhook_deliveries Webhook deliveries by state (pending, delivered, failed).\n# TYPE tofuflow_webhook_deliveries gauge\n");
        for (s, n) in counts {
            out.push_str(&format!(
                "tofuflow_webhook_deliveries{{state=\"{s}\"}} {n}\n"
            ));
        }
    }
    if let Ok(counts) = app.store.environment_counts().await {
        out.push_str("# HELP tofuflow_environments Environments with a TTL by state (active, tearing_down, destroyed, teardown_failed).\n# TYPE tofuflow_environments gauge\n");
        for (s, n) in counts {
            out.push_str(&format!("tofuflow_environments{{state=\"{s}\"}} {n}\n"));
        }
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
}

/// Figures this process keeps: the workflow engine, the AMQP link, the dead-letter queue,
/// rejected envelopes and failed authentications.
async fn process_figures(app: &App, out: &mut String) {
    out.push_str("# HELP tofuflow_workflow_step_seconds Time the workflow engine took to move a workflow run on after one of its runs ended (in that run's transaction).\n# TYPE tofuflow_workflow_step_seconds summary\n");
    out.push_str(&format!(
        "tofuflow_workflow_step_seconds_sum {}\ntofuflow_workflow_step_seconds_count {}\n",
        crate::lifecycle::WORKFLOW_STEP_NANOS.load(Ordering::Relaxed) as f64 / 1e9,
        crate::lifecycle::WORKFLOW_STEPS.load(Ordering::Relaxed)
    ));
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
    out.push_str("# HELP tofuflow_envelopes_rejected_total Task messages agents dead-lettered without running them, by reason (tampered, expired, replayed), as the agents heartbeating here counted them.\n# TYPE tofuflow_envelopes_rejected_total counter\n");
    for (reason, n) in ["tampered", "expired", "replayed"]
        .iter()
        .zip(app.dead_letters.rejections())
    {
        out.push_str(&format!(
            "tofuflow_envelopes_rejected_total{{reason=\"{reason}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP tofuflow_auth_failures_total Failed authentications by API (agent and user gRPC, state backend).\n# TYPE tofuflow_auth_failures_total counter\n");
    for api in [Api::Agent, Api::User, Api::State] {
        out.push_str(&format!(
            "tofuflow_auth_failures_total{{api=\"{}\"}} {}\n",
            api.as_str(),
            app.auth_failures.count(api)
        ));
    }
}
