//! The lease reaper: finds leases nobody renewed and runs past their deadline, and settles them
//! (store::Store::reap holds the decisions, runs::on_lease_expiry the policy).

use crate::store::{Policy, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub async fn run_reaper(
    store: Store,
    policy: Policy,
    every: Duration,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.reap(&policy).await {
            Ok(done) => {
                for d in &done {
                    tracing::warn!(action = %d, "lease reaper");
                }
                if !done.is_empty() {
                    wake.notify_one();
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease reaper could not run"),
        }
    }
}
