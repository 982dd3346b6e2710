//! The lease reaper loop: every reap interval, `lifecycle/reap.rs` settles leases nobody renewed,
//! starts pending runs and expires overdue ones (`runs::on_lease_expiry` is the policy).

use crate::store::{Policy, Store};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run_reaper(
    store: Store,
    policy: Policy,
    every: Duration,
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
                // What the reaper queued wakes the publisher through the run events.
                for d in &done {
                    tracing::warn!(action = %d, "lease reaper");
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease reaper could not run"),
        }
    }
}
