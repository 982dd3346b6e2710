//! The periodic-work loop: every reap interval, the coordinator holding the periodic-work lease
//! (`store/leader.rs`; one coordinator at a time among several on one PostgreSQL) runs
//! `lifecycle/reap.rs`, which settles leases nobody renewed, starts pending runs and expires
//! overdue ones (`runs::on_lease_expiry` is the policy), then the TTL sweep
//! (`lifecycle/ttl.rs`: reminders, expired environments' destroy runs, retries) and the
//! schedule sweep (`lifecycle/schedule.rs`: each due tick's drift checks). The others
//! skip the round; one of them
//! takes the lease over when its holder stops renewing it.

use crate::lifecycle::ttl::Ttl;
use crate::store::{now_ms, Policy, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The lease's name.
pub const PERIODIC_WORK: &str = "periodic-work";

pub async fn run_reaper(
    store: Store,
    policy: Policy,
    ttl: Arc<Ttl>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let me = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".into()),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ttl_ms = (every.as_millis() as i64 * 3).max(3_000);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.try_lead(PERIODIC_WORK, &me, now_ms(), ttl_ms).await {
            Ok(Some(l)) => {
                if !leading {
                    tracing::info!(holder = %me, epoch = l.epoch, took_over_from = ?l.took_over_from, "this coordinator does the periodic work (reaper)");
                }
                leading = true;
            }
            Ok(None) => {
                if leading {
                    tracing::warn!(holder = %me, "another coordinator took the periodic-work lease over");
                } else if !store.is_postgres() {
                    second_on_sqlite(&store).await;
                }
                leading = false;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the periodic-work lease; skipping this round");
                continue;
            }
        }
        reap_once(&store, &policy).await;
        match ttl.sweep(&store).await {
            Ok(done) => {
                for d in &done {
                    tracing::info!(action = %d, "ttl sweep");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ttl sweep could not run"),
        }
        match store.sweep_schedules(&policy).await {
            Ok(done) => {
                for d in &done {
                    tracing::info!(action = %d, "schedule sweep");
                }
            }
            Err(e) => tracing::warn!(error = %e, "schedule sweep could not run"),
        }
    }
}

/// Says, loudly, that a second coordinator shares this SQLite database.
async fn second_on_sqlite(store: &Store) {
    if let Ok(Some((holder, _))) = store.holder_of(PERIODIC_WORK).await {
        tracing::warn!(other = %holder, "ANOTHER COORDINATOR USES THIS SQLITE DATABASE: SQLite is for one coordinator; run several only on PostgreSQL");
    }
}

async fn reap_once(store: &Store, policy: &Policy) {
    match store.reap(policy).await {
        Ok(done) => {
            // What the reaper queued wakes the publisher through the run events.
            for d in &done {
                tracing::warn!(action = %d, "lease reaper");
            }
        }
        Err(e) => tracing::warn!(error = %e, "lease reaper could not run"),
    }
}
