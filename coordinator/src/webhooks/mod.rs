//! Outgoing webhook notifications. A webhook (name, URL, workspace globs, events, `json` or
//! `slack` body, a signing secret sealed with the state key) is told about runs of matching
//! workspaces: [`Hook`] writes a delivery in the same transaction as the run transition it
//! reports (so a notification exists exactly when the transition does, and neither without
//! the other); [`deliver`] sends it after the commit, signed (`payload`), retried with backoff
//! (`policy`), each attempt recorded. The tables are `store/webhooks.rs`; the admin API
//! `api/user/webhooks.rs`.

pub mod client;
pub mod deliver;
pub mod payload;
pub mod policy;

use crate::auth::WorkspaceGlob;
use crate::error::{Error, Result};
use crate::lifecycle::events::OnRunEvents;
use crate::runs::events::RunEvent;
use crate::runs::RunState;
use crate::store::{now_ms, NewDelivery, Store, Tx, Webhook};
use std::sync::Arc;
use tokio::sync::Notify;

/// Every event a webhook may subscribe to. `ttl_near` and `teardown_failed` are about an
/// environment with a TTL (`lifecycle/ttl.rs`); `drift_found` is sent when a drift check first
/// finds a workspace drifted (`lifecycle/drift.rs`).
pub const EVENTS: [&str; 8] = [
    "needs_approval",
    "applied",
    "failed",
    "planned_no_changes",
    "cancelled",
    "drift_found",
    "ttl_near",
    "teardown_failed",
];

/// What a webhook subscribes to when it names no event: every run event sent today.
pub const DEFAULT_EVENTS: [&str; 5] = [
    "needs_approval",
    "applied",
    "failed",
    "planned_no_changes",
    "cancelled",
];

/// The body formats.
pub const FORMATS: [&str; 2] = ["json", "slack"];

/// The event a run entering `to` is, if any.
pub fn event_of(to: RunState) -> Option<&'static str> {
    match to {
        RunState::AwaitingApproval => Some("needs_approval"),
        RunState::Applied => Some("applied"),
        RunState::Failed => Some("failed"),
        RunState::PlannedNoChanges => Some("planned_no_changes"),
        RunState::Cancelled => Some("cancelled"),
        _ => None,
    }
}

/// A URL as it may be shown and logged: scheme, host and port only (a path or query may
/// carry a token, as Slack's incoming-webhook URLs do).
pub fn redacted_url(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(u) => {
            let host = u.authority().map(|a| a.as_str()).unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            let path = if u.path().len() > 1 { "/…" } else { "" };
            format!("{}://{host}{path}", u.scheme_str().unwrap_or("?"))
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// A fresh delivery id.
pub fn new_delivery_id() -> String {
    format!("whd_{}", uuid::Uuid::new_v4().simple())
}

/// Checks a webhook to create: its name, URL, globs, events and format (empty events: the
/// defaults; empty format: `json`). Returns it with those filled in.
pub fn checked(mut w: Webhook) -> Result<Webhook> {
    tofuflow_proto::connections::valid_name(&w.name)
        .map_err(|e| Error::InvalidInput(e.replace("connection", "webhook")))?;
    policy::check_url(&w.url, w.allow_private).map_err(Error::InvalidInput)?;
    if w.workspaces.is_empty() {
        return Err(Error::InvalidInput(format!(
            "webhook {} watches no workspace: give --workspace GLOB (e.g. 'prod/*', or '**' for every workspace)",
            w.name
        )));
    }
    for g in w.workspaces.iter_mut() {
        *g = WorkspaceGlob::parse(g)
            .map_err(Error::InvalidInput)?
            .as_str()
            .to_string();
    }
    if w.events.is_empty() {
        w.events = DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect();
    }
    for e in &w.events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(Error::InvalidInput(format!(
                "unknown webhook event {e:?}: use {}",
                EVENTS.join(", ")
            )));
        }
    }
    w.events.sort();
    w.events.dedup();
    if w.format.is_empty() {
        w.format = "json".into();
    }
    if !FORMATS.contains(&w.format.as_str()) {
        return Err(Error::InvalidInput(format!(
            "unknown webhook format {:?}: use json or slack",
            w.format
        )));
    }
    Ok(w)
}

