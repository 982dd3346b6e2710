//! Leases the agent holds, and the heartbeat that renews them. A heartbeat answer can say
//! "cancel this task" (a user asked) or "this lease is gone" (the coordinator fenced it); and if
//! no heartbeat gets through for a whole lease TTL, the agent stops its tasks itself rather than
//! run on unfenced.

use crate::runner::{Held, StopReason};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tofuflow_proto::v1;
use tokio_util::sync::CancellationToken;

#[derive(Default, Clone)]
pub struct Leases {
    inner: Arc<Mutex<HashMap<String, Arc<Held>>>>,
}

impl Leases {
    pub fn insert(&self, task_id: &str, held: Arc<Held>) {
        self.inner
            .lock()
            .expect("leases")
            .insert(task_id.to_string(), held);
    }
    pub fn remove(&self, task_id: &str) {
        self.inner.lock().expect("leases").remove(task_id);
    }
    pub fn len(&self) -> usize {
        self.inner.lock().expect("leases").len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn snapshot(&self) -> Vec<(String, Arc<Held>)> {
        self.inner
            .lock()
            .expect("leases")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    /// Asks one task to stop, remembering the first reason given.
    pub fn stop(&self, task_id: &str, why: StopReason) {
        if let Some(h) = self.inner.lock().expect("leases").get(task_id) {
            stop(h, why);
        }
    }
    /// Hands a renewed ID token to its task (which masks it and rewrites its token file).
    pub fn renew_id_token(&self, task_id: &str, token: &str) {
        let held = self.inner.lock().expect("leases").get(task_id).cloned();
        if let Some(h) = held {
            h.id_token.renew(token);
        }
    }
    pub fn stop_all(&self, why: StopReason) {
        for (_, h) in self.snapshot() {
            stop(&h, why.clone());
        }
    }
}

fn stop(h: &Held, why: StopReason) {
    if let Ok(mut r) = h.reason.lock() {
        if r.is_none() {
            *r = Some(why);
        }
    }
    h.cancel.cancel();
}

/// What the heartbeat loop does when the coordinator says the agent was revoked: sets `flag`
/// and stops the whole agent.
pub struct Revocation {
    pub flag: Arc<std::sync::atomic::AtomicBool>,
    pub stop_agent: CancellationToken,
}

/// Does what a heartbeat answer says: stop the agent (revoked), cancel tasks, stop tasks
/// whose lease is gone, hand renewed ID tokens to their tasks.
fn obey(r: v1::HeartbeatResponse, leases: &Leases, revocation: &Revocation) {
    if r.revoked {
        tracing::error!("the coordinator revoked this agent: stopping");
        revocation
            .flag
            .store(true, std::sync::atomic::Ordering::SeqCst);
        revocation.stop_agent.cancel();
    }
    for id in r.cancel_task_ids {
        tracing::info!(task_id = %id, "coordinator asks to cancel the task");
        leases.stop(&id, StopReason::UserCancel);
    }
    for t in &r.id_tokens {
        tracing::debug!(task_id = %t.task_id, expires_unix_ms = t.expires_unix_ms, "renewed ID token");
        leases.renew_id_token(&t.task_id, &t.id_token);
    }
    for id in r.lost_task_ids {
        tracing::warn!(task_id = %id, "the coordinator no longer honours this lease: stopping the task");
        leases.stop(
            &id,
            StopReason::LeaseLost("the coordinator fenced this attempt (lease expired)".into()),
        );
    }
}

/// Heartbeats until `shutdown`; `draining` is reported once set.
#[allow(clippy::too_many_arguments)]
pub async fn heartbeat_loop(
    mut client: crate::Client,
    agent_id: String,
    leases: Leases,
    trust: Arc<crate::trust::Trust>,
    every: Duration,
    ttl: Duration,
    draining: Arc<std::sync::atomic::AtomicBool>,
    free: Arc<tokio::sync::Semaphore>,
    shutdown: CancellationToken,
    revocation: Revocation,
) {
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let held = leases.snapshot();
        let req = v1::HeartbeatRequest {
            protocol_version: tofuflow_proto::PROTOCOL_VERSION,
            agent_id: agent_id.clone(),
            leases: held
                .iter()
                .map(|(id, h)| v1::HeldLease {
                    task_id: id.clone(),
                    attempt: h.attempt,
                    epoch: h.epoch,
                    lease_token: h.lease_token.clone(),
                })
                .collect(),
            draining: draining.load(std::sync::atomic::Ordering::SeqCst),
            free_slots: free.available_permits() as u32,
            envelope_rejections: Some(trust.counts()),
        };
        let sent = Instant::now();
        let m = crate::metrics::metrics();
        match tokio::time::timeout(every.max(Duration::from_secs(2)), client.heartbeat(req)).await {
            Ok(Ok(r)) => {
                last_ok = Instant::now();
                m.heartbeat("ok", Some(sent.elapsed()));
                obey(r.into_inner(), &leases, &revocation);
            }
            Ok(Err(e)) => {
                m.heartbeat("failed", None);
                tracing::warn!(error = %e.message(), "heartbeat failed")
            }
            Err(_) => {
                m.heartbeat("timed_out", None);
                tracing::warn!("heartbeat timed out")
            }
        }
        if !held.is_empty() && last_ok.elapsed() > ttl {
            tracing::error!(
                silent_for_ms = last_ok.elapsed().as_millis() as u64,
                "no heartbeat got through for a whole lease TTL: stopping running tasks"
            );
            leases.stop_all(StopReason::LeaseLost(format!(
                "lost contact with the coordinator for {}s; the lease has expired",
                last_ok.elapsed().as_secs()
            )));
        }
    }
}