/// Whether `w` wants `event` about a run of `workspace`.
pub fn wants(w: &Webhook, event: &str, workspace: &str) -> bool {
    w.enabled
        && w.events.iter().any(|e| e == event)
        && w.workspaces.iter().any(|g| {
            WorkspaceGlob::parse(g)
                .map(|g| g.matches(workspace))
                .unwrap_or(false)
        })
}

/// The before-commit hook: writes a delivery for every enabled webhook that wants an event
/// of the transaction, in the transaction, and wakes the delivery loop once it commits.
pub struct Hook {
    /// The delivery loop's wake-up.
    pub wake: Arc<Notify>,
    /// The web UI's base URL (a run's page is `<base>/ui/#/runs/<id>`).
    pub public_url: String,
}

#[tonic::async_trait]
impl OnRunEvents for Hook {
    async fn on_run_events(&self, _store: &Store, tx: &mut Tx, events: &[RunEvent]) -> Result<()> {
        let moved: Vec<(&str, &'static str)> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Moved { run_id, to, .. } => event_of(*to).map(|ev| (run_id.as_str(), ev)),
                _ => None,
            })
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let hooks = crate::store::enabled_webhooks(tx).await?;
        if hooks.is_empty() {
            return Ok(());
        }
        let mut queued = 0;
        for (run_id, event) in moved {
            queued += self.queue(tx, &hooks, run_id, event).await?;
        }
        if queued > 0 {
            tx.wake_after_commit(self.wake.clone());
        }
        Ok(())
    }
}

impl Hook {
    /// Writes the deliveries of `event` (one not tied to a state, such as `drift_found`) about
    /// run `run_id` in `tx`, and wakes the delivery loop once `tx` commits.
    pub(crate) async fn queue_event(&self, tx: &mut Tx, run_id: &str, event: &str) -> Result<()> {
        let hooks = crate::store::enabled_webhooks(tx).await?;
        if self.queue(tx, &hooks, run_id, event).await? > 0 {
            tx.wake_after_commit(self.wake.clone());
        }
        Ok(())
    }

    /// Writes the deliveries of `event` about run `run_id`; how many.
    async fn queue(
        &self,
        tx: &mut Tx,
        hooks: &[Webhook],
        run_id: &str,
        event: &str,
    ) -> Result<usize> {
        let keys = tx.keys.clone();
        let run = crate::store::get_run_c(&keys, tx, run_id).await?;
        let targets: Vec<&Webhook> = hooks
            .iter()
            .filter(|w| wants(w, event, &run.workspace))
            .collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let actor = crate::store::last_actor(tx, run_id).await?;
        let now = now_ms();
        let mut facts = payload::Facts {
            event: event.to_string(),
            at_ms: now,
            run_id: run.id.clone(),
            workspace: run.workspace.clone(),
            state: run.state.as_str().to_string(),
            kind: run.kind.as_str().to_string(),
            submitted_by: run.submitted_by.clone(),
            actor,
            tags: run.tags.clone(),
            url: format!(
                "{}/ui/#/runs/{}",
                self.public_url.trim_end_matches('/'),
                run.id
            ),
            add: run.add,
            change: run.change,
            destroy: run.destroy,
            has_changes: run.has_changes,
            ..payload::Facts::default()
        };
        let about = (event, run.id.as_str(), run.workspace.as_str(), now);
        insert_deliveries(tx, &targets, about, |w, id| {
            facts.delivery_id = id.to_string();
            payload::render(&w.format, &facts)
        })
        .await?;
        Ok(targets.len())
    }
}

/// One delivery per webhook of `targets` about (event, run id, workspace, time), the body
/// rendered for each with its new delivery id.
async fn insert_deliveries(
    tx: &mut Tx,
    targets: &[&Webhook],
    (event, run_id, workspace, now): (&str, &str, &str, i64),
    mut body: impl FnMut(&Webhook, &str) -> String,
) -> Result<()> {
    for w in targets {
        let id = new_delivery_id();
        let d = NewDelivery {
            body: body(w, &id),
            id,
            webhook: w.name.clone(),
            event: event.to_string(),
            run_id: run_id.to_string(),
            workspace: workspace.to_string(),
        };
        crate::store::insert_delivery(tx, &d, now).await?;
    }
    Ok(())
}

/// Writes the deliveries of `event` (`ttl_near`, `teardown_failed`) about environment `e` in
/// `tx`, for every enabled webhook that wants it, and wakes the delivery loop (`wake`) once
/// `tx` commits; how many.
pub async fn queue_env_event(
    tx: &mut Tx,
    wake: &Arc<Notify>,
    event: &str,
    e: &crate::store::Environment,
) -> Result<usize> {
    let hooks = crate::store::enabled_webhooks(tx).await?;
    let targets: Vec<&Webhook> = hooks
        .iter()
        .filter(|w| wants(w, event, &e.workspace))
        .collect();
    let now = now_ms();
    let mut facts = payload::EnvFacts {
        event: event.to_string(),
        at_ms: now,
        workspace: e.workspace.clone(),
        state: e.state.as_str().to_string(),
        expires_ms: e.expires_ms,
        set_by: e.set_by.clone(),
        source_run: e.source_run.clone(),
        destroy_run: e.destroy_run.clone(),
        attempts: e.attempts,
        ..payload::EnvFacts::default()
    };
    let about = (event, e.source_run.as_str(), e.workspace.as_str(), now);
    insert_deliveries(tx, &targets, about, |w, id| {
        facts.delivery_id = id.to_string();
        payload::render_env(&w.format, &facts)
    })
    .await?;
    if !targets.is_empty() {
        tx.wake_after_commit(wake.clone());
    }
    Ok(targets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(globs: &[&str], events: &[&str]) -> Webhook {
        checked(Webhook {
            name: "h".into(),
            url: "https://example.com/x".into(),
            workspaces: globs.iter().map(|g| g.to_string()).collect(),
            events: events.iter().map(|e| e.to_string()).collect(),
            enabled: true,
            ..Webhook::default()
        })
        .unwrap()
    }

    #[test]
    fn a_webhook_wants_its_events_on_workspaces_its_globs_match() {
        let w = hook(&["ml/*"], &["applied"]);
        assert!(wants(&w, "applied", "ml/a"));
        assert!(!wants(&w, "applied", "prod/a"));
        assert!(!wants(&w, "failed", "ml/a"));
        let all = hook(&["**"], &[]);
        assert_eq!(all.events.len(), DEFAULT_EVENTS.len());
        assert_eq!(all.format, "json");
        assert!(wants(&all, "needs_approval", "a/b/c"));
        let off = Webhook {
            enabled: false,
            ..all
        };
        assert!(!wants(&off, "applied", "a"));
    }

    #[test]
    fn unknown_events_and_formats_are_refused_and_later_events_accepted() {
        let base = Webhook {
            name: "h".into(),
            url: "https://example.com/x".into(),
            workspaces: vec!["**".into()],
            ..Webhook::default()
        };
        let e = checked(Webhook {
            events: vec!["exploded".into()],
            ..base.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("needs_approval, applied"), "{e}");
        let e = checked(Webhook {
            format: "xml".into(),
            ..base.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("json or slack"), "{e}");
        assert!(checked(Webhook {
            events: vec!["drift_found".into(), "ttl_near".into()],
            ..base
        })
        .is_ok());
    }

    #[test]
    fn a_redacted_url_keeps_scheme_and_host_only() {
        assert_eq!(
            redacted_url("https://hooks.slack.com/services/T0/B0/XyZsecret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redacted_url("http://10.0.0.1:8080"), "http://10.0.0.1:8080");
    }
}
